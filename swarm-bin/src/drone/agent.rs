//! The agent: its threads and its main loop.
//!
//! - the heartbeat thread ([`super::heartbeat`]) registers and beats;
//! - the signal thread moves the shutdown [`Phase`] on SIGTERM/SIGINT;
//! - one thread per job ([`super::job`]) runs the build, uploads, reports;
//! - at start, one thread delivers what an earlier agent left in the spool
//!   ([`super::spool::start_redelivery`]);
//! - the main loop (here) asks for work when a slot is free, runs Portage
//!   syncs, hands back orphaned leases, returns everything when health turns
//!   Critical or shutdown says so, and leaves when shutdown is done.
//!
//! They share one [`State`] behind a mutex (in [`Agent`], `shared.rs`) and a condvar that wakes whoever
//! waits when something changes.

use super::backoff::Backoff;
use super::shared::Agent;
use super::shutdown::Phase;
use super::state::State;
use super::{facts, heartbeat, homecoming, job, outcome, shutdown, spool};
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_core::agent::{AgentAction, AgentInput, WorkOffer};
use swarm_core::Atom;
use swarm_net::client::Client;
use swarm_net::wire::WorkReply;

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
            let from = st.phase();
            st.feed(AgentInput::Signal(agent.cfg.on_stop.into()));
            tracing::warn!(signal = sig, ?from, to = ?st.phase(), jobs = st.agent.jobs().len(), "stop requested");
            drop(st);
            agent.notify();
        })
        .context("installing the SIGTERM/SIGINT/SIGHUP handler")?;
    }
    // Before the heartbeat starts: the spooled builds' leases are held by
    // the time the first registration reply lists them. Builds an earlier
    // agent saw succeed but did not spool join the spool first.
    let unspooled = job::recover(&agent).context("starting the delivery of recovered builds")?;
    let redelivery =
        spool::start_redelivery(&agent).context("starting the delivery of spooled builds")?;
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
    // The heartbeat may be inside a request; it stops at its next wait. So
    // does a delivery of spooled builds, unless a third signal cut it short
    // (what it had not delivered stays in the spool).
    let deadline = Instant::now() + Duration::from_secs(2);
    let busy =
        |t: &Option<std::thread::JoinHandle<()>>| t.as_ref().is_some_and(|t| !t.is_finished());
    // A job whose build ended is reporting it; left now, the last thing it does for a build it
    // could not deliver (write the build's record again, which its first write may have
    // missed) would race the goodbye below, which then gave the build's lease back. A job whose
    // build a third signal just killed has not seen it end yet (its runner looks every 100 ms),
    // and a builder that exited 0 just before is a build to keep (h45 F2): every job is waited
    // for.
    while (!beat.is_finished() || busy(&redelivery) || busy(&unspooled) || jobs_held(&agent) > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    say_goodbye(&agent);
    tracing::info!("swarm drone stopped");
    Ok(())
}

/// Jobs the agent still holds: building, or reporting a build that ended (their threads have
/// not let go).
fn jobs_held(agent: &Agent) -> usize {
    agent.lock().agent.jobs().len()
}

/// Tells the server this drone stopped on purpose, so it shows as stopped
/// rather than suspect, offline and escalated. A few quick tries: the server
/// may be gone too, and a stop must not hang on it.
fn say_goodbye(agent: &Agent) {
    let cfg = &agent.cfg;
    // A goodbye gives back every lease the drone holds, the spooled builds'
    // too: the next agent's delivery would then be stale, and the package
    // built again. Without it the leases wait for the next start (or, if
    // none comes, for the offline timeout).
    // A build whose builder succeeded but which was not spooled yet (the agent was told to
    // leave while it read the packages) counts too: its record brings it back at the next start.
    // In the order a build moves through them (a job is forgotten only after its build is spooled
    // or recorded; a spool entry is made before the record goes), so a build moving meanwhile is
    // counted in the later place (h45 F3: read the other way round, it could pass all three).
    let jobs = jobs_held(agent);
    let recorded = outcome::pending(&cfg.work_dir);
    let kept = jobs + recorded + spool::waiting(&cfg.work_dir);
    if kept > 0 {
        tracing::warn!(
            builds = kept,
            "not telling the server this drone stopped: finished builds wait in the spool or in their build directories, or jobs had not ended within 2 s, under their leases, \
             which a goodbye would give back; the next start delivers what was built (meanwhile the drone shows as suspect, then offline)"
        );
        return;
    }
    let client = Client::new(cfg.server.clone(), Duration::from_secs(3))
        .with_tls(&cfg.tls)
        .with_drone_token(agent.client.drone_token())
        .with_reply_cap(super::config::REPLY_CAP);
    let mut req = agent.lease_request(None, "", None);
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

fn main_loop(agent: &Arc<Agent>) {
    let cfg = &agent.cfg;
    let mut work_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut sync_backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(1800));
    let mut next_sync = Instant::now();
    loop {
        // The agent's turn: it decides about leaving, returning builds (shutdown, Critical
        // health), orphans, a sync and asking for work; this loop carries it out.
        let (actions, phase) = {
            let mut st = agent.lock();
            let actions = st.feed(AgentInput::Tick);
            (actions, st.phase())
        };
        let mut returned = 0;
        let mut sync = None;
        let mut ask = false;
        for action in actions {
            match action {
                AgentAction::Exit => {
                    if phase == Phase::Exit {
                        kill_all(&agent.lock());
                    }
                    return;
                }
                AgentAction::Kill { .. } => returned += 1,
                AgentAction::ReturnLease { lease, package } => {
                    give_back_orphan(agent, lease, &package);
                }
                AgentAction::Sync(expected) => sync = Some(expected),
                AgentAction::AskForWork { .. } => ask = true,
                AgentAction::Beat => agent.beat_soon(),
                AgentAction::Start { .. } | AgentAction::Report { .. } => {}
            }
        }
        if returned > 0 {
            if phase.returns_work() {
                tracing::info!(builds = returned, "returning running builds");
            } else {
                tracing::warn!(builds = returned, "health is critical: returning all work");
            }
            agent.notify();
        }
        // A Portage sync, once no build runs.
        if let Some(expected) = sync {
            if Instant::now() >= next_sync {
                if run_sync(agent, &expected) {
                    sync_backoff.reset();
                }
                next_sync = Instant::now() + sync_backoff.next_delay();
                continue;
            }
        }
        // One more package if a slot is free: one per call, the agent asks again at once while
        // one is.
        if ask {
            match agent.client.work(&cfg.name, Some(1)) {
                Ok(reply) => {
                    work_backoff.reset();
                    if apply_work_reply(agent, &reply) {
                        continue;
                    }
                }
                Err(e) => {
                    let mut st = agent.lock();
                    if e.status() == Some(404) {
                        tracing::warn!("the server does not know this drone: registering again");
                        st.feed(AgentInput::Forgotten);
                        st.beat_now = true;
                    } else if matches!(e.status(), Some(401 | 403)) && agent.reread_token_file() {
                        continue;
                    } else {
                        let what = heartbeat::failure_cause(&e, cfg.token.is_some());
                        tracing::warn!("asking for work failed: {what}");
                    }
                    let retry = work_backoff.next_delay();
                    st.feed(AgentInput::WorkFailed {
                        retry_ms: u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
                    });
                    drop(st);
                    agent.notify();
                }
            }
        }
        // Sleep until something changes or it is time to ask again.
        let st = agent.lock();
        let now = st.now();
        let due = st.agent.next_ask();
        let until = if st.agent.free_slots().is_some() && due > now {
            Duration::from_millis(due.since(now))
        } else {
            cfg.poll
        };
        let _st = agent.wait(st, until.min(cfg.poll).max(Duration::from_millis(10)));
    }
}

/// Starts jobs for the leases a work reply carries; true if one started.
fn apply_work_reply(agent: &Arc<Agent>, reply: &WorkReply) -> bool {
    let sync = (reply.action.as_deref() == Some("sync_portage"))
        .then(|| reply.expected_timestamp.clone().unwrap_or_default());
    if sync.is_none() {
        if let Some(error) = &reply.error {
            tracing::warn!("work request: {}", super::heartbeat::for_log(error));
        }
    }
    // The assigned package first, then any other lease the server lists.
    let mut offered = Vec::new();
    let listed = reply
        .packages
        .iter()
        .filter(|l| Some(l.lease) != reply.lease);
    let candidates = reply
        .package
        .iter()
        .map(|p| (reply.lease, p))
        .chain(listed.map(|l| (Some(l.lease), &l.package)));
    for (lease, package) in candidates {
        match Atom::parse(package) {
            Ok(atom) => offered.push((lease, atom)),
            Err(e) => {
                tracing::error!(package, "the server sent an atom that does not parse: {e}");
            }
        }
    }
    let mut st = agent.lock();
    let home = homecoming::heard(&mut st, &agent.cfg.work_dir, reply.farm_id.as_ref());
    let asked_sync = st.agent.sync_wanted().is_some();
    // The farm that gave these leases: the jobs keep it, and their builds go to it only.
    let actions = st.feed(AgentInput::Work(WorkOffer {
        offered,
        revoke: reply.revoke.clone(),
        sync: sync.clone(),
        farm: reply.farm_id.clone(),
    }));
    if let Some(expected) = &sync {
        if !asked_sync {
            tracing::info!(expected = %super::heartbeat::for_log(expected), have = ?st.agent.portage_timestamp(), "the server asks for a Portage sync");
        }
    }
    let mut started = Vec::new();
    if actions
        .iter()
        .any(|a| matches!(a, AgentAction::Kill { .. }))
    {
        tracing::warn!(revoked = ?reply.revoke, "stopping revoked builds");
    }
    for action in actions {
        if let AgentAction::Start { job, atom, lease } = action {
            tracing::info!(lease = %crate::logging::shown(&lease), package = %atom, "got work");
            started.push(job);
        }
    }
    if reply.package.is_none() && started.is_empty() && sync.is_none() {
        tracing::debug!(reason = ?reply.reason, "no work");
    }
    drop(st);
    homecoming::deliver(agent, home);
    for id in &started {
        job::spawn(Arc::clone(agent), *id);
    }
    agent.notify();
    !started.is_empty()
}

fn give_back_orphan(agent: &Agent, lease: u64, package: &str) {
    // The farm whose register reply listed it.
    let farm = agent.lock().farm();
    let mut req = agent.lease_request(Some(lease), package, farm);
    req.reason =
        Some("not running on this drone (the agent restarted, or stopped it on a revoke)".into());
    match agent.client.give_back(&req) {
        Ok(_) => {
            tracing::warn!(
                lease,
                package,
                "handed back a lease the server listed but nothing here runs"
            );
            agent.lock().feed(AgentInput::OrphanReturned(lease));
        }
        Err(e) if !e.is_transport() && e.status().is_some_and(|s| s < 500) => {
            tracing::warn!(
                lease,
                package,
                "server refused the return of an orphan: {e}"
            );
            agent.lock().feed(AgentInput::OrphanReturned(lease));
        }
        Err(e) => tracing::debug!(lease, "returning an orphaned lease failed: {e}"),
    }
}

/// Runs the sync command; true if it succeeded. Heartbeats continue meanwhile.
fn run_sync(agent: &Agent, expected: &str) -> bool {
    let cfg = &agent.cfg;
    let log = cfg.log_dir.join("portage-sync.log");
    super::logs::roll_over(&log, super::logs::APPENDED_LOG_BYTES);
    let argv = match super::config::sync_argv(&cfg.sync_command, expected) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(
                "not syncing Portage: {}",
                super::heartbeat::for_log(&format!("{e:#}"))
            );
            agent.lock().feed(AgentInput::Synced(None));
            return false;
        }
    };
    tracing::info!(command = %super::heartbeat::for_log(&shell_words::join(argv.iter().map(String::as_str))), expected = %super::heartbeat::for_log(expected), log = %log.display(), "syncing Portage");
    let spec = super::runner::BuildSpec {
        argv: &argv,
        env: Vec::new(),
        dir: &cfg.work_dir,
        log: &log,
        stall_timeout: None,
        build_timeout: Some(Duration::from_secs(3600)),
        kill_grace: cfg.kill_grace,
    };
    let stop = || agent.lock().phase() != Phase::Running;
    let finished = super::runner::run(&spec, |_| {}, stop);
    let ok = finished.ended == super::runner::Ended::Exited(0);
    let ts = facts::portage_timestamp(&cfg.portage_timestamp_file);
    let mut st = agent.lock();
    // Reached only when both name the same snapshot (two values that name
    // none are not a match).
    let reached = swarm_core::PortageSnapshot::parse(expected)
        .ok()
        .is_some_and(|want| {
            ts.as_deref()
                .and_then(|t| swarm_core::PortageSnapshot::parse(t).ok())
                == Some(want)
        });
    if ok && reached {
        tracing::info!(timestamp = ?ts, expected = %super::heartbeat::for_log(expected), took_s = finished.took.as_secs(), "Portage synced");
    } else if ok {
        tracing::error!(
            timestamp = ?ts, expected = %super::heartbeat::for_log(expected), file = %cfg.portage_timestamp_file.display(),
            "the sync succeeded but the tree is not at the snapshot the server expects; \
             the server asks again in {} min (make the sync command reach {{snapshot}})",
            swarm_core::SYNC_RETRY_MS / 60_000
        );
    } else {
        tracing::error!(ended = ?finished.ended, log = %log.display(), "Portage sync failed");
    }
    st.feed(AgentInput::Synced(ts));
    drop(st);
    agent.notify();
    ok
}

/// Third signal: kill every build's process group before leaving, so no
/// builder outlives the agent.
fn kill_all(st: &State) {
    for (id, pgid) in &st.pgids {
        if let Some(pgid) = rustix::process::Pid::from_raw(*pgid) {
            let package = st.job(*id).map(|j| j.atom.to_string()).unwrap_or_default();
            tracing::warn!(package, "leaving now: killing its build");
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}
