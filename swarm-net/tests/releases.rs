//! Binhost releases through the real HTTP server, in process: valid gpkgs in
//! staging (made by `binpkg::write_gpkg`), `POST /api/v1/releases`, publish
//! behind the gate, `/binhost/` serving, rollback, keep, tag and purge.

mod common;

use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use swarm_net::binhost::BinhostOptions;
use swarm_net::binpkg::write_gpkg;
use swarm_net::server::{self, RunningServer, ServerOptions};

const TOKEN: &str = "release-test-token";

fn start(dir: &Path, keep_last: u32) -> RunningServer {
    let t0 = common::wall_now().0;
    let clock_base = std::time::Instant::now();
    server::start(ServerOptions {
        clock: Arc::new(move || {
            swarm_core::Timestamp(t0 + clock_base.elapsed().as_millis() as u64)
        }),
        binhost: BinhostOptions {
            keep_last,
            ..BinhostOptions::under(dir)
        },
        ..common::options(dir, TOKEN)
    })
    .expect("server starts")
}

fn call(method: &str, url: &str, body: Option<Value>, token: bool) -> (u16, Value, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut req = agent.request(method, url);
    if token {
        req = req.set("Authorization", &format!("Bearer {TOKEN}"));
    }
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// Releases under `dir` with no server, and their staging directory.
fn releases_under(dir: &Path) -> (swarm_net::binhost::Releases, std::path::PathBuf) {
    let staging = dir.join("staging");
    let releases = swarm_net::binhost::Releases::open(BinhostOptions::under(dir), &staging)
        .expect("open releases");
    (releases, staging)
}

fn stage(staging: &Path, cpv: &str, extra: &[(&str, &str)]) {
    let (cat, pf) = cpv.split_once('/').expect("cpv");
    let mut meta = common::gpkg_meta();
    for (k, v) in extra {
        meta.insert(k.to_string(), v.to_string());
    }
    let body = format!("{cpv}\n");
    let out = staging.join(cat).join(format!("{pf}-1.gpkg.tar"));
    write_gpkg(cpv, &meta, &[("usr/share/fixture", body.as_bytes())], &out).expect("write gpkg");
}

fn header(index: &str, key: &str) -> Option<String> {
    index
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_string))
}

fn paths(index: &str) -> Vec<String> {
    index
        .lines()
        .filter_map(|l| l.strip_prefix("PATH: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn releases_are_hardlinked_indexed_published_rolled_back_and_purged() {
    // A service's `UMask=0077`: the served tree must still be world-readable.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let staging = dir.join("staging");
    stage(&staging, "dev-libs/libfoo-1.2", &[("SLOT", "0/1.2")]);
    stage(
        &staging,
        "dev-libs/libbar-2.1",
        &[("RDEPEND", "dev-libs/libfoo:0/1.2=")],
    );
    stage(
        &staging,
        "app-misc/hello-1.0",
        &[("IUSE", "+ssl debug"), ("USE", "ssl")],
    );
    std::fs::write(staging.join("dev-libs/.upload-1-1.tmp"), b"half an upload").expect("tmp");
    std::fs::write(staging.join("dev-libs/zeros-1.0.gpkg.tar"), vec![0u8; 2048]).expect("junk");
    let srv = start(dir, 1);
    let base = format!("http://{}", srv.addr());
    let api = format!("{base}/api/v1/releases");

    let (code, _, _) = call("POST", &api, Some(json!({})), false);
    assert_eq!(code, 401, "creating a release needs the admin token");
    let (code, _, _) = call("GET", &format!("{base}/binhost/Packages"), None, false);
    assert_eq!(code, 404, "nothing is published yet");

    let (code, v, text) = call("POST", &api, Some(json!({"name": "r1"})), true);
    assert_eq!(code, 201, "{text}");
    assert_eq!(v["release"]["packages"], 3, "{text}");
    // No drone reported an environment and none is expected: the header has
    // what swarm knows by itself, and the answer says so.
    assert!(
        v["header"]["source"]
            .as_str()
            .is_some_and(|t| t.starts_with("no build environment known")),
        "{text}"
    );
    assert_eq!(v["header"]["keys"], json!([]), "{text}");
    let skipped = v["skipped"].to_string();
    assert!(
        skipped.contains("zeros-1.0.gpkg.tar") && skipped.contains("not a valid binary package"),
        "{skipped}"
    );
    let (code, _, _) = call("POST", &api, Some(json!({"name": "r1"})), true);
    assert_eq!(code, 409, "a name is used once");
    for bad in ["../x", ".hidden", "Packages", "diff", ""] {
        let (code, _, text) = call("POST", &api, Some(json!({"name": bad})), true);
        assert_eq!(code, 400, "{bad:?}: {text}");
    }

    // Hardlinks, not copies; 0644 files and 0755 directories whatever the umask.
    let rel = dir.join("binhost/r1/dev-libs/libfoo/libfoo-1.2-1.gpkg.tar");
    let (a, b) = (
        std::fs::metadata(&rel).expect("release file"),
        std::fs::metadata(staging.join("dev-libs/libfoo-1.2-1.gpkg.tar")).expect("staged"),
    );
    assert_eq!(
        (a.ino(), a.dev()),
        (b.ino(), b.dev()),
        "the release file is the staged inode"
    );
    assert_eq!(a.permissions().mode() & 0o777, 0o644);
    for d in [
        "binhost",
        "binhost/r1",
        "binhost/r1/dev-libs",
        "binhost/r1/dev-libs/libfoo",
    ] {
        let m = std::fs::metadata(dir.join(d))
            .expect("dir")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o755, "{d}");
    }
    assert_eq!(
        std::fs::metadata(dir.join("binhost/r1/Packages"))
            .expect("index")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // Publish r1: the gate passes (no generation queued), the index is served.
    let (code, v, text) = call("POST", &format!("{api}/r1/publish"), None, true);
    assert_eq!(code, 200, "{text}");
    let t1 = v["timestamp"].as_u64().expect("timestamp");
    let (code, _, idx1) = call("GET", &format!("{base}/binhost/Packages"), None, false);
    assert_eq!(code, 200);
    assert_eq!(header(&idx1, "PACKAGES").as_deref(), Some("3"));
    assert_eq!(header(&idx1, "TIMESTAMP"), Some(t1.to_string()));
    // The prefix is taken once: a profile named `binhost` was served this
    // index at /binhost/binhost/Packages (h12).
    let (code, _, _) = call(
        "GET",
        &format!("{base}/binhost/binhost/Packages"),
        None,
        false,
    );
    assert_eq!(code, 404);
    assert_eq!(
        header(&idx1, "CHOST").as_deref(),
        Some("x86_64-pc-linux-gnu")
    );
    let r1_paths = paths(&idx1);
    assert_eq!(r1_paths.len(), 3);
    for p in &r1_paths {
        assert!(p.starts_with("r1/"), "{p}");
        let (code, _, _) = call("GET", &format!("{base}/binhost/{p}"), None, false);
        assert_eq!(code, 200, "{p}");
    }

    // r2 drops hello (1 of 3 > 10 %): refused with the reason, then forced.
    std::fs::remove_file(staging.join("app-misc/hello-1.0-1.gpkg.tar")).expect("rm");
    let (code, _, text) = call("POST", &api, Some(json!({"name": "r2"})), true);
    assert_eq!(code, 201, "{text}");
    let (code, v, text) = call("POST", &format!("{api}/r2/publish"), None, true);
    assert_eq!(code, 409, "{text}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("drop 1 of the 3 published packages"),
        "{text}"
    );
    let (code, _, text) = call(
        "POST",
        &format!("{api}/r2/publish"),
        Some(json!({"force": true})),
        true,
    );
    assert_eq!(code, 400, "--force needs a reason: {text}");
    let (code, v, text) = call(
        "POST",
        &format!("{api}/r2/publish"),
        Some(json!({"force": true, "reason": "hello is retired"})),
        true,
    );
    assert_eq!(code, 200, "{text}");
    let t2 = v["timestamp"].as_u64().expect("timestamp");
    assert!(t2 > t1, "TIMESTAMP must grow: {t1} then {t2}");
    let (_, _, idx2) = call("GET", &format!("{base}/binhost/Packages"), None, false);
    assert_eq!(header(&idx2, "PACKAGES").as_deref(), Some("2"));
    // A client still working from r1's index finds every file.
    for p in &r1_paths {
        let (code, _, _) = call("GET", &format!("{base}/binhost/{p}"), None, false);
        assert_eq!(code, 200, "{p} after r2 was published");
    }
    let (_, ev, _) = call(
        "GET",
        &format!("{base}/api/v1/events?after=0&limit=100"),
        None,
        false,
    );
    let ev = ev.to_string();
    assert!(
        ev.contains("gate_overridden") && ev.contains("hello is retired"),
        "{ev}"
    );

    // Rollback: r1 again, with a newer TIMESTAMP (clients refetch only newer indexes).
    let (code, v, text) = call("POST", &format!("{api}/rollback"), None, true);
    assert_eq!(code, 200, "{text}");
    assert_eq!(v["release"], "r1");
    assert_eq!(v["rebuilds_clients_keep"], json!([]), "r2 rebuilt nothing");
    let t3 = v["timestamp"].as_u64().expect("timestamp");
    assert!(t3 > t2);
    let (_, _, idx3) = call("GET", &format!("{base}/binhost/Packages"), None, false);
    assert_eq!(paths(&idx3), r1_paths);
    let (code, _, _) = call("POST", &format!("{api}/rollback"), None, true);
    assert_eq!(code, 409, "r1 is the first publication: nothing before it");

    // Diff, keep, tag, purge. keep_last = 1: r3 is protected by age, r1 by
    // being published; r2 only by keep/tag.
    let (code, d, _) = call("GET", &format!("{api}/diff?a=r1&b=r2"), None, false);
    assert_eq!(code, 200);
    assert_eq!(d["removed"], json!(["app-misc/hello-1.0"]));
    assert_eq!(d["unchanged"], 2);
    let (code, _, text) = call("POST", &api, Some(json!({"name": "r3"})), true);
    assert_eq!(code, 201, "{text}");
    let purge = |dry: bool| {
        let (code, v, text) = call(
            "POST",
            &format!("{api}/purge"),
            Some(json!({"dry_run": dry})),
            true,
        );
        assert_eq!(code, 200, "{text}");
        v["purged"].clone()
    };
    assert_eq!(purge(true), json!(["r2"]));
    call("POST", &format!("{api}/r2/keep"), None, true);
    assert_eq!(purge(true), json!([]), "kept");
    call(
        "POST",
        &format!("{api}/r2/keep"),
        Some(json!({"keep": false})),
        true,
    );
    let (code, v, _) = call(
        "POST",
        &format!("{api}/r2/tag"),
        Some(json!({"tag": "stable"})),
        true,
    );
    assert_eq!((code, v["tags"].clone()), (200, json!(["stable"])));
    assert_eq!(purge(true), json!([]), "tagged");
    call(
        "POST",
        &format!("{api}/r2/tag"),
        Some(json!({"tag": "stable", "remove": true})),
        true,
    );
    assert_eq!(purge(false), json!(["r2"]));
    assert!(!dir.join("binhost/r2").exists());
    let (code, _, _) = call("GET", &format!("{api}/r2"), None, false);
    assert_eq!(code, 404);
    let (_, list, _) = call("GET", &api, None, false);
    assert_eq!(list["published"], "r1");
    let names: Vec<String> = list["releases"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["r1", "r3"]);
    for p in &r1_paths {
        let (code, _, _) = call("HEAD", &format!("{base}/binhost/{p}"), None, false);
        assert_eq!(code, 200, "purge never touches the published release: {p}");
    }
    srv.shutdown();
}

#[test]
fn the_gate_lists_every_missing_package_and_dependency_of_the_generation() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let staging = dir.join("staging");
    stage(&staging, "dev-libs/libbar-2.1", &[]);
    stage(&staging, "app-misc/hello-1.0", &[]);
    let srv = start(dir, 5);
    let base = format!("http://{}", srv.addr());
    let world = json!({"packages": [
        {"atom": "=dev-libs/libfoo-1.2"},
        {"atom": "=dev-libs/libbar-2.1", "deps": ["=dev-libs/libfoo-1.2"]},
        {"atom": "=app-misc/hello-1.0", "deps": ["=dev-libs/libbar-2.1"]},
        {"atom": "=app-misc/extra-3"}
    ], "portage_timestamp": "2026-12-01T00:00:00Z"});
    let (code, _, text) = call("POST", &format!("{base}/api/v1/queue"), Some(world), true);
    assert_eq!(code, 200, "{text}");
    let (code, _, text) = call(
        "POST",
        &format!("{base}/api/v1/releases"),
        Some(json!({"name": "partial"})),
        true,
    );
    assert_eq!(code, 201, "{text}");
    let (code, v, text) = call(
        "GET",
        &format!("{base}/api/v1/releases/partial/gate"),
        None,
        false,
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(v["passed"], false);
    // A route is matched by whole segments: this was served as `partial`.
    let (code, _, text) = call(
        "GET",
        &format!("{base}/api/v1/releasespartial/gate"),
        None,
        false,
    );
    assert_eq!(code, 404, "{text}");
    let reasons: Vec<String> = v["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().unwrap_or("").to_string())
        .collect();
    let want = [
        "=dev-libs/libfoo-1.2 is in the current generation but not in the release (not built yet)",
        "=app-misc/extra-3 is in the current generation but not in the release (not built yet)",
        "=dev-libs/libbar-2.1 needs =dev-libs/libfoo-1.2, which is queued but not in the release",
    ];
    for w in want {
        assert!(
            reasons.iter().any(|r| r == w),
            "missing {w:?} in {reasons:?}"
        );
    }
    assert_eq!(reasons.len(), want.len(), "{reasons:?}");
    let notes = v["verdict"]["notes"].to_string();
    assert!(notes.contains("no known Portage snapshot"), "{notes}");
    let (code, v, text) = call(
        "POST",
        &format!("{base}/api/v1/releases/partial/publish"),
        None,
        true,
    );
    assert_eq!(code, 409, "{text}");
    let err = v["error"].as_str().unwrap_or("");
    for w in want {
        assert!(err.contains(w), "the refusal lists {w:?}: {err}");
    }
    assert!(
        !dir.join("binhost/Packages").exists(),
        "a refused publish publishes nothing"
    );
    srv.shutdown();
}

#[test]
fn a_release_whose_every_staged_package_is_refused_says_so_and_names_one() {
    use swarm_net::binhost::{header::HeaderEnv, ReleaseError};
    let dir = tempfile::tempdir().expect("dir");
    let (releases, staging) = releases_under(dir.path());
    let none = |_: &str| (None, None);
    let env = HeaderEnv {
        recorded: &|_| None,
        expected: None,
    };
    let refuse_all = |cpv: &str, _: &str, _: &str| Some(format!("{cpv} is another profile's"));
    match releases.create_taking(None, 1_000, 1, &none, &env, &refuse_all, &|_| false) {
        Err(ReleaseError::Empty(_)) => {}
        other => panic!("an empty staging is Empty: {other:?}"),
    }
    stage(&staging, "dev-libs/foo-1.0", &[]);
    let e = releases
        .create_taking(None, 2_000, 1, &none, &env, &refuse_all, &|_| false)
        .expect_err("nothing to take");
    assert_eq!(e.status(), 409);
    assert!(
        e.to_string().contains(
            "holds 1 valid binary package(s), none of them this release's to take \
             (e.g. dev-libs/foo-1.0: dev-libs/foo-1.0 is another profile's)"
        ),
        "{e}"
    );
}

/// A release action the server could not carry out is in the activity feed
/// with its reason (a cron job's publish failing at night leaves a trace
/// beside the builds); an operator's own mistake is only answered.
#[test]
fn a_release_action_the_server_cannot_carry_out_is_recorded_as_an_event() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    stage(&dir.join("staging"), "dev-libs/libfoo-1.2", &[]);
    let srv = start(dir, 1);
    let base = format!("http://{}", srv.addr());
    let api = format!("{base}/api/v1/releases");
    let (code, _, text) = call("POST", &api, Some(json!({"name": "r1"})), true);
    assert_eq!(code, 201, "{text}");
    let (code, _, text) = call("POST", &format!("{api}/r1/publish"), None, true);
    assert_eq!(code, 200, "{text}");
    let (code, _, text) = call("POST", &format!("{api}/r9/publish"), None, true);
    assert_eq!(code, 404, "{text}");

    // The binhost's volume is gone from under the running server.
    let binhost = dir.join("binhost");
    std::fs::rename(&binhost, dir.join("binhost-away")).expect("unmount");
    std::fs::create_dir(&binhost).expect("empty mount point");
    let (code, _, text) = call("POST", &api, Some(json!({"name": "r2"})), true);
    assert_eq!(code, 503, "{text}");
    let (code, _, text) = call("POST", &format!("{api}/r1/publish"), None, true);
    assert_eq!(code, 503, "{text}");

    let (_, ev, text) = call(
        "GET",
        &format!("{base}/api/v1/events?after=0&limit=100"),
        None,
        false,
    );
    let releases: Vec<(String, String, String)> = ev["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {text}"))
        .iter()
        .filter(|e| e["kind"] == "release")
        .map(|e| {
            let s = |k: &str| e["details"][k].as_str().unwrap_or_default().to_string();
            (s("action"), s("release"), s("detail"))
        })
        .collect();
    let actions: Vec<&str> = releases.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        actions,
        ["created", "published", "create_failed", "publish_failed"],
        "{text}"
    );
    assert_eq!(releases[2].1, "r2");
    assert_eq!(releases[3].1, "r1");
    for failed in &releases[2..] {
        assert!(failed.2.contains("mounted"), "{failed:?}");
    }
    let (_, _, metrics) = call("GET", &format!("{base}/metrics"), None, true);
    for action in ["create", "publish"] {
        let line = format!("swarm_release_failures_total{{action=\"{action}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[test]
fn a_rollback_names_the_rebuilds_that_clients_who_fetched_them_keep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let staging = dir.join("staging");
    stage(&staging, "app-misc/x-1", &[("DESCRIPTION", "good")]);
    stage(&staging, "app-misc/y-1", &[]);
    let srv = start(dir, 5);
    let api = format!("http://{}/api/v1/releases", srv.addr());
    let publish = |name: &str| {
        let (code, _, text) = call("POST", &api, Some(json!({ "name": name })), true);
        assert_eq!(code, 201, "{text}");
        let (code, _, text) = call("POST", &format!("{api}/{name}/publish"), None, true);
        assert_eq!(code, 200, "{text}");
    };
    publish("good");
    // The same version rebuilt: a client of "bad" keeps its build after the
    // rollback (Portage prefers the newest build in its PKGDIR; h18).
    stage(&staging, "app-misc/x-1", &[("DESCRIPTION", "bad")]);
    publish("bad");
    let (code, v, text) = call("POST", &format!("{api}/rollback"), None, true);
    assert_eq!(code, 200, "{text}");
    assert_eq!(v["release"], "good", "{text}");
    assert_eq!(
        v["rebuilds_clients_keep"],
        json!(["app-misc/x-1"]),
        "{text}"
    );
    let (_, ev, _) = call(
        "GET",
        &format!("http://{}/api/v1/events?after=0&limit=100", srv.addr()),
        None,
        false,
    );
    assert!(
        ev.to_string().contains(
            "1 rebuilt at the same version, which clients that fetched them keep: app-misc/x-1"
        ),
        "{ev}"
    );
}

/// A release named by the clock skips names `reserved` says are taken: a profile named like
/// one had no tree yet, the default release took its name, and the profile's release then
/// wrote its index over the default one's (h31).
#[test]
fn a_made_up_release_name_is_none_that_is_reserved() {
    use swarm_net::binhost::header::HeaderEnv;
    let dir = tempfile::tempdir().expect("dir");
    let (releases, staging) = releases_under(dir.path());
    stage(&staging, "dev-libs/foo-1.0", &[]);
    let none = |_: &str| (None, None);
    let env = HeaderEnv {
        recorded: &|_| None,
        expected: None,
    };
    let at = 1_000_000; // 1970-01-01 00:16:40 UTC
    let profile = "19700101-001640";
    let created = releases
        .create_taking(None, at, 1, &none, &env, &|_, _, _| None, &|n| n == profile)
        .expect("create");
    assert_eq!(created.release.name, format!("{profile}-2"));
    assert!(!dir.path().join("binhost").join(profile).exists());
}

/// The refusal is asked about the very file the release linked, by its content: an upload
/// that replaces a name while a release is made is not judged in the linked file's place,
/// nor does it lend the linked file its record (h111 F5).
#[test]
fn a_refusal_is_asked_about_the_file_linked_not_what_the_name_holds_later() {
    use sha2::Digest;
    use swarm_net::binhost::header::HeaderEnv;
    let dir = tempfile::tempdir().expect("dir");
    let (releases, staging) = releases_under(dir.path());
    stage(&staging, "dev-libs/a-1", &[]);
    stage(&staging, "dev-libs/b-1", &[]);
    let b = staging.join("dev-libs/b-1-1.gpkg.tar");
    let sha = |p: &Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")));
    let b_linked = sha(&b);
    let rebuild = dir.path().join("rebuild");
    stage(&rebuild, "dev-libs/b-1", &[("BUILD_TIME", "2")]);
    let asked = std::cell::RefCell::new(Vec::new());
    let refuse = |_: &str, rel: &str, digest: &str| {
        if asked.borrow().is_empty() {
            // A rebuild of b replaces its name before b is asked about.
            std::fs::rename(rebuild.join("dev-libs/b-1-1.gpkg.tar"), &b).expect("replace");
        }
        asked
            .borrow_mut()
            .push((rel.to_string(), digest.to_string()));
        None
    };
    let none = |_: &str| (None, None);
    let env = HeaderEnv {
        recorded: &|_| None,
        expected: None,
    };
    releases
        .create_taking(None, 1_000, 1, &none, &env, &refuse, &|_| false)
        .expect("create");
    let asked = asked.into_inner();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[1].0, "dev-libs/b-1-1.gpkg.tar");
    assert_ne!(sha(&b), b_linked, "the name now holds the rebuild");
    assert_eq!(asked[1].1, b_linked, "asked about the file linked");
}
