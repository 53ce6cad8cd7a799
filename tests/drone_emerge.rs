//! A real `swarm drone` building with the real `emerge` (tests/portage/) every atom form the queue
//! accepts: exact, `>=`, `~`, `=…*`, unversioned with a slot, a repository, USE deps, a virtual.
//! Whatever the form, the agent uploads every binary package the build wrote (identified by the
//! package's own metadata) and the server counts the success. Needs the Portage venv
//! (`SWARM_PORTAGE_VENV`); fails under `CI=true` without it.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::portage::{machine_env, venv, EmergeDrone, Machine};
use support::{swarm_bin, Server};

/// (queued atom, `category/pf` of the binary package it must produce).
const FORMS: [(&str, &str); 8] = [
    ("=dev-libs/libfoo-1.2", "dev-libs/libfoo-1.2"),
    (">=dev-libs/libbar-2", "dev-libs/libbar-2.1"),
    ("~dev-lang/lang-1.0", "dev-lang/lang-1.0"),
    ("=dev-lang/lang-2*", "dev-lang/lang-2.0"),
    ("dev-util/buildtool:0", "dev-util/buildtool-1.0"),
    ("sys-libs/libxcrypt::gentoo", "sys-libs/libxcrypt-4.4.36"),
    ("app-misc/hello[ssl]", "app-misc/hello-1.0"),
    ("virtual/libcrypt", "virtual/libcrypt-2"),
];

/// `<staging>/<cat>/<pf>.gpkg.tar` or with a build id, if present.
fn staged(staging: &Path, cpv: &str) -> Option<PathBuf> {
    let (cat, pf) = cpv.split_once('/').expect("cat/pf");
    let dir = staging.join(cat);
    std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_prefix(pf)
                .and_then(|r| r.strip_suffix(".gpkg.tar"))
                .is_some_and(|r| {
                    r.is_empty()
                        || r.strip_prefix('-')
                            .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
                })
        })
}

#[test]
fn a_real_emerge_drone_builds_every_atom_form_and_uploads_what_emerge_built() {
    let Some(venv) = venv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let env = machine_env(&dir.path().join("machine"), &venv);
    let server = Server::start(&dir.path().join("data"), &[]);
    let packages: Vec<&str> = FORMS.iter().map(|(a, _)| *a).collect();
    let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": packages }));
    assert_eq!(code, 200, "{body}");

    let work = dir.path().join("drone");
    std::fs::create_dir_all(&work).expect("work dir");
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").expect("config");
    let log = dir.path().join("drone.log");
    let mut drone = Command::new(swarm_bin())
        .args(["drone", "--server", &server.url, "--name", "emerge-drone"])
        .args(["--machine-id", "test-emerge-drone", "--slots", "1"])
        .args([
            "--builder",
            "emerge --oneshot --buildpkg --usepkg=n --getbinpkg=n {atom}",
        ])
        .args(["--min-free-disk", "64MiB"])
        .args(["--heartbeat-s", "1", "--poll-s", "1", "--config"])
        .arg(&config)
        .arg("--work-dir")
        .arg(&work)
        .arg("--pkgdir")
        .arg(dir.path().join("machine/pkgdir"))
        .arg("--portage-timestamp-file")
        .arg(dir.path().join("no-timestamp"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("SWARM_URL")
        .env_remove("SWARM_CONFIG")
        .env("SWARM_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("swarm drone starts");

    let done = |v: &Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        n("received") + n("blocked") + n("failed") >= FORMS.len() as u64 || n("blocked") > 0
    };
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.wait_for(600, "every atom form built", done)
    }));
    let _ = drone.kill();
    let _ = drone.wait();
    let drone_log = std::fs::read_to_string(&log).unwrap_or_default();
    let status = waited.unwrap_or_else(|_| panic!("timed out; drone log:\n{drone_log}"));
    let (_, history) = server.get("/api/v1/history?limit=50");
    assert_eq!(
        status["received"].as_u64(),
        Some(FORMS.len() as u64),
        "not every form was counted built: {status}\nhistory: {history}\ndrone log:\n{drone_log}"
    );
    let staging = server.data_dir.join("staging");
    for (atom, cpv) in FORMS {
        let path = staged(&staging, cpv)
            .unwrap_or_else(|| panic!("{atom}: no {cpv} in staging; drone log:\n{drone_log}"));
        let pkg = swarm_net::binpkg::inspect(&path).expect("a valid binary package");
        assert_eq!(pkg.cpv, cpv, "{atom}");
        println!("{atom:<28} built and uploaded as {}", path.display());
    }
}

/// A drone whose Portage packs what the server refuses (h20's F3 and F1: lzip, lzop, an
/// uncompressed gpkg) does not start: every build it made would be refused and the drone held
/// again and again. It says which setting and what to use instead; the first test here is the
/// drone with Portage's defaults that does start.
#[test]
fn a_drone_whose_portage_packs_packages_the_server_refuses_does_not_start() {
    let Some(venv) = venv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    for (name, line, said) in [
        ("lzip", "BINPKG_COMPRESS=\"lzip\"", "BINPKG_COMPRESS=lzip"),
        (
            "none",
            "BINPKG_COMPRESS=\"none\"",
            "BINPKG_COMPRESS=\"none\"",
        ),
    ] {
        let m = Machine::with(&venv, &dir.path().join(name), &["--make-conf-extra", line]);
        let mut drone = EmergeDrone::start(&server, &m, name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = drone.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the {name} drone is still running"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let log = std::fs::read_to_string(&drone.1).unwrap_or_default();
        assert!(!status.success(), "{name}: {log}");
        assert!(log.contains(said) && log.contains("zstd"), "{name}: {log}");
    }
    let (_, nodes) = server.get("/api/v1/nodes");
    assert!(
        !nodes.to_string().contains("lzip"),
        "neither drone registered: {nodes}"
    );
}
