//! The STAND-IN builder script (swarm-bin/scripts/standin-builder.sh) run as the agent runs
//! it, with the real `swarm` packing its gpkg: the package is valid (what the server's upload
//! validation and real Portage check), failures and OOMs leave none, sizes set durations.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = include_str!("../scripts/standin-builder.sh");

/// Runs the script for `cat/pf`; returns its exit code, output and where its package goes.
fn run(dir: &Path, cpv: &str, env: &[(&str, &str)]) -> (i32, String, PathBuf) {
    let script = dir.join("standin-builder.sh");
    std::fs::write(&script, SCRIPT).expect("write script");
    let (category, pf) = cpv.split_once('/').expect("cat/pf");
    let pkgdir = dir.join("pkgdir");
    let out = Command::new("sh")
        .arg(&script)
        .args([&format!("={cpv}"), category, pf])
        .env("PKGDIR", &pkgdir)
        .env("SWARM_BIN", env!("CARGO_BIN_EXE_swarm"))
        .env("SWARM_STANDIN_SCALE_MS", "10")
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let artifact = pkgdir.join(category).join(format!("{pf}.gpkg.tar"));
    (out.status.code().unwrap_or(-1), text, artifact)
}

#[test]
fn it_writes_a_valid_gpkg_of_the_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, text, artifact) = run(dir.path(), "dev-libs/foo-1.0", &[]);
    assert_eq!(code, 0, "{text}");
    let pkg = swarm_net::binpkg::inspect(&artifact).expect("a valid gpkg");
    assert_eq!(pkg.cpv, "dev-libs/foo-1.0");
    assert_eq!(pkg.metadata["KEYWORDS"], "amd64");
    assert_eq!(pkg.metadata["SLOT"], "0");
    assert!(pkg.size >= 1024, "the server's 1 KiB rule");
    // No half-written file is left next to it.
    let names: Vec<_> = std::fs::read_dir(artifact.parent().expect("dir"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn virtuals_get_a_package_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, text, artifact) = run(
        dir.path(),
        "virtual/libc-1",
        &[("SWARM_STANDIN_KEYWORDS", "~amd64")],
    );
    assert_eq!(code, 0, "{text}");
    let pkg = swarm_net::binpkg::inspect(&artifact).expect("a valid gpkg");
    assert_eq!(pkg.cpv, "virtual/libc-1");
    assert_eq!(pkg.metadata["KEYWORDS"], "~amd64");
}

#[test]
fn listed_atoms_fail_or_run_out_of_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, artifact) = run(
        dir.path(),
        "dev-libs/foo-1.0",
        &[("SWARM_STANDIN_FAIL", "a/b-1, =dev-libs/foo-1.0")],
    );
    assert_eq!(code, 1);
    assert!(!artifact.exists());
    let (code, text, artifact) = run(
        dir.path(),
        "dev-libs/foo-1.0",
        &[("SWARM_STANDIN_OOM", "dev-libs/foo-1.0")],
    );
    assert_eq!(code, 137);
    assert!(text.contains("Out of memory: Killed process"), "{text}");
    assert!(!artifact.exists());
}

#[test]
fn atoms_in_the_fail_file_fail_until_taken_out_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("fail");
    std::fs::write(&list, "a/b-1\n=dev-libs/foo-1.0\n").expect("write");
    let env = [("SWARM_STANDIN_FAIL_FILE", list.to_str().expect("utf-8"))];
    let (code, text, artifact) = run(dir.path(), "dev-libs/foo-1.0", &env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("SWARM_STANDIN_FAIL_FILE"), "{text}");
    assert!(!artifact.exists());
    // "Fixed": the next build of it succeeds.
    std::fs::write(&list, "a/b-1\n").expect("write");
    let (code, text, artifact) = run(dir.path(), "dev-libs/foo-1.0", &env);
    assert_eq!(code, 0, "{text}");
    assert!(artifact.exists());
}

#[test]
fn a_sizes_file_sets_the_duration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes = dir.path().join("sizes");
    std::fs::write(&sizes, "# atom units\n=dev-libs/foo-1.0 7\n").expect("write");
    let sizes = sizes.to_string_lossy().into_owned();
    let (code, text, _) = run(
        dir.path(),
        "dev-libs/foo-1.0",
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("compiling for 0.070s (7 units"), "{text}");
}

#[test]
fn a_missing_packer_fails_the_build_instead_of_faking_a_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, text, artifact) = run(
        dir.path(),
        "dev-libs/foo-1.0",
        &[("SWARM_BIN", "/nonexistent/swarm")],
    );
    assert_ne!(code, 0, "{text}");
    assert!(!artifact.exists());
}
