//! Drone-side health: the state machine the drone agent runs on itself (DESIGN §3).
//!
//! The agent samples memory, disk and its builder, feeds each sample to [`HealthMonitor::assess`]
//! and reports the resulting [`DroneHealth`] in its heartbeat. The control plane trusts that
//! self-assessment to decide whether to hand the drone work; the agent acts on it locally
//! (return all work when [`DroneHealth::returns_work`]). Like the rest of `swarm-core` this module
//! reads no clock and does no IO: the agent's sampling cadence is the only notion of time, and every
//! decision is integer arithmetic, so the same samples always give the same states.
//!
//! ```text
//!            pressure: mem >= 85 % | disk free < 5 GiB | 3 builds in a row took >= 2x estimate
//!     +---------+ -------------------------------------------> +----------+
//!     | Healthy |                                              | Degraded |
//!     +---------+ <------------------------------------------- +----------+
//!       ^     |                 pressure cleared                   |    ^
//!       |     |                                                    |    |
//!       |     +--------------> +----------+ <----------------------+    |
//!       |      OOM kill or     | Critical | <--+   OOM kill or          |
//!       |      >= 2 crashes    +----------+ ---+   >= 2 crashes         |
//!       |                        |      ^   still OOM-killing           |
//!       |        next sample     |      |                               |
//!       |        not critical    v      | OOM kill or >= 2 crashes      |
//!       |                      +------------+                           |
//!       +--------------------- | Recovering | --------------------------+
//!     self check passed,       +------------+       self check passed,
//!     no pressure                ^        |         pressure
//!                                +--------+
//!                      no self check yet, or it failed
//! ```
//!
//! - Only `Healthy` takes new work. `Degraded` keeps its running builds but asks for nothing.
//! - `Critical` returns all work. The next sample that is not itself critical moves it on.
//! - `Critical` never goes straight to `Healthy`: it always passes through `Recovering`, which ends
//!   only when a self check (disk writable, toolchain runs) has passed.
//! - Crashes count from the last completed build ([`HealthMonitor::record_build`]) and are cleared
//!   on entering `Critical`: crashes with a completed build between them are not "repeated".
//! - Slow builds can only be observed while building, and a `Degraded` drone gets no new builds. So a
//!   slow-build degradation is held for [`HealthThresholds::slow_cooldown_samples`] samples, then
//!   forgotten; if the drone is still slow, three more slow builds degrade it again.

use serde::{Deserialize, Serialize};

/// How a drone judges itself; sent in every heartbeat so the control plane can decide on work.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DroneHealth {
    /// Fit to build: takes new work. The default, as a drone that says nothing is assumed fit.
    #[default]
    Healthy,
    /// Under pressure (memory, disk or slow builds): finishes what it has, takes nothing new.
    Degraded,
    /// OOM-killed or crashing: must return all its work at once so other drones can take it.
    Critical,
    /// Came back from `Critical`: takes no work until a self check passes.
    Recovering,
}

impl DroneHealth {
    /// Whether a drone in this state may be given (or ask for) new work.
    #[must_use]
    pub fn takes_work(self) -> bool {
        matches!(self, DroneHealth::Healthy)
    }

    /// Whether a drone in this state must hand back every lease it holds, started or not.
    #[must_use]
    pub fn returns_work(self) -> bool {
        matches!(self, DroneHealth::Critical)
    }
}

/// The limits of [`HealthMonitor`]; the defaults are the numbers of DESIGN §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthThresholds {
    /// Memory use (percent) at or above which the drone is `Degraded`.
    pub mem_percent: u8,
    /// Disk use (percent) at or above which the drone is `Degraded`, read only when a sample does
    /// not say how much space is free (an older agent).
    pub disk_percent: u8,
    /// Free space (MiB) on the build volume below which the drone is `Degraded`. An absolute floor,
    /// not a percentage: 90 % of a 2 TB disk still leaves 200 GB for builds, while 90 % of 20 GB
    /// leaves too little for one big package.
    #[serde(default = "default_disk_free_mib")]
    pub disk_free_mib: u64,
    /// A build is slow when it took at least this percentage of its estimate (200 = twice).
    pub slow_build_percent: u32,
    /// This many slow builds in a row degrade the drone.
    pub slow_builds: u32,
    /// Samples a slow-build degradation is held before it is forgotten (0 disables the rule).
    pub slow_cooldown_samples: u32,
    /// This many builder crashes without a completed build in between make the drone `Critical`.
    pub crashes: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            mem_percent: 85,
            disk_percent: 90,
            disk_free_mib: default_disk_free_mib(),
            slow_build_percent: 200,
            slow_builds: 3,
            slow_cooldown_samples: 10,
            crashes: 2,
        }
    }
}

/// 5 GiB: room for the build tree and binary package of all but the largest packages; an operator
/// building browsers or toolchains raises it (`swarm drone --min-free-disk`).
fn default_disk_free_mib() -> u64 {
    5 * 1024
}

impl HealthThresholds {
    /// Whether the sample's memory use is pressure.
    #[must_use]
    pub fn memory_low(&self, sample: &HealthSample) -> bool {
        sample.mem_percent >= self.mem_percent
    }

    /// Whether the sample's build volume is too full to start another build: free space below
    /// the floor, or, when free space is unknown, use at or above the percentage.
    #[must_use]
    pub fn disk_low(&self, sample: &HealthSample) -> bool {
        match sample.disk_free_mib {
            Some(free) => free < self.disk_free_mib,
            None => sample.disk_percent >= self.disk_percent,
        }
    }
}

/// What the agent observed since its previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Memory in use, percent of total.
    pub mem_percent: u8,
    /// Disk in use on the build volume, percent of total.
    pub disk_percent: u8,
    /// Free space on the fullest build volume, MiB; `None` when it could not be read.
    #[serde(default)]
    pub disk_free_mib: Option<u64>,
    /// OOM kills since the previous sample (a delta, not the kernel's running total).
    pub oom_kills: u32,
    /// Builder crashes (killed by a signal, not a package failure) since the previous sample.
    pub crashes: u32,
    /// Result of a self check run since the previous sample, `None` if none ran. Only read while
    /// `Recovering`; the agent runs one whenever [`HealthMonitor::state`] is `Recovering`.
    pub self_check_passed: Option<bool>,
}

/// How long a completed build took against the scheduler's estimate for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTiming {
    /// Wall time the build took, seconds.
    pub took_s: u64,
    /// The estimate it was scheduled with, seconds; 0 means unknown and never counts as slow.
    pub estimate_s: u64,
}

/// The drone's health state plus the little history the transitions need.
///
/// Serializable so the agent can persist it across restarts: a drone that was `Critical` must not
/// come back `Healthy` just because its agent restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthMonitor {
    thresholds: HealthThresholds,
    state: DroneHealth,
    /// Slow builds in a row, most recent last.
    slow_streak: u32,
    /// Samples assessed while the slow streak was over the limit.
    slow_held_samples: u32,
    /// Crashes since the last completed build (or since entering `Critical`).
    crash_count: u32,
}

impl Default for HealthMonitor {
    fn default() -> Self {
        HealthMonitor::new(HealthThresholds::default())
    }
}

impl HealthMonitor {
    /// A monitor for a freshly started drone: `Healthy`, no history.
    #[must_use]
    pub fn new(thresholds: HealthThresholds) -> Self {
        HealthMonitor {
            thresholds,
            state: DroneHealth::Healthy,
            slow_streak: 0,
            slow_held_samples: 0,
            crash_count: 0,
        }
    }

    /// The state after the last [`assess`](Self::assess); what the heartbeat reports.
    #[must_use]
    pub fn state(&self) -> DroneHealth {
        self.state
    }

    /// The limits this monitor judges by.
    #[must_use]
    pub fn thresholds(&self) -> HealthThresholds {
        self.thresholds
    }

    /// Records a build that ran to completion (success or package failure, not a crash). It feeds
    /// the slow-build streak and proves the builder works, which clears the crash count. The state
    /// changes only at the next [`assess`](Self::assess).
    pub fn record_build(&mut self, timing: BuildTiming) {
        self.crash_count = 0;
        if self.is_slow(timing) {
            self.slow_streak = self.slow_streak.saturating_add(1);
        } else {
            self.slow_streak = 0;
            self.slow_held_samples = 0;
        }
    }

    /// Takes one sample and moves to the next state; the only transition function.
    pub fn assess(&mut self, sample: &HealthSample) -> DroneHealth {
        let t = self.thresholds;
        self.crash_count = self.crash_count.saturating_add(sample.crashes);
        let critical = sample.oom_kills > 0 || self.crash_count >= t.crashes;
        let pressure = self.slow_builds_hold() || t.memory_low(sample) || t.disk_low(sample);
        let calm = if pressure {
            DroneHealth::Degraded
        } else {
            DroneHealth::Healthy
        };
        self.state = if critical {
            self.crash_count = 0;
            DroneHealth::Critical
        } else {
            match self.state {
                DroneHealth::Healthy | DroneHealth::Degraded => calm,
                DroneHealth::Critical => DroneHealth::Recovering,
                DroneHealth::Recovering if sample.self_check_passed == Some(true) => calm,
                DroneHealth::Recovering => DroneHealth::Recovering,
            }
        };
        self.state
    }

    /// Whether the slow-build streak degrades the drone in this sample; counts the sample toward
    /// the cooldown and forgets the streak once the cooldown is over.
    fn slow_builds_hold(&mut self) -> bool {
        let t = self.thresholds;
        if self.slow_streak < t.slow_builds.max(1) {
            return false;
        }
        if self.slow_held_samples < t.slow_cooldown_samples {
            self.slow_held_samples += 1;
            return true;
        }
        self.slow_streak = 0;
        self.slow_held_samples = 0;
        false
    }

    fn is_slow(&self, timing: BuildTiming) -> bool {
        timing.estimate_s > 0
            && u128::from(timing.took_s) * 100
                >= u128::from(timing.estimate_s) * u128::from(self.thresholds.slow_build_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [DroneHealth; 4] = [
        DroneHealth::Healthy,
        DroneHealth::Degraded,
        DroneHealth::Critical,
        DroneHealth::Recovering,
    ];

    fn calm() -> HealthSample {
        HealthSample {
            mem_percent: 40,
            disk_percent: 50,
            ..HealthSample::default()
        }
    }

    fn with(f: impl FnOnce(&mut HealthSample)) -> HealthSample {
        let mut s = calm();
        f(&mut s);
        s
    }

    fn slow() -> BuildTiming {
        BuildTiming {
            took_s: 700,
            estimate_s: 300,
        }
    }

    fn on_time() -> BuildTiming {
        BuildTiming {
            took_s: 310,
            estimate_s: 300,
        }
    }

    fn oom() -> HealthSample {
        with(|s| s.oom_kills = 1)
    }

    /// Drives a default monitor into `state` through the public API only.
    fn monitor_in(state: DroneHealth) -> HealthMonitor {
        let mut m = HealthMonitor::default();
        match state {
            DroneHealth::Healthy => {}
            DroneHealth::Degraded => {
                m.assess(&with(|s| s.mem_percent = 95));
            }
            DroneHealth::Critical => {
                m.assess(&oom());
            }
            DroneHealth::Recovering => {
                m.assess(&oom());
                m.assess(&calm());
            }
        }
        assert_eq!(m.state(), state);
        m
    }

    #[test]
    fn default_thresholds_are_the_numbers_of_the_design() {
        let t = HealthThresholds::default();
        assert_eq!((t.mem_percent, t.disk_percent), (85, 90));
        assert_eq!(t.disk_free_mib, 5 * 1024);
        assert_eq!(
            (t.slow_build_percent, t.slow_builds, t.crashes),
            (200, 3, 2)
        );
    }

    #[test]
    fn only_a_healthy_drone_takes_work_and_only_a_critical_one_returns_it() {
        for h in ALL {
            assert_eq!(h.takes_work(), h == DroneHealth::Healthy, "{h:?}");
            assert_eq!(h.returns_work(), h == DroneHealth::Critical, "{h:?}");
        }
    }

    #[test]
    fn a_new_drone_starts_healthy_and_stays_healthy_on_calm_samples() {
        let mut m = HealthMonitor::default();
        assert_eq!(m.state(), DroneHealth::Healthy);
        for _ in 0..50 {
            assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
        }
    }

    #[test]
    fn memory_pressure_degrades_a_healthy_drone() {
        let mut m = HealthMonitor::default();
        assert_eq!(
            m.assess(&with(|s| s.mem_percent = 84)),
            DroneHealth::Healthy
        );
        assert_eq!(
            m.assess(&with(|s| s.mem_percent = 85)),
            DroneHealth::Degraded
        );
    }

    #[test]
    fn disk_pressure_degrades_a_healthy_drone() {
        let mut m = HealthMonitor::default();
        assert_eq!(
            m.assess(&with(|s| s.disk_percent = 89)),
            DroneHealth::Healthy
        );
        assert_eq!(
            m.assess(&with(|s| s.disk_percent = 90)),
            DroneHealth::Degraded
        );
    }

    /// The floor is absolute: a big disk 92 % full still has room, a small one 70 % full may not.
    #[test]
    fn free_space_below_the_floor_degrades_whatever_the_percentage() {
        let mut m = HealthMonitor::default();
        let big_but_full = with(|s| (s.disk_percent, s.disk_free_mib) = (92, Some(40 * 1024)));
        assert_eq!(m.assess(&big_but_full), DroneHealth::Healthy);
        let small = with(|s| (s.disk_percent, s.disk_free_mib) = (70, Some(5 * 1024 - 1)));
        assert_eq!(m.assess(&small), DroneHealth::Degraded);
        let at_floor = with(|s| s.disk_free_mib = Some(5 * 1024));
        assert_eq!(m.assess(&at_floor), DroneHealth::Healthy);
    }

    #[test]
    fn thresholds_saved_before_the_floor_existed_get_the_default_floor() {
        let old = r#"{"mem_percent":85,"disk_percent":90,"slow_build_percent":200,
            "slow_builds":3,"slow_cooldown_samples":10,"crashes":2}"#;
        let t: HealthThresholds = serde_json::from_str(old).expect("old thresholds parse");
        assert_eq!(t, HealthThresholds::default());
    }

    #[test]
    fn a_degraded_drone_is_healthy_again_once_the_pressure_clears() {
        let mut m = HealthMonitor::default();
        assert_eq!(
            m.assess(&with(|s| s.disk_percent = 97)),
            DroneHealth::Degraded
        );
        assert_eq!(
            m.assess(&with(|s| s.disk_percent = 96)),
            DroneHealth::Degraded
        );
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn three_slow_builds_in_a_row_degrade_a_healthy_drone() {
        let mut m = HealthMonitor::default();
        for _ in 0..2 {
            m.record_build(slow());
            assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
        }
        m.record_build(slow());
        assert_eq!(
            m.state(),
            DroneHealth::Healthy,
            "record_build alone changes no state"
        );
        assert_eq!(m.assess(&calm()), DroneHealth::Degraded);
    }

    #[test]
    fn a_build_on_time_breaks_the_slow_streak() {
        let mut m = HealthMonitor::default();
        for timing in [slow(), slow(), on_time(), slow(), slow()] {
            m.record_build(timing);
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn a_build_at_exactly_twice_its_estimate_is_slow() {
        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(BuildTiming {
                took_s: 600,
                estimate_s: 300,
            });
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Degraded);

        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(BuildTiming {
                took_s: 599,
                estimate_s: 300,
            });
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn a_build_without_an_estimate_is_never_slow() {
        let mut m = HealthMonitor::default();
        for _ in 0..5 {
            m.record_build(BuildTiming {
                took_s: 10_000,
                estimate_s: 0,
            });
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn huge_timings_do_not_overflow() {
        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(BuildTiming {
                took_s: u64::MAX,
                estimate_s: u64::MAX / 2,
            });
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Degraded);
        let mut m = HealthMonitor::default();
        m.record_build(BuildTiming {
            took_s: u64::MAX,
            estimate_s: u64::MAX,
        });
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn a_slow_build_degradation_is_held_for_the_cooldown_then_forgotten() {
        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(slow());
        }
        for i in 0..m.thresholds().slow_cooldown_samples {
            assert_eq!(m.assess(&calm()), DroneHealth::Degraded, "sample {i}");
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
        m.record_build(slow());
        m.record_build(slow());
        assert_eq!(
            m.assess(&calm()),
            DroneHealth::Healthy,
            "the old streak is gone"
        );
        m.record_build(slow());
        assert_eq!(m.assess(&calm()), DroneHealth::Degraded);
    }

    #[test]
    fn a_build_on_time_ends_a_slow_build_degradation_early() {
        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(slow());
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Degraded);
        m.record_build(on_time());
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn a_zero_cooldown_disables_slow_build_degradation() {
        let t = HealthThresholds {
            slow_cooldown_samples: 0,
            ..HealthThresholds::default()
        };
        let mut m = HealthMonitor::new(t);
        for _ in 0..5 {
            m.record_build(slow());
        }
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn slow_builds_and_memory_pressure_both_have_to_clear() {
        let mut m = HealthMonitor::default();
        for _ in 0..3 {
            m.record_build(slow());
        }
        assert_eq!(
            m.assess(&with(|s| s.mem_percent = 90)),
            DroneHealth::Degraded
        );
        m.record_build(on_time());
        assert_eq!(
            m.assess(&with(|s| s.mem_percent = 90)),
            DroneHealth::Degraded
        );
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn an_oom_kill_makes_a_drone_in_any_state_critical() {
        for h in ALL {
            let mut m = monitor_in(h);
            assert_eq!(m.assess(&oom()), DroneHealth::Critical, "from {h:?}");
        }
    }

    #[test]
    fn a_single_crash_is_not_critical() {
        let mut m = HealthMonitor::default();
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Healthy);
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn two_crashes_in_one_sample_make_a_drone_critical() {
        let mut m = HealthMonitor::default();
        assert_eq!(m.assess(&with(|s| s.crashes = 2)), DroneHealth::Critical);
    }

    #[test]
    fn crashes_in_separate_samples_add_up_until_a_build_completes() {
        let mut m = HealthMonitor::default();
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Healthy);
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Critical);

        let mut m = HealthMonitor::default();
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Healthy);
        m.record_build(on_time());
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Healthy);
    }

    #[test]
    fn a_degraded_drone_that_keeps_crashing_turns_critical() {
        let mut m = monitor_in(DroneHealth::Degraded);
        m.assess(&with(|s| (s.mem_percent, s.crashes) = (95, 1)));
        assert_eq!(
            m.assess(&with(|s| (s.mem_percent, s.crashes) = (95, 1))),
            DroneHealth::Critical
        );
    }

    #[test]
    fn critical_returns_all_work_and_takes_none() {
        let m = monitor_in(DroneHealth::Critical);
        assert!(m.state().returns_work());
        assert!(!m.state().takes_work());
    }

    #[test]
    fn critical_never_jumps_straight_to_healthy() {
        let mut m = monitor_in(DroneHealth::Critical);
        let perfect = with(|s| s.self_check_passed = Some(true));
        assert_eq!(m.assess(&perfect), DroneHealth::Recovering);
    }

    #[test]
    fn critical_stays_critical_while_oom_kills_continue() {
        let mut m = monitor_in(DroneHealth::Critical);
        assert_eq!(m.assess(&oom()), DroneHealth::Critical);
        assert_eq!(m.assess(&calm()), DroneHealth::Recovering);
    }

    #[test]
    fn the_crashes_that_made_a_drone_critical_are_not_counted_again() {
        let mut m = HealthMonitor::default();
        assert_eq!(m.assess(&with(|s| s.crashes = 2)), DroneHealth::Critical);
        assert_eq!(m.assess(&calm()), DroneHealth::Recovering);
        let passed = with(|s| s.self_check_passed = Some(true));
        assert_eq!(m.assess(&passed), DroneHealth::Healthy);
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Healthy);
    }

    #[test]
    fn recovering_stays_until_the_self_check_passes() {
        let mut m = monitor_in(DroneHealth::Recovering);
        for check in [None, Some(false), None, Some(false)] {
            let s = with(|s| s.self_check_passed = check);
            assert_eq!(m.assess(&s), DroneHealth::Recovering, "{check:?}");
            assert!(!m.state().takes_work());
            assert!(!m.state().returns_work());
        }
        let passed = with(|s| s.self_check_passed = Some(true));
        assert_eq!(m.assess(&passed), DroneHealth::Healthy);
    }

    #[test]
    fn a_recovered_drone_under_pressure_is_degraded_not_healthy() {
        let mut m = monitor_in(DroneHealth::Recovering);
        let s = with(|s| (s.disk_percent, s.self_check_passed) = (93, Some(true)));
        assert_eq!(m.assess(&s), DroneHealth::Degraded);
        assert_eq!(m.assess(&calm()), DroneHealth::Healthy);
    }

    #[test]
    fn the_self_check_is_ignored_outside_recovering() {
        for h in [DroneHealth::Healthy, DroneHealth::Degraded] {
            let mut m = monitor_in(h);
            let s = with(|s| s.self_check_passed = Some(false));
            assert_eq!(m.assess(&s), DroneHealth::Healthy, "from {h:?}");
        }
    }

    #[test]
    fn custom_thresholds_are_respected() {
        let t = HealthThresholds {
            mem_percent: 70,
            crashes: 3,
            ..HealthThresholds::default()
        };
        let mut m = HealthMonitor::new(t);
        assert_eq!(
            m.assess(&with(|s| s.mem_percent = 70)),
            DroneHealth::Degraded
        );
        assert_eq!(m.assess(&with(|s| s.crashes = 2)), DroneHealth::Healthy);
        assert_eq!(m.assess(&with(|s| s.crashes = 1)), DroneHealth::Critical);
    }

    /// Every state against a grid of samples: only the transitions of the module diagram happen.
    #[test]
    fn no_sample_makes_an_illegal_transition() {
        use DroneHealth::*;
        let legal = |from, to| match from {
            Healthy | Degraded => to != Recovering,
            Critical => matches!(to, Critical | Recovering),
            Recovering => true,
        };
        let mut checked = 0;
        for from in ALL {
            for mem_percent in [0, 85, 100, 255] {
                for (disk_percent, disk_free_mib) in
                    [(0, None), (90, None), (95, Some(0)), (95, Some(1 << 20))]
                {
                    for (oom_kills, crashes) in
                        [(0, 0), (0, 1), (0, 2), (1, 0), (u32::MAX, u32::MAX)]
                    {
                        for self_check_passed in [None, Some(false), Some(true)] {
                            let s = HealthSample {
                                mem_percent,
                                disk_percent,
                                disk_free_mib,
                                oom_kills,
                                crashes,
                                self_check_passed,
                            };
                            let mut m = monitor_in(from);
                            let to = m.assess(&s);
                            assert!(legal(from, to), "{from:?} -> {to:?} on {s:?}");
                            assert_eq!(to, m.state());
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 4 * 4 * 5 * 3);
    }

    #[test]
    fn health_is_sent_in_snake_case() {
        let json = serde_json::to_string(&ALL).expect("serializes");
        assert_eq!(json, r#"["healthy","degraded","critical","recovering"]"#);
    }

    #[test]
    fn a_monitor_survives_a_serde_round_trip_mid_recovery() {
        let mut m = monitor_in(DroneHealth::Recovering);
        m.record_build(slow());
        let json = serde_json::to_string(&m).expect("serializes");
        let back: HealthMonitor = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, m);
        assert_eq!(back.state(), DroneHealth::Recovering);
    }
}
