//! What one lease may stage, against a real `swarm serve` on 127.0.0.1 (h16's F3): a build of
//! a version its operator admits, of the slot it asks for, and of one package version only. A
//! drone holding `app-misc/foo` staged `foo-1`, `foo-2` and `foo-99999`, each went into the
//! next release, and clients upgrading took the highest.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use support::packages::gpkg_of_slot;
use support::{request_raw, Server};

/// Uploads `cpv`'s package under `lease`.
fn put(s: &Server, dir: &Path, cpv: &str, slot: &str, lease: u64) -> (u16, Value) {
    let lease = lease.to_string();
    request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/{cpv}.gpkg.tar", s.url),
        Some(&gpkg_of_slot(dir, cpv, slot)),
        None,
        &[("X-Swarm-Lease", lease.as_str())],
    )
}

/// Asks whether an upload of `cpv` under `lease` of `size` bytes would be
/// taken, sending no body (`X-Swarm-Check`).
fn check(s: &Server, cpv: &str, lease: u64, size: u64) -> (u16, Value) {
    let (lease, size) = (lease.to_string(), size.to_string());
    request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/{cpv}.gpkg.tar", s.url),
        Some(b"".as_slice()),
        None,
        &[
            ("X-Swarm-Lease", lease.as_str()),
            ("X-Swarm-Check", "1"),
            ("X-Swarm-Size", size.as_str()),
        ],
    )
}

fn staged(s: &Server, category: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.data_dir.join("staging").join(category))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Registers each of `drones` (without a credential, from loopback) and has it take one
/// package: package as queued → (drone, lease).
fn take_work<'a>(s: &Server, drones: &[&'a str]) -> BTreeMap<String, (&'a str, u64)> {
    let mut leases = BTreeMap::new();
    for &drone in drones {
        s.post(
            "/api/v1/register",
            &json!({"node_name": drone, "capabilities": {"cores": 8}}),
        );
        let w = s.get(&format!("/api/v1/work?id={drone}")).1;
        let package = w["package"].as_str().expect("a package").to_string();
        let lease = w["lease"].as_u64().expect("a lease");
        leases.insert(package, (drone, lease));
    }
    leases
}

#[test]
fn a_lease_stages_one_version_its_operator_admits_of_the_slot_it_asks_for() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(&dir.path().join("data"), &[]);
    let (code, v) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": [">=app-misc/foo-5", "app-misc/bar:2"]}),
    );
    assert_eq!(code, 200, "{v}");
    let leases = take_work(&s, &["d1", "d2"]);
    let foo = leases[">=app-misc/foo-5"].1;
    let bar = leases["app-misc/bar:2"].1;

    // A version the operator does not admit.
    let (code, v) = put(&s, dir.path(), "app-misc/foo-1", "0", foo);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("is for >=app-misc/foo-5")),
        "{v}"
    );
    // One it admits; then the same version again; then another version.
    assert_eq!(put(&s, dir.path(), "app-misc/foo-5.1", "0", foo).0, 200);
    assert_eq!(put(&s, dir.path(), "app-misc/foo-5.1", "0", foo).0, 200);
    // Asked without the body (`X-Swarm-Check`), the server gives the same answers.
    assert_eq!(
        check(&s, "app-misc/foo-5.1", foo, 10),
        (200, json!({"status": "would_store"}))
    );
    assert_eq!(check(&s, "app-misc/foo-1", foo, 10).0, 400);
    let (code, v) = check(&s, "app-misc/foo-99999", foo, 10);
    assert_eq!((code, &v["field"]), (409, &json!("artifact")), "{v}");
    assert_eq!(check(&s, "app-misc/foo-5.1", foo + 100, 10).0, 409);
    assert_eq!(check(&s, "app-misc/foo-5.1", foo, u64::MAX).0, 413);
    let (code, v) = put(&s, dir.path(), "app-misc/foo-99999", "0", foo);
    assert_eq!(code, 409, "{v}");
    // A refusal of the file: an agent reads a 409 on X-Swarm-Lease as its lease gone.
    assert_eq!(v["field"], "artifact", "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(
            "already stored app-misc/foo-5.1.gpkg.tar: a lease is one build of one package version"
        )),
        "{v}"
    );
    // The slot the lease asks for.
    let (code, v) = put(&s, dir.path(), "app-misc/bar-1", "3", bar);
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("SLOT 3")),
        "{v}"
    );
    assert_eq!(put(&s, dir.path(), "app-misc/bar-1", "2", bar).0, 200);
    assert_eq!(
        staged(&s, "app-misc"),
        ["bar-1.gpkg.tar", "foo-5.1.gpkg.tar"],
        "nothing refused was staged"
    );
}

/// h109: a drone stores its binary before it reports, and a binary whose build then
/// failed, or whose build has not reported yet, went into the next release and from
/// there onto clients. A release takes only what a successful build stored.
#[test]
fn a_release_takes_only_binaries_whose_builds_succeeded() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(&dir.path().join("data"), &[]);
    let atoms = [
        "=app-misc/good-1",
        "=app-misc/bad-1",
        "=app-misc/late-1",
        "=app-misc/copied-1",
        "=app-misc/left-1",
        "=app-misc/back-1",
    ];
    let (code, v) = s.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
    let leases = take_work(&s, &["d1", "d2", "d3", "d4", "d5", "d6"]);
    let report = |atom: &str, status: &str| {
        let (drone, lease) = leases[atom];
        let body = json!({"id": drone, "package": atom, "lease": lease, "status": status});
        let (code, v) = s.post("/api/v1/complete", &body);
        assert_eq!(code, 200, "{body} -> {v}");
    };
    for atom in atoms {
        let cpv = atom.trim_start_matches('=');
        let (code, v) = put(&s, dir.path(), cpv, "0", leases[atom].1);
        assert_eq!(code, 200, "{cpv}: {v}");
    }
    report("=app-misc/good-1", "success");
    // A failed report sent again for a build recorded a success is not recorded, and takes
    // nothing out of staging.
    report("=app-misc/good-1", "failed");
    report("=app-misc/bad-1", "failed");
    report("=app-misc/copied-1", "failed");
    let (drone, lease) = leases["=app-misc/back-1"];
    let body = json!({"id": drone, "package": "=app-misc/back-1", "lease": lease});
    let (code, v) = s.post("/api/v1/return", &body);
    assert_eq!(code, 200, "{v}");
    // A build recorded as failed or given back takes its binary out of staging at once
    // (h112 L6).
    assert_eq!(
        staged(&s, "app-misc"),
        ["good-1.gpkg.tar", "late-1.gpkg.tar", "left-1.gpkg.tar"]
    );
    // A drone that stops gives its lease back without a report: its binary goes at the next
    // release create, while the history still knows the lease (h111 F4).
    let (code, v) = s.post(
        "/api/v1/deregister",
        &json!({"id": leases["=app-misc/left-1"].0}),
    );
    assert_eq!(code, 200, "{v}");
    // The operator puts a binary of their own in place of the failed build's upload (as a
    // v3 drone's rsync would): no upload placed it, so it is neither removed nor refused
    // under the failed build's lease (h111 F7).
    let copied = s.data_dir.join("staging/app-misc/copied-1.gpkg.tar");
    // Another build than the one uploaded: the same bytes would be the failed build's.
    support::packages::big_gpkg("app-misc/copied-1", 4096, &copied.with_extension("part"));
    std::fs::rename(copied.with_extension("part"), &copied).expect("rename");

    let release = |name: &str| {
        let (code, v) = s.admin_post("/api/v1/releases", &json!({ "name": name }));
        assert_eq!(code, 201, "{v}");
        let (_, shown) = s.get(&format!("/api/v1/releases/{name}"));
        let mut cpvs: Vec<String> = shown["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("entries: {shown}"))
            .iter()
            .map(|e| e["cpv"].as_str().expect("cpv").to_string())
            .collect();
        cpvs.sort();
        (cpvs, v)
    };
    let (cpvs, v) = release("r1");
    assert_eq!(cpvs, ["app-misc/copied-1", "app-misc/good-1"], "{v}");
    let skipped = v["skipped"].to_string();
    assert!(skipped.contains("has not reported yet"), "{skipped}");
    // The given-back build's binary is gone from staging; the one still building stays.
    assert_eq!(
        staged(&s, "app-misc"),
        ["copied-1.gpkg.tar", "good-1.gpkg.tar", "late-1.gpkg.tar"]
    );
    let removed = v["removed_from_staging"].to_string();
    assert!(
        removed.contains("app-misc/left-1.gpkg.tar") && removed.contains("ended "),
        "{removed}"
    );

    // Once its build reports success, the waiting binary is released.
    report("=app-misc/late-1", "success");
    let (cpvs, v) = release("r2");
    assert_eq!(
        cpvs,
        ["app-misc/copied-1", "app-misc/good-1", "app-misc/late-1"],
        "{v}"
    );
}

/// At start, a record of the old form (the lease alone) is given its file's digest, and the
/// records of another farm (a new farm on an old staging volume) are set aside: both run by
/// the server itself, before it listens (h113 F3, h114 F8).
#[test]
fn a_start_upgrades_old_records_and_sets_another_farms_aside() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start(&dir.path().join("data"), &[]);
    let (code, v) = s.admin_post(
        "/api/v1/queue",
        &json!({ "packages": ["=app-misc/kept-1"] }),
    );
    assert_eq!(code, 200, "{v}");
    let leases = take_work(&s, &["d1"]);
    let lease = leases["=app-misc/kept-1"].1;
    let (code, v) = put(&s, dir.path(), "app-misc/kept-1", "0", lease);
    assert_eq!(code, 200, "{v}");
    let staging = s.data_dir.join("staging");
    let record = staging.join(".leases/app-misc/kept-1.gpkg.tar");
    let words = |text: &str| text.split_whitespace().count();
    assert_eq!(words(&std::fs::read_to_string(&record).expect("record")), 3);

    std::fs::write(&record, format!("{lease}\n")).expect("old form");
    s.restart();
    let upgraded = std::fs::read_to_string(&record).expect("record");
    assert_eq!(words(&upgraded), 3, "{upgraded:?}");
    assert!(upgraded.starts_with(&format!("{lease} ")), "{upgraded:?}");

    std::fs::write(staging.join(".leases/.farm"), "farm-of-old\n").expect("marker");
    s.restart();
    assert!(!record.exists(), "another farm's record stays in .leases");
    let aside = staging.join(".leases-of-farm-of-old/app-misc/kept-1.gpkg.tar");
    assert_eq!(
        std::fs::read_to_string(&aside).expect("set aside"),
        upgraded
    );
}
