//! When a drone becomes suspect, offline, or confirmed dead.

use crate::state::{Drone, Liveness, SwarmState};
use crate::time::Timestamp;

/// Heartbeat late: no new work from then on.
pub(crate) fn suspect_at(st: &SwarmState, d: &Drone) -> Option<Timestamp> {
    (d.liveness() == Liveness::Online).then(|| d.last_heartbeat.plus(st.config.heartbeat_grace_ms))
}

/// All leases are reclaimed then. A control-plane restart pushes it past its grace.
pub(crate) fn offline_at(st: &SwarmState, d: &Drone) -> Option<Timestamp> {
    matches!(d.liveness(), Liveness::Online | Liveness::Suspect).then(|| {
        let by_heartbeat = d.last_heartbeat.plus(st.config.offline_timeout_ms);
        by_heartbeat.max(st.grace_until.unwrap_or_default())
    })
}

/// The next liveness check: the suspicion deadline while online, the offline
/// deadline while suspect, none once offline.
pub(crate) fn next_check(st: &SwarmState, d: &Drone) -> Option<Timestamp> {
    match d.liveness() {
        Liveness::Online => suspect_at(st, d),
        Liveness::Suspect => offline_at(st, d),
        Liveness::Offline | Liveness::Stopped => None,
    }
}

/// Early reclaim: suspect, two consecutive "down" probes, and `confirmed_dead_after`
/// since the last heartbeat. Never under the brake, never during failover grace.
pub(crate) fn confirmed_dead_at(st: &SwarmState, d: &Drone) -> Option<Timestamp> {
    if d.liveness() != Liveness::Suspect || d.leases.is_empty() || st.brake.engaged {
        return None;
    }
    let confirmed = d.probe.confirmed_at?;
    let earliest = d.last_heartbeat.plus(st.config.confirmed_dead_after_ms);
    Some(
        confirmed
            .max(earliest)
            .max(st.grace_until.unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::id::LeaseId;
    use crate::input::DroneSpec;

    fn setup() -> (SwarmState, Drone) {
        let st = SwarmState::new(Config::default());
        let d = Drone::new(DroneSpec::default(), Timestamp(1_000_000));
        (st, d)
    }

    #[test]
    fn an_online_drone_turns_suspect_after_the_grace_and_offline_after_the_timeout() {
        let (st, d) = setup();
        assert_eq!(suspect_at(&st, &d), Some(Timestamp(1_090_000)));
        assert_eq!(offline_at(&st, &d), Some(Timestamp(1_900_000)));
    }

    #[test]
    fn a_control_plane_restart_defers_offline_judgement() {
        let (mut st, d) = setup();
        st.grace_until = Some(Timestamp(5_000_000));
        assert_eq!(offline_at(&st, &d), Some(Timestamp(5_000_000)));
    }

    #[test]
    fn a_stopped_drone_has_no_liveness_deadline() {
        let (st, mut d) = setup();
        d.enter(Liveness::Stopped)
            .expect("online to stopped is legal");
        assert_eq!(suspect_at(&st, &d), None);
        assert_eq!(offline_at(&st, &d), None);
        assert_eq!(next_check(&st, &d), None);
    }

    #[test]
    fn confirmed_dead_needs_suspicion_leases_and_probes() {
        let (mut st, mut d) = setup();
        d.probe.confirmed_at = Some(Timestamp(1_100_000));
        assert_eq!(
            confirmed_dead_at(&st, &d),
            None,
            "online drones are never confirmed dead"
        );
        d.enter(Liveness::Suspect)
            .expect("online to suspect is legal");
        assert_eq!(confirmed_dead_at(&st, &d), None, "nothing to reclaim");
        d.leases.insert(LeaseId(1));
        assert_eq!(confirmed_dead_at(&st, &d), Some(Timestamp(1_120_000)));
        st.brake.engaged = true;
        assert_eq!(
            confirmed_dead_at(&st, &d),
            None,
            "the brake stops suspicion reclaims"
        );
    }
}
