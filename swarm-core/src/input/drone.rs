//! What a drone says about itself: its spec (registration) and its heartbeat. A leaf, so
//! that `announce`, which merges one into the other, and `input` both import it.

use crate::atom::Atom;
use crate::health::DroneHealth;
use crate::id::{DroneName, Epoch, LeaseId};
use serde::{Deserialize, Serialize};

/// Drone kinds, for escalation: only virtual machines and containers are rebooted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DroneKind {
    /// An LXC container.
    Lxc,
    /// A QEMU/KVM virtual machine.
    Qemu,
    /// Real hardware: never rebooted automatically.
    BareMetal,
    /// Not reported; treated like bare metal.
    #[default]
    Unknown,
}

/// A drone's registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DroneSpec {
    /// Stable name.
    pub name: DroneName,
    /// The v3 `id` (usually `/etc/machine-id`). A new id under a known name bumps the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// CPU cores.
    pub cores: u32,
    /// RAM in MiB.
    pub ram_mb: u64,
    /// CPU architecture (`amd64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Free-form labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// What kind of machine.
    pub kind: DroneKind,
    /// The drone's Portage snapshot (`metadata/timestamp.chk`), compared with the queue's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portage_snapshot: Option<String>,
    /// Agent version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its build environment as Portage resolved it; empty from v3 and older agents.
    #[serde(skip_serializing_if = "crate::buildenv::BuildEnv::is_empty")]
    pub env: crate::buildenv::BuildEnv,
}

/// A heartbeat. Every field but `drone` is optional: v3 drones send few.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// Who.
    pub drone: DroneName,
    /// The epoch the drone believes it is in (swarm agents only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// Self-assessed health; `None` from v3 drones means healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<DroneHealth>,
    /// Memory use in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_percent: Option<u8>,
    /// Disk use in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<u8>,
    /// 1-minute load average × 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_centi: Option<u32>,
    /// Leases the drone holds (swarm agents). `None`: not reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<LeaseId>>,
    /// Leases it has started building.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<LeaseId>,
    /// v3 `current_task`: the atom it is building.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_task: Option<Atom>,
    /// v3: the heartbeat carried `current_task`, so a `None` there means "building nothing"
    /// rather than "not said" (work it no longer reports has been stopped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reports_task: bool,
    /// A refreshed Portage snapshot after a sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portage_snapshot: Option<String>,
    /// Its build environment, sent when it changed since the last one the server passed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<crate::buildenv::BuildEnv>,
}
