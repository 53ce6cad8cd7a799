//! Scenarios: a fleet, a queue and the faults to inject. Built-in ones are
//! named after the incidents that taught them; operators can describe their
//! own fleet in TOML or JSON with the same fields.

use crate::input::DroneKind;
use serde::{Deserialize, Serialize};

/// A fleet, a queue and faults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    pub name: String,
    /// What it demonstrates.
    #[serde(default)]
    pub description: String,
    /// The fleet.
    pub drones: Vec<DroneModel>,
    /// The queue.
    pub packages: Packages,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Faults,
    /// Virtual seconds the faulty phase may last before the liveness phase heals everything.
    #[serde(default = "default_horizon_s")]
    pub horizon_s: u64,
    /// Heartbeat period of the simulated agents.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
    /// Enqueue packages with duration hints (as from Portage's merge history),
    /// off by ±25 %. Off: the scheduler starts blind and learns.
    #[serde(default = "yes")]
    pub duration_hints: bool,
    /// Check `check_invariants` every this many steps (1: every step). The
    /// `Monitor` runs on every step regardless.
    #[serde(default = "one")]
    pub check_every: u64,
}

fn default_horizon_s() -> u64 {
    7 * 24 * 3600
}
fn default_heartbeat_s() -> u64 {
    15
}
fn yes() -> bool {
    true
}
fn one() -> u64 {
    1
}
fn hundred() -> u32 {
    100
}

/// One drone, or `count` identical ones (named `name-1`, `name-2`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroneModel {
    /// Name.
    pub name: String,
    /// Cores (a build slot per `cores_per_slot`).
    pub cores: u32,
    /// RAM, GB.
    pub ram_gb: u64,
    /// Build speed per slot, percent of the reference machine.
    #[serde(default = "hundred")]
    pub speed_pct: u32,
    /// Machine kind.
    #[serde(default)]
    pub kind: DroneKind,
    /// Chance per build of an infrastructure failure, per mille.
    #[serde(default)]
    pub infra_fail_permille: u32,
    /// Replicate this drone.
    #[serde(default)]
    pub count: Option<u32>,
}

/// The queue: generated from a seed, or listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Packages {
    /// A Gentoo-world-shaped DAG: a few huge builds, many small ones, libraries early.
    Generated {
        /// How many packages.
        count: u32,
        /// Most dependencies one package declares.
        #[serde(default = "four")]
        max_deps: u32,
        /// Chance a package fails for its own reasons, per mille.
        #[serde(default)]
        fail_permille: u32,
    },
    /// Explicit packages.
    List {
        /// The packages.
        items: Vec<PackageModel>,
    },
}

fn four() -> u32 {
    4
}

/// One package to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageModel {
    /// Atom.
    pub atom: String,
    /// Dependencies (atoms in this list).
    #[serde(default)]
    pub deps: Vec<String>,
    /// Build time at 100 % speed.
    pub duration_s: u64,
    /// Peak RAM, GB: a drone with less OOMs.
    #[serde(default)]
    pub ram_gb: u64,
    /// Chance it fails for its own reasons, per mille.
    #[serde(default)]
    pub fail_permille: u32,
}

/// Faults. Every time is virtual seconds from the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Let the seed switch faults on and off (swarm testing).
    pub random: bool,
    /// Drones that die silently: no goodbye, probes go unanswered.
    pub silent_death: Vec<At>,
    /// Drones that hang: heartbeats go on, builds make no progress.
    pub hang: Vec<At>,
    /// Several drones lose power at once and come back.
    pub power_blip: Vec<Blip>,
    /// A drone cannot reach the control plane (heartbeats, reports, probes) for a while.
    pub partition: Vec<Window>,
    /// Probes time out while heartbeats are fresh (the probe path alone is broken).
    pub probe_asymmetry: bool,
    /// Reports that arrive late, per mille.
    pub late_reports_permille: u32,
    /// Reports delivered twice, per mille.
    pub duplicate_reports_permille: u32,
    /// A drone that fails every build instantly.
    pub runaway: Option<String>,
    /// Every build fails the same way ("slot conflict") until healed.
    pub stale_queue: bool,
    /// Control-plane restarts, seconds from start.
    pub cp_restarts: Vec<u64>,
    /// How long the control plane stays down at each restart.
    pub cp_downtime_s: u64,
    /// Random operator actions (pause/resume, drain/undrain, rebalance, retry).
    pub operator_actions: bool,
    /// Forward jumps of the control plane's clock: (at_s, jump_s).
    pub clock_jumps: Vec<(u64, u64)>,
}

/// A fault on one drone at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct At {
    /// Drone name.
    pub drone: String,
    /// When.
    pub at_s: u64,
}

/// A fault on one drone for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Drone name.
    pub drone: String,
    /// From.
    pub at_s: u64,
    /// For how long.
    pub for_s: u64,
}

/// A power blip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blip {
    /// Drones that lose power.
    pub drones: Vec<String>,
    /// When.
    pub at_s: u64,
    /// Down for.
    pub down_s: u64,
}

fn drone(name: &str, cores: u32, ram_gb: u64, speed_pct: u32, kind: DroneKind) -> DroneModel {
    DroneModel {
        name: name.into(),
        cores,
        ram_gb,
        speed_pct,
        kind,
        infra_fail_permille: 0,
        count: None,
    }
}

fn homelab() -> Vec<DroneModel> {
    vec![
        drone("drone-alpha", 14, 16, 100, DroneKind::Lxc),
        drone("drone-beta", 24, 64, 130, DroneKind::Qemu),
        drone("drone-gamma", 8, 32, 90, DroneKind::Lxc),
        drone("drone-delta", 12, 16, 100, DroneKind::BareMetal),
        drone("drone-epsilon", 4, 8, 70, DroneKind::Qemu),
    ]
}

fn generated(count: u32) -> Packages {
    Packages::Generated {
        count,
        max_deps: 4,
        fail_permille: 0,
    }
}

fn base(name: &str, description: &str, packages: Packages) -> Scenario {
    Scenario {
        name: name.into(),
        description: description.into(),
        drones: homelab(),
        packages,
        faults: Faults::default(),
        horizon_s: default_horizon_s(),
        heartbeat_s: 15,
        duration_hints: true,
        check_every: 1,
    }
}

/// Names of the built-in scenarios.
pub const BUILTIN: [&str; 11] = [
    "silent-death",
    "power-blip",
    "oom-package",
    "stale-queue",
    "probe-asymmetry",
    "runaway-drone",
    "long-compile",
    "cp-restart",
    "world-rebuild",
    "chaos",
    "big-farm",
];

impl Scenario {
    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Scenario> {
        let mut s = match name {
            "silent-death" => {
                let mut s = base(
                    name,
                    "a drone dies at 2 AM holding 3 packages",
                    generated(120),
                );
                s.drones[1].cores = 12; // 3 slots
                s.faults.silent_death = vec![At {
                    drone: "drone-beta".into(),
                    at_s: 2 * 3600,
                }];
                s
            }
            "power-blip" => {
                let mut s = base(
                    name,
                    "3 of 5 drones vanish for 25 minutes and come back",
                    generated(200),
                );
                s.faults.power_blip = vec![Blip {
                    drones: vec![
                        "drone-alpha".into(),
                        "drone-gamma".into(),
                        "drone-delta".into(),
                    ],
                    at_s: 3600,
                    down_s: 25 * 60,
                }];
                s
            }
            "oom-package" => {
                let mut items: Vec<PackageModel> = (0..20)
                    .map(|i| PackageModel {
                        atom: format!("dev-libs/lib{i}-1.{i}"),
                        deps: vec![],
                        duration_s: 120 + 30 * i,
                        ram_gb: 0,
                        fail_permille: 0,
                    })
                    .collect();
                items.push(PackageModel {
                    atom: "dev-qt/qtwebengine-6.7.2".into(),
                    deps: vec!["dev-libs/lib0-1.0".into()],
                    duration_s: 3 * 3600,
                    ram_gb: 40,
                    fail_permille: 0,
                });
                let mut s = base(
                    name,
                    "qtwebengine OOMs on 16 GB drones and must land on the 64 GB one",
                    Packages::List { items },
                );
                s.drones
                    .retain(|d| d.name != "drone-gamma" && d.name != "drone-epsilon");
                s
            }
            "stale-queue" => {
                let mut s = base(
                    name,
                    "every drone fails on the same slot conflict; the brake must engage",
                    generated(150),
                );
                s.faults.stale_queue = true;
                s.horizon_s = 3 * 3600;
                s
            }
            "probe-asymmetry" => {
                let mut s = base(
                    name,
                    "SSH probes time out while heartbeats are fresh; zero escalations",
                    generated(150),
                );
                s.faults.probe_asymmetry = true;
                s
            }
            "runaway-drone" => {
                let mut s = base(
                    name,
                    "one drone fails everything instantly; it is grounded, the others finish",
                    generated(200),
                );
                s.faults.runaway = Some("drone-gamma".into());
                s
            }
            "long-compile" => {
                let items = vec![
                    PackageModel {
                        atom: "www-client/chromium-131.0.6778.85".into(),
                        deps: vec![],
                        duration_s: 12 * 3600,
                        ram_gb: 0,
                        fail_permille: 0,
                    },
                    PackageModel {
                        atom: "app-misc/jq-1.7.1".into(),
                        deps: vec![],
                        duration_s: 60,
                        ram_gb: 0,
                        fail_permille: 0,
                    },
                ];
                let mut s = base(
                    name,
                    "a 12-hour build on a healthy drone is never reclaimed",
                    Packages::List { items },
                );
                s.drones = vec![
                    drone("drone-alpha", 4, 16, 100, DroneKind::Lxc),
                    drone("drone-beta", 4, 16, 100, DroneKind::Lxc),
                ];
                s
            }
            "cp-restart" => {
                let mut s = base(
                    name,
                    "the control plane restarts mid-run; nothing is reclaimed",
                    generated(200),
                );
                s.faults.cp_restarts = vec![3600, 2 * 3600];
                s.faults.cp_downtime_s = 20 * 60;
                s
            }
            "world-rebuild" => base(
                name,
                "about 1,500 packages with realistic dependencies on 5 mixed drones",
                generated(1_500),
            ),
            "chaos" => {
                let mut s = base(
                    name,
                    "the seed switches faults on and off (swarm testing)",
                    generated(150),
                );
                s.faults.random = true;
                s.horizon_s = 12 * 3600;
                s
            }
            "big-farm" => {
                let mut s = base(
                    name,
                    "1,000 drones and 100,000 packages",
                    generated(100_000),
                );
                s.drones = vec![
                    DroneModel {
                        count: Some(400),
                        ..drone("farm-s", 8, 16, 80, DroneKind::Lxc)
                    },
                    DroneModel {
                        count: Some(400),
                        ..drone("farm-m", 16, 32, 100, DroneKind::Qemu)
                    },
                    DroneModel {
                        count: Some(200),
                        ..drone("farm-l", 32, 64, 120, DroneKind::BareMetal)
                    },
                ];
                s.heartbeat_s = 30;
                s.check_every = 20_000;
                s
            }
            _ => return None,
        };
        s.name = name.into();
        Some(s)
    }

    /// Drone models with `count` expanded.
    pub fn fleet(&self) -> Vec<DroneModel> {
        self.drones
            .iter()
            .flat_map(|d| match d.count {
                None | Some(1) => vec![DroneModel {
                    count: None,
                    ..d.clone()
                }],
                Some(n) => (1..=n)
                    .map(|i| DroneModel {
                        name: format!("{}-{i}", d.name),
                        count: None,
                        ..d.clone()
                    })
                    .collect(),
            })
            .collect()
    }
}
