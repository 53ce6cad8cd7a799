//! Who builds what. Pull-based: a drone asks and gets the best packages it may build.

use crate::index::{Index, ReadyKey};
use crate::output::BlockReason;
use crate::state::{Drone, Liveness, Package, PackageState, PkgId, SwarmState};
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
    Unhealthy,
    NotOnline,
    StalePortage(String),
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
            NoWork::Unhealthy => "unhealthy",
            NoWork::NotOnline => "heartbeat late",
            NoWork::StalePortage(_) => "portage snapshot out of date",
            NoWork::Full => "busy",
        };
        f.write_str(s)
    }
}

/// In the ready set: queued, not backing off, dependencies built, not held by the brake.
pub(crate) fn is_ready(st: &SwarmState, p: &Package) -> bool {
    matches!(p.state, PackageState::Queued { retry_at: None })
        && p.unbuilt == 0
        && !(st.brake.engaged && st.brake.held.contains(&p.atom))
}

/// Blocked packages a sweeper drone may retry (not masked, not blocked by hand).
pub(crate) fn is_sweepable(p: &Package) -> bool {
    matches!(
        &p.state,
        PackageState::Blocked { reason, .. }
            if !matches!(reason, BlockReason::Masked | BlockReason::Operator)
    ) && p.unbuilt == 0
}

pub(crate) fn ready_key(id: PkgId, p: &Package) -> ReadyKey {
    ReadyKey {
        priority: Reverse(p.priority),
        critical_path_ms: Reverse(p.cp_ms),
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
    if !d.health.takes_work() {
        return Err(NoWork::Unhealthy);
    }
    if d.liveness != Liveness::Online {
        return Err(NoWork::NotOnline);
    }
    if let Some(expected) = stale_portage(st, d) {
        return Err(NoWork::StalePortage(expected));
    }
    let slots = st.config.slots_for(d.spec.cores);
    let held = d.leases.len() as u32;
    let not_started = st.not_started(d);
    let n = free_slots
        .min(slots.saturating_sub(held))
        .min(st.config.max_prefetch.saturating_sub(not_started));
    if n == 0 {
        Err(NoWork::Full)
    } else {
        Ok(n)
    }
}

/// The snapshot a drone must sync to, if it is behind the queue's.
pub(crate) fn stale_portage(st: &SwarmState, d: &Drone) -> Option<String> {
    let expected = st.expected_portage.as_ref()?;
    let have = d.spec.portage_snapshot.as_ref()?;
    (have < expected).then(|| expected.clone())
}

/// Whether a drone may build a package (hard rules only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    Yes,
    /// Allowed, but the package prefers another drone (it was returned by this one).
    Reluctant,
    FailedHere,
    NeedsRam,
}

pub(crate) fn fit(st: &SwarmState, d: &Drone, p: &Package) -> Fit {
    if p.failed_recently_on(&d.spec.name, st.now, st.config.failure_memory_ms) {
        return Fit::FailedHere;
    }
    if d.spec.ram_mb > 0 && st.ram_need_mb(p.atom.key()) > d.spec.ram_mb {
        return Fit::NeedsRam;
    }
    if p.avoid.as_ref() == Some(&d.spec.name) {
        return Fit::Reluctant;
    }
    Fit::Yes
}

/// The best `n` packages for a drone. Scans the whole ready set in order, never
/// a window: a drone that failed the first N packages still gets the N+1th.
pub(crate) fn pick(st: &SwarmState, ix: &Index, d: &Drone, n: u32) -> Vec<PkgId> {
    let set = if d.spec.name.is_sweeper() {
        &ix.sweepable
    } else {
        &ix.ready
    };
    let mut chosen = Vec::new();
    let mut reluctant = Vec::new();
    for key in set {
        if chosen.len() as u32 >= n {
            break;
        }
        match fit(st, d, st.pkg(key.pkg)) {
            Fit::Yes => chosen.push(key.pkg),
            Fit::Reluctant if reluctant.len() < n as usize => reluctant.push(key.pkg),
            _ => {}
        }
    }
    let missing = (n as usize).saturating_sub(chosen.len());
    chosen.extend(reluctant.into_iter().take(missing));
    chosen
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
            let key = ready_key(lease.pkg, p);
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
        d.liveness != Liveness::Offline
            && !d.spec.name.is_sweeper()
            && matches!(fit(st, d, p), Fit::Yes | Fit::Reluctant)
    })
}
