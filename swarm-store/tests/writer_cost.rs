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
//! - `import_part`: one 128-package part of a big import (each package
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

/// Packages per part, as the server cuts a push (`WRITER_COST_PART`, default 128).
fn part_packages() -> usize {
    std::env::var("WRITER_COST_PART")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

fn enqueue(store: &mut Store, at: Timestamp, packages: Vec<PackageSpec>) {
    let push = Enqueue {
        packages,
        ..Enqueue::default()
    };
    for part in push.into_parts(part_packages()) {
        store
            .append_batch(vec![(at, Input::Enqueue(part))])
            .expect("enqueue");
    }
}

/// `n` cycles, 8 per group commit: each drone asks for work, then reports
/// the package it got as built.
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
        for _ in 0..8 {
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
                            free_slots: 1,
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
        "cycle: {n} work->complete cycles (8 per group commit) on a {queued}-package queue: \
         {:.1} µs CPU per cycle ({:.1} µs wall)",
        cpu / n as f64,
        wall.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

/// One part of an import, then one commit of 16 heartbeats.
#[inline(never)]
fn measured_part(store: &mut Store, names: &[DroneName], t: &mut u64, start: usize) -> (f64, f64) {
    *t += 20;
    let at = Timestamp(*t);
    let specs = (start..start + part_packages())
        .map(|i| PackageSpec {
            deps: vec![atom("dev-libs/p", i / 2), atom("dev-libs/p", i - 1)],
            ..PackageSpec::new(atom("dev-libs/p", i))
        })
        .collect();
    let cpu = thread_cpu_us();
    enqueue(store, at, specs);
    let part = thread_cpu_us() - cpu;
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
    let cpu = thread_cpu_us();
    store.append_batch(beats).expect("heartbeats");
    (part, thread_cpu_us() - cpu)
}

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
    let parts = 200;
    let (mut part_us, mut beat_us) = (Vec::new(), Vec::new());
    for k in 0..parts {
        let (p, b) = measured_part(&mut store, &names, &mut t, queued + k * part_packages());
        part_us.push(p);
        beat_us.push(b);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, v[v.len() / 2], v[v.len() * 99 / 100], v[v.len() - 1])
    };
    let (pm, p50, p99, pmax) = stats(&mut part_us);
    let (bm, b50, b99, bmax) = stats(&mut beat_us);
    println!(
        "import_part: {parts} parts of {} into a {queued}-package queue: CPU per part mean {:.0} µs, \
         p50 {p50:.0}, p99 {p99:.0}, max {pmax:.0}; a commit of 16 heartbeats: mean {:.0} µs, \
         p50 {b50:.0}, p99 {b99:.0}, max {bmax:.0}",
        part_packages(),
        pm,
        bm
    );
}
