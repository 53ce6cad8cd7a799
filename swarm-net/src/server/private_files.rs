//! The server's private files, closed to other users at start.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Takes the world's access from `paths` (the store's files and the
/// server's own, as their owners name them) where a data dir made under a
/// looser umask, or by an older swarm, left it (h11: an upgrade kept them
/// 0644), saying which. Files inside `logs/` and `releases/` are closed by
/// their directory; a link is not followed.
pub(crate) fn close_to_others(paths: impl IntoIterator<Item = PathBuf>) {
    let mut closed = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() || mode & 0o007 == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !0o007)) {
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
