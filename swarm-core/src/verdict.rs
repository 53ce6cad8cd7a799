//! What the core decided for the drone whose request the last [`Swarm::handle`] took: the
//! work it gets, what it must stop, how its report was taken. An adapter builds its reply
//! from this alone, so no rule about a reply lives outside the core and no adapter recovers a
//! decision by scanning the outputs (`tests/verdict.rs` holds the verdict to the outputs after
//! every step of the fuzz generator and simulator runs).
//!
//! The decisions are recorded where they are made (issuing a lease, sending a revoke, fencing
//! a report), for the input's own drone only; the drone's standing (epoch, leases, pending
//! revokes) is read when [`Swarm::verdict`] is asked, so inputs nobody answers cost nothing
//! beyond the record. Not state: neither digested nor snapshotted.
//!
//! [`Swarm::handle`]: crate::Swarm::handle
//! [`Swarm::verdict`]: crate::Swarm::verdict

use crate::atom::Atom;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::Input;
use crate::output::{RejectReason, RevokeReason};
use crate::view::LeaseView;

/// The core's answer to one drone request (`Announce`, `Register`, `Heartbeat`, `RequestWork`,
/// `BuildStarted`, `BuildFinished`, `Deregister`), as of right after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The drone the request came from.
    pub drone: DroneName,
    /// Whether the core knows the drone (after the request: a registration adds it).
    pub known: bool,
    /// Its epoch (0 when unknown): reports must carry it.
    pub epoch: Epoch,
    /// Whether it may get no work because it or the whole swarm is paused.
    pub paused: bool,
    /// The leases it holds, oldest first.
    pub leases: Vec<LeaseView>,
    /// For `RequestWork`: what it gets.
    pub work: Option<Work>,
    /// For `BuildStarted` and `BuildFinished`: how the report was taken.
    pub report: Option<Reported>,
    /// The revokes this request sent it, in order (those naming a package).
    pub revoked: Vec<Revoked>,
    /// Every package it must stop: those just revoked, then those revoked before and not yet
    /// seen stopped (repeated in every reply until then), without repeats.
    pub revokes: Vec<Atom>,
    /// For a heartbeat (or announcement): the task it reported running, to single out its revoke
    /// ([`Verdict::stop_work`]).
    pub current_task: Option<Atom>,
    /// Leases taken back from it by this request (a deregistration returns them all).
    pub returned: u32,
}

/// What a drone that asked for work gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A package to build: a new lease, or (`resent`: a v3 drone that polls while holding one)
    /// the oldest lease it holds, told again. A drone that asked for several slots may get
    /// more new leases: they are in [`Verdict::leases`].
    Given {
        /// The package.
        package: Atom,
        /// Its lease.
        lease: LeaseId,
        /// Its profile (`None`: the default profile).
        profile: Option<String>,
        /// An old lease told again, not a new one.
        resent: bool,
    },
    /// Sync the Portage tree to `expected` first.
    SyncPortage {
        /// The snapshot the queue was computed on.
        expected: String,
    },
    /// Nothing now, and why.
    Nothing {
        /// Why, for the drone's log (e.g. "drained", "busy", "nothing ready").
        reason: String,
    },
}

/// How a build report (started or finished) was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    /// It matched the drone's live lease and was recorded.
    Accepted,
    /// It matched, and the package is now built.
    Built,
    /// The same report as one that already ended this drone's lease (sent again after a lost
    /// reply), or a start of that lease arriving after it: nothing changed and nothing was sent;
    /// answer as the first time.
    Repeated {
        /// Whether that first report built the package.
        built: bool,
    },
    /// Refused for another reason than staleness (an unknown drone).
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// It did not match the drone's live lease (late, foreign, or of an old epoch): nothing was
    /// recorded and the drone is told to stop.
    Stale {
        /// Why it must stop.
        revoke: RevokeReason,
        /// Who else holds what it reported about, if anyone: then it was an attempt on another
        /// drone's lease rather than a late report.
        holder: Option<DroneName>,
    },
}

/// One revoke sent to the drone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// What it must stop.
    pub package: Atom,
    /// Why.
    pub reason: RevokeReason,
}

impl Verdict {
    /// The revoke of the task a heartbeat reported running, if this request revoked it.
    pub fn stop_work(&self) -> Option<&Revoked> {
        let task = self.current_task.as_ref()?;
        self.revoked.iter().find(|r| r.package == *task)
    }

    /// The verdict of two requests handled one after the other for one reply (a registration
    /// and its heartbeat): `later`'s standing, both requests' revokes in order.
    #[must_use]
    pub fn then(self, later: Verdict) -> Verdict {
        let mut revokes: Vec<Atom> = Vec::new();
        for a in self
            .revoked
            .iter()
            .map(|r| &r.package)
            .chain(&later.revokes)
        {
            if !revokes.contains(a) {
                revokes.push(a.clone());
            }
        }
        let mut revoked = self.revoked;
        revoked.extend(later.revoked);
        Verdict {
            revoked,
            revokes,
            work: later.work.or(self.work),
            report: later.report.or(self.report),
            current_task: later.current_task.or(self.current_task),
            returned: self.returned + later.returned,
            ..later
        }
    }
}

/// Which request the record is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Asked {
    /// Not a drone's request: no verdict.
    #[default]
    Nothing,
    /// A registration, heartbeat or deregistration.
    Standing,
    /// A request for work.
    Work,
    /// A build report.
    Report,
}

impl Asked {
    /// Which kind of drone request `input` is.
    pub(crate) fn of(input: &Input) -> Asked {
        match input {
            Input::RequestWork { .. } => Asked::Work,
            Input::BuildStarted(_) | Input::BuildFinished { .. } => Asked::Report,
            Input::Register(_)
            | Input::Announce(_)
            | Input::Heartbeat(_)
            | Input::Deregister { .. } => Asked::Standing,
            _ => Asked::Nothing,
        }
    }
}

/// The decisions recorded during one `handle` for its drone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Decided {
    pub(crate) asked: Asked,
    pub(crate) drone: Option<DroneName>,
    pub(crate) current_task: Option<Atom>,
    pub(crate) work: Option<Work>,
    pub(crate) report: Option<Reported>,
    pub(crate) revoked: Vec<Revoked>,
    pub(crate) returned: u32,
}

impl Decided {
    /// Starts the record of a new input.
    pub(crate) fn begin(&mut self, asked: Asked, drone: Option<&DroneName>) {
        self.asked = asked;
        match (drone, asked) {
            (Some(d), a) if a != Asked::Nothing => {
                if self.drone.as_ref() != Some(d) {
                    self.drone = Some(d.clone());
                }
            }
            _ => self.drone = None,
        }
        self.current_task = None;
        self.work = None;
        self.report = None;
        self.revoked.clear();
        self.returned = 0;
    }

    /// Whether `drone` is the one this input is from.
    pub(crate) fn is_for(&self, drone: &DroneName) -> bool {
        self.drone.as_ref() == Some(drone)
    }

    /// A lease issued (or told again) to `drone`: the first one is the work it is given.
    pub(crate) fn given(&mut self, drone: &DroneName, given: impl FnOnce() -> Work) {
        if self.asked == Asked::Work && self.work.is_none() && self.is_for(drone) {
            self.work = Some(given());
        }
    }

    /// A revoke sent to `drone`.
    pub(crate) fn revoked(&mut self, drone: &DroneName, package: &Atom, reason: &RevokeReason) {
        if self.is_for(drone) {
            self.revoked.push(Revoked {
                package: package.clone(),
                reason: reason.clone(),
            });
        }
    }

    /// A lease of `drone` taken back.
    pub(crate) fn reclaimed(&mut self, drone: &DroneName) {
        if self.is_for(drone) {
            self.returned += 1;
        }
    }

    /// Why the drone was first told to stop `package` during this input.
    pub(crate) fn first_revoke_of(&self, package: &Atom) -> RevokeReason {
        self.revoked
            .iter()
            .find(|r| r.package == *package)
            .map_or(RevokeReason::Unknown, |r| r.reason.clone())
    }

    /// How the report was taken (the first word counts: a refusal ends the input).
    pub(crate) fn reported(&mut self, how: Reported) {
        if self.asked == Asked::Report && self.report.is_none() {
            self.report = Some(how);
        }
    }
}
