//! Who may join the fleet, and how fast: a cap on registered drones
//! (`max_drones`) and on new registrations per minute
//! (`max_registrations_per_minute`), so a storm of invented names cannot
//! grow the server's memory, its `/nodes` or the prober's work without
//! bound. Drones already known re-register (heartbeat) freely.

use super::http::ApiError;
use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use swarm_core::DroneName;

/// Limits on the fleet and on what its drones may point the server at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroneLimits {
    /// Registered drones at most; a new name beyond it gets 503.
    pub max_drones: usize,
    /// New drones accepted per minute (a burst of this many, then refilled
    /// evenly); beyond it a new name gets 429.
    pub registrations_per_minute: u32,
    /// Networks a drone's self-reported `ip` may be in for the prober to use
    /// it; any other claim is ignored and the address the drone called from
    /// is probed, so no caller can aim the prober at a host of its choosing.
    pub probe_networks: Vec<ipnet::IpNet>,
}

impl Default for DroneLimits {
    fn default() -> Self {
        DroneLimits {
            max_drones: 1024,
            registrations_per_minute: 240,
            probe_networks: Vec::new(),
        }
    }
}

impl DroneLimits {
    /// Limits that let a fleet of `drones` register at once (benchmarks).
    pub fn for_fleet(drones: usize) -> DroneLimits {
        let d = DroneLimits::default();
        DroneLimits {
            max_drones: d.max_drones.max(drones),
            registrations_per_minute: d
                .registrations_per_minute
                .max(u32::try_from(drones).unwrap_or(u32::MAX)),
            ..d
        }
    }
}

/// The drones the core knows, by name: filled from the core at start, added on registration,
/// dropped when the core removes one. Tells a new drone from a known one (the gate applies to
/// new ones only) without asking the writer for a copy of a possibly large core.
#[derive(Debug, Default)]
pub(crate) struct KnownDrones(RwLock<BTreeSet<DroneName>>);

impl KnownDrones {
    pub(crate) fn new(names: impl IntoIterator<Item = DroneName>) -> KnownDrones {
        KnownDrones(RwLock::new(names.into_iter().collect()))
    }

    pub(crate) fn contains(&self, name: &DroneName) -> bool {
        self.0.read().is_ok_and(|s| s.contains(name))
    }

    /// How many, for `max_drones`.
    pub(crate) fn len(&self) -> usize {
        self.0.read().map_or(0, |s| s.len())
    }

    pub(crate) fn insert(&self, name: &DroneName) {
        if let Ok(mut s) = self.0.write() {
            if !s.contains(name) {
                s.insert(name.clone());
            }
        }
    }

    /// A drone the core removed: it no longer counts toward `max_drones` and registers again
    /// as new.
    pub(crate) fn remove(&self, name: &DroneName) {
        if let Ok(mut s) = self.0.write() {
            s.remove(name);
        }
    }
}

/// A token bucket over new registrations.
#[derive(Debug)]
pub(crate) struct RegistrationGate {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

impl RegistrationGate {
    pub(crate) fn new(per_minute: u32) -> RegistrationGate {
        RegistrationGate {
            per_minute: per_minute.max(1),
            state: Mutex::new((f64::from(per_minute.max(1)), Instant::now())),
        }
    }

    /// Takes one new registration at `now`, or says how long until one is free.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cap = f64::from(self.per_minute);
        let per_s = cap / 60.0;
        let elapsed = now.saturating_duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * per_s).min(cap);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - st.0) / per_s))
        }
    }
}

/// Checks a registration of a drone the server does not know yet.
pub(crate) fn admit_new(
    limits: &DroneLimits,
    gate: &RegistrationGate,
    registered: usize,
    name: &str,
) -> Result<(), ApiError> {
    if registered >= limits.max_drones {
        return Err(ApiError::field(
            503,
            "name",
            format!(
                "cannot register {name:?}: {registered} drones are registered and max_drones is {}; retire one (`swarm node remove NAME`) or raise max_drones",
                limits.max_drones
            ),
        ));
    }
    gate.admit(Instant::now()).map_err(|wait| {
        ApiError::field(
            429,
            "name",
            format!(
                "cannot register {name:?} now: more than {} new drones registered in the last minute (max_registrations_per_minute); retry in {} s",
                limits.registrations_per_minute,
                wait.as_secs().max(1)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_limit_then_one_per_interval() {
        let gate = RegistrationGate::new(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(gate.admit(t0).is_ok());
        }
        let wait = gate.admit(t0).expect_err("the 61st in the same instant");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(gate.admit(t0 + Duration::from_millis(1100)).is_ok());
        assert!(gate.admit(t0 + Duration::from_millis(1200)).is_err());
    }
}
