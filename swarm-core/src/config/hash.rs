//! The digest's view of a [`Config`]. The config is part of the hashed state,
//! so a new field would change the digest of every stored log and snapshot.
//! Fields added after the log format froze are hashed only when they differ
//! from their defaults: a log replayed under the defaults keeps its digest,
//! and a changed threshold still changes it.
//!
//! Every field is named in the destructuring below, so a new field that is
//! not hashed is a compile error, not a silent gap.

use super::Config;
use std::hash::{Hash, Hasher};

impl Hash for Config {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let Config {
            heartbeat_grace_ms,
            offline_timeout_ms,
            confirmed_dead_after_ms,
            failover_grace_ms,
            max_prefetch,
            cores_per_slot,
            default_duration_ms,
            failure_memory_ms,
            block_after_drones,
            retry_base_ms,
            retry_cap_ms,
            max_attempts,
            failure_age_ms,
            max_auto_unblocks,
            max_drone_failures,
            grounding_timeout_ms,
            grounding_cap_ms,
            upload_failure_limit,
            upload_failure_window_ms,
            brake_window_ms,
            brake_ratio_percent,
            brake_min_drones,
            min_consecutive_failures,
            min_failure_window_ms,
            escalation_cooldowns_ms,
            max_escalations_per_window,
            escalation_window_ms,
            replan_interval_ms,
            ordering,
            dependency_aware,
            brake_enabled,
            probe_disk_warning_percent,
            probe_disk_critical_percent,
            probe_memory_critical_percent,
            probe_overload_per_core_centi,
        } = self;
        // The fields of the first format, in the order `#[derive(Hash)]` hashed them.
        heartbeat_grace_ms.hash(state);
        offline_timeout_ms.hash(state);
        confirmed_dead_after_ms.hash(state);
        failover_grace_ms.hash(state);
        max_prefetch.hash(state);
        cores_per_slot.hash(state);
        default_duration_ms.hash(state);
        failure_memory_ms.hash(state);
        block_after_drones.hash(state);
        retry_base_ms.hash(state);
        retry_cap_ms.hash(state);
        max_attempts.hash(state);
        failure_age_ms.hash(state);
        max_auto_unblocks.hash(state);
        max_drone_failures.hash(state);
        grounding_timeout_ms.hash(state);
        grounding_cap_ms.hash(state);
        upload_failure_limit.hash(state);
        upload_failure_window_ms.hash(state);
        brake_window_ms.hash(state);
        brake_ratio_percent.hash(state);
        brake_min_drones.hash(state);
        min_consecutive_failures.hash(state);
        min_failure_window_ms.hash(state);
        escalation_cooldowns_ms.hash(state);
        max_escalations_per_window.hash(state);
        escalation_window_ms.hash(state);
        replan_interval_ms.hash(state);
        ordering.hash(state);
        dependency_aware.hash(state);
        brake_enabled.hash(state);
        // Probe thresholds (added with `Input::ProbeFigures`): only when changed, each with
        // its slot so two changed fields never hash alike.
        let defaults = Config::default();
        let probe = [
            (
                probe_disk_warning_percent,
                defaults.probe_disk_warning_percent,
            ),
            (
                probe_disk_critical_percent,
                defaults.probe_disk_critical_percent,
            ),
            (
                probe_memory_critical_percent,
                defaults.probe_memory_critical_percent,
            ),
            (
                probe_overload_per_core_centi,
                defaults.probe_overload_per_core_centi,
            ),
        ];
        for (slot, (value, default)) in (0u8..).zip(probe) {
            if *value != default {
                (slot, value).hash(state);
            }
        }
    }
}
