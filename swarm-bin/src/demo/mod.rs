//! `swarm demo`: a real swarm on one machine, in one command.
//!
//! It starts a real `swarm serve` (temporary data dir, loopback, a random
//! port) and N real `swarm drone`s running the bundled STAND-IN builder,
//! queues a sample of a Gentoo world through the HTTP API, shows the run live,
//! SIGKILLs one drone halfway so the reclaim can be seen, and ends with a
//! summary read from the server. Nothing is simulated inside the demo: the
//! scheduling, the leases, the reclaim and every number printed are the
//! server's. Only the time is compressed (`--speed`) and the builds are fake.
//!
//! The timeouts are shortened so the interesting parts happen within seconds
//! (the server's policy comes from `SWARM_POLICY_*` variables, see
//! [`launch::server_env`]); everything else is the product's defaults.
//!
//! - [`world`]: the bundled package sets and the makespan lower bound;
//! - [`procs`]: starting, killing and always cleaning up the children;
//! - [`progress`]: the live display;
//! - [`summary`]: the final report, for humans or as JSON.

mod args;
mod emerge;
mod launch;
mod poller;
mod procs;
mod progress;
mod summary;
mod world;

use anyhow::{bail, Context};
use args::Builder;
pub(crate) use args::DemoArgs;
use launch::{standin_env, start_server, DroneLaunch, Started};
use poller::Poller;
use procs::Supervisor;
use progress::{Progress, Tick};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use summary::{KilledDrone, Pids};
use swarm_net::client::admin::{EnqueueRequest, Node, Status};
use world::World;

/// After halfway, how long the demo waits for a drone that holds work before
/// it kills one anyway.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// Work a drone must still have ahead of it to be killed: enough that its
/// lease cannot be reported done between the demo's look and the kill.
const MIN_STAKE: Duration = Duration::from_millis(750);

/// Runs the demo. Children are cleaned up on every way out: success, error,
/// Ctrl-C/SIGTERM (flag checked every tick) and panic (the supervisor's drop).
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let started = Instant::now();
    let venv = match args.builder {
        Builder::Emerge => Some(emerge::find_venv(args.portage_venv.as_deref())?),
        Builder::Standin => None,
    };
    let world = World::bundled(args.packages)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    let run_id = format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let dir = demo_dir(&run_id);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the swarm executable")?;
    let mut sup = Supervisor::new(exe, run_id);
    let tty = std::io::stderr().is_terminal();
    let mut progress = Progress::new(tty, args.slots);
    if let Some(venv) = venv {
        return run_emerge(&args, &venv, &dir, &mut sup, &stop, &mut progress);
    }

    let outcome = drive(&args, &world, &dir, &mut sup, &stop, &mut progress);
    progress.finish();
    let cleanup = sup.shutdown();
    let pids = Pids {
        server: sup.server().map_or(0, |p| p.pid),
        drones: sup
            .drones()
            .iter()
            .map(|p| summary::NamedPid {
                name: p.name.clone(),
                pid: p.pid,
            })
            .collect(),
        swept: cleanup.swept.clone(),
        left: cleanup.left.clone(),
    };
    let (mut summary, end) = match outcome {
        Ok(done) => done,
        Err(e) => {
            // The logs explain the failure: keep them.
            return Err(e.context(format!(
                "swarm demo failed; its children are stopped ({} left running); \
                 logs and database kept in {}",
                cleanup.left.len(),
                dir.display()
            )));
        }
    };
    summary.pids = pids;
    summary.wall_ms = started.elapsed().as_millis() as u64;
    // A run that stalled keeps its files: the logs say why. Ctrl-C does not.
    summary.files.kept = args.keep || !(summary.complete || end == End::Interrupted);
    if !summary.files.kept {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let text = summary::render(&summary);
    print(args.json, &text, &summary)?;
    if !summary.pids.left.is_empty() {
        bail!(
            "processes of the demo still running: {:?}",
            summary.pids.left
        );
    }
    if end == End::Interrupted {
        bail!("interrupted");
    }
    if !summary.complete {
        bail!(
            "the run did not complete ({}); logs and database kept in {}",
            summary.end,
            dir.display()
        );
    }
    Ok(())
}

/// `--builder emerge` after its directory and supervisor exist: drive,
/// clean up on every way out, report.
fn run_emerge(
    args: &DemoArgs,
    venv: &Path,
    dir: &Path,
    sup: &mut Supervisor,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let outcome = emerge::drive(args, venv, dir, sup, stop, progress);
    progress.finish();
    let cleanup = sup.shutdown();
    let summary = outcome.map_err(|e| {
        e.context(format!(
            "swarm demo --builder emerge failed; its children are stopped ({} left running); \
             the machines, logs and database are kept in {}",
            cleanup.left.len(),
            dir.display()
        ))
    })?;
    if !cleanup.left.is_empty() {
        bail!("processes of the demo still running: {:?}", cleanup.left);
    }
    let mut text = emerge::render(&summary);
    if args.keep {
        text.push_str(&format!("Kept: {}\n", dir.display()));
    } else {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        text.push_str("Removed the demo's machines and data (--keep keeps them).\n");
    }
    print(args.json, &text, &summary)?;
    Ok(())
}

/// The closing text on stderr and, with `--json`, the summary as one JSON
/// object on stdout; else the text on stdout.
fn print(json: bool, text: &str, summary: &impl serde::Serialize) -> anyhow::Result<()> {
    if json {
        eprintln!("\n{text}");
        println!("{}", serde_json::to_string(summary)?);
    } else {
        eprintln!();
        crate::cli::fmt::emit(text)?;
    }
    Ok(())
}

/// Everything between starting the server and the summary.
fn drive(
    args: &DemoArgs,
    world: &World,
    dir: &Path,
    sup: &mut Supervisor,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> anyhow::Result<(summary::Summary, End)> {
    let sizes = dir.join("sizes.txt");
    std::fs::write(&sizes, world.sizes_file())
        .with_context(|| format!("writing {}", sizes.display()))?;
    progress.note(&format!(
        "swarm demo: {} ({} packages) on {} drones × {} slots; STAND-IN builds, 1 h of build = {:.1} s",
        world.name,
        world.packages.len(),
        args.drones,
        args.slots,
        3600.0 / args.speed
    ));
    let Started {
        url,
        client,
        config,
        server_dir,
    } = start_server(sup, dir, progress)?;

    let env = standin_env(world, &sizes, args.speed);
    let names: Vec<String> = (1..=args.drones)
        .map(|i| format!("demo-drone-{i}"))
        .collect();
    for name in &names {
        let work = dir.join("drones").join(name);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let launch = DroneLaunch {
            url: &url,
            run_id: sup.run_id(),
            config: &config,
        };
        let drone_args = launch.args(name, "standin", args.slots, &work, &work.join("pkgdir"));
        let pid = sup.start_drone(name, &drone_args, &env, &work.join("drone.log"))?;
        progress.note(&format!("started {name} (pid {pid})"));
    }

    let deadline = started_deadline(args);
    let mut poll = Poller::new(&client, stop, deadline);
    // Wait for every drone to register and beat.
    loop {
        sup.check_alive(None)?;
        let nodes = poll.nodes()?;
        let online = nodes.iter().filter(|n| n.status == "online").count();
        if online >= names.len() {
            break;
        }
        poll.pause(Some("waiting for the drones to register"))?;
    }

    progress.note(&format!(
        "queueing {} packages with their dependencies and size hints (POST /api/v1/queue)",
        world.packages.len()
    ));
    client
        .enqueue(&EnqueueRequest {
            packages: world.specs(),
            ..EnqueueRequest::default()
        })
        .context("queueing the sample")?;

    let expected = world.expected_built() as u32;
    // Killing the only drone would leave nobody to take its work back.
    let may_kill = !args.no_kill && args.drones > 1;
    if !args.no_kill && !may_kill {
        progress.note("one drone only: it will not be killed halfway");
    }
    let stall_after = stall_timeout(world, args.speed);
    let mut killed: Option<KilledDrone> = None;
    let mut halfway_at: Option<Instant> = None;
    let mut settled_since: Option<Instant> = None;
    let mut last_change = (Instant::now(), None);
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break End::Interrupted;
        }
        if Instant::now() > deadline {
            break End::TimedOut(args.timeout_s);
        }
        sup.check_alive(killed.as_ref().map(|k| k.drone.as_str()))?;
        let status = poll.status()?;
        let nodes = poll.nodes()?;
        for e in poll.events()? {
            if let Some(line) = progress::describe(&e) {
                progress.note(&line);
            }
        }
        progress.update(&Tick {
            status: &status,
            nodes: &nodes,
            killed: killed.as_ref().map(|k| k.drone.as_str()),
        });
        let c = status.counts;
        if may_kill && killed.is_none() && c.built * 2 >= expected {
            let since = *halfway_at.get_or_insert_with(Instant::now);
            let anyway = since.elapsed() > KILL_PATIENCE;
            if let Some(victim) = pick_victim(&nodes, world, args.speed, status.now_ms, anyway) {
                let k = kill(sup, victim, &status)?;
                progress.note(&format!(
                    "halfway ({}/{} built): killed {} (pid {}) with SIGKILL, builder processes \
                     and all ({}), as if it lost power; it held {}. Its work comes back once it \
                     has missed heartbeats for the offline timeout (5 s here)",
                    c.built,
                    c.total,
                    k.drone,
                    k.pid,
                    k.builds_killed.len(),
                    list_or_nothing(&k.held)
                ));
                killed = Some(k);
            }
        }
        if c.total > 0 && c.assigned == 0 && c.queued == 0 {
            break End::Finished;
        }
        // Work left only behind a blocked dependency never moves again.
        if c.total > 0 && c.assigned == 0 && c.ready == 0 && c.backoff == 0 {
            let since = *settled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                break End::Settled;
            }
        } else {
            settled_since = None;
        }
        // Nothing happening at all (no count moves, no event) for long: a
        // lease nobody works on. Say so rather than wait for the timeout.
        let signature = Some((c, poll.after));
        if signature != last_change.1 {
            last_change = (Instant::now(), signature);
        } else if last_change.0.elapsed() > stall_after {
            break End::Stalled(stall_after);
        }
        if poll.sleep(stop) {
            break End::Interrupted;
        }
    };
    progress.note(&end.to_string());

    let summary = summary::collect(
        &client,
        summary::Context {
            world,
            drones: args.drones,
            slots: args.slots,
            speed: args.speed,
            killed,
            end: end.to_string(),
            data_dir: dir,
            server_dir: &server_dir,
            keep: args.keep,
            run_id: sup.run_id(),
            pids: Pids {
                server: sup.server().map_or(0, |p| p.pid),
                drones: sup
                    .drones()
                    .iter()
                    .map(|p| summary::NamedPid {
                        name: p.name.clone(),
                        pid: p.pid,
                    })
                    .collect(),
                ..Pids::default()
            },
        },
    )?;
    Ok((summary, end))
}

fn started_deadline(args: &DemoArgs) -> Instant {
    Instant::now() + Duration::from_secs(args.timeout_s.max(1))
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Nothing queued or assigned: every package is built or blocked.
    Finished,
    /// Nothing assigned, and what is queued waits for blocked dependencies.
    Settled,
    /// No count and no event moved for this long.
    Stalled(Duration),
    /// `--timeout-s` passed.
    TimedOut(u64),
    /// SIGINT, SIGTERM or SIGHUP.
    Interrupted,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Finished => f.write_str("done: every package is built or blocked"),
            End::Settled => f.write_str("stopped: the packages left wait for blocked dependencies"),
            End::Stalled(d) => write!(
                f,
                "stopped: nothing moved for {} s (no count changed, no event)",
                d.as_secs()
            ),
            End::TimedOut(s) => write!(f, "stopped: not finished within --timeout-s {s}"),
            End::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Long enough for the longest build and a reclaim, twice over.
fn stall_timeout(world: &World, speed: f64) -> Duration {
    let longest = world
        .packages
        .iter()
        .map(|p| world::demo_ms(p.size_s, speed))
        .max()
        .unwrap_or(0);
    Duration::from_millis(2 * longest + 10_000).max(Duration::from_secs(30))
}

/// SIGKILLs `victim` and records what it held.
fn kill(sup: &mut Supervisor, victim: &Node, status: &Status) -> anyhow::Result<KilledDrone> {
    let held: Vec<String> = victim.leases.iter().map(|l| l.package.clone()).collect();
    let done = sup.kill_drone(&victim.name)?;
    Ok(KilledDrone {
        drone: victim.name.clone(),
        pid: done.pid,
        at_ms: status.now_ms,
        built_then: status.counts.built,
        held,
        builds_killed: done.builds,
    })
}

/// `a-1, b-2` or `nothing`.
fn list_or_nothing(atoms: &[String]) -> String {
    if atoms.is_empty() {
        "nothing".to_string()
    } else {
        atoms
            .iter()
            .map(|a| progress::short(a))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The drone to kill: one whose work will certainly still be held when it
/// dies, so the reclaim is there to see. Each drone's stake is the longest
/// time one of its leases still needs (its size hint at the demo's speed,
/// less the time it has been building, by the server's clock); among the
/// drones with a stake of at least [`MIN_STAKE`], the smallest stake wins, so
/// the kill costs the run as little as it can. `None` while no drone
/// qualifies, unless `anyway` (then the biggest stake, even none).
fn pick_victim<'n>(
    nodes: &'n [Node],
    world: &World,
    speed: f64,
    now_ms: u64,
    anyway: bool,
) -> Option<&'n Node> {
    let stake = |n: &Node| {
        n.leases
            .iter()
            .map(|l| {
                let size = world
                    .size_of(&l.package)
                    .map_or(0, |s| world::demo_ms(s, speed));
                let elapsed = l.started_at.map_or(0, |at| now_ms.saturating_sub(at));
                size.saturating_sub(elapsed)
            })
            .max()
            .unwrap_or(0)
    };
    let alive: Vec<(&Node, u64)> = nodes
        .iter()
        .filter(|n| n.status == "online")
        .map(|n| (n, stake(n)))
        .collect();
    let fit = alive
        .iter()
        .filter(|(_, s)| *s >= MIN_STAKE.as_millis() as u64)
        .min_by_key(|(n, s)| (*s, n.name.clone()));
    match fit {
        Some((n, _)) => Some(n),
        None if anyway => alive
            .iter()
            .max_by_key(|(n, s)| (*s, std::cmp::Reverse(n.name.clone())))
            .map(|(n, _)| *n),
        None => None,
    }
}

/// Where `swarm demo` keeps its files: a fresh directory under the system's
/// temporary directory, named after the run.
pub(crate) fn demo_dir(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("swarm-demo-{run_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::Lease;

    fn world() -> World {
        World::parse(
            r#"
            name = "t"
            [[package]]
            atom = "=a/big-1"
            size_s = 3600
            [[package]]
            atom = "=a/mid-1"
            size_s = 720
            [[package]]
            atom = "=a/small-1"
            size_s = 36
            "#,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn holding(name: &str, leases: &[(&str, Option<u64>)]) -> Node {
        Node {
            name: name.into(),
            status: "online".into(),
            leases: leases
                .iter()
                .map(|(atom, started_at)| Lease {
                    package: (*atom).into(),
                    started_at: *started_at,
                    ..Lease::default()
                })
                .collect(),
            ..Node::default()
        }
    }

    #[test]
    fn the_victim_holds_work_that_outlasts_the_kill_and_costs_the_least() {
        // At speed 720: big 5 s, mid 1 s, small 50 ms; now = 10 s.
        let w = world();
        let nodes = [
            holding("a", &[("=a/big-1", Some(9_000))]),
            holding("b", &[("=a/mid-1", Some(10_000))]),
            holding(
                "c",
                &[("=a/small-1", Some(10_000)), ("=a/big-1", Some(5_500))],
            ),
        ];
        // a: 4 s left; b: 1 s left; c: 0.5 s left (too little).
        let v = pick_victim(&nodes, &w, 720.0, 10_000, false);
        assert_eq!(v.map(|n| n.name.as_str()), Some("b"));
    }

    #[test]
    fn no_victim_while_no_drone_holds_enough_work_unless_patience_ran_out() {
        let w = world();
        let nodes = [
            holding("a", &[]),
            holding("b", &[("=a/small-1", Some(10_000))]),
        ];
        assert!(pick_victim(&nodes, &w, 720.0, 10_000, false).is_none());
        let v = pick_victim(&nodes, &w, 720.0, 10_000, true);
        assert_eq!(v.map(|n| n.name.as_str()), Some("b"));
        let mut offline = holding("c", &[("=a/big-1", None)]);
        offline.status = "offline".into();
        assert!(pick_victim(&[offline], &w, 720.0, 0, false).is_none());
    }

    #[test]
    fn the_demo_dir_is_named_after_the_run() {
        assert!(demo_dir("1-2").ends_with("swarm-demo-1-2"));
    }
}
