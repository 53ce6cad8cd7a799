//! The per-drone circuit breaker: consecutive infra/OOM failures ground a drone,
//! for exponentially longer each time, until a success resets it.

use crate::state::{Drone, SwarmState};
use crate::time::{exponential_ms, Timestamp};

/// Whether the drone's failure streak trips the breaker.
pub(crate) fn trips(st: &SwarmState, d: &Drone) -> bool {
    d.consecutive_failures >= st.config.max_drone_failures
}

/// How long the next grounding lasts: `grounding_timeout · 3^(n-1)`, capped.
pub(crate) fn grounded_until(st: &SwarmState, d: &Drone) -> Timestamp {
    let c = &st.config;
    st.now.plus(exponential_ms(
        c.grounding_timeout_ms,
        d.groundings + 1,
        c.grounding_cap_ms,
    ))
}

/// Upload failures within the window reach the limit: hold the drone.
pub(crate) fn upload_hold_until(st: &SwarmState, d: &Drone) -> Option<Timestamp> {
    let c = &st.config;
    let recent = d
        .upload_failures
        .iter()
        .filter(|t| st.now.since(**t) < c.upload_failure_window_ms)
        .count() as u32;
    (recent >= c.upload_failure_limit).then(|| st.now.plus(c.upload_failure_window_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input::DroneSpec;
    use crate::time::{HOUR_MS, MINUTE_MS};

    #[test]
    fn grounding_triples_each_time_and_caps_at_an_hour() {
        let st = SwarmState::new(Config::default());
        let mut d = Drone::new(DroneSpec::default(), Timestamp(0));
        let got: Vec<u64> = (0..5)
            .map(|n| {
                d.groundings = n;
                grounded_until(&st, &d).0
            })
            .collect();
        assert_eq!(
            got,
            vec![
                5 * MINUTE_MS,
                15 * MINUTE_MS,
                45 * MINUTE_MS,
                HOUR_MS,
                HOUR_MS
            ]
        );
    }

    #[test]
    fn eight_consecutive_failures_trip_the_breaker() {
        let st = SwarmState::new(Config::default());
        let mut d = Drone::new(DroneSpec::default(), Timestamp(0));
        d.consecutive_failures = 7;
        assert!(!trips(&st, &d));
        d.consecutive_failures = 8;
        assert!(trips(&st, &d));
    }

    #[test]
    fn three_upload_failures_in_half_an_hour_hold_the_drone() {
        let mut st = SwarmState::new(Config::default());
        st.now = Timestamp(40 * MINUTE_MS);
        let mut d = Drone::new(DroneSpec::default(), Timestamp(0));
        d.upload_failures.extend([
            Timestamp(0),
            Timestamp(20 * MINUTE_MS),
            Timestamp(39 * MINUTE_MS),
        ]);
        assert_eq!(
            upload_hold_until(&st, &d),
            None,
            "the first one is outside the window"
        );
        d.upload_failures.push_back(Timestamp(40 * MINUTE_MS));
        assert_eq!(upload_hold_until(&st, &d), Some(Timestamp(70 * MINUTE_MS)));
    }
}
