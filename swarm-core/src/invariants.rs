//! The invariants of DESIGN §8.
//!
//! `Swarm::check_invariants` checks what a single state can show (1, 2, 6, 7, 9,
//! 11, plus index consistency). `Monitor` watches the stream of envelopes and
//! outputs and checks what only history can show (3, 4, 5, 6, 10, 11), keeping
//! its own record of heartbeats and probes so it does not trust the core's.

use crate::id::DroneName;
use crate::index::Index;
use crate::input::{Control, Envelope, Input, ProbeStatus};
use crate::output::{Command, EscalationAction, Event, Output, RejectReason};
use crate::policy::{escalate, liveness};
use crate::state::{Liveness, PackageState, PkgId};
use crate::swarm::Swarm;
use crate::time::Timestamp;
use crate::violation::{fail, Violation};
use crate::Config;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl Swarm {
    /// Checks every invariant one state can show. Cost is linear in the state;
    /// tests and the simulator call it after every step.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let st = &self.st;
        // 1. Conservation, and the atom index.
        let indexed: usize = self.ix.by_atom.values().map(|ids| ids.len()).sum();
        if indexed != st.packages.len() {
            return fail(
                1,
                format!(
                    "{indexed} packages indexed by atom for {} packages",
                    st.packages.len()
                ),
            );
        }
        for (i, p) in st.packages.iter().enumerate() {
            let id = PkgId(i as u32);
            if let PackageState::Assigned { lease } = *p.state() {
                match st.leases.get(&lease) {
                    Some(l) if l.pkg == id && l.package == p.atom => {}
                    _ => {
                        return fail(
                            1,
                            format!(
                                "{} is assigned under lease {lease}, which is not its live lease",
                                p.atom
                            ),
                        )
                    }
                }
            }
        }
        // 2. Exclusivity: every lease matches its package and its drone.
        for (lid, l) in &st.leases {
            if st.packages.get(l.pkg.index()).map(|p| p.lease()) != Some(Some(*lid)) {
                return fail(
                    2,
                    format!(
                        "lease {lid} on {} is not the package's live lease",
                        l.package
                    ),
                );
            }
            let Some(d) = st.drones.get(&l.drone) else {
                return fail(
                    2,
                    format!("lease {lid} belongs to unregistered drone {}", l.drone),
                );
            };
            if !d.leases.contains(lid) || d.epoch != l.epoch {
                return fail(
                    2,
                    format!(
                        "lease {lid} is not on {}'s books in epoch {}",
                        l.drone, d.epoch
                    ),
                );
            }
        }
        for d in st.drones.values() {
            for lid in &d.leases {
                if st.leases.get(lid).is_none_or(|l| l.drone != d.spec.name) {
                    return fail(
                        2,
                        format!("{} lists lease {lid}, which is not its own", d.spec.name),
                    );
                }
            }
            // 6. Offline liveness.
            let deadline = liveness::offline_at(st, d);
            if deadline.is_some_and(|t| t <= st.now) {
                return fail(
                    6,
                    format!(
                        "{} is past its offline deadline but not offline",
                        d.spec.name
                    ),
                );
            }
            if d.liveness == Liveness::Stopped && !d.leases.is_empty() {
                return fail(
                    6,
                    format!(
                        "stopped drone {} holds {} leases",
                        d.spec.name,
                        d.leases.len()
                    ),
                );
            }
            if d.liveness == Liveness::Offline && !d.leases.is_empty() {
                return fail(
                    6,
                    format!(
                        "offline drone {} holds {} leases",
                        d.spec.name,
                        d.leases.len()
                    ),
                );
            }
            // 7. Prefetch.
            let not_started = st.not_started(d);
            if not_started > st.config.max_prefetch {
                return fail(
                    7,
                    format!("{} holds {not_started} not-started leases", d.spec.name),
                );
            }
            // 14. One lease per atom per drone: a report names only the atom.
            let held = crate::policy::schedule::held_atoms(st, d);
            if let Some(twice) = held
                .iter()
                .enumerate()
                .find_map(|(i, a)| held[..i].contains(a).then_some(a))
            {
                return fail(14, format!("{} holds two leases of {twice}", d.spec.name));
            }
            // 15. A revoke repeated to a drone never names work it holds a live lease of: it would
            // stop the build it was rightly given.
            if let Some(a) = d.revokes.0.keys().find(|a| held.contains(a)) {
                return fail(
                    15,
                    format!(
                        "{} is told to stop {a}, which it holds a lease of",
                        d.spec.name
                    ),
                );
            }
            if usize::from(d.ladder.steps) > escalate::ladder(d.spec.kind).len() {
                return fail(
                    10,
                    format!("{} climbed past the top of its ladder", d.spec.name),
                );
            }
        }
        // 9. Dependencies.
        for l in st.leases.values() {
            for dep in &st.pkg(l.pkg).eff_deps {
                let dep = st.pkg(*dep);
                if dep.lease_mark <= l.id.0 && !dep.is_built() {
                    return fail(
                        9,
                        format!(
                            "{} is leased ({}) before its dependency {} is built",
                            l.package, l.id, dep.atom
                        ),
                    );
                }
            }
        }
        // 11. No restart storm.
        let recent = escalate::recent(st);
        if recent > st.config.max_escalations_per_window {
            return fail(11, format!("{recent} escalations inside one window"));
        }
        Ok(())
    }

    /// `check_invariants`, plus proof that every incremental index (ready set,
    /// timers, dependency counts) equals one rebuilt from scratch. Costs a copy
    /// of the state: property tests run it every step, the simulator sometimes.
    pub fn check_invariants_deep(&self) -> Result<(), Violation> {
        self.check_invariants()?;
        // Enqueue order increases with the position: an enqueue's plan
        // compares the new packages with the last one only.
        if let Some(w) = self
            .st
            .packages
            .windows(2)
            .find(|w| w[0].order >= w[1].order)
        {
            return fail(
                0,
                format!(
                    "{} (enqueue order {}) sits before {} (enqueue order {})",
                    w[0].atom, w[0].order, w[1].atom, w[1].order
                ),
            );
        }
        for (i, p) in self.st.packages.iter().enumerate() {
            if self.pkg_in(p.profile.0.as_deref(), &p.atom) != Some(PkgId(i as u32)) {
                return fail(
                    1,
                    format!(
                        "{} of profile {} is not indexed under its position {i} (or is queued twice)",
                        p.atom,
                        p.profile.name()
                    ),
                );
            }
        }
        for p in &self.st.packages {
            let unbuilt = p
                .eff_deps
                .iter()
                .filter(|d| !self.st.pkg(**d).is_built())
                .count() as u32;
            if unbuilt != p.unbuilt {
                return fail(
                    0,
                    format!(
                        "{} counts {} unbuilt dependencies, really {unbuilt}",
                        p.atom, p.unbuilt
                    ),
                );
            }
        }
        let mut fresh = Swarm {
            st: self.st.clone(),
            ix: Index::default(),
        };
        fresh.rebuild_index();
        if fresh.ix.by_key != self.ix.by_key {
            return fail(0, "package-per-key index drifted".to_owned());
        }
        if fresh.ix.depth != self.ix.depth {
            return fail(0, "dependency depths drifted".to_owned());
        }
        if let Some((d, p)) = self
            .st
            .cp_pending
            .0
            .iter()
            .find(|(d, p)| self.ix.depth.get(p.index()) != Some(d))
        {
            return fail(
                0,
                format!("package #{} waits for its plan at depth {d}", p.0),
            );
        }
        if fresh.ix.ready != self.ix.ready || fresh.ix.sweepable != self.ix.sweepable {
            return fail(
                0,
                format!(
                    "ready set drifted: {} indexed, {} expected",
                    self.ix.ready.len(),
                    fresh.ix.ready.len()
                ),
            );
        }
        if fresh.ix.timer_at != self.ix.timer_at {
            let diff: Vec<String> = fresh
                .ix
                .timer_at
                .iter()
                .filter(|(k, v)| self.ix.timer_at.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k:?}@{}", v.0))
                .chain(
                    self.ix
                        .timer_at
                        .iter()
                        .filter(|(k, _)| !fresh.ix.timer_at.contains_key(*k))
                        .map(|(k, v)| format!("stale {k:?}@{}", v.0)),
                )
                .take(3)
                .collect();
            return fail(0, format!("timers drifted: {}", diff.join(", ")));
        }
        Ok(())
    }
}

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
        let c = &self.config;
        if now >= self.grace_until {
            // Drones whose last heartbeat is at least `offline_timeout` old.
            let cutoff = now.0.checked_sub(c.offline_timeout_ms).map(Timestamp);
            let silent = cutoff
                .into_iter()
                .flat_map(|c| self.by_age.range(..=(c, DroneName::max())));
            for (hb, drone) in silent {
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
        let Input::ProbeResult { status, .. } = &env.input else {
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
        let (n, first) = self.streak_after(drone, *status, fresh);
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
            Input::ProbeResult { drone, status } if known(drone) => {
                let fresh = self
                    .last_heartbeat
                    .get(drone)
                    .is_some_and(|t| now.since(*t) < self.config.heartbeat_grace_ms);
                if *status == ProbeStatus::Ok {
                    self.streak.remove(drone);
                    self.ladder.remove(drone);
                } else {
                    let next = self.streak_after(drone, *status, fresh);
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
