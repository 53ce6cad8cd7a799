//! What HTTP workers and the writer pass each other: a job (its plan and where to answer)
//! and the answer. A leaf, so that `Shared` (which submits jobs) and the syncer (which
//! answers them) do not import the writer, which reads `Shared`.

use super::http::ApiError;
use std::sync::mpsc::SyncSender;
use swarm_core::{DroneName, Input, LeaseView, Output};

/// What a worker asks the writer to do.
pub(crate) enum Plan {
    /// Append these inputs, in order, in one group commit.
    Inputs(Vec<Input>),
    /// A bulk job: each part in its own group commit, in order, with drone
    /// inputs committed between them; answered after the last one.
    Parts(Vec<Vec<Input>>),
}

/// What the worker wants to know about a drone after its inputs.
pub(crate) struct Job {
    pub(crate) plan: Plan,
    pub(crate) drone: Option<DroneName>,
    pub(crate) publish_now: bool,
    pub(crate) tx: SyncSender<Result<Done, ApiError>>,
}

/// The answer to a job.
pub(crate) struct Done {
    /// The seq of the job's last input (0 if it had none).
    pub(crate) seq: u64,
    /// Every output of the job's inputs.
    pub(crate) outputs: Vec<Output>,
    /// The drone's state after the batch, when asked for.
    pub(crate) drone: Option<DroneNow>,
}

/// One drone's state right after its request, for the reply.
pub(crate) struct DroneNow {
    pub(crate) known: bool,
    pub(crate) epoch: u64,
    pub(crate) paused: bool,
    pub(crate) leases: Vec<LeaseView>,
    pub(crate) no_work: Option<String>,
    /// Work it was told to stop and has not yet been seen to stop: repeated in every reply.
    pub(crate) revokes: Vec<String>,
}

/// Answers to a batch's jobs, in order.
pub(crate) type Replies = Vec<(SyncSender<Result<Done, ApiError>>, Result<Done, ApiError>)>;
