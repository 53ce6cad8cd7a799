//! Every tunable of the policy, with the defaults of DESIGN §3.
//!
//! Durations are integer milliseconds (`_ms`), ratios are integer percents, so
//! decisions never depend on float rounding.

use crate::time::{HOUR_MS, MINUTE_MS, SECOND_MS};
use serde::{Deserialize, Serialize};

mod hash;

/// Longest duration a policy field may hold: a year. Beyond it a value is a
/// mistake (seconds given as milliseconds twice over), not a policy.
pub const MAX_CONFIG_MS: u64 = 365 * 24 * HOUR_MS;
/// Largest count a policy field may hold (attempts, failures, drones).
pub const MAX_CONFIG_COUNT: u32 = 1_000_000;
/// Largest `max_prefetch` and `cores_per_slot`: the most cores a drone may claim.
pub const MAX_SLOT_COUNT: u32 = 1024;

/// The policy's numbers. Build with `Config::default()` and override fields;
/// `Swarm::new` validates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A drone whose last heartbeat is older than this is suspect: no new work.
    pub heartbeat_grace_ms: u64,
    /// A drone whose last heartbeat is older than this is offline: all its leases are reclaimed.
    pub offline_timeout_ms: u64,
    /// Suspect plus two consecutive "down" probes: reclaimed this long after the last heartbeat.
    pub confirmed_dead_after_ms: u64,
    /// After a control-plane restart, no drone is judged offline before this has passed.
    pub failover_grace_ms: u64,
    /// Not-started leases a drone may hold at once.
    pub max_prefetch: u32,
    /// Cores per concurrent build slot: a drone runs `max(1, cores / cores_per_slot)` builds.
    pub cores_per_slot: u32,
    /// Estimate for a package with no build history.
    pub default_duration_ms: u64,
    /// How long a drone's failure of a package keeps that package away from it.
    pub failure_memory_ms: u64,
    /// Distinct drones failing a package with class `build` before it is blocked.
    pub block_after_drones: u32,
    /// First retry delay; later ones triple.
    pub retry_base_ms: u64,
    /// Cap on the retry delay.
    pub retry_cap_ms: u64,
    /// Failed attempts before a package is blocked.
    pub max_attempts: u32,
    /// Blocked packages are retried automatically after this long.
    pub failure_age_ms: u64,
    /// How many times one package is auto-unblocked.
    pub max_auto_unblocks: u32,
    /// Consecutive infra/OOM failures that ground a drone.
    pub max_drone_failures: u32,
    /// First grounding; later ones triple.
    pub grounding_timeout_ms: u64,
    /// Cap on grounding.
    pub grounding_cap_ms: u64,
    /// Upload failures within `upload_failure_window_ms` that stop a drone taking work.
    pub upload_failure_limit: u32,
    /// Window for counting upload failures, and the length of the resulting hold.
    pub upload_failure_window_ms: u64,
    /// Window in which disruptions (groundings, suspect reclaims, escalations) are counted by the brake.
    pub brake_window_ms: u64,
    /// Percent of active drones that may be disrupted within the window before the brake engages.
    pub brake_ratio_percent: u32,
    /// The brake never engages for this many drones or fewer.
    pub brake_min_drones: u32,
    /// Probe failures needed before any escalation.
    pub min_consecutive_failures: u32,
    /// The failures must span at least this long.
    pub min_failure_window_ms: u64,
    /// Cooldown after restart_service, hard_restart and reboot before the next step.
    pub escalation_cooldowns_ms: [u64; 3],
    /// Fleet-wide escalations allowed per `escalation_window_ms`.
    pub max_escalations_per_window: u32,
    /// Window of the fleet-wide escalation rate limit.
    pub escalation_window_ms: u64,
    /// Learned durations and new enqueues re-plan the critical path at most this often.
    pub replan_interval_ms: u64,
    /// How ready packages are ordered. `fifo` exists to compare with Build Swarm v3.
    pub ordering: Ordering,
    /// Wait for in-queue dependencies before assigning. Off only to compare with v3.
    pub dependency_aware: bool,
    /// The disruption brake. Off only to compare with v3, which grounded every drone at once.
    pub brake_enabled: bool,
    /// A probe seeing disk use at or above this percent says `disk_warning` (a warning only).
    pub probe_disk_warning_percent: u32,
    /// A probe seeing disk use at or above this percent says `disk_critical`: builds will fail.
    pub probe_disk_critical_percent: u32,
    /// A probe seeing memory use at or above this percent says `memory_critical`: the OOM killer is near.
    pub probe_memory_critical_percent: u32,
    /// A probe seeing a 5-minute load above this many runnable tasks per core × 100 says
    /// `overloaded`. A drone compiling with `-j<cores>` sits near 100; short spikes vanish in
    /// the 5-minute average; twice the cores, sustained, means thrashing (usually swap).
    pub probe_overload_per_core_centi: u32,
}

/// Order of the ready set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Priority, then remaining critical path, then enqueue order.
    #[default]
    CriticalPath,
    /// Enqueue order only (Build Swarm v3).
    Fifo,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_grace_ms: 90 * SECOND_MS,
            offline_timeout_ms: 15 * MINUTE_MS,
            confirmed_dead_after_ms: 120 * SECOND_MS,
            failover_grace_ms: 5 * MINUTE_MS,
            max_prefetch: 2,
            cores_per_slot: 4,
            default_duration_ms: 300 * SECOND_MS,
            failure_memory_ms: 24 * HOUR_MS,
            block_after_drones: 2,
            retry_base_ms: 60 * SECOND_MS,
            retry_cap_ms: HOUR_MS,
            max_attempts: 5,
            failure_age_ms: 30 * MINUTE_MS,
            max_auto_unblocks: 3,
            max_drone_failures: 8,
            grounding_timeout_ms: 5 * MINUTE_MS,
            grounding_cap_ms: HOUR_MS,
            upload_failure_limit: 3,
            upload_failure_window_ms: 30 * MINUTE_MS,
            brake_window_ms: 10 * MINUTE_MS,
            brake_ratio_percent: 55,
            brake_min_drones: 2,
            min_consecutive_failures: 3,
            min_failure_window_ms: 180 * SECOND_MS,
            escalation_cooldowns_ms: [30 * SECOND_MS, 30 * SECOND_MS, 120 * SECOND_MS],
            max_escalations_per_window: 2,
            escalation_window_ms: 10 * MINUTE_MS,
            replan_interval_ms: MINUTE_MS,
            ordering: Ordering::CriticalPath,
            dependency_aware: true,
            brake_enabled: true,
            probe_disk_warning_percent: 85,
            probe_disk_critical_percent: 95,
            probe_memory_critical_percent: 95,
            probe_overload_per_core_centi: 200,
        }
    }
}

/// A configuration that cannot work, naming the field so an operator can fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A count or duration that must be positive is zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// A percentage outside 1..=100.
    #[error("{field} is {value} %, but must be between 1 and 100")]
    Percent {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: u32,
    },
    /// A count or duration beyond anything that makes sense (a typo, or a
    /// unit mixed up), refused before it can overflow a deadline.
    #[error("{field} is {value}, but must be at most {max}{unit}")]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value accepted.
        max: u64,
        /// `" ms"` for durations, empty for counts.
        unit: &'static str,
    },
    /// Two fields whose order matters are the wrong way round.
    #[error("{field} ({value}{unit}) must be {relation} {other} ({other_value}{unit})")]
    Order {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// "shorter than", "at most", ...
        relation: &'static str,
        /// The field it is compared with.
        other: &'static str,
        /// That field's value.
        other_value: u64,
        /// `" ms"` for durations, `" %"` for percents.
        unit: &'static str,
    },
}

impl Config {
    /// Rejects nonsense before it can cause a 3 AM page: zero prefetch starves the
    /// fleet, a brake ratio above 100 % never engages, an offline timeout shorter
    /// than the heartbeat grace reclaims healthy work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive_u32 = [
            ("max_prefetch", self.max_prefetch),
            ("cores_per_slot", self.cores_per_slot),
            ("block_after_drones", self.block_after_drones),
            ("max_attempts", self.max_attempts),
            ("max_drone_failures", self.max_drone_failures),
            ("upload_failure_limit", self.upload_failure_limit),
            ("min_consecutive_failures", self.min_consecutive_failures),
            (
                "max_escalations_per_window",
                self.max_escalations_per_window,
            ),
            (
                "probe_overload_per_core_centi",
                self.probe_overload_per_core_centi,
            ),
        ];
        let positive_ms = [
            ("heartbeat_grace_ms", self.heartbeat_grace_ms),
            ("offline_timeout_ms", self.offline_timeout_ms),
            ("confirmed_dead_after_ms", self.confirmed_dead_after_ms),
            ("default_duration_ms", self.default_duration_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("grounding_timeout_ms", self.grounding_timeout_ms),
            ("brake_window_ms", self.brake_window_ms),
            ("escalation_window_ms", self.escalation_window_ms),
            ("upload_failure_window_ms", self.upload_failure_window_ms),
        ];
        if let Some((field, _)) = positive_u32.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { field });
        }
        if let Some((field, _)) = positive_ms.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { field });
        }
        if let Some(e) = self.too_large() {
            return Err(e);
        }
        let percents = [
            ("brake_ratio_percent", self.brake_ratio_percent),
            (
                "probe_disk_warning_percent",
                self.probe_disk_warning_percent,
            ),
            (
                "probe_disk_critical_percent",
                self.probe_disk_critical_percent,
            ),
            (
                "probe_memory_critical_percent",
                self.probe_memory_critical_percent,
            ),
        ];
        if let Some(&(field, value)) = percents.iter().find(|(_, v)| !(1..=100).contains(v)) {
            return Err(ConfigError::Percent { field, value });
        }
        if self.probe_disk_warning_percent > self.probe_disk_critical_percent {
            return Err(ConfigError::Order {
                field: "probe_disk_warning_percent",
                value: self.probe_disk_warning_percent.into(),
                relation: "at most",
                other: "probe_disk_critical_percent",
                other_value: self.probe_disk_critical_percent.into(),
                unit: " %",
            });
        }
        let ordered = [
            (
                "heartbeat_grace_ms",
                self.heartbeat_grace_ms,
                "shorter than",
                "offline_timeout_ms",
                self.offline_timeout_ms,
                self.heartbeat_grace_ms < self.offline_timeout_ms,
            ),
            (
                "confirmed_dead_after_ms",
                self.confirmed_dead_after_ms,
                "at most",
                "offline_timeout_ms",
                self.offline_timeout_ms,
                self.confirmed_dead_after_ms <= self.offline_timeout_ms,
            ),
            (
                "retry_base_ms",
                self.retry_base_ms,
                "at most",
                "retry_cap_ms",
                self.retry_cap_ms,
                self.retry_base_ms <= self.retry_cap_ms,
            ),
            (
                "grounding_timeout_ms",
                self.grounding_timeout_ms,
                "at most",
                "grounding_cap_ms",
                self.grounding_cap_ms,
                self.grounding_timeout_ms <= self.grounding_cap_ms,
            ),
        ];
        if let Some(&(field, value, relation, other, other_value, _)) =
            ordered.iter().find(|o| !o.5)
        {
            return Err(ConfigError::Order {
                field,
                value,
                relation,
                other,
                other_value,
                unit: " ms",
            });
        }
        Ok(())
    }

    /// The first field above its upper bound: durations at most
    /// [`MAX_CONFIG_MS`], counts at most [`MAX_CONFIG_COUNT`] (slots and
    /// prefetch at most [`MAX_SLOT_COUNT`]). `block_after_drones` is
    /// unbounded: `u32::MAX` means "never block for failing on drones".
    fn too_large(&self) -> Option<ConfigError> {
        let [c0, c1, c2] = self.escalation_cooldowns_ms;
        let durations = [
            ("heartbeat_grace_ms", self.heartbeat_grace_ms),
            ("offline_timeout_ms", self.offline_timeout_ms),
            ("confirmed_dead_after_ms", self.confirmed_dead_after_ms),
            ("failover_grace_ms", self.failover_grace_ms),
            ("default_duration_ms", self.default_duration_ms),
            ("failure_memory_ms", self.failure_memory_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("retry_cap_ms", self.retry_cap_ms),
            ("failure_age_ms", self.failure_age_ms),
            ("grounding_timeout_ms", self.grounding_timeout_ms),
            ("grounding_cap_ms", self.grounding_cap_ms),
            ("upload_failure_window_ms", self.upload_failure_window_ms),
            ("brake_window_ms", self.brake_window_ms),
            ("min_failure_window_ms", self.min_failure_window_ms),
            ("escalation_cooldowns_ms[0]", c0),
            ("escalation_cooldowns_ms[1]", c1),
            ("escalation_cooldowns_ms[2]", c2),
            ("escalation_window_ms", self.escalation_window_ms),
            ("replan_interval_ms", self.replan_interval_ms),
        ];
        let counts = [
            ("max_prefetch", self.max_prefetch, MAX_SLOT_COUNT),
            ("cores_per_slot", self.cores_per_slot, MAX_SLOT_COUNT),
            ("max_attempts", self.max_attempts, MAX_CONFIG_COUNT),
            (
                "max_auto_unblocks",
                self.max_auto_unblocks,
                MAX_CONFIG_COUNT,
            ),
            (
                "max_drone_failures",
                self.max_drone_failures,
                MAX_CONFIG_COUNT,
            ),
            (
                "upload_failure_limit",
                self.upload_failure_limit,
                MAX_CONFIG_COUNT,
            ),
            ("brake_min_drones", self.brake_min_drones, MAX_CONFIG_COUNT),
            (
                "min_consecutive_failures",
                self.min_consecutive_failures,
                MAX_CONFIG_COUNT,
            ),
            (
                "max_escalations_per_window",
                self.max_escalations_per_window,
                MAX_CONFIG_COUNT,
            ),
            (
                "probe_overload_per_core_centi",
                self.probe_overload_per_core_centi,
                MAX_CONFIG_COUNT,
            ),
        ];
        let duration =
            durations
                .into_iter()
                .find(|(_, v)| *v > MAX_CONFIG_MS)
                .map(|(field, value)| ConfigError::TooLarge {
                    field,
                    value,
                    max: MAX_CONFIG_MS,
                    unit: " ms",
                });
        duration.or_else(|| {
            counts
                .into_iter()
                .find(|(_, v, max)| v > max)
                .map(|(field, value, max)| ConfigError::TooLarge {
                    field,
                    value: u64::from(value),
                    max: u64::from(max),
                    unit: "",
                })
        })
    }

    /// Build Swarm v3's observable policy, for side-by-side comparison: FIFO, a
    /// 60 s offline timeout, no brake, flat 5-minute grounding after 8 failures,
    /// packages blocked after 5 failures, no dependency awareness.
    pub fn v3() -> Config {
        Config {
            heartbeat_grace_ms: 30 * SECOND_MS,
            offline_timeout_ms: 60 * SECOND_MS,
            confirmed_dead_after_ms: 60 * SECOND_MS,
            failover_grace_ms: 0,
            grounding_cap_ms: 5 * MINUTE_MS,
            block_after_drones: u32::MAX,
            max_attempts: 5,
            ordering: Ordering::Fifo,
            dependency_aware: false,
            brake_enabled: false,
            ..Config::default()
        }
    }

    /// Build slots of a drone with `cores` cores.
    pub fn slots_for(&self, cores: u32) -> u32 {
        (cores / self.cores_per_slot).max(1)
    }
}

#[cfg(test)]
mod tests;
