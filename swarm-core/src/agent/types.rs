//! What goes into the agent's state machine and what comes out.

use crate::atom::Atom;
use crate::health::HealthSample;
use crate::input::FailureClass;

/// The agent's own handle for a job; the lease can change under a job (adoption).
pub type JobId = u64;

/// Which leases the agent held when it sent a request ([`crate::agent::AgentState::request_mark`]).
///
/// The server answers with what it knew when it handled the request, and the agent may meanwhile
/// have been given a package again under a new lease (the heartbeat and the work request run on
/// their own threads, and either reply may be applied first). A revoke in the reply is then about
/// an older lease of that package, so it stops only jobs that held their lease when the request
/// went out; a revoke meant for the new lease is repeated in the next reply (the core keeps
/// repeating it until a heartbeat no longer lists the lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestMark(pub(super) u64);

impl RequestMark {
    /// Whether `job` held its lease when the request was sent.
    #[must_use]
    pub fn covers(self, job: &AgentJob) -> bool {
        job.given < self.0
    }
}

/// Why the agent stops a build before it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The server took it away (revoke, stop_work, stale): kill, report nothing.
    Revoked(String),
    /// The agent hands it back (shutdown, Critical health): kill, return the lease.
    Return(String),
}

/// One leased package the agent holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentJob {
    /// What it builds.
    pub atom: Atom,
    /// The lease; `None` only from a server that sends none (v3).
    pub lease: Option<u64>,
    /// The builder has been started.
    pub started: bool,
    /// Set when the build must be stopped; whoever runs it acts on it.
    pub stop: Option<Stop>,
    /// The build ended and its report is on its way; the lease is still held until then.
    pub ended: bool,
    /// When the job took its lease (started, or adopted a newer one), in the agent's count of
    /// leases taken; see [`RequestMark`].
    pub given: u64,
    /// The farm whose lease it is (the work reply's `farm_id`); `None` when the server did not
    /// say. A server of another farm (one that replaced it at the same address) neither revokes
    /// it nor hears of its lease, whose number means nothing there.
    pub farm: Option<String>,
}

/// A lease the server says this drone holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The lease.
    pub lease: u64,
    /// Its package, in whatever spelling the server used.
    pub package: String,
}

/// What to do with running builds on SIGTERM/SIGINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStop {
    /// Let running builds finish and report them.
    Finish,
    /// Kill running builds and hand their leases back at once.
    Return,
}

/// Where the agent is in its shutdown.
///
/// ```text
///            signal, on-stop finish          signal
/// Running --------------------------> Draining -----> Returning ---signal---> Exit
///    |                                                                          ^
///    +---------> Returning ----------> ReturningAgain ---------signal-----------+
///   signal, on-stop return   signal
/// ```
///
/// Three signals leave at once whatever `--on-stop` says: finished builds are delivered
/// through the first two (under `return` the second left at once, its finished builds
/// undelivered, and a long stop then let the server reclaim them: h49 F1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Normal operation.
    #[default]
    Running,
    /// Finishing running builds, taking no new ones.
    Draining,
    /// Killing running builds and handing them back.
    Returning,
    /// Returning, told a second time under `--on-stop return`: the same, and the next signal
    /// leaves at once.
    ReturningAgain,
    /// Leaving at once.
    Exit,
}

impl Phase {
    /// The phase after one more SIGTERM/SIGINT.
    #[must_use]
    pub fn on_signal(self, on_stop: OnStop) -> Phase {
        match (self, on_stop) {
            (Phase::Running, OnStop::Finish) => Phase::Draining,
            (Phase::Running, OnStop::Return) => Phase::Returning,
            (Phase::Draining, _) => Phase::Returning,
            (Phase::Returning, OnStop::Return) => Phase::ReturningAgain,
            (Phase::Returning | Phase::ReturningAgain | Phase::Exit, _) => Phase::Exit,
        }
    }

    /// Whether the agent may ask for new work.
    #[must_use]
    pub fn takes_work(self) -> bool {
        self == Phase::Running
    }

    /// Whether running builds must be stopped and returned.
    #[must_use]
    pub fn returns_work(self) -> bool {
        matches!(self, Phase::Returning | Phase::ReturningAgain | Phase::Exit)
    }

    /// Whether the agent may leave now.
    #[must_use]
    pub fn may_exit(self, jobs_left: usize) -> bool {
        self == Phase::Exit || (self != Phase::Running && jobs_left == 0)
    }
}

/// The server's answer to a registration or heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerReply {
    /// The control plane's epoch, when it says.
    pub epoch: Option<u64>,
    /// No new work for anyone.
    pub paused: bool,
    /// Atoms taken away.
    pub revoke: Vec<String>,
    /// One package taken away, with why.
    pub stop_work: Option<(String, String)>,
    /// Every lease the server says this drone holds.
    pub leases: Vec<Listed>,
    /// What the agent held when it sent the request; `None` when the reply answers at once (the
    /// simulator), so its revokes and `stop_work` concern every job.
    pub sent: Option<RequestMark>,
    /// The farm that answered (`farm_id`); `None` when the server does not say.
    pub farm: Option<String>,
}

/// The server's answer to a request for work.
///
/// It needs no [`RequestMark`]: only work replies add jobs, and one request for work is in flight
/// at a time, so its revokes cannot be older than a job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkOffer {
    /// The leases offered, the assigned one first, then every other one the drone holds.
    pub offered: Vec<(Option<u64>, Atom)>,
    /// Atoms taken away.
    pub revoke: Vec<String>,
    /// The server asks for a Portage sync to this timestamp first.
    pub sync: Option<String>,
    /// The farm that gave the leases (`farm_id`); `None` when the server does not say.
    pub farm: Option<String>,
}

/// How a build ended, as the one who ran it saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildEnd {
    /// It was stopped before it ended (see the job's [`Stop`]).
    Stopped,
    /// It failed; `crash` when the builder itself crashed.
    Failed {
        /// The class of the failure.
        class: FailureClass,
        /// The builder crashed (not the package).
        crash: bool,
        /// Wall time, in seconds.
        took_s: u64,
    },
    /// It built; how long it took, in seconds.
    Built {
        /// Wall time.
        took_s: u64,
    },
}

/// What a job's report says, decided from how it ended and why it was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportWhat {
    /// The build's own outcome (failure or artifacts).
    Outcome,
    /// The lease is handed back unbuilt.
    Returned(String),
    /// Nothing: the server took the lease away, or nobody asked for the stop.
    Nothing(Option<String>),
}

/// A fact the agent learns.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentInput {
    /// Time passed: the main loop's turn (returns, orphans, asking for work, leaving).
    Tick,
    /// A registration or heartbeat was answered.
    Registered(ServerReply),
    /// The server does not know this drone (404): register again before asking for work.
    Forgotten,
    /// Atoms taken away, outside a reply (the simulator routes the core's revokes so).
    Revoke(Vec<String>),
    /// A request for work was answered.
    Work(WorkOffer),
    /// A request for work failed; ask again no sooner than this many milliseconds.
    WorkFailed {
        /// The backoff the driver chose.
        retry_ms: u64,
    },
    /// A job's builder was started.
    BuildStarted(JobId),
    /// The server says a job's lease is stale: stop it, report nothing.
    Stale {
        /// The job.
        job: JobId,
        /// Why, for the log.
        why: String,
    },
    /// A job's build ended; the answer says what to report.
    BuildEnded {
        /// The job.
        job: JobId,
        /// How.
        end: BuildEnd,
    },
    /// A job's report was refused, or set aside as another farm's: nothing reached the lease's
    /// farm. Once the job is [`AgentInput::Reported`], a listing of its lease still counts, so a
    /// lease that farm goes on listing is handed back.
    NotRecorded(JobId),
    /// A job's report was handed over (or given up): the job and its lease are done.
    Reported(JobId),
    /// An orphan lease was handed back (or the server refused it: it is not ours either way).
    OrphanReturned(u64),
    /// A finished build an earlier agent left in the spool, under this lease, is about to be
    /// delivered while the agent registers and beats: the lease is held until
    /// [`AgentInput::Unspooled`].
    Spooled(u64),
    /// A spooled build's delivery is over: answered, revoked, or kept for the next agent. Its
    /// lease is never started here; should the server go on listing it, it is handed back like
    /// an orphan (an entry spooled without its farm may carry another farm's number).
    Unspooled(u64),
    /// A spooled build turned out to be another farm's: its lease number is no lease of this
    /// server's, so it is let go without being ended (a lease of that number may still be
    /// offered here).
    SpooledElsewhere(u64),
    /// The machine was sampled; the agent adds the OOM kills and crashes it saw since.
    Health(HealthSample),
    /// A Portage sync ended; the new timestamp if it could be read.
    Synced(Option<String>),
    /// SIGTERM/SIGINT.
    Signal(OnStop),
}

/// Something the agent wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentAction {
    /// Ask the server for work; never more than this many slots are free.
    AskForWork {
        /// Free slots.
        free_slots: u32,
    },
    /// Start building a job.
    Start {
        /// The job.
        job: JobId,
        /// What.
        atom: Atom,
        /// Under which lease.
        lease: Option<u64>,
    },
    /// Kill a job's build.
    Kill {
        /// The job.
        job: JobId,
        /// Why, and so what its report will say.
        stop: Stop,
    },
    /// Report a job that ended.
    Report {
        /// The job.
        job: JobId,
        /// What.
        atom: Atom,
        /// Under which lease (the latest adopted one).
        lease: Option<u64>,
        /// What the report says.
        what: ReportWhat,
    },
    /// Hand back a lease the server lists but nothing here runs.
    ReturnLease {
        /// The lease.
        lease: u64,
        /// Its package, as the server spelled it.
        package: String,
    },
    /// Run a Portage sync to this timestamp (no build runs now).
    Sync(String),
    /// Send a heartbeat now: what the agent holds changed.
    Beat,
    /// Leave: shutdown is done (or a third signal says now).
    Exit,
}
