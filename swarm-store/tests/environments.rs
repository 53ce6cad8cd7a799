//! The `environments` table stays bounded: a drone whose build environment
//! changes on every heartbeat leaves at most a few unused ones behind, while
//! the environments builds were made in, and every drone's current one, stay.

mod common;

use common::{open, small_opts};
use swarm_core::{
    Atom, BuildEnv, DroneName, DroneSpec, Enqueue, Input, Outcome, PackageSpec, Report, Timestamp,
};

fn env(cflags: &str) -> BuildEnv {
    BuildEnv::new([("CFLAGS".to_owned(), cflags.to_owned())].into()).expect("env")
}

fn digests(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    let mut st = conn
        .prepare("SELECT digest FROM environments")
        .expect("select");
    let out = st
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    out
}

fn register(name: &DroneName, env: BuildEnv) -> Input {
    Input::Register(DroneSpec {
        name: name.clone(),
        cores: 4,
        ram_mb: 8192,
        env,
        ..DroneSpec::default()
    })
}

#[test]
fn unused_environments_are_pruned_and_used_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("swarm.db");
    let mut store = open(&path, small_opts(100_000, 100_000));
    let mut at = 1_000;
    let mut step = |store: &mut swarm_store::Store, input: Input| {
        at += 1_000;
        store.append(Timestamp(at), input).expect("append");
    };
    let zlib = Atom::parse("=sys-libs/zlib-1.3").expect("atom");
    let (d0, d1) = (
        DroneName::new("d0").expect("name"),
        DroneName::new("d1").expect("name"),
    );
    step(
        &mut store,
        Input::Enqueue(Enqueue {
            packages: vec![PackageSpec::new(zlib.clone())],
            ..Enqueue::default()
        }),
    );
    // d0 builds zlib in its first environment; d1 keeps one all along.
    let built_in = env("-O2 -built");
    let steady = env("-O2 -steady");
    step(&mut store, register(&d0, built_in.clone()));
    step(&mut store, register(&d1, steady.clone()));
    step(
        &mut store,
        Input::RequestWork {
            drone: d0.clone(),
            free_slots: Some(1),
        },
    );
    step(
        &mut store,
        Input::BuildFinished {
            report: Report {
                drone: d0.clone(),
                package: zlib,
                lease: None,
                epoch: None,
            },
            outcome: Outcome::Success,
            duration_ms: Some(1_000),
        },
    );
    // Then d0's environment changes on every heartbeat.
    let mut last = built_in.clone();
    for i in 0..200 {
        last = env(&format!("-O2 -churn{i}"));
        step(&mut store, register(&d0, last.clone()));
        let held = digests(&path);
        assert!(
            held.len() <= 20,
            "after {i} changes the table holds {} environments",
            held.len()
        );
    }
    let held = digests(&path);
    for (what, e) in [
        ("built in", &built_in),
        ("steady", &steady),
        ("current", &last),
    ] {
        let d = e.digest().expect("digest");
        assert!(held.contains(&d), "the {what} environment was pruned");
    }
    store.check_read_tables().expect("read tables agree");
}
