//! Durability through the real `swarm serve` binary: a store that lost
//! acknowledged inputs is refused with a message naming the file and the way
//! out, and `--accept-loss` starts anyway and records the loss.

mod support;

use serde_json::json;
use std::process::{Command, Stdio};
use support::{swarm_bin, Server};

#[test]
fn serve_refuses_a_zero_byte_database_and_accept_loss_records_the_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    {
        let mut server = Server::start(data, &[]);
        let (code, _) = server.admin_post(
            "/api/v1/queue",
            &json!({ "packages": ["dev-libs/a-1", "dev-libs/b-1"] }),
        );
        assert_eq!(code, 200);
        assert_eq!(server.terminate(), Some(0));
    }
    let db = data.join("swarm.db");
    std::fs::write(&db, b"").expect("empty swarm.db");
    let out = Command::new(swarm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("SELF_HEAL_ENABLED", "false")
        .stdin(Stdio::null())
        .output()
        .expect("run swarm serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("empty"), "{stderr}");
    assert!(stderr.contains("--accept-loss"), "{stderr}");
    assert!(out.stdout.is_empty(), "never listened");
    assert_eq!(std::fs::metadata(&db).expect("db").len(), 0, "untouched");

    let server = Server::start_with(data, "127.0.0.1:0", &["--accept-loss"], &[]);
    let (code, body) = server.get("/api/v1/events?after=0");
    assert_eq!(code, 200);
    let events = body["events"].as_array().expect("events");
    let loss = events
        .iter()
        .find(|e| e["kind"] == "loss_accepted")
        .unwrap_or_else(|| panic!("a loss_accepted event in {body}"));
    assert!(
        loss["body"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("empty")),
        "{loss}"
    );
}
