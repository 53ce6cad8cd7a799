//! What the agent's threads share: the jobs it holds, what the server last
//! said (epoch, paused, revokes), its health and its shutdown phase.
//!
//! One mutex guards it all and is never held across an HTTP call or a wait
//! for a process, so the heartbeat thread is never blocked by a build or by
//! the main loop. The decisions that read this state are methods here, pure
//! and unit-tested; the threads only carry them out.

use super::shutdown::Phase;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use swarm_core::{Atom, HealthMonitor};
use swarm_net::wire::{LeaseRef, RegisterReply};

/// The agent's own handle for a job; leases can change under a job (adoption).
pub(crate) type JobId = u64;

/// How many ended leases are remembered so a late listing of one is not
/// mistaken for an orphan or started again.
const REMEMBERED_ENDS: usize = 512;

/// A server listing of an unknown lease this many times in a row makes it an orphan.
const ORPHAN_AFTER_LISTINGS: u32 = 2;

/// Why the agent stops a build before it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The server took it away (revoke, stop_work, stale): kill, report nothing.
    Revoked(String),
    /// The agent hands it back (shutdown, Critical health): kill, `return` it.
    Return(String),
}

/// One leased package the agent holds.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) atom: Atom,
    /// The lease; `None` only from a server that sends none (v3).
    pub(crate) lease: Option<u64>,
    /// The builder has been started.
    pub(crate) started: bool,
    /// Set when the build must be stopped; the job's thread acts on it.
    pub(crate) stop: Option<Stop>,
    /// Process group of the running builder.
    pub(crate) pgid: Option<i32>,
}

/// Everything shared between the main loop, the heartbeat, the job and the signal threads.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) jobs: BTreeMap<JobId, Job>,
    next_job: JobId,
    /// Leases the agent has finished with, most recent last.
    ended: VecDeque<u64>,
    /// Unknown leases the server lists, with how many listings in a row.
    listed_unknown: BTreeMap<u64, (String, u32)>,
    /// The server answered a registration since the agent started (or lost us).
    pub(crate) registered: bool,
    /// Successful heartbeats so far.
    pub(crate) beats: u64,
    /// Times the control plane answered again after being unreachable.
    pub(crate) reconnects: u64,
    /// Ask the heartbeat thread for a beat now.
    pub(crate) beat_now: bool,
    pub(crate) epoch: Option<u64>,
    pub(crate) paused: bool,
    pub(crate) health: HealthMonitor,
    /// OOM kills and builder crashes since the last health sample; no new
    /// work while one waits to be assessed (it may make the drone Critical).
    pub(crate) oom_kills: u32,
    pub(crate) crashes: u32,
    pub(crate) portage_timestamp: Option<String>,
    /// The server asked for a Portage sync to this timestamp.
    pub(crate) sync_wanted: Option<String>,
    /// No work until a heartbeat after this count has been answered (after a sync).
    pub(crate) work_after_beat: u64,
    pub(crate) phase: Phase,
    /// The heartbeat thread should stop.
    pub(crate) exiting: bool,
}

impl State {
    /// Adds a job for a lease the server gave us; `None` if the agent already
    /// has it, has finished with it, or is already building that package (then
    /// the running build adopts the newer lease: one build per package).
    pub(crate) fn add_job(&mut self, atom: Atom, lease: Option<u64>) -> Option<JobId> {
        if let Some(l) = lease {
            if self.has_lease(l) || self.ended.contains(&l) {
                return None;
            }
            self.listed_unknown.remove(&l);
            let listed = [LeaseRef {
                lease: l,
                package: atom.as_str().to_string(),
            }];
            if self
                .jobs
                .values()
                .any(|j| j.atom == atom && j.stop.is_none())
            {
                self.adopt(&listed);
                return None;
            }
        } else if self.jobs.values().any(|j| j.atom == atom) {
            return None;
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            Job {
                atom,
                lease,
                started: false,
                stop: None,
                pgid: None,
            },
        );
        Some(id)
    }

    /// Forgets a job and remembers its lease as ended.
    pub(crate) fn end_job(&mut self, id: JobId) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        if let Some(l) = job.lease {
            self.remember_ended(l);
        }
        Some(job)
    }

    fn remember_ended(&mut self, lease: u64) {
        self.listed_unknown.remove(&lease);
        if !self.ended.contains(&lease) {
            self.ended.push_back(lease);
            while self.ended.len() > REMEMBERED_ENDS {
                self.ended.pop_front();
            }
        }
    }

    /// Whether a job holds `lease`.
    pub(crate) fn has_lease(&self, lease: u64) -> bool {
        self.jobs.values().any(|j| j.lease == Some(lease))
    }

    /// Builds in progress or about to be (every held job takes a slot).
    pub(crate) fn busy_slots(&self) -> usize {
        self.jobs.len()
    }

    /// Leases held and leases started, for the heartbeat.
    pub(crate) fn lease_lists(&self) -> (Vec<u64>, Vec<u64>) {
        let held: BTreeSet<u64> = self.jobs.values().filter_map(|j| j.lease).collect();
        let started: BTreeSet<u64> = self
            .jobs
            .values()
            .filter(|j| j.started)
            .filter_map(|j| j.lease)
            .collect();
        (held.into_iter().collect(), started.into_iter().collect())
    }

    /// The atom being built, for v3's `current_task`.
    pub(crate) fn current_task(&self) -> Option<String> {
        self.jobs
            .values()
            .find(|j| j.started && j.stop.is_none())
            .map(|j| j.atom.as_str().to_string())
    }

    /// Marks every job building one of `atoms` to be killed without a report.
    pub(crate) fn revoke_atoms(&mut self, atoms: &[String], why: &str) -> usize {
        let wanted: Vec<String> = atoms.iter().map(|a| normalise(a)).collect();
        let mut n = 0;
        for job in self.jobs.values_mut() {
            if job.stop.is_none() && wanted.iter().any(|a| a == job.atom.as_str()) {
                job.stop = Some(Stop::Revoked(why.to_string()));
                n += 1;
            }
        }
        n
    }

    /// Marks one job to be killed without a report (a stale answer about it).
    pub(crate) fn revoke_job(&mut self, id: JobId, why: &str) {
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.stop.is_none() {
                job.stop = Some(Stop::Revoked(why.to_string()));
            }
        }
    }

    /// Marks every job to be killed and handed back.
    pub(crate) fn return_all(&mut self, why: &str) -> usize {
        let mut n = 0;
        for job in self.jobs.values_mut() {
            if job.stop.is_none() {
                job.stop = Some(Stop::Return(why.to_string()));
                n += 1;
            }
        }
        n
    }

    /// Applies a heartbeat reply: epoch, pause, revokes, and the leases the
    /// server says we hold. A listed lease for a package a job is running
    /// under another (or no) lease is adopted by that job; any other lease
    /// the agent does not know is counted toward being an orphan.
    pub(crate) fn apply_register_reply(&mut self, reply: &RegisterReply) {
        self.registered = true;
        self.beats += 1;
        if reply.epoch.is_some() {
            self.epoch = reply.epoch;
        }
        self.paused = reply.paused;
        if !reply.revoke.is_empty() {
            self.revoke_atoms(&reply.revoke, "revoked by the control plane");
        }
        if let Some(sw) = &reply.stop_work {
            let why = format!("stop_work: {}", sw.reason);
            self.revoke_atoms(std::slice::from_ref(&sw.package), &why);
        }
        self.note_listed(&reply.leases);
    }

    /// Adopts and counts the leases a reply lists.
    pub(crate) fn note_listed(&mut self, listed: &[LeaseRef]) {
        let seen: BTreeSet<u64> = listed.iter().map(|l| l.lease).collect();
        for l in self.adopt(listed) {
            let entry = self
                .listed_unknown
                .entry(l.lease)
                .or_insert((l.package.clone(), 0));
            entry.1 += 1;
        }
        self.listed_unknown.retain(|lease, _| seen.contains(lease));
    }

    /// Gives each listed lease the agent does not know to a job running the
    /// same package under an older (or no) lease; returns the leases no job took.
    fn adopt<'a>(&mut self, listed: &'a [LeaseRef]) -> Vec<&'a LeaseRef> {
        let mut rest = Vec::new();
        for l in listed {
            if self.has_lease(l.lease) || self.ended.contains(&l.lease) {
                continue;
            }
            let atom = normalise(&l.package);
            let adopter = self.jobs.values_mut().find(|j| {
                j.atom.as_str() == atom && j.stop.is_none() && j.lease.is_none_or(|x| x < l.lease)
            });
            match adopter {
                Some(job) => {
                    tracing::info!(lease = l.lease, package = %atom, old = ?job.lease, "a running build adopts the lease the server lists for it");
                    if let Some(old) = job.lease.replace(l.lease) {
                        self.remember_ended(old);
                    }
                }
                None => rest.push(l),
            }
        }
        rest
    }

    /// Leases the server keeps listing that no job runs: left over from an
    /// earlier agent process. The main loop hands them back.
    pub(crate) fn orphans(&self) -> Vec<(u64, String)> {
        self.listed_unknown
            .iter()
            .filter(|(l, (_, n))| *n >= ORPHAN_AFTER_LISTINGS && !self.has_lease(**l))
            .map(|(l, (p, _))| (*l, p.clone()))
            .collect()
    }

    /// Records that an orphan was handed back.
    pub(crate) fn orphan_returned(&mut self, lease: u64) {
        self.remember_ended(lease);
    }

    /// Whether the main loop may ask for one more package now.
    pub(crate) fn may_ask_for_work(&self, slots: u32) -> bool {
        self.phase.takes_work()
            && self.registered
            && !self.paused
            && self.health.state().takes_work()
            && self.oom_kills == 0
            && self.crashes == 0
            && self.sync_wanted.is_none()
            && self.beats > self.work_after_beat
            && self.busy_slots() < usize::try_from(slots).unwrap_or(usize::MAX)
    }
}

/// An atom as the core writes it, so a revoke matches whatever form it came in.
pub(crate) fn normalise(atom: &str) -> String {
    Atom::parse(atom).map_or_else(|_| atom.trim().to_string(), |a| a.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::{DroneHealth, HealthSample};

    fn atom(a: &str) -> Atom {
        Atom::parse(a).expect("atom")
    }

    fn lref(lease: u64, package: &str) -> LeaseRef {
        LeaseRef {
            lease,
            package: package.into(),
        }
    }

    fn ready() -> State {
        State {
            registered: true,
            beats: 1,
            ..State::default()
        }
    }

    #[test]
    fn a_lease_is_taken_once_and_never_again_after_it_ended() {
        let mut s = ready();
        let id = s.add_job(atom("a/b-1"), Some(7)).expect("added");
        assert_eq!(s.add_job(atom("a/b-1"), Some(7)), None);
        s.jobs.get_mut(&id).expect("job").started = true;
        assert_eq!(s.lease_lists(), (vec![7], vec![7]));
        assert_eq!(s.current_task().as_deref(), Some("=a/b-1"));
        s.end_job(id);
        assert_eq!(
            s.add_job(atom("a/b-1"), Some(7)),
            None,
            "ended leases stay ended"
        );
        assert!(s.add_job(atom("a/b-1"), Some(8)).is_some());
    }

    #[test]
    fn revokes_match_atoms_in_any_spelling_and_only_once() {
        let mut s = ready();
        let id = s.add_job(atom("dev-libs/foo-1.0"), Some(1)).expect("added");
        s.add_job(atom("dev-libs/bar-2"), Some(2)).expect("added");
        assert_eq!(s.revoke_atoms(&["dev-libs/foo-1.0".into()], "r"), 1);
        assert_eq!(s.jobs[&id].stop, Some(Stop::Revoked("r".into())));
        assert_eq!(s.revoke_atoms(&["=dev-libs/foo-1.0".into()], "again"), 0);
        assert_eq!(
            s.return_all("shutdown"),
            1,
            "only the job not already stopping"
        );
    }

    #[test]
    fn a_register_reply_applies_epoch_pause_revoke_and_stop_work() {
        let mut s = State::default();
        s.add_job(atom("a/x-1"), Some(1)).expect("added");
        s.add_job(atom("a/y-1"), Some(2)).expect("added");
        let reply: RegisterReply = serde_json::from_value(serde_json::json!({
            "status": "registered", "epoch": 4, "paused": true,
            "revoke": ["=a/x-1"],
            "stop_work": {"package": "a/y-1", "reason": "work reassigned to drone-b"},
            "leases": [{"lease": 1, "package": "=a/x-1"}, {"lease": 2, "package": "=a/y-1"}]
        }))
        .expect("reply");
        s.apply_register_reply(&reply);
        assert!(s.registered && s.paused);
        assert_eq!((s.epoch, s.beats), (Some(4), 1));
        let stops: Vec<_> = s.jobs.values().map(|j| j.stop.clone()).collect();
        assert_eq!(
            stops,
            [
                Some(Stop::Revoked("revoked by the control plane".into())),
                Some(Stop::Revoked(
                    "stop_work: work reassigned to drone-b".into()
                ))
            ]
        );
        assert!(s.orphans().is_empty());
    }

    #[test]
    fn a_listed_lease_is_adopted_only_by_a_job_running_that_package() {
        let mut s = ready();
        let id = s.add_job(atom("a/x-1"), None).expect("added");
        s.note_listed(&[lref(9, "a/x-1"), lref(10, "=a/z-1")]);
        assert_eq!(s.jobs[&id].lease, Some(9), "adopted");
        assert!(s.orphans().is_empty(), "one listing is not enough");
        s.note_listed(&[lref(9, "a/x-1"), lref(10, "=a/z-1")]);
        assert_eq!(s.orphans(), [(10, "=a/z-1".to_string())]);
        s.orphan_returned(10);
        s.note_listed(&[lref(10, "=a/z-1")]);
        assert!(
            s.orphans().is_empty(),
            "a returned orphan is not returned twice"
        );
    }

    #[test]
    fn an_unknown_lease_that_stops_being_listed_is_forgotten() {
        let mut s = ready();
        s.note_listed(&[lref(3, "a/b-1")]);
        s.note_listed(&[]);
        s.note_listed(&[lref(3, "a/b-1")]);
        assert!(s.orphans().is_empty());
    }

    #[test]
    fn a_lease_that_arrives_by_work_reply_is_no_orphan() {
        let mut s = ready();
        s.note_listed(&[lref(5, "a/b-1")]);
        s.note_listed(&[lref(5, "a/b-1")]);
        s.add_job(atom("a/b-1"), Some(5)).expect("added");
        assert!(s.orphans().is_empty());
    }

    #[test]
    fn work_is_asked_for_only_when_every_condition_holds() {
        let s = ready();
        assert!(s.may_ask_for_work(1));
        let mut s2 = ready();
        s2.add_job(atom("a/b-1"), Some(1)).expect("added");
        assert!(!s2.may_ask_for_work(1), "no free slot");
        assert!(s2.may_ask_for_work(2));
        for f in [
            (|s: &mut State| s.registered = false) as fn(&mut State),
            |s| s.paused = true,
            |s| s.sync_wanted = Some("2026-02-17 00:00".into()),
            |s| s.work_after_beat = 1,
            |s| s.oom_kills = 1,
            |s| s.crashes = 1,
            |s| s.phase = Phase::Draining,
            |s| {
                s.health.assess(&HealthSample {
                    mem_percent: 95,
                    ..HealthSample::default()
                });
            },
        ] {
            let mut s = ready();
            f(&mut s);
            assert!(!s.may_ask_for_work(4), "{s:?}");
        }
        let mut s = ready();
        s.health.assess(&HealthSample {
            oom_kills: 1,
            ..HealthSample::default()
        });
        assert_eq!(s.health.state(), DroneHealth::Critical);
        assert!(!s.may_ask_for_work(4));
    }
}
