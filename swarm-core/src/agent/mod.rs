//! The drone agent's decisions as a pure state machine (issue 10, item 3): one drone model for
//! `swarm drone` and for the simulator's fleet.
//!
//! No IO, no threads, no clock: [`AgentState::handle`] takes an [`AgentInput`] and the time,
//! and answers with [`AgentAction`]s for whoever drives it to carry out. `swarm drone`'s threads
//! feed it server replies, build ends and signals and do the HTTP and the processes; the
//! simulator feeds it the same facts from its virtual world, so every simulated run exercises the
//! real agent's rules: one build per lease and per package, adopting the lease the server lists
//! for a running build, handing back leases nothing here runs, obeying revokes, asking only for
//! free slots, and returning everything on Critical health or shutdown.
//!
//! | module | job |
//! |---|---|
//! | `types` | inputs, actions, jobs, the shutdown phase |
//! | `leases` | leases the agent ended and unknown leases the server keeps listing |
//! | `state` | [`AgentState`] and its `handle` |
//! | `held` | the leases it holds, per farm, and what a server's listing of leases means |

mod held;
mod leases;
mod state;
mod types;

pub use state::AgentState;
pub use types::{
    AgentAction, AgentInput, AgentJob, BuildEnd, JobId, Listed, OnStop, Phase, ReportWhat,
    RequestMark, ServerReply, Stop, WorkOffer,
};
