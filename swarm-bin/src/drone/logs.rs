//! Build logs: upload each build's log to the server with its report, and
//! keep the local log directory bounded.
//!
//! The upload is the log's last [`UPLOAD_TEXT_BYTES`] (a compiler error is at
//! the end; a truncated log says so on its first line), gzip-compressed,
//! to `PUT /api/v1/logs/<lease>`. It is best effort: a few quick attempts,
//! and a build's report never waits on its log for long.
//!
//! Rotation keeps the newest [`KEEP_LOGS`] logs and at most
//! [`KEEP_BYTES`] in the log directory; the oldest go first.

use super::shared::Agent;
use super::state::Job;
use flate2::write::GzEncoder;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// Text sent at most: the end of the log.
pub(crate) const UPLOAD_TEXT_BYTES: u64 = 1024 * 1024;
/// Attempts before the log is given up (the report goes out regardless).
const ATTEMPTS: u32 = 3;
/// Local logs kept.
pub(crate) const KEEP_LOGS: usize = 500;
/// Local log bytes kept.
pub(crate) const KEEP_BYTES: u64 = 1024 * 1024 * 1024;

/// The tail of `path` (at most `cap` bytes), gzip-compressed; a marker line
/// first when the start was cut.
pub(crate) fn compressed_tail(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    if len > cap {
        f.seek(SeekFrom::Start(len - cap))?;
        writeln!(
            gz,
            "[swarm: the log is {len} bytes; the first {} were dropped, this is its last {cap}]",
            len - cap
        )?;
    }
    let mut buf = Vec::with_capacity(cap.min(len) as usize);
    f.take(cap).read_to_end(&mut buf)?;
    gz.write_all(&buf)?;
    gz.finish()
}

/// Uploads the build's log; logs (never fails) when it cannot.
pub(crate) fn upload(agent: &Agent, job: &Job, farm: Option<&str>, path: &Path) {
    let Some(lease) = job.lease else {
        return; // a lease-less (v3-style) assignment has nothing to attach a log to
    };
    let body = match compressed_tail(path, UPLOAD_TEXT_BYTES) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(log = %path.display(), "cannot read the build log to upload it: {e}");
            return;
        }
    };
    for attempt in 1..=ATTEMPTS {
        match agent
            .client
            .put_log(lease, job.atom.as_str(), &agent.cfg.name, farm, &body)
        {
            Ok(r) => {
                tracing::debug!(package = %job.atom, lease, bytes = r.bytes, "build log uploaded");
                return;
            }
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                tracing::warn!(package = %job.atom, lease, "server refused the build log: {e}");
                return;
            }
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(package = %job.atom, lease, "build log not uploaded after {ATTEMPTS} attempts: {e}");
            }
            Err(_) => agent.pause(Duration::from_secs(u64::from(attempt))),
        }
    }
}

/// Whether a file name is one of the build logs the agent writes
/// (`<lease>_<category>_<pf>.log`, `nolease_...` for a v3 server's build):
/// rotation deletes nothing else, so a `--log-dir /var/log` typo costs no
/// system log.
fn is_build_log(name: &str) -> bool {
    name.strip_suffix(".log")
        .and_then(|stem| stem.split_once('_'))
        .is_some_and(|(lease, rest)| {
            rest.split_once('_')
                .is_some_and(|(cat, pf)| !cat.is_empty() && !pf.is_empty())
                && (lease == "nolease"
                    || (!lease.is_empty() && lease.bytes().all(|b| b.is_ascii_digit())))
        })
}

/// Deletes the oldest build logs beyond `keep` files or `keep_bytes`.
pub(crate) fn rotate(dir: &Path, keep: usize, keep_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(std::time::SystemTime, u64, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| is_build_log(&e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if !m.is_file() {
                return None;
            }
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    // Newest first; keep while within both bounds.
    logs.sort_by_key(|l| std::cmp::Reverse(l.0));
    let mut total = 0u64;
    for (i, (_, size, path)) in logs.iter().enumerate() {
        total += size;
        if i >= keep || (total > keep_bytes && i > 0) {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::debug!(log = %path.display(), "old build log removed"),
                // Another job's rotation took it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(log = %path.display(), "cannot remove an old build log: {e}")
                }
            }
        }
    }
}

/// A log the agent appends to run after run (`portage-sync.log`) past this size is moved to
/// `<name>.1` before the next run: the directory's rotation leaves it alone (it is no build's),
/// and a sync retried every 15 minutes appended its whole output each time, without end.
pub(crate) const APPENDED_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// Moves `path` to `<path>.1` (replacing an older one) when it is over `max` bytes; best effort.
pub(crate) fn roll_over(path: &Path, max: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > max) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        if let Err(e) = std::fs::rename(path, &old) {
            tracing::warn!(log = %path.display(), "cannot move the log aside: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        GzDecoder::new(b).read_to_string(&mut s).expect("gzip");
        s
    }

    #[test]
    fn a_large_log_keeps_its_tail_and_says_so() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("b.log");
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &text).expect("write");
        let out = gunzip(&compressed_tail(&p, 100).expect("tail"));
        assert!(out.starts_with("[swarm: the log is"), "{out}");
        assert!(out.ends_with("line 1999\n"), "{out}");
        assert!(!out.contains("line 0\n"));
        let small = gunzip(&compressed_tail(&p, 1 << 20).expect("whole"));
        assert_eq!(small, text);
    }

    #[test]
    fn rotation_keeps_the_newest_within_count_and_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        for i in 0..6 {
            let p = dir.path().join(format!("{i}_dev-libs_foo-1.{i}.log"));
            std::fs::write(&p, vec![b'x'; 100]).expect("write");
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        std::fs::write(dir.path().join("keep.txt"), "not a log").expect("other");
        // Not the agent's: a log dir shared by mistake (`--log-dir /var/log`).
        for other in ["emerge.log", "app1.log", "x_y.log", "portage-sync.log"] {
            std::fs::write(dir.path().join(other), "someone else's").expect("other");
        }
        let others = [
            "app1.log",
            "emerge.log",
            "keep.txt",
            "portage-sync.log",
            "x_y.log",
        ];
        rotate(dir.path(), 4, u64::MAX);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = (2..6)
            .map(|i| format!("{i}_dev-libs_foo-1.{i}.log"))
            .chain(others.iter().map(|o| o.to_string()))
            .collect();
        want.sort();
        assert_eq!(left, want);
        rotate(dir.path(), 100, 250);
        let n = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(
            n,
            2 + others.len(),
            "two logs of 100 bytes fit in 250, and the others"
        );
        assert!(is_build_log("nolease_dev-libs_foo-1.log"));
        assert!(!is_build_log("20240101_install.log"), "no <cat>_<pf>");
        assert!(!is_build_log("nolease_notmine.log"));
        assert!(!is_build_log("_dev-libs_foo-1.log"));
    }

    #[test]
    fn an_appended_log_over_its_bound_is_moved_aside_once_and_replaces_the_older_copy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("portage-sync.log");
        let old = dir.path().join("portage-sync.log.1");
        std::fs::write(&log, b"1234").expect("write");
        roll_over(&log, 4);
        assert!(log.exists() && !old.exists(), "at its bound it stays");
        std::fs::write(&old, b"older").expect("write");
        std::fs::write(&log, b"12345").expect("write");
        roll_over(&log, 4);
        assert!(!log.exists(), "over its bound it is moved");
        assert_eq!(std::fs::read(&old).expect("moved"), b"12345");
    }
}
