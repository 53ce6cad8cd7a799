//! `Swarm`: the one state machine. `handle` matches the input once and calls a
//! private `on_<input>`; each asks `policy::*` for a decision and applies it.
//!
//! Split by concern: `inputs` (one `on_<input>` each), `announce` (a drone's word merged
//! into its spec), `control` (operator actions), `timers`, `leases`, `outcomes`, `braking`,
//! `matching` (profiles and environments) and `upkeep` (the index kept in step with the state).

mod announce;
mod braking;
mod control;
mod inputs;
mod leases;
mod matching;
mod outcomes;
mod timers;
mod upkeep;
mod verdicts;

use crate::config::{Config, ConfigError};
use crate::index::Index;
use crate::input::{Announce, Envelope, Input};
use crate::output::{Event, Output, RejectReason};
use crate::policy::probe::probe_verdict;
use crate::state::SwarmState;
use crate::time::Timestamp;
use crate::touched::Touched;
use crate::verdict::{Asked, Decided};

/// The swarm's scheduling state machine. Pure: no clock, no IO, no threads.
///
/// Methods come in four kinds, as in quinn-proto's `Connection`: the constructor
/// (`new`, `restore`), the one mutator (`handle`), timers (`poll_timeout`), and
/// read-only getters (`view`, `digest`, `check_invariants`, `state`).
#[derive(Clone, Debug)]
pub struct Swarm {
    pub(crate) st: SwarmState,
    pub(crate) ix: Index,
    /// What the last `handle` changed; not state (neither digested nor snapshotted).
    pub(crate) touched: Touched,
    /// What the last `handle` decided for its drone (see [`Swarm::verdict`]); not state.
    pub(crate) decided: Decided,
    /// The first state change the core refused as illegal (see `Swarm::transition` and
    /// `Swarm::set_liveness`); not state. It stays, so `check_invariants` reports the bug
    /// however many steps later it looks.
    pub(crate) refused: Option<crate::violation::Violation>,
}

/// A snapshot that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot's config no longer validates.
    #[error("snapshot config is invalid: {0}")]
    Config(#[from] ConfigError),
    /// The snapshot's state breaks an invariant: it was corrupted or written by a buggy version.
    #[error("snapshot state is inconsistent: {0}")]
    Inconsistent(#[from] crate::violation::Violation),
}

type Out = Vec<Output>;

impl Swarm {
    /// A new, empty swarm. The config is validated first.
    pub fn new(config: Config) -> Result<Swarm, ConfigError> {
        config.validate()?;
        Ok(Swarm {
            st: SwarmState::new(config),
            ix: Index::default(),
            touched: Touched::default(),
            decided: Decided::default(),
            refused: None,
        })
    }

    /// Rebuilds a swarm from a snapshot; the result has the same `digest`.
    pub fn restore(state: SwarmState) -> Result<Swarm, RestoreError> {
        state.config.validate()?;
        let mut swarm = Swarm {
            st: state,
            ix: Index::default(),
            touched: Touched::default(),
            decided: Decided::default(),
            refused: None,
        };
        swarm.rebuild_index();
        swarm.check_invariants_deep()?;
        Ok(swarm)
    }

    /// A copy that shares no package with this one. A plain `clone` shares
    /// them (a published copy costs pointers), and the first change to each
    /// package after it copies that package; benchmarks of the steady state
    /// between two publishes start from this instead.
    #[doc(hidden)]
    #[must_use]
    pub fn unshared(&self) -> Swarm {
        let mut copy = self.clone();
        for p in &mut copy.st.packages {
            let mut own = crate::state::Package::clone(p);
            // The plan's lists too: the first push to a shared one copies it.
            own.eff_deps = own.eff_deps.to_vec().into();
            own.dependents = std::sync::Arc::new(own.dependents.to_vec());
            *p = std::sync::Arc::new(own);
        }
        copy
    }

    /// The serialisable state, for snapshots.
    pub fn state(&self) -> &SwarmState {
        &self.st
    }

    /// The policy in force.
    pub fn config(&self) -> &Config {
        &self.st.config
    }

    /// Applies one input and returns everything it caused. Total: bad input
    /// becomes `Event::InputRejected`, never a panic.
    #[must_use = "outputs carry commands the adapter must perform"]
    pub fn handle(&mut self, env: &Envelope) -> Vec<Output> {
        let mut out = Vec::new();
        self.touched.clear();
        // The drone an input comes from (or names) is touched whether or not a hook below
        // sees it: a heartbeat's figures change its row without any upkeep.
        let subject = subject(&env.input);
        if let Some(name) = subject {
            self.touched.drone(name);
        }
        self.decided.begin(Asked::of(&env.input), subject);
        if let Input::Heartbeat(hb) | Input::Announce(Announce { beat: hb, .. }) = &env.input {
            self.decided.current_task.clone_from(&hb.current_task);
        }
        if let Input::Control(action) = &env.input {
            self.touched.control(action);
        }
        let queued_before = self.st.packages.len();
        // A control plane that was not running (restart) or whose clock jumped
        // missed its own deadlines by more than a heartbeat grace: it cannot
        // judge drones by heartbeat age, so grace comes before any timer fires.
        // An adapter that ticks at `poll_timeout()` never misses one.
        let unwatched = self
            .poll_timeout()
            .is_some_and(|due| env.at.since(due) > self.st.config.heartbeat_grace_ms);
        self.st.now = self.st.now.max(env.at);
        if matches!(env.input, Input::Recovered) || unwatched {
            self.grant_grace();
        }
        self.fire_due_timers(&mut out);
        match &env.input {
            Input::Register(spec) => self.on_register(spec, &mut out),
            Input::Heartbeat(hb) => self.on_heartbeat(hb, &mut out),
            Input::Announce(a) => self.on_announce(a, &mut out),
            Input::RequestWork { drone, free_slots } => {
                self.on_request_work(drone, *free_slots, &mut out)
            }
            Input::BuildStarted(report) => self.on_build_started(report, &mut out),
            Input::BuildFinished {
                report,
                outcome,
                duration_ms,
            } => self.on_build_finished(report, outcome, *duration_ms, &mut out),
            Input::Deregister { drone } => self.on_deregister(drone, &mut out),
            Input::ProbeFigures(_) | Input::ProbeResult { .. } => {
                if let Some((drone, status)) = probe_verdict(&self.st.config, &env.input) {
                    self.on_probe_result(drone, status, &mut out)
                }
            }
            Input::Enqueue(enqueue) => self.on_enqueue(enqueue, &mut out),
            Input::Control(action) => self.on_control(action, &mut out),
            Input::Release(note) => out.push(Output::Event(Event::Release {
                action: note.action.clone(),
                release: note.release.clone(),
                detail: note.detail.clone(),
            })),
            Input::Recovered => {}
            Input::Tick => {}
        }
        // Packages an enqueue appended: new rows, whatever upkeep they got.
        for i in queued_before..self.st.packages.len() {
            self.touched.package(crate::state::PkgId(i as u32));
        }
        out
    }

    /// The packages, drones and leases the last [`Swarm::handle`] changed, for a read model
    /// that mirrors them (see [`Touched`]).
    #[must_use]
    pub fn touched(&self) -> &Touched {
        &self.touched
    }

    /// The next instant at which something is due; send `Tick` then (or earlier).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.ix.next_timer()
    }
}

/// The drone an input is from or about.
fn subject(input: &Input) -> Option<&crate::id::DroneName> {
    match input {
        Input::Register(spec) => Some(&spec.name),
        Input::Heartbeat(hb) => Some(&hb.drone),
        Input::Announce(a) => Some(a.drone()),
        Input::BuildStarted(r) | Input::BuildFinished { report: r, .. } => Some(&r.drone),
        Input::ProbeFigures(f) => Some(&f.drone),
        Input::RequestWork { drone, .. }
        | Input::Deregister { drone }
        | Input::ProbeResult { drone, .. } => Some(drone),
        _ => None,
    }
}

pub(crate) fn reject(out: &mut Out, reason: RejectReason) {
    out.push(Output::Event(Event::InputRejected { reason }));
}
