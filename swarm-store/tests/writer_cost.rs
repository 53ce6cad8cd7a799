//! What the writer pays per input, measured without the network (ignored:
//! run in release and report). Thread CPU time per unit is printed; for
//! instruction counts run the test binary under callgrind and collect only
//! the measured function (`measured_*`), e.g.:
//!
//! ```text
//! cargo test --release -p swarm-store --test writer_cost --no-run
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_cycles*' \
//!     target/release/deps/writer_cost-* --ignored --nocapture cycle
//! ```
//!
//! - `cycle`: the `swarm bench http` load as the writer sees it: a large
//!   queue of virtual packages, 128 drones, group commits of 8 `RequestWork`
//!   and 8 `BuildFinished`;
//! - `import_part`: one part of a big import (each package
//!   depending on two earlier ones, as `swarm bench import` posts them) into
//!   a queue of 100,000, next to a commit of heartbeats alone: what a
//!   heartbeat waits for while a big import runs.
//!
//! Files go under `CARGO_TARGET_TMPDIR` (on disk), the store opened as the
//! server opens it (`defer_sync`, background snapshots and checkpoints).

use std::time::Instant;
use swarm_core::{
    Atom, DroneName, DroneSpec, Enqueue, Heartbeat, Input, Outcome, PackageSpec, Report, Timestamp,
};
use swarm_store::{Store, StoreOptions};

const DRONES: usize = 128;

fn open(name: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let opts = StoreOptions {
        background_snapshots: true,
        background_checkpoints: true,
        defer_sync: true,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path().join(format!("{name}.db")), opts).expect("open");
    (dir, store)
}

/// This thread's CPU time, in microseconds (`/proc/thread-self/schedstat`:
/// nanoseconds on a CPU, not rounded to the 10 ms of `stat`'s ticks).
fn thread_cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ns / 1_000.0
}

fn atom(prefix: &str, i: usize) -> Atom {
    Atom::parse(&format!("{prefix}{i}-1")).expect("atom")
}

fn drones() -> Vec<DroneName> {
    (0..DRONES)
        .map(|i| DroneName::new(format!("bench-{i}")).expect("name"))
        .collect()
}

fn register(store: &mut Store, at: Timestamp) -> Vec<DroneName> {
    let names = drones();
    let inputs = names
        .iter()
        .map(|name| {
            (
                at,
                Input::Register(DroneSpec {
                    name: name.clone(),
                    cores: 64,
                    ram_mb: 65_536,
                    ..DroneSpec::default()
                }),
            )
        })
        .collect();
    store.append_batch(inputs).expect("register");
    names
}

/// The weight of a part, as the server cuts a push (`WRITER_COST_PART_WEIGHT`,
/// default `swarm_core::PART_WEIGHT`).
fn part_weight() -> u64 {
    std::env::var("WRITER_COST_PART_WEIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(swarm_core::PART_WEIGHT)
}

/// Packages of two dependencies in a part of `part_weight()`.
fn part_packages() -> usize {
    (part_weight() / (swarm_core::PACKAGE_WEIGHT + 2)).max(1) as usize
}

fn enqueue(store: &mut Store, at: Timestamp, packages: Vec<PackageSpec>) {
    let push = Enqueue {
        packages,
        ..Enqueue::default()
    };
    for part in push.into_parts(part_weight()) {
        store
            .append_batch(vec![(at, Input::Enqueue(part))])
            .expect("enqueue");
    }
}

/// Inputs per group commit in `measured_cycles` (`WRITER_COST_BATCH`, default 8).
fn batch_inputs() -> usize {
    std::env::var("WRITER_COST_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// `n` cycles, `batch_inputs()` inputs per group commit: each drone asks
/// for work, then reports the package it got as built.
#[inline(never)]
fn measured_cycles(store: &mut Store, names: &[DroneName], t: &mut u64, n: usize) {
    let mut next = 0usize;
    let mut held: Vec<Option<Report>> = vec![None; names.len()];
    let mut done = 0;
    while done < n {
        *t += 1;
        let at = Timestamp(*t);
        let mut batch = Vec::with_capacity(16);
        let mut asked = Vec::new();
        for _ in 0..batch_inputs() {
            let i = next % names.len();
            next += 1;
            match held[i].take() {
                Some(report) => {
                    batch.push((
                        at,
                        Input::BuildFinished {
                            report,
                            outcome: Outcome::Success,
                            duration_ms: Some(1_000),
                        },
                    ));
                    done += 1;
                }
                None => {
                    batch.push((
                        at,
                        Input::RequestWork {
                            drone: names[i].clone(),
                            free_slots: Some(1),
                        },
                    ));
                    asked.push(i);
                }
            }
        }
        store.append_batch(batch).expect("cycle batch");
        let view = store.swarm().expect("state").view();
        for i in asked {
            held[i] = view.leases_of(&names[i]).first().map(|l| Report {
                drone: l.drone.clone(),
                package: l.package.clone(),
                lease: Some(l.lease),
                epoch: None,
            });
        }
    }
}

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture"]
fn cycle() {
    let (_dir, mut store) = open("cycle");
    let mut t = 1_767_225_600_000u64;
    let queued = 100_000;
    let specs = (0..queued)
        .map(|i| PackageSpec::new(atom("virtual/bench", i)))
        .collect();
    enqueue(&mut store, Timestamp(t), specs);
    let names = register(&mut store, Timestamp(t));
    // Warm up: every drone holds or finished a build once.
    measured_cycles(&mut store, &names, &mut t, 2_000);
    let n = 20_000;
    let cpu = thread_cpu_us();
    let wall = Instant::now();
    measured_cycles(&mut store, &names, &mut t, n);
    let cpu = thread_cpu_us() - cpu;
    println!(
        "cycle: {n} work->complete cycles ({} inputs per group commit) on a {queued}-package \
         queue: {:.1} µs CPU per cycle ({:.1} µs wall)",
        batch_inputs(),
        cpu / n as f64,
        wall.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

/// CPU (µs, thread) and wall (µs) of one step.
struct Cost {
    cpu: f64,
    wall: f64,
}

fn cost_of(step: impl FnOnce()) -> Cost {
    let (cpu, wall) = (thread_cpu_us(), Instant::now());
    step();
    Cost {
        cpu: thread_cpu_us() - cpu,
        wall: wall.elapsed().as_secs_f64() * 1e6,
    }
}

/// One part of an import, then one commit of 16 heartbeats.
#[inline(never)]
fn measured_part(store: &mut Store, names: &[DroneName], t: &mut u64, start: usize) -> [Cost; 2] {
    *t += 20;
    let at = Timestamp(*t);
    let specs = (start..start + part_packages())
        .map(|i| PackageSpec {
            deps: vec![atom("dev-libs/p", i / 2), atom("dev-libs/p", i - 1)],
            ..PackageSpec::new(atom("dev-libs/p", i))
        })
        .collect();
    let part = cost_of(|| enqueue(store, at, specs));
    let beats = names
        .iter()
        .take(16)
        .map(|name| {
            (
                at,
                Input::Heartbeat(Heartbeat {
                    drone: name.clone(),
                    mem_percent: Some(40),
                    disk_percent: Some(30),
                    load_centi: Some(100),
                    ..Heartbeat::default()
                }),
            )
        })
        .collect();
    let beats = cost_of(|| {
        store.append_batch(beats).expect("heartbeats");
    });
    [part, beats]
}

/// What a heartbeat waits for while an import runs: one part's CPU. The
/// thread's CPU clock (`schedstat`) moves in scheduler ticks, so only its
/// mean over many parts is exact; the wall-clock percentiles show the
/// spread (on a quiet machine they are the CPU time).
#[test]
#[ignore = "measurement: run in release with --ignored --nocapture"]
fn import_part() {
    let (_dir, mut store) = open("import");
    let mut t = 1_767_225_600_000u64;
    let names = register(&mut store, Timestamp(t));
    let queued = 100_000;
    let specs = (0..queued)
        .map(|i| PackageSpec {
            deps: if i >= 2 {
                vec![atom("dev-libs/p", i / 2), atom("dev-libs/p", i - 1)]
            } else {
                Vec::new()
            },
            ..PackageSpec::new(atom("dev-libs/p", i))
        })
        .collect();
    enqueue(&mut store, Timestamp(t), specs);
    let parts = 400;
    let mut costs = [Vec::new(), Vec::new()];
    for k in 0..parts {
        let [p, b] = measured_part(&mut store, &names, &mut t, queued + k * part_packages());
        costs[0].push(p);
        costs[1].push(b);
    }
    for (what, c) in [
        ("a part", &costs[0]),
        ("a commit of 16 heartbeats", &costs[1]),
    ] {
        let cpu = c.iter().map(|c| c.cpu).sum::<f64>() / c.len() as f64;
        let mut wall: Vec<f64> = c.iter().map(|c| c.wall).collect();
        wall.sort_by(f64::total_cmp);
        let at = |q: f64| wall[((wall.len() - 1) as f64 * q) as usize];
        println!(
            "import_part: {what} ({parts} parts of {} packages, weight {}, into a {queued}-package \
             queue): CPU mean {cpu:.0} µs; wall p50 {:.0}, p99 {:.0}, max {:.0} µs",
            part_packages(),
            part_weight(),
            at(0.5),
            at(0.99),
            at(1.0),
        );
    }
}
