//! `swarm bench http`: simulated v3 drones over loopback against a real
//! server (in this process, on its own threads, with a real SQLite store),
//! repeating GET work → POST complete. Reports cycles/s and latency
//! percentiles; errors are counted, never hidden.

use crate::bench_conn::BenchConn;
use anyhow::Context;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_net::server::{self, ServerOptions};
use swarm_net::wire::{CompleteReply, WorkReply};
use swarm_store::{StoreOptions, Synchronous};

/// Flags of `swarm bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(clap::Subcommand, Debug)]
enum BenchWhat {
    /// Drones over loopback: GET /api/v1/work then POST /api/v1/complete, repeated.
    Http(HttpArgs),
    /// A real server, simulated drones, an accelerated clock: RSS, open files,
    /// database, WAL and log size, and p99 latencies at the start and the end.
    Soak(crate::bench_soak::SoakArgs),
    /// A big queue import over HTTP (posts of N atoms) while drones heartbeat:
    /// total and per-post time, one package into a big queue, heartbeat p99.
    Import(crate::bench_import::ImportArgs),
    /// Binhost releases: `release create` (cold and warm) and `publish` for N synthetic gpkgs.
    Release(crate::bench_release::ReleaseBenchArgs),
}

#[derive(clap::Args, Debug)]
struct HttpArgs {
    /// Concurrent drones, each with its own keep-alive connection.
    #[arg(long, default_value_t = 128)]
    drones: usize,
    /// How long to measure, seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Extra registered drones that only heartbeat, spread over `--heartbeat-s`.
    #[arg(long, default_value_t = 0)]
    background: usize,
    /// Heartbeat interval of the background drones, seconds.
    #[arg(long, default_value_t = 30)]
    heartbeat_s: u64,
    /// Hold this many stalled connections open throughout (half a head and
    /// 3 bytes of a 100 KB body, half an unfinished head; reopened when the
    /// server times them out).
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Durability of each group commit: normal or full.
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Snapshot interval of the store, in inputs (the server's default is 10,000).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Http(a) => http(a),
        BenchWhat::Soak(a) => crate::bench_soak::soak(a),
        BenchWhat::Import(a) => crate::bench_import::run(a),
        BenchWhat::Release(a) => crate::bench_release::run(a),
    }
}

/// How often each bench drone heartbeats (a real agent: every 30 s).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);

struct Lat {
    samples: Vec<u32>,
}

fn http(a: HttpArgs) -> anyhow::Result<()> {
    let synchronous = crate::bench_scratch::synchronous(&a.synchronous)?;
    crate::bench_scratch::in_scratch("swarm-bench", |dir| http_in(&a, synchronous, dir))
}

fn http_in(a: &HttpArgs, synchronous: Synchronous, dir: &std::path::Path) -> anyhow::Result<()> {
    let token = "bench-admin-token".to_string();
    let running = server::start(ServerOptions {
        listen: "127.0.0.1:0".parse()?,
        db_path: dir.join("swarm.db"),
        staging: dir.join("staging"),
        store: StoreOptions {
            synchronous,
            snapshot_every: a.snapshot_every,
            compact_log: std::env::var_os("SWARM_BENCH_NO_COMPACT").is_none(),
            ..StoreOptions::default()
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
        clock: Arc::new(crate::serve_cmd::wall_clock),
        on_escalate: None,
        signatures: Default::default(),
        binhost: swarm_net::binhost::BinhostOptions::under(dir),
    })?;
    let url = format!("http://{}", running.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    // Enough virtual packages (no binary needed) that the queue never runs dry.
    let per_s_guess: u64 = std::env::var("SWARM_BENCH_PER_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let total = (per_s_guess * (a.seconds + 2)) as usize;
    eprintln!(
        "queueing {total} packages, registering {} drones (+{} background)...",
        a.drones, a.background
    );
    let setup = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(20_000) {
        let pkgs: Vec<String> = chunk
            .iter()
            .map(|i| format!("=virtual/bench{i}-1"))
            .collect();
        agent
            .post(&format!("{url}/api/v1/queue"))
            .set("Authorization", &format!("Bearer {token}"))
            .send_json(json!({ "packages": pkgs }))
            .context("queueing the bench packages")?;
    }
    let register = |name: &str| -> anyhow::Result<()> {
        agent
            .post(&format!("{url}/api/v1/register"))
            .send_json(
                json!({"id": name, "name": name, "capabilities": {"cores": 64, "ram_gb": 64}}),
            )
            .with_context(|| format!("registering {name}"))?;
        Ok(())
    };
    let queued_s = setup.elapsed().as_secs_f64();
    for i in 0..a.drones {
        register(&format!("bench-{i}"))?;
    }
    for i in 0..a.background {
        register(&format!("idle-{i}"))?;
    }
    let registered_s = setup.elapsed().as_secs_f64() - queued_s;
    if !a.json {
        eprintln!("queued in {queued_s:.1} s, registered in {registered_s:.1} s");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let dry = Arc::new(AtomicU64::new(0));
    // Why polls came back empty (the server's `reason`), counted.
    let dry_why: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let lat = Arc::new(Mutex::new(Lat {
        samples: Vec::new(),
    }));
    let mut threads = Vec::new();
    for i in 0..a.drones {
        let (url, stop, measuring, cycles, errors, lat, dry) = (
            url.clone(),
            stop.clone(),
            measuring.clone(),
            cycles.clone(),
            errors.clone(),
            lat.clone(),
            dry.clone(),
        );
        let dry_why = dry_why.clone();
        let addr = running.addr();
        let spawned = std::thread::Builder::new().name("bench-drone".into()).spawn(move || {
            let _ = &url;
            let Ok(mut conn) = BenchConn::connect(addr) else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let id = format!("bench-{i}");
            let work_path = format!("/api/v1/work?id={id}");
            // A heartbeat as often as a real agent sends one, or the drone
            // turns "heartbeat late" mid-run and gets no work.
            let beat = json!({"id": id, "name": id}).to_string();
            let mut beat_at = Instant::now() + HEARTBEAT_EVERY;
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= beat_at {
                    beat_at = Instant::now() + HEARTBEAT_EVERY;
                    let ok = conn
                        .call("POST", "/api/v1/register", beat.as_bytes())
                        .is_ok_and(|(status, _)| status == 200);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let t0 = Instant::now();
                let w = conn
                    .call("GET", &work_path, b"")
                    .ok()
                    .filter(|(status, _)| *status == 200)
                    .and_then(|(_, body)| serde_json::from_slice::<WorkReply>(&body).ok());
                let t1 = Instant::now();
                let Some(w) = w else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Some(p) = w.package else {
                    if measuring.load(Ordering::Relaxed) {
                        dry.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut m) = dry_why.lock() {
                            let why = w.reason.unwrap_or_else(|| "no reason given".into());
                            *m.entry(why).or_default() += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                // The v3 body: no lease, matched by (drone, package).
                let body =
                    json!({"id": id, "package": p, "status": "success", "build_duration_s": 1.0});
                let c = conn
                    .call("POST", "/api/v1/complete", body.to_string().as_bytes())
                    .ok()
                    .filter(|(status, _)| *status == 200)
                    .and_then(|(_, body)| serde_json::from_slice::<CompleteReply>(&body).ok());
                let t2 = Instant::now();
                match c {
                    Some(r) if r.accepted => {
                        if measuring.load(Ordering::Relaxed) {
                            cycles.fetch_add(1, Ordering::Relaxed);
                            mine.push((t1 - t0).as_micros() as u32);
                            mine.push((t2 - t1).as_micros() as u32);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Ok(mut l) = lat.lock() {
                l.samples.extend(mine);
            }
        });
        threads.push(spawned.context("starting a bench drone thread")?);
    }
    // Background heartbeats: `background` drones, each every `heartbeat_s`.
    let hb_sent = Arc::new(AtomicU64::new(0));
    if a.background > 0 {
        for t in 0..4usize {
            let (url, stop, errors, hb_sent) =
                (url.clone(), stop.clone(), errors.clone(), hb_sent.clone());
            let (n, every) = (a.background, a.heartbeat_s.max(1));
            let spawned = std::thread::Builder::new()
                .name("bench-heartbeat".into())
                .spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let mine: Vec<usize> = (0..n).filter(|i| i % 4 == t).collect();
                    let gap = Duration::from_secs_f64(every as f64 / mine.len().max(1) as f64);
                    let mut k = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(i) = mine.get(k % mine.len().max(1)) else {
                            break;
                        };
                        let name = format!("idle-{i}");
                        let r = agent.post(&format!("{url}/api/v1/register")).send_json(
                            json!({"id": name, "name": name, "metrics": {"load_1m": 0.1}}),
                        );
                        if r.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        } else {
                            hb_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        k += 1;
                        std::thread::sleep(gap);
                    }
                });
            threads.push(spawned.context("starting a heartbeat thread")?);
        }
    }
    let overflows_start = crate::bench_stall::listen_overflows();
    let stallers = (a.stalled > 0)
        .then(|| crate::bench_stall::Stallers::start(running.addr(), a.stalled, &stop));
    let health = crate::bench_stall::HealthProbe::start(running.addr(), &measuring, &stop);
    std::thread::sleep(Duration::from_secs(1));
    let errors_before = errors.load(Ordering::Relaxed);
    let hb_before = hb_sent.load(Ordering::Relaxed);
    let cpu0 = crate::bench_cpu::CpuSample::now();
    let overflows0 = crate::bench_stall::listen_overflows();
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    for s in 0..a.seconds {
        std::thread::sleep(Duration::from_secs(1));
        if !a.json {
            eprintln!("  {:>3}s  {} cycles", s + 1, cycles.load(Ordering::Relaxed));
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let done = cycles.load(Ordering::Relaxed);
    let cpu = cpu0.until(&crate::bench_cpu::CpuSample::now());
    let overflows = crate::bench_stall::listen_overflows()
        .zip(overflows0)
        .map(|(b, a)| b.saturating_sub(a));
    let overflows_warmup = overflows0
        .zip(overflows_start)
        .map(|(b, a)| b.saturating_sub(a));
    let errs = errors.load(Ordering::Relaxed) - errors_before;
    let hbs = hb_sent.load(Ordering::Relaxed) - hb_before;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let health = health.finish(t0);
    let (stalled_reopened, stalled_failed) = match stallers {
        Some(s) => {
            let counts = (
                s.reopened.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
            );
            s.join();
            counts
        }
        None => (0, 0),
    };
    let metrics = agent
        .get(&format!("{url}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    let counter =
        |name: &str| -> f64 { crate::bench_scratch::metric(&metrics, name).unwrap_or(0.0) };
    let (batches, batched) = (
        counter("swarm_store_batches_total"),
        counter("swarm_store_inputs_total"),
    );
    running.shutdown();
    let mut samples = lat.lock().map(|l| l.samples.clone()).unwrap_or_default();
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        f64::from(samples[i.min(samples.len() - 1)]) / 1000.0
    };
    let hpct = |p: f64| -> f64 {
        let h = &health.samples;
        if h.is_empty() {
            return 0.0;
        }
        let i = ((h.len() as f64 - 1.0) * p).round() as usize;
        f64::from(h[i.min(h.len() - 1)]) / 1000.0
    };
    let out = json!({
        "drones": a.drones,
        "stalled": a.stalled,
        "stalled_reopened": stalled_reopened,
        "stalled_connect_failures": stalled_failed,
        "health_ms": {
            "p50": hpct(0.5), "p99": hpct(0.99), "max": hpct(1.0),
            "over_100": health.over_ms(100),
            "samples": health.samples.len(), "failures": health.failures,
            "connect_max": health.connect_max_ms,
            "slowest": health.slowest.iter().map(|(at_s, connect, total)| json!({"at_s": at_s, "connect": connect, "total": total})).collect::<Vec<_>>(),
        },
        "listen_overflows": {"warmup": overflows_warmup, "measured": overflows},
        "background_drones": a.background,
        "background_heartbeats_per_s": hbs as f64 / elapsed,
        "synchronous": a.synchronous,
        "seconds": elapsed,
        "cycles": done,
        "cycles_per_s": done as f64 / elapsed,
        "requests_per_s": 2.0 * done as f64 / elapsed,
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
        "errors": errs,
        "empty_polls": dry.load(Ordering::Relaxed),
        "empty_poll_reasons": dry_why.lock().map(|m| m.clone()).unwrap_or_default(),
        "setup_s": {"queue": queued_s, "register": registered_s},
        "group_commits": batches,
        "inputs_per_commit": if batches > 0.0 { batched / batches } else { 0.0 },
        "cpu_s": {"user": cpu.user, "sys": cpu.sys, "cores_busy": cpu.total() / elapsed},
        "cpu_us_per_cycle": cpu.per(done),
    });
    let empty = dry.load(Ordering::Relaxed);
    if empty > 0 && !a.json {
        let why = dry_why.lock().map(|m| m.clone()).unwrap_or_default();
        let why: Vec<String> = why.iter().map(|(r, n)| format!("{n}× {r:?}")).collect();
        eprintln!(
            "note: {empty} polls found nothing to build (the server said: {}); the rate is a lower bound",
            why.join(", ")
        );
    }
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{} drones (+{} heartbeating, {} stalled connections held, reopened {} times), synchronous={}: {:.0} cycles/s ({:.0} requests/s), latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {}, {:.1} inputs per group commit; /health on a new connection every 100 ms: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (connect max {:.1} ms), {} over 100 ms, {} failed of {}; listen queue overflows (whole machine) {} in the warm-up, {} measured",
            a.drones,
            a.background,
            a.stalled,
            stalled_reopened,
            a.synchronous,
            done as f64 / elapsed,
            2.0 * done as f64 / elapsed,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            errs,
            if batches > 0.0 { batched / batches } else { 0.0 },
            hpct(0.5),
            hpct(0.99),
            hpct(1.0),
            health.connect_max_ms,
            health.over_ms(100),
            health.failures,
            health.samples.len() as u64 + health.failures,
            overflows_warmup.map_or("unknown".to_string(), |n| n.to_string()),
            overflows.map_or("unknown".to_string(), |n| n.to_string()),
        );
        let per = cpu.per(done);
        let by: Vec<String> = per["by_thread"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
            .unwrap_or_default();
        let f = |k: &str| per[k].as_f64().unwrap_or(0.0);
        println!(
            "CPU per cycle: {:.1} µs ({:.1} user + {:.1} system) = server {:.1} + load generator {:.1}; by thread: {}; {:.2} cores busy",
            f("total"),
            f("user"),
            f("sys"),
            f("server"),
            f("client"),
            by.join(", "),
            cpu.total() / elapsed,
        );
    }
    Ok(())
}
