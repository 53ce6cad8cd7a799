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
    let need = st.ram_need_mb(p.atom.key());
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
