//! One job's thread: start, build, classify, find what the build wrote,
//! spool and deliver it, forget.
//!
//! A finished build's report, the binary packages it wrote and its log are
//! spooled on disk and retried until the server answers (see `spool`):
//! neither a failed call nor an agent restart loses a build; a builder that
//! exits 0 is recorded on disk before anything else (see `outcome`), so not
//! even a kill before its spool entry is written does. Reports carry
//! the lease, so a retried report that already landed is answered as a
//! duplicate, not counted twice. Retrying stops only when the answer no
//! longer matters: the server revoked the package, or a second signal asked
//! the agent to leave now.

use super::artifact::{self, MIN_GPKG_BYTES};
use super::backoff::Backoff;
use super::classify::{self, Verdict};
use super::runner::{self, BuildSpec};
use super::shared::Agent;
use super::shutdown::Phase;
use super::state::{Job, JobId, Stop};
use super::{collect, facts, leftovers, outcome, spool, template};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use swarm_core::agent::{AgentAction, AgentInput, BuildEnd, ReportWhat};
use swarm_core::{Atom, FailureClass};
use swarm_net::client::ClientError;
use swarm_net::wire::{CompleteReply, CompleteRequest};

/// Bytes of the log end read to classify a failure.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Attempts per report once the agent is returning work on shutdown.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// What the agent tells the server about a job.
#[derive(Clone, Debug, PartialEq)]
enum Report {
    /// Built: the binary packages to upload (the spool does), then report.
    Built {
        /// sha256 of the package the queued atom names, when one was built.
        sha256: Option<String>,
        /// Every binary package the build wrote.
        artifacts: Vec<collect::Built>,
        /// The build's own PKGDIR, whose packages join the drone's once spooled.
        pkgdir: PathBuf,
    },
    Failed {
        class: FailureClass,
        detail: String,
    },
    Returned {
        reason: String,
    },
    Nothing,
}

/// Starts the job's thread.
pub(crate) fn spawn(agent: Arc<Agent>, id: JobId) {
    let name = format!("job-{id}");
    let spawned = std::thread::Builder::new().name(name).spawn({
        let agent = Arc::clone(&agent);
        move || {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&agent, id)));
            if outcome.is_err() {
                abandon(&agent, id);
            }
        }
    });
    if let Err(e) = spawned {
        // Not even a thread: hand the lease back rather than hold it unbuilt.
        tracing::error!("cannot start a job thread: {e}");
        let job = job_of(agent.as_ref(), id);
        if let Some(job) = job {
            report(
                &agent,
                id,
                &job,
                0.0,
                Report::Returned {
                    reason: format!("agent cannot start a thread: {e}"),
                },
                None,
                None,
            );
        }
        forget(&agent, id);
    }
}

/// The job's report was handed over: the agent forgets it and frees its slot.
fn forget(agent: &Agent, id: JobId) {
    let mut st = agent.lock();
    st.pgids.remove(&id);
    st.build_dirs.remove(&id);
    st.feed(AgentInput::Reported(id));
    drop(st);
    agent.notify();
}

/// After a bug in a job's thread: no build may run on unwatched, and no lease
/// may stay held with nothing building it (v3's "stuck building" packages).
fn abandon(agent: &Agent, id: JobId) {
    tracing::error!(
        job = id,
        "a job's thread panicked: killing its build and returning it"
    );
    let (job, pgid, build_dir) = {
        let st = agent.lock();
        (
            st.job(id).cloned(),
            st.pgids.get(&id).copied(),
            st.build_dirs.get(&id).cloned(),
        )
    };
    if let Some(job) = job {
        if let Some(pgid) = pgid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        // Its builder may have succeeded: the record goes with the lease, or the next start
        // delivered the build under a lease given back (stale, the package built again
        // meanwhile), and until then no stop said goodbye (h45 F4). Kept with its lease instead,
        // nothing in this run would deliver it, and the package stayed "building" (h46).
        if let Some(dir) = build_dir {
            if outcome::read(&dir).is_ok_and(|r| r.is_some()) {
                tracing::error!(package = %job.atom, dir = %dir.display(), "the build's builder had succeeded, but after the bug it is not delivered: given back, it is built again");
            }
            outcome::clear(&dir);
        }
        report(
            agent,
            id,
            &job,
            0.0,
            Report::Returned {
                reason: "agent error while building".into(),
            },
            None,
            None,
        );
    }
    forget(agent, id);
}

fn job_of(agent: &Agent, id: JobId) -> Option<Job> {
    agent.lock().job(id).cloned()
}

/// How long a build waits for the heartbeat that carries the environment read for it: past
/// that (the server away) it builds all the same, as builds go on through outages.
const ENV_SETTLE: Duration = Duration::from_secs(30);

/// How long it waits while the server holds a change of the environment back (the core's one
/// change a minute, and a heartbeat more): past that the build is handed back, not built under
/// the old one's stamp.
const ENV_HELD_SETTLE: Duration =
    Duration::from_millis(swarm_core::buildenv::ENV_CHANGE_EVERY_MS).saturating_add(ENV_SETTLE);

/// Before a build starts: the environment is read again and sent with a heartbeat, and the
/// build waits for the answer. A drone whose make.conf changed since the last read (every ten
/// minutes otherwise) built under the old environment's stamp, and its builds were released to
/// the profile that expects the old one (h31); now the server sees the drift first and takes
/// back what the drone no longer matches (a revoke, so the build below does not run).
fn settle_env(agent: &Agent, atom: &swarm_core::Atom) -> Result<(), String> {
    if agent.cfg.env_command.is_empty() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut st = agent.lock();
    st.env_asked += 1;
    let ticket = st.env_asked;
    st.beat_now = true;
    agent.notify();
    while st.env_answered < ticket && !st.exiting {
        let held = st.env_held;
        let deadline = start + if held { ENV_HELD_SETTLE } else { ENV_SETTLE };
        let now = std::time::Instant::now();
        if now >= deadline && held {
            return Err(format!(
                "its build environment changed again within a minute and the server has not \
                 taken the change after {} s: handed back rather than built under the old one",
                ENV_HELD_SETTLE.as_secs()
            ));
        }
        if now >= deadline {
            tracing::warn!(package = %atom, "the server has not answered the heartbeat with the environment read for this build within {} s; building all the same", ENV_SETTLE.as_secs());
            return Ok(());
        }
        st = agent.wait(st, (deadline - now).min(Duration::from_secs(1)));
    }
    Ok(())
}

fn run(agent: &Agent, id: JobId) {
    let Some(job) = job_of(agent, id) else { return };
    // A drift the server saw takes the package back (a revoke): the build below does not run.
    if let Err(reason) = settle_env(agent, &job.atom) {
        tracing::warn!(package = %job.atom, "{reason}");
        report(
            agent,
            id,
            &job,
            0.0,
            Report::Returned { reason },
            None,
            None,
        );
        forget(agent, id);
        return;
    }
    let cfg = &agent.cfg;
    let atom = job.atom.clone();
    let lease_label = job
        .lease
        .map_or_else(|| "nolease".to_string(), |l| l.to_string());
    let log = cfg.log_dir.join(format!(
        "{lease_label}_{}_{}.log",
        atom.category(),
        atom.pf()
    ));

    // Tell the server the build starts; the heartbeat's `started` list says it too.
    let farm = {
        let mut st = agent.lock();
        st.feed(AgentInput::BuildStarted(id));
        st.farm_of(id)
    };
    let mut req = agent.lease_request(job.lease, atom.as_str(), farm.clone());
    req.reason = None;
    match agent.client.started(&req) {
        Ok(reply) if reply.stale => {
            let why = stale_reason(&reply);
            tracing::warn!(package = %atom, why, "server says the lease is stale: not building");
            agent.lock().feed(AgentInput::Stale { job: id, why });
        }
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(package = %atom, "reporting the start failed (the heartbeat carries it): {e}")
        }
    }
    agent.beat_soon();

    let argv = template::argv(&agent.template, &atom);
    // A fresh PKGDIR per build: whatever it holds afterwards is what this build produced. Its
    // label names this process: job ids start again in each, and an earlier agent's build of
    // the same label (a lease-less one, `nolease-0`) may be being delivered from its
    // directory meanwhile (h42 F6).
    let label = format!("{lease_label}-{}-{id}", std::process::id());
    let build_pkgdir = match collect::fresh_pkgdir(&cfg.work_dir, &label) {
        Ok(dir) => {
            let build_dir = outcome::build_dir(&dir).to_path_buf();
            agent.lock().build_dirs.insert(id, build_dir);
            dir
        }
        Err(e) => {
            let detail = format!(
                "cannot make the build's PKGDIR under {}: {e}",
                cfg.work_dir.display()
            );
            tracing::error!(package = %atom, detail, "build not started");
            report(
                agent,
                id,
                &job,
                0.0,
                Report::Failed {
                    class: FailureClass::Infra,
                    detail,
                },
                None,
                None,
            );
            forget(agent, id);
            return;
        }
    };
    let mut env = vec![
        ("SWARM_ATOM".to_string(), atom.as_str().to_string()),
        ("SWARM_CATEGORY".to_string(), atom.category().to_string()),
        ("SWARM_PF".to_string(), atom.pf().to_string()),
        ("SWARM_PN".to_string(), atom.pn().to_string()),
        (
            "PKGDIR".to_string(),
            build_pkgdir.to_string_lossy().into_owned(),
        ),
    ];
    // The stand-in builder packs its gpkg with this binary (`swarm standin-gpkg`).
    if let Ok(exe) = std::env::current_exe() {
        env.push(("SWARM_BIN".to_string(), exe.to_string_lossy().into_owned()));
    }
    if let Some(l) = job.lease {
        env.push(("SWARM_LEASE".to_string(), l.to_string()));
    }
    let spec = BuildSpec {
        argv: &argv,
        env,
        dir: &cfg.work_dir,
        log: &log,
        stall_timeout: cfg.stall_timeout,
        build_timeout: cfg.build_timeout,
        kill_grace: cfg.kill_grace,
    };
    let oom_count = facts::OomCount::start();
    let built_after = SystemTime::now();
    tracing::info!(package = %atom, lease = %crate::logging::shown(&job.lease), log = %log.display(), "build starts");
    let stopped_already = agent.lock().agent.stop_asked(id);
    let finished = if stopped_already {
        runner::Finished {
            ended: runner::Ended::Stopped,
            took: Duration::ZERO,
        }
    } else {
        run_build(agent, id, &spec, &job)
    };
    // Before anything else (reading what the build wrote takes a while): a builder that
    // exited 0 is a build the next agent delivers should this one be killed now.
    let record = (finished.ended == runner::Ended::Exited(0)).then(|| {
        let record = outcome::Record {
            // The lease it holds now: a build adopts a newer one while it runs (h45 F1).
            lease: job_of(agent, id).map_or(job.lease, |j| j.lease),
            atom: atom.as_str().to_owned(),
            farm,
            epoch: agent.lock().epoch(),
            took_s: finished.took.as_secs_f64(),
            started_ms: built_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            log: log.clone(),
        };
        if let Err(e) = outcome::write(outcome::build_dir(&build_pkgdir), &record) {
            tracing::warn!(package = %atom, "cannot record the build's success ({e}): an agent killed before it is spooled loses it");
        }
        record
    });
    let oom_during = oom_count.since();
    let took_s = finished.took.as_secs_f64();
    let tail = classify::log_tail(&log, LOG_TAIL_BYTES);
    let volumes = facts::build_volumes(&[&cfg.work_dir, &cfg.pkgdir]);
    let verdict = classify::on_full_disk(
        classify::classify(&finished.ended, &tail, oom_during),
        volumes.map(|d| d.free_mib),
    );
    tracing::info!(package = %atom, ended = ?finished.ended, took_s = finished.took.as_secs(), "build ended");

    // The agent decides what the report says: a revoked lease is never reported, a returned one
    // is handed back, and an OOM kill or a crash waits for the health monitor.
    let took = finished.took.as_secs();
    let end = match &verdict {
        Verdict::Stopped => BuildEnd::Stopped,
        Verdict::Failed { class, crash, .. } => BuildEnd::Failed {
            class: *class,
            crash: *crash,
            took_s: took,
        },
        Verdict::Built => BuildEnd::Built { took_s: took },
    };
    let (what, lease) = {
        let mut st = agent.lock();
        let what = st
            .feed(AgentInput::BuildEnded { job: id, end })
            .into_iter()
            .find_map(|a| match a {
                AgentAction::Report { what, .. } => Some(what),
                _ => None,
            })
            .unwrap_or(ReportWhat::Nothing(None));
        (what, st.job(id).map(|j| j.lease))
    };
    agent.notify();
    // An ended build adopts no lease: the record now names the one it is reported under, before
    // its packages are read (seconds, for a big one: a kill then made the next agent report it
    // under an ended lease, as stale; h45 F1).
    let record = match (record, lease) {
        (Some(r), Some(lease)) => Some(outcome::with_lease(
            outcome::build_dir(&build_pkgdir),
            r,
            lease,
        )),
        (r, _) => r,
    };
    let outcome = match (what, verdict) {
        (ReportWhat::Returned(reason), _) => Report::Returned { reason },
        (ReportWhat::Nothing(why), _) => {
            if let Some(why) = why {
                tracing::warn!(package = %atom, why, "build stopped: the server took it away");
            }
            Report::Nothing
        }
        (ReportWhat::Outcome, Verdict::Failed { class, detail, .. }) => {
            tracing::warn!(package = %atom, ?class, detail, "build failed");
            Report::Failed { class, detail }
        }
        (ReportWhat::Outcome, Verdict::Built) => deliver(agent, &atom, built_after, &build_pkgdir),
        (ReportWhat::Outcome, Verdict::Stopped) => Report::Nothing,
    };

    let job = job_of(agent, id).unwrap_or(job);
    let stays = report(
        agent,
        id,
        &job,
        took_s,
        outcome,
        Some(&log),
        Some(BuildDir {
            pkgdir: &build_pkgdir,
            record: record.as_ref(),
        }),
    );
    // Whatever the build wrote is in the drone's PKGDIR or the spool by now
    // (or was never wanted): its own directory goes, whatever the outcome,
    // unless it is the only copy of a build not delivered. It is kept only
    // with its record: without one (its first write failed, as the spool's
    // did, on a full disk) the next start removed it, and the goodbye gave
    // the lease back meanwhile (h40). A failure has no record to keep.
    let stays = stays
        && record
            .as_ref()
            .is_some_and(|r| record_kept(outcome::build_dir(&build_pkgdir), r));
    if build_pkgdir.exists() && !stays {
        collect::keep(&build_pkgdir, &cfg.pkgdir, &[]);
    }
    super::logs::rotate(
        &cfg.log_dir,
        super::logs::KEEP_LOGS,
        super::logs::KEEP_BYTES,
    );
    forget(agent, id);
}

/// Runs the builder, noting its process group for a later agent (see `leftovers`).
fn run_build(agent: &Agent, id: JobId, spec: &BuildSpec<'_>, job: &Job) -> runner::Finished {
    let cfg = &agent.cfg;
    let finished = runner::run(
        spec,
        |pgid| {
            leftovers::record(&cfg.work_dir, pgid, job.lease, job.atom.as_str());
            agent.lock().pgids.insert(id, pgid);
        },
        || agent.lock().agent.stop_asked(id),
    );
    if let Some(pgid) = agent.lock().pgids.remove(&id) {
        leftovers::forget(&cfg.work_dir, pgid);
    }
    finished
}

/// A built package: every binary package the build wrote into its own PKGDIR, each identified
/// by the CPV read from the package itself (the spool uploads them, then the drone's PKGDIR
/// keeps them).
fn deliver(agent: &Agent, atom: &Atom, built_after: SystemTime, build_pkgdir: &Path) -> Report {
    let built = match collect::collect(build_pkgdir) {
        Ok(b) => b,
        Err(detail) => {
            return Report::Failed {
                class: FailureClass::Infra,
                detail,
            }
        }
    };
    if built.is_empty() {
        // A builder that ignores $PKGDIR may still have written into the drone's own PKGDIR.
        return deliver_found(agent, atom, built_after, build_pkgdir);
    }
    for b in &built {
        if b.upload_name.ends_with(".gpkg.tar") && b.size < MIN_GPKG_BYTES {
            return Report::Failed {
                class: FailureClass::Infra,
                detail: format!(
                    "artifact {} is {} bytes, smaller than a real gpkg ({MIN_GPKG_BYTES})",
                    b.path.display(),
                    b.size
                ),
            };
        }
    }
    let main = collect::split(&built, atom).0.first().copied();
    if main.is_none() && !atom.is_virtual() {
        tracing::warn!(package = %atom, built = ?built.iter().map(|b| &b.cpv).collect::<Vec<_>>(),
            "the build wrote no package the lease covers (its name, a version and slot it admits); the server decides");
    }
    Report::Built {
        sha256: main.map(|b| b.sha256.clone()),
        artifacts: built,
        pkgdir: build_pkgdir.to_path_buf(),
    }
}

/// The former way, for builders that ignore `$PKGDIR`: the newest artifact named after the atom
/// in the drone's PKGDIR (exact atoms only), written since the build started.
fn deliver_found(
    agent: &Agent,
    atom: &Atom,
    built_after: SystemTime,
    build_pkgdir: &Path,
) -> Report {
    let cfg = &agent.cfg;
    // Virtuals too: a binhost client installing a world needs their (empty) packages,
    // and emerge --buildpkg makes them.
    let Some(found) = artifact::find(&cfg.pkgdir, atom) else {
        return Report::Failed {
            class: FailureClass::Infra,
            detail: format!(
                "missing artifact: the build succeeded but wrote no binary package into its PKGDIR \
                 (is FEATURES=buildpkg or --buildpkg set?), and no {}.gpkg.tar or .tbz2 is under {}",
                atom.pf(),
                cfg.pkgdir.join(atom.category()).display()
            ),
        };
    };
    if found.modified + Duration::from_secs(2) < built_after {
        // An earlier build's file (`collect::keep` moves every build's packages here): sent
        // as this build's, a build that made nothing counted as built (h21).
        return Report::Failed {
            class: FailureClass::Infra,
            detail: format!(
                "missing artifact: the build succeeded but wrote no binary package into its \
                 PKGDIR, and {} was written before the build started: an earlier build's, \
                 not this one's (is FEATURES=buildpkg or --buildpkg set?)",
                found.path.display()
            ),
        };
    }
    if found.upload_name.ends_with(".gpkg.tar") && found.size < MIN_GPKG_BYTES {
        return Report::Failed {
            class: FailureClass::Infra,
            detail: format!(
                "artifact {} is {} bytes, smaller than a real gpkg ({MIN_GPKG_BYTES})",
                found.path.display(),
                found.size
            ),
        };
    }
    let sha = match artifact::sha256_file(&found.path) {
        Ok(s) => s,
        Err(e) => {
            return Report::Failed {
                class: FailureClass::Infra,
                detail: format!("cannot read artifact {}: {e}", found.path.display()),
            }
        }
    };
    Report::Built {
        sha256: Some(sha.clone()),
        artifacts: vec![collect::Built {
            path: found.path.clone(),
            cpv: format!("{}/{}", atom.category(), atom.pf()),
            upload_name: found.upload_name.clone(),
            size: found.size,
            sha256: sha,
            slot: None,
        }],
        pkgdir: build_pkgdir.to_path_buf(),
    }
}

/// Whether to stop retrying: the package was revoked, or the agent is
/// leaving now, or it is returning work and has tried enough.
fn give_up(agent: &Agent, id: JobId, attempt: u32) -> bool {
    let st = agent.lock();
    let revoked = matches!(
        st.job(id).and_then(|j| j.stop.as_ref()),
        Some(Stop::Revoked(_))
    );
    revoked
        || st.phase() == Phase::Exit
        || (st.phase().returns_work() && attempt > SHUTDOWN_ATTEMPTS)
}

/// A build's own PKGDIR, and the record of its builder's success, if it succeeded.
struct BuildDir<'a> {
    pkgdir: &'a Path,
    record: Option<&'a outcome::Record>,
}

/// Makes sure an undelivered build's directory holds its record (its first write may have
/// failed), so the next start delivers it; false, logged, when it cannot.
fn record_kept(build_dir: &Path, record: &outcome::Record) -> bool {
    outcome::ensure(build_dir, record)
        .map_err(|e| tracing::error!(package = %record.atom, "cannot record the undelivered build ({e}): it is lost, and built again"))
        .is_ok()
}

/// Sends the report: a return directly (its log best effort), a finished
/// build (its packages and its log) through the spool; each retried until
/// the server answers. `build`: the build's own PKGDIR, whose outcome record
/// goes once the build is spooled, and is written again, when its first write
/// failed, before the build is delivered from its own files. True when the
/// build's directory must stay (see `spool::spool_and_deliver`).
fn report(
    agent: &Agent,
    id: JobId,
    job: &Job,
    took_s: f64,
    outcome: Report,
    log: Option<&Path>,
    build: Option<BuildDir<'_>>,
) -> bool {
    let atom = job.atom.as_str();
    // The farm of the work reply that leased it (`forget` drops the entry).
    let farm = agent.lock().farm_of(id);
    match &outcome {
        Report::Nothing => return false,
        Report::Returned { reason } => {
            if let Some(log) = log {
                super::logs::upload(agent, job, farm.as_deref(), log);
            }
            let mut r = agent.lease_request(job.lease, atom, farm);
            r.reason = Some(reason.clone());
            send(agent, job, "return", |a| a.client.give_back(&r));
            return false;
        }
        Report::Built { .. } | Report::Failed { .. } => {}
    }
    let mut req = base_request(&agent.cfg.name, job.lease, &job.atom, took_s);
    req.epoch = agent.lock().epoch();
    let Some(finished) = to_spool(req, &job.atom, &outcome, log, farm) else {
        return false;
    };
    let dir = build.as_ref().map(|b| outcome::build_dir(b.pkgdir));
    spool::spool_and_deliver(
        agent,
        id,
        finished,
        || spooled(agent, &outcome, dir),
        || {
            // Before the delivery, which a third signal may cut short: the goodbye that
            // follows gives the lease back unless the directory shows the build (h40's
            // second write raced it).
            if let (Some(dir), Some(record)) = (dir, build.as_ref().and_then(|b| b.record)) {
                if let Err(e) = outcome::ensure(dir, record) {
                    tracing::warn!(package = %record.atom, "cannot record the build before its delivery ({e}): should the agent leave before it is delivered, it is built again");
                }
            }
        },
    )
}

/// A report of `atom`'s build, by name (not machine id: see `Agent::lease_request`).
fn base_request(node: &str, lease: Option<u64>, atom: &Atom, took_s: f64) -> CompleteRequest {
    CompleteRequest {
        id: None,
        node_name: Some(node.to_owned()),
        package: Some(atom.as_str().to_owned()),
        lease,
        build_duration_s: Some((took_s * 10.0).round() / 10.0),
        ..CompleteRequest::default()
    }
}

/// What the spool keeps of a built or failed build (`None` for the other reports): `req`
/// completed with the outcome, the packages to upload and the log's compressed tail.
fn to_spool<'a>(
    mut req: CompleteRequest,
    atom: &Atom,
    outcome: &'a Report,
    log: Option<&Path>,
    farm: Option<String>,
) -> Option<spool::Finished<'a>> {
    let mut uploads: Vec<&collect::Built> = Vec::new();
    match outcome {
        Report::Nothing | Report::Returned { .. } => return None,
        Report::Built {
            sha256, artifacts, ..
        } => {
            req.status = Some("success".into());
            req.sha256.clone_from(sha256);
            // The server takes, under this build's lease, only the package it covers;
            // whatever emerge built along stays in the drone's PKGDIR.
            let (mine, along) = collect::split(artifacts, atom);
            if !along.is_empty() {
                tracing::info!(package = %atom, kept = ?along.iter().map(|b| &b.cpv).collect::<Vec<_>>(),
                    "packages built along are kept locally, not uploaded: the lease covers one version of its own package, of the slot it asks for");
            }
            req.artifacts = Some(mine.iter().map(|b| b.cpv.clone()).collect());
            uploads = mine;
        }
        Report::Failed { class, detail } => {
            req.status = Some("failed".into());
            req.failure_class = Some(*class);
            req.error_detail = Some(detail.clone());
        }
    }
    let log_gz = log.and_then(|p| {
        super::logs::compressed_tail(p, super::logs::UPLOAD_TEXT_BYTES)
            .map_err(
                |e| tracing::warn!(log = %p.display(), "cannot read the build log to send it: {e}"),
            )
            .ok()
    });
    Some(spool::Finished {
        report: req,
        artifacts: uploads
            .iter()
            .map(|b| {
                (
                    spool::SpooledArtifact {
                        category: b.category().to_string(),
                        name: b.upload_name.clone(),
                        sha256: b.sha256.clone(),
                    },
                    b.path.as_path(),
                )
            })
            .collect(),
        log_gz,
        farm,
    })
}

/// Once a build is spooled: its outcome record goes (the spool delivers it from now on; left,
/// the next start spooled it twice), and what it built joins the drone's PKGDIR.
fn spooled(agent: &Agent, outcome: &Report, build_dir: Option<&Path>) {
    if let Some(dir) = build_dir {
        outcome::clear(dir);
    }
    if let Report::Built {
        artifacts, pkgdir, ..
    } = outcome
    {
        collect::keep(pkgdir, &agent.cfg.pkgdir, artifacts);
    }
}

/// At start, before the spool is read: spools each build an earlier agent saw succeed but was
/// killed before spooling (see `outcome`), from what the build left in its PKGDIR, so it is
/// delivered, not built again; every other build directory is removed. A build the spool cannot
/// take now (a full disk) is delivered from its directory on a thread of its own (returned), its
/// lease held meanwhile; the directory stays until the server answers, for the next start if
/// the agent leaves first. Kept for the next start, the server went on listing its lease, and
/// the package was built again (h40 F3).
pub(crate) fn recover(agent: &Arc<Agent>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let mut unspooled = Vec::new();
    for (dir, record) in outcome::sweep(&agent.cfg.work_dir) {
        let Ok(atom) = record.atom() else {
            continue; // `sweep` returns only records whose atom parses
        };
        tracing::warn!(package = %atom, lease = %crate::logging::shown(&record.lease), dir = %dir.display(),
            "an earlier agent was stopped after this build succeeded, before it was spooled: spooling it now instead of building it again");
        let result = deliver(agent, &atom, record.started(), &dir.join("pkgdir"));
        let mut req = base_request(&agent.cfg.name, record.lease, &atom, record.took_s);
        req.epoch = record.epoch;
        let log = record.log.is_file().then(|| record.log.clone());
        let Some(finished) = to_spool(
            req.clone(),
            &atom,
            &result,
            log.as_deref(),
            record.farm.clone(),
        ) else {
            continue;
        };
        match spool::put(&agent.cfg.work_dir, &finished) {
            Ok(_) => {
                spooled(agent, &result, Some(&dir));
                if dir.exists() {
                    outcome::remove(&dir);
                }
            }
            Err(e) => {
                tracing::error!(package = %atom, dir = %dir.display(), "cannot spool the recovered build ({e}); delivering it from its build directory, which stays until the server answers");
                unspooled.push(Unspooled {
                    dir,
                    atom,
                    req,
                    result,
                    log,
                    farm: record.farm,
                });
            }
        }
    }
    if unspooled.is_empty() {
        return Ok(None);
    }
    {
        // Held before the first registration reply lists them, as the spool's are.
        let mut st = agent.lock();
        for lease in unspooled.iter().filter_map(|u| u.req.lease) {
            st.feed(AgentInput::Spooled(lease));
        }
    }
    let agent = Arc::clone(agent);
    std::thread::Builder::new()
        .name("deliver-unspooled".into())
        .spawn(move || deliver_unspooled(&agent, unspooled))
        .map(Some)
}

/// A recovered build the spool could not take.
struct Unspooled {
    dir: PathBuf,
    atom: Atom,
    req: CompleteRequest,
    result: Report,
    log: Option<PathBuf>,
    farm: Option<String>,
}

/// Delivers recovered builds from their directories, in order, letting go of each lease once
/// its delivery is over. A build not delivered before the agent leaves keeps its directory and
/// record, and the rest with it, for the next start.
fn deliver_unspooled(agent: &Agent, builds: Vec<Unspooled>) {
    let mut builds = builds.into_iter();
    while let Some(b) = builds.next() {
        let finished = to_spool(
            b.req.clone(),
            &b.atom,
            &b.result,
            b.log.as_deref(),
            b.farm.clone(),
        );
        let delivered = finished.map(|f| spool::deliver_from_files(agent, &f, spool::By::Startup));
        if let Some(lease) = b.req.lease {
            let how = if delivered == Some(spool::Delivered::Elsewhere) {
                AgentInput::SpooledElsewhere
            } else {
                AgentInput::Unspooled
            };
            agent.lock().feed(how(lease));
            agent.notify();
        }
        if let Some(spool::Delivered::Kept(why)) = delivered {
            tracing::warn!(package = %b.atom, dir = %b.dir.display(), why, "build kept in its directory; the next start delivers it");
            for rest in builds.by_ref() {
                if let Some(lease) = rest.req.lease {
                    agent.lock().feed(AgentInput::Unspooled(lease));
                }
            }
            agent.notify();
            return;
        }
        tracing::info!(package = %b.atom, result = ?delivered, "recovered build delivered from its directory");
        spooled(agent, &b.result, Some(&b.dir));
        if b.dir.exists() {
            outcome::remove(&b.dir);
        }
    }
}

/// One report, retried until answered; logs the answer.
fn send(
    agent: &Agent,
    job: &Job,
    what: &str,
    mut call: impl FnMut(&Agent) -> Result<CompleteReply, ClientError>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let id_of_job = agent
        .lock()
        .agent
        .jobs()
        .iter()
        .find(|(_, j)| j.lease == job.lease && j.atom == job.atom)
        .map(|(id, _)| *id);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call(agent) {
            Ok(reply) if reply.stale => {
                tracing::warn!(package = %job.atom, lease = %crate::logging::shown(&job.lease), why = stale_reason(&reply), "{what} was stale: the server had already moved the package");
                return;
            }
            Ok(reply) => {
                tracing::info!(package = %job.atom, lease = %crate::logging::shown(&job.lease), accepted = reply.accepted, recorded = %crate::logging::shown(&reply.recorded), "{what} sent");
                return;
            }
            Err(e) if e.status() == Some(404) => {
                // The server lost the drone (wiped state?): register, then retry.
                tracing::warn!(package = %job.atom, "{what}: server does not know this drone; registering again");
                agent.lock().feed(AgentInput::Forgotten);
                agent.beat_soon();
            }
            Err(e) if !e.is_worth_retrying() => {
                tracing::error!(package = %job.atom, "{what} refused: {e}");
                return;
            }
            Err(e) => {
                if attempt == 1 {
                    tracing::warn!(package = %job.atom, "{what} failed: {e}; retrying until the server answers");
                }
            }
        }
        if let Some(id) = id_of_job {
            if give_up(agent, id, attempt + 1) {
                tracing::error!(package = %job.atom, "{what} abandoned (revoked or leaving)");
                return;
            }
        } else if agent.lock().phase() == Phase::Exit {
            return;
        }
        agent.pause(backoff.next_delay());
    }
}

fn stale_reason(reply: &CompleteReply) -> String {
    reply
        .reason
        .clone()
        .unwrap_or_else(|| "work reclaimed".to_string())
}
