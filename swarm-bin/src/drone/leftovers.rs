//! Builds left running by an agent that died (SIGKILL, crash, OOM killer).
//!
//! Each build runs in its own process group so that the agent can kill it
//! as a whole; the flip side is that a build outlives an agent that dies
//! without cleaning up. The server reclaims the lease and another drone
//! builds the package, while the old builder keeps writing into PKGDIR. So
//! the agent notes each running build's process group in
//! `<work-dir>/builds/<pgid>` and, when it starts, kills every group noted
//! there that is still running *that* build: a process of the group must
//! carry the build's `SWARM_LEASE` and `SWARM_ATOM` in its environment, so a
//! recycled process group id is never killed by mistake.

use std::path::{Path, PathBuf};

fn dir(work_dir: &Path) -> PathBuf {
    work_dir.join("builds")
}

/// Notes a running build's process group.
pub(crate) fn record(work_dir: &Path, pgid: i32, lease: Option<u64>, atom: &str) {
    let d = dir(work_dir);
    let lease = lease.map_or_else(String::new, |l| l.to_string());
    let written = std::fs::create_dir_all(&d)
        .and_then(|()| std::fs::write(d.join(pgid.to_string()), format!("{lease} {atom}\n")));
    if let Err(e) = written {
        tracing::warn!(pgid, "cannot note the build's process group: {e}");
    }
}

/// Forgets a build that ended.
pub(crate) fn forget(work_dir: &Path, pgid: i32) {
    let _ = std::fs::remove_file(dir(work_dir).join(pgid.to_string()));
}

/// Kills the builds an earlier agent left running; returns how many groups.
pub(crate) fn kill_leftovers(work_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir(work_dir)) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let pgid = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok());
        let note = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let (Some(pgid), Some((lease, atom))) = (pgid, note.trim().split_once(' ')) else {
            continue;
        };
        if group_runs(pgid, lease, atom) {
            if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
                tracing::warn!(
                    pgid,
                    lease,
                    atom,
                    "killing a build an earlier agent left running"
                );
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                killed += 1;
            }
        }
    }
    killed
}

/// Whether a process of group `pgid` carries this build's lease and atom.
fn group_runs(pgid: i32, lease: &str, atom: &str) -> bool {
    let want_lease = format!("SWARM_LEASE={lease}");
    let want_atom = format!("SWARM_ATOM={atom}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        let in_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(2).map(str::to_owned))
            })
            .and_then(|g| g.parse::<i32>().ok())
            == Some(pgid);
        if !in_group {
            return false;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let has = |want: &str| vars.contains(&want.as_bytes());
        (lease.is_empty() || has(&want_lease)) && has(&want_atom)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::runner::tests::process_alive;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn spawn(env: &[(&str, &str)]) -> std::process::Child {
        Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .envs(env.iter().copied())
            .process_group(0)
            .spawn()
            .expect("spawn")
    }

    #[test]
    fn a_build_left_by_a_dead_agent_is_killed_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn(&[("SWARM_LEASE", "42"), ("SWARM_ATOM", "=a/b-1")]);
        let pgid = i32::try_from(child.id()).expect("pid");
        record(dir.path(), pgid, Some(42), "=a/b-1");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(kill_leftovers(dir.path()), 1);
        let status = child.wait().expect("wait");
        assert!(status.code().is_none(), "killed by a signal");
        assert!(!dir.path().join("builds").join(pgid.to_string()).exists());
    }

    #[test]
    fn a_group_that_runs_something_else_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn(&[("SWARM_LEASE", "7"), ("SWARM_ATOM", "=x/y-1")]);
        let pgid = i32::try_from(child.id()).expect("pid");
        record(dir.path(), pgid, Some(42), "=a/b-1");
        assert_eq!(kill_leftovers(dir.path()), 0);
        assert!(process_alive(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        forget(dir.path(), pgid);
        assert_eq!(kill_leftovers(dir.path()), 0);
    }
}
