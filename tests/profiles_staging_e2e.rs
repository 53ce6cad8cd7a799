//! One atom in two profiles, over a real `swarm serve` on 127.0.0.1 (issue 17): a push may
//! name the same atom for two profiles; each profile's build is staged in its own tree (the
//! default profile's in staging, a named one's in `staging/.profiles/<P>/`), found from the
//! uploader's lease while the upload URL names only the atom (the v3 wire); a drone of
//! profile B cannot upload over profile A's staged file, a success it reports without its
//! own upload is refused although A's file is there, and each profile's release takes only
//! its own build. The drones are enrolled and spoken for over the HTTP API.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use support::{request_raw, Server};
use swarm_net::binpkg::write_gpkg;

/// A valid gpkg of `cpv` whose one file says who built it.
fn gpkg(dir: &Path, cpv: &str, builder: &str) -> Vec<u8> {
    let out = dir.join(format!("{}-{builder}.gpkg.tar", cpv.replace('/', "_")));
    let meta: BTreeMap<String, String> = [("SLOT", "0"), ("KEYWORDS", "amd64")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let readme = format!("built by {builder}\n");
    write_gpkg(
        cpv,
        &meta,
        &[("usr/share/doc/x/README", readme.as_bytes())],
        &out,
    )
    .expect("write_gpkg");
    std::fs::read(out).expect("read")
}

fn enroll(server: &Server, name: &str) -> String {
    let (code, v) = server.admin_post(&format!("/api/v1/nodes/{name}/enroll"), &json!({}));
    assert_eq!(code, 200, "enroll {name}: {v}");
    v["token"].as_str().expect("token").to_string()
}

/// A drone request with its token and extra headers; any status is returned.
fn as_drone(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    request_raw(
        method,
        &format!("{}{path}", server.url),
        body,
        Some(token),
        headers,
    )
}

fn put(server: &Server, token: &str, path: &str, body: &[u8], lease: Option<u64>) -> (u16, Value) {
    let sha = hex::encode(Sha256::digest(body));
    let lease = lease.map(|l| l.to_string());
    let mut headers = vec![("X-Sha256", sha.as_str())];
    if let Some(l) = &lease {
        headers.push(("X-Swarm-Lease", l.as_str()));
    }
    as_drone(
        server,
        token,
        "PUT",
        &format!("/api/v1/artifacts/{path}"),
        Some(body),
        &headers,
    )
}

fn complete(server: &Server, token: &str, package: &str, lease: u64) -> Value {
    report(server, token, package, lease, "success")
}

/// A drone's report of `status` for its lease of `package`; it must be answered 200.
fn report(server: &Server, token: &str, package: &str, lease: u64, status: &str) -> Value {
    let body = json!({"package": package, "status": status, "lease": lease});
    let (code, v) = as_drone(
        server,
        token,
        "POST",
        "/api/v1/complete",
        Some(body.to_string().as_bytes()),
        &[],
    );
    assert_eq!(code, 200, "{body} -> {v}");
    v
}

/// (profile, atom) → (state, lease, drone) of every package in the queue.
fn queue(server: &Server) -> BTreeMap<(String, String), (String, u64, String)> {
    let (_, q) = server.get("/api/v1/queue?limit=100");
    q["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            (
                (
                    p["profile"].as_str().unwrap_or("default").to_owned(),
                    p["atom"].as_str().expect("atom").to_owned(),
                ),
                (
                    p["status"]["state"].as_str().unwrap_or("?").to_owned(),
                    p["status"]["lease"].as_u64().unwrap_or(0),
                    p["status"]["drone"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn one_atom_in_two_profiles_is_staged_twice_and_neither_drone_can_take_the_others_build() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"), &[]);
    let staging = server.data_dir.join("staging");
    let (a, b) = (enroll(&server, "drone-a"), enroll(&server, "drone-b"));
    for (token, name, cflags) in [(&a, "drone-a", "-O2"), (&b, "drone-b", "-O3")] {
        register(&server, token, name, cflags);
    }
    expect_a_and_fast_o3(&server);

    // One push names each atom for both profiles (and foo twice for fast: one package).
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": [
            "=dev-libs/foo-1.0", "=dev-libs/bar-1.0",
            {"atom": "=dev-libs/foo-1.0", "profile": "fast"},
            {"atom": "=dev-libs/bar-1.0", "profile": "fast"},
            {"atom": "=dev-libs/foo-1.0", "profile": "fast"},
        ]}),
    );
    assert_eq!(code, 200, "the same atom for two profiles is legal: {v}");
    assert_eq!(queue(&server).len(), 4, "{v}");

    // Each drone is handed its own profile's two packages (drone-b first: the atom's latest
    // attempt is the default profile's, which fast's release must not take for its own).
    for token in [&b, &a] {
        for _ in 0..2 {
            let (code, v) = as_drone(
                &server,
                token,
                "GET",
                "/api/v1/work?free_slots=1",
                None,
                &[],
            );
            assert_eq!(code, 200, "{v}");
        }
    }
    let q = queue(&server);
    let lease = |profile: &str, atom: &str, drone: &str| {
        let (state, lease, holder) = &q[&(profile.to_owned(), atom.to_owned())];
        assert_eq!(
            (state.as_str(), holder.as_str()),
            ("assigned", drone),
            "{q:?}"
        );
        *lease
    };
    let (a_foo, a_bar) = (
        lease("default", "=dev-libs/foo-1.0", "drone-a"),
        lease("default", "=dev-libs/bar-1.0", "drone-a"),
    );
    let (b_foo, b_bar) = (
        lease("fast", "=dev-libs/foo-1.0", "drone-b"),
        lease("fast", "=dev-libs/bar-1.0", "drone-b"),
    );

    // drone-a's foo goes to the default profile's staging, as before profiles.
    let foo_path = "dev-libs/foo-1.0.gpkg.tar";
    let a_file = gpkg(dir, "dev-libs/foo-1.0", "drone-a");
    let (code, v) = put(&server, &a, foo_path, &a_file, Some(a_foo));
    assert_eq!(code, 200, "{v}");
    let default_foo = staging.join(foo_path);
    assert_eq!(std::fs::read(&default_foo).expect("staged"), a_file);

    // drone-b cannot upload under drone-a's lease; under its own (named or not) its file
    // goes to fast's tree, and drone-a's file stays as it was.
    let b_file = gpkg(dir, "dev-libs/foo-1.0", "drone-b");
    let (code, v) = put(&server, &b, foo_path, &b_file, Some(a_foo));
    assert_eq!(
        (code, v["field"].as_str()),
        (409, Some("X-Swarm-Lease")),
        "{v}"
    );
    let (code, v) = put(&server, &b, foo_path, &b_file, None);
    assert_eq!(code, 200, "{v}");
    let fast_foo = staging.join(".profiles/fast").join(foo_path);
    assert_eq!(std::fs::read(&fast_foo).expect("staged for fast"), b_file);
    assert_eq!(std::fs::read(&default_foo).expect("staged"), a_file);
    let (code, v) = put(&server, &b, foo_path, &b_file, Some(b_foo));
    assert_eq!(code, 200, "its own lease again: {v}");

    // Both successes count, each on its own upload.
    for (token, lease) in [(&b, b_foo), (&a, a_foo)] {
        let v = complete(&server, token, "=dev-libs/foo-1.0", lease);
        assert_eq!(v["accepted"], true, "{v}");
    }

    // drone-a uploads bar; drone-b's success for bar without its own upload is refused,
    // though drone-a's bar is staged.
    let bar_path = "dev-libs/bar-1.0.gpkg.tar";
    let (code, v) = put(
        &server,
        &a,
        bar_path,
        &gpkg(dir, "dev-libs/bar-1.0", "drone-a"),
        Some(a_bar),
    );
    assert_eq!(code, 200, "{v}");
    let v = complete(&server, &b, "=dev-libs/bar-1.0", b_bar);
    assert_eq!(
        (&v["accepted"], v["recorded"].as_str()),
        (&Value::Bool(false), Some("missing_binary")),
        "{v}"
    );
    let v = complete(&server, &a, "=dev-libs/bar-1.0", a_bar);
    assert_eq!(v["accepted"], true, "{v}");
    let q = queue(&server);
    let state = |profile: &str, atom: &str| q[&(profile.to_owned(), atom.to_owned())].0.clone();
    assert_eq!(state("default", "=dev-libs/foo-1.0"), "built", "{q:?}");
    assert_eq!(state("fast", "=dev-libs/foo-1.0"), "built", "{q:?}");
    assert_eq!(state("default", "=dev-libs/bar-1.0"), "built", "{q:?}");
    assert_ne!(state("fast", "=dev-libs/bar-1.0"), "built", "{q:?}");

    // Each profile's release takes its own tree: fast's holds drone-b's foo only.
    for (query, want) in [("?profile=fast", 1), ("", 2)] {
        let (code, v) = server.admin_post(&format!("/api/v1/releases{query}"), &json!({}));
        assert_eq!(code, 201, "{v}");
        assert_eq!(v["release"]["packages"], want, "{query}: {v}");
    }
    let (_, fast) = server.get("/api/v1/releases?profile=fast");
    let name = fast["releases"][0]["name"].as_str().expect("a release");
    let (_, shown) = server.get(&format!("/api/v1/releases/{name}?profile=fast"));
    let b_sha = hex::encode(Sha256::digest(&b_file));
    assert!(shown.to_string().contains(&b_sha), "{shown}");
}

/// Registers an enrolled drone with `CFLAGS`.
fn register(server: &Server, token: &str, name: &str, cflags: &str) {
    let body = json!({"name": name, "capabilities": {"cores": 8, "ram_gb": 16, "env": {"CFLAGS": cflags}}});
    let (code, v) = as_drone(
        server,
        token,
        "POST",
        "/api/v1/register",
        Some(body.to_string().as_bytes()),
        &[],
    );
    assert_eq!(code, 200, "{v}");
}

/// The default profile expects drone-a's environment; profile fast expects `CFLAGS=-O3`.
fn expect_a_and_fast_o3(server: &Server) {
    for body in [
        json!({"action": "expect_env", "drone": "drone-a"}),
        json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3"}}),
    ] {
        let (code, v) = server.admin_post("/api/v1/control", &body);
        assert_eq!(code, 200, "{v}");
    }
}

/// The lease `drone` holds of (`profile`, `atom`), after asking for one package of work.
fn take_work(server: &Server, token: &str, profile: &str, atom: &str, drone: &str) -> u64 {
    let (code, v) = as_drone(server, token, "GET", "/api/v1/work?free_slots=1", None, &[]);
    assert_eq!(code, 200, "{v}");
    let q = queue(server);
    let (state, lease, holder) = &q[&(profile.to_owned(), atom.to_owned())];
    assert_eq!(
        (state.as_str(), holder.as_str()),
        ("assigned", drone),
        "{q:?}"
    );
    *lease
}

/// An upload whose lease is reclaimed while its body streams, and the package leased again to
/// another drone that uploads its own build first, is refused when its body ends: it neither
/// replaces the new lease's file (whose success must still count) nor stages a build of a
/// lease that is gone. The lease is checked once more just before the file goes in place.
#[test]
fn an_upload_whose_lease_is_reclaimed_mid_body_stores_nothing_and_leaves_the_new_leases_file() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"), &[]);
    let (a, b) = (enroll(&server, "drone-a"), enroll(&server, "drone-b"));
    register(&server, &a, "drone-a", "-O3");
    register(&server, &b, "drone-b", "-O3");
    let body = json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3"}});
    let (code, v) = server.admin_post("/api/v1/control", &body);
    assert_eq!(code, 200, "{v}");
    let atom = "=dev-libs/foo-1.0";
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": [{"atom": atom, "profile": "fast"}]}),
    );
    assert_eq!(code, 200, "{v}");
    let a_lease = take_work(&server, &a, "fast", atom, "drone-a");

    // drone-a starts its upload and sends half the body.
    let foo_path = "dev-libs/foo-1.0.gpkg.tar";
    let a_file = gpkg(dir, "dev-libs/foo-1.0", "drone-a");
    let mut slow = std::net::TcpStream::connect(&server.addr).expect("connect");
    slow.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "PUT /api/v1/artifacts/{foo_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\n\
         X-Swarm-Lease: {a_lease}\r\nX-Sha256: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        hex::encode(Sha256::digest(&a_file)),
        a_file.len()
    );
    let half = a_file.len() / 2;
    slow.write_all(head.as_bytes()).expect("head");
    slow.write_all(&a_file[..half]).expect("half");
    slow.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Meanwhile drone-a gives the package back, drone-b takes it and uploads its build.
    report(&server, &a, atom, a_lease, "returned");
    let b_lease = take_work(&server, &b, "fast", atom, "drone-b");
    assert_ne!(a_lease, b_lease);
    let b_file = gpkg(dir, "dev-libs/foo-1.0", "drone-b");
    let (code, v) = put(&server, &b, foo_path, &b_file, Some(b_lease));
    assert_eq!(code, 200, "{v}");

    // drone-a's body ends: refused, drone-b's file stays.
    slow.write_all(&a_file[half..]).expect("rest");
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    let status = answer.split(' ').nth(1).unwrap_or("?").to_owned();
    assert_eq!(
        status, "409",
        "a reclaimed lease's upload is refused: {answer}"
    );
    assert!(
        answer.contains("was reclaimed while"),
        "for its lease: {answer}"
    );
    let staged = server
        .data_dir
        .join("staging/.profiles/fast")
        .join(foo_path);
    assert_eq!(std::fs::read(&staged).expect("staged"), b_file, "{answer}");
    let v = complete(&server, &b, atom, b_lease);
    assert_eq!(
        v["accepted"], true,
        "drone-b's success counts on its own upload: {v}"
    );
}

/// A drone that two profiles admit may hold `=dev-libs/foo-1.0` of one and `dev-libs/foo` of
/// the other (two atoms, so invariant 14 allows it); a file `dev-libs/foo-1.0.gpkg.tar` is a
/// build of either. An upload that names no lease is then refused as ambiguous, instead of
/// the server guessing the default profile's lease (and tree) for what may be fast's build.
#[test]
fn an_upload_naming_no_lease_that_two_of_the_callers_leases_cover_is_refused() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"), &[]);
    let a = enroll(&server, "drone-a");
    register(&server, &a, "drone-a", "-O3");
    expect_a_and_fast_o3(&server);
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/foo-1.0", {"atom": "dev-libs/foo", "profile": "fast"}]}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = as_drone(&server, &a, "GET", "/api/v1/work?free_slots=2", None, &[]);
    assert_eq!(code, 200, "{v}");
    let q = queue(&server);
    let held = |profile: &str, atom: &str| q[&(profile.to_owned(), atom.to_owned())].1;
    let (default_lease, fast_lease) = (
        held("default", "=dev-libs/foo-1.0"),
        held("fast", "dev-libs/foo"),
    );
    assert!(default_lease > 0 && fast_lease > 0, "{q:?}");

    let foo_path = "dev-libs/foo-1.0.gpkg.tar";
    let file = gpkg(dir, "dev-libs/foo-1.0", "drone-a");
    let (code, v) = put(&server, &a, foo_path, &file, None);
    assert_eq!(code, 400, "ambiguous without a lease: {v}");
    let staging = server.data_dir.join("staging");
    assert!(!staging.join(foo_path).exists(), "nothing was stored: {v}");
    // Naming the lease says which: fast's.
    let (code, v) = put(&server, &a, foo_path, &file, Some(fast_lease));
    assert_eq!(code, 200, "{v}");
    assert!(staging.join(".profiles/fast").join(foo_path).exists());
    let v = complete(&server, &a, "dev-libs/foo", fast_lease);
    assert_eq!(v["accepted"], true, "{v}");
    let (code, v) = server.admin_post("/api/v1/releases?profile=fast", &json!({}));
    assert_eq!(
        code, 201,
        "fast's build of dev-libs/foo is fast's to release: {v}"
    );
    assert_eq!(v["release"]["packages"], 1, "{v}");
}

/// Two credential-less (v3) drones: v3-a holds the default profile's `=dev-libs/foo-1.0`,
/// v3-b fast's `dev-libs/foo`. v3-b's `dev-libs/foo-1.0.gpkg.tar` naming no lease is a build of
/// either package; it is refused, not stored in the default tree under v3-a's lease (where
/// v3-a's success would then count fast's build as the default profile's).
#[test]
fn a_legacy_upload_naming_no_lease_that_two_assigned_leases_cover_is_refused() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"), &[]);
    for name in ["v3-a", "v3-b"] {
        let body = json!({"name": name, "capabilities": {"cores": 8, "ram_gb": 16, "env": {"CFLAGS": "-O3"}}});
        let (code, v) = server.post("/api/v1/register", &body);
        assert_eq!(code, 200, "{v}");
    }
    for body in [
        json!({"action": "expect_env", "drone": "v3-a"}),
        json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3"}}),
    ] {
        let (code, v) = server.admin_post("/api/v1/control", &body);
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/foo-1.0", {"atom": "dev-libs/foo", "profile": "fast"}]}),
    );
    assert_eq!(code, 200, "{v}");
    for name in ["v3-a", "v3-b"] {
        let (code, v) = server.get(&format!("/api/v1/work?id={name}&free_slots=1"));
        assert_eq!(code, 200, "{v}");
    }
    let q = queue(&server);
    let assigned: Vec<_> = q.values().filter(|(s, _, _)| s == "assigned").collect();
    assert_eq!(assigned.len(), 2, "{q:?}");

    let foo_path = "dev-libs/foo-1.0.gpkg.tar";
    let file = gpkg(dir, "dev-libs/foo-1.0", "v3-b");
    let sha = hex::encode(Sha256::digest(&file));
    let (code, v) = request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/{foo_path}", server.url),
        Some(&file),
        None,
        &[("X-Sha256", sha.as_str())],
    );
    assert_eq!(code, 400, "ambiguous without a lease: {v}");
    let staging = server.data_dir.join("staging");
    assert!(!staging.join(foo_path).exists(), "nothing was stored: {v}");
    assert!(
        !staging.join(".profiles/fast").join(foo_path).exists(),
        "{v}"
    );
}

/// A build uploaded under a lease that then ended without its report (the
/// drone died, or was reclaimed, between the upload and the report) does
/// not block the package: the next lease's upload replaces it and its
/// success counts. Before, every later upload of the package was refused
/// 409 ("already accepted under lease 1"), each refusal was reported as the
/// drone's upload failure, and after three the drones got no more work.
#[test]
fn a_file_staged_under_a_lease_that_ended_unreported_is_replaced_by_the_next_leases_build() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"), &[]);
    let (a, b) = (enroll(&server, "drone-a"), enroll(&server, "drone-b"));
    register(&server, &a, "drone-a", "-O2");
    register(&server, &b, "drone-b", "-O2");
    let atom = "=dev-libs/foo-1.0";
    let (code, v) = server.admin_post("/api/v1/queue", &json!({"packages": [atom]}));
    assert_eq!(code, 200, "{v}");
    let foo_path = "dev-libs/foo-1.0.gpkg.tar";
    let a_lease = take_work(&server, &a, "default", atom, "drone-a");
    let a_file = gpkg(dir, "dev-libs/foo-1.0", "drone-a");
    let (code, v) = put(&server, &a, foo_path, &a_file, Some(a_lease));
    assert_eq!(code, 200, "{v}");
    // drone-a's lease ends before its report: the package is handed back.
    report(&server, &a, atom, a_lease, "returned");
    let b_lease = take_work(&server, &b, "default", atom, "drone-b");
    assert_ne!(a_lease, b_lease);
    let b_file = gpkg(dir, "dev-libs/foo-1.0", "drone-b");
    let (code, v) = put(&server, &b, foo_path, &b_file, Some(b_lease));
    assert_eq!(
        code, 200,
        "the next lease's build replaces the unreported one: {v}"
    );
    let staged = server.data_dir.join("staging").join(foo_path);
    assert_eq!(std::fs::read(&staged).expect("staged"), b_file);
    let v = complete(&server, &b, atom, b_lease);
    assert_eq!(v["accepted"], true, "drone-b's success counts: {v}");
}
