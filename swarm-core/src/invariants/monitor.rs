//! The history invariants: what only the stream of envelopes and outputs can show (3, 4, 5, 6,
//! 10, 11).

use crate::id::DroneName;
use crate::input::{Control, Envelope, Input, ProbeStatus};
use crate::output::{Command, EscalationAction, Event, Output, RejectReason};
use crate::policy::probe::probe_verdict;
use crate::swarm::Swarm;
use crate::time::Timestamp;
use crate::violation::{fail, Violation};
use crate::Config;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Watches a run and checks the history invariants after every step. It keeps
/// its own record of heartbeats, probes and escalations from the envelopes, so a
/// core bug cannot hide by corrupting the core's own bookkeeping.
#[derive(Clone, Debug)]
pub struct Monitor {
    config: Config,
    now: Timestamp,
    grace_until: Timestamp,
    last_heartbeat: BTreeMap<DroneName, Timestamp>,
    /// The same, ordered by age, so the offline check reads only silent drones.
    by_age: BTreeSet<(Timestamp, DroneName)>,
    streak: BTreeMap<DroneName, (u32, Timestamp)>,
    ladder: BTreeMap<DroneName, EscalationAction>,
    escalations: VecDeque<Timestamp>,
    started: BTreeSet<crate::id::LeaseId>,
    brake: bool,
    /// The core's next deadline as of the previous step.
    due: Option<Timestamp>,
}

impl Monitor {
    /// A monitor for a run under `config`.
    pub fn new(config: Config) -> Self {
        Monitor {
            config,
            now: Timestamp(0),
            grace_until: Timestamp(0),
            last_heartbeat: BTreeMap::new(),
            by_age: BTreeSet::new(),
            streak: BTreeMap::new(),
            ladder: BTreeMap::new(),
            escalations: VecDeque::new(),
            started: BTreeSet::new(),
            brake: false,
            due: None,
        }
    }

    /// Checks one step: the envelope, what `handle` returned, and the state after.
    pub fn check_step(
        &mut self,
        env: &Envelope,
        outputs: &[Output],
        after: &Swarm,
    ) -> Result<(), Violation> {
        // Mirrors the core's rule: after a restart, or when it missed its own
        // deadline by more than a heartbeat grace, the control plane grants
        // every drone a failover grace.
        let unwatched = self
            .due
            .is_some_and(|due| env.at.since(due) > self.config.heartbeat_grace_ms);
        self.due = after.poll_timeout();
        self.now = self.now.max(env.at);
        if unwatched || matches!(env.input, Input::Recovered) {
            self.grace_until = self.now.plus(self.config.failover_grace_ms);
        }
        let now = self.now;
        let c = self.config.clone();
        for o in outputs {
            match o {
                Output::Event(Event::Reclaimed {
                    drone,
                    reason,
                    started,
                    lease,
                    ..
                }) => {
                    let age = self.last_heartbeat.get(drone).map(|t| now.since(*t));
                    if !reason.allowed_for_fresh_drone()
                        && age.is_some_and(|a| a < c.heartbeat_grace_ms)
                    {
                        return fail(
                            4,
                            format!(
                                "{drone} lost lease {lease} ({reason:?}) with a heartbeat {}ms old",
                                age.unwrap_or(0)
                            ),
                        );
                    }
                    if *reason == crate::output::ReclaimReason::Offline
                        && (age.is_some_and(|a| a < c.offline_timeout_ms) || now < self.grace_until)
                    {
                        return fail(
                            4,
                            format!("{drone} reclaimed as offline before its timeout"),
                        );
                    }
                    let was_started = *started || self.started.contains(lease);
                    if was_started && !reason.may_take_started() {
                        return fail(
                            5,
                            format!("started lease {lease} of {drone} taken ({reason:?})"),
                        );
                    }
                    self.started.remove(lease);
                }
                Output::Event(Event::Started { lease, .. }) => {
                    self.started.insert(*lease);
                }
                Output::Event(Event::Built { lease, .. } | Event::BuildFailed { lease, .. }) => {
                    self.started.remove(lease);
                }
                Output::Event(Event::BrakeEngaged { .. }) => self.brake = true,
                Output::Event(Event::BrakeReleased { .. }) => self.brake = false,
                Output::Event(Event::CameBack { drone }) => {
                    self.ladder.remove(drone);
                }
                Output::Command(Command::Escalate { drone, action }) => {
                    self.check_escalation(env, drone, *action)?;
                }
                Output::Command(Command::Assign {
                    drone,
                    package,
                    profile,
                    ..
                }) => {
                    // 13. Environment: work goes only where its profile's expected
                    // environment is (the default profile's: `expect_env`).
                    let expected = after
                        .pkg_in(profile.as_deref(), package)
                        .map(|id| &after.st.pkg(id).profile)
                        .and_then(|tag| after.st.expected_env_of(tag));
                    let env = after.st.drones.get(drone).map(|d| &d.spec.env);
                    if !env.is_some_and(|e| expected.is_some_and(|x| x.admits(e))) {
                        return fail(
                            13,
                            format!("{package} assigned to {drone}, whose environment differs"),
                        );
                    }
                }
                _ => {}
            }
        }
        self.check_fencing(env, outputs)?;
        self.observe(env, after);
        // 6, from the monitor's own heartbeat record.
        let cutoff = now.0.checked_sub(self.config.offline_timeout_ms);
        if let (true, Some(cutoff)) = (now >= self.grace_until, cutoff) {
            // Drones whose last heartbeat is at least `offline_timeout` old (the greatest name
            // is inline text: bounding the range allocates nothing).
            let silent_to = (Timestamp(cutoff), DroneName::max());
            for (hb, drone) in self.by_age.range(..=&silent_to) {
                if after
                    .st
                    .drones
                    .get(drone)
                    .is_some_and(|d| !d.leases.is_empty())
                {
                    return fail(
                        6,
                        format!("{drone} silent for {}ms still holds leases", now.since(*hb)),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_escalation(
        &mut self,
        env: &Envelope,
        drone: &DroneName,
        action: EscalationAction,
    ) -> Result<(), Violation> {
        let now = self.now;
        let c = &self.config;
        if self.brake {
            return fail(
                10,
                format!("{drone} escalated ({action:?}) under the brake"),
            );
        }
        let Some((_, status)) = probe_verdict(c, &env.input) else {
            return fail(10, format!("{drone} escalated without a probe result"));
        };
        let fresh = self
            .last_heartbeat
            .get(drone)
            .is_some_and(|t| now.since(*t) < c.heartbeat_grace_ms);
        if fresh {
            return fail(
                10,
                format!("{drone} escalated on {status:?} with a fresh heartbeat"),
            );
        }
        let (n, first) = self.streak_after(drone, status, fresh);
        if n < c.min_consecutive_failures || now.since(first) < c.min_failure_window_ms {
            return fail(
                10,
                format!(
                    "{drone} escalated after {n} failures over {}ms",
                    now.since(first)
                ),
            );
        }
        if let Some(prev) = self.ladder.get(drone) {
            if action <= *prev {
                return fail(
                    10,
                    format!("{drone} ladder went from {prev:?} to {action:?}"),
                );
            }
        }
        self.ladder.insert(drone.clone(), action);
        self.escalations.push_back(now);
        while self
            .escalations
            .front()
            .is_some_and(|t| now.since(*t) >= c.escalation_window_ms)
        {
            self.escalations.pop_front();
        }
        if self.escalations.len() as u32 > c.max_escalations_per_window {
            return fail(
                11,
                format!("{} escalations inside one window", self.escalations.len()),
            );
        }
        Ok(())
    }

    fn streak_after(
        &self,
        drone: &DroneName,
        status: ProbeStatus,
        fresh: bool,
    ) -> (u32, Timestamp) {
        let (n, first) = self.streak.get(drone).copied().unwrap_or((0, self.now));
        let counts = status.is_failure() && !(status.is_path_failure() && fresh);
        if counts {
            (n + 1, if n == 0 { self.now } else { first })
        } else {
            (n, first)
        }
    }

    fn check_fencing(&self, env: &Envelope, outputs: &[Output]) -> Result<(), Violation> {
        let report = match &env.input {
            Input::BuildStarted(r) | Input::BuildFinished { report: r, .. } => r,
            _ => return Ok(()),
        };
        let stale = outputs.iter().any(|o| {
            matches!(
                o,
                Output::Event(Event::InputRejected {
                    reason: RejectReason::StaleReport { .. }
                })
            )
        });
        if !stale {
            return Ok(());
        }
        let changed = outputs.iter().any(|o| match o {
            Output::Event(Event::Built { drone, package, .. })
            | Output::Event(Event::BuildFailed { drone, package, .. })
            | Output::Event(Event::Started { drone, package, .. }) => {
                *drone == report.drone && *package == report.package
            }
            _ => false,
        });
        let revoked = outputs.iter().any(|o| {
            matches!(o, Output::Command(Command::Revoke { drone, package, .. })
                if *drone == report.drone && package.as_ref() == Some(&report.package))
        });
        if changed {
            return fail(
                3,
                format!(
                    "stale report from {} on {} changed state",
                    report.drone, report.package
                ),
            );
        }
        if !revoked {
            return fail(
                3,
                format!(
                    "stale report from {} on {} was not answered with revoke",
                    report.drone, report.package
                ),
            );
        }
        Ok(())
    }

    fn beat(&mut self, drone: &DroneName, now: Timestamp) {
        if let Some(old) = self.last_heartbeat.insert(drone.clone(), now) {
            self.by_age.remove(&(old, drone.clone()));
        }
        self.by_age.insert((now, drone.clone()));
    }

    fn observe(&mut self, env: &Envelope, after: &Swarm) {
        let now = self.now;
        let known = |d: &DroneName| after.st.drones.contains_key(d);
        match &env.input {
            Input::Register(spec) if known(&spec.name) => {
                self.beat(&spec.name, now);
            }
            Input::Heartbeat(hb) if known(&hb.drone) => {
                self.beat(&hb.drone, now);
            }
            Input::Announce(a) if known(a.drone()) => {
                self.beat(a.drone(), now);
            }
            Input::ProbeFigures(_) | Input::ProbeResult { .. } => {
                let Some((drone, status)) = probe_verdict(&self.config, &env.input) else {
                    return;
                };
                if !known(drone) {
                    return;
                }
                let fresh = self
                    .last_heartbeat
                    .get(drone)
                    .is_some_and(|t| now.since(*t) < self.config.heartbeat_grace_ms);
                if status == ProbeStatus::Ok {
                    self.streak.remove(drone);
                    self.ladder.remove(drone);
                } else {
                    let next = self.streak_after(drone, status, fresh);
                    self.streak.insert(drone.clone(), next);
                }
            }
            Input::Control(Control::Reset) => {
                self.ladder.clear();
                self.streak.clear();
            }
            Input::Control(Control::ResetEscalation { drone }) => {
                self.ladder.remove(drone);
                self.streak.remove(drone);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
