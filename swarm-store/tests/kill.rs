//! kill -9: a child process appends as fast as it can and prints every
//! acknowledged seq; the parent SIGKILLs it at random moments, reopens, and
//! checks nothing acknowledged was lost and the state replays to the same
//! digest. `SWARM_KILL_ITERS=100` for the long run (default: a handful).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use swarm_core::{Seq, Timestamp};
use swarm_store::StoreOptions;

const CHILD_ENV: &str = "SWARM_STORE_KILL_CHILD_DB";

fn opts(open_at: u64) -> StoreOptions {
    StoreOptions {
        // Snapshots are written and used, but nothing is compacted, so the
        // parent can replay the whole log from the start.
        snapshot_every: 40,
        compact_log: false,
        // As the server runs it: a kill may land while a snapshot is being
        // prepared or written late.
        background_snapshots: true,
        open_at: Some(Timestamp(open_at)),
        ..StoreOptions::default()
    }
}

/// The last logged instant (0 for a file not created yet).
fn last_at(db: &Path) -> u64 {
    if !db.exists() {
        return 0;
    }
    common::raw_log(db).last().map_or(0, |(_, at, _)| *at)
}

/// The writer: runs only when the parent spawns this binary with `CHILD_ENV`.
#[test]
fn kill_child_writer() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = PathBuf::from(db);
    // The log's own clock, so time never goes backwards across restarts.
    let start = last_at(&db) + 1;
    let mut store = common::open(&db, opts(start));
    let mut out = std::io::stdout().lock();
    // A fresh line: the test harness may have started one without a newline.
    writeln!(out, "\nready {}", store.last_seq().0).expect("stdout");
    let mut at = start;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ store.last_seq().0;
    loop {
        let batch = 1 + (x % 4) as usize;
        let mut inputs = Vec::with_capacity(batch);
        for _ in 0..batch {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let (op, dt) = common::op_from(x >> 3);
            at += dt;
            inputs.push((
                Timestamp(at),
                common::to_input(&op, store.swarm().expect("state").view()),
            ));
            if inputs.len() == batch {
                break;
            }
        }
        let done = store.append_batch(inputs).expect("append");
        for (seq, _) in done {
            writeln!(out, "ack {}", seq.0).expect("stdout");
        }
        out.flush().expect("flush");
    }
}

fn spawn_and_kill(db: &Path, delay: Duration) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "kill_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    let mut ready = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            ready = line.starts_with("ready");
            if let Some(seq) = line.strip_prefix("ack ") {
                acked.push(seq.parse().expect("seq"));
            }
        }
    }
    assert!(ready, "the writer never became ready");
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    reader.join().expect("reader");
    for line in rx.try_iter() {
        if let Some(seq) = line.strip_prefix("ack ") {
            acked.push(seq.parse().expect("seq"));
        }
    }
    acked
}

#[test]
fn every_acknowledged_input_survives_sigkill_and_replays_to_the_same_digest() {
    let iters: u64 = std::env::var("SWARM_KILL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let mut x: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut total_acked = 0;
    for iter in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(10 + x % 150);
        let acked = spawn_and_kill(&db, delay);
        total_acked += acked.len();
        let logged: std::collections::BTreeSet<u64> =
            common::raw_log(&db).iter().map(|(s, _, _)| *s).collect();
        for seq in &acked {
            assert!(
                logged.contains(seq),
                "iteration {iter} (delay {delay:?}): acknowledged seq {seq} is not in the log"
            );
        }
        let at = last_at(&db) + 1;
        let store = common::open(&db, opts(at));
        let envs = store
            .export_since(Seq(0))
            .expect("export")
            .map(|e| e.expect("envelope"));
        let replayed = common::replay(store.config(), envs);
        assert_eq!(
            replayed.digest(),
            store.swarm().expect("state").digest(),
            "iteration {iter}: the reopened store and a fresh replay disagree"
        );
        store.check_read_tables().expect("read tables agree");
    }
    assert!(total_acked > 0, "the writer acknowledged nothing");
    eprintln!("kill -9: {iters} iterations, {total_acked} acknowledged inputs, all present");
}
