//! Whether uploads can be stored: health is 503 while the staging area cannot
//! be written, as it is while the store cannot (h41 F5: every upload got a 507
//! while health said ok). An upload that fails on the staging disk notes the
//! directories it writes (its category's, and the lease records') and its size,
//! one note per category directory: an upload stored in another category says
//! nothing of a blocked one (h43 F1). A note goes when an upload at least that
//! big is stored in its category, or when a probe
//! finds every one of those directories writable (a 4 KiB file, written,
//! synced and removed) with that much space free: a probe alone cleared a
//! nearly full disk a second after each failure, as the failed upload's temp
//! file was gone by then (h42 F1). Probes run on a thread of their own, at most
//! one at a time and once a second, started while health or `/metrics` is
//! read, so a staging mount that hangs holds no reader (h42 F3).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a noted failure is probed again, at most.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Bytes a probe writes: a block, so a full disk fails it.
const PROBE_BYTES: usize = 4096;

/// The last staging failure, while it lasts.
#[derive(Default)]
pub(crate) struct StagingHealth(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// By the category directory the failed upload was to be stored in.
    failures: std::collections::BTreeMap<PathBuf, Failure>,
    probing: bool,
}

struct Failure {
    why: String,
    /// The staging tree (a profile's may be purged meanwhile: then nothing is stored there).
    root: PathBuf,
    dirs: Vec<PathBuf>,
    /// Bytes the failed upload needed.
    need: u64,
    probed: Instant,
}

/// A probe to make: the failure's key, its tree, its directories and the bytes it needs.
type Due = (PathBuf, PathBuf, Vec<PathBuf>, u64);

impl StagingHealth {
    /// An upload of `need` bytes into `dirs` of the staging tree `root` failed; the first of
    /// `dirs` is its category's.
    pub(crate) fn failed(&self, root: &Path, dirs: Vec<PathBuf>, need: u64, why: &str) {
        let Some(key) = dirs.first().cloned() else {
            return;
        };
        if let Ok(mut st) = self.0.lock() {
            if st.failures.is_empty() {
                tracing::error!(staging = %root.display(), why, "the staging area cannot be written: uploads are refused (507, drones retry them) and health is 503 until it can");
            }
            let need = st.failures.get(&key).map_or(need, |f| f.need.max(need));
            let failure = Failure {
                why: why.to_owned(),
                root: root.to_owned(),
                dirs,
                need,
                probed: Instant::now(),
            };
            st.failures.insert(key, failure);
        }
    }

    /// An upload of `size` bytes was stored into the category directory `dir`.
    pub(crate) fn stored(&self, dir: &Path, size: u64) {
        if let Ok(mut st) = self.0.lock() {
            if st.failures.get(dir).is_some_and(|f| size >= f.need) {
                st.failures.remove(dir);
                if st.failures.is_empty() {
                    tracing::info!("the staging area takes uploads again: health is 200");
                }
            }
        }
    }

    /// Why uploads cannot be stored now, if a failure was noted and no probe
    /// or upload since showed otherwise; starts the probes that are due.
    pub(crate) fn trouble(&self) -> Option<String> {
        let mut st = self.0.lock().ok()?;
        let due: Vec<Due> = if st.probing {
            Vec::new()
        } else {
            st.failures
                .iter_mut()
                .filter(|(_, f)| f.probed.elapsed() >= PROBE_EVERY)
                .map(|(key, f)| {
                    f.probed = Instant::now();
                    (key.clone(), f.root.clone(), f.dirs.clone(), f.need)
                })
                .collect()
        };
        if !due.is_empty() {
            let state = Arc::clone(&self.0);
            let spawned = std::thread::Builder::new()
                .name("staging-probe".into())
                .spawn(move || probe_all(&state, due));
            st.probing = spawned.is_ok();
        }
        let first = st.failures.values().next()?;
        let others = match st.failures.len() - 1 {
            0 => String::new(),
            1 => ", and 1 more directory".to_owned(),
            n => format!(", and {n} more directories"),
        };
        Some(format!(
            "the staging area cannot be written ({}{others}): uploads are refused with 507 and \
             drones retry them until it can",
            first.why
        ))
    }
}

/// Probes each due failure, then clears those that passed.
fn probe_all(state: &Mutex<State>, due: Vec<Due>) {
    let results: Vec<(PathBuf, Result<(), String>)> = due
        .into_iter()
        .map(|(key, root, dirs, need)| (key, probe(&root, &dirs, need)))
        .collect();
    let Ok(mut st) = state.lock() else {
        return;
    };
    st.probing = false;
    let had = !st.failures.is_empty();
    for (key, result) in results {
        match result {
            Ok(()) => {
                st.failures.remove(&key);
            }
            Err(why) => {
                if let Some(f) = st.failures.get_mut(&key) {
                    f.why = why;
                }
            }
        }
    }
    if had && st.failures.is_empty() {
        tracing::info!("the staging area can be written again: health is 200");
    }
}

/// Whether every one of `dirs` takes a block and has `need` bytes free. A tree
/// that is gone (a purged profile's) stores nothing: nothing to wait for.
fn probe(root: &Path, dirs: &[PathBuf], need: u64) -> Result<(), String> {
    if !root.is_dir() {
        return Ok(());
    }
    for dir in dirs {
        let failed = |e: std::io::Error| format!("cannot write {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(failed)?;
        // Named as an upload's temp file: a kill leaves it to the start's sweep.
        let file = dir.join(format!(".upload-probe-{}.tmp", std::process::id()));
        let written = std::fs::write(&file, [0u8; PROBE_BYTES])
            .and_then(|()| std::fs::File::open(&file)?.sync_all());
        let _ = std::fs::remove_file(&file);
        written.map_err(failed)?;
        let stat = rustix::fs::statvfs(dir)
            .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < need {
            return Err(format!(
                "{} has {free} bytes free; the upload that failed needs {need}",
                dir.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trouble a probe left once it ended (a probe runs on its own thread).
    fn settled(health: &StagingHealth) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while health.0.lock().expect("lock").probing && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        health.trouble()
    }

    /// A failure shows until a probe of its directories works, a second later at the soonest,
    /// with the space the upload needed free, or an upload that big is stored.
    #[test]
    fn a_failure_shows_until_its_directories_can_take_the_upload() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("dev-libs");
        let records = root.path().join(".leases/dev-libs");
        std::fs::write(&dir, b"in the way").expect("block");
        let health = StagingHealth::default();
        assert_eq!(health.trouble(), None);
        let dirs = vec![dir.clone(), records.clone()];
        health.failed(
            root.path(),
            dirs.clone(),
            10,
            "cannot create dev-libs: File exists",
        );
        let said = health.trouble().expect("trouble");
        assert!(
            said.contains("File exists") && said.contains("507"),
            "{said}"
        );
        std::thread::sleep(PROBE_EVERY);
        assert!(
            health.trouble().is_some(),
            "a probe starts; the note stays meanwhile"
        );
        let said = settled(&health).expect("the probe fails too");
        assert!(said.contains(&dir.display().to_string()), "{said}");
        std::fs::remove_file(&dir).expect("unblock");
        assert!(
            health.trouble().is_some(),
            "not probed again within a second"
        );
        std::thread::sleep(PROBE_EVERY);
        health.trouble();
        assert_eq!(settled(&health), None);
        assert!(dir.is_dir() && records.is_dir(), "made as an upload would");
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "no probe left"
        );
        // More than the disk has free: a probe that writes its block does not clear it.
        health.failed(
            root.path(),
            dirs.clone(),
            u64::MAX,
            "No space left on device",
        );
        std::thread::sleep(PROBE_EVERY);
        health.trouble();
        let said = settled(&health).expect("too little space");
        assert!(said.contains("bytes free"), "{said}");
        health.stored(&dir, 1_000);
        assert!(
            health.trouble().is_some(),
            "a smaller upload does not clear it"
        );
        health.stored(&root.path().join("app-misc"), u64::MAX);
        assert!(
            health.trouble().is_some(),
            "nor one into another category (h43 F1)"
        );
        health.stored(&dir, u64::MAX);
        assert_eq!(health.trouble(), None);
        // A tree that is gone stores nothing, and is not made again.
        let gone = root.path().join(".profiles/old");
        health.failed(&gone, vec![gone.join("dev-libs")], 10, "gone");
        std::thread::sleep(PROBE_EVERY);
        health.trouble();
        assert_eq!(settled(&health), None);
        assert!(!gone.exists());
    }
}
