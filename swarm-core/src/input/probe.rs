//! What the self-healing prober tells the core: the figures it saw
//! ([`ProbeFigures`]), and the verdict they come to ([`ProbeStatus`]), which
//! the core works out itself (`policy::probe`) against the thresholds in
//! [`Config`](crate::Config), so property tests, the simulator and `swarm
//! replay` see the rule.

use crate::id::DroneName;
use serde::{Deserialize, Serialize};

/// Whether a probe got to look at the drone at all.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReach {
    /// The probe ran on the drone and ended; its figures (if any) say how it is.
    #[default]
    Reached,
    /// No route, connection refused, or a probe that failed without saying
    /// anything: we could not look.
    Unreachable,
    /// No answer within the probe's timeout.
    Timeout,
}

/// The figures one probe of a drone saw, as the prober read them. A missing
/// figure is one the probe did not report, which says nothing either way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeFigures {
    /// The drone probed.
    pub drone: DroneName,
    /// Whether the probe reached it; when not, the figures are empty.
    pub reach: ProbeReach,
    /// Whether the drone's build service is running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_up: Option<bool>,
    /// The 5-minute load average × 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_centi: Option<u32>,
    /// Online CPUs, to judge the load by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Use of the build filesystem, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<u32>,
    /// Memory in use (total minus available), in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_percent: Option<u32>,
}

/// What a probe of the drone saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// All well.
    Ok,
    /// No route / connection refused.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The machine answers but the drone service is down.
    ServiceDown,
    /// Load far above its cores.
    Overloaded,
    /// Disk filling: a warning only.
    DiskWarning,
    /// Disk full.
    DiskCritical,
    /// Memory exhausted.
    MemoryCritical,
}

impl ProbeStatus {
    /// Counts toward escalation.
    pub fn is_failure(self) -> bool {
        !matches!(self, ProbeStatus::Ok | ProbeStatus::DiskWarning)
    }

    /// Says the drone itself is gone (not just sick): evidence for an early reclaim.
    pub fn says_down(self) -> bool {
        matches!(
            self,
            ProbeStatus::Unreachable | ProbeStatus::Timeout | ProbeStatus::ServiceDown
        )
    }

    /// Failures of the probe path alone, which a fresh heartbeat contradicts.
    pub fn is_path_failure(self) -> bool {
        matches!(self, ProbeStatus::Unreachable | ProbeStatus::Timeout)
    }
}
