//! Release actions interrupted (a crash, a failed write) and uploads that
//! land while a release is made, found by an attack with real processes:
//! the served index must always describe the very files it names, and a
//! start must put the binhost in step with `state.json`.

mod common;

use md5::Md5;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use swarm_core::release_gate::GateVerdict;
use swarm_net::binhost::header::HeaderEnv;
use swarm_net::binhost::{BinhostOptions, Releases};
use swarm_net::binpkg::write_gpkg;

/// Stages `cpv` as an upload lands: written beside, renamed over its name.
fn stage(staging: &Path, cpv: &str, body: &str) {
    let (cat, pf) = cpv.split_once('/').expect("cpv");
    let meta = common::gpkg_meta();
    let out = staging.join(cat).join(format!("{pf}-1.gpkg.tar"));
    let tmp = staging.join(cat).join(format!(".{pf}.upload"));
    write_gpkg(cpv, &meta, &[("usr/share/fixture", body.as_bytes())], &tmp).expect("gpkg");
    std::fs::rename(&tmp, &out).expect("into place");
}

fn open(dir: &Path) -> Releases {
    Releases::open(BinhostOptions::under(dir), &dir.join("staging")).expect("open")
}

fn create(r: &Releases, name: &str, now_ms: u64) {
    r.create(Some(name), now_ms, 1, &|_| (None, None), &HeaderEnv::NONE)
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

fn publish(r: &Releases, name: &str, now_ms: u64) {
    r.publish(name, now_ms, GateVerdict::default(), None)
        .unwrap_or_else(|e| panic!("publish {name}: {e}"));
}

/// A binhost with one package staged and release r1 made and published.
fn with_r1_published() -> (tempfile::TempDir, std::path::PathBuf, Releases) {
    let dir = tempfile::tempdir().expect("temp dir");
    let staging = dir.path().join("staging");
    stage(&staging, "dev-libs/a-1.0", "a");
    let r = open(dir.path());
    create(&r, "r1", 1_000_000);
    publish(&r, "r1", 1_001_000);
    (dir, staging, r)
}

/// Rewrites state.json as a swarm before `published_timestamp` wrote it.
fn as_older_state(dir: &Path) {
    let state_path = dir.join("releases/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state")).expect("json");
    state
        .as_object_mut()
        .expect("object")
        .remove("published_timestamp");
    std::fs::write(&state_path, serde_json::to_vec(&state).expect("json")).expect("old state");
}

/// The TIMESTAMP in an index's header.
fn timestamp_of(index: &str) -> u64 {
    index
        .lines()
        .find_map(|l| l.strip_prefix("TIMESTAMP: "))
        .and_then(|t| t.parse().ok())
        .expect("TIMESTAMP")
}

fn top(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("binhost/Packages")).unwrap_or_default()
}

/// Every entry of the index at `index` whose SIZE, MTIME, SHA1 or MD5 does
/// not match the file its PATH names (relative to `base`).
fn mismatches(index: &str, base: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for block in index.split("\n\n").skip(1) {
        let fields: BTreeMap<&str, &str> =
            block.lines().filter_map(|l| l.split_once(": ")).collect();
        let Some(path) = fields.get("PATH") else {
            continue;
        };
        let file = base.join(path);
        let Ok(bytes) = std::fs::read(&file) else {
            bad.push(format!("{path}: missing"));
            continue;
        };
        let mtime = std::fs::metadata(&file).expect("stat").mtime().to_string();
        let facts = [
            ("SIZE", bytes.len().to_string()),
            ("MTIME", mtime),
            ("SHA1", hex::encode(Sha1::digest(&bytes))),
            ("MD5", hex::encode(Md5::digest(&bytes))),
        ];
        for (key, real) in facts {
            if fields.get(key) != Some(&real.as_str()) {
                bad.push(format!(
                    "{path}: {key} {:?} but the file has {real}",
                    fields.get(key)
                ));
            }
        }
    }
    bad
}

/// Rebuilds replace staged files under their names while releases are made
/// (as drones rebuilding a new generation do): every release's index still
/// matches the files it links. Stat, inspect and link by staging name, at
/// three moments, put one build's checksums beside another's file.
#[test]
fn uploads_landing_while_a_release_is_made_never_put_wrong_checksums_in_its_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let staging = dir.path().join("staging");
    let cpvs: Vec<String> = (0..40).map(|i| format!("dev-libs/race{i}-1.0")).collect();
    for cpv in &cpvs {
        stage(&staging, cpv, "first build");
    }
    let r = open(dir.path());
    let stop = AtomicBool::new(false);
    let mut bad = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for cpv in &cpvs {
                    stage(
                        &staging,
                        cpv,
                        &format!("rebuild {round} {}", "x".repeat(round as usize % 97)),
                    );
                }
            }
        });
        for i in 0..12 {
            let name = format!("r{i}");
            create(&r, &name, 1_000_000 + i * 10_000);
            let release = dir.path().join("binhost").join(&name);
            let index = std::fs::read_to_string(release.join("Packages")).expect("index");
            bad.extend(
                mismatches(&index, &release)
                    .into_iter()
                    .map(|m| format!("{name}/{m}")),
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        bad.is_empty(),
        "{} wrong entries, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// `publish` saves the state before it writes the served index. A crash
/// between the two leaves the old index served: the next start writes the
/// index of the release the state publishes, with the TIMESTAMP the state
/// recorded (and as its mtime), and a later purge keeps that release.
#[test]
fn a_start_after_a_publish_cut_short_serves_the_release_the_state_publishes() {
    let (dir, staging, r) = with_r1_published();
    let served_r1 = top(dir.path());
    stage(&staging, "dev-libs/b-1.0", "b");
    create(&r, "r2", 1_002_000);
    publish(&r, "r2", 1_003_000);
    let served_r2 = top(dir.path());
    drop(r);
    // The crash: state.json says r2, the index is still r1's.
    std::fs::write(dir.path().join("binhost/Packages"), &served_r1).expect("old index");
    let r = open(dir.path());
    assert_eq!(
        top(dir.path()),
        served_r2,
        "the index the state publishes, byte for byte"
    );
    let ts = timestamp_of(&served_r2);
    let mtime = std::fs::metadata(dir.path().join("binhost/Packages"))
        .expect("stat")
        .mtime();
    assert_eq!(mtime as u64, ts, "Last-Modified is the TIMESTAMP");
    assert!(mismatches(&top(dir.path()), &dir.path().join("binhost")).is_empty());
    assert_eq!(r.list().1.as_deref(), Some("r2"));
    // The server records the completed publish as an event (h109 F3); a start
    // that had nothing to complete names nothing.
    assert_eq!(r.publish_completed_at_open(), Some("r2"));
    drop(r);
    assert_eq!(open(dir.path()).publish_completed_at_open(), None);
    let r = open(dir.path());
    // A state saved before this build (no published TIMESTAMP) with the
    // other release's index: rewritten with a TIMESTAMP above the served one.
    drop(r);
    as_older_state(dir.path());
    std::fs::write(dir.path().join("binhost/Packages"), &served_r1).expect("old index");
    let r = open(dir.path());
    let now = top(dir.path());
    assert!(now.contains("PATH: r2/"), "{now}");
    let new_ts = timestamp_of(&now);
    assert!(new_ts > ts, "{new_ts} after {ts}");
    assert_eq!(r.purge(false).expect("purge"), Vec::<String>::new());
    assert!(dir.path().join("binhost/r2/Packages").is_file());
}

/// What interrupted actions leave is removed at start: temporary files of
/// atomic writes, half-made and half-purged directories, and a release
/// directory with entries that no release list names (a create cut short
/// after its move into place), whose name can then be used again. A
/// profile's tree beside the releases is left alone.
#[test]
fn a_start_removes_what_interrupted_release_actions_left() {
    let (dir, _staging, r) = with_r1_published();
    create(&r, "r9", 1_002_000);
    drop(r);
    let binhost = dir.path().join("binhost");
    let state_dir = dir.path().join("releases");
    // r9 as a crashed create leaves it: in place, its entries saved, unlisted.
    let state_path = state_dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state")).expect("json");
    state["releases"]
        .as_array_mut()
        .expect("releases")
        .retain(|r| r["name"] != "r9");
    std::fs::write(&state_path, serde_json::to_vec(&state).expect("json")).expect("state");
    let temp_files = [
        binhost.join(".Packages.tmp-4242"),
        state_dir.join(".state.json.tmp-4242"),
    ];
    for p in &temp_files {
        std::fs::write(p, b"half").expect("temp file");
    }
    let half_dirs = [binhost.join(".creating-r3"), binhost.join(".purging-r0")];
    for d in &half_dirs {
        std::fs::create_dir_all(d.join("dev-libs")).expect("dir");
    }
    let profile_tree = binhost.join("desktop/r1");
    std::fs::create_dir_all(&profile_tree).expect("a profile's tree");
    let r = open(dir.path());
    for p in temp_files.iter().chain(&half_dirs) {
        assert!(!p.exists(), "{} is left", p.display());
    }
    assert!(!binhost.join("r9").exists(), "the unlisted release is gone");
    assert!(!state_dir.join("r9.json").exists());
    assert!(profile_tree.is_dir(), "a profile's tree stays");
    create(&r, "r9", 1_003_000);
    assert_eq!(r.list().1.as_deref(), Some("r1"));
    assert!(mismatches(&top(dir.path()), &binhost).is_empty());
}

/// A start from state written before `published_timestamp` was kept, whose
/// served index runs ahead of the clock (TIMESTAMPs grow by 6 s a publish):
/// the index it writes has a TIMESTAMP past the served one by more than
/// Portage's If-Modified-Since tolerance, or clients keep the stale copy.
#[test]
fn a_rewritten_index_outdates_the_one_clients_cached_even_ahead_of_the_clock() {
    // State of an older swarm, and this swarm's state beside an index an
    // older swarm's publish order left newer than it.
    for older_state in [true, false] {
        rewritten_index_outdates_the_served_one(older_state);
    }
}

fn rewritten_index_outdates_the_served_one(older_state: bool) {
    let (dir, staging, r) = with_r1_published();
    stage(&staging, "dev-libs/b-1.0", "b");
    create(&r, "r2", 1_002_000);
    drop(r);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let ahead = now_s + 3_600;
    // Served: r2's index an hour ahead; the state (older format) says r1.
    let r2_index = std::fs::read_to_string(dir.path().join("binhost/r2/Packages")).expect("r2");
    let served: String = r2_index
        .lines()
        .map(|l| match l.strip_prefix("PATH: ") {
            Some(p) => format!("PATH: r2/{p}\n"),
            None if l.starts_with("TIMESTAMP: ") => format!("TIMESTAMP: {ahead}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(dir.path().join("binhost/Packages"), served).expect("served");
    if older_state {
        as_older_state(dir.path());
    }
    let r = open(dir.path());
    let now = top(dir.path());
    assert!(now.contains("PATH: r1/"), "{now}");
    let ts = timestamp_of(&now);
    assert!(ts > ahead + 5, "{ts} must clear {ahead} + 5");
    assert_eq!(r.list().1.as_deref(), Some("r1"));
}

/// A publish whose index cannot be written changes nothing: the running
/// state and state.json still name the served release, and a purge keeps
/// it. A purge also never removes the release the served index points
/// into, whatever the state says.
#[test]
fn a_publish_that_cannot_write_the_index_leaves_the_served_release_published() {
    let (dir, staging, _) = with_r1_published();
    let r = Releases::open(
        BinhostOptions {
            keep_last: 1,
            ..BinhostOptions::under(dir.path())
        },
        &staging,
    )
    .expect("open");
    stage(&staging, "dev-libs/b-1.0", "b");
    create(&r, "r2", 1_002_000);
    let served = top(dir.path());
    // The index's temporary file cannot be made (a directory in its place).
    let blocker = dir
        .path()
        .join(format!("binhost/.Packages.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).expect("blocker");
    assert!(r
        .publish("r2", 1_003_000, GateVerdict::default(), None)
        .is_err());
    std::fs::remove_dir(&blocker).expect("unblock");
    assert_eq!(top(dir.path()), served, "the index is untouched");
    assert_eq!(r.list().1.as_deref(), Some("r1"));
    let state = std::fs::read_to_string(dir.path().join("releases/state.json")).expect("state");
    assert!(state.contains("\"published\": \"r1\""), "{state}");
    // The state names r2 (as a failed save-back leaves it); r1 is served.
    publish(&r, "r2", 1_004_000);
    std::fs::write(dir.path().join("binhost/Packages"), &served).expect("r1 served");
    assert_eq!(
        r.purge(false).expect("purge"),
        Vec::<String>::new(),
        "r1 is served"
    );
    assert!(mismatches(&top(dir.path()), &dir.path().join("binhost")).is_empty());
}

/// A binhost root that holds none of the listed releases (its volume not
/// mounted) is refused for create, publish and purge with a 503 that says
/// so, and nothing changes: a create there or a purge of the lists would
/// part them from the files.
#[test]
fn actions_on_a_binhost_root_without_its_releases_are_refused() {
    let (dir, _staging, r) = with_r1_published();
    drop(r);
    let binhost = dir.path().join("binhost");
    let away = dir.path().join("binhost-away");
    std::fs::rename(&binhost, &away).expect("unmount");
    std::fs::create_dir(&binhost).expect("empty mount point");
    let r = open(dir.path());
    let state_before = std::fs::read(dir.path().join("releases/state.json")).expect("state");
    let refused = [
        r.create(
            Some("r5"),
            2_000_000,
            1,
            &|_| (None, None),
            &HeaderEnv::NONE,
        )
        .err(),
        r.publish("r1", 2_000_000, GateVerdict::default(), None)
            .err(),
        r.purge(false).err(),
    ];
    for e in refused {
        let e = e.expect("refused");
        assert_eq!(e.status(), 503, "{e}");
        assert!(e.to_string().contains("mounted"), "{e}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("releases/state.json")).expect("state"),
        state_before
    );
    assert!(std::fs::read_dir(&binhost).expect("root").next().is_none());
}

/// A second server started on a data dir in use is refused by the store's
/// lock before it touches the releases: what the running one is making
/// (`.creating-*`) is not taken for a crash's leftovers.
#[test]
fn a_second_server_refused_on_a_running_data_dir_leaves_its_releases_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = swarm_net::server::start(common::options(dir.path(), "t")).expect("first");
    let making = dir.path().join("binhost/.creating-r9");
    std::fs::create_dir_all(making.join("dev-libs")).expect("a create in progress");
    assert!(swarm_net::server::start(common::options(dir.path(), "t")).is_err());
    assert!(making.is_dir(), "the first server's create is left alone");
    drop(first);
}

/// h109: a release named `state` wrote its entries over the bookkeeping, and
/// its purge deleted `state.json`; the next start then removed every release,
/// the served one too, and the next index went out with a TIMESTAMP below the
/// one clients had cached. Such names are refused, and a start that finds the
/// state lost keeps what the served index points into and dates the next
/// index after it.
#[test]
fn bookkeeping_names_are_refused_and_a_lost_state_never_removes_the_served_release() {
    let (dir, staging, r) = with_r1_published();
    for name in ["state", "inspect-cache"] {
        let refused = r.create(
            Some(name),
            1_002_000,
            1,
            &|_| (None, None),
            &HeaderEnv::NONE,
        );
        assert!(refused.is_err(), "a release named {name} was made");
        assert!(dir.path().join("releases/state.json").is_file());
    }
    let served = top(dir.path());
    drop(r);
    std::fs::remove_file(dir.path().join("releases/state.json")).expect("the state lost");
    let r = open(dir.path());
    assert!(
        dir.path().join("binhost/r1/Packages").is_file(),
        "the served release was removed"
    );
    assert_eq!(top(dir.path()), served);
    assert_eq!(
        mismatches(&served, &dir.path().join("binhost")),
        Vec::<String>::new()
    );
    // The clock went back: the next index must still outdate the cached one.
    stage(&staging, "dev-libs/b-1.0", "b");
    create(&r, "r2", 10_000);
    publish(&r, "r2", 11_000);
    assert!(timestamp_of(&top(dir.path())) > timestamp_of(&served));
}

/// h109: a package staged in a category named `Packages` (upper case is allowed) was a
/// directory where a release writes its index, and every create failed with a 500 until
/// someone found it. It is skipped, with the reason.
#[test]
fn a_package_in_a_category_named_like_the_index_is_skipped_not_a_failed_release() {
    let dir = tempfile::tempdir().expect("temp dir");
    let staging = dir.path().join("staging");
    stage(&staging, "dev-libs/a-1.0", "a");
    stage(&staging, "Packages/e24-1.0", "e");
    let r = open(dir.path());
    let created = r
        .create(
            Some("r1"),
            1_000_000,
            1,
            &|_| (None, None),
            &HeaderEnv::NONE,
        )
        .expect("the release is made");
    assert_eq!(created.release.packages, 1);
    assert!(
        created
            .skipped
            .iter()
            .any(|s| s.path.starts_with("Packages/") && s.reason.contains("index")),
        "{:?}",
        created.skipped
    );
}

/// h109 F3: a server killed while it published (after saving the release as published,
/// before the index was swapped) completed the publish at its next start, and no event
/// said so: the operator had been told the publish failed, and a forced publish left no
/// record. The start records it.
#[test]
fn a_publish_completed_at_start_is_recorded_as_an_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A farm that had a store before it had releases.
    swarm_net::server::start(common::options(dir.path(), "t"))
        .expect("first start")
        .shutdown();
    let staging = dir.path().join("staging");
    stage(&staging, "dev-libs/a-1.0", "a");
    let r = open(dir.path());
    create(&r, "r1", 1_000_000);
    publish(&r, "r1", 1_001_000);
    let served_r1 = top(dir.path());
    stage(&staging, "dev-libs/b-1.0", "b");
    create(&r, "r2", 1_002_000);
    publish(&r, "r2", 1_003_000);
    drop(r);
    std::fs::write(dir.path().join("binhost/Packages"), &served_r1).expect("the cut");
    let server = swarm_net::server::start(common::options(dir.path(), "t")).expect("start");
    let url = format!("http://{}/api/v1/events?after=0&limit=100", server.addr());
    let events = ureq::get(&url)
        .call()
        .expect("events")
        .into_string()
        .expect("text");
    assert!(
        events.contains("completed at start") && events.contains("r2"),
        "{events}"
    );
    assert!(top(dir.path()).contains("PATH: r2/"));
    server.shutdown();
}
