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
//! [`server_env`]); everything else is the product's defaults.
//!
//! - [`world`]: the bundled package sets and the makespan lower bound;
//! - [`procs`]: starting, killing and always cleaning up the children;
//! - [`progress`]: the live display;
//! - [`summary`]: the final report, for humans or as JSON.

mod emerge;
mod procs;
mod progress;
mod summary;
mod world;

use anyhow::{bail, Context};
use procs::Supervisor;
use progress::{Progress, Tick};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use summary::{KilledDrone, Pids};
use swarm_net::client::admin::{EnqueueRequest, Node, Status};
use swarm_net::client::{Client, ClientError};
use world::{Sample, World};

/// How often the demo asks the server how things stand.
const TICK: Duration = Duration::from_millis(250);
/// Seconds between a drone's heartbeats in the demo (the product's default is 15).
const HEARTBEAT_S: u64 = 1;
/// After halfway, how long the demo waits for a drone that holds work before
/// it kills one anyway.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// Work a drone must still have ahead of it to be killed: enough that its
/// lease cannot be reported done between the demo's look and the kill.
const MIN_STAKE: Duration = Duration::from_millis(750);

/// `swarm demo`: a real local swarm in one command.
///
/// Starts a real `swarm serve` and N real `swarm drone`s on this machine,
/// with a STAND-IN builder that only sleeps and writes small gpkg-shaped
/// files (nothing is compiled), queues a sample of a Gentoo world, kills one
/// drone halfway to show its work being reclaimed, and prints a summary whose
/// every number comes from the server.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Drones to start.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    drones: u32,
    /// Build slots per drone.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    slots: u32,
    /// The package set to queue: a ≈150-package Gentoo world, or 12 packages for CI.
    #[arg(long, value_enum, default_value_t = Sample::WorldSample)]
    packages: Sample,
    /// Build seconds per demo second: at 720 a one-hour build sleeps 5 s.
    #[arg(long, default_value_t = 720.0)]
    speed: f64,
    /// Keep the data dir (database, artifacts, logs) instead of removing it at exit.
    #[arg(long)]
    keep: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Do not kill a drone halfway.
    #[arg(long)]
    no_kill: bool,
    /// What builds: the bundled STAND-IN (sleeps and writes small valid
    /// gpkgs), or the real `emerge` of Portage on a small real ebuild
    /// repository, ending with a release installed by a client machine.
    #[arg(long, value_enum, default_value_t = Builder::Standin)]
    builder: Builder,
    /// The venv holding the real Portage for `--builder emerge` [default:
    /// $SWARM_PORTAGE_VENV]. Make one with
    /// `python3 -m venv DIR && DIR/bin/pip install portage`.
    #[arg(long, value_name = "DIR")]
    portage_venv: Option<PathBuf>,
    /// Give up (and clean up) after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

/// What the demo's drones build with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Builder {
    /// The bundled stand-in: no compiler, no Portage, valid gpkgs.
    Standin,
    /// The real emerge (needs the `portage` Python package).
    Emerge,
}

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

/// What every demo drone's command line shares.
struct DroneLaunch<'a> {
    url: &'a str,
    run_id: &'a str,
    config: &'a Path,
}

impl DroneLaunch<'_> {
    /// `swarm drone …` for `name` with `builder` and `slots`.
    fn args(
        &self,
        name: &str,
        builder: &str,
        slots: u32,
        work: &Path,
        pkgdir: &Path,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "drone".into(),
            "--server".into(),
            self.url.to_owned(),
            "--name".into(),
            name.to_owned(),
            "--machine-id".into(),
            format!("{}-{name}", self.run_id),
            "--builder".into(),
            builder.to_owned(),
            "--slots".into(),
            slots.to_string(),
            "--heartbeat-s".into(),
            HEARTBEAT_S.to_string(),
            "--poll-s".into(),
            "1".into(),
            "--on-stop".into(),
            "return".into(),
            "--kill-grace-s".into(),
            "1".into(),
            // The demo's builds write little; the real default (5 GiB free)
            // would stop the demo on a nearly full machine for no reason.
            "--min-free-disk".into(),
            "256MiB".into(),
            "--work-dir".into(),
            path_arg(work),
            "--pkgdir".into(),
            path_arg(pkgdir),
            "--portage-timestamp-file".into(),
            path_arg(&work.join("no-portage-timestamp")),
            "--config".into(),
            path_arg(self.config),
        ];
        if builder == "standin" {
            // Stand-in builds have no Portage environment to report.
            args.extend(["--env-command".into(), String::new()]);
        }
        args
    }
}

/// The demo's running server.
struct Started {
    url: String,
    /// An admin client of it.
    client: Client,
    /// The (empty) config file the server and the drones read.
    config: PathBuf,
    /// Its data dir.
    server_dir: PathBuf,
}

/// Starts the demo's `swarm serve` (loopback, a random port, the demo's
/// policy, data in `dir/server`).
fn start_server(
    sup: &mut Supervisor,
    dir: &Path,
    progress: &mut Progress,
) -> anyhow::Result<Started> {
    // An empty config file, so /etc/swarm/swarm.toml on this host cannot
    // change the demo; the settings come from the environment.
    let config = dir.join("swarm.toml");
    std::fs::write(
        &config,
        "# swarm demo: settings come from the environment\n",
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let server_dir = dir.join("server");
    let url = sup.start_server(
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            path_arg(&server_dir),
            "--config".into(),
            path_arg(&config),
        ],
        &server_env(),
        &dir.join("server.log"),
    )?;
    progress.note(&format!(
        "server listening on {url} (pid {}), data in {}",
        sup.server().map_or(0, |p| p.pid),
        server_dir.display()
    ));
    let token_file = server_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the admin token {}", token_file.display()))?;
    // Creating a release inspects every staged file: give the server time.
    let client = Client::new(url.clone(), Duration::from_secs(60))
        .with_admin_token(Some(token.trim().to_string()));
    Ok(Started {
        url,
        client,
        config,
        server_dir,
    })
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

/// The server's settings for the demo: every timeout shortened so a drone's
/// death is noticed in seconds, retries quick, the prober off (drones here
/// have no SSH to probe), and one slot per core so the demo's `--slots`
/// decides.
pub(crate) fn server_env() -> Vec<(String, String)> {
    let log = std::env::var("SWARM_LOG").unwrap_or_else(|_| "info".into());
    [
        ("SWARM_POLICY_HEARTBEAT_GRACE_MS", "3000"),
        ("SWARM_POLICY_OFFLINE_TIMEOUT_MS", "5000"),
        ("SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS", "5000"),
        ("SWARM_POLICY_FAILOVER_GRACE_MS", "1000"),
        ("SWARM_POLICY_CORES_PER_SLOT", "1"),
        ("SWARM_POLICY_RETRY_BASE_MS", "1000"),
        ("SWARM_POLICY_RETRY_CAP_MS", "4000"),
        ("SWARM_POLICY_FAILURE_MEMORY_MS", "5000"),
        ("SWARM_POLICY_REPLAN_INTERVAL_MS", "1000"),
        ("SWARM_PROBE_ENABLED", "false"),
        ("SWARM_LOG", log.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The stand-in's settings: sleep `size_s / speed` seconds, break the
/// packages the sample names.
fn standin_env(world: &World, sizes: &Path, speed: f64) -> Vec<(String, String)> {
    let list = |atoms: &[swarm_core::Atom]| {
        atoms
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        (
            "SWARM_STANDIN_SCALE_MS".into(),
            format!("{:.6}", 1000.0 / speed),
        ),
        ("SWARM_STANDIN_SIZES".into(), sizes.display().to_string()),
        ("SWARM_STANDIN_FAIL".into(), list(&world.fail)),
        ("SWARM_STANDIN_OOM".into(), list(&world.oom)),
        (
            "SWARM_LOG".into(),
            std::env::var("SWARM_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ]
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
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

/// Reads the server with a little patience (a loaded machine may answer one
/// request late) and watches the stop flag and the deadline.
struct Poller<'a> {
    client: &'a Client,
    stop: &'a AtomicBool,
    deadline: Instant,
    after: i64,
}

impl<'a> Poller<'a> {
    fn new(client: &'a Client, stop: &'a AtomicBool, deadline: Instant) -> Poller<'a> {
        Poller {
            client,
            stop,
            deadline,
            after: 0,
        }
    }

    fn retry<T>(&self, mut call: impl FnMut() -> Result<T, ClientError>) -> anyhow::Result<T> {
        let mut tries = 0;
        loop {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transport() && tries < 20 => {
                    tries += 1;
                    self.check()?;
                    std::thread::sleep(TICK);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn status(&self) -> anyhow::Result<Status> {
        self.retry(|| self.client.status().map(|a| a.body))
    }

    fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        self.retry(|| self.client.nodes().map(|a| a.body.nodes))
    }

    /// Events since the last call.
    fn events(&mut self) -> anyhow::Result<Vec<swarm_net::client::admin::EventRecord>> {
        let after = self.after;
        let page = self.retry(|| self.client.events_after(after, Some(1000)).map(|a| a.body))?;
        if let Some(last) = page.events.last() {
            self.after = last.id;
        }
        Ok(page.events)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if Instant::now() > self.deadline {
            bail!("gave up: the run did not finish within --timeout-s");
        }
        Ok(())
    }

    /// Sleeps one tick; true when a signal came meanwhile.
    fn sleep(&self, stop: &AtomicBool) -> bool {
        let end = Instant::now() + TICK;
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Sleeps one tick, failing on a signal or the deadline.
    fn pause(&self, waiting_for: Option<&str>) -> anyhow::Result<()> {
        let end = Instant::now() + TICK;
        while Instant::now() < end {
            if let Err(e) = self.check() {
                return Err(match waiting_for {
                    Some(w) => e.context(w.to_string()),
                    None => e,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
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
    fn the_demo_policy_is_valid_and_reclaims_within_seconds() {
        let loaded = swarm_net::settings::Settings::load(&swarm_net::settings::LoadRequest {
            config: swarm_net::settings::ConfigFile::None,
            env: server_env().into_iter().collect(),
            listen: None,
            data_dir: Some(PathBuf::from("/nonexistent")),
            running_as_root: false,
        });
        let s = match loaded {
            Ok(l) => l.settings,
            Err(e) => panic!("{e}"),
        };
        assert!(!s.probe.enabled);
        assert!(s.policy.offline_timeout_ms <= 10_000);
        assert!(s.policy.heartbeat_grace_ms >= 2 * HEARTBEAT_S * 1000);
        assert_eq!(s.policy.cores_per_slot, 1);
    }

    #[test]
    fn the_demo_dir_is_named_after_the_run() {
        assert!(demo_dir("1-2").ends_with("swarm-demo-1-2"));
    }
}
