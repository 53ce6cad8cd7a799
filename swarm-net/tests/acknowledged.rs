//! The acknowledgement marker (`swarm.db.acked`) never falls behind a
//! reply: a reply acknowledges, and a store that later lost what the reply
//! acknowledged (a cut or damaged WAL tail) must be refused at open, which
//! only the marker can tell. The real server, in process, under concurrent
//! load, so both the fsync thread and the writer's own fsyncs answer.

mod common;

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use swarm_net::server::{self, RunningServer};

const TOKEN: &str = "acknowledged-token";

fn start(dir: &Path) -> RunningServer {
    server::start(common::options(dir, TOKEN)).expect("server starts")
}

/// The seq the marker says was acknowledged: the highest of its whole
/// slots (`swarm-acked 1 <store id> <seq> <crc>`, 64 bytes each).
fn marker_seq(marker: &Path) -> u64 {
    let bytes = std::fs::read(marker).expect("read the marker");
    bytes
        .chunks(64)
        .take(2)
        .filter_map(|slot| {
            let text = std::str::from_utf8(slot).ok()?;
            let mut words = text.split_whitespace();
            (words.next()? == "swarm-acked").then_some(())?;
            words.nth(2)?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Queues one package; gives the reply's seq.
fn queue(agent: &ureq::Agent, base: &str, package: &str) -> u64 {
    let reply: Value = agent
        .post(&format!("{base}/api/v1/queue"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(json!({ "packages": [package] }))
        .expect("queue answered 200")
        .into_json()
        .expect("a JSON reply");
    reply["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {reply}"))
}

#[test]
fn the_marker_covers_every_reply_at_the_moment_it_is_received() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(dir.path());
    let base = format!("http://{}", running.addr());
    let marker = dir.path().join("swarm.db.acked");
    let behind: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..6)
            .map(|client| {
                let (base, marker) = (&base, &marker);
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let mut behind = Vec::new();
                    for i in 0..60 {
                        let seq = queue(&agent, base, &format!("dev-libs/c{client}-{i}"));
                        let acked = marker_seq(marker);
                        if acked < seq {
                            behind.push((seq, acked));
                        }
                        if i % 10 == 9 {
                            // A pause lets the writer fall asleep between
                            // batches, as between a drone's heartbeats.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    behind
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect()
    });
    running.shutdown();
    assert!(
        behind.is_empty(),
        "{} replies were received while the marker said less (reply seq, marker seq): {:?}",
        behind.len(),
        &behind[..behind.len().min(10)]
    );
}
