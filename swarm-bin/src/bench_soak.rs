//! `swarm bench soak`: a real server (in this process, real SQLite store,
//! real HTTP) driven by simulated drones on an accelerated clock, so hours
//! of farm life pass in minutes. Reports what must not grow without bound
//! (resident memory, open files, database, WAL and log size) and request
//! latency percentiles, at the start and at the end of the run.
//!
//! The clock given to the server runs `--speed` times faster than the wall
//! clock; drones heartbeat every 15 virtual seconds and build for 1 to 20
//! virtual minutes, so timers (liveness, retries, snapshots, retention)
//! fire as they would over the simulated span. Packages are virtual
//! (`virtual/soak*`), so no artifact is needed. Figures include the load
//! generator: it runs in the same process.

use crate::bench_conn::BenchConn;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_core::Timestamp;
use swarm_net::server::{self, ServerOptions};
use swarm_net::wire::WorkReply;
use swarm_store::{Explorer, ExplorerOptions, StoreOptions};

/// Flags of `swarm bench soak`.
#[derive(clap::Args, Debug)]
pub(crate) struct SoakArgs {
    /// Simulated drones, each on its own thread and connection.
    #[arg(long, default_value_t = 32)]
    drones: usize,
    /// Wall-clock length of the run, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// How much faster than the wall clock the server's clock runs.
    #[arg(long, default_value_t = 60)]
    speed: u64,
    /// Store snapshot interval, inputs (the server default is 10,000).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Keep the data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Latency samples (µs) per route, for one window.
#[derive(Default)]
struct Window {
    heartbeat: Vec<u32>,
    work: Vec<u32>,
    complete: Vec<u32>,
}

struct Shared {
    stop: AtomicBool,
    /// 0: warm-up, 1: start window, 2: middle, 3: end window.
    phase: AtomicU64,
    errors: AtomicU64,
    built: AtomicU64,
    windows: Mutex<[Window; 2]>,
}

pub(crate) fn soak(a: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.drones > 0, "--drones must be at least 1");
    anyhow::ensure!(a.seconds >= 10, "--seconds must be at least 10");
    anyhow::ensure!(
        (1..=10_000).contains(&a.speed),
        "--speed must be 1 to 10000"
    );
    let dir = std::env::temp_dir().join(format!("swarm-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = soak_in(&a, &dir);
    if a.keep {
        eprintln!("data dir kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn soak_in(a: &SoakArgs, dir: &Path) -> anyhow::Result<()> {
    let token = "soak-admin-token".to_string();
    let db = dir.join("swarm.db");
    let began_wall = crate::serve_cmd::wall_clock();
    let began = Instant::now();
    let speed = a.speed;
    let clock =
        Arc::new(move || Timestamp(began_wall.0 + began.elapsed().as_millis() as u64 * speed));
    let running = server::start(ServerOptions {
        listen: "127.0.0.1:0".parse()?,
        db_path: db.clone(),
        staging: dir.join("staging"),
        store: StoreOptions {
            snapshot_every: a.snapshot_every,
            ..StoreOptions::default()
        },
        admin_token: token.clone(),
        drone_token: None,
        legacy_drones: swarm_net::settings::default_legacy_drones(),
        drones: server::DroneLimits::for_fleet(a.drones),
        max_body_bytes: 16 << 20,
        max_artifact_bytes: 1 << 20,
        http: server::HttpLimits::default(),
        tls: None,
        clock,
        on_escalate: None,
        binhost: swarm_net::binhost::BinhostOptions::under(dir),
        signatures: Default::default(),
    })?;
    let addr = running.addr();
    let url = format!("http://{addr}");
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        phase: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        built: AtomicU64::new(0),
        windows: Mutex::new([Window::default(), Window::default()]),
    });
    let virtual_ms = move |ms: u64| Duration::from_millis((ms / speed).max(1));
    let mut threads = Vec::new();
    // The feeder keeps work queued: 500 packages whenever fewer than two per
    // drone wait.
    {
        let (sh, url, token) = (sh.clone(), url.clone(), token.clone());
        let want = (a.drones * 2) as u64;
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build();
            let mut next = 0u64;
            while !sh.stop.load(Ordering::Relaxed) {
                let queued = agent
                    .get(&format!("{url}/api/v1/status"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<Value>().ok())
                    .and_then(|v| v["needed"].as_u64())
                    .unwrap_or(u64::MAX);
                if queued < want {
                    let pkgs: Vec<String> = (next..next + 500)
                        .map(|i| format!("=virtual/soak{i}-1"))
                        .collect();
                    next += 500;
                    let r = agent
                        .post(&format!("{url}/api/v1/queue"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .send_json(json!({ "packages": pkgs }));
                    if r.is_err() {
                        sh.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    for i in 0..a.drones {
        let sh = sh.clone();
        threads.push(std::thread::spawn(move || {
            drone(i, addr, &sh, virtual_ms);
        }));
    }
    let total = Duration::from_secs(a.seconds);
    let window = total / 10;
    let warmup = window.min(Duration::from_secs(5));
    std::thread::sleep(warmup);
    sh.phase.store(1, Ordering::Relaxed);
    let start = sample(&db, &sh);
    std::thread::sleep(window);
    sh.phase.store(2, Ordering::Relaxed);
    let middle = total.saturating_sub(warmup + 2 * window);
    let mut left = middle;
    while left > Duration::ZERO {
        let step = left.min(Duration::from_secs(10));
        std::thread::sleep(step);
        left -= step;
        if !a.json {
            eprintln!(
                "  {:>5.0}s  built {}  errors {}",
                began.elapsed().as_secs_f64(),
                sh.built.load(Ordering::Relaxed),
                sh.errors.load(Ordering::Relaxed)
            );
        }
    }
    sh.phase.store(3, Ordering::Relaxed);
    std::thread::sleep(window);
    let end = sample(&db, &sh);
    sh.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    running.shutdown();
    let virtual_h = began.elapsed().as_secs_f64() * speed as f64 / 3600.0;
    let (w0, w1) = {
        let mut w = sh
            .windows
            .lock()
            .map_err(|_| anyhow::anyhow!("a drone thread panicked"))?;
        let [a, b] = std::mem::take(&mut *w);
        (a, b)
    };
    let out = json!({
        "drones": a.drones,
        "seconds": began.elapsed().as_secs_f64(),
        "speed": speed,
        "virtual_hours": virtual_h,
        "built": sh.built.load(Ordering::Relaxed),
        "errors": sh.errors.load(Ordering::Relaxed),
        "start": with_latency(start, &w0),
        "end": with_latency(end, &w1),
    });
    if a.json {
        println!("{out}");
    } else {
        print_text(&out);
    }
    Ok(())
}

/// One simulated drone: heartbeat every 15 virtual seconds, ask for work,
/// "build" for 1 to 20 virtual minutes (heartbeating meanwhile), report.
fn drone(i: usize, addr: std::net::SocketAddr, sh: &Shared, virt: impl Fn(u64) -> Duration) {
    let Ok(mut conn) = BenchConn::connect(addr) else {
        sh.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let id = format!("soak-{i}");
    let beat = json!({"id": id, "name": id, "capabilities": {"cores": 8, "ram_gb": 16},
                      "metrics": {"load_1m": 1.0, "mem_percent": 40, "disk_percent": 30}})
    .to_string();
    let work_path = format!("/api/v1/work?id={id}");
    let mut x = 0x9e37_79b9_u64 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let call = |conn: &mut BenchConn, route: usize, method: &str, path: &str, body: &[u8]| {
        let t0 = Instant::now();
        let r = conn.call(method, path, body);
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let phase = sh.phase.load(Ordering::Relaxed);
        if phase == 1 || phase == 3 {
            if let Ok(mut w) = sh.windows.lock() {
                let w = &mut w[usize::from(phase == 3)];
                match route {
                    0 => w.heartbeat.push(us),
                    1 => w.work.push(us),
                    _ => w.complete.push(us),
                }
            }
        }
        match r {
            Ok((200, body)) => Some(body),
            _ => {
                sh.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let beat_every = virt(15_000);
    while !sh.stop.load(Ordering::Relaxed) {
        call(&mut conn, 0, "POST", "/api/v1/register", beat.as_bytes());
        let work = call(&mut conn, 1, "GET", &work_path, b"")
            .and_then(|b| serde_json::from_slice::<WorkReply>(&b).ok());
        let Some(package) = work.and_then(|w| w.package) else {
            std::thread::sleep(beat_every);
            continue;
        };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let build_ms = 60_000 + x % (19 * 60_000);
        let until = Instant::now() + virt(build_ms);
        while Instant::now() < until && !sh.stop.load(Ordering::Relaxed) {
            std::thread::sleep(beat_every.min(until.saturating_duration_since(Instant::now())));
            call(&mut conn, 0, "POST", "/api/v1/register", beat.as_bytes());
        }
        let body = json!({"id": id, "package": package, "status": "success",
                          "build_duration_s": build_ms as f64 / 1000.0})
        .to_string();
        if call(&mut conn, 2, "POST", "/api/v1/complete", body.as_bytes()).is_some() {
            sh.built.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What must stay bounded, now.
fn sample(db: &Path, sh: &Shared) -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let size = |suffix: &str| {
        std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len())
    };
    let count = |sql: &str| -> i64 {
        Explorer::open(db, ExplorerOptions::default())
            .and_then(|x| x.query(sql))
            .ok()
            .and_then(|r| r.rows.first().and_then(|row| row.first().cloned()))
            .and_then(|v| v.as_i64())
            .unwrap_or(-1)
    };
    json!({
        "rss_mib": rss_kib as f64 / 1024.0,
        "open_files": fds,
        "db_bytes": size(""),
        "wal_bytes": size("-wal"),
        "log_rows": count("SELECT count(*) FROM input_log"),
        "events_rows": count("SELECT count(*) FROM events"),
        "builds_rows": count("SELECT count(*) FROM builds"),
        "built_so_far": sh.built.load(Ordering::Relaxed),
    })
}

fn p99(samples: &[u32]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let i = ((s.len() as f64 - 1.0) * 0.99).round() as usize;
    json!(f64::from(s[i.min(s.len() - 1)]) / 1000.0)
}

fn with_latency(mut v: Value, w: &Window) -> Value {
    v["p99_ms"] = json!({
        "heartbeat": p99(&w.heartbeat),
        "work": p99(&w.work),
        "complete": p99(&w.complete),
    });
    v["requests"] = json!(w.heartbeat.len() + w.work.len() + w.complete.len());
    v
}

fn print_text(out: &Value) {
    println!(
        "soak: {} drones, {:.0} s at x{} ({:.1} virtual hours), {} built, {} errors",
        out["drones"],
        out["seconds"].as_f64().unwrap_or(0.0),
        out["speed"],
        out["virtual_hours"].as_f64().unwrap_or(0.0),
        out["built"],
        out["errors"]
    );
    println!(
        "{:<6} {:>8} {:>6} {:>12} {:>12} {:>9} {:>12} {:>12} {:>12}",
        "",
        "RSS MiB",
        "files",
        "db bytes",
        "wal bytes",
        "log rows",
        "p99 beat ms",
        "p99 work ms",
        "p99 done ms"
    );
    for which in ["start", "end"] {
        let s = &out[which];
        println!(
            "{:<6} {:>8.1} {:>6} {:>12} {:>12} {:>9} {:>12} {:>12} {:>12}",
            which,
            s["rss_mib"].as_f64().unwrap_or(0.0),
            s["open_files"],
            s["db_bytes"],
            s["wal_bytes"],
            s["log_rows"],
            s["p99_ms"]["heartbeat"],
            s["p99_ms"]["work"],
            s["p99_ms"]["complete"]
        );
    }
}
