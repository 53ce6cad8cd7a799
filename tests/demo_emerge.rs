//! `swarm demo --builder emerge`, as a user runs it: real drones build the
//! fixture repository with the real emerge, a release is published, and a
//! client machine installs it with the real `emerge --getbinpkgonly`. The test
//! reads the client's `var/db/pkg` itself. Needs the Portage venv
//! (`SWARM_PORTAGE_VENV`); fails under `CI=true` without it.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::portage::venv;
use support::swarm_bin;

/// What the fixture world (tests/portage/world) installs on a client.
const INSTALLED: [&str; 16] = [
    "acct-group/builder-0",
    "acct-user/builder-0",
    "app-misc/daemon-0.9",
    "app-misc/hello-1.0",
    "app-misc/plugin-1.0",
    "app-misc/plugin-host-1.0",
    "dev-lang/lang-1.0",
    "dev-lang/lang-2.0",
    "dev-libs/circ-a-1.0",
    "dev-libs/circ-b-1.0",
    "dev-libs/libbar-2.1",
    "dev-libs/libfoo-1.2",
    "dev-libs/libssl-3.0.1",
    "sys-libs/libxcrypt-4.4.36",
    "virtual/libcrypt-2",
    "x11-libs/gtk+-3.24.43",
];

fn demo(args: &[&str], venv: Option<&Path>, tmp: &Path) -> Output {
    let mut cmd = Command::new(swarm_bin());
    cmd.arg("demo")
        .args(args)
        .env_remove("SWARM_PORTAGE_VENV")
        .env_remove("SWARM_URL")
        .env("TMPDIR", tmp)
        .stdin(Stdio::null());
    if let Some(v) = venv {
        cmd.env("SWARM_PORTAGE_VENV", v);
    }
    cmd.output().expect("swarm demo runs")
}

#[test]
fn the_emerge_demo_builds_publishes_and_a_client_really_installs_it() {
    let Some(venv) = venv() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = demo(
        &[
            "--builder",
            "emerge",
            "--drones",
            "2",
            "--json",
            "--keep",
            "--timeout-s",
            "600",
        ],
        Some(&venv),
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "swarm demo --builder emerge failed:\n{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(summary["builder"], "emerge", "{summary}");
    assert_eq!(summary["queued"], 17, "{summary}");
    assert_eq!(summary["built"], 17, "{summary}");
    assert!(summary["edges"].as_u64() >= Some(13), "{summary}");

    // The client prefix, read here rather than trusted from the summary.
    let prefix = Path::new(summary["client_prefix"].as_str().expect("client_prefix"));
    assert!(prefix.starts_with(tmp.path()), "{}", prefix.display());
    for cpv in INSTALLED {
        let entry = prefix.join("var/db/pkg").join(cpv);
        assert!(
            entry.join("CONTENTS").is_file(),
            "{cpv} is not installed in the client ({} missing)\n{stderr}",
            entry.display()
        );
    }
    assert_eq!(
        summary["installed"].as_array().map(Vec::len),
        Some(INSTALLED.len())
    );
    assert_eq!(
        summary["verified"],
        INSTALLED.len(),
        "Portage checked every file: {summary}"
    );
    // The client installed binaries, not builds: its own PKGDIR came from the binhost.
    let client = prefix.parent().expect("client dir");
    let log = std::fs::read_to_string(
        client
            .parent()
            .expect("demo dir")
            .join("client-install.log"),
    )
    .expect("client log");
    assert!(log.contains(">>> Emerging binary"), "{log}");
    assert!(
        !log.contains(">>> Emerging (1 of"),
        "the client compiled something:\n{log}"
    );
    // Each file the client has is one the release serves.
    let binhost = client
        .parent()
        .expect("demo dir")
        .join("server/binhost/demo");
    assert!(binhost.join("Packages").is_file(), "{}", binhost.display());
    assert!(stderr.contains("installed 16 packages"), "{stderr}");
}

#[test]
fn without_portage_the_emerge_demo_says_how_to_install_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = demo(&["--builder", "emerge"], None, tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("python3 -m venv DIR && DIR/bin/pip install portage"),
        "{stderr}"
    );
    let not_a_venv = tmp.path().join("empty");
    std::fs::create_dir_all(&not_a_venv).expect("dir");
    let out = demo(
        &[
            "--builder",
            "emerge",
            "--portage-venv",
            not_a_venv.to_str().expect("utf-8"),
        ],
        None,
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not a venv with Portage in it")
            && stderr.contains("pip install portage"),
        "{stderr}"
    );
    // Nothing was started or left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("swarm-demo-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
