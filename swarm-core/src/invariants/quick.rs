//! The per-step check's fast path. `Swarm::check_invariants` runs after every simulated step,
//! so it first asks [`holds`], which proves the same invariants in one pass over the drones
//! (one lease lookup per lease, no allocation, no lookup by name). `holds` may only say yes
//! when the full check would pass; whenever it cannot prove that, it says no and the full
//! check runs and names the violation, exactly as before.

use crate::atom::Atom;
use crate::policy::{escalate, liveness};
use crate::state::{Drone, Liveness, SwarmState};
use crate::swarm::Swarm;
use crate::violation::{fail, Violation};

/// Most leases one drone may hold for the fast path; more goes to the full check.
const HELD_MAX: usize = 16;

/// Whether every invariant `check_invariants` checks holds. `false` is not a violation, only
/// "look closer": the full check decides.
///
/// Why one pass over the drones proves what the full check proves by also looking each lease
/// up by its drone's name: every drone is stored under its own name, and every lease a drone
/// lists is in the lease table naming that drone, so no lease is listed twice; then the
/// leases listed number as many as the table holds exactly when every lease is on its own
/// drone's books.
pub(super) fn holds(sw: &Swarm) -> bool {
    if sw.refused.is_some() {
        return false;
    }
    let st = &sw.st;
    let mut listed = 0usize;
    for (name, d) in &st.drones {
        if *name != d.spec.name || d.leases.len() > HELD_MAX || drone_state(st, d).is_err() {
            return false;
        }
        if usize::from(d.ladder.steps) > escalate::ladder(d.spec.kind).len() {
            return false;
        }
        let mut held: [Option<&Atom>; HELD_MAX] = [None; HELD_MAX];
        let mut not_started = 0u32;
        for (n, lid) in d.leases.iter().enumerate() {
            let Some(l) = st.leases.get(lid) else {
                return false;
            };
            if l.drone != d.spec.name || l.epoch != d.epoch {
                return false;
            }
            // 1 and 2: the lease is its package's live lease.
            let Some(p) = st.packages.get(l.pkg.index()) else {
                return false;
            };
            if p.lease() != Some(*lid) || p.atom != l.package {
                return false;
            }
            // 9: every dependency is built, or was leased after this lease was issued.
            for dep in p.eff_deps.iter() {
                match st.packages.get(dep.index()) {
                    Some(dep) if dep.lease_mark > l.id.0 || dep.is_built() => {}
                    _ => return false,
                }
            }
            // 14 and 15: one lease per atom, and no repeated revoke of an atom held.
            if held[..n].contains(&Some(&l.package)) || d.revokes.0.contains_key(&l.package) {
                return false;
            }
            held[n] = Some(&l.package);
            not_started += u32::from(l.started_at.is_none());
        }
        // 7. Prefetch.
        if not_started > st.config.max_prefetch {
            return false;
        }
        listed += d.leases.len();
    }
    listed == st.leases.len() && escalate::recent(st) <= st.config.max_escalations_per_window
}

/// Invariant 6 for one drone, as one state shows it: not past its offline deadline while
/// online or suspect, and no leases once stopped or offline.
pub(super) fn drone_state(st: &SwarmState, d: &Drone) -> Result<(), Violation> {
    let deadline = liveness::offline_at(st, d);
    if deadline.is_some_and(|t| t <= st.now) {
        return fail(
            6,
            format!(
                "{} is past its offline deadline but not offline",
                d.spec.name
            ),
        );
    }
    let gone = match d.liveness() {
        Liveness::Stopped => "stopped",
        Liveness::Offline => "offline",
        _ => return Ok(()),
    };
    if !d.leases.is_empty() {
        return fail(
            6,
            format!(
                "{gone} drone {} holds {} leases",
                d.spec.name,
                d.leases.len()
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
