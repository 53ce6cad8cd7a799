//! The disruption brake. When more than `brake_ratio` of the active fleet (and
//! more than `brake_min_drones` drones) would be grounded, reclaimed for
//! suspicion or escalated within `brake_window`, the fault is almost surely not
//! in the drones: stop disrupting them and hold the packages involved.

use crate::atom::Atom;
use crate::failure::Cause;
use crate::id::DroneName;
use crate::state::{Drone, Liveness, SwarmState};
use crate::time::human_ms;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead and disrupt.
    Allow,
    /// Do not: the brake is on, or this disruption engages it.
    Hold {
        engage: Option<(String, BTreeSet<Atom>)>,
    },
}

/// Drones disrupted within the window, counting `candidate`.
/// Drones disrupted within the window, plus every drone still grounded (a
/// grounding outlives the window), plus `candidate`.
fn disrupted(st: &SwarmState, candidate: Option<&DroneName>) -> BTreeSet<DroneName> {
    let window = st.config.brake_window_ms;
    let recent = st
        .brake
        .disrupted
        .iter()
        .filter(|(_, at)| st.now.since(**at) < window)
        .map(|(d, _)| d.clone());
    let grounded = st
        .drones
        .values()
        .filter(|d| d.is_grounded(st.now))
        .map(|d| d.spec.name.clone());
    recent.chain(grounded).chain(candidate.cloned()).collect()
}

/// Drones that count as the fleet: registered, not offline, not stopped.
pub(crate) fn active(st: &SwarmState) -> u32 {
    st.drones
        .values()
        .filter(|d| matches!(d.liveness(), Liveness::Online | Liveness::Suspect))
        .count() as u32
}

/// Whether `count` disrupted drones out of `active` is too many.
pub(crate) fn too_many(st: &SwarmState, count: u32, active: u32) -> bool {
    count > st.config.brake_min_drones
        && u64::from(count) * 100 > u64::from(st.config.brake_ratio_percent) * u64::from(active)
}

/// May `candidate` be disrupted (`what`: "grounding", "reclaim", "escalation")?
pub(crate) fn assess(st: &SwarmState, candidate: &DroneName, what: &str) -> Verdict {
    if !st.config.brake_enabled {
        return Verdict::Allow;
    }
    if st.brake.engaged {
        return Verdict::Hold { engage: None };
    }
    let set = disrupted(st, Some(candidate));
    let active = active(st).max(set.len() as u32);
    if !too_many(st, set.len() as u32, active) {
        return Verdict::Allow;
    }
    let window = st.config.brake_window_ms;
    let mut by_package: BTreeMap<&Atom, BTreeSet<&DroneName>> = BTreeMap::new();
    let mut details: BTreeMap<&str, u32> = BTreeMap::new();
    for (at, drone, atom, detail) in &st.brake.failures {
        if st.now.since(*at) < window && set.contains(drone) {
            by_package.entry(atom).or_default().insert(drone);
            *details.entry(detail.as_str()).or_default() += 1;
        }
    }
    let held: BTreeSet<Atom> = by_package.keys().map(|a| (*a).clone()).collect();
    let shared = by_package.values().filter(|ds| ds.len() > 1).count();
    let common = details
        .iter()
        .max_by_key(|(d, n)| (**n, std::cmp::Reverse(*d)))
        .map(|(d, _)| *d)
        .filter(|d| !d.is_empty());
    let total: u32 = details.values().sum();
    let dominant = details
        .values()
        .max()
        .is_some_and(|n| 2 * n >= total && total > 0);
    let cause = common
        .map(|c| format!(" (most often: {c})"))
        .unwrap_or_default();
    let reason = if shared > 0 || dominant {
        format!(
            "queue looks stale: {}/{} drones failing within {}{cause}",
            set.len(),
            active,
            human_ms(window)
        )
    } else {
        format!(
            "{}/{} drones would be disrupted within {} (last: {what} of {candidate}){cause}",
            set.len(),
            active,
            human_ms(window)
        )
    };
    Verdict::Hold {
        engage: Some((reason, held)),
    }
}

/// Fewest distinct packages one cause must fail before it is judged common.
pub(crate) const COMMON_CAUSE_MIN_PACKAGES: usize = 5;

/// A failure cause shared by many packages on too many of the active drones
/// within the window (the same share that engages the brake for
/// disruptions): the fault is in what they were asked to build, not in them.
/// Returns the cause, the brake's reason and the packages to hold. `diagnose`
/// reads a failure's detail (the swarm passes its memo of [`crate::failure::diagnose`]).
pub(crate) fn common_cause(
    st: &SwarmState,
    mut diagnose: impl FnMut(&str) -> Option<Cause>,
) -> Option<CommonCause> {
    let window = st.config.brake_window_ms;
    let mut by_cause: BTreeMap<Cause, (BTreeSet<&Atom>, BTreeSet<&DroneName>)> = BTreeMap::new();
    for (at, drone, atom, detail) in &st.brake.failures {
        if st.now.since(*at) >= window {
            continue;
        }
        let Some(cause) = diagnose(detail).filter(Cause::may_be_shared) else {
            continue;
        };
        let e = by_cause.entry(cause).or_default();
        e.0.insert(atom);
        e.1.insert(drone);
    }
    let active = active(st);
    let (cause, (atoms, drones)) = by_cause
        .into_iter()
        .filter(|(_, (atoms, drones))| {
            atoms.len() >= COMMON_CAUSE_MIN_PACKAGES
                && too_many(st, drones.len() as u32, active.max(drones.len() as u32))
        })
        .max_by_key(|(c, (atoms, _))| (atoms.len(), std::cmp::Reverse(c.clone())))?;
    let (n, d) = (atoms.len(), drones.len());
    let failed: BTreeSet<Atom> = atoms.into_iter().cloned().collect();
    if cause.means_stale_queue() {
        let reason = format!(
            "queue looks stale: {n} packages failed with a {cause} on {d} drones within {}; \
             run `swarm fresh`",
            human_ms(window)
        );
        return Some(CommonCause {
            cause,
            reason,
            failed,
            drones: BTreeSet::new(),
        });
    }
    let reason = format!(
        "{n} packages failed on {d} drones within {}, all with one cause ({cause}): the fault \
         is not in the packages; drones failing with it again are set aside with one trial \
         build every {}, and the brake releases itself once they pass (or `swarm control \
         release_brake`)",
        human_ms(window),
        human_ms(window)
    );
    let drones = repeatedly_failing(st, &cause, diagnose);
    Some(CommonCause {
        cause,
        reason,
        failed,
        drones,
    })
}

/// Drones with at least two failures with `cause` within the window: the ones the brake
/// sets aside. One failure is not enough (h24: a healthy drone with one transient fetch
/// failure was set aside until an operator acted).
pub(crate) fn repeatedly_failing(
    st: &SwarmState,
    cause: &Cause,
    mut diagnose: impl FnMut(&str) -> Option<Cause>,
) -> BTreeSet<DroneName> {
    let window = st.config.brake_window_ms;
    let mut count: BTreeMap<&DroneName, u32> = BTreeMap::new();
    for (at, drone, _, detail) in &st.brake.failures {
        if st.now.since(*at) < window && diagnose(detail).as_ref() == Some(cause) {
            *count.entry(drone).or_default() += 1;
        }
    }
    count
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(d, _)| d.clone())
        .collect()
}

/// Whether a drone the brake set aside may take a trial build now: it holds no work, and
/// `brake_window_ms` passed since it was set aside or last tried. Otherwise how long until
/// the next (`None`: it still holds work, a trial build perhaps). One build per window
/// tells whether the cause is gone without spending the queue on a drone still broken.
pub(crate) fn trial_due(st: &SwarmState, d: &Drone) -> Result<(), Option<u64>> {
    if !d.leases.is_empty() {
        return Err(None);
    }
    let every = st.config.brake_window_ms;
    match st.brake.trials.get(&d.spec.name) {
        Some(at) if st.now.since(*at) < every => Err(Some(every - st.now.since(*at))),
        _ => Ok(()),
    }
}

/// What the brake does about a common cause: a stale queue holds the packages that failed
/// with it (every drone would fail them); any other cause sets aside the drones that failed
/// with it (the fault is theirs, or their network's), and their packages are forgiven.
pub(crate) struct CommonCause {
    pub(crate) cause: Cause,
    pub(crate) reason: String,
    /// Packages whose failures the cause explains, to forgive.
    pub(crate) failed: BTreeSet<Atom>,
    /// Drones that take no new work while the brake is engaged.
    pub(crate) drones: BTreeSet<DroneName>,
}

impl CommonCause {
    /// Packages to hold: those that failed with a stale queue, none for any other cause.
    pub(crate) fn held(&self) -> BTreeSet<Atom> {
        if self.cause.means_stale_queue() {
            self.failed.clone()
        } else {
            BTreeSet::new()
        }
    }
}

/// Whether an engaged brake may release: the disrupted share fell.
pub(crate) fn may_release(st: &SwarmState) -> bool {
    let count = disrupted(st, None).len() as u32;
    !too_many(st, count, active(st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input::DroneSpec;
    use crate::state::Drone;
    use crate::time::Timestamp;

    fn fleet(n: usize) -> SwarmState {
        let mut st = SwarmState::new(Config::default());
        st.now = Timestamp(1_000_000);
        for i in 0..n {
            let name = DroneName::new(format!("d{i}")).unwrap_or_default();
            let spec = DroneSpec {
                name: name.clone(),
                ..DroneSpec::default()
            };
            st.drones.insert(name, Drone::new(spec, st.now));
        }
        st
    }

    fn name(i: usize) -> DroneName {
        DroneName::new(format!("d{i}")).unwrap_or_default()
    }

    #[test]
    fn two_of_five_may_be_grounded_but_the_third_engages_the_brake() {
        let mut st = fleet(5);
        assert_eq!(assess(&st, &name(0), "grounding"), Verdict::Allow);
        st.brake.disrupted.insert(name(0), st.now);
        assert_eq!(assess(&st, &name(1), "grounding"), Verdict::Allow);
        st.brake.disrupted.insert(name(1), st.now);
        assert!(matches!(
            assess(&st, &name(2), "grounding"),
            Verdict::Hold { engage: Some(_) }
        ));
    }

    #[test]
    fn disruptions_outside_the_window_do_not_count() {
        let mut st = fleet(5);
        st.brake.disrupted.insert(name(0), Timestamp(0));
        st.brake.disrupted.insert(name(1), Timestamp(0));
        assert_eq!(assess(&st, &name(2), "grounding"), Verdict::Allow);
    }

    #[test]
    fn small_fleets_never_brake() {
        let mut st = fleet(2);
        st.brake.disrupted.insert(name(0), st.now);
        assert_eq!(assess(&st, &name(1), "grounding"), Verdict::Allow);
    }

    #[test]
    fn a_stale_queue_is_named_in_the_reason() {
        let mut st = fleet(5);
        let atom = crate::atom::Atom::parse("dev-libs/foo-1").unwrap_or_else(|_| unreachable!());
        for i in 0..2 {
            st.brake.disrupted.insert(name(i), st.now);
        }
        for i in 0..3 {
            st.brake
                .failures
                .push_back((st.now, name(i), atom.clone(), "slot conflict".into()));
        }
        match assess(&st, &name(2), "grounding") {
            Verdict::Hold {
                engage: Some((reason, held)),
            } => {
                assert!(
                    reason.starts_with("queue looks stale: 3/5 drones"),
                    "{reason}"
                );
                assert!(reason.contains("slot conflict"));
                assert_eq!(held.len(), 1);
            }
            other => panic!("expected the brake to engage, got {other:?}"),
        }
    }

    /// `n` failures, package `i` on drone `i % drones`, with `detail`.
    fn failing(st: &mut SwarmState, n: usize, drones: usize, detail: &str) {
        for i in 0..n {
            let atom = Atom::parse(&format!("=dev-libs/p{i}-1")).expect("atom");
            st.brake
                .failures
                .push_back((st.now, name(i % drones), atom, detail.to_owned()));
        }
    }

    #[test]
    fn one_cause_on_many_packages_and_most_drones_engages_the_brake_with_its_name() {
        let slot = "slot conflict on sys-apps/systemd-utils: emerge could not resolve";
        let mut st = fleet(5);
        failing(&mut st, 14, 5, slot);
        let found = common_cause(&st, crate::failure::diagnose).expect("engages");
        let held = found.held();
        let CommonCause {
            cause,
            reason,
            drones,
            ..
        } = found;
        assert_eq!(cause.to_string(), "slot conflict on sys-apps/systemd-utils");
        assert!(drones.is_empty(), "a stale queue is no drone's fault");
        assert_eq!(
            reason,
            "queue looks stale: 14 packages failed with a slot conflict on \
             sys-apps/systemd-utils on 5 drones within 10m; run `swarm fresh`"
        );
        assert_eq!(held.len(), 14);

        let mut st = fleet(5);
        failing(&mut st, COMMON_CAUSE_MIN_PACKAGES - 1, 4, slot);
        assert_eq!(
            common_cause(&st, crate::failure::diagnose).map(|c| c.reason),
            None,
            "too few packages"
        );
        let mut st = fleet(5);
        failing(&mut st, 14, 2, slot);
        assert_eq!(
            common_cause(&st, crate::failure::diagnose).map(|c| c.reason),
            None,
            "two of five drones is not most of the fleet"
        );
        let mut st = fleet(5);
        failing(
            &mut st,
            14,
            5,
            "compile phase failed: * ERROR: x failed (compile phase):",
        );
        assert_eq!(
            common_cause(&st, crate::failure::diagnose).map(|c| c.reason),
            None,
            "a package's own failure is never shared"
        );
        let mut st = fleet(5);
        failing(&mut st, 14, 5, slot);
        st.now = Timestamp(st.now.0 + st.config.brake_window_ms);
        assert_eq!(
            common_cause(&st, crate::failure::diagnose).map(|c| c.reason),
            None,
            "outside the window"
        );
        let mut st = fleet(5);
        failing(&mut st, 8, 4, "fetch failed: Couldn't download 'x.tar.xz'");
        let found = common_cause(&st, crate::failure::diagnose).expect("engages");
        assert!(
            found.reason.starts_with(
                "8 packages failed on 4 drones within 10m, all with one cause (fetch failed)"
            ),
            "{}",
            found.reason
        );
        // Not a stale queue: the drones that failed with it are set aside, no package is held.
        assert!(found.held().is_empty());
        assert_eq!(found.failed.len(), 8);
        assert_eq!(found.drones, (0..4).map(name).collect());
    }
}
