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
use crate::own_file::{self, OwnFile};
use std::path::{Path, PathBuf};

/// The most of the file read: swarm writes about 300 bytes.
const MAX_BYTES: u64 = 64 << 10;

/// Where the store-id file of `db` lives.
pub(crate) fn path(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "swarm".to_owned());
    db.with_file_name(format!("{stem}.store-id"))
}

/// Writes the store id and the seq its log has reached, whole and durably (`whole_file`, then
/// its directory fsynced); unless the file already says them and `always` is false. Written
/// once the marker exists, so the file also says that the marker did
/// ([`StoreError::MarkerMissing`]). `always`: a check that the file can still be written, which
/// a read cannot tell (an immutable file, a read-only directory: the next open, which writes
/// it, is refused; h50 F1).
pub(crate) fn record(
    db: &Path,
    store_id: &str,
    reached: u64,
    always: bool,
) -> Result<(), StoreError> {
    let path = path(db);
    let text = format!(
        "swarm store {store_id}\nreached seq {reached}\n# Written by swarm at each start, at a \
         clean stop and once a minute while it runs: this data dir holds a swarm store whose log reached that seq. Keep it with \
         swarm.db; without it, a deleted database could pass for a new farm, and an older copy \
         of the database for the newest.\n"
    );
    // Read without ever blocking: the writer's thread records this file once a minute (h44 F3:
    // a FIFO there stopped every write, and the server ignored SIGTERM).
    match own_file::read(&path, MAX_BYTES) {
        Ok(OwnFile::NotAFile(kind)) => {
            return Err(StoreError::Io {
                source: std::io::Error::other(format!(
                    "it is a {kind}, not the file swarm writes there: move it away"
                )),
                path,
            })
        }
        Ok(OwnFile::Bytes(b)) if !always && b == text.as_bytes() => return Ok(()),
        _ => {}
    }
    crate::whole_file::replace(&path, text.as_bytes())?;
    crate::whole_file::sync_dir_of(&path)
}

/// What the file says: the store this data dir last ran, and the seq its log had reached
/// (`None` in a file written before swarm kept it).
pub(crate) fn read(db: &Path) -> Option<(String, Option<u64>)> {
    let Ok(OwnFile::Bytes(bytes)) = own_file::read(&path(db), MAX_BYTES) else {
        return None;
    };
    let text = String::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let id = lines.next()?.strip_prefix("swarm store ")?.trim();
    let reached = lines
        .next()
        .and_then(|l| l.strip_prefix("reached seq "))
        .and_then(|n| n.trim().parse().ok());
    (!id.is_empty()).then(|| (id.to_owned(), reached))
}
