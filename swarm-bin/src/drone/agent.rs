//! The agent: its threads and its main loop.
//!
//! - the heartbeat thread ([`super::heartbeat`]) registers and beats;
//! - the signal thread moves the shutdown [`Phase`] on SIGTERM/SIGINT;
//! - one thread per job ([`super::job`]) runs the build, uploads, reports;
//! - the main loop (here) asks for work when a slot is free, runs Portage
//!   syncs, hands back orphaned leases, returns everything when health turns
//!   Critical or shutdown says so, and leaves when shutdown is done.
//!
//! They share one [`State`] behind a mutex and a condvar that wakes whoever
//! waits when something changes.

use super::backoff::Backoff;
use super::config::{Builder, DroneConfig};
use super::shutdown::Phase;
use super::state::State;
use super::{facts, heartbeat, job, leftovers, shutdown, spool, standin};
use anyhow::Context;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use swarm_core::{Atom, DroneKind, HealthMonitor, HealthThresholds};
use swarm_net::client::Client;
use swarm_net::wire::{LeaseRequest, WorkReply};

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
}

impl Agent {
    /// Prepares directories, the builder and the client; reads the machine's fixed facts.
    pub(crate) fn new(cfg: DroneConfig) -> anyhow::Result<Agent> {
        for dir in [&cfg.work_dir, &cfg.log_dir, &cfg.pkgdir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let killed = leftovers::kill_leftovers(&cfg.work_dir);
        if killed > 0 {
            tracing::warn!(
                builds = killed,
                "killed builds an earlier agent left running; the server hands their leases out again"
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
        let kind = cfg
            .kind
            .unwrap_or_else(|| facts::detect_kind(&facts::kind_evidence()));
        let ip = cfg.ip.clone().or_else(|| facts::route_ip(&cfg.server));
        let client = Client::new(cfg.server.clone(), REQUEST_TIMEOUT)
            .with_tls(&cfg.tls)
            .with_drone_token(cfg.token.clone());
        let mut state = State::default();
        state.health = HealthMonitor::new(HealthThresholds {
            disk_free_mib: cfg.min_free_disk_mib,
            ..HealthThresholds::default()
        });
        state.portage_timestamp = facts::portage_timestamp(&cfg.portage_timestamp_file);
        Ok(Agent {
            cfg,
            client,
            template,
            kind,
            ip,
            state: Mutex::new(state),
            wake: Condvar::new(),
        })
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
        let (phase, reconnects) = (st.phase, st.reconnects);
        while st.phase == phase && st.reconnects == reconnects {
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
    pub(crate) fn lease_request(&self, lease: Option<u64>, package: &str) -> LeaseRequest {
        LeaseRequest {
            id: None,
            node_name: Some(self.cfg.name.clone()),
            lease,
            package: Some(package.to_string()),
            epoch: self.lock().epoch,
            reason: None,
        }
    }
}

/// Runs the agent until shutdown is done.
pub(crate) fn run(agent: Arc<Agent>) -> anyhow::Result<()> {
    let cfg = &agent.cfg;
    tracing::info!(
        name = %cfg.name,
        server = %cfg.server,
        kind = ?agent.kind,
        slots = cfg.slots,
        builder = %shell_words::join(agent.template.iter().map(String::as_str)),
        on_stop = ?cfg.on_stop,
        "swarm drone starting"
    );
    {
        let agent = Arc::clone(&agent);
        shutdown::spawn_signal_thread(move |sig| {
            let mut st = agent.lock();
            let next = st.phase.on_signal(agent.cfg.on_stop);
            tracing::warn!(signal = sig, from = ?st.phase, to = ?next, jobs = st.jobs.len(), "stop requested");
            st.phase = next;
            drop(st);
            agent.notify();
        })
        .context("installing the SIGTERM/SIGINT handler")?;
    }
    // Before registering: a registration reclaims the leases the spooled
    // reports name.
    spool::redeliver(&agent);
    let beat = {
        let agent = Arc::clone(&agent);
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat::run(&agent))
            .context("starting the heartbeat thread")?
    };
    main_loop(&agent);
    agent.lock().exiting = true;
    agent.notify();
    // The heartbeat may be inside a request; it stops at its next wait.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !beat.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    say_goodbye(&agent);
    tracing::info!("swarm drone stopped");
    Ok(())
}

/// Tells the server this drone stopped on purpose, so it shows as stopped
/// rather than suspect, offline and escalated. A few quick tries: the server
/// may be gone too, and a stop must not hang on it.
fn say_goodbye(agent: &Agent) {
    let cfg = &agent.cfg;
    let client = Client::new(cfg.server.clone(), Duration::from_secs(3))
        .with_tls(&cfg.tls)
        .with_drone_token(cfg.token.clone());
    let mut req = agent.lease_request(None, "");
    req.package = None;
    req.reason = Some("the agent was stopped (SIGTERM/SIGINT)".into());
    for attempt in 1..=3 {
        match client.deregister(&req) {
            Ok(_) => {
                tracing::info!("told the server this drone stopped; it shows as stopped until it registers again");
                return;
            }
            Err(e) if e.is_transport() && attempt < 3 => {
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => {
                tracing::warn!(
                    "could not tell the server this drone stopped ({e}); it will show as suspect, then offline"
                );
                return;
            }
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

fn main_loop(agent: &Arc<Agent>) {
    let cfg = &agent.cfg;
    let mut work_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut sync_backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(1800));
    let mut next_work = Instant::now();
    let mut next_sync = Instant::now();
    loop {
        // 1. Shutdown and health decide what happens to running builds.
        let (phase, may_ask, orphans, sync) = {
            let mut st = agent.lock();
            if st.phase.may_exit(st.jobs.len()) {
                if st.phase == Phase::Exit {
                    kill_all(&st);
                }
                return;
            }
            if st.phase.returns_work() {
                let n = st.return_all("drone shutting down");
                if n > 0 {
                    tracing::info!(builds = n, "returning running builds");
                }
            } else if st.health.state().returns_work() {
                let n = st.return_all("drone health is critical");
                if n > 0 {
                    tracing::warn!(builds = n, "health is critical: returning all work");
                }
            }
            let sync = st
                .sync_wanted
                .clone()
                .filter(|_| st.jobs.is_empty() && st.phase.takes_work());
            (st.phase, st.may_ask_for_work(cfg.slots), st.orphans(), sync)
        };
        // 2. Leases the server lists that nothing here runs go back (also
        //    while stopping, so none waits for this drone to time out).
        if phase != Phase::Exit {
            for (lease, package) in orphans {
                give_back_orphan(agent, lease, &package);
            }
        }
        // 3. A Portage sync, once no build runs.
        if let Some(expected) = sync {
            if Instant::now() >= next_sync {
                if run_sync(agent, &expected) {
                    sync_backoff.reset();
                }
                next_sync = Instant::now() + sync_backoff.next_delay();
                continue;
            }
        }
        // 4. One more package if a slot is free.
        if may_ask && Instant::now() >= next_work {
            // One package per call: the loop asks again while a slot is free.
            match agent.client.work(&cfg.name, Some(1)) {
                Ok(reply) => {
                    work_backoff.reset();
                    let got = apply_work_reply(agent, &reply);
                    next_work = if got {
                        Instant::now()
                    } else {
                        Instant::now() + cfg.poll
                    };
                    if got {
                        continue;
                    }
                }
                Err(e) => {
                    if e.status() == Some(404) {
                        tracing::warn!("the server does not know this drone: registering again");
                        agent.lock().registered = false;
                        agent.beat_soon();
                    } else {
                        let what = heartbeat::failure_cause(&e, cfg.token.is_some());
                        tracing::warn!("asking for work failed: {what}");
                    }
                    next_work = Instant::now() + work_backoff.next_delay();
                }
            }
        }
        // 5. Sleep until something changes or it is time to ask again.
        let st = agent.lock();
        let now = Instant::now();
        let until = if st.may_ask_for_work(cfg.slots) && next_work > now {
            next_work - now
        } else {
            cfg.poll
        };
        let _st = agent.wait(st, until.min(cfg.poll).max(Duration::from_millis(10)));
    }
}

/// Starts jobs for the leases a work reply carries; true if one started.
fn apply_work_reply(agent: &Arc<Agent>, reply: &WorkReply) -> bool {
    let cfg = &agent.cfg;
    let mut st = agent.lock();
    if !reply.revoke.is_empty() {
        let n = st.revoke_atoms(&reply.revoke, "revoked by the control plane");
        if n > 0 {
            tracing::warn!(revoked = ?reply.revoke, "stopping revoked builds");
        }
    }
    if reply.action.as_deref() == Some("sync_portage") {
        let expected = reply.expected_timestamp.clone().unwrap_or_default();
        if st.sync_wanted.is_none() {
            tracing::info!(expected = %expected, have = ?st.portage_timestamp, "the server asks for a Portage sync");
        }
        st.sync_wanted = Some(expected);
        return false;
    }
    if let Some(error) = &reply.error {
        tracing::warn!("work request: {error}");
    }
    // The assigned package first, then any other lease the server lists.
    let mut offered: Vec<(Option<u64>, String)> = Vec::new();
    if let Some(p) = &reply.package {
        offered.push((reply.lease, p.clone()));
    }
    for l in &reply.packages {
        if Some(l.lease) != reply.lease {
            offered.push((Some(l.lease), l.package.clone()));
        }
    }
    let mut started = Vec::new();
    for (lease, package) in offered {
        if st.busy_slots() >= usize::try_from(cfg.slots).unwrap_or(usize::MAX) {
            break;
        }
        let atom = match Atom::parse(&package) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(package, "the server sent an atom that does not parse: {e}");
                continue;
            }
        };
        if let Some(id) = st.add_job(atom.clone(), lease) {
            tracing::info!(lease = %super::shown(&lease), package = %atom, "got work");
            started.push(id);
        }
    }
    if reply.package.is_none() && started.is_empty() {
        tracing::debug!(reason = ?reply.reason, "no work");
    }
    drop(st);
    for id in &started {
        job::spawn(Arc::clone(agent), *id);
    }
    if !started.is_empty() {
        agent.beat_soon();
    }
    !started.is_empty()
}

fn give_back_orphan(agent: &Agent, lease: u64, package: &str) {
    let mut req = agent.lease_request(Some(lease), package);
    req.reason = Some("not running on this drone (the agent restarted)".into());
    match agent.client.give_back(&req) {
        Ok(_) => {
            tracing::warn!(
                lease,
                package,
                "handed back a lease the server listed but nothing here runs"
            );
            agent.lock().orphan_returned(lease);
        }
        Err(e) if !e.is_transport() && e.status().is_some_and(|s| s < 500) => {
            tracing::warn!(
                lease,
                package,
                "server refused the return of an orphan: {e}"
            );
            agent.lock().orphan_returned(lease);
        }
        Err(e) => tracing::debug!(lease, "returning an orphaned lease failed: {e}"),
    }
}

/// Runs the sync command; true if it succeeded. Heartbeats continue meanwhile.
fn run_sync(agent: &Agent, expected: &str) -> bool {
    let cfg = &agent.cfg;
    let log = cfg.log_dir.join("portage-sync.log");
    let argv = match super::config::sync_argv(&cfg.sync_command, expected) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("not syncing Portage: {e:#}");
            let mut st = agent.lock();
            st.sync_wanted = None;
            return false;
        }
    };
    tracing::info!(command = %shell_words::join(argv.iter().map(String::as_str)), expected, log = %log.display(), "syncing Portage");
    let spec = super::runner::BuildSpec {
        argv: &argv,
        env: Vec::new(),
        dir: &cfg.work_dir,
        log: &log,
        stall_timeout: None,
        build_timeout: Some(Duration::from_secs(3600)),
        kill_grace: cfg.kill_grace,
    };
    let stop = || agent.lock().phase != Phase::Running;
    let finished = super::runner::run(&spec, |_| {}, stop);
    let ok = finished.ended == super::runner::Ended::Exited(0);
    let ts = facts::portage_timestamp(&cfg.portage_timestamp_file);
    let mut st = agent.lock();
    let reached = ts
        .as_deref()
        .and_then(|t| swarm_core::PortageSnapshot::parse(t).ok())
        == swarm_core::PortageSnapshot::parse(expected).ok();
    if ok && reached {
        tracing::info!(timestamp = ?ts, expected, took_s = finished.took.as_secs(), "Portage synced");
    } else if ok {
        tracing::error!(
            timestamp = ?ts, expected, file = %cfg.portage_timestamp_file.display(),
            "the sync succeeded but the tree is not at the snapshot the server expects; \
             the server asks again in {} min (make the sync command reach {{snapshot}})",
            swarm_core::SYNC_RETRY_MS / 60_000
        );
    } else {
        tracing::error!(ended = ?finished.ended, log = %log.display(), "Portage sync failed");
    }
    st.portage_timestamp = ts.or(st.portage_timestamp.take());
    st.sync_wanted = None;
    // Ask for work only after the server has heard the new timestamp.
    st.work_after_beat = st.beats;
    st.beat_now = true;
    drop(st);
    agent.notify();
    ok
}

/// Third signal: kill every build's process group before leaving, so no
/// builder outlives the agent.
fn kill_all(st: &State) {
    for job in st.jobs.values() {
        if let Some(pgid) = job.pgid.and_then(rustix::process::Pid::from_raw) {
            tracing::warn!(package = %job.atom, "leaving now: killing its build");
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
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
