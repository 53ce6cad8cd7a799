//! The issue's targets, measured (ignored: run once in release and report):
//!
//! ```text
//! cargo test --release -p swarm-store --test measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - append throughput with group commit (`append_batch` of 256), synchronous
//!   NORMAL and FULL, on a realistic mix: 50 drones heartbeating every 10 s and
//!   asking for work, 5,000 packages queued, builds of 1-10 minutes started and
//!   finished (5% failing);
//! - reopen time of a store holding 1,000,000 logged inputs at the default
//!   snapshot/compaction settings;
//! - the database size after those 1,000,000 inputs.
//!
//! Files go under `CARGO_TARGET_TMPDIR` (the target dir, on disk), not `/tmp`,
//! which may be a tmpfs where fsync costs nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use swarm_core::{
    Atom, DroneName, DroneSpec, Enqueue, FailureClass, Heartbeat, Input, LeaseId, Outcome,
    PackageSpec, Report, Timestamp,
};
use swarm_store::{Store, StoreOptions, Synchronous};

const DRONES: usize = 50;
const PACKAGES: usize = 5_000;
const SLOTS: usize = 2;
const BATCH: usize = 256;

/// A load generator: one `round` is one simulated second of a 50-drone farm.
struct Fleet {
    drones: Vec<DroneName>,
    atoms: Vec<Atom>,
    round: u64,
    t: u64,
    /// Leases already reported started (false) or finished (true).
    reported: HashMap<LeaseId, bool>,
    last_request: Vec<u64>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            drones: (0..DRONES)
                .map(|i| DroneName::new(format!("drone-{i:02}")).expect("drone name"))
                .collect(),
            atoms: (0..PACKAGES)
                .map(|i| Atom::parse(&format!("cat-{}/pkg{i}-1.{}", i % 40, i % 7)).expect("atom"))
                .collect(),
            round: 0,
            t: 1_767_225_600_000,
            reported: HashMap::new(),
            last_request: vec![0; DRONES],
        }
    }

    /// Build time of a lease: 1 to 10 simulated minutes.
    fn duration_ms(lease: LeaseId) -> u64 {
        let x = lease.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        60_000 + (x >> 11) % 540_000
    }

    fn round(&mut self, store: &Store, out: &mut Vec<(Timestamp, Input)>) {
        let view = store.swarm().expect("state").view();
        let r = self.round;
        let at = Timestamp(self.t);
        if r == 0 {
            for name in &self.drones {
                out.push((
                    at,
                    Input::Register(DroneSpec {
                        name: name.clone(),
                        cores: 8,
                        ram_mb: 32_768,
                        ..DroneSpec::default()
                    }),
                ));
            }
        }
        // The queue arrives in ten pushes of 500 over the first ten seconds.
        if r < 10 {
            let chunk = PACKAGES / 10;
            let start = r as usize * chunk;
            out.push((
                at,
                Input::Enqueue(Enqueue {
                    packages: self.atoms[start..start + chunk]
                        .iter()
                        .map(|a| PackageSpec::new(a.clone()))
                        .collect(),
                    ..Enqueue::default()
                }),
            ));
        }
        let leases = view.leases();
        let mut held = vec![0usize; DRONES];
        for l in &leases {
            if let Some(i) = self.drones.iter().position(|d| *d == l.drone) {
                held[i] += 1;
            }
            match self.reported.get(&l.lease) {
                None if self.t >= l.issued_at.0 + 2_000 => {
                    out.push((at, Input::BuildStarted(report(l))));
                    self.reported.insert(l.lease, false);
                }
                Some(false) if self.t >= l.issued_at.0 + Fleet::duration_ms(l.lease) => {
                    let outcome = if l.lease.0 % 20 == 7 {
                        Outcome::Failed {
                            class: FailureClass::Build,
                            detail: "compile error".into(),
                        }
                    } else {
                        Outcome::Success
                    };
                    out.push((
                        at,
                        Input::BuildFinished {
                            report: report(l),
                            outcome,
                            duration_ms: Some(self.t - l.issued_at.0),
                        },
                    ));
                    self.reported.insert(l.lease, true);
                }
                _ => {}
            }
        }
        for (i, name) in self.drones.iter().enumerate() {
            if (r + i as u64) % 10 == 0 {
                out.push((
                    at,
                    Input::Heartbeat(Heartbeat {
                        drone: name.clone(),
                        mem_percent: Some(40 + (r % 20) as u8),
                        disk_percent: Some(55),
                        load_centi: Some(400 + (r % 300) as u32),
                        ..Heartbeat::default()
                    }),
                ));
            }
            if held[i] < SLOTS && r >= self.last_request[i] + 20 && (r + i as u64) % 5 == 0 {
                out.push((
                    at,
                    Input::RequestWork {
                        drone: name.clone(),
                        free_slots: Some((SLOTS - held[i]) as u32),
                    },
                ));
                self.last_request[i] = r;
            }
        }
        if r % 5 == 0 {
            out.push((at, Input::Tick));
        }
        if r % 1000 == 999 {
            let live: std::collections::HashSet<LeaseId> = leases.iter().map(|l| l.lease).collect();
            self.reported.retain(|k, _| live.contains(k));
        }
        self.round += 1;
        self.t += 1_000;
    }
}

fn report(l: &swarm_core::LeaseView) -> Report {
    Report {
        drone: l.drone.clone(),
        package: l.package.clone(),
        lease: Some(l.lease),
        epoch: None,
    }
}

struct Run {
    inputs: u64,
    in_append: Duration,
    total: Duration,
}

/// Appends `n` inputs of the mix in batches of `BATCH`.
fn drive(store: &mut Store, n: u64, progress: bool) -> Run {
    let mut fleet = Fleet::new();
    let mut pending: Vec<(Timestamp, Input)> = Vec::new();
    let mut done = 0u64;
    let mut in_append = Duration::ZERO;
    let started = Instant::now();
    while done < n {
        while pending.len() < BATCH {
            fleet.round(store, &mut pending);
        }
        let take = BATCH.min((n - done) as usize);
        let batch: Vec<_> = pending.drain(..take).collect();
        let t0 = Instant::now();
        store.append_batch(batch).expect("append_batch");
        in_append += t0.elapsed();
        let before = done;
        done += take as u64;
        if progress && done / 100_000 != before / 100_000 {
            eprintln!(
                "  {done} inputs, {:.0} inputs/s so far",
                done as f64 / in_append.as_secs_f64()
            );
        }
    }
    Run {
        inputs: done,
        in_append,
        total: started.elapsed(),
    }
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn side(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn count(db: &Path, table: &str) -> i64 {
    let x = swarm_store::Explorer::open(db, Default::default()).expect("explorer");
    let r = x
        .query(&format!("SELECT count(*) FROM {table}"))
        .expect("count");
    r.rows[0][0].as_i64().unwrap_or(-1)
}

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture, ~2-4 minutes"]
fn append_throughput_normal_and_full() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir on disk");
    // The last two runs attribute cost: the same mix with fewer or (almost) no snapshots.
    for (label, sync, snapshot_every) in [
        ("NORMAL", Synchronous::Normal, 1_000),
        ("FULL", Synchronous::Full, 1_000),
        ("NORMAL", Synchronous::Normal, 10_000),
        ("NORMAL", Synchronous::Normal, u64::MAX / 2),
    ] {
        let db = tmp.path().join(format!("tp-{label}-{snapshot_every}.db"));
        let mut store = Store::open(
            &db,
            StoreOptions {
                synchronous: sync,
                snapshot_every,
                ..StoreOptions::default()
            },
        )
        .expect("open");
        let run = drive(&mut store, 200_000, false);
        let view = store.swarm().expect("state").view();
        let built = view
            .queue()
            .filter(|p| matches!(p.status, swarm_core::PackageStatus::Built { .. }))
            .count();
        println!(
            "throughput synchronous={label}, snapshot_every {snapshot_every}: {} inputs in batches of {BATCH}: {:.0} inputs/s \
             in append_batch ({:.2} s), {:.0} inputs/s including the load generator \
             ({:.2} s); {built} of {PACKAGES} packages built, {} leases open",
            run.inputs,
            run.inputs as f64 / run.in_append.as_secs_f64(),
            run.in_append.as_secs_f64(),
            run.inputs as f64 / run.total.as_secs_f64(),
            run.total.as_secs_f64(),
            view.leases().len(),
        );
    }
}

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture, ~1-3 minutes"]
fn reopen_and_size_after_a_million_inputs() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir on disk");
    let db = tmp.path().join("swarm.db");
    let mut store = Store::open(&db, StoreOptions::default()).expect("open");
    let run = drive(&mut store, 1_000_000, true);
    let last = store.last_seq();
    store.check_read_tables().expect("read tables agree");
    println!(
        "built a store of {} logged inputs (last seq {}) in {:.1} s ({:.0} inputs/s in append_batch)",
        run.inputs,
        last.0,
        run.total.as_secs_f64(),
        run.inputs as f64 / run.in_append.as_secs_f64()
    );
    drop(store);
    println!(
        "size after close: swarm.db {} bytes ({:.1} MiB), -wal {} bytes",
        file_size(&db),
        file_size(&db) as f64 / (1024.0 * 1024.0),
        file_size(&side(&db, "-wal")),
    );
    for table in [
        "input_log",
        "outbox",
        "snapshots",
        "packages",
        "builds",
        "events",
    ] {
        println!("  {table}: {} rows", count(&db, table));
    }
    for attempt in 1..=3 {
        let t0 = Instant::now();
        let store = Store::open(&db, StoreOptions::default()).expect("reopen");
        let took = t0.elapsed();
        let report = store.open_report().clone();
        // Each open appends one `Recovered` on top of what was there.
        assert_eq!(report.recovered_seq, last.0 + attempt);
        println!(
            "reopen #{attempt}: {:.3} s (snapshot at seq {}, {} inputs replayed, Recovered at seq {})",
            took.as_secs_f64(),
            report.snapshot_seq,
            report.replayed,
            report.recovered_seq
        );
        drop(store);
    }
    let t0 = Instant::now();
    let mut store = Store::open(
        &db,
        StoreOptions {
            verify_on_open: false,
            ..StoreOptions::default()
        },
    )
    .expect("reopen without quick_check");
    println!(
        "reopen without quick_check: {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    // The worst case: a tail of snapshot_every - 1 inputs to replay (heartbeats,
    // the bulk of an idle farm's log).
    let mut at = store.swarm().expect("state").view().now().0;
    let to_next_snapshot = 1_000 - store.last_seq().0 % 1_000;
    let tail: Vec<(Timestamp, Input)> = (0..to_next_snapshot - 1)
        .map(|i| {
            at += 200;
            (
                Timestamp(at),
                Input::Heartbeat(Heartbeat {
                    drone: DroneName::new(format!("drone-{:02}", i % DRONES as u64))
                        .expect("drone name"),
                    mem_percent: Some(41),
                    ..Heartbeat::default()
                }),
            )
        })
        .collect();
    store.append_batch(tail).expect("append the tail");
    drop(store);
    let t0 = Instant::now();
    let store = Store::open(&db, StoreOptions::default()).expect("reopen");
    let took = t0.elapsed();
    let report = store.open_report().clone();
    drop(store);
    println!(
        "reopen with the longest tail: {:.3} s (snapshot at seq {}, {} inputs replayed)",
        took.as_secs_f64(),
        report.snapshot_seq,
        report.replayed
    );
    println!(
        "size at the end: swarm.db {} bytes, -wal {} bytes",
        file_size(&db),
        file_size(&side(&db, "-wal")),
    );
}

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture, ~1 minute"]
fn enqueue_cost_follows_the_batch_not_the_queue() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir on disk");
    let mut store =
        Store::open(tmp.path().join("enqueue.db"), StoreOptions::default()).expect("open");
    // 200,000 packages in posts of 500 atoms; each depends on two earlier ones.
    let atom = |i: usize| Atom::parse(&format!("dev-libs/p{i}-1")).expect("atom");
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    for post in 0..400usize {
        let packages = (post * 500..(post + 1) * 500)
            .map(|i| PackageSpec {
                deps: if i >= 2 {
                    vec![atom(i / 2), atom(i - 1)]
                } else {
                    vec![]
                },
                ..PackageSpec::new(atom(i))
            })
            .collect();
        let t = Instant::now();
        store
            .append(
                Timestamp(1_000 + post as u64),
                Input::Enqueue(Enqueue {
                    packages,
                    ..Enqueue::default()
                }),
            )
            .expect("enqueue");
        worst = worst.max(t.elapsed());
    }
    println!(
        "enqueue: 200,000 packages in 400 posts of 500: {:.2} s in total, slowest post {:.1} ms",
        t0.elapsed().as_secs_f64(),
        worst.as_secs_f64() * 1000.0
    );
    // One package into the (now 200,000-package) queue, a few times.
    let mut times = Vec::new();
    for k in 0..20usize {
        let t = Instant::now();
        store
            .append(
                Timestamp(10_000 + k as u64),
                Input::Enqueue(Enqueue {
                    packages: vec![PackageSpec::new(atom(1_000_000 + k))],
                    ..Enqueue::default()
                }),
            )
            .expect("enqueue one");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "enqueue: one package into a 200,000-package queue: median {:.2} ms, max {:.2} ms",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
}
