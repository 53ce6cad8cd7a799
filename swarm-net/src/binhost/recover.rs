//! What a start finds after a crash (or a failed write) in the middle of a
//! release action, and puts right before anything is served:
//! - the top `Packages` is the one `state.json` names: publishing saves the
//!   state first, so a crash before the index was written leaves the old
//!   index, which is rewritten for the release the state publishes (with
//!   the TIMESTAMP the state recorded, and that as its mtime);
//! - a release directory whose creation or purge the state no longer lists
//!   (its `<name>.json` entries beside it tell it from a profile's tree) is
//!   removed, so its name can be used again;
//! - leftovers of interrupted writes (`.<file>.tmp-<pid>`, `.creating-*`,
//!   `.purging-*`) are removed.
//!
//! A release the state lists whose directory is gone is only reported: a
//! binhost volume that did not mount looks the same, and forgetting every
//! release then would be worse than a refused publish.

use super::error::{io, ReleaseError};
use super::files::write_atomic;
use super::index;
use super::state::{self, State};
use std::path::Path;

/// Writes the top `Packages` for release `name` (its own index `text`)
/// with `timestamp`, and that TIMESTAMP as the file's mtime.
pub(crate) fn write_top_index(
    root: &Path,
    name: &str,
    text: &str,
    timestamp: u64,
) -> Result<(), ReleaseError> {
    let out = index::republish(text, timestamp, &format!("{name}/"));
    let top = root.join("Packages");
    write_atomic(&top, out.as_bytes())?;
    set_index_mtime(&top, timestamp)
}

/// Whether the top `Packages` is release `name`'s index `text` with `timestamp`.
pub(crate) fn serves(root: &Path, name: &str, text: &str, timestamp: u64) -> bool {
    std::fs::read_to_string(root.join("Packages"))
        .is_ok_and(|served| served == index::republish(text, timestamp, &format!("{name}/")))
}

/// The release the served top `Packages` points into (its first PATH's
/// directory), whatever the state says.
pub(crate) fn served_release(root: &Path) -> Option<String> {
    let served = std::fs::read_to_string(root.join("Packages")).ok()?;
    served
        .lines()
        .find_map(|l| l.strip_prefix("PATH: "))
        .and_then(|p| p.split_once('/'))
        .map(|(release, _)| release.to_owned())
}

/// The TIMESTAMP of the served top `Packages`, if it has one.
fn served_timestamp(root: &Path) -> Option<u64> {
    let served = std::fs::read_to_string(root.join("Packages")).ok()?;
    index::read_header(&served)
        .get("TIMESTAMP")
        .and_then(|t| t.trim().parse::<u64>().ok())
}

/// Refuses to act on a binhost root that holds none of the releases the
/// state lists: its volume is most likely not mounted, and a create there
/// or a purge of the lists would part them from the files for good.
pub(crate) fn check_mounted(root: &Path, st: &State) -> Result<(), ReleaseError> {
    let listed = st.releases.len();
    if listed > 0 && !st.releases.iter().any(|r| root.join(&r.name).is_dir()) {
        return Err(ReleaseError::RootWithoutReleases {
            root: root.to_path_buf(),
            listed,
        });
    }
    Ok(())
}

/// Portage asks with `If-Modified-Since: <its cached TIMESTAMP>`, and
/// TIMESTAMP may run ahead of the clock (a rollback in the same second
/// still increases it), so Last-Modified (the file's mtime) must be the
/// TIMESTAMP itself or the client is told its stale copy is current.
fn set_index_mtime(top: &Path, timestamp: u64) -> Result<(), ReleaseError> {
    let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_secs(timestamp);
    std::fs::File::options()
        .write(true)
        .open(top)
        .and_then(|f| f.set_modified(stamp))
        .map_err(io("set the modification time of", top))
}

/// Puts the binhost at `root` in step with `st` (see the module doc); the
/// release whose cut-short publish it completed, if it did.
pub(crate) fn at_open(
    root: &Path,
    state_dir: &Path,
    st: &mut State,
) -> Result<Option<String>, ReleaseError> {
    // Clients have cached the served index's TIMESTAMP: every later one must pass it, also
    // when the state that kept the last one was lost.
    if let Some(served) = served_timestamp(root) {
        st.last_timestamp = st.last_timestamp.max(served);
    }
    remove_leftovers(root)?;
    remove_leftovers(state_dir)?;
    remove_unlisted(root, state_dir, st)?;
    for r in &st.releases {
        if !root.join(&r.name).join("Packages").is_file() {
            tracing::error!(release = %r.name, root = %root.display(), "a listed release's directory or index is gone: it cannot be published (was the binhost volume mounted?)");
        }
    }
    index_as_published(root, state_dir, st)
}

/// Whether `name` is what `write_atomic` leaves when interrupted.
fn is_temp_file(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn remove_leftovers(dir: &Path) -> Result<(), ReleaseError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let removed =
            if meta.is_dir() && (name.starts_with(".creating-") || name.starts_with(".purging-")) {
                std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
                true
            } else if meta.is_file() && is_temp_file(&name) {
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
                true
            } else {
                false
            };
        if removed {
            tracing::info!(path = %path.display(), "removed what an interrupted release action left");
        }
    }
    Ok(())
}

/// Release directories with entries in `state_dir` that the state does not
/// list: a create that crashed after moving its directory into place, or a
/// purge after saving the state.
fn remove_unlisted(root: &Path, state_dir: &Path, st: &State) -> Result<(), ReleaseError> {
    let Ok(rd) = std::fs::read_dir(state_dir) else {
        return Ok(());
    };
    // What clients install from is never removed, whatever the state lost (h109: a release
    // named `state`, purged, took the state with it, and the next start removed them all).
    let served = served_release(root);
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        if served.as_deref() == Some(name) {
            tracing::error!(release = name, "the served index points into a release that no release list names: kept; the release bookkeeping was lost or damaged");
            continue;
        }
        if state::BOOKKEEPING.contains(&name)
            || name.starts_with('.')
            || st.releases.iter().any(|r| r.name == name)
            || st.published.as_deref() == Some(name)
            || state::load_entries(state_dir, name).is_err()
        {
            continue;
        }
        let dir = root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        }
        state::remove_entries(state_dir, name)?;
        tracing::warn!(
            release = name,
            "removed a release that no release list names (its create or purge was interrupted)"
        );
    }
    Ok(())
}

/// Rewrites the top `Packages` when it is not the published release's, and
/// then names that release.
fn index_as_published(
    root: &Path,
    state_dir: &Path,
    st: &mut State,
) -> Result<Option<String>, ReleaseError> {
    let Some(name) = st.published.clone() else {
        return Ok(None);
    };
    let src = root.join(&name).join("Packages");
    let Ok(text) = std::fs::read_to_string(&src) else {
        return Ok(None);
    };
    let top = root.join("Packages");
    let served_ts = served_timestamp(root);
    let timestamp = match st.published_timestamp.or(served_ts) {
        Some(t) if serves(root, &name, &text, t) => {
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&top).map(|m| m.mtime()).ok() != i64::try_from(t).ok() {
                set_index_mtime(&top, t)?;
            }
            return Ok(None);
        }
        // Saved before the index was written: no client has seen it (unless
        // the served index is newer still, which only an older swarm's
        // order leaves).
        Some(t) if st.published_timestamp == Some(t) && served_ts.is_none_or(|s| s < t) => t,
        // Older state, or an index newer than it: a new TIMESTAMP, above
        // any a client has cached.
        _ => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // Above the served one too: a client that cached it must see this.
            st.last_timestamp = st.last_timestamp.max(served_ts.unwrap_or(0));
            let t = st.next_timestamp(now_ms);
            st.published_timestamp = Some(t);
            st.save(state_dir)?;
            t
        }
    };
    write_top_index(root, &name, &text, timestamp)?;
    tracing::warn!(release = %name, timestamp, "the served index was not the published release's (a publish was interrupted): rewrote it");
    Ok(Some(name))
}
