//! Build logs: the agent uploads each build's log (gzip, its tail when the
//! log is large) with its report, so an operator reads why a package failed
//! without a shell on the drone.
//!
//! One file per build (lease) under `logs/` next to the database,
//! `<lease>.log.gz`, written atomically. Retention is bounded by count and
//! by total bytes; the oldest builds (lowest leases) go first.
//!
//! - `PUT /api/v1/logs/<lease>?package=<atom>&node=<drone>` (drone token):
//!   the body is gzip; it must be the build of that drone and package.
//! - `GET /api/v1/logs/<lease>` (read policy): the log as text.
//! - `GET /api/v1/logs?package=<atom>` (read policy): the package's builds
//!   with whether each has a log.

use super::http::{read_body, ApiError, Query, Reply};
use super::shared::Shared;
use flate2::read::GzDecoder;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use swarm_core::Atom;

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
    /// Opens (creating) `dir` and indexes the logs already in it.
    pub(crate) fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(lease) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log.gz"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            index.insert(lease, entry.metadata()?.len());
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            max_logs: MAX_LOGS,
            max_bytes: MAX_TOTAL_BYTES,
        })
    }

    fn path(&self, lease: u64) -> PathBuf {
        self.dir.join(format!("{lease}.log.gz"))
    }

    /// Whether a build has a log, and its compressed size.
    pub(crate) fn size(&self, lease: u64) -> Option<u64> {
        self.index.lock().ok()?.get(&lease).copied()
    }

    /// Stores a checked gzip body, then trims to the retention bounds.
    fn put(&self, lease: u64, gz: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{lease}.tmp"));
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

    /// The log's text (lossy UTF-8), if stored.
    fn text(&self, lease: u64) -> Result<Option<String>, ApiError> {
        if self.size(lease).is_none() {
            return Ok(None);
        }
        let gz = match std::fs::read(self.path(lease)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ApiError::internal(format!("cannot read the log: {e}"))),
        };
        let text = gunzip_capped(&gz).map_err(ApiError::internal)?;
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
    }
}

/// Decompresses, refusing more than [`MAX_TEXT_BYTES`].
fn gunzip_capped(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(gz)
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

fn lease_of(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::field(
            400,
            "lease",
            format!("`{text}` is not a build (lease) number"),
        )
    })
}

fn store(sh: &Shared) -> Result<&LogStore, ApiError> {
    sh.logs
        .as_ref()
        .ok_or_else(|| ApiError::new(503, "build logs are unavailable: the log directory could not be opened (see the server's log)"))
}

/// `PUT /api/v1/logs/<lease>?package=&node=`.
pub(crate) fn put(
    sh: &Shared,
    req: &mut super::front::Request<'_>,
    rest: &str,
    url: &str,
) -> Result<Reply, ApiError> {
    let lease = lease_of(rest)?;
    let q = Query::parse(url);
    let package = q
        .get("package")
        .ok_or_else(|| ApiError::field(400, "package", "send ?package=<atom>"))?;
    let atom = Atom::parse(package)
        .map_err(|e| ApiError::field(400, "package", format!("bad atom {package:?}: {e}")))?;
    let node = q
        .get("node")
        .ok_or_else(|| ApiError::field(400, "node", "send ?node=<drone name>"))?
        .to_string();
    let logs = store(sh)?;
    let body = read_body(req, MAX_UPLOAD_BYTES)?;
    let text = gunzip_capped(&body).map_err(|e| ApiError::bad(format!("log body: {e}")))?;
    // Only the drone that held the lease may attach a log to it.
    let builds = sh.with_history(|h| h.builds(Some(atom.as_str()), None, 200))?;
    let Some(build) = builds.iter().find(|b| b.lease as u64 == lease) else {
        return Err(ApiError::new(
            404,
            format!("no build of {} with lease {lease}", atom.as_str()),
        ));
    };
    let holder = sh.resolve(&node).map(|n| n.as_str().to_string());
    if holder.as_deref() != Some(build.drone.as_str()) {
        return Err(ApiError::new(
            403,
            format!("lease {lease} was held by {}, not by {node}", build.drone),
        ));
    }
    logs.put(lease, &body)
        .map_err(|e| ApiError::internal(format!("cannot store the log: {e}")))?;
    tracing::debug!(lease, package = %atom, bytes = body.len(), text = text.len(), "build log stored");
    Reply::ok(
        &json!({"status": "ok", "lease": lease, "bytes": body.len(), "text_bytes": text.len()}),
    )
}

/// `GET /api/v1/logs/<lease>`.
pub(crate) fn get(sh: &Shared, rest: &str) -> Result<Reply, ApiError> {
    let lease = lease_of(rest)?;
    match store(sh)?.text(lease)? {
        Some(text) => Ok(Reply::Text(200, "text/plain; charset=utf-8", text)),
        None => Err(ApiError::new(
            404,
            format!("no log for build {lease}: the drone sent none, or retention removed it"),
        )),
    }
}

/// `GET /api/v1/logs?package=<atom>[&limit=]`: the package's builds, newest
/// first, each with `log_bytes` when a log is stored.
pub(crate) fn list(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let limit = q.number("limit", 50, 1000)? as u32;
    let package = super::read::package_param(&q)?;
    let logs = store(sh)?;
    let builds = sh.with_history(|h| h.builds(package.as_deref(), None, limit))?;
    let items: Vec<_> = builds
        .into_iter()
        .map(|b| {
            let mut v = serde_json::to_value(&b).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("log_bytes".into(), json!(logs.size(b.lease as u64)));
            }
            v
        })
        .collect();
    Reply::ok(&json!({ "builds": items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

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
        assert_eq!(s.text(9).expect("read").as_deref(), Some("log 9"));
        // Reopening finds what is on disk.
        let again = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(again.size(7), s.size(7));
        assert_eq!(again.size(1), None);
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
}
