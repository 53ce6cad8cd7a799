//! How often a drone's reported build environment may change.
//!
//! An environment is up to 96 values of 16 KiB (about 1.5 MB), and each
//! change is logged in full until the next compaction, thousands of inputs
//! later. A drone whose report changes at every heartbeat (a bug, a
//! template with a timestamp in it, a hostile drone) would grow the log by
//! that much per beat. swarm's agent reads Portage every ten minutes and
//! before each build, so one change a minute holds back little: a change
//! sooner than that is left out of the heartbeat (the drone keeps the
//! environment it had) and goes in with a heartbeat once the minute has
//! passed. Meanwhile the drone gets no new work ([`EnvPace::holding`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use swarm_core::{BuildEnv, DroneName};

/// The least time between two accepted changes of one drone's environment
/// (the core's rule, applied here where reports arrive).
pub(crate) const ENV_CHANGE_EVERY: Duration =
    Duration::from_millis(swarm_core::buildenv::ENV_CHANGE_EVERY_MS);

/// Drones remembered at most before those outside the window are dropped:
/// the map stays bounded however many names come and go.
const REMEMBERED: usize = 4096;

/// What becomes of a reported environment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// The one accepted last, or a change allowed now.
    Take,
    /// A change too soon after the last; `first` for the first one held
    /// since then (the one worth a log line).
    Hold { first: bool },
}

/// The last accepted environment of a drone (its hash: kept in memory
/// only), when it was accepted as a change (`None`: the first report this
/// server had, which starts no window, so a drone whose Portage changed
/// while it was away is seen at once), whether a change was held since,
/// and whether the drone's latest report is one held back.
struct Last {
    env: u64,
    at: Option<Instant>,
    held: bool,
    pending: bool,
}

/// When each drone's environment last changed. Compared with what this
/// server accepted, not with the published view, which may lag.
#[derive(Default)]
pub(crate) struct EnvPace {
    last: Mutex<HashMap<DroneName, Last>>,
}

fn hash_of(env: &BuildEnv) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for kv in env.iter() {
        kv.hash(&mut h);
    }
    h.finish()
}

impl EnvPace {
    /// What becomes of `env`, reported by `drone` at `now`.
    pub(crate) fn pace(&self, drone: &DroneName, env: &BuildEnv, now: Instant) -> Pace {
        let Ok(mut last) = self.last.lock() else {
            return Pace::Take;
        };
        let env = hash_of(env);
        let first = match last.get_mut(drone) {
            None => true,
            Some(l) if l.env == env => {
                l.pending = false;
                return Pace::Take;
            }
            Some(l) => {
                if l.at
                    .is_some_and(|at| now.saturating_duration_since(at) < ENV_CHANGE_EVERY)
                {
                    let first = !l.held;
                    l.held = true;
                    l.pending = true;
                    return Pace::Hold { first };
                }
                false
            }
        };
        if last.len() >= REMEMBERED {
            last.retain(|_, l| {
                l.at.is_some_and(|at| now.saturating_duration_since(at) < ENV_CHANGE_EVERY)
            });
        }
        last.insert(
            drone.clone(),
            Last {
                env,
                at: (!first).then_some(now),
                held: false,
                pending: false,
            },
        );
        Pace::Take
    }

    /// Whether `drone` last reported an environment held back: it builds
    /// in that one, while the farm still has the one before, so it gets no
    /// new work until a heartbeat brings the change in (h31: its builds
    /// were stamped, and released, as the old environment's).
    pub(crate) fn holding(&self, drone: &DroneName) -> bool {
        self.last
            .lock()
            .is_ok_and(|last| last.get(drone).is_some_and(|l| l.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::{EnvPace, Pace, ENV_CHANGE_EVERY, REMEMBERED};
    use std::time::{Duration, Instant};
    use swarm_core::{BuildEnv, DroneName};

    fn name(s: &str) -> DroneName {
        DroneName::new(s).expect("name")
    }

    fn env(cflags: &str) -> BuildEnv {
        BuildEnv::new([("CFLAGS".to_owned(), cflags.to_owned())].into()).expect("env")
    }

    #[test]
    fn one_change_a_minute_per_drone_and_the_same_env_always_goes_in() {
        let pace = EnvPace::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let a = name("a");
        let at = |cflags: &str, t: Instant| pace.pace(&a, &env(cflags), t);
        assert_eq!(at("-O2", t0), Pace::Take);
        assert_eq!(at("-O2", t0 + s(1)), Pace::Take);
        // The first report starts no window: a change right after it goes in.
        assert_eq!(at("-O3", t0 + s(1)), Pace::Take);
        assert_eq!(at("-O2", t0 + s(2)), Pace::Hold { first: true });
        assert_eq!(at("-O1", t0 + s(3)), Pace::Hold { first: false });
        assert!(pace.holding(&a), "it builds in an environment not taken");
        // What it has still goes in meanwhile.
        assert_eq!(at("-O3", t0 + s(4)), Pace::Take);
        assert!(!pace.holding(&a), "back to the one taken");
        assert_eq!(at("-O2", t0 + s(1) + ENV_CHANGE_EVERY), Pace::Take);
        assert_eq!(
            at("-O3", t0 + s(2) + ENV_CHANGE_EVERY),
            Pace::Hold { first: true }
        );
        assert!(pace.holding(&a));
        assert_eq!(at("-O3", t0 + s(2) + ENV_CHANGE_EVERY * 2), Pace::Take);
        assert!(!pace.holding(&a), "taken");
        // Another drone is not held by the first.
        let b = name("b");
        assert_eq!(pace.pace(&b, &env("-O2"), t0 + s(4)), Pace::Take);
        assert_eq!(pace.pace(&b, &env("-O3"), t0 + s(4)), Pace::Take);
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_drones_inside_the_window() {
        let pace = EnvPace::default();
        let t0 = Instant::now();
        let recent = name("recent");
        assert_eq!(pace.pace(&recent, &env("-O1"), t0), Pace::Take);
        assert_eq!(
            pace.pace(&recent, &env("-O2"), t0 + ENV_CHANGE_EVERY),
            Pace::Take
        );
        for i in 0..3 * REMEMBERED {
            let d = name(&format!("d{i}"));
            assert_eq!(pace.pace(&d, &env("-O1"), t0), Pace::Take);
            assert_eq!(pace.pace(&d, &env("-O2"), t0), Pace::Take);
        }
        let later = t0 + ENV_CHANGE_EVERY + Duration::from_secs(1);
        assert_eq!(pace.pace(&name("newcomer"), &env("-O2"), later), Pace::Take);
        let len = pace.last.lock().expect("lock").len();
        assert!(len <= REMEMBERED + 1, "{len} remembered");
        assert_eq!(
            pace.pace(&recent, &env("-O3"), later),
            Pace::Hold { first: true },
            "kept: inside its window"
        );
    }
}
