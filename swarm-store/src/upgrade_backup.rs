//! A copy of an older store taken before its schema is upgraded. The upgrade is one way: once
//! it commits, the swarm that wrote the store refuses it (a newer schema), so going back to that
//! build after an upgrade needed a backup the operator might not have taken (h33 F4).

use crate::error::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// Where the copy of `db` at `schema` goes: beside it, named after the schema it holds, so a
/// later upgrade from another schema does not overwrite it.
pub(crate) fn path_for(db: &Path, schema: i64) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(format!(".schema{schema}-backup"));
    PathBuf::from(name)
}

/// Copies the store `conn` has open (its -wal's commits included) to [`path_for`], whole or not
/// at all: `VACUUM INTO` a `.new` file, fsynced and renamed over any earlier copy of the same
/// schema (which the build that wrote the store has used since, so that copy is older).
/// A failure refuses the upgrade, with the store left as it was.
pub(crate) fn take(conn: &Connection, db: &Path, schema: i64) -> Result<PathBuf, StoreError> {
    let to = path_for(db, schema);
    let mut fresh = to.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    let failed = |detail: String| StoreError::UpgradeBackupFailed {
        backup: to.clone(),
        schema,
        detail,
    };
    match std::fs::remove_file(&fresh) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(failed(format!("removing {}: {e}", fresh.display())))
        }
        _ => {}
    }
    let text = fresh
        .to_str()
        .ok_or_else(|| failed(format!("{} is not UTF-8", fresh.display())))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [text]) {
        let _ = std::fs::remove_file(&fresh);
        return Err(failed(e.to_string()));
    }
    std::fs::File::open(&fresh)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&fresh, &to))
        .map_err(|e| {
            let _ = std::fs::remove_file(&fresh);
            failed(e.to_string())
        })?;
    crate::whole_file::sync_dir_of(&to)?;
    Ok(to)
}
