//! The acknowledgement marker: `<db>.acked`, a small file next to the
//! database that records the last acknowledged seq independently of the
//! database and its WAL, so `open` can tell "nothing happened yet" from
//! "the file lost inputs it had acknowledged".
//!
//! SQLite cannot tell by itself: a deleted `-wal`, a WAL frame with a bad
//! checksum (SQLite silently stops reading the WAL there) or a 0-byte
//! `swarm.db` all open as a valid, older (or empty) database.
//!
//! # Format
//! Two fixed 64-byte slots, written alternately in place (`pwrite`, no
//! rename), each `swarm-acked 1 <store id> <seq> <crc>` padded with spaces.
//! The valid slot with the highest seq counts, so a torn write of one slot
//! still leaves the other. The marker is written after each commit and never
//! fsynced: it can only lag the database, never lead it, except where the
//! database itself lost commits (power loss under `synchronous=NORMAL`),
//! which is exactly what it is there to detect. Cost: one 64-byte `pwrite`
//! per group commit.
//!
//! At each open the marker is made whole before anything is acknowledged:
//! both slots are written to a new file, fsynced and renamed over the old
//! one, so the file swarm leaves is never empty, even after a power loss
//! at its creation (later writes overwrite bytes in place and never change
//! its size). An empty marker is then something else's doing, and beside a
//! database with content it is refused (`MarkerEmpty`): a marker emptied
//! and a `-wal` deleted would otherwise open without a word.
//!
//! With `defer_sync` the marker is written by whoever made the fsync
//! (`WalSync::sync_acknowledging`, on the server's fsync thread or its
//! writer), after the fsync and before the replies it covers are sent: a
//! reply is never received while the marker says less. So the running
//! store shares its marker (`SharedMarker`), and `record` never moves it
//! back (two threads may record out of order).

use crate::error::StoreError;
use crate::own_file::OwnFile;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SLOT: usize = 64;
const MAGIC: &str = "swarm-acked 1";

/// What the marker says was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acked {
    /// The store the acknowledgements belong to (`meta.store_id`).
    pub(crate) store_id: String,
    /// The last acknowledged seq.
    pub(crate) seq: u64,
}

/// The marker file next to a database: beside the path the operator gave,
/// not the file a symbolic link leads to. A `swarm.db` linked into a
/// volume that did not mount then still has its marker, which says that
/// inputs were acknowledged, and the start is refused instead of making a
/// new, empty store.
pub(crate) fn marker_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".acked");
    PathBuf::from(path)
}

/// Where swarm before this layout kept the marker: beside the file the
/// database path resolves to. Read when the marker is not at
/// [`marker_path`], and removed once the marker is written there.
fn legacy_marker_path(db: &Path) -> Option<PathBuf> {
    let legacy = crate::db_path::beside_database(db, ".acked");
    (legacy != marker_path(db)).then_some(legacy)
}

/// Removes the marker from its old place ([`legacy_marker_path`]) once the
/// store has written it at [`marker_path`], so an old marker cannot be read
/// in its stead later.
pub(crate) fn remove_legacy(db: &Path) {
    if let Some(legacy) = legacy_marker_path(db) {
        // Never the marker itself: a relative or symlinked data dir spells
        // its path otherwise than the real one, as text they differ.
        let id = crate::db_path::file_id;
        if matches!((id(&legacy), id(&marker_path(db))), (Ok(a), Ok(b)) if a == b) {
            return;
        }
        if std::fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_file()) {
            if let Err(e) = std::fs::remove_file(&legacy) {
                tracing::warn!(marker = %legacy.display(), error = %e, "cannot remove the acknowledgement marker from its old place");
            }
        }
    }
}

/// Reads the marker: `Ok(None)` when there is none, an error naming the
/// file when it is empty (`MarkerEmpty`: the caller decides whether that
/// hides anything) or no slot is readable. A marker
/// only at its old place (beside a symbolic link's target) is read there.
pub(crate) fn read(db: &Path) -> Result<Option<Acked>, StoreError> {
    match read_at(marker_path(db))? {
        None => match legacy_marker_path(db) {
            Some(legacy) => read_at(legacy),
            None => Ok(None),
        },
        found => Ok(found),
    }
}

fn read_at(path: PathBuf) -> Result<Option<Acked>, StoreError> {
    // Opening a FIFO for reading blocks until a writer comes, which at a start is never.
    let bytes = match crate::own_file::read(&path, 4 * SLOT as u64) {
        Ok(OwnFile::Bytes(bytes)) => bytes,
        Ok(OwnFile::Missing) => return Ok(None),
        Ok(OwnFile::NotAFile(kind)) => {
            return Err(StoreError::MarkerNotAFile { kind, marker: path })
        }
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    if bytes.iter().all(|b| *b == 0) {
        return Err(StoreError::MarkerEmpty { marker: path });
    }
    let best = bytes
        .chunks(SLOT)
        .take(2)
        .filter_map(parse_slot)
        .max_by_key(|a| a.seq);
    match best {
        Some(a) => Ok(Some(a)),
        None => Err(StoreError::MarkerUnreadable { marker: path }),
    }
}

fn parse_slot(slot: &[u8]) -> Option<Acked> {
    let text = std::str::from_utf8(slot).ok()?.trim_end();
    let rest = text.strip_prefix(MAGIC)?.trim_start();
    let mut parts = rest.split(' ');
    let store_id = parts.next()?;
    let seq: u64 = parts.next()?.parse().ok()?;
    let crc: u32 = u32::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() || crc != checksum(store_id, seq) {
        return None;
    }
    Some(Acked {
        store_id: store_id.to_owned(),
        seq,
    })
}

fn checksum(store_id: &str, seq: u64) -> u32 {
    // FNV-1a, 32 bits: enough to tell a torn slot from a whole one.
    let mut h: u32 = 0x811c_9dc5;
    for b in store_id.bytes().chain(seq.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn encode(store_id: &str, seq: u64) -> [u8; SLOT] {
    let text = format!("{MAGIC} {store_id} {seq} {:08x}", checksum(store_id, seq));
    let mut slot = [b' '; SLOT];
    let n = text.len().min(SLOT - 1);
    slot[..n].copy_from_slice(&text.as_bytes()[..n]);
    slot[SLOT - 1] = b'\n';
    slot
}

/// The open marker of a running store.
#[derive(Debug)]
pub(crate) struct Marker {
    file: File,
    path: PathBuf,
    store_id: String,
    flip: bool,
    /// The highest seq recorded: `record` never moves the marker back.
    highest: u64,
}

/// The marker as the store and its fsyncs share it (see the module doc).
pub(crate) type SharedMarker = Arc<Mutex<Marker>>;

/// Records `seq` in a shared marker (`Marker::record`).
pub(crate) fn record_shared(marker: &Mutex<Marker>, seq: u64) -> Result<(), StoreError> {
    match marker.lock() {
        Ok(mut m) => m.record(seq),
        Err(_) => Err(StoreError::Poisoned {
            reason: "a thread panicked while it wrote the acknowledgement marker".into(),
        }),
    }
}

impl Marker {
    /// Writes the marker anew with `seq` and opens it for the running
    /// store: a new file with both slots, fsynced, renamed over the old one
    /// and the directory fsynced, so a power loss at any point leaves the
    /// old marker or the whole new one, never an empty file (see the module
    /// doc). Later writes are in place and not fsynced.
    pub(crate) fn open(db: &Path, store_id: &str, seq: u64) -> Result<Marker, StoreError> {
        let path = marker_path(db);
        let slot = encode(store_id, seq);
        let mut both = [0u8; 2 * SLOT];
        both[..SLOT].copy_from_slice(&slot);
        both[SLOT..].copy_from_slice(&slot);
        let file = crate::whole_file::replace(&path, &both)?;
        crate::whole_file::sync_dir_of(&path)?;
        Ok(Marker {
            file,
            path,
            store_id: store_id.to_owned(),
            flip: false,
            highest: seq,
        })
    }

    /// Writes the marker anew at its path with what it records, as [`Marker::open`] does, after
    /// the file was deleted or replaced under the running store: the store knows what it
    /// acknowledged, so a restart can tell again whether anything was lost.
    pub(crate) fn rewrite(&mut self, db: &Path) -> Result<(), StoreError> {
        let store_id = std::mem::take(&mut self.store_id);
        match Marker::open(db, &store_id, self.highest) {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(e) => {
                self.store_id = store_id;
                Err(e)
            }
        }
    }

    /// The highest seq recorded.
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Device and inode of the file this marker writes to (`None` if the
    /// system will not say), so the store can notice when the name no longer
    /// leads to it.
    pub(crate) fn file_id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Records that everything up to `seq` is acknowledged (after the commit,
    /// or with `defer_sync` after its fsync). A seq at or below the one
    /// recorded writes nothing.
    pub(crate) fn record(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq <= self.highest {
            return Ok(());
        }
        let slot = encode(&self.store_id, seq);
        let offset = if self.flip { SLOT as u64 } else { 0 };
        self.flip = !self.flip;
        self.file
            .write_all_at(&slot, offset)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.highest = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn the_newest_whole_slot_wins_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("swarm.db");
        assert_eq!(read(&db).expect("none"), None);
        let mut m = Marker::open(&db, "abc", 5).expect("open");
        m.record(6).expect("record");
        m.record(7).expect("record");
        m.record(6).expect("an older seq writes nothing");
        let got = read(&db).expect("read").expect("some");
        assert_eq!((got.store_id.as_str(), got.seq), ("abc", 7));
        // Tear the slot holding 7 (the second): 6 is still there.
        let f = OpenOptions::new()
            .write(true)
            .open(marker_path(&db))
            .expect("open");
        f.write_all_at(b"garbage", SLOT as u64 + 20).expect("tear");
        let got = read(&db).expect("read").expect("some");
        assert_eq!(got.seq, 6);
        f.write_all_at(b"garbage", 20).expect("tear");
        assert!(matches!(
            read(&db),
            Err(StoreError::MarkerUnreadable { .. })
        ));
    }
}
