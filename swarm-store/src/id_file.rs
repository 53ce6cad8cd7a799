//! The store-id file: `<stem>.store-id` beside the configured database path
//! (`swarm.store-id` for `swarm.db`), written at every open with the
//! store's id. It is evidence that this data dir held a store, kept
//! outside the `swarm.db*` names on purpose: an `rm -f swarm.db*` takes the
//! database, its WAL and the acknowledgement marker, and without this file
//! the next start could not tell that from a first start. It says nothing
//! about what was acknowledged (the marker does); only that something was.
//!
//! Files an operator may put in a new data dir before the first start (an
//! `admin.token`) are therefore no evidence: only swarm writes this one.

use crate::error::StoreError;
use std::path::{Path, PathBuf};

/// Where the store-id file of `db` lives.
pub(crate) fn path(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "swarm".to_owned());
    db.with_file_name(format!("{stem}.store-id"))
}

/// Writes the store id, unless the file already says it, whole
/// (`whole_file`; its directory is fsynced with the marker's, which lives
/// beside it).
pub(crate) fn record(db: &Path, store_id: &str) -> Result<(), StoreError> {
    let path = path(db);
    let text = format!(
        "swarm store {store_id}\n# Written by swarm at each start: this data dir holds a swarm \
         store. Keep it with swarm.db; without it, a deleted database could pass for a new farm.\n"
    );
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    crate::whole_file::replace(&path, text.as_bytes()).map(drop)
}

/// The store id the file names, if it names one: the store this data dir last ran.
pub(crate) fn read(db: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path(db)).ok()?;
    let id = text.lines().next()?.strip_prefix("swarm store ")?.trim();
    (!id.is_empty()).then(|| id.to_owned())
}
