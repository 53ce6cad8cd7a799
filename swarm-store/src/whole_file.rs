//! Files the store replaces whole: written to `<name>.new`, fsynced and
//! renamed over `<name>`, so a power loss leaves the old file or the whole
//! new one, never an empty or half-written one. The `.new` name is fixed, so
//! a crash leaves at most one stray file, which the next write replaces.
//! The caller fsyncs the directory once it has renamed what it needs.

use crate::error::StoreError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` as described above, returning the new file
/// open for reading and writing (the marker goes on writing in place).
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| StoreError::Io { path: p, source }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&fresh)
        .map_err(io(&fresh))?;
    file.write_all(bytes).map_err(io(&fresh))?;
    file.sync_all().map_err(io(&fresh))?;
    std::fs::rename(&fresh, path).map_err(io(path))?;
    Ok(file)
}

/// Fsyncs the directory holding `path`, so the renames into it survive a
/// power loss.
pub(crate) fn sync_dir_of(path: &Path) -> Result<(), StoreError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}
