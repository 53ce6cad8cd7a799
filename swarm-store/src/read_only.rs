//! Read-only connections for readers beside the writer (the SQL explorer, history
//! queries, tools): SQLite itself refuses their writes, so no reader can touch
//! acknowledged state whatever SQL it is given.

use crate::error::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Opens `path` read-only, without SQLite's per-connection mutex (each reader owns its connection).
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Ok(Connection::open_with_flags(path, flags)?)
}
