//! The end-of-run summary. Every count, time and reason is read from the real
//! server (`/status`, `/nodes`, `/queue?state=blocked`, `/events`); the demo
//! adds only what it did itself (which drone it killed, which pids it ran)
//! and the lower bound, computed from the size hints it queued.

use super::progress::{block_reason, short};
use super::world::{demo_ms, LowerBound, World};
use serde::Serialize;
use std::path::{Path, PathBuf};
use swarm_net::client::admin::{EventRecord, Node, QueueState, Status};
use swarm_net::client::Client;

/// The drone the demo killed.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct KilledDrone {
    /// Its name.
    pub(crate) drone: String,
    /// Its pid.
    pub(crate) pid: u32,
    /// Server time of the kill, ms since the epoch.
    pub(crate) at_ms: u64,
    /// Packages built when it was killed.
    pub(crate) built_then: u32,
    /// What it held (the server's `/nodes` just before).
    pub(crate) held: Vec<String>,
    /// Process groups of the builds it ran, killed with it.
    pub(crate) builds_killed: Vec<u32>,
}

/// A blocked package.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Blocked {
    /// Atom.
    pub(crate) atom: String,
    /// The server's reason, in words.
    pub(crate) reason: String,
    /// Failed attempts.
    pub(crate) attempts: u32,
    /// The last failure's detail.
    pub(crate) last_error: Option<String>,
    /// What the sample told the stand-in to do with it: `fail`, `oom`, or null
    /// for a package that was not meant to break.
    pub(crate) intended: Option<&'static str>,
}

/// One failed build attempt.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Failure {
    /// Atom.
    pub(crate) atom: String,
    /// Where.
    pub(crate) drone: String,
    /// `build`, `oom` or `infra`.
    pub(crate) class: String,
    /// Attempt number.
    pub(crate) attempt: u64,
    /// The drone's words.
    pub(crate) detail: String,
}

/// One reclaimed lease.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Reclaim {
    /// Atom.
    pub(crate) atom: String,
    /// Whose lease.
    pub(crate) drone: String,
    /// `offline`, `returned`, ...
    pub(crate) reason: String,
    /// Whether it was building.
    pub(crate) started: bool,
    /// Who built it afterwards, if anyone did.
    pub(crate) rebuilt_by: Option<String>,
}

/// One drone at the end.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DroneSummary {
    /// Name.
    pub(crate) name: String,
    /// `online`, `suspect`, `offline`.
    pub(crate) status: String,
    /// Builds it delivered.
    pub(crate) builds_ok: u64,
    /// Builds that failed on it.
    pub(crate) builds_failed: u64,
    /// Its pid.
    pub(crate) pid: u32,
    /// Why the server gave it no work at the end (for example degraded health), if it gave none.
    pub(crate) no_work: Option<String>,
}

/// Makespan against the lower bound.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Timing {
    /// From the `queued` event to the last `built` or `blocked` event, ms.
    pub(crate) makespan_ms: u64,
    /// The bound and its parts.
    pub(crate) lower_bound: LowerBound,
    /// `makespan / bound`.
    pub(crate) ratio: f64,
    /// Build seconds per demo second.
    pub(crate) speed: f64,
}

/// Where the run's files are.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Files {
    /// The demo's directory.
    pub(crate) data_dir: PathBuf,
    /// The server's SQLite database.
    pub(crate) database: PathBuf,
    /// Staging: the uploaded binary packages.
    pub(crate) artifacts: PathBuf,
    /// Binary packages in staging.
    pub(crate) artifact_count: usize,
    /// Whether they are kept after the demo (`--keep`).
    pub(crate) kept: bool,
}

/// A drone's process.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct NamedPid {
    /// The drone's name.
    pub(crate) name: String,
    /// Its pid.
    pub(crate) pid: u32,
}

/// The processes the demo ran.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Pids {
    /// `swarm serve`.
    pub(crate) server: u32,
    /// `swarm drone`s, by name.
    pub(crate) drones: Vec<NamedPid>,
    /// Stray builders the final sweep killed.
    pub(crate) swept: Vec<u32>,
    /// The demo's processes still alive after cleanup (empty unless something is wrong).
    pub(crate) left: Vec<u32>,
}

/// A package neither built nor blocked at the end.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Unfinished {
    /// Atom.
    pub(crate) atom: String,
    /// `queued` or `assigned`.
    pub(crate) state: String,
    /// Assigned: the holder.
    pub(crate) drone: Option<String>,
    /// Assigned: whether the build started.
    pub(crate) started: bool,
    /// Queued: unbuilt dependencies it waits for.
    pub(crate) waiting_for: u32,
    /// The last failure's detail.
    pub(crate) last_error: Option<String>,
}

/// The whole summary (`--json` prints it as one object).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Summary {
    /// How the run ended, in words.
    pub(crate) end: String,
    /// Whether every package ended built or blocked.
    pub(crate) complete: bool,
    /// The package set.
    pub(crate) packages: String,
    /// Drones started.
    pub(crate) drones: u32,
    /// Slots per drone.
    pub(crate) slots: u32,
    /// The mark on every process of this run (`SWARM_DEMO_RUN`).
    pub(crate) run_id: String,
    /// The server's package counts at the end.
    pub(crate) counts: swarm_net::client::admin::QueueCounts,
    /// Packages built.
    pub(crate) built: u32,
    /// Blocked packages, with reasons.
    pub(crate) blocked: Vec<Blocked>,
    /// Every failed attempt.
    pub(crate) failed_attempts: Vec<Failure>,
    /// Makespan against the lower bound.
    pub(crate) timing: Timing,
    /// The drone the demo killed.
    pub(crate) killed: Option<KilledDrone>,
    /// Reclaimed leases, with reasons.
    pub(crate) reclaims: Vec<Reclaim>,
    /// Drones at the end.
    pub(crate) nodes: Vec<DroneSummary>,
    /// Packages neither built nor blocked (empty when complete).
    pub(crate) unfinished: Vec<Unfinished>,
    /// Where things are.
    pub(crate) files: Files,
    /// Processes run and cleaned up.
    pub(crate) pids: Pids,
    /// Wall time of the whole demo, ms.
    pub(crate) wall_ms: u64,
}

/// What the demo itself contributes.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    /// The set queued.
    pub(crate) world: &'a World,
    /// Drones started.
    pub(crate) drones: u32,
    /// Slots per drone.
    pub(crate) slots: u32,
    /// Build seconds per demo second.
    pub(crate) speed: f64,
    /// The kill, if any.
    pub(crate) killed: Option<KilledDrone>,
    /// How the run ended.
    pub(crate) end: String,
    /// The demo's directory and the server's data dir under it.
    pub(crate) data_dir: &'a Path,
    /// The server's data dir.
    pub(crate) server_dir: &'a Path,
    /// `--keep`.
    pub(crate) keep: bool,
    /// The run's mark.
    pub(crate) run_id: &'a str,
    /// Pids by drone name, and the server's.
    pub(crate) pids: Pids,
}

/// Reads everything from the server and assembles the summary.
pub(crate) fn collect(client: &Client, cx: Context<'_>) -> anyhow::Result<Summary> {
    let status: Status = client.status()?.body;
    let nodes: Vec<Node> = client.nodes()?.body.nodes;
    let blocked_page = client.queue(Some(QueueState::Blocked), 0, 1000)?.body;
    let mut unfinished = Vec::new();
    for state in [QueueState::Assigned, QueueState::Queued] {
        for p in client.queue(Some(state), 0, 1000)?.body.items {
            unfinished.push(Unfinished {
                atom: p.atom,
                state: state.as_str().to_string(),
                drone: p.status.drone,
                started: p.status.started,
                waiting_for: p.waiting_for,
                last_error: p.last_error,
            });
        }
    }
    let events = all_events(client)?;

    let intended = |atom: &str| {
        let a = swarm_core::Atom::parse(atom).ok()?;
        if cx.world.fail.contains(&a) {
            Some("fail")
        } else if cx.world.oom.contains(&a) {
            Some("oom")
        } else {
            None
        }
    };
    let blocked = blocked_page
        .items
        .iter()
        .map(|p| Blocked {
            atom: p.atom.clone(),
            reason: block_reason(p.status.reason.as_ref()),
            attempts: p.attempts,
            last_error: p.last_error.clone(),
            intended: intended(&p.atom),
        })
        .collect();

    let text = |e: &EventRecord, key: &str| {
        e.body
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let failed_attempts = events
        .iter()
        .filter(|e| e.kind == "build_failed")
        .map(|e| Failure {
            atom: text(e, "package"),
            drone: text(e, "drone"),
            class: text(e, "class"),
            attempt: e.body.get("attempt").and_then(|v| v.as_u64()).unwrap_or(0),
            detail: text(e, "detail"),
        })
        .collect();
    let reclaims = events
        .iter()
        .filter(|e| e.kind == "reclaimed")
        .map(|e| {
            let atom = text(e, "package");
            Reclaim {
                rebuilt_by: events
                    .iter()
                    .find(|b| b.id > e.id && b.kind == "built" && text(b, "package") == atom)
                    .map(|b| text(b, "drone")),
                drone: text(e, "drone"),
                reason: text(e, "reason"),
                started: e.body.get("started").and_then(|v| v.as_bool()) == Some(true),
                atom,
            }
        })
        .collect();

    let queued_at = events
        .iter()
        .find(|e| e.kind == "queued")
        .map_or(0, |e| e.at_ms);
    let ended_at = events
        .iter()
        .filter(|e| e.kind == "built" || e.kind == "blocked")
        .map(|e| e.at_ms)
        .max()
        .unwrap_or(queued_at);
    let makespan_ms = u64::try_from(ended_at.saturating_sub(queued_at)).unwrap_or(0);
    // The server decides a drone's slots from its cores; the demo asks for
    // at most `slots`. The bound counts every drone's slots for the whole run,
    // the killed one's too, so it stays a bound.
    let total_slots: u32 = nodes
        .iter()
        .map(|n| {
            if n.slots == 0 {
                cx.slots
            } else {
                n.slots.min(cx.slots)
            }
        })
        .sum();
    let lower_bound = cx.world.lower_bound(cx.speed, total_slots.max(1));
    let ratio = if lower_bound.bound_ms == 0 {
        0.0
    } else {
        makespan_ms as f64 / lower_bound.bound_ms as f64
    };

    let pid_of = |name: &str| {
        cx.pids
            .drones
            .iter()
            .find(|d| d.name == name)
            .map_or(0, |d| d.pid)
    };
    let node_summaries = nodes
        .iter()
        .map(|n| DroneSummary {
            name: n.name.clone(),
            status: n.status.clone(),
            builds_ok: n.builds_ok,
            builds_failed: n.builds_failed,
            pid: pid_of(&n.name),
            no_work: n.no_work.clone(),
        })
        .collect();
    let c = status.counts;
    let artifacts = cx.server_dir.join("staging");
    Ok(Summary {
        end: cx.end,
        complete: c.total > 0 && c.queued == 0 && c.assigned == 0,
        packages: cx.world.name.clone(),
        drones: cx.drones,
        slots: cx.slots,
        run_id: cx.run_id.to_string(),
        counts: c,
        built: c.built,
        blocked,
        failed_attempts,
        timing: Timing {
            makespan_ms,
            lower_bound,
            ratio,
            speed: cx.speed,
        },
        killed: cx.killed,
        reclaims,
        nodes: node_summaries,
        unfinished,
        files: Files {
            data_dir: cx.data_dir.to_path_buf(),
            database: cx.server_dir.join("swarm.db"),
            artifact_count: count_packages(&artifacts),
            artifacts,
            kept: cx.keep,
        },
        pids: cx.pids,
        wall_ms: 0,
    })
}

/// The whole event feed, oldest first.
fn all_events(client: &Client) -> anyhow::Result<Vec<EventRecord>> {
    let mut out: Vec<EventRecord> = Vec::new();
    let mut after = 0;
    loop {
        let page = client.events_after(after, Some(1000))?.body;
        if page.events.is_empty() {
            return Ok(out);
        }
        after = page
            .events
            .last()
            .map_or(after, |e| e.id)
            .max(page.next.unwrap_or(0));
        out.extend(page.events);
    }
}

/// Binary packages (`.gpkg.tar`, `.tbz2`) under a directory.
fn count_packages(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // Dot names are bookkeeping (`.leases/`, upload temp files), not packages.
            if name.starts_with('.') {
                0
            } else if path.is_dir() {
                count_packages(&path)
            } else {
                usize::from(name.ends_with(".gpkg.tar") || name.ends_with(".tbz2"))
            }
        })
        .sum()
}

/// Seconds with one decimal.
fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The summary for humans.
pub(crate) fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out += &l;
        out.push('\n');
    };
    let t = &s.timing;
    line(format!(
        "swarm demo: {} packages ({}) on {} drones × {} slots, 1 h of build = {}",
        s.counts.total,
        s.packages,
        s.drones,
        s.slots,
        secs(demo_ms(3600, t.speed))
    ));
    line(String::new());
    line(format!("ended       {}", s.end));
    line(format!(
        "built       {} of {} packages; {} binary packages in staging (virtual packages have none)",
        s.built, s.counts.total, s.files.artifact_count
    ));
    let intended = s.blocked.iter().filter(|b| b.intended.is_some()).count();
    line(format!(
        "blocked     {}{}",
        s.blocked.len(),
        if intended == s.blocked.len() && !s.blocked.is_empty() {
            " (all of them meant to break: the stand-in fails or OOMs them)".to_string()
        } else if s.blocked.is_empty() {
            String::new()
        } else {
            format!(" ({} not meant to break)", s.blocked.len() - intended)
        }
    ));
    for b in &s.blocked {
        let why = match b.intended {
            Some("oom") => "  [stand-in OOM]",
            Some(_) => "  [stand-in failure]",
            None => "  [UNEXPECTED]",
        };
        line(format!("  {:<40} {}{why}", b.atom, b.reason));
    }
    if !s.unfinished.is_empty() {
        line(format!(
            "unfinished  {} packages neither built nor blocked:",
            s.unfinished.len()
        ));
        for u in s.unfinished.iter().take(20) {
            let how = match (&u.drone, u.started) {
                (Some(d), true) => format!("building on {d}"),
                (Some(d), false) => format!("leased to {d}, not started"),
                (None, _) if u.waiting_for > 0 => {
                    format!("queued, waiting for {} dependencies", u.waiting_for)
                }
                (None, _) => "queued".to_string(),
            };
            line(format!("  {:<40} {how}", u.atom));
        }
    }
    let mut classes: Vec<(String, usize)> = Vec::new();
    for f in &s.failed_attempts {
        match classes.iter_mut().find(|(c, _)| *c == f.class) {
            Some((_, n)) => *n += 1,
            None => classes.push((f.class.clone(), 1)),
        }
    }
    line(format!(
        "failed      {} attempts{}",
        s.failed_attempts.len(),
        if classes.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                classes
                    .iter()
                    .map(|(c, n)| format!("{n} {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    for f in &s.failed_attempts {
        line(format!(
            "  {:<40} on {}, attempt {}: {}",
            f.atom,
            f.drone,
            f.attempt,
            f.detail.lines().next().unwrap_or("").trim()
        ));
    }
    let lb = &t.lower_bound;
    line(format!(
        "makespan    {} against a lower bound of {} ({:.2}×)",
        secs(t.makespan_ms),
        secs(lb.bound_ms),
        t.ratio
    ));
    line(format!(
        "            bound = max(critical path {}, work {} / {} slots); from the size hints queued",
        secs(lb.critical_path_ms),
        secs(lb.work_ms),
        lb.slots
    ));
    match &s.killed {
        Some(k) => {
            line(format!(
                "killed      {} (pid {}) with SIGKILL at {}/{} built, holding {}",
                k.drone,
                k.pid,
                k.built_then,
                s.counts.total,
                if k.held.is_empty() {
                    "nothing".to_string()
                } else {
                    k.held
                        .iter()
                        .map(|a| short(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        None => line("killed      no drone (--no-kill)".to_string()),
    }
    line(format!("reclaims    {}", s.reclaims.len()));
    for r in &s.reclaims {
        line(format!(
            "  {:<40} from {}: {}{}, {}",
            r.atom,
            r.drone,
            r.reason,
            if r.started {
                " (was building)"
            } else {
                " (not started)"
            },
            match &r.rebuilt_by {
                Some(d) => format!("built again on {d}"),
                None if s.blocked.iter().any(|b| b.atom == r.atom) => {
                    "blocked since".to_string()
                }
                None => "not built since".to_string(),
            }
        ));
    }
    line("drones".to_string());
    for n in &s.nodes {
        line(format!(
            "  {:<14} {:<8} {:>3} built, {} failed   (pid {})",
            n.name, n.status, n.builds_ok, n.builds_failed, n.pid
        ));
        if let Some(why) = &n.no_work {
            line(format!("    no work: {why}"));
        }
    }
    line(format!("database    {}", s.files.database.display()));
    line(format!("artifacts   {}", s.files.artifacts.display()));
    line(format!(
        "logs        {} (server.log, drones/*/drone.log)",
        s.files.data_dir.display()
    ));
    if s.files.kept {
        line("            kept: remove the directory when done".to_string());
    } else {
        line("            removed at exit; pass --keep to keep them".to_string());
    }
    line(format!(
        "processes   server pid {}, {} drones, {} stray builders swept; {} left running",
        s.pids.server,
        s.pids.drones.len(),
        s.pids.swept.len(),
        s.pids.left.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_is_counted_by_binary_package_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = dir.path().join("dev-libs");
        std::fs::create_dir_all(&cat).expect("mkdir");
        for name in [
            "foo-1.gpkg.tar",
            "bar-2.tbz2",
            ".baz-3.gpkg.tar.partial",
            "notes.txt",
        ] {
            std::fs::write(cat.join(name), b"x").expect("write");
        }
        // The server's lease bookkeeping mirrors package names under `.leases/`.
        let leases = dir.path().join(".leases/dev-libs");
        std::fs::create_dir_all(&leases).expect("mkdir");
        std::fs::write(leases.join("foo-1.gpkg.tar"), b"1").expect("write");
        assert_eq!(count_packages(dir.path()), 2);
        assert_eq!(count_packages(&dir.path().join("missing")), 0);
    }
}
