//! The read tables when one atom is queued in two profiles (issue 17): a package is (profile,
//! atom), so `packages` holds a row per profile, leases and builds say whose they are, and a
//! profile's latest builder and build environment are its own build's.

mod common;

use common::{open, small_opts};
use swarm_core::{
    Atom, BuildEnv, Control, DroneName, DroneSpec, Enqueue, Input, Outcome, PackageSpec, Report,
    Timestamp,
};

fn rows(path: &std::path::Path, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    let mut st = conn.prepare(sql).expect(sql);
    let out = st
        .query_map([], |r| r.get::<_, String>(0))
        .expect(sql)
        .collect::<Result<Vec<_>, _>>()
        .expect(sql);
    out
}

#[test]
fn one_atom_in_two_profiles_has_a_row_per_profile_and_its_lease_and_build_name_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("swarm.db");
    let mut store = open(&path, small_opts(1_000, 1_000));
    let zlib = Atom::parse("=sys-libs/zlib-1.3").expect("atom");
    let d0 = DroneName::new("d0").expect("name");
    let server_env = BuildEnv::new([("CFLAGS".to_owned(), "-O3".to_owned())].into()).expect("env");
    let mut at = 1_000;
    let mut step = |store: &mut swarm_store::Store, input: Input| {
        at += 1_000;
        let (_, out) = store.append(Timestamp(at), input).expect("append");
        store.check_read_tables().expect("read tables agree");
        out
    };
    let default_env = BuildEnv::new([("CFLAGS".to_owned(), "-O2".to_owned())].into()).expect("env");
    step(
        &mut store,
        Input::Control(Control::ExpectEnv {
            env: Some(default_env.clone()),
            from: None,
        }),
    );
    step(
        &mut store,
        Input::Control(Control::SetProfile {
            name: "server".into(),
            env: Some(server_env.clone()),
            from: None,
            world: None,
        }),
    );
    step(
        &mut store,
        Input::Enqueue(Enqueue {
            packages: vec![
                PackageSpec::new(zlib.clone()),
                PackageSpec {
                    profile: Some("server".into()),
                    ..PackageSpec::new(zlib.clone())
                },
            ],
            ..Enqueue::default()
        }),
    );
    assert_eq!(
        rows(
            &path,
            "SELECT profile || ' ' || status FROM packages ORDER BY profile"
        ),
        ["default queued", "server queued"]
    );
    // Only the server profile admits d0 (-O3): it gets the server's zlib.
    step(
        &mut store,
        Input::Register(DroneSpec {
            name: d0.clone(),
            cores: 4,
            ram_mb: 8192,
            env: server_env,
            ..DroneSpec::default()
        }),
    );
    step(
        &mut store,
        Input::RequestWork {
            drone: d0.clone(),
            free_slots: Some(1),
        },
    );
    assert_eq!(
        rows(
            &path,
            "SELECT profile || ' ' || status FROM packages ORDER BY profile"
        ),
        ["default queued", "server assigned"]
    );
    assert_eq!(rows(&path, "SELECT profile FROM leases"), ["server"]);
    // A v3 report names only the atom: it finishes d0's own package, the server's.
    step(
        &mut store,
        Input::BuildFinished {
            report: Report {
                drone: d0,
                package: zlib.clone(),
                lease: None,
                epoch: None,
            },
            outcome: Outcome::Success,
            duration_ms: Some(1_000),
        },
    );
    assert_eq!(
        rows(
            &path,
            "SELECT profile || ' ' || status FROM packages ORDER BY profile"
        ),
        ["default queued", "server built"]
    );
    assert_eq!(
        rows(&path, "SELECT profile || ' ' || outcome FROM builds"),
        ["server success"]
    );
    // d1 (-O2) builds the default profile's zlib, later: the atom's latest build is not the
    // server profile's, whose release must still name d0 and d0's environment.
    let d1 = DroneName::new("d1").expect("name");
    step(
        &mut store,
        Input::Register(DroneSpec {
            name: d1.clone(),
            cores: 4,
            ram_mb: 8192,
            env: default_env.clone(),
            ..DroneSpec::default()
        }),
    );
    step(
        &mut store,
        Input::RequestWork {
            drone: d1.clone(),
            free_slots: Some(1),
        },
    );
    step(
        &mut store,
        Input::BuildFinished {
            report: Report {
                drone: d1,
                package: zlib.clone(),
                lease: None,
                epoch: None,
            },
            outcome: Outcome::Success,
            duration_ms: Some(1_000),
        },
    );
    let history = swarm_store::History::open(&path).expect("history");
    let key = zlib.as_str();
    for (profile, drone, cflags) in [("server", "d0", "-O3"), ("default", "d1", "-O2")] {
        let builders = history.last_builders(profile).expect("builders");
        assert_eq!(
            builders.get(key).map(String::as_str),
            Some(drone),
            "{profile}"
        );
        let envs = history.last_build_envs(profile).expect("envs");
        assert_eq!(
            envs.get(key)
                .and_then(|e| e.get("CFLAGS"))
                .map(String::as_str),
            Some(cflags),
            "{profile}"
        );
    }
    assert!(history.last_builders("nope").expect("builders").is_empty());
    // Reopened, the tables are rewritten from the core and still agree.
    drop(store);
    let store = open(&path, small_opts(1_000, 60_000));
    store.check_read_tables().expect("read tables agree");
}
