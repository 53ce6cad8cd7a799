//! Pure decisions: `&SwarmState -> Decision`. Handlers in `swarm/` ask and apply.

pub(crate) mod brake;
pub(crate) mod breaker;
pub(crate) mod escalate;
pub(crate) mod extend;
pub(crate) mod liveness;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod retry;
pub(crate) mod schedule;
