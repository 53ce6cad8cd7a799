//! The real `emerge` prints, over the fixture repository, the outputs committed in
//! tests/portage/emerge/ (the inputs of `swarm queue import`'s unit tests), and `swarm queue import`
//! recovers every edge each fresh output displays. Needs the Portage venv (`SWARM_PORTAGE_VENV`);
//! fails under `CI=true` without it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Portage venv, or `None` (reason printed) outside CI; a failure under `CI=true`.
fn portage_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("SWARM_PORTAGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/portage-venv"));
    if venv.join("bin/emerge").exists() {
        return Some(venv);
    }
    let why = format!(
        "no Portage venv at {} (run tests/portage/venv.sh or set SWARM_PORTAGE_VENV)",
        venv.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: CI must run this test with the real Portage");
    }
    println!("skipped: {why}");
    None
}

/// The edges `swarm queue import --dry-run` would send for `file`.
fn imported_edges(file: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["queue", "import", "--dry-run", "--format", "emerge"])
        .arg(file)
        .output()
        .expect("the swarm binary runs");
    assert!(
        out.status.success(),
        "import of {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let request: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--dry-run prints the request as JSON");
    let packages = request["packages"].as_array().expect("a package list");
    packages
        .iter()
        .map(|p| p["deps"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn real_emerge_prints_the_committed_outputs_and_import_recovers_every_edge() {
    let Some(venv) = portage_venv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let (out, machine) = (dir.path().join("out"), dir.path().join("machine"));
    let run = Command::new("bash")
        .arg(repo_root().join("tests/portage/emerge-outputs.sh"))
        .arg(&out)
        .arg(&machine)
        .env("SWARM_PORTAGE_VENV", &venv)
        .output()
        .expect("bash runs");
    assert!(
        run.status.success(),
        "emerge-outputs.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The edges each tree displays (listed in swarm-bin/src/cli/import.rs's tests).
    for (name, displayed) in [
        ("tree.txt", 13),
        ("tree-verbose.txt", 13),
        ("tree-color.txt", 13),
        ("tree-binary.txt", 12),
    ] {
        let fresh = std::fs::read_to_string(out.join(name)).expect("a fresh output");
        let committed =
            std::fs::read_to_string(repo_root().join("tests/portage/emerge").join(name))
                .expect("the committed output");
        assert_eq!(
            fresh, committed,
            "{name}: the real emerge now prints something else; regenerate tests/portage/emerge \
             with tests/portage/emerge-outputs.sh and check the import against it"
        );
        assert_eq!(imported_edges(&out.join(name)), displayed, "{name}");
    }
}
