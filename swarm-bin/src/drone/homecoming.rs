//! Builds set aside as another farm's go home. While another farm answered
//! at the server's address, a build made for the first one was set aside
//! (`.bad`, see `spool`), since a lease number means nothing to another
//! farm. When the agent hears from a farm (its first registration, or a farm
//! back at the address), the entries set aside for that farm are renamed
//! back and delivered, their leases held meanwhile, so the farm gets the
//! build it is still waiting for instead of building the package again.
//! Entries that do not parse stay set aside.

use super::shared::Agent;
use super::spool;
use super::state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Looks at the farm a reply names, under the agent's lock and before the
/// reply is fed: when it is another farm than the last one, the builds set
/// aside for it are taken back into the spool and their leases held, so the
/// reply's listing or offer of them neither hands them back nor builds them
/// again. Returns those builds, for [`deliver`] once the lock is let go.
pub(crate) fn heard(
    st: &mut State,
    work_dir: &Path,
    farm: Option<&String>,
) -> Vec<(PathBuf, spool::Entry)> {
    // The reply is not fed yet: the core still knows the farm before it.
    let Some(farm) = farm.filter(|f| st.agent.farm() != Some(f.as_str())) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (bad, entry) in set_aside_for(work_dir, farm) {
        let json = bad.with_extension("json");
        // Never over an entry of the same name.
        if json.exists() {
            continue;
        }
        match std::fs::rename(&bad, &json) {
            Ok(()) => entries.push((json, entry)),
            Err(e) => {
                tracing::error!(file = %bad.display(), error = %e, "cannot take a set-aside build back into the spool");
            }
        }
    }
    spool::hold(st, &entries);
    entries
}

/// Delivers, in the background, the builds [`heard`] took back.
pub(crate) fn deliver(agent: &Arc<Agent>, entries: Vec<(PathBuf, spool::Entry)>) {
    if entries.is_empty() {
        return;
    }
    tracing::info!(
        builds = entries.len(),
        "the farm these builds were made for answers again: delivering them"
    );
    if let Err(e) = spool::spawn_delivery(agent, entries) {
        tracing::error!(error = %e, "cannot start delivering the set-aside builds; the next start delivers them");
    }
}

/// The set-aside entries made for `farm`, oldest first.
fn set_aside_for(work_dir: &Path, farm: &str) -> Vec<(PathBuf, spool::Entry)> {
    let Ok(read) = std::fs::read_dir(spool::dir(work_dir)) else {
        return Vec::new();
    };
    let mut bad: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "bad"))
        .collect();
    bad.sort();
    bad.into_iter()
        .filter_map(|p| spool::read_entry(&p).ok().map(|e| (p, e)))
        .filter(|(_, e)| e.farm.as_deref() == Some(farm))
        .collect()
}
