//! The file operations releases are made of: directories and files readable by
//! any web server whatever the umask, and writes that are never seen half done.

use super::error::{io, ReleaseError};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Creates `d` mode 0755, and the parents it makes too: a web server must
/// pass through each, and under a tight umask (`swarm serve` adds the
/// world's bits to it) a new parent was 0750.
pub(crate) fn mkdir(d: &Path) -> Result<(), ReleaseError> {
    let made: Vec<&Path> = d
        .ancestors()
        .skip(1)
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    std::fs::create_dir_all(d).map_err(io("create", d))?;
    for parent in made {
        set_mode(parent, 0o755)?;
    }
    set_mode(d, 0o755)
}

/// The first directory on the way to `root` that users other than its
/// owner cannot pass, with its mode: a web server serving the tree from
/// disk (`dist/nginx/`) then gets 403 for every file, although the tree
/// itself is 0755/0644 (a data dir made under umask 077 is 0700).
/// The way as configured counts as well as the way it resolves to: a link
/// in a closed directory is as closed (h15).
pub fn closed_to_others(root: &Path) -> Option<(std::path::PathBuf, u32)> {
    let configured = std::path::absolute(root).ok()?;
    let resolved = std::fs::canonicalize(root).ok()?;
    configured
        .ancestors()
        .chain(resolved.ancestors())
        .find_map(|dir| {
            let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
            (mode & 0o001 == 0).then(|| (dir.to_path_buf(), mode))
        })
}

/// Files 0644 and directories 0755 whatever the umask, so any web server can serve them.
pub(crate) fn set_mode(p: &Path, mode: u32) -> Result<(), ReleaseError> {
    let meta = std::fs::metadata(p).map_err(io("stat", p))?;
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", p))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file, fsynced and renamed, mode 0644.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        set_mode(&tmp, 0o644)?;
        std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A failed hardlink, saying so when staging and the binhost are on two
/// filesystems (EXDEV), which releases cannot work across.
pub(crate) fn link_error(dest: &Path, source: std::io::Error) -> ReleaseError {
    ReleaseError::Io {
        what: if source.raw_os_error() == Some(18) {
            "hardlink (staging and the binhost must be on one filesystem) into"
        } else {
            "hardlink into"
        },
        path: dest.to_path_buf(),
        source,
    }
}
