//! Upload validation against a real `swarm serve` on 127.0.0.1: each kind of bad artifact
//! gets a 4xx that names the problem, stages nothing and cannot count as built; a valid
//! gpkg is staged 0644 in a 0755 directory even under a 0077 umask.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::packages::gpkg_of_slot;
use support::{request_raw, Server};

/// A valid gpkg of `cpv`, SLOT 0.
fn gpkg(dir: &Path, cpv: &str) -> Vec<u8> {
    gpkg_of_slot(dir, cpv, "0")
}

fn put(s: &Server, path: &str, body: &[u8]) -> (u16, Value) {
    let sha = hex::encode(Sha256::digest(body));
    request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/{path}", s.url),
        Some(body),
        None,
        &[("X-Sha256", sha.as_str())],
    )
}

/// Files in staging/<category>, temporary ones included.
fn staged(s: &Server, category: &str) -> Vec<String> {
    std::fs::read_dir(s.data_dir.join("staging").join(category))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A bzip2 tar with no XPAK trailer, made by the system's tar.
fn tbz2_without_trailer(dir: &Path) -> Vec<u8> {
    let src = dir.join("tbz2-src");
    std::fs::create_dir_all(src.join("usr/bin")).expect("mkdir");
    std::fs::write(src.join("usr/bin/foo"), vec![b'x'; 4096]).expect("write");
    let out = dir.join("foo.tbz2");
    let status = std::process::Command::new("tar")
        .arg("-cjf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success());
    std::fs::read(out).expect("read")
}

#[test]
fn bad_artifacts_are_refused_by_name_stage_nothing_and_never_count_as_built() {
    let dir = tempfile::tempdir().expect("dir");
    // The service runs with UMask=0077; staged files must still be world-readable.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let s = Server::start(&dir.path().join("data"), &[]);
    rustix::process::umask(old);

    let (code, _) = s.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/foo-1.0"]}));
    assert_eq!(code, 200);
    s.post(
        "/api/v1/register",
        &json!({"node_name": "d1", "capabilities": {"cores": 4}}),
    );
    // Uploads are taken only under a live lease: d1 holds foo's while the bad files come.
    let w = s.get("/api/v1/work?id=d1").1;
    let first = w["package"].as_str().expect("a package").to_string();
    assert_eq!(first, "=dev-libs/foo-1.0", "{w}");

    let valid = gpkg(dir.path(), "dev-libs/foo-1.0");
    let truncated = valid[..valid.len() / 2].to_vec();
    // A Manifest that lies: one hex digit of the image's digest changed in place (sizes
    // and the tar's own checksums stay right).
    let lying = {
        let mut b = valid.clone();
        let find = |from: usize, what: &[u8]| {
            from + b[from..]
                .windows(what.len())
                .position(|w| w == what)
                .expect("in the Manifest")
        };
        let at = find(0, b"DATA image.tar.zst");
        let hex_at = find(at, b"BLAKE2B ") + "BLAKE2B ".len();
        b[hex_at] = if b[hex_at] == b'0' { b'1' } else { b'0' };
        b
    };
    let other = gpkg(dir.path(), "dev-libs/bar-1.0");
    let cases: [(&str, &str, Vec<u8>, &[&str]); 7] = [
        (
            "zeros",
            "dev-libs/foo-1.0.gpkg.tar",
            vec![0u8; 2048],
            &["(zeros)", "zero bytes"],
        ),
        (
            "truncated tar",
            "dev-libs/foo-1.0.gpkg.tar",
            truncated,
            &["(truncated)"],
        ),
        (
            "lying Manifest",
            "dev-libs/foo-1.0.gpkg.tar",
            lying,
            &["(manifest)", "BLAKE2B of image.tar.zst does not match"],
        ),
        (
            "another package",
            "dev-libs/foo-1.0.gpkg.tar",
            other,
            &["(cpv-mismatch)", "holds dev-libs/bar-1.0"],
        ),
        (
            "empty file",
            "dev-libs/foo-1.0.gpkg.tar",
            Vec::new(),
            &["(empty)"],
        ),
        (
            "xpak without trailer",
            "dev-libs/foo-1.0.tbz2",
            tbz2_without_trailer(dir.path()),
            &["(xpak)", "no XPAK trailer"],
        ),
        (
            "plain text",
            "dev-libs/foo-1.0.gpkg.tar",
            b"not a tar at all, just some text that is long enough".repeat(40),
            &["(unknown-format)"],
        ),
    ];
    for (what, path, body, words) in &cases {
        let (code, v) = put(&s, path, body);
        assert_eq!(code, 422, "{what}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        for w in *words {
            assert!(error.contains(w), "{what}: {error:?} does not say {w:?}");
        }
        assert!(error.contains("nothing was stored"), "{what}: {error}");
        assert_eq!(v["field"], "artifact", "{what}: {v}");
        assert!(
            staged(&s, "dev-libs").is_empty(),
            "{what} staged {:?}",
            staged(&s, "dev-libs")
        );
    }

    // The drone reports success anyway: nothing valid is staged, so it is not built.
    let (_, c) = s.post(
        "/api/v1/complete",
        &json!({"id": "d1", "package": first, "status": "success"}),
    );
    assert_eq!(c["recorded"], "missing_binary", "{first}: {c}");
    let status = s.get("/api/v1/status").1;
    assert_eq!(status["counts"]["built"], 0, "{status}");

    // A valid gpkg of the right package is staged, readable by a web server, and counts.
    let (code, _) = s.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/ok-2.0"]}));
    assert_eq!(code, 200);
    let w = s.get("/api/v1/work?id=d1").1;
    let second = w["package"].as_str().expect("a package").to_string();
    let cpv = second.trim_start_matches('=');
    let body = gpkg(dir.path(), cpv);
    let file = format!("{cpv}.gpkg.tar");
    let (code, v) = put(&s, &file, &body);
    assert_eq!(code, 200, "{v}");
    // A build id in the name must be the package's own.
    let (code, v) = put(&s, &format!("{cpv}-1.gpkg.tar"), &body);
    assert_eq!(
        code, 422,
        "the gpkg has no BUILD_ID, so -1 is not its name: {v}"
    );
    let (_, c) = s.post(
        "/api/v1/complete",
        &json!({"id": "d1", "package": second, "status": "success"}),
    );
    assert_eq!(c["recorded"], "built", "{c}");
    let status = s.get("/api/v1/status").1;
    assert_eq!(status["counts"]["built"], 1, "{status}");
    let dest = s.data_dir.join("staging").join(&file);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dest), 0o644, "{}", dest.display());
    assert_eq!(mode(&s.data_dir.join("staging/dev-libs")), 0o755);
    assert_eq!(mode(&s.data_dir.join("staging")), 0o755);
}
