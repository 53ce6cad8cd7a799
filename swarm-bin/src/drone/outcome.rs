//! A build's success, on disk the moment its builder exits.
//!
//! Between the builder's exit and its spool entry the agent reads every package the build
//! wrote in full (`collect`), the log's tail, and fsyncs the copies: for a big package, seconds.
//! An agent killed then lost the finished build, and the server gave the same lease back to be
//! built again (h36 F2). So a builder that exited 0 gets a small record,
//! `<work_dir>/builds/<label>/outcome.json`, written whole (temp file, fsync, rename, directory
//! fsync) before anything else; the next agent finds it beside the build's PKGDIR and spools
//! the build from there (see `job::recover`). A builder that did not report success gets no
//! record, and its build is handed out again as before. The record goes once the build is
//! spooled, and the whole build directory once its packages moved to the drone's PKGDIR; at
//! start, a directory without a record (a build an earlier agent never finished) is removed,
//! or the packages left in it filled the disk.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use swarm_core::Atom;

const FILE: &str = "outcome.json";
/// A record this agent writes is a few hundred bytes; anything much bigger is not one.
const MAX_BYTES: u64 = 64 * 1024;

/// What a finished build's report needs, known when its builder exits 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) lease: Option<u64>,
    /// The atom the lease names.
    pub(crate) atom: String,
    /// The farm of the work reply that leased it.
    pub(crate) farm: Option<String>,
    /// The drone's epoch when the builder exited, as the job's own report would carry it.
    #[serde(default)]
    pub(crate) epoch: Option<u64>,
    pub(crate) took_s: f64,
    /// When the build started, ms since the epoch (`job::deliver_found` needs it).
    pub(crate) started_ms: u64,
    /// The build's log.
    pub(crate) log: PathBuf,
}

impl Record {
    /// The atom, or why the record is damaged.
    pub(crate) fn atom(&self) -> Result<Atom, String> {
        Atom::parse(&self.atom).map_err(|e| format!("its atom {:?} is not one: {e}", self.atom))
    }

    pub(crate) fn started(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.started_ms)
    }
}

/// The build directory of a build's PKGDIR (`<work_dir>/builds/<label>`).
pub(crate) fn build_dir(pkgdir: &Path) -> &Path {
    pkgdir.parent().unwrap_or(pkgdir)
}

/// Writes the record whole into `build_dir`: a kill leaves either none or all of it.
pub(crate) fn write(build_dir: &Path, record: &Record) -> std::io::Result<()> {
    let tmp = build_dir.join(format!("{FILE}.tmp"));
    let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, &text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, build_dir.join(FILE))?;
    std::fs::File::open(build_dir)?.sync_all()
}

/// Makes sure `build_dir` holds a readable record, writing `record` when it does not (its first
/// write failed).
pub(crate) fn ensure(build_dir: &Path, record: &Record) -> std::io::Result<()> {
    match read(build_dir) {
        Ok(Some(_)) => Ok(()),
        _ => write(build_dir, record),
    }
}

/// The record under the lease its job holds now. A running build adopts a newer lease when the
/// server gives its package out again (`AgentState::adopt`); a record left under the old one made
/// the next agent report the build under a lease the server had ended, as stale, and the package
/// was built again. Rewritten only when the lease moved; a failed rewrite is logged, and the old
/// record stays.
pub(crate) fn with_lease(build_dir: &Path, mut record: Record, lease: Option<u64>) -> Record {
    if record.lease != lease {
        record.lease = lease;
        if let Err(e) = write(build_dir, &record) {
            tracing::warn!(package = %record.atom, "cannot record the build's new lease ({e}): an agent killed before it is spooled reports it under the old one, and it is built again");
        }
    }
    record
}

/// The record of `build_dir`: `Ok(None)` when there is none, `Err` when it is damaged.
pub(crate) fn read(build_dir: &Path) -> Result<Option<Record>, String> {
    let path = build_dir.join(FILE);
    let bytes = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.is_file() => Err("not a regular file".to_string()),
        Ok(m) if m.len() > MAX_BYTES => Err(format!("{} bytes, over {MAX_BYTES}", m.len())),
        Ok(_) => std::fs::read(&path).map_err(|e| e.to_string()),
    }?;
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    record.atom()?;
    Ok(Some(record))
}

/// Removes the record once the build is spooled (the spool delivers it from then on), durably:
/// left, the next start spooled the build a second time.
pub(crate) fn clear(build_dir: &Path) {
    match std::fs::remove_file(build_dir.join(FILE)) {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(build_dir) {
                let _ = d.sync_all();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %build_dir.display(), "cannot remove the build's outcome record: {e}")
        }
    }
}

/// At start (work dir locked, leftover builders killed): the build directories under
/// `<work_dir>/builds` that hold a builder's recorded success, oldest first, for the caller to
/// spool. Every other one is removed: its build was delivered, or will be built again.
pub(crate) fn sweep(work_dir: &Path) -> Vec<(PathBuf, Record)> {
    let Ok(entries) = std::fs::read_dir(work_dir.join("builds")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort_by_key(|d| d.metadata().and_then(|m| m.modified()).ok());
    let mut found = Vec::new();
    for dir in dirs {
        match read(&dir) {
            Ok(Some(record)) => found.push((dir, record)),
            Ok(None) => {
                tracing::info!(dir = %dir.display(), "removing the directory of a build an earlier agent did not finish");
                remove(&dir);
            }
            Err(why) => {
                tracing::error!(dir = %dir.display(), why, "a build's outcome record is damaged: its build is not delivered (the server gives the package out again) and its directory is removed");
                remove(&dir);
            }
        }
    }
    found
}

/// How many build directories hold a recorded success not yet spooled: builds the next start
/// delivers under their leases, which a goodbye would give back. Only the directories `sweep`
/// reads: a symlink to a directory holding a record kept every later stop from saying goodbye
/// (h45 F7).
pub(crate) fn pending(work_dir: &Path) -> usize {
    std::fs::read_dir(work_dir.join("builds")).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| std::fs::symlink_metadata(e.path().join(FILE)).is_ok_and(|m| m.is_file()))
            .count()
    })
}

/// Removes a build directory; best effort.
pub(crate) fn remove(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), "cannot remove the build directory: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            lease: Some(7),
            atom: "=dev-libs/a-1".into(),
            farm: Some("farm".into()),
            epoch: Some(2),
            took_s: 1.5,
            started_ms: 1_000,
            log: PathBuf::from("/l/7.log"),
        }
    }

    #[test]
    fn recorded_builds_are_kept_and_every_other_build_dir_goes() {
        let work = tempfile::tempdir().expect("tempdir");
        let builds = work.path().join("builds");
        let make = |label: &str| {
            let pkgdir = builds.join(label).join("pkgdir/dev-libs");
            std::fs::create_dir_all(&pkgdir).expect("pkgdir");
            std::fs::write(pkgdir.join("a-1.gpkg.tar"), "x").expect("package");
            builds.join(label)
        };
        let done = make("7-1");
        write(&done, &record()).expect("write");
        let unknown = make("8-2");
        let damaged = make("9-3");
        std::fs::write(damaged.join(FILE), "{\"lease\": 9, \"atom\": ").expect("damaged");
        let bad_atom = make("10-4");
        let mut r = record();
        r.atom = "not an atom".into();
        std::fs::write(bad_atom.join(FILE), serde_json::to_vec(&r).expect("json")).expect("bad");
        // A leftover note (`leftovers`) is a file, not a build: not ours to remove.
        std::fs::write(builds.join("12345"), "7 =dev-libs/a-1\n").expect("note");

        let found = sweep(work.path());
        assert_eq!(found, vec![(done.clone(), record())]);
        assert!(done.join("pkgdir/dev-libs/a-1.gpkg.tar").is_file());
        for gone in [&unknown, &damaged, &bad_atom] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        assert!(builds.join("12345").is_file());

        // A lease adopted while the build ran replaces the recorded one.
        let moved = with_lease(&done, record(), Some(9));
        assert_eq!(moved.lease, Some(9));
        assert_eq!(read(&done).map(|r| r.and_then(|r| r.lease)), Ok(Some(9)));

        assert_eq!(pending(work.path()), 1);
        // A link to a directory with a record is not a build directory: `sweep` skips it, and
        // counted, it kept every later stop from saying goodbye.
        let elsewhere = work.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("elsewhere");
        write(&elsewhere, &record()).expect("write");
        std::os::unix::fs::symlink(&elsewhere, builds.join("linked")).expect("symlink");
        assert_eq!(pending(work.path()), 1);

        clear(&done);
        assert_eq!(read(&done), Ok(None));
        sweep(work.path());
        assert!(!done.exists());
    }
}
