//! What a failed build means for the package: retry later, or block.

use crate::input::FailureClass;
use crate::output::BlockReason;
use crate::policy::schedule::eligible_drones;
use crate::state::{Package, SwarmState};
use crate::time::{exponential_ms, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    Retry { at: Timestamp },
    Block(BlockReason),
}

/// Decides after the failure has been recorded on `p` (attempts, failed_on,
/// build_failed_on already updated).
pub(crate) fn after_failure(st: &SwarmState, p: &Package, class: FailureClass) -> AfterFailure {
    let c = &st.config;
    if class == FailureClass::Build && p.build_failed_on.len() as u32 >= c.block_after_drones {
        return AfterFailure::Block(BlockReason::FailedOnDrones {
            drones: p.build_failed_on.len() as u32,
        });
    }
    if p.attempts >= c.max_attempts {
        return AfterFailure::Block(BlockReason::AttemptsExhausted {
            attempts: p.attempts,
        });
    }
    let need = st.ram_need_mb(&p.key);
    if need > 0
        && !st
            .drones
            .values()
            .any(|d| d.spec.ram_mb == 0 || d.spec.ram_mb >= need)
    {
        return AfterFailure::Block(BlockReason::NeedsMemory { ram_mb: need });
    }
    // Bad-host memory's give-up rule: blocked rather than starved.
    if eligible_drones(st, p).next().is_none() {
        return AfterFailure::Block(BlockReason::NoEligibleDrone);
    }
    AfterFailure::Retry {
        at: st
            .now
            .plus(exponential_ms(c.retry_base_ms, p.attempts, c.retry_cap_ms)),
    }
}

/// When a blocked package is retried automatically, if ever.
pub(crate) fn auto_unblock_at(
    st: &SwarmState,
    p: &Package,
    reason: &BlockReason,
) -> Option<Timestamp> {
    let automatic = !matches!(reason, BlockReason::Masked | BlockReason::Operator);
    (automatic && p.auto_unblocks < st.config.max_auto_unblocks)
        .then(|| st.now.plus(st.config.failure_age_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::Atom;
    use crate::config::Config;
    use crate::id::DroneName;
    use crate::input::{DroneSpec, PackageSpec};
    use crate::state::Drone;

    fn setup() -> (SwarmState, Package) {
        let mut st = SwarmState::new(Config::default());
        st.now = Timestamp(10_000_000);
        for n in ["a", "b", "c"] {
            let name = DroneName::new(n).unwrap_or_default();
            let spec = DroneSpec {
                name: name.clone(),
                ram_mb: 16_384,
                ..DroneSpec::default()
            };
            st.drones.insert(name, Drone::new(spec, st.now));
        }
        let atom = Atom::parse("dev-qt/qtwebengine-6.7").unwrap_or_else(|_| unreachable!());
        let p = st.new_package(&PackageSpec::new(atom));
        (st, p)
    }

    fn fail_on(st: &SwarmState, p: &mut Package, drone: &str, class: FailureClass) {
        let name = DroneName::new(drone).unwrap_or_default();
        p.attempts += 1;
        p.failed_on.insert(name.clone(), st.now);
        if class == FailureClass::Build {
            p.build_failed_on.insert(name);
        }
    }

    #[test]
    fn retries_back_off_exponentially() {
        let (st, mut p) = setup();
        fail_on(&st, &mut p, "a", FailureClass::Infra);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Infra),
            AfterFailure::Retry {
                at: st.now.plus(60_000)
            }
        );
        fail_on(&st, &mut p, "b", FailureClass::Infra);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Infra),
            AfterFailure::Retry {
                at: st.now.plus(180_000)
            }
        );
    }

    #[test]
    fn a_build_failure_on_two_drones_blocks_the_package() {
        let (st, mut p) = setup();
        fail_on(&st, &mut p, "a", FailureClass::Build);
        assert!(matches!(
            after_failure(&st, &p, FailureClass::Build),
            AfterFailure::Retry { .. }
        ));
        fail_on(&st, &mut p, "b", FailureClass::Build);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Build),
            AfterFailure::Block(BlockReason::FailedOnDrones { drones: 2 })
        );
    }

    #[test]
    fn max_attempts_blocks_the_package() {
        let (mut st, mut p) = setup();
        st.config.max_attempts = 2;
        fail_on(&st, &mut p, "a", FailureClass::Infra);
        fail_on(&st, &mut p, "a", FailureClass::Infra);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Infra),
            AfterFailure::Block(BlockReason::AttemptsExhausted { attempts: 2 })
        );
    }

    #[test]
    fn once_every_eligible_drone_failed_it_the_package_is_blocked_not_starved() {
        let (st, mut p) = setup();
        fail_on(&st, &mut p, "a", FailureClass::Infra);
        fail_on(&st, &mut p, "b", FailureClass::Infra);
        assert!(matches!(
            after_failure(&st, &p, FailureClass::Infra),
            AfterFailure::Retry { .. }
        ));
        fail_on(&st, &mut p, "c", FailureClass::Infra);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Infra),
            AfterFailure::Block(BlockReason::NoEligibleDrone)
        );
    }

    #[test]
    fn a_package_bigger_than_every_drone_is_blocked_with_its_memory_need() {
        let (mut st, mut p) = setup();
        st.learned
            .entry("dev-qt/qtwebengine".into())
            .or_default()
            .ram_mb = 16_385;
        fail_on(&st, &mut p, "a", FailureClass::Oom);
        assert_eq!(
            after_failure(&st, &p, FailureClass::Oom),
            AfterFailure::Block(BlockReason::NeedsMemory { ram_mb: 16_385 })
        );
    }

    #[test]
    fn auto_unblock_is_capped_and_never_for_masked_packages() {
        let (st, mut p) = setup();
        let reason = BlockReason::FailedOnDrones { drones: 2 };
        assert_eq!(
            auto_unblock_at(&st, &p, &reason),
            Some(st.now.plus(30 * 60_000))
        );
        assert_eq!(auto_unblock_at(&st, &p, &BlockReason::Masked), None);
        assert_eq!(auto_unblock_at(&st, &p, &BlockReason::Operator), None);
        p.auto_unblocks = 3;
        assert_eq!(auto_unblock_at(&st, &p, &reason), None);
    }
}
