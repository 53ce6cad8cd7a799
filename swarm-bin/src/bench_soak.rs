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
    /// Distinct package names (`virtual/soakN`): each round past them queues
    /// the next version of every name, as a real tree bumps versions; a
    /// farm's package names are bounded, its versions are not.
    #[arg(long, default_value_t = 2_000)]
    keys: u64,
    /// Start a new queue generation (`control fresh`, dropping what was
    /// built) every this many virtual hours, as an operator does between
    /// world rebuilds; 0: never (the queue then keeps every atom ever queued).
    #[arg(long, default_value_t = 24)]
    fresh_every_h: u64,
    /// History retention (builds and events), virtual hours; default: the
    /// server's (30 days of builds, 7 days of events), which a run shorter
    /// than that never reaches.
    #[arg(long)]
    retention_h: Option<u64>,
    /// Print a line (or, with --json, a JSON object on stderr) every this
    /// many wall seconds: RSS, files, sizes, rows and this interval's p99s,
    /// so a trend is visible; 0: only the start and end.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
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
    /// Packages in the core, as `/api/v1/status` last said.
    packages: AtomicU64,
    /// Generations started by the feeder.
    fresh: AtomicU64,
    windows: Mutex<[Window; 2]>,
    /// Samples since the last interval report.
    interval: Mutex<Window>,
}

pub(crate) fn soak(a: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.drones > 0, "--drones must be at least 1");
    anyhow::ensure!(a.seconds >= 10, "--seconds must be at least 10");
    anyhow::ensure!(
        (1..=10_000_000).contains(&a.keys),
        "--keys must be 1 to 10000000"
    );
    anyhow::ensure!(
        a.fresh_every_h <= 100_000,
        "--fresh-every-h must be at most 100000"
    );
    anyhow::ensure!(
        a.retention_h.is_none_or(|h| (1..=1_000_000).contains(&h)),
        "--retention-h must be 1 to 1000000"
    );
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
        store: {
            let mut o = StoreOptions {
                snapshot_every: a.snapshot_every,
                ..StoreOptions::default()
            };
            if let Some(h) = a.retention_h {
                o.builds_retention_ms = Some(h * swarm_core::time::HOUR_MS);
                o.events_retention_ms = Some(h * swarm_core::time::HOUR_MS);
            }
            o
        },
        admin_token: token.clone(),
        drone_token: None,
        read_token: None,
        legacy_drones: swarm_net::settings::default_legacy_drones(),
        allowed_hosts: Vec::new(),
        behind_proxy: false,
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
        packages: AtomicU64::new(0),
        fresh: AtomicU64::new(0),
        windows: Mutex::new([Window::default(), Window::default()]),
        interval: Mutex::new(Window::default()),
    });
    let virtual_ms = move |ms: u64| Duration::from_millis((ms / speed).max(1));
    let mut threads = Vec::new();
    // The feeder keeps work queued: 500 packages whenever fewer than two per
    // drone wait; and starts a new generation every --fresh-every-h.
    {
        let (sh, url, token) = (sh.clone(), url.clone(), token.clone());
        let want = (a.drones * 2) as u64;
        let keys = a.keys;
        let fresh_every = Duration::from_millis(a.fresh_every_h * 3_600_000 / speed);
        threads.push(std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build();
            let mut next = 0u64;
            let mut last_fresh = Instant::now();
            while !sh.stop.load(Ordering::Relaxed) {
                if !fresh_every.is_zero() && last_fresh.elapsed() >= fresh_every {
                    last_fresh = Instant::now();
                    let r = agent
                        .post(&format!("{url}/api/v1/control"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .send_json(json!({ "action": "fresh" }));
                    match r {
                        Ok(_) => sh.fresh.fetch_add(1, Ordering::Relaxed),
                        Err(_) => sh.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                let status = agent
                    .get(&format!("{url}/api/v1/status"))
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<Value>().ok());
                let field = |k: &str| status.as_ref().and_then(|v| v[k].as_u64());
                if let Some(total) = field("total") {
                    sh.packages.store(total, Ordering::Relaxed);
                }
                let queued = field("needed").unwrap_or(u64::MAX);
                if queued < want {
                    let pkgs: Vec<String> = (next..next + 500)
                        .map(|i| format!("=virtual/soak{}-{}", i % keys, 1 + i / keys))
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
    let mut reporter = Reporter {
        every: Duration::from_secs(a.report_every),
        last: Instant::now(),
        json: a.json,
        began,
        speed,
        header: false,
    };
    let pause = |d: Duration, reporter: &mut Reporter| {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_secs(1)));
            reporter.maybe(&db, &sh);
        }
    };
    pause(warmup, &mut reporter);
    sh.phase.store(1, Ordering::Relaxed);
    let start = sample(&db, &sh);
    pause(window, &mut reporter);
    sh.phase.store(2, Ordering::Relaxed);
    pause(total.saturating_sub(warmup + 2 * window), &mut reporter);
    sh.phase.store(3, Ordering::Relaxed);
    pause(window, &mut reporter);
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
        "generations": sh.fresh.load(Ordering::Relaxed),
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
        if let Ok(mut w) = sh.interval.lock() {
            w.push(route, us);
        }
        let phase = sh.phase.load(Ordering::Relaxed);
        if phase == 1 || phase == 3 {
            if let Ok(mut w) = sh.windows.lock() {
                w[usize::from(phase == 3)].push(route, us);
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

impl Window {
    fn push(&mut self, route: usize, us: u32) {
        match route {
            0 => self.heartbeat.push(us),
            1 => self.work.push(us),
            _ => self.complete.push(us),
        }
    }
}

/// The per-interval report (`--report-every`).
struct Reporter {
    every: Duration,
    last: Instant,
    json: bool,
    began: Instant,
    speed: u64,
    header: bool,
}

impl Reporter {
    fn maybe(&mut self, db: &Path, sh: &Shared) {
        if self.every.is_zero() || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let w = sh
            .interval
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let mut v = with_latency(sample(db, sh), &w);
        let secs = self.began.elapsed().as_secs_f64();
        v["seconds"] = json!(secs);
        v["virtual_hours"] = json!(secs * self.speed as f64 / 3600.0);
        v["errors"] = json!(sh.errors.load(Ordering::Relaxed));
        if self.json {
            eprintln!("{v}");
            return;
        }
        if !self.header {
            self.header = true;
            eprintln!(
                "{:>6} {:>6} {:>7} {:>8} {:>5} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>4}",
                "wall s", "virt h", "built", "RSS MiB", "files", "db bytes", "wal bytes",
                "log", "events", "builds", "pkgs", "beat", "work", "done", "err"
            );
        }
        let ms = |k: &str| v["p99_ms"][k].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "{:>6.0} {:>6.1} {:>7} {:>8.1} {:>5} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>6.1} {:>6.1} {:>6.1} {:>4}",
            secs,
            v["virtual_hours"].as_f64().unwrap_or(0.0),
            v["built_so_far"],
            v["rss_mib"].as_f64().unwrap_or(0.0),
            v["open_files"],
            v["db_bytes"],
            v["wal_bytes"],
            v["log_rows"],
            v["events_rows"],
            v["builds_rows"],
            v["packages"],
            ms("heartbeat"),
            ms("work"),
            ms("complete"),
            v["errors"],
        );
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
        "packages": sh.packages.load(Ordering::Relaxed),
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
