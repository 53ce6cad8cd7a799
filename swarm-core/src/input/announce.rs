//! A drone's announcement: what it says about its machine and its heartbeat, in one input.
//!
//! v3 drones register and heartbeat on one endpoint and repeat their capabilities every time;
//! the core merges what they said into the spec it holds (a field left out keeps its value)
//! and decides whether it changed. Adapters only carry what was said.

use super::drone::{DroneKind, DroneSpec, Heartbeat};
use crate::id::DroneName;
use serde::{Deserialize, Serialize};

/// What a drone says about its machine. Every field is optional, as received: `None` keeps the
/// value the core holds. A zero `cores` or `ram_mb` and an `Unknown` kind say nothing either
/// (v3 drones send them when they cannot tell), so they never overwrite a known value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpecFacts {
    /// The v3 `id` (usually `/etc/machine-id`); a new one under a known name is a new
    /// incarnation of the drone (its epoch is bumped and its leases reclaimed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// CPU cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// RAM in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_mb: Option<u64>,
    /// CPU architecture (`amd64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// What kind of machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<DroneKind>,
    /// Agent version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A registration or heartbeat as the drone sent it: its machine facts and its beat. The beat's
/// `env` and `portage_snapshot` are facts of the spec too, and merge the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// What it says about its machine.
    #[serde(flatten)]
    pub said: SpecFacts,
    /// Health, figures and the leases it holds; names the drone.
    #[serde(flatten)]
    pub beat: Heartbeat,
}

impl From<&DroneSpec> for SpecFacts {
    fn from(spec: &DroneSpec) -> SpecFacts {
        SpecFacts {
            machine_id: spec.machine_id.clone(),
            cores: Some(spec.cores),
            ram_mb: Some(spec.ram_mb),
            arch: spec.arch.clone(),
            kind: Some(spec.kind),
            version: spec.version.clone(),
        }
    }
}

fn differs<T: PartialEq>(said: Option<&T>, held: &T) -> bool {
    said.is_some_and(|s| s != held)
}

impl SpecFacts {
    /// The facts that carry a value: a zero count or an `Unknown` kind says nothing.
    fn cores(&self) -> Option<u32> {
        self.cores.filter(|c| *c > 0)
    }

    fn ram_mb(&self) -> Option<u64> {
        self.ram_mb.filter(|r| *r > 0)
    }

    fn kind(&self) -> Option<DroneKind> {
        self.kind.filter(|k| *k != DroneKind::Unknown)
    }

    /// Whether merging these facts would change the machine as `spec` has it (its identity,
    /// size, kind, version or architecture). Environment and snapshot are the beat's to merge.
    pub(crate) fn changes(&self, spec: &DroneSpec) -> bool {
        self.machine_id
            .as_ref()
            .is_some_and(|m| spec.machine_id.as_ref() != Some(m))
            || differs(self.cores().as_ref(), &spec.cores)
            || differs(self.ram_mb().as_ref(), &spec.ram_mb)
            || differs(self.kind().as_ref(), &spec.kind)
            || self
                .version
                .as_ref()
                .is_some_and(|v| spec.version.as_ref() != Some(v))
            || self
                .arch
                .as_ref()
                .is_some_and(|a| spec.arch.as_ref() != Some(a))
    }

    /// The registration these facts make: for a drone the core does not know yet (`first`),
    /// a whole spec with defaults for what was not said (one core, RAM unknown); for a known
    /// one, only what was said, which `merge_spec` lays over the spec it holds.
    pub(crate) fn registration(&self, beat: &Heartbeat, first: bool) -> DroneSpec {
        DroneSpec {
            name: beat.drone.clone(),
            machine_id: self.machine_id.clone(),
            cores: self.cores().unwrap_or(u32::from(first)),
            ram_mb: self.ram_mb().unwrap_or(0),
            arch: self.arch.clone(),
            labels: Vec::new(),
            kind: self.kind().unwrap_or_default(),
            portage_snapshot: beat.portage_snapshot.clone(),
            version: self.version.clone(),
            env: beat.env.clone().unwrap_or_default(),
        }
    }

    /// Forgets every fact `spec` already holds (or that says nothing): merging what is left
    /// does exactly what merging all of it did.
    fn trim(&mut self, spec: &DroneSpec) {
        if self.machine_id == spec.machine_id {
            self.machine_id = None;
        }
        self.cores = self.cores().filter(|c| *c != spec.cores);
        self.ram_mb = self.ram_mb().filter(|r| *r != spec.ram_mb);
        self.kind = self.kind().filter(|k| *k != spec.kind);
        if self.version == spec.version {
            self.version = None;
        }
        if self.arch == spec.arch {
            self.arch = None;
        }
    }
}

impl Announce {
    /// The drone announcing.
    pub fn drone(&self) -> &DroneName {
        &self.beat.drone
    }

    /// Drops what `spec` (the drone's, as the core holds it) already says, environment and
    /// snapshot included: the announcement then means the same and logs small.
    pub(crate) fn trim(&mut self, spec: &DroneSpec) {
        self.said.trim(spec);
        if self.beat.portage_snapshot == spec.portage_snapshot {
            self.beat.portage_snapshot = None;
        }
        if self.beat.env.as_ref() == Some(&spec.env) {
            self.beat.env = None;
        }
    }
}
