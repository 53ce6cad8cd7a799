//! What the agent's threads share: the agent's state machine ([`swarm_core::agent`], where every
//! decision is made) and what only the threads need (process groups, wake-ups, reconnects).
//!
//! One mutex guards it all and is never held across an HTTP call or a wait for a process, so the
//! heartbeat thread is never blocked by a build or by the main loop. The threads feed the machine
//! facts through [`State::feed`] and carry out the actions it answers with.

use std::collections::BTreeMap;
use std::time::Instant;
use swarm_core::agent::{AgentAction, AgentInput, AgentState, RequestMark, ServerReply};
use swarm_core::{HealthMonitor, Timestamp};
use swarm_net::wire::RegisterReply;

pub(crate) use swarm_core::agent::{AgentJob as Job, JobId, Phase, Stop};

/// Everything shared between the main loop, the heartbeat, the job and the signal threads.
#[derive(Debug)]
pub(crate) struct State {
    /// The agent's decisions.
    pub(crate) agent: AgentState,
    /// Process groups of running builders, by job.
    pub(crate) pgids: BTreeMap<JobId, i32>,
    /// Each job's own build directory (`<work_dir>/builds/<label>`), once made.
    pub(crate) build_dirs: BTreeMap<JobId, std::path::PathBuf>,
    /// Times the control plane answered again after being unreachable.
    pub(crate) reconnects: u64,
    /// The largest binary package the server said it takes (its last
    /// register reply); `None` until it said.
    pub(crate) max_artifact: Option<u64>,
    /// The server answers an upload's checks before its body is sent
    /// (`RegisterReply::upload_check`, its last register reply).
    pub(crate) upload_check: bool,
    /// Ask the heartbeat thread for a beat now.
    pub(crate) beat_now: bool,
    /// Builds about to start that asked for the environment to be read again
    /// and sent (a count: each asks once), and how many of those asks a
    /// heartbeat the server answered covered.
    pub(crate) env_asked: u64,
    pub(crate) env_answered: u64,
    /// The last heartbeat's environment was a change the server held back.
    pub(crate) env_held: bool,
    /// The heartbeat thread should stop.
    pub(crate) exiting: bool,
    /// The machine's clock: milliseconds since the agent started (monotonic, so a wall clock
    /// jump cannot hold back the next request for work).
    started: Instant,
}

impl State {
    /// A fresh agent with `slots` slots that polls every `poll` while it gets no work.
    pub(crate) fn new(slots: u32, poll: std::time::Duration, health: HealthMonitor) -> State {
        let poll_ms = u64::try_from(poll.as_millis()).unwrap_or(u64::MAX);
        State {
            agent: AgentState::new(slots, poll_ms, health),
            pgids: BTreeMap::new(),
            build_dirs: BTreeMap::new(),
            reconnects: 0,
            max_artifact: None,
            upload_check: false,
            beat_now: false,
            env_asked: 0,
            env_answered: 0,
            env_held: false,
            exiting: false,
            started: Instant::now(),
        }
    }

    /// The farm a job's lease came from (kept when it was taken), else the
    /// one the server last said it is.
    pub(crate) fn farm_of(&self, job: JobId) -> Option<String> {
        self.agent
            .job(job)
            .and_then(|j| j.farm.clone())
            .or_else(|| self.farm())
    }

    /// The farm the server last said it is (the agent core keeps it);
    /// `None` until one said (a server older than `farm_id`).
    pub(crate) fn farm(&self) -> Option<String> {
        self.agent.farm().map(str::to_owned)
    }

    /// The machine's time now.
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Feeds one fact to the agent's state machine; asks for a beat when it wants one.
    pub(crate) fn feed(&mut self, input: AgentInput) -> Vec<AgentAction> {
        let now = self.now();
        let out = self.agent.handle(input, now);
        if out.contains(&AgentAction::Beat) {
            self.beat_now = true;
        }
        out
    }

    /// One job.
    pub(crate) fn job(&self, id: JobId) -> Option<&Job> {
        self.agent.job(id)
    }

    /// The shutdown phase.
    pub(crate) fn phase(&self) -> Phase {
        self.agent.phase()
    }

    /// The control plane's epoch, as last heard.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.agent.epoch()
    }
}

/// A register reply as the agent's state machine reads it; `sent` is what the agent held when the
/// request went out ([`swarm_core::agent::AgentState::request_mark`], taken with the lease lists).
pub(crate) fn server_reply(reply: &RegisterReply, sent: RequestMark) -> ServerReply {
    ServerReply {
        sent: Some(sent),
        epoch: reply.epoch,
        paused: reply.paused,
        revoke: reply.revoke.clone(),
        stop_work: reply
            .stop_work
            .as_ref()
            .map(|sw| (sw.package.clone(), sw.reason.clone())),
        leases: reply
            .leases
            .iter()
            .map(|l| swarm_core::agent::Listed {
                lease: l.lease,
                package: l.package.clone(),
            })
            .collect(),
        farm: reply.farm_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_register_reply_reaches_the_agent_with_its_revokes_stop_work_and_leases() {
        let mut s = State::new(
            2,
            std::time::Duration::from_secs(10),
            HealthMonitor::default(),
        );
        let reply: RegisterReply = serde_json::from_value(serde_json::json!({
            "status": "registered", "epoch": 4, "paused": true,
            "revoke": ["=a/x-1"],
            "stop_work": {"package": "a/y-1", "reason": "work reassigned to drone-b"},
            "leases": [{"lease": 1, "package": "=a/x-1"}, {"lease": 2, "package": "=a/y-1"}]
        }))
        .expect("reply");
        let sr = server_reply(&reply, s.agent.request_mark());
        assert_eq!(sr.revoke, ["=a/x-1"]);
        assert_eq!(
            sr.stop_work,
            Some(("a/y-1".into(), "work reassigned to drone-b".into()))
        );
        assert_eq!(sr.leases.len(), 2);
        s.feed(AgentInput::Registered(sr));
        assert!(s.agent.is_registered() && s.agent.paused());
        assert_eq!(s.epoch(), Some(4));
    }

    #[test]
    fn a_heartbeat_reply_applied_after_a_work_reply_spares_the_package_given_again() {
        let mut s = State::new(
            2,
            std::time::Duration::from_secs(10),
            HealthMonitor::default(),
        );
        let registered: RegisterReply =
            serde_json::from_value(serde_json::json!({"status": "registered"})).expect("reply");
        let first = s.agent.request_mark();
        s.feed(AgentInput::Registered(server_reply(&registered, first)));
        // The heartbeat goes out (the heartbeat thread takes the mark with the lease lists) ...
        let sent = s.agent.request_mark();
        // ... the main loop's work reply gives =a/x-1 to this drone again under lease 5 ...
        let work = swarm_core::agent::WorkOffer {
            offered: vec![(Some(5), swarm_core::Atom::parse("=a/x-1").expect("atom"))],
            ..swarm_core::agent::WorkOffer::default()
        };
        let out = s.feed(AgentInput::Work(work));
        let Some(&AgentAction::Start { job, .. }) = out.first() else {
            panic!("no start: {out:?}");
        };
        // ... and the heartbeat's reply, made before that, still repeats an old revoke of it.
        let stale: RegisterReply = serde_json::from_value(serde_json::json!({
            "status": "registered", "revoke": ["=a/x-1"], "leases": []
        }))
        .expect("reply");
        let out = s.feed(AgentInput::Registered(server_reply(&stale, sent)));
        assert!(out.is_empty(), "the new build was stopped: {out:?}");
        assert!(s.job(job).is_some_and(|j| j.stop.is_none()));
    }
}
