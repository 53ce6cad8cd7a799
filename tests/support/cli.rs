//! Running the `swarm` CLI against a test server as an operator would: the
//! server's URL and data dir in the environment (so the admin token is found
//! there), no configured token, no backtraces, no terminal on stdin.

use super::{swarm_bin, Server};
use serde_json::Value;
use std::process::{Command, Output, Stdio};

/// Runs `swarm ARGS` against `server`.
pub fn swarm(server: &Server, args: &[&str]) -> Output {
    Command::new(swarm_bin())
        .args(args)
        .env("SWARM_URL", &server.url)
        .env("SWARM_DATA_DIR", &server.data_dir)
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("ADMIN_SECRET")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run swarm")
}

/// The command succeeds; its standard output.
pub fn ok(server: &Server, args: &[&str]) -> String {
    let out = swarm(server, args);
    assert!(
        out.status.success(),
        "swarm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command fails; its standard error.
pub fn fails(server: &Server, args: &[&str]) -> String {
    let out = swarm(server, args);
    assert!(
        !out.status.success(),
        "swarm {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command succeeds and prints JSON; that JSON.
pub fn json_of(server: &Server, args: &[&str]) -> Value {
    let text = ok(server, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("swarm {args:?}: not JSON ({e}): {text}"))
}
