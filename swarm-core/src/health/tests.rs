//! Tests of the parent module.

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
                for (oom_kills, crashes) in [(0, 0), (0, 1), (0, 2), (1, 0), (u32::MAX, u32::MAX)] {
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
