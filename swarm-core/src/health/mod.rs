//! Drone-side health: the state machine the drone agent runs on itself (DESIGN §3).
//!
//! The agent samples memory, disk and its builder, feeds each sample to [`HealthMonitor::assess`]
//! and reports the resulting [`DroneHealth`] in its heartbeat. The control plane trusts that
//! self-assessment to decide whether to hand the drone work; the agent acts on it locally
//! (return all work when [`DroneHealth::returns_work`]). Like the rest of `swarm-core` this module
//! reads no clock and does no IO: the agent's sampling cadence is the only notion of time, and every
//! decision is integer arithmetic, so the same samples always give the same states.
//!
//! ```text
//!            pressure: mem >= 85 % | disk free < 5 GiB | 3 builds in a row took >= 2x estimate
//!     +---------+ -------------------------------------------> +----------+
//!     | Healthy |                                              | Degraded |
//!     +---------+ <------------------------------------------- +----------+
//!       ^     |                 pressure cleared                   |    ^
//!       |     |                                                    |    |
//!       |     +--------------> +----------+ <----------------------+    |
//!       |      OOM kill or     | Critical | <--+   OOM kill or          |
//!       |      >= 2 crashes    +----------+ ---+   >= 2 crashes         |
//!       |                        |      ^   still OOM-killing           |
//!       |        next sample     |      |                               |
//!       |        not critical    v      | OOM kill or >= 2 crashes      |
//!       |                      +------------+                           |
//!       +--------------------- | Recovering | --------------------------+
//!     self check passed,       +------------+       self check passed,
//!     no pressure                ^        |         pressure
//!                                +--------+
//!                      no self check yet, or it failed
//! ```
//!
//! - Only `Healthy` takes new work. `Degraded` keeps its running builds but asks for nothing.
//! - `Critical` returns all work. The next sample that is not itself critical moves it on.
//! - `Critical` never goes straight to `Healthy`: it always passes through `Recovering`, which ends
//!   only when a self check (disk writable, toolchain runs) has passed.
//! - Crashes count from the last completed build ([`HealthMonitor::record_build`]) and are cleared
//!   on entering `Critical`: crashes with a completed build between them are not "repeated".
//! - Slow builds can only be observed while building, and a `Degraded` drone gets no new builds. So a
//!   slow-build degradation is held for [`HealthThresholds::slow_cooldown_samples`] samples, then
//!   forgotten; if the drone is still slow, three more slow builds degrade it again.

use serde::{Deserialize, Serialize};

/// How a drone judges itself; sent in every heartbeat so the control plane can decide on work.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DroneHealth {
    /// Fit to build: takes new work. The default, as a drone that says nothing is assumed fit.
    #[default]
    Healthy,
    /// Under pressure (memory, disk or slow builds): finishes what it has, takes nothing new.
    Degraded,
    /// OOM-killed or crashing: must return all its work at once so other drones can take it.
    Critical,
    /// Came back from `Critical`: takes no work until a self check passes.
    Recovering,
}

impl DroneHealth {
    /// Whether a drone in this state may be given (or ask for) new work.
    #[must_use]
    pub fn takes_work(self) -> bool {
        matches!(self, DroneHealth::Healthy)
    }

    /// Whether a drone in this state must hand back every lease it holds, started or not.
    #[must_use]
    pub fn returns_work(self) -> bool {
        matches!(self, DroneHealth::Critical)
    }
}

/// The limits of [`HealthMonitor`]; the defaults are the numbers of DESIGN §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthThresholds {
    /// Memory use (percent) at or above which the drone is `Degraded`.
    pub mem_percent: u8,
    /// Disk use (percent) at or above which the drone is `Degraded`, read only when a sample does
    /// not say how much space is free (an older agent).
    pub disk_percent: u8,
    /// Free space (MiB) on the build volume below which the drone is `Degraded`. An absolute floor,
    /// not a percentage: 90 % of a 2 TB disk still leaves 200 GB for builds, while 90 % of 20 GB
    /// leaves too little for one big package.
    #[serde(default = "default_disk_free_mib")]
    pub disk_free_mib: u64,
    /// A build is slow when it took at least this percentage of its estimate (200 = twice).
    pub slow_build_percent: u32,
    /// This many slow builds in a row degrade the drone.
    pub slow_builds: u32,
    /// Samples a slow-build degradation is held before it is forgotten (0 disables the rule).
    pub slow_cooldown_samples: u32,
    /// This many builder crashes without a completed build in between make the drone `Critical`.
    pub crashes: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            mem_percent: 85,
            disk_percent: 90,
            disk_free_mib: default_disk_free_mib(),
            slow_build_percent: 200,
            slow_builds: 3,
            slow_cooldown_samples: 10,
            crashes: 2,
        }
    }
}

/// 5 GiB: room for the build tree and binary package of all but the largest packages; an operator
/// building browsers or toolchains raises it (`swarm drone --min-free-disk`).
fn default_disk_free_mib() -> u64 {
    5 * 1024
}

impl HealthThresholds {
    /// Whether the sample's memory use is pressure.
    #[must_use]
    pub fn memory_low(&self, sample: &HealthSample) -> bool {
        sample.mem_percent >= self.mem_percent
    }

    /// Whether the sample's build volume is too full to start another build: free space below
    /// the floor, or, when free space is unknown, use at or above the percentage.
    #[must_use]
    pub fn disk_low(&self, sample: &HealthSample) -> bool {
        match sample.disk_free_mib {
            Some(free) => free < self.disk_free_mib,
            None => sample.disk_percent >= self.disk_percent,
        }
    }
}

/// What the agent observed since its previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Memory in use, percent of total.
    pub mem_percent: u8,
    /// Disk in use on the build volume, percent of total.
    pub disk_percent: u8,
    /// Free space on the fullest build volume, MiB; `None` when it could not be read.
    #[serde(default)]
    pub disk_free_mib: Option<u64>,
    /// OOM kills since the previous sample (a delta, not the kernel's running total).
    pub oom_kills: u32,
    /// Builder crashes (killed by a signal, not a package failure) since the previous sample.
    pub crashes: u32,
    /// Result of a self check run since the previous sample, `None` if none ran. Only read while
    /// `Recovering`; the agent runs one whenever [`HealthMonitor::state`] is `Recovering`.
    pub self_check_passed: Option<bool>,
}

/// How long a completed build took against the scheduler's estimate for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTiming {
    /// Wall time the build took, seconds.
    pub took_s: u64,
    /// The estimate it was scheduled with, seconds; 0 means unknown and never counts as slow.
    pub estimate_s: u64,
}

/// The drone's health state plus the little history the transitions need.
///
/// Serializable so the agent can persist it across restarts: a drone that was `Critical` must not
/// come back `Healthy` just because its agent restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthMonitor {
    thresholds: HealthThresholds,
    state: DroneHealth,
    /// Slow builds in a row, most recent last.
    slow_streak: u32,
    /// Samples assessed while the slow streak was over the limit.
    slow_held_samples: u32,
    /// Crashes since the last completed build (or since entering `Critical`).
    crash_count: u32,
}

impl Default for HealthMonitor {
    fn default() -> Self {
        HealthMonitor::new(HealthThresholds::default())
    }
}

impl HealthMonitor {
    /// A monitor for a freshly started drone: `Healthy`, no history.
    #[must_use]
    pub fn new(thresholds: HealthThresholds) -> Self {
        HealthMonitor {
            thresholds,
            state: DroneHealth::Healthy,
            slow_streak: 0,
            slow_held_samples: 0,
            crash_count: 0,
        }
    }

    /// The state after the last [`assess`](Self::assess); what the heartbeat reports.
    #[must_use]
    pub fn state(&self) -> DroneHealth {
        self.state
    }

    /// The limits this monitor judges by.
    #[must_use]
    pub fn thresholds(&self) -> HealthThresholds {
        self.thresholds
    }

    /// Records a build that ran to completion (success or package failure, not a crash). It feeds
    /// the slow-build streak and proves the builder works, which clears the crash count. The state
    /// changes only at the next [`assess`](Self::assess).
    pub fn record_build(&mut self, timing: BuildTiming) {
        self.crash_count = 0;
        if self.is_slow(timing) {
            self.slow_streak = self.slow_streak.saturating_add(1);
        } else {
            self.slow_streak = 0;
            self.slow_held_samples = 0;
        }
    }

    /// Takes one sample and moves to the next state; the only transition function.
    pub fn assess(&mut self, sample: &HealthSample) -> DroneHealth {
        let t = self.thresholds;
        self.crash_count = self.crash_count.saturating_add(sample.crashes);
        let critical = sample.oom_kills > 0 || self.crash_count >= t.crashes;
        let pressure = self.slow_builds_hold() || t.memory_low(sample) || t.disk_low(sample);
        let calm = if pressure {
            DroneHealth::Degraded
        } else {
            DroneHealth::Healthy
        };
        self.state = if critical {
            self.crash_count = 0;
            DroneHealth::Critical
        } else {
            match self.state {
                DroneHealth::Healthy | DroneHealth::Degraded => calm,
                DroneHealth::Critical => DroneHealth::Recovering,
                DroneHealth::Recovering if sample.self_check_passed == Some(true) => calm,
                DroneHealth::Recovering => DroneHealth::Recovering,
            }
        };
        self.state
    }

    /// Whether the slow-build streak degrades the drone in this sample; counts the sample toward
    /// the cooldown and forgets the streak once the cooldown is over.
    fn slow_builds_hold(&mut self) -> bool {
        let t = self.thresholds;
        if self.slow_streak < t.slow_builds.max(1) {
            return false;
        }
        if self.slow_held_samples < t.slow_cooldown_samples {
            self.slow_held_samples += 1;
            return true;
        }
        self.slow_streak = 0;
        self.slow_held_samples = 0;
        false
    }

    fn is_slow(&self, timing: BuildTiming) -> bool {
        timing.estimate_s > 0
            && u128::from(timing.took_s) * 100
                >= u128::from(timing.estimate_s) * u128::from(self.thresholds.slow_build_percent)
    }
}

#[cfg(test)]
mod tests;
