//! `explain`: why a package is (not) running, in an operator's words.

use super::View;
use crate::atom::Atom;
use crate::output::RejectReason;
use crate::policy::schedule;
use crate::state::{Drone, Liveness, PackageState};
use crate::time::human_ms;
use std::collections::BTreeMap;

impl View<'_> {
    /// Why a package is (not) running, in words an operator understands; for an atom queued in
    /// several profiles, it asks which ([`View::explain_in`]) and explains each on its own line.
    pub fn explain(&self, atom: &Atom) -> String {
        self.explain_in(atom, None)
    }

    /// [`View::explain`] of the atom in `profile` (`default`: the default one; `None`: its one).
    pub fn explain_in(&self, atom: &Atom, profile: Option<&str>) -> String {
        let s = self.s;
        let st = &s.st;
        let id = match s.resolve(atom, profile).map_err(|why| *why) {
            Ok(id) => id,
            Err(RejectReason::AmbiguousPackage { profiles, .. }) => {
                let one = |p: &str| self.explain_in(atom, Some(p));
                return crate::profile::ambiguous_explanation(atom, &profiles, one);
            }
            Err(_) => {
                return match profile {
                    Some(p) => format!("{atom} is not in the queue for profile {p}"),
                    None => format!("{atom} is not in the queue"),
                }
            }
        };
        let p = st.pkg(id);
        match p.state() {
            PackageState::Built { .. } => return "built".to_owned(),
            PackageState::Assigned { lease } => {
                let Some(l) = st.leases.get(lease) else {
                    return "assigned".to_owned();
                };
                return match l.started_at {
                    Some(t) => format!(
                        "building on {} for {} (lease {})",
                        l.drone,
                        human_ms(st.now.since(t)),
                        l.id
                    ),
                    None => format!("assigned to {} (lease {}), not started yet", l.drone, l.id),
                };
            }
            PackageState::Blocked {
                reason,
                auto_unblock_at,
                ..
            } => {
                let when = auto_unblock_at
                    .map(|t| format!("; retried automatically in {}", human_ms(t.since(st.now))))
                    .unwrap_or_default();
                return format!("blocked: {reason}{when}");
            }
            PackageState::Queued { retry_at: Some(t) } => {
                return format!(
                    "retrying after failure {} ({}); next attempt in {}",
                    p.attempts,
                    p.last_error.as_deref().unwrap_or("no detail"),
                    human_ms(t.since(st.now))
                );
            }
            PackageState::Queued { retry_at: None } => {}
        }
        if let Some(dep) = p
            .eff_deps
            .iter()
            .map(|d| st.pkg(*d))
            .find(|d| !d.is_built())
        {
            let more = p.unbuilt.saturating_sub(1);
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            return format!("waiting: dependency {} not built{more}", dep.atom);
        }
        if st.brake.engaged && st.brake.held.contains(&p.atom) {
            return format!("held by the disruption brake: {}", st.brake.reason);
        }
        if st.paused {
            return "waiting: the swarm is paused".to_owned();
        }
        let online: Vec<&Drone> = st
            .drones
            .values()
            .filter(|d| d.liveness() == Liveness::Online && !d.spec.name.is_sweeper())
            .collect();
        if online.is_empty() {
            return "waiting: no drone online".to_owned();
        }
        if let Some(why) = profile_mismatch(st, p, &online) {
            return why;
        }
        let need = st.ram_need_mb(&p.key);
        let big_enough: Vec<&&Drone> = online
            .iter()
            .filter(|d| d.spec.ram_mb == 0 || d.spec.ram_mb >= need)
            .collect();
        if big_enough.is_empty() {
            return format!(
                "waiting: no drone with ≥ {} GB RAM online",
                need.div_ceil(1024)
            );
        }
        let fits: Vec<&&&Drone> = big_enough
            .iter()
            .filter(|d| !p.failed_recently_on(&d.spec.name, st.now, st.config.failure_memory_ms))
            .collect();
        if fits.is_empty() {
            return format!(
                "waiting: all {} drones that could build it failed it recently",
                big_enough.len()
            );
        }
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        let mut free = 0;
        for d in &fits {
            match schedule::capacity(st, d, u32::MAX) {
                Ok(_) => free += 1,
                // Its full text (when its next trial is) is the drone's, in `swarm fleet`.
                Err(schedule::NoWork::BrakeCause { .. }) => {
                    *reasons.entry("set aside by the brake".into()).or_default() += 1
                }
                Err(why) => *reasons.entry(why.to_string()).or_default() += 1,
            }
        }
        if free > 0 {
            let ahead =
                s.ix.ready_key
                    .get(&id)
                    .map_or(0, |k| s.ix.ready.range(..*k).count());
            return format!(
                "ready: {free} drones eligible with free slots; {ahead} packages ahead of it"
            );
        }
        let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "waiting: {} drones eligible, none free ({})",
            fits.len(),
            why.join(", ")
        )
    }
}

/// "no drone matches profile desktop-amd64: drone-tarn differs in CFLAGS (-O3 vs -O2)" when no
/// online drone's environment the package's profile admits; `None` when one matches.
fn profile_mismatch(
    st: &crate::state::SwarmState,
    p: &crate::state::Package,
    online: &[&Drone],
) -> Option<String> {
    let name = p.profile.name();
    let Some(expected) = st.expected_env_of(&p.profile) else {
        return Some(format!(
            "waiting: profile {name} no longer exists; no drone matches it"
        ));
    };
    if online.iter().any(|d| expected.admits(&d.spec.env)) {
        return None;
    }
    let first = online.first()?;
    let diffs = expected.differences(&first.spec.env);
    let words = crate::buildenv::describe_differences(&diffs);
    let words = words.strip_prefix("environment ").unwrap_or(&words);
    let more = online.len() - 1;
    Some(format!(
        "no drone matches profile {name}: {} {words}{}",
        first.spec.name,
        if more > 0 {
            format!(" (and {more} more drones differ)")
        } else {
            String::new()
        }
    ))
}
