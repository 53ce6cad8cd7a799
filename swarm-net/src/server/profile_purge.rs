//! What `remove_profile` leaves on disk, and `purge`, which deletes it (issue 17). A profile's
//! published tree is `<binhost>/<profile>/` (served at `/binhost/<profile>/`, where clients may
//! still point), its release records are `<state>/profiles/<profile>/` and its builds are staged
//! in `<staging>/.profiles/<profile>/`. Removing the profile keeps all three: a client's
//! `PORTAGE_BINHOST` keeps working and the releases can be looked at. Purging deletes them, and is refused while any of the profile's packages is being built
//! (its upload would land in a tree about to go) or queued (unless `force` drops them first).

use super::http::ApiError;
use super::shared::Shared;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A profile's directories on disk, those that exist.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Leftovers {
    /// The published tree, `<binhost>/<profile>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tree: Option<PathBuf>,
    /// Where it is served: `/binhost/<profile>/`.
    pub(crate) served_at: String,
    /// The release records, `<state>/profiles/<profile>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<PathBuf>,
    /// Its staged builds, `<staging>/.profiles/<profile>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) staging: Option<PathBuf>,
}

impl Leftovers {
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.tree, &self.state, &self.staging]
            .into_iter()
            .flatten()
    }

    fn is_empty(&self) -> bool {
        self.paths().next().is_none()
    }
}

/// The directories of profile `name` that exist now. `name` must have passed
/// `profile::name_problem` (no `/`, no `..`): each path is one level below its root.
pub(crate) fn leftovers(sh: &Shared, name: &str) -> Leftovers {
    let opts = sh.releases.options();
    let dir = |p: PathBuf| p.symlink_metadata().is_ok().then_some(p);
    Leftovers {
        tree: dir(opts.root.join(name)),
        served_at: swarm_core::profile::binhost_path(name),
        state: dir(opts.state_dir.join("profiles").join(name)),
        staging: dir(super::staged_path::staging_of(&sh.staging, Some(name))),
    }
}

/// Refuses a purge of `name` now, with the reason: packages of it being built, or queued
/// without `force`; or a default release of the same name owning `<binhost>/<name>/`.
pub(crate) fn refuse(sh: &Shared, name: &str, force: bool) -> Result<(), ApiError> {
    let p = sh.fresh();
    let view = p.swarm.view();
    let Some(profile) = view.profiles().into_iter().find(|v| v.name == name) else {
        return Err(ApiError::field(
            404,
            "profile",
            format!("no profile {name:?} (`swarm profile list`)"),
        ));
    };
    let s = profile.states;
    if s.building > 0 || (s.queued > 0 && !force) {
        return Err(ApiError::field(
            409,
            "purge",
            format!(
                "profile {name} has {} queued and {} building packages; nothing was changed. \
                 A purge deletes its published tree, so it waits until none is building \
                 (`force` drops the queued ones)",
                s.queued, s.building
            ),
        ));
    }
    not_a_default_release(sh, name)
}

fn not_a_default_release(sh: &Shared, name: &str) -> Result<(), ApiError> {
    if sh.releases.list().0.iter().any(|r| r.name == name) {
        return Err(ApiError::field(
            409,
            "purge",
            format!(
                "/binhost/{name}/ holds the default profile's release {name}; nothing was purged"
            ),
        ));
    }
    Ok(())
}

/// Purges what a profile removed earlier left. Only a name with release records
/// (`<state>/profiles/<name>/`) or staged builds (`<staging>/.profiles/<name>/`) was a
/// profile's: anything else under the binhost is not touched.
pub(crate) fn purge_removed(sh: &Shared, name: &str) -> Result<Leftovers, ApiError> {
    not_a_default_release(sh, name)?;
    let found = leftovers(sh, name);
    if found.state.is_none() && found.staging.is_none() {
        return Err(ApiError::field(
            404,
            "profile",
            format!("no profile {name:?}, and no release records or staged builds of one on disk to purge"),
        ));
    }
    purge(sh, name)
}

/// Deletes what [`leftovers`] finds for `name` (after the profile was removed) and forgets its
/// open releases; answers what was deleted.
pub(crate) fn purge(sh: &Shared, name: &str) -> Result<Leftovers, ApiError> {
    sh.profile_releases
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
    // No upload puts a file in place meanwhile (its lease, of the removed profile, is gone).
    let _placing = super::staged_path::PLACING
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let found = leftovers(sh, name);
    for path in found.paths() {
        remove(path).map_err(|e| {
            ApiError::internal(format!(
                "profile {name} was removed, but {} could not be deleted: {e}",
                path.display()
            ))
        })?;
    }
    tracing::warn!(profile = name, tree = ?found.tree, state = ?found.state, staging = ?found.staging, "profile purged");
    Ok(found)
}

/// Removes a directory tree, or a file or symlink standing in its place (never following it).
fn remove(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// The words for what stays after a plain removal, or `None` when nothing does.
pub(crate) fn kept_note(found: &Leftovers) -> Option<String> {
    (!found.is_empty()).then(|| {
        format!(
            "kept on disk: {}; clients may still install from {}. `purge` deletes them",
            found
                .paths()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            found.served_at
        )
    })
}
