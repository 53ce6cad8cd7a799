//! dist/nginx/swarm-binhost.conf, run as is (only its path replaced) by a real
//! nginx, against the same binhost tree that `swarm serve` serves under
//! `/binhost/`: both must answer alike (bytes, Content-Length, ranges, HEAD,
//! no dot files, read-only). Needs `nginx` on PATH: under `CI=true` a missing
//! nginx FAILS the test; elsewhere it is skipped with the reason printed.
//!
//! `cargo test -p swarm-tests --test nginx_e2e -- --ignored --nocapture`
//! also measures file throughput of both servers on this machine: one 64 MiB file, one small
//! file again and again, 400 different small files one connection each, and the same from 4
//! keep-alive clients at once (MiB/s and requests/s; `swarm serve` is the debug build the tests run,
//! unless `SWARM_TEST_BIN` names a release build: `cargo build --release -p swarm-bin` first).

mod support;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};
use support::Server;

struct Nginx {
    _ng: support::nginx::Nginx,
    url: String,
}

/// nginx in the foreground with the dist snippet pointed at `tree`.
fn start_nginx(bin: &Path, dir: &Path, tree: &Path) -> Nginx {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let snippet =
        std::fs::read_to_string(root.join("dist/nginx/swarm-binhost.conf")).expect("snippet");
    let tree = format!("{}/", tree.display());
    assert!(
        snippet.contains("/var/lib/swarm/binhost/"),
        "the snippet names the default binhost_path"
    );
    let snippet = snippet.replace("/var/lib/swarm/binhost/", &tree);
    let ng = support::nginx::start(bin, dir, |port| {
        format!(" server {{\n  listen 127.0.0.1:{port};\n{snippet}\n }}")
    });
    let url = format!("http://127.0.0.1:{}", ng.port);
    Nginx { _ng: ng, url }
}

/// A published tree as swarm lays it out: the index and one release.
fn make_tree(tree: &Path, big: usize) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "r1/dev-libs/libfoo/libfoo-1.2-1.gpkg.tar".into(),
            (0..10_240u32).map(|i| (i % 251) as u8).collect(),
        ),
        (
            "r1/x11-libs/gtk+/gtk+-3.24.43-1.gpkg.tar".into(),
            vec![7u8; 4096],
        ),
        (
            "r1/big/big/big-1-1.gpkg.tar".into(),
            (0..big).map(|i| (i % 253) as u8).collect(),
        ),
    ];
    for (p, bytes) in &files {
        let path = tree.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
    }
    let index = "PACKAGES: 2\nTIMESTAMP: 1\nVERSION: 0\n\nCPV: dev-libs/libfoo-1.2\nPATH: r1/dev-libs/libfoo/libfoo-1.2-1.gpkg.tar\n\n";
    std::fs::write(tree.join("Packages"), index).expect("index");
    std::fs::write(tree.join(".Packages.tmp-1"), "half").expect("tmp");
    std::fs::create_dir_all(tree.join(".creating-r2")).expect("dir");
    std::fs::write(tree.join(".creating-r2/x"), "x").expect("x");
    let mut all = files;
    all.push(("Packages".into(), index.as_bytes().to_vec()));
    all
}

/// (status, headers that matter, body).
fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let keep = [
        "content-length",
        "content-range",
        "accept-ranges",
        "last-modified",
    ];
    let hs = keep
        .iter()
        .filter_map(|k| resp.header(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    let mut body = Vec::new();
    let _ = resp.into_reader().read_to_end(&mut body);
    (status, hs, body)
}

#[test]
fn the_dist_nginx_snippet_serves_the_binhost_as_swarm_serve_does() {
    let Some(bin) = support::nginx::find() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("binhost");
    let files = make_tree(&tree, 100_000);
    let ng = start_nginx(&bin, &tmp.path().join("nginx"), &tree);
    let tree_s = tree.to_string_lossy().into_owned();
    let swarm = Server::start(
        &tmp.path().join("data"),
        &[("BINHOST_PATH", tree_s.as_str())],
    );
    for base in [
        format!("{}/binhost", ng.url),
        format!("{}/binhost", swarm.url),
    ] {
        for (path, bytes) in &files {
            let (code, hs, body) = fetch("GET", &format!("{base}/{path}"), &[]);
            assert_eq!(code, 200, "{base}/{path}");
            assert_eq!(&body, bytes, "{base}/{path}");
            let len = bytes.len().to_string();
            assert!(
                hs.contains(&("content-length".into(), len)),
                "{base}/{path}: {hs:?}"
            );
            assert!(
                hs.iter().any(|(k, _)| k == "last-modified"),
                "{base}/{path}: {hs:?}"
            );
            let (code, hs, body) = fetch("HEAD", &format!("{base}/{path}"), &[]);
            assert_eq!((code, body.len()), (200, 0), "HEAD {base}/{path}");
            assert!(
                hs.contains(&("content-length".into(), bytes.len().to_string())),
                "HEAD {base}/{path}: {hs:?}"
            );
        }
        let (path, bytes) = &files[0];
        let (code, hs, body) = fetch(
            "GET",
            &format!("{base}/{path}"),
            &[("Range", "bytes=100-199")],
        );
        assert_eq!(code, 206, "{base} range");
        assert_eq!(body, bytes[100..200].to_vec(), "{base} range");
        assert!(
            hs.contains(&(
                "content-range".into(),
                format!("bytes 100-199/{}", bytes.len())
            )),
            "{hs:?}"
        );
        let (code, _, _) = fetch(
            "GET",
            &format!("{base}/{path}"),
            &[("Range", "bytes=999999-")],
        );
        assert_eq!(code, 416, "{base} range past the end");
        for hidden in [
            ".Packages.tmp-1",
            ".creating-r2/x",
            "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "r1/missing.gpkg.tar",
            "",
        ] {
            let (code, _, _) = fetch("GET", &format!("{base}/{hidden}"), &[]);
            assert!(
                code == 404 || code == 403,
                "{base}/{hidden} answered {code}"
            );
        }
        let (code, _, _) = fetch("PUT", &format!("{base}/Packages"), &[]);
        assert!(code == 403 || code == 405, "{base}: PUT answered {code}");
    }
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn measure_binhost_throughput_against_nginx() {
    let Some(bin) = support::nginx::find() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("binhost");
    let size = 64 << 20;
    make_tree(&tree, size);
    let many: Vec<(String, usize)> = (0..400usize)
        .map(|i| {
            let p = format!("r1/many/pkg{}/pkg{i}-1-1.gpkg.tar", i % 20);
            let size = 8192 + (i * 7919) % (56 << 10);
            let path = tree.join(&p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, vec![(i % 251) as u8; size]).expect("write");
            (p, size)
        })
        .collect();
    let ng = start_nginx(&bin, &tmp.path().join("nginx"), &tree);
    let tree_s = tree.to_string_lossy().into_owned();
    let swarm = Server::start(
        &tmp.path().join("data"),
        &[("BINHOST_PATH", tree_s.as_str())],
    );
    for (name, base) in [("nginx", &ng.url), ("swarm serve", &swarm.url)] {
        let url = format!("{base}/binhost/r1/big/big/big-1-1.gpkg.tar");
        let _ = fetch("GET", &url, &[]);
        let rounds = 8;
        let t = Instant::now();
        for _ in 0..rounds {
            let (code, _, body) = fetch("GET", &url, &[]);
            assert_eq!((code, body.len()), (200, size));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {rounds} x {} MiB in {secs:.2} s = {:.0} MiB/s",
            size >> 20,
            (rounds * (size >> 20)) as f64 / secs
        );
        let small = format!("{base}/binhost/r1/dev-libs/libfoo/libfoo-1.2-1.gpkg.tar");
        let n = 500;
        let t = Instant::now();
        for _ in 0..n {
            let (code, _, _) = fetch("GET", &small, &[]);
            assert_eq!(code, 200);
        }
        eprintln!(
            "{name}: {n} GETs of one 10 KiB file, one connection each, {:.0}/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        // Many different small packages, as a client installing a world fetches them.
        let t = Instant::now();
        let mut bytes = 0usize;
        for (p, size) in &many {
            let (code, _, body) = fetch("GET", &format!("{base}/binhost/{p}"), &[]);
            assert_eq!((code, body.len()), (200, *size));
            bytes += size;
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {} different files of 8-64 KiB, one connection each, {:.0}/s, {:.1} MiB/s",
            many.len(),
            many.len() as f64 / secs,
            bytes as f64 / secs / (1 << 20) as f64
        );
        // The same from 4 clients at once, each keeping its connection.
        let t = Instant::now();
        std::thread::scope(|s| {
            for c in 0..4 {
                let many = &many;
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    for (p, size) in many.iter().skip(c).step_by(4) {
                        let resp = agent
                            .get(&format!("{base}/binhost/{p}"))
                            .call()
                            .expect("GET");
                        let mut body = Vec::new();
                        resp.into_reader().read_to_end(&mut body).expect("body");
                        assert_eq!(body.len(), *size);
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: the same from 4 keep-alive clients at once, {:.0}/s, {:.1} MiB/s",
            many.len() as f64 / secs,
            bytes as f64 / secs / (1 << 20) as f64
        );
    }
}
