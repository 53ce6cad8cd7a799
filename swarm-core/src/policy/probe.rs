//! What a probe's figures mean: the verdict the self-healing ladder and the
//! early reclaim act on (DESIGN §3 "Self-healing"). The prober only reports
//! what it saw; the thresholds are `Config`'s `probe_*` fields.
//!
//! The worst condition wins, most urgent first: unreachable or timed out,
//! service down, memory critical, disk critical, overloaded, disk warning, ok.
//! A missing figure counts as fine: a probe that cannot see the disk says
//! nothing about it.

use crate::config::Config;
use crate::id::DroneName;
use crate::input::{Input, ProbeFigures, ProbeReach, ProbeStatus};

/// The verdict on one probe's figures. The core judges every
/// `Input::ProbeFigures` with this itself; it is public so tools and tests can
/// show what the core will make of a probe.
pub fn judge_probe(c: &Config, f: &ProbeFigures) -> ProbeStatus {
    let at_least = |v: Option<u32>, limit: u32| v.is_some_and(|v| v >= limit);
    let overloaded = match (f.load_centi, f.cores) {
        (Some(load), Some(cores)) => {
            u64::from(load) > u64::from(c.probe_overload_per_core_centi) * u64::from(cores)
        }
        _ => false,
    };
    match f.reach {
        ProbeReach::Unreachable => ProbeStatus::Unreachable,
        ProbeReach::Timeout => ProbeStatus::Timeout,
        ProbeReach::Reached if f.service_up == Some(false) => ProbeStatus::ServiceDown,
        ProbeReach::Reached if at_least(f.mem_percent, c.probe_memory_critical_percent) => {
            ProbeStatus::MemoryCritical
        }
        ProbeReach::Reached if at_least(f.disk_percent, c.probe_disk_critical_percent) => {
            ProbeStatus::DiskCritical
        }
        ProbeReach::Reached if overloaded => ProbeStatus::Overloaded,
        ProbeReach::Reached if at_least(f.disk_percent, c.probe_disk_warning_percent) => {
            ProbeStatus::DiskWarning
        }
        ProbeReach::Reached => ProbeStatus::Ok,
    }
}

/// The probed drone and the verdict of a probe input (figures judged under
/// `c`, or a verdict sent as such); `None` for every other input. The handler
/// and the history monitor both ask here, so they never judge apart.
pub(crate) fn probe_verdict<'a>(
    c: &Config,
    input: &'a Input,
) -> Option<(&'a DroneName, ProbeStatus)> {
    match input {
        Input::ProbeFigures(f) => Some((&f.drone, judge_probe(c, f))),
        Input::ProbeResult { drone, status } => Some((drone, *status)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reached() -> ProbeFigures {
        ProbeFigures::default()
    }

    /// A reached probe's figures: service up, load ×100, cores, disk and memory percent.
    fn figures(
        service_up: Option<bool>,
        load_centi: Option<u32>,
        cores: Option<u32>,
        disk_percent: Option<u32>,
        mem_percent: Option<u32>,
    ) -> ProbeFigures {
        ProbeFigures {
            service_up,
            load_centi,
            cores,
            disk_percent,
            mem_percent,
            ..reached()
        }
    }

    /// How bad a verdict of a reached drone is, in the order the checks run.
    fn rank(s: ProbeStatus) -> u8 {
        match s {
            ProbeStatus::Ok => 0,
            ProbeStatus::DiskWarning => 1,
            ProbeStatus::Overloaded => 2,
            ProbeStatus::DiskCritical => 3,
            ProbeStatus::MemoryCritical => 4,
            ProbeStatus::ServiceDown => 5,
            ProbeStatus::Unreachable | ProbeStatus::Timeout => 6,
        }
    }

    #[test]
    fn the_default_thresholds_give_the_verdicts_the_prober_gave() {
        let c = Config::default();
        let cases = [
            (
                figures(Some(true), Some(150), Some(8), Some(40), Some(50)),
                ProbeStatus::Ok,
            ),
            (
                figures(Some(false), None, None, None, Some(99)),
                ProbeStatus::ServiceDown,
            ),
            (
                figures(None, None, None, Some(99), Some(95)),
                ProbeStatus::MemoryCritical,
            ),
            (
                figures(None, Some(10_000), Some(1), Some(95), None),
                ProbeStatus::DiskCritical,
            ),
            (
                figures(None, Some(1610), Some(8), Some(90), None),
                ProbeStatus::Overloaded,
            ),
            (
                figures(None, Some(1600), Some(8), None, None),
                ProbeStatus::Ok,
            ),
            (figures(None, Some(1601), None, None, None), ProbeStatus::Ok),
            (
                figures(None, None, None, Some(85), None),
                ProbeStatus::DiskWarning,
            ),
            (
                figures(None, None, None, Some(84), Some(94)),
                ProbeStatus::Ok,
            ),
            (reached(), ProbeStatus::Ok),
        ];
        for (f, want) in cases {
            assert_eq!(judge_probe(&c, &f), want, "{f:?}");
        }
    }

    #[test]
    fn an_unreached_drone_is_judged_by_reach_alone() {
        let c = Config::default();
        for (reach, want) in [
            (ProbeReach::Unreachable, ProbeStatus::Unreachable),
            (ProbeReach::Timeout, ProbeStatus::Timeout),
        ] {
            let f = ProbeFigures {
                reach,
                service_up: Some(true),
                ..reached()
            };
            assert_eq!(judge_probe(&c, &f), want);
        }
    }

    #[test]
    fn thresholds_come_from_the_config() {
        let c = Config {
            probe_disk_warning_percent: 50,
            probe_disk_critical_percent: 60,
            probe_memory_critical_percent: 70,
            probe_overload_per_core_centi: 100,
            ..Config::default()
        };
        let f = |disk, mem, load| ProbeFigures {
            disk_percent: Some(disk),
            mem_percent: Some(mem),
            load_centi: Some(load),
            cores: Some(4),
            ..reached()
        };
        assert_eq!(judge_probe(&c, &f(50, 0, 0)), ProbeStatus::DiskWarning);
        assert_eq!(judge_probe(&c, &f(60, 0, 0)), ProbeStatus::DiskCritical);
        assert_eq!(judge_probe(&c, &f(0, 70, 0)), ProbeStatus::MemoryCritical);
        assert_eq!(judge_probe(&c, &f(0, 0, 401)), ProbeStatus::Overloaded);
        assert_eq!(judge_probe(&c, &f(49, 69, 400)), ProbeStatus::Ok);
    }

    fn any_figures() -> impl Strategy<Value = ProbeFigures> {
        let pct = || prop::option::of(0u32..=120);
        (
            prop::option::of(any::<bool>()),
            prop::option::of(0u32..=100_000),
            prop::option::of(1u32..=512),
            pct(),
            pct(),
        )
            .prop_map(|(service_up, load, cores, disk, mem)| {
                figures(service_up, load, cores, disk, mem)
            })
    }

    fn any_thresholds() -> impl Strategy<Value = Config> {
        (1u32..=100, 1u32..=100, 1u32..=100, 1u32..=1000).prop_map(|(a, b, mem, load)| Config {
            probe_disk_warning_percent: a.min(b),
            probe_disk_critical_percent: a.max(b),
            probe_memory_critical_percent: mem,
            probe_overload_per_core_centi: load,
            ..Config::default()
        })
    }

    /// A copy of `f` that is no better in any figure.
    fn worse(f: &ProbeFigures, bump: (u32, u32, u32, bool)) -> ProbeFigures {
        let (disk, mem, load, down) = bump;
        ProbeFigures {
            service_up: if down { Some(false) } else { f.service_up },
            disk_percent: f.disk_percent.map(|v| v.saturating_add(disk)),
            mem_percent: f.mem_percent.map(|v| v.saturating_add(mem)),
            load_centi: f.load_centi.map(|v| v.saturating_add(load)),
            ..f.clone()
        }
    }

    proptest! {
        /// Worse figures never give a better verdict.
        #[test]
        fn worse_figures_never_give_a_better_verdict(
            c in any_thresholds(),
            f in any_figures(),
            bump in (0u32..50, 0u32..50, 0u32..5000, any::<bool>()),
        ) {
            let before = judge_probe(&c, &f);
            let after = judge_probe(&c, &worse(&f, bump));
            prop_assert!(rank(after) >= rank(before), "{before:?} then {after:?}");
        }

        /// Lower thresholds never give a better verdict for the same figures.
        #[test]
        fn stricter_thresholds_never_give_a_better_verdict(
            c in any_thresholds(),
            f in any_figures(),
            cut in (0u32..50, 0u32..50, 0u32..500),
        ) {
            let strict = Config {
                probe_disk_warning_percent: c.probe_disk_warning_percent.saturating_sub(cut.0).max(1),
                probe_disk_critical_percent: c.probe_disk_critical_percent.saturating_sub(cut.0).max(1),
                probe_memory_critical_percent: c.probe_memory_critical_percent.saturating_sub(cut.1).max(1),
                probe_overload_per_core_centi: c.probe_overload_per_core_centi.saturating_sub(cut.2).max(1),
                ..c.clone()
            };
            let loose = judge_probe(&c, &f);
            let tight = judge_probe(&strict, &f);
            prop_assert!(rank(tight) >= rank(loose), "{loose:?} then {tight:?}");
        }
    }

    fn drone_spec(name: &DroneName, kind: crate::input::DroneKind) -> crate::input::DroneSpec {
        crate::input::DroneSpec {
            name: name.clone(),
            cores: 8,
            ram_mb: 16_384,
            kind,
            ..Default::default()
        }
    }

    /// Runs `probes` (figures, at what ms) against a fresh swarm with one
    /// silent drone, sending each as figures or as the verdict they judge to.
    fn run(probes: &[(u64, ProbeFigures)], as_figures: bool) -> (Vec<crate::Output>, u64) {
        use crate::input::{DroneKind, Envelope};
        use crate::time::Timestamp;
        let c = Config::default();
        let mut swarm = crate::Swarm::new(c.clone()).expect("valid");
        let name = DroneName::new("drone-a").expect("a valid name");
        let mut outputs = Vec::new();
        let mut send = |seq: u64, at: u64, input: Input| {
            let env = Envelope {
                seq: crate::id::Seq(seq),
                at: Timestamp(at),
                input,
            };
            outputs.extend(swarm.handle(&env));
        };
        send(1, 0, Input::Register(drone_spec(&name, DroneKind::Qemu)));
        for (i, (at, f)) in (2u64..).zip(probes) {
            let f = ProbeFigures {
                drone: name.clone(),
                ..f.clone()
            };
            let input = if as_figures {
                Input::ProbeFigures(f)
            } else {
                Input::ProbeResult {
                    drone: name.clone(),
                    status: judge_probe(&c, &f),
                }
            };
            send(i, *at, input);
        }
        (outputs, swarm.digest())
    }

    fn any_probe() -> impl Strategy<Value = ProbeFigures> {
        prop_oneof![
            6 => any_figures(),
            1 => Just(ProbeFigures { reach: ProbeReach::Unreachable, ..reached() }),
            1 => Just(ProbeFigures { reach: ProbeReach::Timeout, ..reached() }),
        ]
    }

    proptest! {
        /// The figures and the verdict they judge to lead the swarm to the same
        /// outputs and state, escalations included: the rule moved, it did not change.
        #[test]
        fn figures_act_exactly_as_their_verdict(
            probes in prop::collection::vec((0u64..120_000, any_probe()), 1..24),
        ) {
            let mut at = 100_000u64;
            let probes: Vec<(u64, ProbeFigures)> = probes
                .into_iter()
                .map(|(step, f)| {
                    at += step;
                    (at, f)
                })
                .collect();
            let by_figures = run(&probes, true);
            let by_verdict = run(&probes, false);
            prop_assert_eq!(by_figures, by_verdict);
        }
    }
}
