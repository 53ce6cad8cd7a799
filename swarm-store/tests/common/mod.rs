//! Shared test helpers: a small generator of plausible inputs, and a reference
//! replay through an in-memory core.
#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use std::path::Path;
use swarm_core::{
    Atom, Config, Control, DroneName, DroneSpec, Enqueue, Envelope, FailureClass, Heartbeat, Input,
    LeaseId, Outcome, PackageSpec, Report, Swarm, Timestamp, View,
};
use swarm_store::{Store, StoreOptions};

/// One step of a generated history. Lease-bearing steps pick a live lease of
/// the current state by index, so most reports are valid and some are stale.
#[derive(Clone, Debug)]
pub enum Op {
    Register(u8),
    Enqueue(Vec<u8>),
    Request(u8, u32),
    Start(u8),
    Finish(u8, u8),
    Heartbeat(u8),
    Probe(u8),
    Tick,
    Control(u8),
    Stale(u8),
}

pub fn drone(i: u8) -> DroneName {
    DroneName::new(format!("drone-{}", i % 3)).expect("valid drone name")
}

pub fn atom(i: u8) -> Atom {
    Atom::parse(&format!("dev-libs/pkg{}-1.{}", i % 8, i % 8)).expect("valid atom")
}

pub fn op_strategy() -> impl Strategy<Value = (Op, u64)> {
    let op = prop_oneof![
        2 => any::<u8>().prop_map(Op::Register),
        2 => proptest::collection::vec(any::<u8>(), 1..4).prop_map(Op::Enqueue),
        3 => (any::<u8>(), 1u32..3).prop_map(|(d, s)| Op::Request(d, s)),
        2 => any::<u8>().prop_map(Op::Start),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(l, o)| Op::Finish(l, o)),
        2 => any::<u8>().prop_map(Op::Heartbeat),
        1 => any::<u8>().prop_map(Op::Probe),
        1 => Just(Op::Tick),
        1 => any::<u8>().prop_map(Op::Control),
        1 => any::<u8>().prop_map(Op::Stale),
    ];
    let dt = prop_oneof![
        6 => 0u64..5_000,
        2 => 5_000u64..120_000,
        1 => 600_000u64..1_500_000,
    ];
    (op, dt)
}

/// Deterministic ops from a seed, for the kill test's writer.
pub fn op_from(x: u64) -> (Op, u64) {
    let b = (x >> 8) as u8;
    let c = (x >> 16) as u8;
    let op = match x % 20 {
        0 | 1 => Op::Register(b),
        2 | 3 => Op::Enqueue(vec![b, c]),
        4..=7 => Op::Request(b, 1 + u32::from(c % 2)),
        8 | 9 => Op::Start(b),
        10..=13 => Op::Finish(b, c),
        14 | 15 => Op::Heartbeat(b),
        16 => Op::Probe(b),
        17 => Op::Tick,
        18 => Op::Control(b),
        _ => Op::Stale(b),
    };
    let dt = if (x >> 24) % 50 == 0 {
        700_000
    } else {
        (x >> 32) % 4_000
    };
    (op, dt)
}

fn pick_lease(view: View<'_>, i: u8) -> Option<(LeaseId, DroneName, Atom)> {
    let leases = view.leases();
    if leases.is_empty() {
        return None;
    }
    let l = &leases[usize::from(i) % leases.len()];
    Some((l.lease, l.drone.clone(), l.package.clone()))
}

/// Turns an op into an input against the current state.
pub fn to_input(op: &Op, view: View<'_>) -> Input {
    match op {
        Op::Register(d) => Input::Register(DroneSpec {
            name: drone(*d),
            cores: 4 + u32::from(*d % 3) * 4,
            ram_mb: 16_384,
            ..DroneSpec::default()
        }),
        Op::Enqueue(pkgs) => Input::Enqueue(Enqueue {
            packages: pkgs.iter().map(|p| PackageSpec::new(atom(*p))).collect(),
            ..Enqueue::default()
        }),
        Op::Request(d, slots) => Input::RequestWork {
            drone: drone(*d),
            free_slots: Some(*slots),
        },
        Op::Start(i) => match pick_lease(view, *i) {
            Some((lease, drone, package)) => Input::BuildStarted(Report {
                drone,
                package,
                lease: Some(lease),
                epoch: None,
            }),
            None => Input::Tick,
        },
        Op::Finish(i, o) => match pick_lease(view, *i) {
            Some((lease, drone, package)) => Input::BuildFinished {
                report: Report {
                    drone,
                    package,
                    lease: Some(lease),
                    epoch: None,
                },
                outcome: match o % 6 {
                    0..=2 => Outcome::Success,
                    3 => Outcome::Failed {
                        class: FailureClass::Build,
                        detail: "compile error".into(),
                    },
                    4 => Outcome::Failed {
                        class: FailureClass::Infra,
                        detail: "sandbox".into(),
                    },
                    _ => Outcome::Returned {
                        reason: "shutdown".into(),
                    },
                },
                duration_ms: Some(60_000),
            },
            None => Input::Tick,
        },
        Op::Heartbeat(d) => Input::Heartbeat(Heartbeat {
            drone: drone(*d),
            ..Heartbeat::default()
        }),
        Op::Probe(d) => Input::ProbeResult {
            drone: drone(*d),
            status: if d % 2 == 0 {
                swarm_core::ProbeStatus::Ok
            } else {
                swarm_core::ProbeStatus::ServiceDown
            },
        },
        Op::Tick => Input::Tick,
        Op::Control(c) => Input::Control(match c % 8 {
            0 => Control::Pause,
            1 => Control::Resume,
            2 => Control::Rebalance,
            3 => Control::Unblock {
                package: None,
                profile: None,
            },
            4 => Control::Drain { drone: drone(*c) },
            5 => Control::Undrain { drone: drone(*c) },
            6 => Control::Block {
                package: atom(*c),
                profile: None,
            },
            _ => Control::Fresh,
        }),
        Op::Stale(i) => Input::BuildFinished {
            report: Report {
                drone: drone(*i),
                package: atom(*i),
                lease: Some(LeaseId(9_999)),
                epoch: None,
            },
            outcome: Outcome::Success,
            duration_ms: None,
        },
    }
}

pub fn small_opts(snapshot_every: u64, at: u64) -> StoreOptions {
    StoreOptions {
        snapshot_every,
        open_at: Some(Timestamp(at)),
        ..StoreOptions::default()
    }
}

/// Replays envelopes through a fresh core.
pub fn replay(config: &Config, envs: impl IntoIterator<Item = Envelope>) -> Swarm {
    let mut swarm = Swarm::new(config.clone()).expect("valid config");
    for env in envs {
        let _ = swarm.handle(&env);
    }
    swarm
}

/// Every logged envelope of a store file, read with a fresh open of nothing
/// but SQLite (so it also works on a file a killed process left behind).
pub fn raw_log(path: &Path) -> Vec<(u64, u64, String)> {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare("SELECT seq, at_ms, input FROM input_log ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, String>(2)?,
            ))
        })
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    rows
}

/// Opens a store, panicking with the error's message.
pub fn open(path: &Path, opts: StoreOptions) -> Store {
    Store::open(path, opts).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}
