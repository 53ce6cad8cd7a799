//! Where build logs are kept: one gzip file per build (lease) under `logs/` next to the
//! database, written atomically, with retention bounded by count and by total bytes (the
//! oldest builds, lowest leases, go first). The HTTP side is `logs.rs`.

use super::http::ApiError;
use flate2::read::MultiGzDecoder;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest compressed log accepted (the agent sends at most 1 MiB of text).
pub(crate) const MAX_UPLOAD_BYTES: u64 = 2 * 1024 * 1024;
/// Largest log once decompressed: a gzip bomb is refused, not stored.
pub(crate) const MAX_TEXT_BYTES: u64 = 8 * 1024 * 1024;
/// Logs kept at most.
const MAX_LOGS: usize = 5000;
/// Compressed bytes kept at most.
const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// The log directory and its index (lease → compressed size).
pub(crate) struct LogStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<u64, u64>>,
    max_logs: usize,
    max_bytes: u64,
}

impl LogStore {
    /// Opens (creating) `dir`, indexes the logs already in it and removes the
    /// upload temp files (`.<lease>.tmp`) a killed server left behind. Called
    /// only while the store's lock is held, so no upload is in flight.
    pub(crate) fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut index = BTreeMap::new();
        let mut stale = (0u64, 0u64);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(is_upload_temp) {
                let size = entry.metadata().map_or(0, |m| m.len());
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        stale.0 += 1;
                        stale.1 += size;
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a stale build-log temp file")
                    }
                }
                continue;
            }
            let Some(lease) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log.gz"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            index.insert(lease, entry.metadata()?.len());
        }
        if stale.0 > 0 {
            tracing::info!(
                files = stale.0,
                bytes = stale.1,
                dir = %dir.display(),
                "removed build-log upload temp files an earlier run left behind"
            );
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            max_logs: MAX_LOGS,
            max_bytes: MAX_TOTAL_BYTES,
        })
    }

    fn temp_path(&self, lease: u64) -> PathBuf {
        self.dir.join(format!(".{lease}.tmp"))
    }

    fn path(&self, lease: u64) -> PathBuf {
        self.dir.join(format!("{lease}.log.gz"))
    }

    /// Whether a build has a log, and its compressed size.
    pub(crate) fn size(&self, lease: u64) -> Option<u64> {
        self.index.lock().ok()?.get(&lease).copied()
    }

    /// Stores a checked gzip body, then trims to the retention bounds.
    pub(crate) fn put(&self, lease: u64, gz: &[u8]) -> std::io::Result<()> {
        let tmp = self.temp_path(lease);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(gz)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.path(lease))?;
        let mut index = self
            .index
            .lock()
            .map_err(|_| std::io::Error::other("log index poisoned"))?;
        index.insert(lease, gz.len() as u64);
        let mut total: u64 = index.values().sum();
        while index.len() > self.max_logs || total > self.max_bytes {
            let Some((&oldest, &size)) = index.iter().next() else {
                break;
            };
            if oldest == lease && index.len() == 1 {
                break;
            }
            index.remove(&oldest);
            total = total.saturating_sub(size);
            if let Err(e) = std::fs::remove_file(self.path(oldest)) {
                tracing::warn!(lease = oldest, error = %e, "cannot remove an expired build log");
            }
        }
        Ok(())
    }

    /// The log's text as it decompresses, if stored: streamed, so a reader
    /// holds a decoder's buffers rather than the whole text (many slow
    /// readers of one large log would otherwise hold it many times over).
    /// Never more than [`MAX_TEXT_BYTES`]; the file is opened without
    /// blocking or following a link (what `put` writes is neither).
    pub(crate) fn text(&self, lease: u64) -> Result<Option<LogText>, ApiError> {
        if self.size(lease).is_none() {
            return Ok(None);
        }
        let file = match crate::regular_file::open_regular_not_linked(&self.path(lease)) {
            Ok((file, _)) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ApiError::internal(format!("cannot read the log: {e}"))),
        };
        Ok(Some(
            MultiGzDecoder::new(std::io::BufReader::new(file)).take(MAX_TEXT_BYTES),
        ))
    }
}

/// A stored log's text as it decompresses (`LogStore::text`).
pub(crate) type LogText = std::io::Take<MultiGzDecoder<std::io::BufReader<std::fs::File>>>;

/// Whether a file name is one `LogStore::put` writes before its rename.
fn is_upload_temp(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|lease| !lease.is_empty() && lease.bytes().all(|b| b.is_ascii_digit()))
}

/// Decompresses, refusing more than [`MAX_TEXT_BYTES`].
pub(crate) fn gunzip_capped(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    MultiGzDecoder::new(gz)
        .take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a gzip stream: {e}"))?;
    if out.len() as u64 > MAX_TEXT_BYTES {
        return Err(format!(
            "the log decompresses to more than {MAX_TEXT_BYTES} bytes"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn read(s: &LogStore, lease: u64) -> Option<String> {
        let mut text = String::new();
        s.text(lease)
            .expect("read")?
            .read_to_string(&mut text)
            .expect("utf-8 text");
        Some(text)
    }

    fn gz(text: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn retention_drops_the_oldest_builds_first() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = LogStore::open(dir.path()).expect("open");
        s.max_logs = 3;
        for lease in [5, 1, 9, 7] {
            s.put(lease, &gz(format!("log {lease}").as_bytes()))
                .expect("put");
        }
        let kept: Vec<u64> = s.index.lock().expect("lock").keys().copied().collect();
        assert_eq!(kept, vec![5, 7, 9]);
        assert!(!dir.path().join("1.log.gz").exists());
        assert_eq!(read(&s, 9).as_deref(), Some("log 9"));
        // Reopening finds what is on disk.
        let again = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(again.size(7), s.size(7));
        assert_eq!(again.size(1), None);
    }

    #[test]
    fn upload_temp_files_a_killed_server_left_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let s = LogStore::open(dir.path()).expect("open");
        s.put(7, &gz(b"kept")).expect("put");
        std::fs::write(s.temp_path(8), b"half an upload").expect("stale temp");
        std::fs::write(dir.path().join(".notes.tmp"), b"not ours").expect("other");
        let again = LogStore::open(dir.path()).expect("reopen");
        assert!(!s.temp_path(8).exists(), "the stale temp file is gone");
        assert!(
            dir.path().join(".notes.tmp").exists(),
            "only our own names go"
        );
        assert_eq!(read(&again, 7).as_deref(), Some("kept"));
        assert_eq!(again.size(8), None);
    }

    #[test]
    fn retention_bounds_total_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = LogStore::open(dir.path()).expect("open");
        let one = gz(b"x").len() as u64;
        s.max_bytes = one * 2;
        for lease in 1..=4 {
            s.put(lease, &gz(b"x")).expect("put");
        }
        let kept: Vec<u64> = s.index.lock().expect("lock").keys().copied().collect();
        assert_eq!(kept, vec![3, 4]);
    }

    #[test]
    fn a_gzip_bomb_and_garbage_are_refused() {
        let big = vec![b'a'; (MAX_TEXT_BYTES + 10) as usize];
        let bomb = gz(&big);
        assert!(bomb.len() < 100_000, "the bomb compresses well");
        let e = gunzip_capped(&bomb).expect_err("bomb");
        assert!(e.contains("more than"), "{e}");
        let e = gunzip_capped(b"plain text").expect_err("garbage");
        assert!(e.contains("not a gzip"), "{e}");
        assert_eq!(gunzip_capped(&gz(b"ok")).expect("fine"), b"ok");
    }

    /// A log gzipped in parts (`gzip -c a >> log.gz; gzip -c b >> log.gz`) is one gzip
    /// file of two members, and both are its text: only the first was kept (h110).
    #[test]
    fn a_log_of_several_gzip_members_is_read_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let s = LogStore::open(dir.path()).expect("open");
        let two = [gz(b"first part\n"), gz(b"second part\n")].concat();
        assert_eq!(
            gunzip_capped(&two).expect("both"),
            b"first part\nsecond part\n"
        );
        s.put(9, &two).expect("put");
        assert_eq!(read(&s, 9).as_deref(), Some("first part\nsecond part\n"));
    }
}
