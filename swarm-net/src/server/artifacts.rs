//! `PUT /api/v1/artifacts/<category>/<pf>.gpkg.tar|.tbz2`: binary packages
//! into the staging tree of their lease's profile, streamed to a temporary file, size-capped, sha256-checked,
//! validated as the package the path names ([`validate_staged`]) and renamed
//! into place atomically, so staging never holds half a file or a bad one.
//! Staged files are 0644 and directories 0755 whatever the umask, so a web
//! server can publish them.

use super::file_leases;
use super::front::Request;
use super::http::{header, too_large, ApiError, Reply};
use super::identity::Caller;
use super::lease_files;
use super::shared::Shared;
use super::staged_path::{parse_artifact_path, ArtifactPath, EXTENSIONS, MIN_ARTIFACT_BYTES};
use super::upload_lease;
use crate::binpkg::{self, BinPkg, Format};
use crate::wire::ArtifactReply;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use swarm_core::Atom;

pub(crate) fn put(
    sh: &Shared,
    req: &mut Request,
    rest: &str,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    let size = req
        .body_length()
        .map(|n| n as u64)
        .or_else(|| header(req, "X-Swarm-Size").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    let mut staged_in = None;
    let result = store(sh, req, rest, caller, &mut staged_in);
    // 507 is the staging disk's answer (a directory it cannot make, a write or
    // rename it refuses, a lease record it cannot write): health says so until
    // it can be written.
    match (&result, staged_in) {
        (Err(e), Some((root, category))) if e.status == 507 => {
            let records = lease_files::records_dir(&root);
            let dirs = vec![
                root.join(&category),
                records.join(&category),
                records.join(".by-lease"),
            ];
            sh.staging_health.failed(&root, dirs, size, &e.body.error);
        }
        (Ok(_), Some((root, category))) => sh.staging_health.stored(&root.join(&category), size),
        _ => {}
    }
    result
}

/// Stores an upload; `staged_in` says where (the staging tree and the
/// category), once the lease and its checks allow it.
fn store(
    sh: &Shared,
    req: &mut Request,
    rest: &str,
    caller: &Caller,
    staged_in: &mut Option<(PathBuf, String)>,
) -> Result<Reply, ApiError> {
    let path = parse_artifact_path(rest)?;
    // The lease's profile says which staging tree the file goes to.
    let upload_lease::Bound {
        lease,
        root,
        package,
    } = upload_lease::bind(sh, req, caller, &path.atom)?;
    let ended = upload_lease::ended_lease(sh, &root, &path.category, &path.file);
    upload_lease::may_replace(&root, &path.category, &path.file, lease, ended)?;
    lease_files::one_version(&root, lease, &path.category, &path.file, &path.atom)?;
    if let Some(len) = req.body_length() {
        if len as u64 > sh.max_artifact {
            return Err(too_large(sh.max_artifact));
        }
    }
    let expected = header(req, "X-Sha256")
        .or_else(|| header(req, "X-Checksum-Sha256"))
        .map(|s| s.trim().to_ascii_lowercase());
    if let Some(e) = &expected {
        if e.len() != 64 || !e.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::field(
                400,
                "X-Sha256",
                "X-Sha256 must be 64 hex digits",
            ));
        }
    }
    if header(req, "X-Swarm-Check").is_some() {
        return check_only(sh, req);
    }
    let dir = root.join(&path.category);
    *staged_in = Some((root.clone(), path.category.clone()));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| ApiError::new(507, format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".upload-{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = stream_to(&tmp, req.as_reader(), sh.max_artifact);
    let (size, digest) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some(e) = &expected {
        if *e != digest {
            let _ = std::fs::remove_file(&tmp);
            return Err(ApiError::field(
                400,
                "X-Sha256",
                format!("sha256 mismatch: header says {e}, received bytes hash to {digest}; nothing was stored"),
            ));
        }
    }
    let pkg = match validate_staged(&tmp, &path)
        .and_then(|pkg| upload_lease::slot_fits(&package, pkg.slot(), pkg.sub_slot()).map(|()| pkg))
    {
        Ok(pkg) => pkg,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(artifact = %format!("{}/{}", path.category, path.file), size, error = %e.body.error, "artifact refused");
            return Err(e);
        }
    };
    let signer = match sh.signatures.check(&tmp) {
        Ok(signer) => signer,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let name = format!("{}/{}", path.category, path.file);
            tracing::warn!(artifact = %name, error = %e, "artifact refused: signature");
            return Err(ApiError::field(
                e.status(),
                "artifact",
                format!("{name} refused: {e}; nothing was stored"),
            ));
        }
    };
    let dest = dir.join(&path.file);
    let live = upload_lease::still_live(sh, &path.category, &path.file, lease);
    let ended = upload_lease::ended_lease(sh, &root, &path.category, &path.file);
    let placing = super::staged_path::PLACING
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Under the lock: another upload may have put its file in place since the first check.
    let may = live
        .and_then(|()| upload_lease::may_replace(&root, &path.category, &path.file, lease, ended))
        .and_then(|()| {
            lease_files::one_version(&root, lease, &path.category, &path.file, &path.atom)
        });
    if let Err(e) = may {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let recorded = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        .and_then(|()| std::fs::metadata(&tmp))
        .map_err(|e| ApiError::new(507, format!("cannot store {}: {e}", dest.display())))
        .and_then(|placed| {
            upload_lease::record(
                &root,
                &sh.farm_id,
                &path.category,
                &path.file,
                lease,
                &digest,
                &placed,
            )
        });
    if let Err(e) = recorded {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_file(&tmp);
        // The line names a file that never went in place (h114 F3).
        if let Err(e) = file_leases::retract(&root, &path.category, &path.file, lease.0, &digest) {
            tracing::warn!(artifact = %dest.display(), error = %e, "cannot take back the lease record of an upload that was not stored");
        }
        return Err(ApiError::new(
            507,
            format!("cannot store {}: {e}", dest.display()),
        ));
    }
    // The rename itself must survive a power loss before "stored" is said: the file's data
    // was synced when it was written. The file is in place: its record stays.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ApiError::new(507, format!("cannot store {}: {e}", dest.display())))?;
    drop(placing);
    tracing::info!(artifact = %dest.display(), size, sha256 = %digest, lease = lease.0, cpv = %pkg.cpv, build_id = ?pkg.build_id, signed_by = signer.as_ref().map_or("-", |s| s.fingerprint.as_str()), "artifact stored");
    Reply::ok(&ArtifactReply {
        status: "stored".into(),
        path: format!("{}/{}", path.category, path.file),
        size,
        sha256: digest,
    })
}

/// Answers an upload's checks without its body (`X-Swarm-Check`, with the size it would
/// send in `X-Swarm-Size`): everything above was judged from the headers, and a refusal
/// made before a big body is read reaches its sender as a broken connection, not as this
/// answer (see `RegisterReply::upload_check`). Nothing is stored.
fn check_only(sh: &Shared, req: &Request) -> Result<Reply, ApiError> {
    let size = header(req, "X-Swarm-Size").map(|v| {
        v.trim().parse::<u64>().map_err(|_| {
            ApiError::field(
                400,
                "X-Swarm-Size",
                "X-Swarm-Size must be a number of bytes",
            )
        })
    });
    if let Some(size) = size.transpose()? {
        if size > sh.max_artifact {
            return Err(too_large(sh.max_artifact));
        }
    }
    Reply::ok(&serde_json::json!({"status": "would_store"}))
}

/// Checks an uploaded file before it is staged: a valid binary package (the format its
/// extension names: a gpkg with a Manifest that matches, or a tbz2 with its XPAK trailer)
/// whose own CATEGORY/PF is the package the path names (`<pf>` or `<pf>-<build id>`).
/// A refusal is a 422 that names the problem, and the caller stages nothing, so a bad
/// upload can never count as built.
pub(crate) fn validate_staged(tmp: &Path, path: &ArtifactPath) -> Result<BinPkg, ApiError> {
    let (stem, format) = match path.file.strip_suffix(".gpkg.tar") {
        Some(stem) => (stem, Format::Gpkg),
        None => (
            path.file.strip_suffix(".tbz2").unwrap_or(&path.file),
            Format::Xpak,
        ),
    };
    let name = format!("{}/{}", path.category, path.file);
    let pkg = binpkg::inspect_as(tmp, format, &binpkg::Limits::default()).map_err(|e| {
        let status = if matches!(e, binpkg::BinPkgError::Io { .. }) {
            500
        } else {
            422
        };
        ApiError::field(
            status,
            "artifact",
            format!(
                "{name} is not a valid binary package ({}): {e}; nothing was stored",
                e.kind()
            ),
        )
    })?;
    let matches_path = pkg.category() == path.category
        && (stem == pkg.pf()
            || pkg
                .build_id
                .is_some_and(|id| stem == format!("{}-{id}", pkg.pf())));
    if !matches_path {
        return Err(ApiError::field(
            422,
            "artifact",
            format!(
                "{name} is not a valid binary package (cpv-mismatch): it holds {} (CATEGORY/PF in its metadata), not {}/{stem}; nothing was stored",
                pkg.cpv, path.category
            ),
        ));
    }
    Ok(pkg)
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn stream_to(tmp: &Path, mut body: impl Read, cap: u64) -> Result<(u64, String), ApiError> {
    let io = |e: std::io::Error| ApiError::new(507, format!("cannot write {}: {e}", tmp.display()));
    let mut f = std::fs::File::create(tmp).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(super::http::body_error)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > cap {
            return Err(too_large(cap));
        }
        let chunk = buf.get(..n).unwrap_or(&[]);
        hasher.update(chunk);
        f.write_all(chunk).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// v3's rule: a success counts when staging holds `<cat>/<pf>*.gpkg.tar` (or
/// `<cat>/<pn>/<pf>*`, or `.tbz2`) of at least 1 KiB. Files a v3 drone
/// rsynced in count the same as uploads.
pub(crate) fn artifact_present(staging: &Path, atom: &Atom) -> bool {
    let cat = staging.join(atom.category());
    let dirs: [PathBuf; 2] = [cat.clone(), cat.join(atom.pn())];
    dirs.iter().any(|dir| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(atom.pf())
                && name
                    .get(atom.pf().len()..)
                    .is_some_and(|rest| {
                        EXTENSIONS.iter().any(|x| {
                            rest == *x
                                // A build id: `-<digits>` before the extension.
                                || rest.strip_suffix(x).and_then(|r| r.strip_prefix('-')).is_some_and(
                                    |id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
                                )
                        })
                    })
                && e.metadata().is_ok_and(|m| m.is_file() && m.len() >= MIN_ARTIFACT_BYTES)
        })
    })
}

/// Removes upload temp files (`<tree>/<category>/.upload-*.tmp`, in every
/// profile's staging tree) a killed server left behind: no upload is in flight at start, so every one of them
/// is garbage. Returns how many files and bytes were removed.
pub(crate) fn remove_stale_uploads(staging: &Path) -> (usize, u64) {
    let mut removed = (0, 0);
    for tree in super::staged_path::all_staging_trees(staging) {
        let (files, bytes) = remove_stale_uploads_in(&tree);
        removed.0 += files;
        removed.1 += bytes;
    }
    removed
}

/// [`remove_stale_uploads`] of one profile's staging tree.
fn remove_stale_uploads_in(tree: &Path) -> (usize, u64) {
    let mut removed = (0, 0);
    let Ok(categories) = std::fs::read_dir(tree) else {
        return removed;
    };
    for cat in categories.flatten() {
        if !cat.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(cat.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".upload-") && name.ends_with(".tmp") {
                let size = f.metadata().map_or(0, |m| m.len());
                match std::fs::remove_file(f.path()) {
                    Ok(()) => {
                        removed.0 += 1;
                        removed.1 += size;
                    }
                    Err(e) => {
                        tracing::warn!(file = %f.path().display(), error = %e, "cannot remove a stale upload temp file")
                    }
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_paths_are_accepted() {
        assert!(parse_artifact_path("dev-libs/foo-1.0.gpkg.tar").is_ok());
        assert!(parse_artifact_path("dev-libs/foo-1.0-r1.tbz2").is_ok());
        assert!(parse_artifact_path("dev-libs/foo-1.0-1.gpkg.tar").is_ok());
        assert!(parse_artifact_path("x11-libs/gtk+-3.24.43.gpkg.tar").is_ok());
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "dev-libs/../../x-1.0.gpkg.tar",
            "dev-libs/foo-1.0.gpkg.tar/x",
            "dev-libs/foo.gpkg.tar",
            "dev-libs/foo-1.0.tar.gz",
            "dev-libs/.hidden-1.0.gpkg.tar",
            "dev-libs",
            "dev libs/foo-1.0.gpkg.tar",
            "dev-libs/foo-1.0.gpkg.tar\0",
            // The index's own name in a PKGDIR or a release (h109).
            "Packages/e24-1.0.gpkg.tar",
        ] {
            assert!(parse_artifact_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn stale_upload_temp_files_are_removed_from_every_profiles_staging_tree() {
        let dir = tempfile::tempdir().expect("dir");
        let staging = dir.path();
        let named = staging.join(".profiles/fast/dev-libs");
        let default = staging.join("dev-libs");
        for d in [&named, &default] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join(".upload-1-0.tmp"), b"half").expect("write");
            std::fs::write(d.join("foo-1.0.gpkg.tar"), b"kept").expect("write");
        }
        assert_eq!(remove_stale_uploads(staging), (2, 8));
        for d in [&named, &default] {
            assert!(!d.join(".upload-1-0.tmp").exists());
            assert!(d.join("foo-1.0.gpkg.tar").exists(), "packages stay");
        }
    }

    #[test]
    fn presence_follows_the_v3_rule() {
        let dir = tempfile::tempdir().expect("dir");
        let atom = Atom::parse("=dev-libs/foo-1.0").expect("atom");
        assert!(!artifact_present(dir.path(), &atom));
        let cat = dir.path().join("dev-libs");
        std::fs::create_dir_all(&cat).expect("mkdir");
        std::fs::write(cat.join("foo-1.0.gpkg.tar"), b"tiny").expect("write");
        assert!(
            !artifact_present(dir.path(), &atom),
            "under 1 KiB counts as missing"
        );
        std::fs::write(cat.join("foo-1.0.gpkg.tar"), vec![0u8; 2048]).expect("write");
        assert!(artifact_present(dir.path(), &atom));
        let other = Atom::parse("=dev-libs/foo-1.0.1").expect("atom");
        assert!(
            !artifact_present(dir.path(), &other),
            "a prefix is not a match"
        );
        std::fs::write(cat.join("baz-1.0-r1.gpkg.tar"), vec![0u8; 2048]).expect("write");
        let baz = Atom::parse("=dev-libs/baz-1.0").expect("atom");
        assert!(
            !artifact_present(dir.path(), &baz),
            "-r1 is another revision, not a build id"
        );
        let pn_dir = dir.path().join("dev-libs").join("bar");
        std::fs::create_dir_all(&pn_dir).expect("mkdir");
        std::fs::write(pn_dir.join("bar-2-1.gpkg.tar"), vec![0u8; 2048]).expect("write");
        assert!(artifact_present(
            dir.path(),
            &Atom::parse("=dev-libs/bar-2").expect("atom")
        ));
    }
}
