//! Whether uploads can be stored: health is 503 while the staging area cannot
//! be written, as it is while the store cannot (h41 F5: every upload got a 507
//! while health said ok). An upload that fails on the staging disk notes the
//! directory it could not write; health and `/metrics` then probe that
//! directory (a 4 KiB file, written, synced and removed) at most once a second
//! while they are read, and a stored upload clears the note, so health turns
//! back by itself.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a noted failure is probed again, at most.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bytes a probe writes: a block, so a full disk fails it.
const PROBE_BYTES: usize = 4096;

/// The last staging failure, while it lasts.
#[derive(Default)]
pub(crate) struct StagingHealth(Mutex<Option<Failure>>);

struct Failure {
    why: String,
    dir: PathBuf,
    probed: Instant,
}

impl StagingHealth {
    /// An upload could not be written into `dir`.
    pub(crate) fn failed(&self, dir: &Path, why: &str) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                tracing::error!(dir = %dir.display(), why, "the staging area cannot be written: uploads are refused (507, drones retry them) and health is 503 until it can");
            }
            *slot = Some(Failure {
                why: why.to_owned(),
                dir: dir.to_owned(),
                probed: Instant::now(),
            });
        }
    }

    /// An upload was stored.
    pub(crate) fn stored(&self) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.take().is_some() {
                tracing::info!("the staging area takes uploads again: health is 200");
            }
        }
    }

    /// Why uploads cannot be stored now, if a failure was noted and a probe
    /// (at most once a second) still fails.
    pub(crate) fn trouble(&self) -> Option<String> {
        let mut slot = self.0.lock().ok()?;
        let failure = slot.as_mut()?;
        if failure.probed.elapsed() >= PROBE_EVERY {
            failure.probed = Instant::now();
            match probe(&failure.dir) {
                Ok(()) => {
                    *slot = None;
                    tracing::info!("the staging area can be written again: health is 200");
                    return None;
                }
                Err(e) => failure.why = format!("cannot write {}: {e}", failure.dir.display()),
            }
        }
        Some(format!(
            "the staging area cannot be written ({}): uploads are refused with 507 and drones \
             retry them until it can",
            failure.why
        ))
    }
}

/// Writes, syncs and removes a block in `dir`, making `dir` as an upload would.
fn probe(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!(".health-probe-{}.tmp", std::process::id()));
    let written = std::fs::write(&file, [0u8; PROBE_BYTES])
        .and_then(|()| std::fs::File::open(&file)?.sync_all());
    let _ = std::fs::remove_file(&file);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure shows until a probe of its directory works, a second later at the soonest,
    /// or an upload is stored.
    #[test]
    fn a_failure_shows_until_its_directory_can_be_written() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("dev-libs");
        std::fs::write(&dir, b"in the way").expect("block");
        let health = StagingHealth::default();
        assert_eq!(health.trouble(), None);
        health.failed(&dir, "cannot create dev-libs: File exists");
        let said = health.trouble().expect("trouble");
        assert!(
            said.contains("File exists") && said.contains("507"),
            "{said}"
        );
        std::thread::sleep(PROBE_EVERY);
        let said = health.trouble().expect("the probe fails too");
        assert!(said.contains(&dir.display().to_string()), "{said}");
        std::fs::remove_file(&dir).expect("unblock");
        assert!(
            health.trouble().is_some(),
            "not probed again within a second"
        );
        std::thread::sleep(PROBE_EVERY);
        assert_eq!(health.trouble(), None);
        assert!(dir.is_dir(), "made as an upload would");
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "no probe left"
        );
        health.failed(&dir, "again");
        health.stored();
        assert_eq!(health.trouble(), None);
    }
}
