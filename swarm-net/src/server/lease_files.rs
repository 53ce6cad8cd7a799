//! What a lease may store, beyond the package its atom names: one build of
//! one package version. A lease of `app-misc/foo` (any version, as emerge
//! resolves it) or of `foo` (any category) otherwise let its drone stage
//! `foo-1`, `foo-2` and `foo-99999`, or `foo` in two categories, and every
//! one went into the next release (h16). Which file each lease stored is
//! kept in `.leases/.by-lease/<lease>` of the staging tree; no category
//! starts with a dot, so no category's records share that directory.
//!
//! The records are written durably (file, then directory, fsynced) before
//! the upload is answered: a "stored" that a power loss could turn into a
//! file without its lease would make the drone's acknowledged build count
//! as missing.

use super::http::ApiError;
use super::staged_path::{parse_artifact_path, uploaded_file_present};
use std::io::Write;
use std::path::{Path, PathBuf};
use swarm_core::{Atom, LeaseId};

/// Where the records of what each lease stored live in a staging tree.
pub(crate) fn records_dir(staging: &Path) -> PathBuf {
    staging.join(".leases")
}

fn by_lease(staging: &Path, lease: LeaseId) -> PathBuf {
    records_dir(staging)
        .join(".by-lease")
        .join(lease.0.to_string())
}

/// Refuses a file of another version than the one `lease` already stored
/// and still has in staging. Another build of the same version (a new
/// build id, a retry) is fine: it is the same package.
pub(crate) fn one_version(
    staging: &Path,
    lease: LeaseId,
    category: &str,
    file: &str,
    atom: &Atom,
) -> Result<(), ApiError> {
    let other = stored_by(staging, lease).into_iter().find(|stored| {
        parse_artifact_path(stored).is_ok_and(|earlier| {
            earlier.atom.cpv() != atom.cpv()
                && uploaded_file_present(staging, &earlier.category, &earlier.file)
        })
    });
    let Some(stored) = other else {
        return Ok(());
    };
    // Not the lease's field: an agent takes a 409 on `X-Swarm-Lease` for a
    // lease that has ended and reports the build as it is; this one is a
    // refusal of the file (`upload_failed`), and the lease lives on.
    Err(ApiError::field(
        409,
        "artifact",
        format!(
            "lease {lease} already stored {stored}: a lease is one build of one package version, \
             so {category}/{file} is not stored under it"
        ),
    ))
}

/// Names kept per lease: one version, under a few build ids or both formats.
const NAMES_PER_LEASE: usize = 16;

/// The files (`category/file`) `lease` stored, as its record says, oldest first. A lease
/// may store one version under several names (a second build id, `.tbz2` beside
/// `.gpkg.tar`); each goes when the build fails (h114 F4).
pub(crate) fn stored_by(staging: &Path, lease: LeaseId) -> Vec<String> {
    std::fs::read_to_string(by_lease(staging, lease))
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `text` to `path` through a temporary file, durably: the file's
/// data, the rename and the directory entry all survive a power loss
/// before this returns.
pub(crate) fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Records that `lease` stored `category/file`.
pub(crate) fn record(
    staging: &Path,
    category: &str,
    file: &str,
    lease: LeaseId,
) -> std::io::Result<()> {
    let name = format!("{category}/{file}");
    let mut names = stored_by(staging, lease);
    names.retain(|n| *n != name);
    names.push(name);
    let from = names.len().saturating_sub(NAMES_PER_LEASE);
    let text: String = names[from..].iter().map(|n| format!("{n}\n")).collect();
    write_durably(&by_lease(staging, lease), &text)
}

/// At start, in one staging tree: removes what a kill left of a record's
/// write (`*.tmp` under `.leases`), the records of leases that have ended
/// (`.by-lease/<lease>`, for which `active` is false), which nothing reads
/// again: one was kept per upload for good (h41 F6), and the records of
/// which lease stored a file that is gone (a failed build's binary removed
/// at a release keeps its record while a release may be judging it). The
/// records of files still there stay. Returns how many files went.
pub(crate) fn tidy(staging: &Path, active: impl Fn(LeaseId) -> bool) -> usize {
    let mut gone = 0;
    let Ok(dirs) = std::fs::read_dir(records_dir(staging)) else {
        return 0;
    };
    for dir in dirs.flatten() {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let by_lease = dir.file_name() == ".by-lease";
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let name = name.to_string_lossy();
            let ended = by_lease
                && name
                    .parse::<u64>()
                    .is_ok_and(|lease| !active(LeaseId(lease)));
            // Gone, not merely unreadable: a record removed while its file cannot be
            // stat'ed would make that file no upload's once it can (h113 F6).
            let file_gone = !by_lease
                && std::fs::symlink_metadata(staging.join(dir.file_name()).join(&*name))
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if !(ended || file_gone || name.ends_with(".tmp")) {
                continue;
            }
            match std::fs::remove_file(f.path()) {
                Ok(()) => gone += 1,
                Err(e) => {
                    tracing::warn!(file = %f.path().display(), error = %e, "cannot remove a lease record left behind")
                }
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::{one_version, record, tidy};
    use swarm_core::{Atom, LeaseId};

    fn stage(root: &std::path::Path, category: &str, file: &str) {
        std::fs::create_dir_all(root.join(category)).expect("dir");
        std::fs::write(root.join(category).join(file), vec![0u8; 4096]).expect("file");
    }

    #[test]
    fn a_lease_stores_one_version_of_one_package() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        let lease = LeaseId(7);
        let atom = |t: &str| Atom::parse(t).expect("atom");
        assert!(one_version(
            root,
            lease,
            "app-misc",
            "foo-1.gpkg.tar",
            &atom("=app-misc/foo-1")
        )
        .is_ok());
        stage(root, "app-misc", "foo-1.gpkg.tar");
        record(root, "app-misc", "foo-1.gpkg.tar", lease).expect("recorded");
        // A rebuild of the same version, with a build id: the same package.
        assert!(one_version(
            root,
            lease,
            "app-misc",
            "foo-1-2.gpkg.tar",
            &atom("=app-misc/foo-1-2")
        )
        .is_ok());
        let err = one_version(
            root,
            lease,
            "app-misc",
            "foo-99999.gpkg.tar",
            &atom("=app-misc/foo-99999"),
        )
        .expect_err("another version");
        assert_eq!(err.status, 409);
        assert!(
            err.body
                .error
                .contains("already stored app-misc/foo-1.gpkg.tar"),
            "{}",
            err.body.error
        );
        assert!(one_version(
            root,
            lease,
            "sys-apps",
            "foo-1.gpkg.tar",
            &atom("=sys-apps/foo-1")
        )
        .is_err());
        // Another lease, or the first file gone (purged): nothing to keep to.
        assert!(one_version(
            root,
            LeaseId(8),
            "app-misc",
            "foo-2.gpkg.tar",
            &atom("=app-misc/foo-2")
        )
        .is_ok());
        std::fs::remove_file(root.join("app-misc/foo-1.gpkg.tar")).expect("rm");
        assert!(one_version(
            root,
            lease,
            "app-misc",
            "foo-2.gpkg.tar",
            &atom("=app-misc/foo-2")
        )
        .is_ok());
    }

    /// At start, a kill's half-written records, the records of ended leases and those of
    /// files gone go; an active lease's record and the record of a file still there stay.
    #[test]
    fn ended_leases_records_and_temp_files_go_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        for lease in [3, 7] {
            record(
                root,
                "app-misc",
                &format!("foo-{lease}.gpkg.tar"),
                LeaseId(lease),
            )
            .expect("record");
        }
        let leases = root.join(".leases");
        std::fs::create_dir_all(leases.join("app-misc")).expect("dir");
        std::fs::write(leases.join("app-misc/foo-1.gpkg.tar"), "3\n").expect("file record");
        stage(root, "app-misc", "foo-1.gpkg.tar");
        std::fs::write(leases.join("app-misc/foo-4.gpkg.tar"), "4\n").expect("gone's record");
        std::fs::write(leases.join("app-misc/foo-2.gpkg.tmp"), "3").expect("torn");
        std::fs::write(leases.join(".by-lease/9.tmp"), "x").expect("torn");
        assert_eq!(tidy(root, |l| l == LeaseId(7)), 4);
        assert!(!leases.join("app-misc/foo-4.gpkg.tar").exists());
        assert!(!leases.join(".by-lease/3").exists());
        assert!(leases.join(".by-lease/7").is_file());
        assert!(leases.join("app-misc/foo-1.gpkg.tar").is_file());
        assert!(!leases.join("app-misc/foo-2.gpkg.tmp").exists());
        assert!(!leases.join(".by-lease/9.tmp").exists());
    }
}
