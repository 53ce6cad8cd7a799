//! Who builds what. Pull-based: a drone asks and gets the best packages it may build.

use crate::health::DroneHealth;
use crate::index::{Index, ReadyKey};
use crate::output::BlockReason;
use crate::policy::brake;
use crate::portage::Gate;
use crate::state::{Drone, Liveness, Package, PackageState, PkgId, SwarmState};
use crate::time::human_ms;
use std::cmp::Reverse;
use std::fmt;

/// Why a drone gets no work right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoWork {
    SwarmPaused,
    DronePaused,
    Drained,
    Grounded,
    UploadHold,
    /// Its builds failed with the cause the brake is engaged for. It gets a trial build every
    /// `every_ms`, the next in `next_in_ms` (`None`: one is running, or it still holds work).
    BrakeCause {
        next_in_ms: Option<u64>,
        every_ms: u64,
    },
    /// The drone's own health assessment says no (never `Healthy`).
    Unhealthy(DroneHealth),
    NotOnline,
    /// Told to sync to this Portage snapshot now.
    SyncPortage(String),
    /// Told to sync to this snapshot recently; waiting for it.
    SyncPending(String),
    /// An environment is expected and the drone reports none.
    EnvUnknown,
    /// No profile admits the drone's environment: how it differs from the closest one.
    EnvMismatch(String),
    Full,
}

impl fmt::Display for NoWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            NoWork::SwarmPaused => "the swarm is paused",
            NoWork::DronePaused => "paused",
            NoWork::Drained => "drained",
            NoWork::Grounded => "grounded",
            NoWork::UploadHold => "held after upload failures",
            NoWork::BrakeCause {
                next_in_ms,
                every_ms,
            } => {
                let next = match next_in_ms {
                    Some(ms) => format!("the next in {}", human_ms(*ms)),
                    None => "it still holds work".to_owned(),
                };
                return write!(
                    f,
                    "its builds failed with the cause the brake is engaged for: one trial build \
                     every {} ({next}), and a success returns it to work",
                    human_ms(*every_ms)
                );
            }
            NoWork::Unhealthy(DroneHealth::Critical) => {
                "critical: OOM kills or builder crashes; it returns its work"
            }
            NoWork::Unhealthy(DroneHealth::Recovering) => "recovering: waiting for its self check",
            NoWork::Unhealthy(_) => {
                "degraded: it reports memory, disk or slow-build pressure (its log names which)"
            }
            NoWork::NotOnline => "heartbeat late",
            NoWork::SyncPortage(_) => "portage snapshot differs from the queue's",
            NoWork::SyncPending(_) => "waiting for its Portage sync",
            NoWork::Full => "busy",
            NoWork::EnvUnknown => {
                "reports no build environment, and one is expected (an older or a v3 agent)"
            }
            NoWork::EnvMismatch(why) => return f.write_str(why),
        };
        f.write_str(s)
    }
}

/// In the ready set: queued, not backing off, dependencies built, not held by the brake.
pub(crate) fn is_ready(st: &SwarmState, p: &Package) -> bool {
    matches!(*p.state(), PackageState::Queued { retry_at: None })
        && p.unbuilt == 0
        && !(st.brake.engaged && st.brake.held.contains(&p.atom))
}

/// Blocked packages a sweeper drone may retry (not masked, not blocked by hand).
pub(crate) fn is_sweepable(p: &Package) -> bool {
    matches!(
        p.state(),
        PackageState::Blocked { reason, .. }
            if !matches!(reason, BlockReason::Masked | BlockReason::Operator)
    ) && p.unbuilt == 0
}

pub(crate) fn ready_key(st: &SwarmState, id: PkgId, p: &Package) -> ReadyKey {
    let fifo = st.config.ordering == crate::config::Ordering::Fifo;
    ReadyKey {
        priority: Reverse(if fifo { 0 } else { p.priority }),
        critical_path_ms: Reverse(if fifo { 0 } else { p.cp_ms }),
        order: p.order,
        pkg: id,
    }
}

/// How many new leases a drone may take now, or why none.
pub(crate) fn capacity(st: &SwarmState, d: &Drone, free_slots: u32) -> Result<u32, NoWork> {
    let now = st.now;
    if st.paused {
        return Err(NoWork::SwarmPaused);
    }
    if d.paused {
        return Err(NoWork::DronePaused);
    }
    if d.drained {
        return Err(NoWork::Drained);
    }
    if d.is_grounded(now) {
        return Err(NoWork::Grounded);
    }
    if d.upload_hold_until.is_some_and(|u| u > now) {
        return Err(NoWork::UploadHold);
    }
    let on_trial = st.brake.sets_aside(&d.spec.name);
    if on_trial {
        if let Err(next_in_ms) = brake::trial_due(st, d) {
            return Err(NoWork::BrakeCause {
                next_in_ms,
                every_ms: st.config.brake_window_ms,
            });
        }
    }
    if !d.health.takes_work() {
        return Err(NoWork::Unhealthy(d.health));
    }
    if d.liveness() != Liveness::Online {
        return Err(NoWork::NotOnline);
    }
    match portage_gate(st, d) {
        Gate::Open => {}
        Gate::Sync(expected) => return Err(NoWork::SyncPortage(expected)),
        Gate::Syncing(expected) => return Err(NoWork::SyncPending(expected)),
    }
    let env = &d.spec.env;
    if !st.admitted_by_some_profile(env) {
        if env.is_empty() {
            return Err(NoWork::EnvUnknown);
        }
        return Err(NoWork::EnvMismatch(st.closest_profile_mismatch(env)));
    }
    let slots = st.config.slots_for(d.spec.cores);
    let held = d.leases.len() as u32;
    let not_started = st.not_started(d);
    let n = free_slots
        .min(slots.saturating_sub(held))
        .min(st.config.max_prefetch.saturating_sub(not_started));
    if n == 0 {
        Err(NoWork::Full)
    } else if on_trial {
        Ok(1)
    } else {
        Ok(n)
    }
}

/// Whether a drone's Portage snapshot lets it take work (see `portage::gate`).
pub(crate) fn portage_gate(st: &SwarmState, d: &Drone) -> Gate {
    crate::portage::gate(
        st.expected_portage.as_deref(),
        d.spec.portage_snapshot.as_deref(),
        d.sync_asked.0.as_ref(),
        st.now,
    )
}

/// Whether a drone may build a package (hard rules only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    Yes,
    /// Allowed, but the package prefers another drone (it was returned by this one).
    Reluctant,
    FailedHere,
    NeedsRam,
    /// The package's profile does not admit the drone's environment (or no longer exists).
    OtherProfile,
}

pub(crate) fn fit(st: &SwarmState, d: &Drone, p: &Package) -> Fit {
    if !st
        .expected_env_of(&p.profile)
        .is_some_and(|e| e.admits(&d.spec.env))
    {
        return Fit::OtherProfile;
    }
    fit_ignoring_profile(st, d, p)
}

/// [`fit`] without the profile rule: environments come back into line, so a package is not
/// blocked for want of a matching drone, only for want of one that could build it at all.
fn fit_ignoring_profile(st: &SwarmState, d: &Drone, p: &Package) -> Fit {
    if p.failed_recently_on(&d.spec.name, st.now, st.config.failure_memory_ms) {
        return Fit::FailedHere;
    }
    if d.spec.ram_mb > 0 && st.ram_need_mb(&p.key) > d.spec.ram_mb {
        return Fit::NeedsRam;
    }
    if p.avoid.as_ref() == Some(&d.spec.name) {
        return Fit::Reluctant;
    }
    Fit::Yes
}

/// The best `n` packages for a drone. Scans the whole ready set in order, never
/// a window: a drone that failed the first N packages still gets the N+1th.
///
/// A drone never holds two leases of one atom (the same atom queued for two profiles is two
/// packages): its reports name only the atom (the v3 wire), so the one lease of it it holds is
/// what they mean. A package whose atom it holds already waits for another drone, or for this
/// one to finish.
pub(crate) fn pick(st: &SwarmState, ix: &Index, d: &Drone, n: u32) -> Vec<PkgId> {
    let set = if d.spec.name.is_sweeper() {
        &ix.sweepable
    } else {
        &ix.ready
    };
    let mut held = held_atoms(st, d);
    let mut chosen = Vec::new();
    let mut reluctant = Vec::new();
    for key in set {
        if chosen.len() as u32 >= n {
            break;
        }
        let p = st.pkg(key.pkg);
        if held.contains(&&p.atom) {
            continue;
        }
        match fit(st, d, p) {
            Fit::Yes => {
                chosen.push(key.pkg);
                held.push(&p.atom);
            }
            Fit::Reluctant if reluctant.len() < n as usize => reluctant.push(key.pkg),
            _ => {}
        }
    }
    for pkg in reluctant {
        let atom = &st.pkg(pkg).atom;
        if chosen.len() as u32 >= n {
            break;
        }
        if !held.contains(&atom) {
            chosen.push(pkg);
            held.push(atom);
        }
    }
    chosen
}

/// The atoms a drone holds live leases of (at most one lease each).
pub(crate) fn held_atoms<'a>(st: &'a SwarmState, d: &Drone) -> Vec<&'a crate::atom::Atom> {
    d.leases
        .iter()
        .filter_map(|l| st.leases.get(l))
        .map(|l| &l.package)
        .collect()
}

/// Work stealing for an idle drone: a not-started lease from the donor with the
/// most not-started work. The donor keeps at least one lease; started builds are
/// never candidates.
pub(crate) fn pick_steal(st: &SwarmState, thief: &Drone) -> Option<crate::id::LeaseId> {
    if !thief.leases.is_empty() || thief.spec.name.is_sweeper() {
        return None;
    }
    let mut best: Option<(u32, &crate::id::DroneName, ReadyKey, crate::id::LeaseId)> = None;
    for donor in st.drones.values() {
        if donor.leases.len() < 2 || donor.spec.name == thief.spec.name {
            continue;
        }
        let mut donor_best: Option<(ReadyKey, crate::id::LeaseId)> = None;
        let mut not_started = 0;
        for lid in &donor.leases {
            let Some(lease) = st.leases.get(lid) else {
                continue;
            };
            if lease.started_at.is_some() || lease.sweep.is_some() {
                continue;
            }
            not_started += 1;
            let p = st.pkg(lease.pkg);
            // Only what would be ready if it were queued: a dependency queued after
            // the lease was issued holds it back, as does the brake.
            let held = st.brake.engaged && st.brake.held.contains(&p.atom);
            if p.unbuilt > 0 || held || fit(st, thief, p) != Fit::Yes {
                continue;
            }
            let key = ready_key(st, lease.pkg, p);
            if donor_best.is_none_or(|(k, _)| key < k) {
                donor_best = Some((key, *lid));
            }
        }
        if let Some((key, lid)) = donor_best {
            let better = match &best {
                None => true,
                Some((n, name, k, _)) => {
                    not_started > *n || (not_started == *n && (key, &donor.spec.name) < (*k, *name))
                }
            };
            if better {
                best = Some((not_started, &donor.spec.name, key, lid));
            }
        }
    }
    best.map(|(_, _, _, lid)| lid)
}

/// Drones that could build a package if they had room (for blocking and `explain`).
pub(crate) fn eligible_drones<'a>(
    st: &'a SwarmState,
    p: &'a Package,
) -> impl Iterator<Item = &'a Drone> + 'a {
    st.drones.values().filter(move |d| {
        matches!(d.liveness(), Liveness::Online | Liveness::Suspect)
            && !d.spec.name.is_sweeper()
            && matches!(fit_ignoring_profile(st, d, p), Fit::Yes | Fit::Reluctant)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::Atom;
    use crate::config::Config;
    use crate::id::{DroneName, Epoch, LeaseId};
    use crate::input::{DroneSpec, PackageSpec};
    use crate::state::Lease;
    use crate::time::Timestamp;

    fn name(s: &str) -> DroneName {
        DroneName::new(s).unwrap_or_default()
    }

    fn world(packages: usize) -> (SwarmState, Index) {
        let mut st = SwarmState::new(Config::default());
        st.now = Timestamp(1_000_000);
        let mut ix = Index::default();
        for i in 0..packages {
            let atom = Atom::parse(&format!("dev-libs/p{i}-1")).unwrap_or_else(|_| unreachable!());
            let p = st.new_package(&PackageSpec::new(atom));
            st.next_order += 1;
            let id = PkgId(i as u32);
            Index::set_member(
                &mut ix.ready,
                &mut ix.ready_key,
                id,
                Some(ready_key(&st, id, &p)),
            );
            st.packages.push(std::sync::Arc::new(p));
        }
        for (n, cores, ram_gb) in [("small", 8, 16), ("big", 24, 64)] {
            let spec = DroneSpec {
                name: name(n),
                cores,
                ram_mb: ram_gb * 1024,
                ..DroneSpec::default()
            };
            st.drones.insert(name(n), Drone::new(spec, st.now));
        }
        (st, ix)
    }

    fn give(st: &mut SwarmState, drone: &str, pkg: u32, started: bool) -> LeaseId {
        let id = LeaseId(st.next_lease);
        st.next_lease += 1;
        let package = st.pkg(PkgId(pkg)).atom.clone();
        st.pkg_mut(PkgId(pkg))
            .enter(PackageState::Assigned { lease: id })
            .unwrap_or_else(|e| unreachable!("{e}"));
        let lease = Lease {
            id,
            drone: name(drone),
            epoch: Epoch(1),
            pkg: PkgId(pkg),
            package,
            issued_at: st.now,
            started_at: started.then_some(st.now),
            sweep: None,
        };
        st.leases.insert(id, lease);
        if let Some(d) = st.drones.get_mut(&name(drone)) {
            d.leases.insert(id);
        }
        id
    }

    #[test]
    fn a_drone_that_failed_the_head_of_the_queue_gets_the_next_package() {
        let (mut st, ix) = world(60);
        let now = st.now;
        for i in 0..50 {
            st.pkg_mut(PkgId(i as u32))
                .failed_on
                .insert(name("small"), now);
        }
        let d = &st.drones[&name("small")];
        assert_eq!(pick(&st, &ix, d, 1), vec![PkgId(50)]);
    }

    #[test]
    fn failures_are_forgotten_after_the_memory_window() {
        let (mut st, ix) = world(2);
        st.pkg_mut(PkgId(0))
            .failed_on
            .insert(name("small"), Timestamp(0));
        st.now = Timestamp(st.config.failure_memory_ms);
        assert_eq!(
            pick(&st, &ix, &st.drones[&name("small")], 1),
            vec![PkgId(0)]
        );
    }

    #[test]
    fn a_returned_package_prefers_another_drone_but_never_starves() {
        let (mut st, ix) = world(2);
        st.pkg_mut(PkgId(0)).avoid = Some(name("small"));
        let d = &st.drones[&name("small")];
        assert_eq!(
            pick(&st, &ix, d, 1),
            vec![PkgId(1)],
            "prefers the other package"
        );
        assert_eq!(
            pick(&st, &ix, d, 2),
            vec![PkgId(1), PkgId(0)],
            "but takes it when nothing else is left"
        );
    }

    #[test]
    fn packages_that_need_more_ram_go_to_bigger_drones() {
        let (mut st, ix) = world(1);
        st.learned.entry("dev-libs/p0".into()).or_default().ram_mb = 20 * 1024;
        assert!(pick(&st, &ix, &st.drones[&name("small")], 1).is_empty());
        assert_eq!(pick(&st, &ix, &st.drones[&name("big")], 1), vec![PkgId(0)]);
    }

    #[test]
    fn capacity_is_capped_by_slots_and_prefetch() {
        let (mut st, _) = world(8);
        assert_eq!(
            capacity(&st, &st.drones[&name("small")], 5),
            Ok(2),
            "8 cores: 2 slots"
        );
        assert_eq!(
            capacity(&st, &st.drones[&name("big")], 5),
            Ok(2),
            "prefetch caps 6 slots at 2"
        );
        give(&mut st, "big", 0, true);
        give(&mut st, "big", 1, true);
        give(&mut st, "big", 2, false);
        assert_eq!(capacity(&st, &st.drones[&name("big")], 5), Ok(1));
        give(&mut st, "small", 3, false);
        give(&mut st, "small", 4, true);
        assert_eq!(
            capacity(&st, &st.drones[&name("small")], 5),
            Err(NoWork::Full)
        );
    }

    #[test]
    fn gates_say_why_a_drone_gets_nothing() {
        let (mut st, _) = world(1);
        let small = name("small");
        st.paused = true;
        assert_eq!(
            capacity(&st, &st.drones[&small], 1),
            Err(NoWork::SwarmPaused)
        );
        st.paused = false;
        st.expected_portage = Some("2026-11-20 00:00".into());
        if let Some(d) = st.drones.get_mut(&small) {
            d.spec.portage_snapshot = Some("2026-11-19".into());
        }
        assert_eq!(
            capacity(&st, &st.drones[&small], 1),
            Err(NoWork::SyncPortage("2026-11-20 00:00".into()))
        );
        if let Some(d) = st.drones.get_mut(&small) {
            d.spec.portage_snapshot = Some("2026-11-20".into());
            d.health = DroneHealth::Degraded;
        }
        assert_eq!(
            capacity(&st, &st.drones[&small], 1),
            Err(NoWork::Unhealthy(DroneHealth::Degraded))
        );
        if let Some(d) = st.drones.get_mut(&small) {
            d.health = crate::health::DroneHealth::Healthy;
            d.grounded_until = Some(Timestamp(st.now.0 + 1));
        }
        assert_eq!(capacity(&st, &st.drones[&small], 1), Err(NoWork::Grounded));
    }

    #[test]
    fn stealing_takes_not_started_work_from_the_busiest_donor_and_leaves_it_one() {
        let (mut st, _) = world(4);
        let thief = Drone::new(
            DroneSpec {
                name: name("idle"),
                cores: 4,
                ..DroneSpec::default()
            },
            st.now,
        );
        give(&mut st, "small", 0, true);
        assert_eq!(
            pick_steal(&st, &thief),
            None,
            "a single lease is never taken"
        );
        let not_started = give(&mut st, "small", 1, false);
        assert_eq!(pick_steal(&st, &thief), Some(not_started));
        if let Some(l) = st.leases.get_mut(&not_started) {
            l.started_at = Some(st.now);
        }
        assert_eq!(
            pick_steal(&st, &thief),
            None,
            "started builds are never stolen"
        );
        let b1 = give(&mut st, "big", 2, false);
        give(&mut st, "big", 3, false);
        assert_eq!(
            pick_steal(&st, &thief),
            Some(b1),
            "the donor with most not-started work"
        );
    }
}
