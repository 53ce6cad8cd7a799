//! Who else holds locks on a file, from `/proc/locks`: when SQLite refuses to open a database
//! with a bare "disk I/O error", the usual cause is another process that has it open with the
//! lock file and the WAL deleted under it (h32 F6), and naming that process says what to do.

use std::path::Path;

/// The processes other than this one holding a lock on `path` (pid and command name), empty
/// when none does or the system will not say.
pub(crate) fn others_locking(path: &Path) -> Vec<(u32, String)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Vec::new();
        };
        let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
            return Vec::new();
        };
        let dev = meta.dev();
        let file = format!(
            "{:02x}:{:02x}:{}",
            rustix::fs::major(dev),
            rustix::fs::minor(dev),
            meta.ino()
        );
        let me = std::process::id();
        let mut pids: Vec<u32> = locks
            .lines()
            .filter(|l| !l.contains("->"))
            .filter_map(|l| {
                // `1: POSIX  ADVISORY  READ 19911 fe:00:10052129 128 128`
                let mut fields = l.split_whitespace().skip(4);
                let pid = fields.next()?.parse().ok()?;
                (fields.next()? == file && pid != me).then_some(pid)
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter().map(named).collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Vec::new()
    }
}

/// The processes other than this one that still have `path` open although it was deleted
/// (`/proc/PID/fd` links read `<path> (deleted)`), empty when none does or the system will not
/// say. A server whose lock file, WAL and `-shm` were all deleted holds no lock a second one can
/// see, but it still has its lock file open (h38 F2: a second server was let in beside it).
pub(crate) fn others_with_deleted(path: &Path) -> Vec<(u32, String)> {
    #[cfg(target_os = "linux")]
    {
        let Some(parent) = path.parent().and_then(|p| {
            if p.as_os_str().is_empty() {
                std::env::current_dir().ok()
            } else {
                std::fs::canonicalize(p).ok()
            }
        }) else {
            return Vec::new();
        };
        let Some(name) = path.file_name() else {
            return Vec::new();
        };
        let mut wanted = parent.join(name).into_os_string();
        wanted.push(" (deleted)");
        let me = std::process::id();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            if fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted))
            {
                pids.push(pid);
            }
        }
        pids.into_iter().map(named).collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Vec::new()
    }
}

/// A pid with its command name (`?` when it cannot be read).
#[cfg(target_os = "linux")]
fn named(pid: u32) -> (u32, String) {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    (pid, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_another_process_holds_is_found_and_our_own_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("file");
        let held = std::fs::File::open(&file).expect("open");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockShared).expect("our lock");
        assert!(others_locking(&file).is_empty(), "our own lock counted");
        let mut child = std::process::Command::new("flock")
            .args(["-s"])
            .arg(&file)
            .args(["sleep", "30"])
            .spawn()
            .expect("flock(1)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = others_locking(&file);
            if !found.is_empty() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1 == "flock" || found[0].1 == "sleep", "{found:?}");
    }
}
