//! `swarm bench import`: what a big queue import costs over HTTP, and what
//! it does to the drones meanwhile. A real server (in this process, real
//! SQLite store, real HTTP) gets `--packages` packages in posts of `--batch`
//! atoms (each package depending on two earlier ones), while simulated
//! drones heartbeat on their own connections. Reports the import's total
//! and per-post times, one package posted into a queue of `--one-into`
//! packages, and heartbeat latency before and during the import. Figures
//! include the load generator: it runs in the same process.

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
    /// Milliseconds between two heartbeats of one drone.
    #[arg(long, default_value_t = 200)]
    beat_ms: u64,
    /// Seconds of heartbeats measured before the import starts.
    #[arg(long, default_value_t = 5)]
    baseline_s: u64,
    /// `normal` or `full`: the store's synchronous mode.
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Shared {
    stop: AtomicBool,
    /// 0: warm-up, 1: baseline, 2: importing, 3: after.
    phase: AtomicU64,
    errors: AtomicU64,
    /// Heartbeat latencies (µs): baseline, during the import.
    beats: Mutex<[Vec<u32>; 2]>,
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
    let synchronous = crate::bench_scratch::synchronous(&a.synchronous)?;
    crate::bench_scratch::in_scratch("swarm-import", |dir| run_in(&a, synchronous, dir))
}

fn run_in(a: &ImportArgs, synchronous: Synchronous, dir: &Path) -> anyhow::Result<()> {
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
        legacy_drones: swarm_net::settings::default_legacy_drones(),
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
        phase: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        beats: Mutex::new([Vec::new(), Vec::new()]),
    });
    let drones: Vec<_> = (0..a.drones)
        .map(|i| {
            let sh = sh.clone();
            let every = Duration::from_millis(a.beat_ms);
            std::thread::spawn(move || drone(i, addr, &sh, every))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    sh.phase.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(a.baseline_s));
    sh.phase.store(2, Ordering::SeqCst);

    let url = format!("http://{addr}/api/v1/queue");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    let post = |atoms: Vec<Value>| -> anyhow::Result<Duration> {
        let body = json!({ "packages": atoms }).to_string();
        let t = Instant::now();
        agent
            .post(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .send_string(&body)
            .context("POST /api/v1/queue")?;
        Ok(t.elapsed())
    };
    let atom = |i: usize| format!("dev-libs/p{i}-1");
    let mut posts = Vec::new();
    let mut singles = Vec::new();
    let import_started = Instant::now();
    let mut paused = Duration::ZERO;
    let mut queued = 0;
    while queued < a.packages {
        let end = (queued + a.batch).min(a.packages);
        let atoms = (queued..end)
            .map(|i| {
                let deps: Vec<String> = if i >= 2 {
                    vec![atom(i / 2), atom(i - 1)]
                } else {
                    Vec::new()
                };
                json!({ "atom": atom(i), "deps": deps })
            })
            .collect();
        posts.push(post(atoms)?);
        if queued < a.one_into && end >= a.one_into {
            let t = Instant::now();
            for k in 0..20 {
                singles.push(post(vec![json!(format!("dev-libs/single{k}-1"))])?);
            }
            paused += t.elapsed();
        }
        queued = end;
    }
    let import = import_started.elapsed() - paused;
    sh.phase.store(3, Ordering::SeqCst);
    sh.stop.store(true, Ordering::SeqCst);
    for d in drones {
        let _ = d.join();
    }
    running.shutdown();

    let beats = sh.beats.lock().map(|b| b.clone()).unwrap_or_default();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mut post_ms: Vec<f64> = posts.iter().map(ms).collect();
    post_ms.sort_by(f64::total_cmp);
    let mut single_ms: Vec<f64> = singles.iter().map(ms).collect();
    single_ms.sort_by(f64::total_cmp);
    let baseline = latency(&beats[0]);
    let during = latency(&beats[1]);
    let targets = targets(
        import.as_secs_f64(),
        pick(&single_ms, 0.5),
        &baseline,
        &during,
    );
    let out = json!({
        "packages": a.packages,
        "batch": a.batch,
        "posts": posts.len(),
        "synchronous": a.synchronous,
        "import_s": import.as_secs_f64(),
        "post_ms": { "p50": pick(&post_ms, 0.5), "p99": pick(&post_ms, 0.99), "max": post_ms.last() },
        "one_into": a.one_into,
        "one_ms": { "p50": pick(&single_ms, 0.5), "max": single_ms.last() },
        "drones": a.drones,
        "heartbeat_ms": {
            "baseline": baseline,
            "during_import": during,
        },
        "targets": targets,
        "errors": sh.errors.load(Ordering::Relaxed),
    });
    if a.json {
        println!("{out}");
    } else {
        print_text(&out);
    }
    Ok(())
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
        let t0 = Instant::now();
        let r = conn.call("POST", "/api/v1/register", beat.as_bytes());
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        if !matches!(r, Ok((200, _))) {
            sh.errors.fetch_add(1, Ordering::Relaxed);
        }
        let slot = match sh.phase.load(Ordering::Relaxed) {
            1 => Some(0),
            2 => Some(1),
            _ => None,
        };
        if let (Some(slot), Ok(mut b)) = (slot, sh.beats.lock()) {
            b[slot].push(us);
        }
        std::thread::sleep(every.saturating_sub(t0.elapsed()));
    }
}

/// Issue 14's targets: all packages in under 10 s, one package into the
/// queue in under 5 ms (p50 of 20 posts), and the heartbeat p99 during the
/// import unchanged: at most 1.2 times the p99 before it (what run-to-run
/// noise spans on a quiet machine).
fn targets(import_s: f64, one_ms: Value, baseline: &Value, during: &Value) -> Value {
    let ratio = match (baseline["p99"].as_f64(), during["p99"].as_f64()) {
        (Some(b), Some(d)) if b > 0.0 => Some(d / b),
        _ => None,
    };
    json!({
        "import_under_10_s": import_s < 10.0,
        "one_into_under_5_ms": one_ms.as_f64().is_some_and(|ms| ms < 5.0),
        "heartbeat_p99_during_over_before": ratio,
        "heartbeat_p99_unchanged": ratio.is_some_and(|r| r <= HEARTBEAT_P99_NOISE),
    })
}

/// How much higher the heartbeat p99 during the import may be and still
/// count as unchanged.
const HEARTBEAT_P99_NOISE: f64 = 1.2;

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
        "import: {} packages in {} posts of {} (synchronous={}): {:.2} s; a post p50 {} ms, p99 {} ms, max {} ms",
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
        "one package into a {}-package queue (20 posts): p50 {} ms, max {} ms (HTTP round trip)",
        o["one_into"],
        f(&o["one_ms"]["p50"]),
        f(&o["one_ms"]["max"]),
    );
    for (label, key) in [("before", "baseline"), ("during", "during_import")] {
        let h = &o["heartbeat_ms"][key];
        println!(
            "heartbeats {label} the import ({} drones, {} samples): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            o["drones"],
            h["samples"],
            f(&h["p50"]),
            f(&h["p90"]),
            f(&h["p99"]),
            f(&h["max"]),
        );
    }
    let t = &o["targets"];
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "targets: import under 10 s {}; one into under 5 ms {}; heartbeat p99 during / before {} \
         (unchanged: at most {HEARTBEAT_P99_NOISE}) {}",
        yes(&t["import_under_10_s"]),
        yes(&t["one_into_under_5_ms"]),
        f(&t["heartbeat_p99_during_over_before"]),
        yes(&t["heartbeat_p99_unchanged"]),
    );
    println!("errors: {}", o["errors"]);
}
