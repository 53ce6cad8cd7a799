//! The self-healing ladder: restart_service → hard_restart → reboot → manual.
//!
//! Never while the heartbeat is fresh (so never on probe-path asymmetry),
//! never before `min_consecutive_failures` spanning `min_failure_window`, never
//! above the fleet-wide rate, never twice on one level.

use crate::input::{DroneKind, ProbeStatus};
use crate::output::EscalationAction;
use crate::state::{Drone, SwarmState};

/// The ladder for a kind of machine. Bare metal (and unknown) is never rebooted.
pub(crate) fn ladder(kind: DroneKind) -> &'static [EscalationAction] {
    use EscalationAction::*;
    match kind {
        DroneKind::Lxc | DroneKind::Qemu => &[RestartService, HardRestart, Reboot, Manual],
        DroneKind::BareMetal | DroneKind::Unknown => &[RestartService, HardRestart, Manual],
    }
}

fn cooldown_after(st: &SwarmState, action: EscalationAction) -> u64 {
    let c = &st.config.escalation_cooldowns_ms;
    match action {
        EscalationAction::RestartService => c[0],
        EscalationAction::HardRestart => c[1],
        EscalationAction::Reboot | EscalationAction::Manual => c[2],
    }
}

/// Fleet-wide escalations inside the rate window.
pub(crate) fn recent(st: &SwarmState) -> u32 {
    let w = st.config.escalation_window_ms;
    st.escalations
        .iter()
        .filter(|t| st.now.since(**t) < w)
        .count() as u32
}

/// Whether the streak alone is long enough to justify escalating.
pub(crate) fn streak_qualifies(st: &SwarmState, d: &Drone) -> bool {
    let c = &st.config;
    d.probe.failures >= c.min_consecutive_failures
        && d.probe
            .first_at
            .is_some_and(|f| st.now.since(f) >= c.min_failure_window_ms)
}

/// The next ladder step for a drone after a probe result, brake aside.
pub(crate) fn next_step(
    st: &SwarmState,
    d: &Drone,
    status: ProbeStatus,
) -> Option<EscalationAction> {
    if !status.is_failure() || !streak_qualifies(st, d) {
        return None;
    }
    // A heartbeating drone's agent is alive: whatever the probe says, restarting
    // it would disrupt working builds (v3 escalated heartbeating drones).
    if d.heartbeat_fresh(st.now, st.config.heartbeat_grace_ms) {
        return None;
    }
    // A drone that said goodbye is down on purpose: nothing to heal.
    if d.liveness() == crate::state::Liveness::Stopped {
        return None;
    }
    let steps = ladder(d.spec.kind);
    let next = *steps.get(usize::from(d.ladder.steps))?;
    if d.ladder.steps > 0 {
        let prev = steps[usize::from(d.ladder.steps) - 1];
        let last = d.ladder.last_at?;
        if st.now.since(last) < cooldown_after(st, prev) {
            return None;
        }
    }
    (recent(st) < st.config.max_escalations_per_window).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input::DroneSpec;
    use crate::time::Timestamp;

    fn stale_drone(kind: DroneKind) -> (SwarmState, Drone) {
        let mut st = SwarmState::new(Config::default());
        st.now = Timestamp(1_000_000);
        let spec = DroneSpec {
            kind,
            ..DroneSpec::default()
        };
        let d = Drone::new(spec, Timestamp(0));
        (st, d)
    }

    #[test]
    fn three_failures_within_three_minutes_are_not_enough() {
        let (st, mut d) = stale_drone(DroneKind::Qemu);
        d.probe.failures = 3;
        d.probe.first_at = Some(Timestamp(st.now.0 - 179_000));
        assert_eq!(next_step(&st, &d, ProbeStatus::ServiceDown), None);
        d.probe.first_at = Some(Timestamp(st.now.0 - 180_000));
        assert_eq!(
            next_step(&st, &d, ProbeStatus::ServiceDown),
            Some(EscalationAction::RestartService)
        );
    }

    #[test]
    fn unreachable_with_a_fresh_heartbeat_never_escalates() {
        let (st, mut d) = stale_drone(DroneKind::Qemu);
        d.probe.failures = 10;
        d.probe.first_at = Some(Timestamp(0));
        d.last_heartbeat = st.now;
        assert_eq!(next_step(&st, &d, ProbeStatus::Unreachable), None);
        assert_eq!(next_step(&st, &d, ProbeStatus::Timeout), None);
        assert_eq!(
            next_step(&st, &d, ProbeStatus::ServiceDown),
            None,
            "fresh heartbeats suppress every escalation"
        );
    }

    #[test]
    fn bare_metal_is_never_rebooted() {
        assert!(!ladder(DroneKind::BareMetal).contains(&EscalationAction::Reboot));
        assert!(!ladder(DroneKind::Unknown).contains(&EscalationAction::Reboot));
        assert!(ladder(DroneKind::Lxc).contains(&EscalationAction::Reboot));
    }

    #[test]
    fn each_step_waits_for_the_previous_steps_cooldown() {
        let (st, mut d) = stale_drone(DroneKind::Qemu);
        d.probe.failures = 5;
        d.probe.first_at = Some(Timestamp(0));
        d.ladder.steps = 2; // restart_service, hard_restart done
        d.ladder.last_at = Some(Timestamp(st.now.0 - 29_000));
        assert_eq!(next_step(&st, &d, ProbeStatus::ServiceDown), None);
        d.ladder.last_at = Some(Timestamp(st.now.0 - 30_000));
        assert_eq!(
            next_step(&st, &d, ProbeStatus::ServiceDown),
            Some(EscalationAction::Reboot)
        );
        d.ladder.steps = 4;
        assert_eq!(
            next_step(&st, &d, ProbeStatus::ServiceDown),
            None,
            "the ladder ends at manual"
        );
    }

    #[test]
    fn the_fleet_wide_rate_limit_holds() {
        let (mut st, mut d) = stale_drone(DroneKind::Qemu);
        d.probe.failures = 5;
        d.probe.first_at = Some(Timestamp(0));
        st.escalations.extend([st.now, st.now]);
        assert_eq!(next_step(&st, &d, ProbeStatus::ServiceDown), None);
    }
}
