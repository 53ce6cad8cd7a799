//! What every thread of the agent holds: its fixed settings, its client, and
//! the one [`State`] behind a mutex with a condvar that wakes whoever waits
//! when something changes. Kept apart from the main loop (`agent.rs`) so the
//! heartbeat, job, spool and log threads depend on it, not on each other.

use super::config::{Builder, DroneConfig};
use super::state::State;
use super::{facts, leftovers, standin};
use anyhow::Context;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use swarm_core::{DroneKind, HealthMonitor, HealthThresholds};
use swarm_net::client::Client;
use swarm_net::wire::LeaseRequest;

/// Per-request timeout: short enough that a dead server does not hold a
/// report or a beat for long, long enough for an artifact upload's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's fixed settings and shared state.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) cfg: DroneConfig,
    pub(crate) client: Client,
    /// The builder argv template (the stand-in resolved to its file).
    pub(crate) template: Vec<String>,
    pub(crate) kind: DroneKind,
    pub(crate) ip: Option<String>,
    state: Mutex<State>,
    wake: Condvar,
    /// This agent's hold on its work dir.
    _work_lock: super::work_lock::WorkLock,
}

/// Unreadable token files, logged while they last.
static TOKEN_FILE_ERRORS: swarm_store::repeat_log::RepeatLog =
    swarm_store::repeat_log::RepeatLog::new(Duration::from_secs(60));

impl Agent {
    /// Prepares directories, the builder and the client; reads the machine's fixed facts.
    pub(crate) fn new(cfg: DroneConfig) -> anyhow::Result<Agent> {
        // The work dir (its spool) and the logs hold build output the
        // server guards with `read_token`: made 0750, not for every user of
        // the drone (h11). One that exists keeps its mode (`--log-dir
        // /var/log` is not ours to change). PKGDIR holds what is published.
        for (dir, mode) in [
            (&cfg.work_dir, 0o750),
            (&cfg.log_dir, 0o750),
            (&cfg.pkgdir, 0o755),
        ] {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                mode,
            )
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        }
        // Before anything in the work dir is touched: what is running there
        // may be another agent's, not an earlier one's leftovers.
        let work_lock = super::work_lock::WorkLock::acquire(&cfg.work_dir)?;
        let killed = leftovers::kill_leftovers(&cfg.work_dir);
        if killed > 0 {
            tracing::warn!(
                builds = killed,
                "killed builds an earlier agent left running; the server hands their leases out again"
            );
        }
        let copies = super::collect::sweep_moving(&cfg.pkgdir);
        if copies > 0 {
            tracing::warn!(
                copies,
                pkgdir = %cfg.pkgdir.display(),
                "removed partial package copies an earlier agent left in the PKGDIR (killed while moving a build's packages there)"
            );
        }
        let template = match &cfg.builder {
            Builder::Standin => standin::install(&cfg.work_dir)?,
            Builder::Template(words) => words.clone(),
        };
        // A drone without its builder would fail every package it is given
        // (and get them blocked): refuse to start instead, and say why.
        if let Some(program) = template.first() {
            check_builder(program, std::env::var_os("PATH").as_deref())?;
        }
        super::pkg_settings::check(&template)?;
        let kind = cfg
            .kind
            .unwrap_or_else(|| facts::detect_kind(&facts::kind_evidence()));
        let ip = cfg.ip.clone().or_else(|| facts::route_ip(&cfg.server));
        let client = Client::new(cfg.server.clone(), REQUEST_TIMEOUT)
            .with_tls(&cfg.tls)
            .with_drone_token(cfg.token.clone())
            .with_reply_cap(super::config::REPLY_CAP);
        let health = HealthMonitor::new(HealthThresholds {
            disk_free_mib: cfg.min_free_disk_mib,
            ..HealthThresholds::default()
        });
        let mut state = State::new(cfg.slots, cfg.poll, health);
        state
            .agent
            .set_portage_timestamp(facts::portage_timestamp(&cfg.portage_timestamp_file));
        Ok(Agent {
            cfg,
            client,
            template,
            kind,
            ip,
            state: Mutex::new(state),
            wake: Condvar::new(),
            _work_lock: work_lock,
        })
    }

    /// Takes up a token rotated into the token file (`swarm node enroll` again): called
    /// when the server refuses the token in use. True when calls now carry a new one.
    pub(crate) fn reread_token_file(&self) -> bool {
        let Some(path) = &self.cfg.token_file else {
            return false;
        };
        match super::token_file::read(path) {
            Ok(token) => {
                TOKEN_FILE_ERRORS.clear();
                let new = self.client.replace_drone_token(Some(token));
                if new {
                    tracing::info!(file = %path.display(), "the drone token file holds a new token: using it from now on");
                }
                new
            }
            // Once a minute while it lasts: each refused call asks again (h24: a line a
            // second while the file was empty).
            Err(e) => {
                if let Some(n) = TOKEN_FILE_ERRORS.note(std::time::Instant::now()) {
                    tracing::warn!(times = n, "{e:#}; keeping the token in use");
                }
                false
            }
        }
    }

    /// The shared state. A thread that panicked while holding the lock leaves
    /// the state usable (every update is a single assignment), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a change, at most `timeout`.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        match self.wake.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// Wakes every waiting thread.
    pub(crate) fn notify(&self) {
        self.wake.notify_all();
    }

    /// Sleeps for `d`, or less if the shutdown phase moves on meanwhile (a
    /// retry loop then re-checks whether it should go on) or the control
    /// plane answers again after an outage (retry now, not at the end of a
    /// long backoff).
    pub(crate) fn pause(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        let (phase, reconnects) = (st.phase(), st.reconnects);
        while st.phase() == phase && st.reconnects == reconnects {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self.wait(st, deadline - now);
        }
    }

    /// Asks the heartbeat thread for a beat now (leases or health changed).
    pub(crate) fn beat_soon(&self) {
        self.lock().beat_now = true;
        self.notify();
    }

    /// A lease request (`/started`, `/return`) from this drone. Reports name
    /// the drone, not the machine id: several drones may share one machine
    /// (and so one `/etc/machine-id`), and a report must reach the right one.
    /// `farm` is the farm that gave the lease, so a server of another farm
    /// refuses the call instead of applying it to its own lease of that number.
    pub(crate) fn lease_request(
        &self,
        lease: Option<u64>,
        package: &str,
        farm: Option<String>,
    ) -> LeaseRequest {
        LeaseRequest {
            id: None,
            node_name: Some(self.cfg.name.clone()),
            lease,
            package: Some(package.to_string()),
            epoch: self.lock().epoch(),
            reason: None,
            farm_id: farm,
        }
    }
}

/// The builder's program must exist and be executable: a path is checked as
/// is, a bare name is looked up on `path` (the agent's `$PATH`).
pub(crate) fn check_builder(
    program: &str,
    path: Option<&std::ffi::OsStr>,
) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return match std::fs::metadata(&p) {
            Err(_) => anyhow::bail!(
                "the builder {program} does not exist: install it (Portage provides emerge) or \
                 pass another --builder (`--builder standin` runs the stand-in for testing)"
            ),
            Ok(_) if !executable(&p) => anyhow::bail!(
                "the builder {program} is not an executable file: check its permissions \
                 (chmod +x) or pass another --builder"
            ),
            Ok(_) => Ok(p),
        };
    }
    let dirs: Vec<std::path::PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for dir in &dirs {
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "the builder `{program}` is not found on PATH ({}): install it (Portage provides emerge), \
         pass its full path, or pass another --builder (`--builder standin` for testing)",
        std::env::var("PATH").unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::check_builder;
    use std::ffi::OsStr;

    #[test]
    fn a_missing_builder_is_refused_by_name() {
        let err = check_builder(
            "emerge-that-is-not-here",
            Some(OsStr::new("/nonexistent:/also-not")),
        )
        .expect_err("not found");
        assert!(err.to_string().contains("not found on PATH"), "{err}");
        let err = check_builder("/no/such/emerge", None).expect_err("no such file");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_executable_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("builder.sh");
        std::fs::write(&file, "#!/bin/sh\n").expect("write");
        let err = check_builder(file.to_str().expect("utf-8"), None).expect_err("not executable");
        assert!(err.to_string().contains("not an executable"), "{err}");
    }

    #[test]
    fn a_builder_on_the_path_is_found() {
        let found =
            check_builder("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin"))).expect("sh");
        assert!(found.ends_with("sh"));
    }
}
