//! What `swarm serve` keeps from the other users of its host: the store
//! (queue, drones, history), the build logs, the releases' records and the
//! time series. What it publishes (staging, the binhost trees) is given its
//! modes explicitly and stays readable to a web server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Adds the world's bits to the umask. Started by hand under the usual 022,
/// the store, its WAL and the build logs were world-readable, so any local
/// user read what `read_token` guards (h10). The group's bits are left as
/// the operator set them (the units' `UMask=0077` is unchanged).
pub(crate) fn keep_from_other_users() {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o077));
    rustix::process::umask(old | Mode::from_raw_mode(0o007));
}

/// Takes the world's access from the private files of a data dir made
/// under a looser umask, by an older swarm (h11: an upgrade kept them
/// 0644), saying which. Files inside `logs/` and `releases/` are closed by
/// their directory.
pub(crate) fn close_to_others(db_path: &Path, data_dir: &Path) {
    let db_dir = db_path.parent().unwrap_or(data_dir);
    let db = db_path.as_os_str().to_string_lossy().into_owned();
    let stem = db_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // By name, the server's own: a prefix took an operator's `swarm.toml`
    // and, beside a database named `bin`, `binhost/` (h12).
    let ours = ["-wal", "-shm", ".acked", ".lock"]
        .iter()
        .map(|suffix| std::path::PathBuf::from(format!("{db}{suffix}")))
        .chain([
            db_path.to_path_buf(),
            db_path.with_file_name(format!("{stem}.store-id")),
            db_dir.join("logs"),
            db_dir.join("timeseries.jsonl"),
            data_dir.join("releases"),
        ]);
    let mut closed = Vec::new();
    for path in ours {
        // A link is not followed: its target is not ours to change.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() || mode & 0o007 == 0 {
            continue;
        }
        let set = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o007));
        match set {
            Ok(()) => closed.push(path.display().to_string()),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot take other users' access away")
            }
        }
    }
    if !closed.is_empty() {
        tracing::warn!(
            files = %closed.join(", "),
            "took other users' access away from the server's private files (made under a looser \
             umask, or by an older swarm)"
        );
    }
}
