//! The heartbeat thread: registers, then re-registers every `--heartbeat-s`
//! with fresh figures, the health state and the leases held and started.
//!
//! It runs on its own thread and takes the shared lock only to read and to
//! apply a reply, so neither a build nor a slow report can starve it. When
//! the server is away it retries with backoff and jitter (capped at the
//! heartbeat interval) and keeps going forever: a heartbeat failing changes
//! nothing about the builds. Each beat is also the health monitor's sampling
//! tick.

use super::backoff::Backoff;
use super::buildenv;
use super::config::Builder;
use super::shared::Agent;
use super::state::server_reply;
use super::{facts, homecoming};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use swarm_core::agent::{AgentInput, RequestMark};
use swarm_core::{DroneHealth, HealthSample, HealthThresholds};
use swarm_net::wire::{Capabilities, Metrics, RegisterRequest};

/// Figures carried from one beat to the next (CPU use is a difference).
#[derive(Debug, Default)]
struct Sampler {
    cpu: Option<(u64, u64)>,
    /// When health was last assessed.
    assessed: Option<Instant>,
    /// The build environment last read, when, and why the last read failed.
    env: Option<BTreeMap<String, String>>,
    env_read: Option<Instant>,
    env_error: Option<String>,
    /// The builds' asks (`State::env_asked`) this sampler has read for.
    env_asked: u64,
    /// Until when builds do not ask for a read of their own: the last one was slow or failed.
    pre_build_off: Option<Instant>,
}

/// How often the agent asks Portage for its environment again while no build starts: often
/// enough to see drift within minutes, rarely enough that `portageq` costs nothing. Before each
/// build it is read again as well (`asked`).
const ENV_EVERY: Duration = Duration::from_secs(600);

/// After a read that failed, the next one is this soon: a drone reports no environment
/// meanwhile and gets no work, and waiting out [`ENV_EVERY`] idled it ten minutes after a
/// `portageq` hiccup (h35 F3).
const ENV_RETRY: Duration = Duration::from_secs(60);

/// A read slower than this turns the reads before builds off for [`ENV_EVERY`]: it runs on the
/// heartbeat thread and each build waits for it (h32: an env command that hung for its 20 s
/// limit made four 0.6 s builds take 63 s).
const ENV_SLOW: Duration = Duration::from_secs(5);

/// Reads the build environment when it is due, or when a build about to start asked for it
/// (`asked`, from `State::env_asked`); logs a change or a new reason it cannot.
fn refresh_env(agent: &Agent, sampler: &mut Sampler, asked: u64) {
    let argv = &agent.cfg.env_command;
    let build_asked = asked > sampler.env_asked
        && sampler
            .pre_build_off
            .is_none_or(|until| Instant::now() >= until);
    sampler.env_asked = asked;
    let every = if sampler.env_error.is_some() {
        ENV_RETRY
    } else {
        ENV_EVERY
    };
    if argv.is_empty() || (!build_asked && sampler.env_read.is_some_and(|t| t.elapsed() < every)) {
        return;
    }
    let started = Instant::now();
    sampler.env_read = Some(started);
    let read = buildenv::read(argv);
    let took = started.elapsed();
    if took >= ENV_SLOW || read.is_err() {
        if sampler.pre_build_off.is_none_or(|until| started >= until) {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                failed = read.is_err(),
                "reading the build environment was slow or failed; builds start without a read of their own for {} minutes (every build waited for it)",
                ENV_EVERY.as_secs() / 60
            );
        }
        sampler.pre_build_off = Some(started + ENV_EVERY);
    }
    match read {
        Ok(vars) => {
            if sampler.env.as_ref() != Some(&vars) {
                let changed: Vec<&str> = vars
                    .iter()
                    .filter(|(k, v)| sampler.env.as_ref().and_then(|e| e.get(*k)) != Some(*v))
                    .map(|(k, _)| k.as_str())
                    .collect();
                tracing::info!(
                    variables = vars.len(),
                    ?changed,
                    "build environment read from Portage"
                );
            }
            sampler.env = Some(vars);
            sampler.env_error = None;
        }
        Err(why) => {
            if sampler.env_error.as_ref() != Some(&why) {
                tracing::warn!(
                    "no build environment to report ({why}); a server that expects one gives this drone no work until a read works again (--env-command)"
                );
            }
            // Reported as none, not as the last one read: that one may be what broke the
            // command (a Portage upgrade), and builds were stamped with it meanwhile (h32 F3).
            sampler.env = Some(BTreeMap::new());
            sampler.env_error = Some(why);
        }
    }
}

/// Runs until the agent exits.
pub(crate) fn run(agent: &std::sync::Arc<Agent>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), agent.cfg.heartbeat);
    let mut sampler = Sampler::default();
    let mut failing_since: Option<Instant> = None;
    // What was last said about a failing heartbeat, and when: a problem is
    // logged when it starts, when it changes, and once a minute while it lasts.
    let mut last_said: Option<(String, Instant)> = None;
    loop {
        let (req, sent) = sample_and_build(agent, &mut sampler);
        let delay = match agent.client.register(&req) {
            Ok(reply) => {
                let failing = failing_since.is_some();
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        "control plane answers again after {} s",
                        since.elapsed().as_secs()
                    );
                }
                last_said = None;
                let mut st = agent.lock();
                let first = !st.agent.is_registered();
                if failing {
                    // Wake the uploads and reports waiting out a backoff.
                    st.reconnects += 1;
                }
                // The work reply may have given a package again since the request went out: the
                // reply's revokes spare what was taken meanwhile.
                let home = homecoming::heard(&mut st, &agent.cfg.work_dir, reply.farm_id.as_ref());
                st.feed(AgentInput::Registered(server_reply(&reply, sent)));
                // The builds that asked before this beat went out may start: the server has
                // their environment, and the reply's revokes (a drift) were just applied. Not
                // while it holds a change back: the farm has the environment before it.
                st.env_held = reply.env_held;
                if !reply.env_held {
                    st.env_answered = st.env_answered.max(sampler.env_asked);
                }
                st.max_artifact = reply.max_artifact_bytes.or(st.max_artifact);
                st.upload_check = reply.upload_check;
                if first {
                    tracing::info!(
                        epoch = %crate::logging::shown(&st.epoch()),
                        paused = st.agent.paused(),
                        leases = reply.leases.len(),
                        "registered with {}",
                        agent.client.base()
                    );
                    let cores = facts::cores();
                    match slots_note(agent.cfg.slots, cores, reply.slots, reply.cores_per_slot) {
                        (true, note) => tracing::warn!("{note}"),
                        (false, note) => tracing::info!("{note}"),
                    }
                }
                drop(st);
                homecoming::deliver(agent, home);
                agent.notify();
                backoff.reset();
                backoff.jitter(agent.cfg.heartbeat)
            }
            Err(e) if matches!(e.status(), Some(401 | 403)) && agent.reread_token_file() => {
                Duration::ZERO
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                let what = failure_cause(&e, agent.cfg.token.is_some());
                let due = match &last_said {
                    None => true,
                    Some((said, at)) => *said != what || at.elapsed() >= REPEAT_EVERY,
                };
                if due {
                    let secs = since.elapsed().as_secs();
                    if secs == 0 {
                        tracing::warn!(
                            "heartbeat failed: {what}; retrying with backoff, builds go on"
                        );
                    } else {
                        tracing::warn!(
                            "heartbeat failing for {secs} s: {what}; still retrying, builds go on"
                        );
                    }
                    last_said = Some((what, Instant::now()));
                } else {
                    tracing::debug!("heartbeat failed: {e}");
                }
                if e.status() == Some(404) {
                    agent.lock().feed(AgentInput::Forgotten);
                }
                backoff.next_delay()
            }
        };
        if !wait(agent, delay) {
            return;
        }
    }
}

/// How often a lasting heartbeat failure is logged again.
const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// What is wrong, in words that lead to the fix: a missing token and a
/// wrong one are different mistakes with different fixes.
pub(crate) fn failure_cause(e: &swarm_net::client::ClientError, have_token: bool) -> String {
    for_log(&match e.status() {
        Some(401 | 403) if !have_token => format!(
            "the server requires a drone token and this drone sends none: set SWARM_DRONE_TOKEN \
             or pass --token-file with the server's drone_token ({e})"
        ),
        Some(401) => format!(
            "the server refused this drone's token: it does not match the server's drone_token \
             or an enrolled drone's (check --token-file / SWARM_DRONE_TOKEN) ({e})"
        ),
        Some(403) => format!(
            "the server refuses this drone's calls for who it is (another drone's token, or a \
             drone it lets in only with a credential; check --token-file / SWARM_DRONE_TOKEN and \
             --name) ({e})"
        ),
        _ => e.to_string(),
    })
}

/// Text a server sent, as the agent logs it: one line (control characters
/// escaped, so a reply cannot forge log lines or drive a terminal) and at
/// most [`LOGGED_CHARS`] characters (a 9 MiB error body on every retry
/// filled the log at 1 MB a second).
pub(crate) fn for_log(text: &str) -> String {
    let mut out = String::new();
    for (n, (at, c)) in text.char_indices().enumerate() {
        if n == LOGGED_CHARS {
            out += &format!("… ({} more bytes)", text.len() - at);
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How much of a server's text a log line carries.
const LOGGED_CHARS: usize = 1000;

/// How many builds run here at once, and why: the agent's `--slots` can
/// only lower what the server allows (`max(1, cores / cores_per_slot)`).
/// True when the operator asked for more than the server gives.
pub(crate) fn slots_note(
    asked: u32,
    cores: u32,
    server: Option<u32>,
    cores_per_slot: Option<u32>,
) -> (bool, String) {
    let Some(server) = server else {
        return (
            false,
            format!(
                "runs up to {asked} build{} at once (--slots)",
                if asked == 1 { "" } else { "s" }
            ),
        );
    };
    let per = cores_per_slot.map_or(String::new(), |c| format!(" / cores_per_slot {c}"));
    if asked > server {
        (
            true,
            format!(
                "--slots {asked}, but the server runs at most {server} build{} at once here \
                 ({cores} cores{per}): lower cores_per_slot in the server's [policy] \
                 (see `swarm config defaults`) to run more",
                if server == 1 { "" } else { "s" }
            ),
        )
    } else {
        (
            false,
            format!(
                "runs up to {asked} build{} at once (--slots {asked}; the server allows {server}: {cores} cores{per})",
                if asked == 1 { "" } else { "s" }
            ),
        )
    }
}

/// Sleeps for `delay` or until a beat is asked for; false when the agent exits.
fn wait(agent: &Agent, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    let mut st = agent.lock();
    loop {
        if st.exiting {
            return false;
        }
        if st.beat_now {
            st.beat_now = false;
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        st = agent.wait(st, deadline - now);
    }
}

/// Samples the machine, assesses health, and writes the register request, with what the agent
/// holds as it goes out (its reply's revokes concern only that).
fn sample_and_build(agent: &Agent, sampler: &mut Sampler) -> (RegisterRequest, RequestMark) {
    let asked = agent.lock().env_asked;
    refresh_env(agent, sampler, asked);
    let cfg = &agent.cfg;
    let memory = facts::read_with("/proc/meminfo", facts::parse_meminfo);
    let load = facts::read_with("/proc/loadavg", facts::parse_loadavg);
    let cpu_now = facts::read_with("/proc/stat", facts::parse_stat_cpu);
    let cpu_percent = match (sampler.cpu, cpu_now) {
        (Some(a), Some(b)) => facts::cpu_percent(a, b),
        _ => None,
    };
    sampler.cpu = cpu_now.or(sampler.cpu);
    let volumes = cfg.written_dirs();
    let disk_usage = facts::build_volumes(&volumes.each_ref().map(PathBuf::as_path));
    let disk = disk_usage.map(|d| d.percent);
    let percent = |x: Option<f64>| x.map_or(0, |v| v.clamp(0.0, 100.0).round() as u8);

    // Health is sampled at the heartbeat cadence, the monitor's only clock,
    // so the extra beats sent when leases change do not hurry Critical through
    // Recovering; an OOM kill or a crash is assessed at once.
    let due = sampler
        .assessed
        .is_none_or(|t| t.elapsed() + Duration::from_millis(250) >= cfg.heartbeat);
    let (recovering, events) = {
        let st = agent.lock();
        let (oom_kills, crashes) = st.agent.pending_events();
        (
            st.agent.health().state() == DroneHealth::Recovering,
            oom_kills + crashes > 0,
        )
    };
    let assess = due || events;
    let self_check = (assess && recovering).then(|| self_check(agent));

    let mut st = agent.lock();
    if assess {
        sampler.assessed = Some(Instant::now());
        let sample = HealthSample {
            mem_percent: percent(memory.map(|m| m.used_percent())),
            disk_percent: percent(disk),
            disk_free_mib: disk_usage.map(|d| d.free_mib),
            oom_kills: st.agent.pending_events().0,
            crashes: st.agent.pending_events().1,
            self_check_passed: self_check,
        };
        let before = st.agent.health().state();
        // The agent returns everything on Critical; the main loop logs it.
        if !st.feed(AgentInput::Health(sample)).is_empty() {
            agent.notify();
        }
        let after = st.agent.health().state();
        if after != before {
            let why = health_reason(&st.agent.health().thresholds(), &sample);
            tracing::warn!(from = ?before, to = ?after, ?sample, "drone health changed: {why}");
        }
    }
    let health = st.agent.health().state();
    let (leases, started) = st.agent.lease_lists();
    let sent = st.agent.request_mark();
    let req = RegisterRequest {
        id: cfg.machine_id.clone(),
        node_name: Some(cfg.name.clone()),
        name: Some(cfg.name.clone()),
        ip: agent.ip.clone(),
        node_type: Some("drone".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        capabilities: Some(Capabilities {
            cores: Some(facts::cores()),
            ram_gb: memory.map(|m| m.total_gb()),
            portage_timestamp: st.agent.portage_timestamp().map(str::to_string),
            arch: Some(std::env::consts::ARCH.into()),
            env: sampler.env.clone(),
            ..Capabilities::default()
        }),
        metrics: Some(Metrics {
            cpu_percent,
            ram_percent: memory.map(|m| (m.used_percent() * 10.0).round() / 10.0),
            load_1m: load,
            disk_percent: disk.map(|d| (d * 10.0).round() / 10.0),
            ..Metrics::default()
        }),
        current_task: Some(st.agent.current_task()),
        epoch: st.epoch(),
        health: Some(health),
        leases: Some(leases),
        started: Some(started),
        disk_percent: disk.map(|d| (d * 10.0).round() / 10.0),
        kind: Some(agent.kind),
    };
    (req, sent)
}

/// Why a sample puts the drone where it is, in the operator's words.
fn health_reason(t: &HealthThresholds, s: &HealthSample) -> String {
    let mut why = Vec::new();
    if s.oom_kills > 0 {
        why.push(format!("{} OOM kill(s)", s.oom_kills));
    }
    if s.crashes > 0 {
        why.push(format!("{} builder crash(es)", s.crashes));
    }
    if t.memory_low(s) {
        why.push(format!(
            "memory {}% in use (limit {}%)",
            s.mem_percent, t.mem_percent
        ));
    }
    if t.disk_low(s) {
        why.push(match s.disk_free_mib {
            Some(free) => format!(
                "{free} MiB free on the build volume, below the {} MiB floor (--min-free-disk)",
                t.disk_free_mib
            ),
            None => format!("disk {}% full (limit {}%)", s.disk_percent, t.disk_percent),
        });
    }
    if why.is_empty() {
        why.push("no memory or disk pressure (slow builds or the self check decide)".into());
    }
    why.join("; ")
}

/// The check that ends `Recovering`: the work dir and the spool take a write
/// and the builder's program is there to run.
fn self_check(agent: &Agent) -> bool {
    let name = format!(".self-check.{}", std::process::id());
    // PKGDIR is not probed, as before the spool was added.
    let [work_dir, _pkgdir, spool] = agent.cfg.written_dirs();
    let writable = [work_dir, spool].iter().all(|d| {
        let probe = d.join(&name);
        std::fs::write(&probe, b"ok").is_ok() && std::fs::remove_file(&probe).is_ok()
    });
    let program = match &agent.cfg.builder {
        Builder::Standin => "sh".to_string(),
        Builder::Template(words) => words.first().cloned().unwrap_or_default(),
    };
    let runnable = find_program(&program);
    if !(writable && runnable) {
        tracing::warn!(writable, runnable, program, "self check failed");
    }
    writable && runnable
}

/// Whether `program` exists as given (with a `/`) or on `PATH`.
pub(crate) fn find_program(program: &str) -> bool {
    if program.is_empty() {
        return false;
    }
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_text_is_logged_on_one_line_and_bounded() {
        assert_eq!(
            for_log("HTTP 500: oops\n2026-12-05T00:00:00Z  INFO swarm drone: FAKE\u{1b}]0;t\u{7}"),
            "HTTP 500: oops\\n2026-12-05T00:00:00Z  INFO swarm drone: FAKE\\u{1b}]0;t\\u{7}"
        );
        let big = "é".repeat(5000);
        let logged = for_log(&big);
        assert_eq!(logged.chars().filter(|c| *c == 'é').count(), LOGGED_CHARS);
        assert!(
            logged.ends_with("… (8000 more bytes)"),
            "{}",
            &logged[logged.len() - 40..]
        );
    }

    #[test]
    fn programs_are_found_on_the_path_or_as_paths() {
        assert!(find_program("sh"));
        assert!(find_program("/bin/sh") || find_program("/usr/bin/sh"));
        assert!(!find_program("surely-no-such-builder-exists"));
        assert!(!find_program(""));
    }
}
