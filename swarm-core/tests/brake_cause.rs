//! The brake engaged for a cause that is not a stale queue sets aside the drones that fail
//! with it and lets the others build everything (h22's finding 1: with 3 of 5 drones on full
//! disks, every package was held and the 2 healthy drones sat idle until an operator acted).

mod common;

use common::*;
use swarm_core::*;

const DISK_FULL: &str = "cannot write /var/tmp/portage: No space left on device";

/// Runs `rounds` rounds in which every drone asks for one package and finishes it: the
/// `broken` ones fail with `detail`, the others build. Returns every output.
fn run(
    h: &mut Harness,
    fleet: &[DroneName],
    broken: usize,
    detail: &str,
    rounds: u64,
) -> Vec<Output> {
    run_span(h, fleet, (1_000, 1_000), rounds, |i, _| i < broken, detail)
}

/// Runs `rounds` rounds from `start` ms, `step` ms apart, in which every drone asks for one
/// package and finishes it: it fails with `detail` when `broken(drone index, now)`.
fn run_span(
    h: &mut Harness,
    fleet: &[DroneName],
    (start, step): (u64, u64),
    rounds: u64,
    broken: impl Fn(usize, u64) -> bool,
    detail: &str,
) -> Vec<Output> {
    let mut all = Vec::new();
    let mut t = start;
    for _ in 0..rounds {
        for (i, d) in fleet.iter().enumerate() {
            h.heartbeat(t, d);
            let Some((_, x, lease)) = assigns(&h.request(t, d, 1)).first().cloned() else {
                continue;
            };
            let outcome = if broken(i, t) {
                failed(FailureClass::Infra, detail)
            } else {
                Outcome::Success
            };
            all.extend(h.finished(t + 500, d, &x, lease, outcome));
        }
        t += step;
        all.extend(h.tick(t));
    }
    all
}

const FETCH: &str = "fetch failed: Couldn't download 'x.tar.xz'";

/// The drones the brake has set aside.
fn set_aside(h: &Harness) -> Vec<String> {
    let brake = h.view().brake();
    brake.set_aside.iter().map(|d| d.to_string()).collect()
}

/// A cause the whole fleet shares (a mirror down at night) sets every drone aside; each gets
/// one trial build a window, and once the cause is gone they pass, return to work, and the
/// brake releases itself: nobody is woken to release it.
#[test]
fn a_cause_on_the_whole_fleet_ends_by_itself_once_trial_builds_pass() {
    let n = 40;
    let (mut h, fleet) = five_drones_and(0..n, "app-misc/good");
    let window = Config::default().brake_window_ms;
    // The mirror is down for the first half hour.
    let fixed_at = 1_800_000;
    let out = run_span(&mut h, &fleet, (1_000, 10_000), 30, |_, _| true, FETCH);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })));
    assert_eq!(set_aside(&h), ["d0", "d1", "d2", "d3", "d4"]);
    let view = h.view();
    let why = view.drones()[0].no_work.clone().unwrap_or_default();
    assert!(why.contains("one trial build every 10m"), "{why}");
    let waiting = view.explain(&atom("app-misc/good39-1"));
    assert!(
        waiting.ends_with("none free (5 set aside by the brake)"),
        "{waiting}"
    );
    let later = run_span(
        &mut h,
        &fleet,
        (301_000, 10_000),
        (fixed_at + 2 * window) / 10_000,
        |_, t| t < fixed_at,
        FETCH,
    );
    // While the mirror is down, each drone is tried once a window, no more.
    let failed_later = events(&later)
        .filter(|e| matches!(e, Event::BuildFailed { .. }))
        .count() as u64;
    let windows = (fixed_at - 301_000).div_ceil(window) + 1;
    assert!(
        failed_later <= 5 * windows,
        "{failed_later} failed trials in {windows} windows"
    );
    assert!(failed_later >= 5, "{}", h.describe(&later));
    let released = events(&later).any(|e| matches!(e, Event::BrakeReleased { operator: false }));
    assert!(released, "{}", h.describe(&later));
    assert!(set_aside(&h).is_empty());
    let all: Vec<Output> = out.into_iter().chain(later).collect();
    let built = events(&all)
        .filter(|e| matches!(e, Event::Built { .. }))
        .count();
    assert_eq!(built, n as usize, "{}", h.describe(&all));
    // The trials used none of the packages' attempts: none is blocked.
    assert!(
        !events(&all).any(|e| matches!(e, Event::Blocked { .. })),
        "{}",
        h.describe(&all)
    );
}

/// A brake engaged for a cause that sets no drone aside (each failed with it once) holds no
/// package and tries no drone: it releases itself a window after its last failure with the
/// cause, instead of stopping every grounding and dead-drone reclaim until an operator acts.
#[test]
fn a_brake_with_no_drone_aside_releases_a_window_after_its_last_failure() {
    let (mut h, fleet) = five_drones_and(0..40, "app-misc/good");
    let window = Config::default().brake_window_ms;
    let out = run_span(&mut h, &fleet, (1_000, 10_000), 1, |_, _| true, FETCH);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })));
    assert!(set_aside(&h).is_empty());
    let rounds = window / 10_000;
    let early = run_span(
        &mut h,
        &fleet,
        (11_000, 10_000),
        rounds - 2,
        |_, _| false,
        FETCH,
    );
    assert!(
        !events(&early).any(|e| matches!(e, Event::BrakeReleased { .. })),
        "released before a window passed: {}",
        h.describe(&early)
    );
    assert!(h.view().brake().engaged);
    let later = run_span(
        &mut h,
        &fleet,
        (11_000 + (rounds - 2) * 10_000, 10_000),
        4,
        |_, _| false,
        FETCH,
    );
    assert!(
        events(&later).any(|e| matches!(e, Event::BrakeReleased { operator: false })),
        "{}",
        h.describe(&later)
    );
    assert!(!h.view().brake().engaged);
}

/// A drone set aside that can try nothing (removed, offline, or with the queue drained)
/// does not keep the brake engaged (h25: it stayed engaged to the end of every such run,
/// stopping groundings and dead-drone reclaims).
#[test]
fn set_aside_drones_that_cannot_try_leave_the_brake_to_release_itself() {
    // Removed: the whole fleet fails, d4 is removed, the cause is fixed, the rest pass.
    let (mut h, fleet) = whole_fleet_failed(40);
    let d4 = fleet[4].clone();
    h.control(301_000, Control::RemoveDrone { drone: d4 });
    assert_eq!(set_aside(&h), ["d0", "d1", "d2", "d3"]);
    let out = healthy_for(&mut h, &fleet[..4], 302_000, 2);
    released_by_itself(&h, &out);
    // Offline: d4 goes silent while set aside; the others pass; the brake releases itself
    // a window after the last failure with the cause, with work still queued.
    let (mut h, fleet) = whole_fleet_failed(1_000);
    let out = healthy_for(&mut h, &fleet[..4], 301_000, 4);
    released_by_itself(&h, &out);
    assert!(
        built(&out) < 1_000,
        "the queue drained: {} built",
        built(&out)
    );
    // Drained: 3 of 5 fail, the 2 healthy build everything before any trial is due.
    let (mut h, fleet) = five_drones_and(0..20, "app-misc/good");
    let windows = 3 * Config::default().brake_window_ms / 10_000;
    let out = run_span(
        &mut h,
        &fleet,
        (1_000, 10_000),
        windows,
        |i, _| i < 3,
        FETCH,
    );
    assert_eq!(built(&out), 20);
    released_by_itself(&h, &out);
    assert!(set_aside(&h).is_empty());
}

/// A drone set aside that takes its trial build and dies holding it does not keep the brake
/// engaged until it is judged offline (h26: 15 minutes at the defaults, with every
/// dead-drone reclaim stopped meanwhile): once its heartbeat is late it tries nothing.
#[test]
fn a_set_aside_drone_that_dies_during_its_trial_leaves_the_brake_to_release_itself() {
    let (mut h, fleet) = whole_fleet_failed(1_000);
    let offline = Config::default().offline_timeout_ms;
    let (mut died_at, mut released_at) = (None, None);
    let mut t = 301_000;
    while t < 2_500_000 && released_at.is_none() {
        let mut out = Vec::new();
        for (i, d) in fleet.iter().enumerate() {
            if i == 4 && died_at.is_some() {
                continue;
            }
            out.extend(h.heartbeat(t, d));
            let Some((_, x, lease)) = assigns(&h.request(t, d, 1)).first().cloned() else {
                continue;
            };
            if i == 4 {
                // Its trial build: it dies holding it.
                died_at = Some(t);
                continue;
            }
            out.extend(h.finished(t + 500, d, &x, lease, Outcome::Success));
        }
        t += 10_000;
        out.extend(h.tick(t));
        if events(&out).any(|e| matches!(e, Event::BrakeReleased { operator: false })) {
            released_at = Some(t);
        }
    }
    let died_at = died_at.expect("d4 took its trial build");
    let released_at = released_at.expect("the brake released itself");
    assert!(
        released_at < died_at + offline,
        "released {} s after d4 died holding its trial, at its offline timeout",
        (released_at - died_at) / 1_000
    );
}

/// A short queue is all backing off between failed trials (retries wait longer than a brake
/// window here): that is not "nothing to try", and the brake stays while the cause does
/// (released, the drones would spend the packages' attempts until it engaged again).
#[test]
fn a_short_queue_backing_off_between_trials_keeps_the_brake() {
    let config = Config {
        retry_base_ms: 20 * 60_000,
        ..Config::default()
    };
    let windows = 6 * config.brake_window_ms / 10_000;
    let (mut h, fleet) = five_drones_with(config, 0..6, "app-misc/good");
    let out = run_span(&mut h, &fleet, (1_000, 10_000), windows, |_, _| true, FETCH);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })));
    assert!(
        !events(&out).any(|e| matches!(e, Event::BrakeReleased { .. } | Event::Blocked { .. })),
        "{}",
        h.describe(&out)
    );
}

/// Five drones whose every build fails with `FETCH` for 300 s, `n` packages queued: all set
/// aside.
fn whole_fleet_failed(n: u32) -> (Harness, Vec<DroneName>) {
    let (mut h, fleet) = five_drones_and(0..n, "app-misc/good");
    run_span(&mut h, &fleet, (1_000, 10_000), 30, |_, _| true, FETCH);
    assert_eq!(set_aside(&h), ["d0", "d1", "d2", "d3", "d4"]);
    (h, fleet)
}

/// `windows` brake windows from `from` ms in which `drones` build without failing.
fn healthy_for(h: &mut Harness, drones: &[DroneName], from: u64, windows: u64) -> Vec<Output> {
    let rounds = windows * Config::default().brake_window_ms / 10_000;
    run_span(h, drones, (from, 10_000), rounds, |_, _| false, FETCH)
}

fn released_by_itself(h: &Harness, out: &[Output]) {
    assert!(
        events(out).any(|e| matches!(e, Event::BrakeReleased { operator: false })),
        "{}",
        h.describe(out)
    );
}

fn built(out: &[Output]) -> usize {
    events(out)
        .filter(|e| matches!(e, Event::Built { .. }))
        .count()
}

/// A drone still broken fails its trial: it stays aside until the next window, and the
/// failure uses no attempt of the package it tried, however long the night.
#[test]
fn a_failed_trial_keeps_the_drone_aside_and_uses_no_attempt() {
    let (mut h, fleet) = five_drones_and(0..40, "app-misc/good");
    let hours = 8;
    let out = run_span(
        &mut h,
        &fleet,
        (1_000, 10_000),
        360 * hours,
        |_, _| true,
        DISK_FULL,
    );
    assert_eq!(set_aside(&h), ["d0", "d1", "d2", "d3", "d4"]);
    let failures: Vec<u32> = events(&out)
        .filter_map(|e| match e {
            Event::BuildFailed { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    // Each drone is tried about once a window (10 minutes), and no more.
    let windows = hours * 6;
    let trials = failures.len() as u64;
    assert!(
        (5 * (windows - 2)..=5 * (windows + 3)).contains(&trials),
        "{trials} failed builds in {windows} windows"
    );
    assert!(failures.iter().all(|a| *a <= 2), "{failures:?}");
    assert!(
        !events(&out).any(|e| matches!(e, Event::Blocked { .. } | Event::BrakeReleased { .. })),
        "{}",
        h.describe(&out)
    );
}

#[test]
fn drones_failing_with_a_shared_cause_are_set_aside_and_the_others_build_everything() {
    let n = 40;
    let (mut h, fleet) = five_drones_and(0..n, "app-misc/good");
    let out = run(&mut h, &fleet, 3, DISK_FULL, 120);
    let engaged = events(&out)
        .find_map(|e| match e {
            Event::BrakeEngaged { reason, held } => Some((reason.clone(), *held)),
            _ => None,
        })
        .expect("the brake engages for the shared cause");
    assert!(engaged.0.contains("disk full"), "{engaged:?}");
    assert_eq!(engaged.1, 0, "no package is held: {engaged:?}");
    let built = events(&out)
        .filter(|e| matches!(e, Event::Built { .. }))
        .count();
    assert_eq!(built, n as usize, "the healthy drones build every package");
    assert!(
        !events(&out).any(|e| matches!(e, Event::Grounded { .. } | Event::Blocked { .. })),
        "{}",
        h.describe(&out)
    );
    // The drones that failed with it get no work until the brake is released.
    let view = h.view();
    let fleet_view = view.drones();
    let set_aside: Vec<_> = fleet_view
        .iter()
        .filter(|d| d.no_work.as_deref().is_some_and(|w| w.contains("brake")))
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(set_aside, ["d0", "d1", "d2"]);
}

/// A stale queue is still the packages' fault: they are held, and no drone is set aside.
#[test]
fn a_stale_queue_still_holds_its_packages_and_sets_no_drone_aside() {
    let (mut h, fleet) = five_drones_and(0..10, "app-misc/stale");
    let slot = "slot conflict on sys-apps/systemd-utils: emerge could not resolve";
    let out = run(&mut h, &fleet, 5, slot, 10);
    let held = events(&out)
        .find_map(|e| match e {
            Event::BrakeEngaged { held, .. } => Some(*held),
            _ => None,
        })
        .expect("engages");
    assert!(held >= 5, "held {held}");
    let view = h.view();
    assert!(view
        .drones()
        .iter()
        .all(|d| !d.no_work.as_deref().is_some_and(|w| w.contains("brake"))));
}

/// A healthy drone with one failure of the same cause after the brake engaged is not set
/// aside (h24: it was, until an operator acted); and once the operator releases the brake,
/// one more such failure does not engage it again for the old ones.
#[test]
fn one_transient_failure_sets_no_healthy_drone_aside_and_a_release_starts_over() {
    let (mut h, fleet) = five_drones_and(0..40, "app-misc/good");
    let fetch = "fetch failed: Couldn't download 'x.tar.xz'";
    let out = run(&mut h, &fleet, 3, fetch, 4);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })));
    // d4 fails once with the same cause, then builds on.
    let t = 6_000;
    let (_, x, lease) = assigns(&h.request(t, &fleet[4], 1))[0].clone();
    h.finished(
        t + 1,
        &fleet[4],
        &x,
        lease,
        failed(FailureClass::Infra, fetch),
    );
    let got = assigns(&h.request(t + 2, &fleet[4], 1));
    assert_eq!(got.len(), 1, "d4 still takes work: {}", h.describe(&[]));
    let (_, x, lease) = got[0].clone();
    h.finished(t + 3, &fleet[4], &x, lease, Outcome::Success);
    // Released by the operator once fixed: one new failure does not engage it again.
    let out = h.control(t + 4, Control::ReleaseBrake);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeReleased { .. })));
    let (_, x, lease) = assigns(&h.request(t + 5, &fleet[0], 1))[0].clone();
    let out = h.finished(
        t + 6,
        &fleet[0],
        &x,
        lease,
        failed(FailureClass::Infra, fetch),
    );
    assert!(
        !events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })),
        "{}",
        h.describe(&out)
    );
    let view = h.view();
    assert!(view.drones().iter().all(|d| d.no_work.is_none()));
}

/// Five registered drones, `d0`..`d4`, and packages `<prefix>{i}-1` queued for `range`.
fn five_drones_and(range: std::ops::Range<u32>, prefix: &str) -> (Harness, Vec<DroneName>) {
    five_drones_with(Config::default(), range, prefix)
}

/// `five_drones_and` under `config`.
fn five_drones_with(
    config: Config,
    range: std::ops::Range<u32>,
    prefix: &str,
) -> (Harness, Vec<DroneName>) {
    let mut h = Harness::with_config(config);
    let fleet: Vec<DroneName> = (0..5).map(|i| drone(&format!("d{i}"))).collect();
    for d in &fleet {
        h.register(0, spec(d.as_str(), 8, 16));
    }
    h.enqueue(
        1,
        range.map(|i| package(&format!("{prefix}{i}-1"))).collect(),
    );
    (h, fleet)
}
