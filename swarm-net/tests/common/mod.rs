//! What the in-process server tests share: a server on 127.0.0.1 with the
//! options a test does not care about at their defaults.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use swarm_net::binhost::BinhostOptions;
use swarm_net::server::{self, ServerOptions};
use swarm_store::StoreOptions;

/// Options for a server under `dir` with admin token `token`, on a free
/// port, the wall clock and every limit at its default; a test changes the
/// fields it is about.
pub fn options(dir: &Path, token: &str) -> ServerOptions {
    ServerOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        db_path: dir.join("swarm.db"),
        staging: dir.join("staging"),
        store: StoreOptions::default(),
        admin_token: token.into(),
        drone_token: None,
        read_token: None,
        max_body_bytes: 1 << 20,
        max_artifact_bytes: 1 << 20,
        http: server::HttpLimits::default(),
        tls: None,
        clock: Arc::new(wall_now),
        on_escalate: None,
        legacy_drones: swarm_net::settings::default_legacy_drones(),
        allowed_hosts: Vec::new(),
        behind_proxy: false,
        drones: Default::default(),
        signatures: Default::default(),
        binhost: BinhostOptions::under(dir),
    }
}

/// The wall clock, in the core's unit.
pub fn wall_now() -> swarm_core::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    swarm_core::Timestamp(ms)
}

/// The metadata of a gpkg staged as a drone's build (`binpkg::write_gpkg`).
#[allow(dead_code)]
pub fn gpkg_meta() -> std::collections::BTreeMap<String, String> {
    [
        ("EAPI", "8"),
        ("SLOT", "0"),
        ("KEYWORDS", "amd64"),
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("repository", "gentoo"),
        ("BUILD_ID", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
