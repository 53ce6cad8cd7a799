//! `swarm bench import`: what a big queue import costs over HTTP, and what
//! it does to the drones meanwhile. A real server (in this process, real
//! SQLite store, real HTTP) gets `--packages` packages in posts of `--batch`
//! atoms (each package depending on two earlier ones), while simulated
//! drones heartbeat on their own connections. Reports the import's total
//! and per-post times, one package posted into a queue of `--one-into`
//! packages, and heartbeat latency while the store is quiet and while the
//! import runs. Figures include the load generator: it runs in the same
//! process, though it builds a slice's bodies before the slice, in no
//! window (see `post_bodies`), so while the import runs it only sends them.
//!
//! The two windows alternate: the import goes in `--rounds` slices, each
//! followed by a quiet window, so both sample the same stretch of wall time
//! and the same store (its size, its WAL), and a stall of the machine (a
//! VM's steal, another job) lands in either in proportion to its length.
//! One quiet window before one import made the p99 ratio depend on where
//! such a stall fell (the baseline p99 alone moved 1.3–4.9 ms between
//! runs), and a fresh store's heartbeats are slower (p50 about 1.2 against
//! 0.7 ms once an import has run). After each slice the bench waits until
//! the queue's order has settled (`swarm_replan_pending` is 0: the writer
//! ticks every few milliseconds until then) and `SETTLE` more, so the
//! quiet windows hold no tail of the import. A heartbeat counts as
//! importing when it starts during a slice, and as quiet only when it
//! starts and ends in one quiet window. Heartbeats while the order settles
//! (and `SETTLE` more) are reported on their own (`settling`), in neither
//! window of the ratio.
//!
//! The whole run is made `--repeat` times (4 by default), each on a fresh
//! server and store, and the heartbeats of every run are pooled into one
//! p99 per window; each run's own figures are listed too. One run's p99 is
//! about its tenth slowest beat, and its two quiet halves differ by more
//! than the target's 1.2 in about half the runs with no import between
//! them: one run cannot judge the target, a pool of four can.
//!
//! With `--reader-ms`, a reader reads `/api/v1/status` that often through
//! every window, as the dashboard does while events stream (700 ms after
//! the last one): each read asks the writer for a fresh copy of the state,
//! so this shows what copies cost the drones at the import's size.

use crate::bench_conn::BenchConn;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_net::server::{self, ServerOptions};
use swarm_store::{StoreOptions, Synchronous};

/// Flags of `swarm bench import`.
#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// Packages to import.
    #[arg(long, default_value_t = 200_000)]
    packages: usize,
    /// Atoms per `POST /api/v1/queue`.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Also time single-package posts once the queue holds this many.
    #[arg(long, default_value_t = 100_000)]
    one_into: usize,
    /// Simulated drones heartbeating during the run.
    #[arg(long, default_value_t = 16)]
    drones: usize,
    /// Milliseconds between two heartbeats of one drone (the default gives
    /// about 1,100 samples while importing and 1,600 quiet, so the p99 is
    /// not a handful of beats).
    #[arg(long, default_value_t = 50)]
    beat_ms: u64,
    /// Seconds of heartbeats measured while the store is quiet, in total
    /// over the rounds.
    #[arg(long, default_value_t = 5)]
    baseline_s: u64,
    /// Slices of the import, each followed by a quiet window (at most one
    /// per post). The heartbeat target is judged only with 2 or more: it
    /// compares the quiet windows of even and odd rounds first.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Times the whole run is made, each on a fresh server and store, with
    /// the heartbeats of all of them pooled into one p99 per window (and
    /// each run's own figures listed). One run's p99 is about its tenth
    /// slowest beat, and a stall of the machine slows every drone's beat at
    /// once: the quiet windows of even and of odd rounds of one run differ
    /// by more than the 1.2 the target allows in about half the runs, with
    /// no import between them. Pooled runs bring that noise below it.
    #[arg(long, default_value_t = 4)]
    repeat: usize,
    /// Milliseconds between two reads of `/api/v1/status` by a reader
    /// running through every window (the dashboard refreshes 700 ms after
    /// an event); 0: no reader.
    #[arg(long, default_value_t = 0)]
    reader_ms: u64,
    /// `normal` or `full`: the store's synchronous mode.
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How long no heartbeat counts once the queue's order has settled after a
/// slice: a checkpoint the slice's writes started belongs to neither window.
const SETTLE: Duration = Duration::from_millis(300);

/// How long the queue's order may take to settle after a slice.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// The window a heartbeat falls in: `NEITHER`, or a round times `KINDS`
/// plus `QUIET`, `IMPORTING`, `SINGLES` (the timed single-package posts,
/// counted in no window) or `SETTLING` (after a slice, until its quiet
/// window).
const NEITHER: u64 = 0;
const QUIET: u64 = 1;
const IMPORTING: u64 = 2;
const SINGLES: u64 = 3;
const SETTLING: u64 = 4;
const KINDS: u64 = 8;

struct Shared {
    stop: AtomicBool,
    window: AtomicU64,
    errors: AtomicU64,
    /// Heartbeat latencies (µs) with the window they fell in.
    beats: Mutex<Vec<(u64, u32)>>,
    /// The reader's latencies (µs), of reads answered 200.
    reads: Mutex<Vec<u32>>,
    /// Reads that failed (also counted in `errors`).
    read_errors: AtomicU64,
}

pub(crate) fn run(a: ImportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&a.batch),
        "--batch must be 1 to 10000"
    );
    anyhow::ensure!(
        (1..=5_000_000).contains(&a.packages),
        "--packages must be 1 to 5000000"
    );
    anyhow::ensure!(a.drones <= 1_000, "--drones must be at most 1000");
    anyhow::ensure!(a.beat_ms >= 10, "--beat-ms must be at least 10");
    anyhow::ensure!((1..=100).contains(&a.rounds), "--rounds must be 1 to 100");
    anyhow::ensure!((1..=20).contains(&a.repeat), "--repeat must be 1 to 20");
    anyhow::ensure!(
        a.reader_ms == 0 || (50..=60_000).contains(&a.reader_ms),
        "--reader-ms must be 0 (no reader) or 50 to 60000"
    );
    anyhow::ensure!(
        (1..=3_600).contains(&a.baseline_s),
        "--baseline-s must be 1 to 3600: without quiet windows there is nothing to compare with"
    );
    let synchronous = crate::bench_scratch::synchronous(&a.synchronous)?;
    let mut acc = Pooled::default();
    for run in 0..a.repeat {
        if a.repeat > 1 && !a.json {
            eprintln!("run {} of {}…", run + 1, a.repeat);
        }
        crate::bench_scratch::in_scratch("swarm-import", |dir| {
            run_once(&a, synchronous, dir, &mut acc)
        })?;
    }
    report(&a, &acc)
}

/// What every run measured, pooled. Rounds are numbered on across runs, so
/// the even and odd rounds' quiet windows still split the pool in two.
#[derive(Default)]
struct Pooled {
    /// Heartbeat latencies (µs) with their window (see `KINDS`).
    beats: Vec<(u64, u32)>,
    reads: Vec<u32>,
    read_errors: u64,
    errors: u64,
    posts: Vec<Duration>,
    singles: Vec<Duration>,
    /// Each run's import time, its settling time and its own heartbeat
    /// figures.
    runs: Vec<Value>,
    /// Rounds made by the runs so far.
    rounds: usize,
    posts_per_round: Vec<usize>,
    phases: crate::bench_phases::Phases,
}

fn run_once(
    a: &ImportArgs,
    synchronous: Synchronous,
    dir: &Path,
    acc: &mut Pooled,
) -> anyhow::Result<()> {
    let token = "import-admin-token".to_string();
    let running = server::start(ServerOptions {
        listen: "127.0.0.1:0".parse()?,
        db_path: dir.join("swarm.db"),
        staging: dir.join("staging"),
        store: StoreOptions {
            synchronous,
            ..StoreOptions::default()
        },
        admin_token: token.clone(),
        drone_token: None,
        read_token: None,
        legacy_drones: swarm_net::settings::default_legacy_drones(),
        allowed_hosts: Vec::new(),
        behind_proxy: false,
        drones: server::DroneLimits::for_fleet(a.drones),
        max_body_bytes: 64 << 20,
        max_artifact_bytes: 1 << 20,
        http: server::HttpLimits::default(),
        tls: None,
        clock: Arc::new(crate::serve_cmd::wall_clock),
        on_escalate: None,
        binhost: swarm_net::binhost::BinhostOptions::under(dir),
        signatures: Default::default(),
    })?;
    let addr = running.addr();
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        window: AtomicU64::new(NEITHER),
        errors: AtomicU64::new(0),
        beats: Mutex::new(Vec::new()),
        reads: Mutex::new(Vec::new()),
        read_errors: AtomicU64::new(0),
    });
    let drones: Vec<_> = (0..a.drones)
        .map(|i| {
            let sh = sh.clone();
            let every = Duration::from_millis(a.beat_ms);
            std::thread::spawn(move || drone(i, addr, &sh, every))
        })
        .collect();
    let reader = (a.reader_ms > 0).then(|| {
        let (sh, token) = (sh.clone(), token.clone());
        let every = Duration::from_millis(a.reader_ms);
        std::thread::spawn(move || read_status(addr, &token, &sh, every))
    });
    std::thread::sleep(Duration::from_secs(1));

    let url = format!("http://{addr}/api/v1/queue");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    let post = |body: &str| -> anyhow::Result<Duration> {
        let t = Instant::now();
        agent
            .post(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(body)
            .context("POST /api/v1/queue")?;
        Ok(t.elapsed())
    };
    let metrics_url = format!("http://{addr}/metrics");
    let post_count = a.packages.div_ceil(a.batch);
    let rounds = a.rounds.min(post_count);
    let quiet = Duration::from_secs(a.baseline_s) / rounds as u32;
    let first_round = acc.rounds;
    let mut import = Duration::ZERO;
    let mut settling = Duration::ZERO;
    let (posts, singles, phases) = (&mut acc.posts, &mut acc.singles, &mut acc.phases);
    // Opens a window of `kind` (`None`: none) in round `round`, for the
    // heartbeats and for the server's own histograms.
    let mut open = |round: usize, kind: Option<u64>| {
        let code = kind.map_or(NEITHER, |k| (first_round + round) as u64 * KINDS + k);
        phases.mark(kind, &running.activity_metrics());
        sh.window.store(code, Ordering::SeqCst);
    };
    for round in 0..rounds {
        let slice = round * post_count / rounds..(round + 1) * post_count / rounds;
        let bodies = post_bodies(a, slice.clone());
        open(round, Some(IMPORTING));
        let slice_started = Instant::now();
        let mut paused = Duration::ZERO;
        if first_round == 0 {
            acc.posts_per_round.push(slice.len());
        }
        for (p, body) in slice.zip(&bodies) {
            let (first, end) = (p * a.batch, ((p + 1) * a.batch).min(a.packages));
            posts.push(post(body)?);
            if first < a.one_into && end >= a.one_into {
                // Timed on their own; heartbeats meanwhile count nowhere.
                open(round, Some(SINGLES));
                let t = Instant::now();
                for k in 0..20 {
                    let body = json!({ "packages": [format!("dev-libs/single{k}-1")] });
                    singles.push(post(&body.to_string())?);
                }
                paused += t.elapsed();
                open(round, Some(IMPORTING));
            }
        }
        import += slice_started.elapsed() - paused;
        open(round, Some(SETTLING));
        settling += settle(&agent, &metrics_url)?;
        std::thread::sleep(SETTLE);
        open(round, Some(QUIET));
        std::thread::sleep(quiet);
        open(round, None);
    }
    sh.stop.store(true, Ordering::SeqCst);
    for d in drones.into_iter().chain(reader) {
        let _ = d.join();
    }
    running.shutdown();

    let beats = sh.beats.lock().map(|b| b.clone()).unwrap_or_default();
    let of = |kind: u64| -> Vec<u32> {
        let mine = first_round as u64 * KINDS..;
        beats
            .iter()
            .filter(|(w, _)| mine.contains(w) && w % KINDS == kind)
            .map(|&(_, us)| us)
            .collect()
    };
    let (quiet, importing) = (latency(&of(QUIET)), latency(&of(IMPORTING)));
    acc.runs.push(json!({
        "import_s": import.as_secs_f64(),
        "settle_s": settling.as_secs_f64(),
        "heartbeat_p99_ms": { "quiet": quiet["p99"], "importing": importing["p99"] },
        "heartbeat_samples": { "quiet": quiet["samples"], "importing": importing["samples"] },
        "heartbeat_p99_during_over_before": ratio(&quiet, &importing),
        "settling_heartbeat_p99_ms": latency(&of(SETTLING))["p99"],
    }));
    acc.rounds += rounds;
    acc.beats.extend(beats);
    if let Ok(r) = sh.reads.lock() {
        acc.reads.extend(r.iter().copied());
    }
    acc.read_errors += sh.read_errors.load(Ordering::Relaxed);
    acc.errors += sh.errors.load(Ordering::Relaxed);
    Ok(())
}

/// The pooled figures and the targets, as text or JSON.
fn report(a: &ImportArgs, acc: &Pooled) -> anyhow::Result<()> {
    let beats = &acc.beats;
    let window = |keep: &dyn Fn(u64) -> bool| -> Vec<u32> {
        beats
            .iter()
            .filter(|(w, _)| keep(*w))
            .map(|&(_, us)| us)
            .collect()
    };
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mut post_ms: Vec<f64> = acc.posts.iter().map(ms).collect();
    post_ms.sort_by(f64::total_cmp);
    let mut single_ms: Vec<f64> = acc.singles.iter().map(ms).collect();
    single_ms.sort_by(f64::total_cmp);
    let run_figure =
        |key: &str| -> Vec<f64> { acc.runs.iter().filter_map(|r| r[key].as_f64()).collect() };
    // The slowest run's import: the target is for each import.
    let import_s = run_figure("import_s").into_iter().fold(0.0, f64::max);
    let settle_s = run_figure("settle_s").into_iter().fold(0.0, f64::max);
    let baseline = latency(&window(&|w| w % KINDS == QUIET));
    let during = latency(&window(&|w| w % KINDS == IMPORTING));
    let after = latency(&window(&|w| w % KINDS == SETTLING));

    // What two sets of quiet windows differ by in this run: the noise the
    // ratio below sits in.
    let quiet_halves = [0, 1].map(|half| {
        latency(&window(&|w| w % KINDS == QUIET && (w / KINDS) % 2 == half))["p99"].clone()
    });
    let targets = targets(
        import_s,
        pick(&single_ms, 0.5),
        &baseline,
        &during,
        &quiet_halves,
    );
    let out = json!({
        "packages": a.packages,
        "batch": a.batch,
        "posts": acc.posts.len() / a.repeat,
        "synchronous": a.synchronous,
        "repeat": a.repeat,
        "import_s": import_s,
        "post_ms": { "p50": pick(&post_ms, 0.5), "p99": pick(&post_ms, 0.99), "max": post_ms.last() },
        "one_into": a.one_into,
        "one_ms": { "p50": pick(&single_ms, 0.5), "max": single_ms.last() },
        "drones": a.drones,
        "rounds": acc.rounds / a.repeat,
        "posts_per_round": acc.posts_per_round,
        "settle_s": settle_s,
        "server_ms": {
            "quiet": acc.phases.report(QUIET),
            "importing": acc.phases.report(IMPORTING),
            "settling": acc.phases.report(SETTLING),
        },
        "heartbeat_ms": {
            "baseline": baseline,
            "during_import": during,
            "settling": after,
            "quiet_even_odd_rounds_p99": quiet_halves,
        },
        "reader": {
            "every_ms": a.reader_ms,
            "path": "/api/v1/status",
            "ms": latency(&acc.reads),
            "errors": acc.read_errors,
        },
        "runs": acc.runs,
        "targets": targets,
        "errors": acc.errors,
    });
    if a.json {
        println!("{out}");
    } else {
        print_text(&out);
    }
    Ok(())
}

/// Waits until the server's queue order has settled after a slice
/// (`swarm_replan_pending` is 0), and says how long that took.
fn settle(agent: &ureq::Agent, metrics_url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let text = agent
            .get(metrics_url)
            .call()
            .context("GET /metrics")?
            .into_string()
            .context("read /metrics")?;
        let pending = crate::bench_scratch::metric(&text, "swarm_replan_pending")
            .context("/metrics has no swarm_replan_pending")?;
        if pending == 0.0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < SETTLE_LIMIT,
            "the queue's order did not settle within {} s ({pending} left)",
            SETTLE_LIMIT.as_secs()
        );
        // Each read of /metrics asks the writer for a fresh copy of the
        // state: poll gently, or the copies slow the ticks being waited for.
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The bodies of `posts`, built before their slice opens its window: built
/// as they were sent, 200,000 atoms' JSON took the bench's main thread about
/// 40% of a CPU while the import ran, on the same cores as the server and the
/// drones it measures. An operator's client builds its body on its own side.
/// One slice at a time keeps the memory a slice's (5 million packages would
/// be about half a gigabyte at once).
fn post_bodies(a: &ImportArgs, posts: std::ops::Range<usize>) -> Vec<String> {
    let atom = |i: usize| format!("dev-libs/p{i}-1");
    posts
        .map(|p| {
            let atoms: Vec<Value> = (p * a.batch..((p + 1) * a.batch).min(a.packages))
                .map(|i| {
                    let deps: Vec<String> = if i >= 2 {
                        vec![atom(i / 2), atom(i - 1)]
                    } else {
                        Vec::new()
                    };
                    json!({ "atom": atom(i), "deps": deps })
                })
                .collect();
            json!({ "packages": atoms }).to_string()
        })
        .collect()
}

fn drone(i: usize, addr: std::net::SocketAddr, sh: &Shared, every: Duration) {
    let Ok(mut conn) = BenchConn::connect(addr) else {
        sh.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let id = format!("import-{i}");
    let beat = json!({"id": id, "name": id, "capabilities": {"cores": 8, "ram_gb": 16},
                      "metrics": {"load_1m": 1.0, "mem_percent": 40, "disk_percent": 30}})
    .to_string();
    while !sh.stop.load(Ordering::Relaxed) {
        let window = sh.window.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let r = conn.call("POST", "/api/v1/register", beat.as_bytes());
        let us = micros_since(t0);
        if !matches!(r, Ok((200, _))) {
            sh.errors.fetch_add(1, Ordering::Relaxed);
        }
        // An importing beat counts however long it took (the slowest end
        // after the slice did); a quiet one only if the window outlived it.
        let counts = match window % KINDS {
            IMPORTING | SETTLING => true,
            QUIET => sh.window.load(Ordering::SeqCst) == window,
            _ => false,
        };
        if let (true, Ok(mut b)) = (counts, sh.beats.lock()) {
            b.push((window, us));
        }
        std::thread::sleep(every.saturating_sub(t0.elapsed()));
    }
}

/// Reads `/api/v1/status` every `every` until stop, as an open dashboard
/// does: each read makes the writer publish a fresh copy of the state.
fn read_status(addr: std::net::SocketAddr, token: &str, sh: &Shared, every: Duration) {
    let url = format!("http://{addr}/api/v1/status");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    while !sh.stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let ok = agent
            .get(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .is_ok_and(|r| r.status() == 200 && r.into_string().is_ok());
        let us = micros_since(t0);
        if !ok {
            sh.errors.fetch_add(1, Ordering::Relaxed);
            sh.read_errors.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut r) = sh.reads.lock() {
            r.push(us);
        }
        // In short naps, so the end of the run does not wait for a long one.
        while !sh.stop.load(Ordering::Relaxed) && t0.elapsed() < every {
            std::thread::sleep(
                every
                    .saturating_sub(t0.elapsed())
                    .min(Duration::from_millis(50)),
            );
        }
    }
}

/// Microseconds since `t0`, as the latencies are kept.
fn micros_since(t0: Instant) -> u32 {
    u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Issue 14's targets: all packages in under 10 s, one package into the
/// queue in under 5 ms (p50 of 20 posts), and the heartbeat p99 during the
/// import unchanged: at most 1.2 times the p99 of the quiet windows.
fn targets(
    import_s: f64,
    one_ms: Value,
    baseline: &Value,
    during: &Value,
    quiet_halves: &[Value; 2],
) -> Value {
    let ratio = ratio(baseline, during);
    // How far apart the quiet windows of even and odd rounds are: a stall in
    // some quiet windows (a VM's steal, a disk flush) raises the baseline and
    // would pass the ratio by itself. With one round there are no odd
    // rounds, and the verdict is `inconclusive`.
    let noise = match quiet_halves.each_ref().map(Value::as_f64) {
        [Some(a), Some(b)] if a.min(b) > 0.0 => Some(a.max(b) / a.min(b)),
        _ => None,
    };
    let verdict = match (ratio, noise) {
        (_, Some(n)) if n > QUIET_HALVES_AGREE => "inconclusive",
        (Some(r), Some(_)) if r <= HEARTBEAT_P99_NOISE => "met",
        (Some(_), Some(_)) => "not met",
        _ => "inconclusive",
    };
    json!({
        "import_under_10_s": import_s < 10.0,
        "one_into_under_5_ms": one_ms.as_f64().is_some_and(|ms| ms < 5.0),
        "heartbeat_p99_during_over_before": ratio,
        "heartbeat_p99_quiet_halves_apart": noise,
        "heartbeat_p99_verdict": verdict,
        "heartbeat_p99_unchanged": verdict == "met",
    })
}

/// The p99 of `during` over that of `baseline`, when both have one.
fn ratio(baseline: &Value, during: &Value) -> Option<f64> {
    match (baseline["p99"].as_f64(), during["p99"].as_f64()) {
        (Some(b), Some(d)) if b > 0.0 => Some(d / b),
        _ => None,
    }
}

/// How much higher the heartbeat p99 during the import may be and still
/// count as unchanged. The quiet windows of even and of odd rounds of one
/// run (`quiet_even_odd_rounds_p99`) differ by 1.05–1.5× on a quiet
/// 2-vCPU machine, so this is at the edge of what one run can tell.
const HEARTBEAT_P99_NOISE: f64 = 1.2;

/// How far apart (larger over smaller) the quiet halves' p99 may be for the
/// run to judge the ratio at all: further apart, a stall landed in the quiet
/// windows (one run measured 1.5 against 43.9 ms, and its ratio of 0.15
/// passed), and the verdict is `inconclusive`.
const QUIET_HALVES_AGREE: f64 = 1.5;

fn pick(sorted: &[f64], q: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    json!(sorted[i.min(sorted.len() - 1)])
}

fn latency(us: &[u32]) -> Value {
    let mut ms: Vec<f64> = us.iter().map(|&u| f64::from(u) / 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    json!({ "samples": ms.len(), "p50": pick(&ms, 0.5), "p90": pick(&ms, 0.9), "p99": pick(&ms, 0.99), "max": ms.last() })
}

fn print_text(o: &Value) {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    println!(
        "import: {} packages in {} posts of {} (synchronous={}): {:.2} s (the slowest run); a post p50 {} ms, p99 {} ms, max {} ms",
        o["packages"],
        o["posts"],
        o["batch"],
        o["synchronous"].as_str().unwrap_or("?"),
        o["import_s"].as_f64().unwrap_or(0.0),
        f(&o["post_ms"]["p50"]),
        f(&o["post_ms"]["p99"]),
        f(&o["post_ms"]["max"]),
    );
    println!(
        "the queue's order settled {} s after the slices ({} rounds; the slowest run), untimed above",
        f(&o["settle_s"]),
        o["rounds"],
    );
    println!(
        "one package into a {}-package queue (20 posts): p50 {} ms, max {} ms (HTTP round trip)",
        o["one_into"],
        f(&o["one_ms"]["p50"]),
        f(&o["one_ms"]["max"]),
    );
    for (label, key) in [("quiet", "baseline"), ("importing", "during_import")] {
        let h = &o["heartbeat_ms"][key];
        println!(
            "heartbeats {label} ({} drones, {} rounds, {} samples): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            o["drones"],
            o["rounds"],
            h["samples"],
            f(&h["p50"]),
            f(&h["p90"]),
            f(&h["p99"]),
            f(&h["max"]),
        );
    }
    let h = &o["heartbeat_ms"]["settling"];
    println!(
        "heartbeats while the order settled after each slice, and {} ms more ({} samples, in neither window): p50 {} ms, p99 {} ms, max {} ms",
        SETTLE.as_millis(),
        h["samples"],
        f(&h["p50"]),
        f(&h["p99"]),
        f(&h["max"]),
    );
    let r = &o["reader"];
    if r["every_ms"].as_u64().unwrap_or(0) > 0 {
        println!(
            "a reader of {} every {} ms ({} reads answered, {} failed): p50 {} ms, p99 {} ms, max {} ms",
            r["path"].as_str().unwrap_or("?"),
            r["every_ms"],
            r["ms"]["samples"],
            r["errors"],
            f(&r["ms"]["p50"]),
            f(&r["ms"]["p99"]),
            f(&r["ms"]["max"]),
        );
    }
    for window in ["quiet", "importing", "settling"] {
        let p = &o["server_ms"][window];
        let (w, fs, r) = (&p["writer_wait_drone"], &p["fsync"], &p["writer_round"]);
        let h = &p["request_register"];
        let n = |v: &Value| v.as_f64().unwrap_or(0.0);
        println!(
            "  the server's side, {window} (its histograms, interpolated in buckets): heartbeats took \
             p50 {} ms, p99 {} ms in the server; drones' requests \
             waited for the writer p50 {} ms, p99 {} ms ({} requests); fsyncs p50 {} ms, p99 {} ms ({}); \
             the writer's rounds p50 {} ms, p99 {} ms ({}, {} over 25 ms)",
            f(&h["p50"]),
            f(&h["p99"]),
            f(&w["p50"]),
            f(&w["p99"]),
            n(&w["count"]),
            f(&fs["p50"]),
            f(&fs["p99"]),
            n(&fs["count"]),
            f(&r["p50"]),
            f(&r["p99"]),
            n(&r["count"]),
            n(&r["over_25ms"]),
        );
    }
    if o["repeat"].as_u64().unwrap_or(1) > 1 {
        println!(
            "{} runs, each on a fresh server; the heartbeat figures above pool them. Each run's own:",
            o["repeat"]
        );
        for (i, r) in o["runs"].as_array().into_iter().flatten().enumerate() {
            println!(
                "  run {}: import {} s, heartbeat p99 quiet {} ms, importing {} ms ({}x), settling {} ms",
                i + 1,
                f(&r["import_s"]),
                f(&r["heartbeat_p99_ms"]["quiet"]),
                f(&r["heartbeat_p99_ms"]["importing"]),
                f(&r["heartbeat_p99_during_over_before"]),
                f(&r["settling_heartbeat_p99_ms"]),
            );
        }
    }
    let halves = &o["heartbeat_ms"]["quiet_even_odd_rounds_p99"];
    println!(
        "quiet windows of even / odd rounds: p99 {} / {} ms (the noise the ratio below sits in)",
        f(&halves[0]),
        f(&halves[1]),
    );
    let t = &o["targets"];
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "targets: import under 10 s {}; one into under 5 ms {}; heartbeat p99 importing / quiet {} \
         (unchanged: at most {HEARTBEAT_P99_NOISE}, judged while the quiet halves are at most \
         {QUIET_HALVES_AGREE}x apart: {}x) {}",
        yes(&t["import_under_10_s"]),
        yes(&t["one_into_under_5_ms"]),
        f(&t["heartbeat_p99_during_over_before"]),
        f(&t["heartbeat_p99_quiet_halves_apart"]),
        match t["heartbeat_p99_verdict"].as_str() {
            Some("met") => "met",
            Some("inconclusive") => "INCONCLUSIVE",
            _ => "NOT met",
        },
    );
    println!("errors: {}", o["errors"]);
}

#[cfg(test)]
mod tests {
    use super::targets;
    use serde_json::json;

    fn verdict(quiet_p99: f64, importing_p99: f64, halves: [f64; 2]) -> String {
        let t = targets(
            4.0,
            json!(0.5),
            &json!({ "p99": quiet_p99 }),
            &json!({ "p99": importing_p99 }),
            &halves.map(|h| json!(h)),
        );
        t["heartbeat_p99_verdict"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    }

    #[test]
    fn the_ratio_is_judged_only_while_the_quiet_windows_agree() {
        assert_eq!(verdict(1.5, 1.65, [1.4, 1.6]), "met");
        assert_eq!(verdict(1.5, 2.7, [1.4, 1.6]), "not met");
        // A stall in the odd rounds' quiet windows raised the baseline: the
        // ratio of 0.15 says nothing.
        assert_eq!(verdict(24.6, 3.8, [1.5, 43.9]), "inconclusive");
        assert_eq!(verdict(1.5, 2.7, [1.5, 0.0]), "inconclusive");
    }
}
