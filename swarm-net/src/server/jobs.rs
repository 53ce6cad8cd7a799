//! What HTTP workers and the writer pass each other: a job (its plan and where to answer)
//! and the answer. A leaf, so that `Shared` (which submits jobs) and the syncer (which
//! answers them) do not import the writer, which reads `Shared`.

use super::http::ApiError;
use std::sync::mpsc::SyncSender;
use swarm_core::{DroneName, Input, Output, Verdict};

/// What a worker asks the writer to do.
pub(crate) enum Plan {
    /// Append these inputs, in order, in one group commit.
    Inputs(Vec<Input>),
    /// A bulk job: each part in its own group commit, in order, with drone
    /// inputs committed between them; answered after the last one.
    Parts(Vec<Vec<Input>>),
}

/// What the worker wants done, and for whom it answers.
pub(crate) struct Job {
    pub(crate) plan: Plan,
    /// The drone whose request this is: set, the answer carries the core's verdict for it.
    pub(crate) drone: Option<DroneName>,
    pub(crate) publish_now: bool,
    pub(crate) tx: SyncSender<Result<Done, ApiError>>,
    /// When the worker handed it over: `/metrics` shows how long jobs wait
    /// for the writer.
    pub(crate) queued_at: std::time::Instant,
}

/// The answer to a job.
pub(crate) struct Done {
    /// The seq of the job's last input (0 if it had none).
    pub(crate) seq: u64,
    /// Every output of the job's inputs.
    pub(crate) outputs: Vec<Output>,
    /// The core's verdict on the drone's request (its inputs' verdicts in order, see
    /// `Verdict::then`), when the job named a drone: what its reply is made from.
    pub(crate) verdict: Option<Verdict>,
}

/// Answers to a batch's jobs, in order.
pub(crate) type Replies = Vec<(SyncSender<Result<Done, ApiError>>, Result<Done, ApiError>)>;
