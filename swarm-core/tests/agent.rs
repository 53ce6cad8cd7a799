//! The drone agent's state machine (`swarm_core::agent`): its rules one by one, and a property
//! that checks its invariants after every step of random server replies, build ends, health
//! readings, signals and time.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::agent::{
    AgentAction, AgentInput, AgentState, BuildEnd, JobId, Listed, OnStop, Phase, ReportWhat,
    RequestMark, ServerReply, Stop, WorkOffer,
};
use swarm_core::{Atom, FailureClass, HealthMonitor, HealthSample, Timestamp};

const POLL: u64 = 10_000;

fn atom(a: &str) -> Atom {
    Atom::parse(a).expect("atom")
}

fn listed(lease: u64, package: &str) -> Listed {
    Listed {
        lease,
        package: package.into(),
    }
}

fn beat(leases: Vec<Listed>) -> AgentInput {
    AgentInput::Registered(ServerReply {
        leases,
        ..ServerReply::default()
    })
}

fn offer(offered: &[(u64, &str)]) -> AgentInput {
    AgentInput::Work(WorkOffer {
        offered: offered.iter().map(|(l, a)| (Some(*l), atom(a))).collect(),
        ..WorkOffer::default()
    })
}

/// A registered agent with `slots` slots.
fn ready(slots: u32) -> AgentState {
    let mut s = AgentState::new(slots, POLL, HealthMonitor::default());
    s.handle(beat(vec![]), Timestamp(0));
    s
}

fn started(actions: &[AgentAction]) -> Vec<JobId> {
    actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::Start { job, .. } => Some(*job),
            _ => None,
        })
        .collect()
}

fn asks(actions: &[AgentAction]) -> Option<u32> {
    actions.iter().find_map(|a| match a {
        AgentAction::AskForWork { free_slots } => Some(*free_slots),
        _ => None,
    })
}

#[test]
fn a_lease_is_taken_once_and_never_again_after_it_ended() {
    let mut s = ready(2);
    let id = started(&s.handle(offer(&[(7, "a/b-1")]), Timestamp(1)))[0];
    assert!(started(&s.handle(offer(&[(7, "a/b-1")]), Timestamp(2))).is_empty());
    s.handle(AgentInput::BuildStarted(id), Timestamp(3));
    assert_eq!(s.lease_lists(), (vec![7], vec![7]));
    assert_eq!(s.current_task().as_deref(), Some("=a/b-1"));
    let end = BuildEnd::Built { took_s: 5 };
    let out = s.handle(AgentInput::BuildEnded { job: id, end }, Timestamp(4));
    assert!(out.contains(&AgentAction::Report {
        job: id,
        atom: atom("a/b-1"),
        lease: Some(7),
        what: ReportWhat::Outcome
    }));
    assert_eq!(
        s.lease_lists().0,
        [7],
        "held until its report is handed over"
    );
    // But no longer the task at work: a heartbeat naming it while its report's answer is lost
    // drew a revoke of the finished build (h51 F1).
    assert_eq!(s.current_task(), None);
    s.handle(AgentInput::Reported(id), Timestamp(5));
    assert!(s.jobs().is_empty());
    assert!(
        started(&s.handle(offer(&[(7, "a/b-1")]), Timestamp(6))).is_empty(),
        "ended leases stay ended"
    );
    assert_eq!(
        started(&s.handle(offer(&[(8, "a/b-1")]), Timestamp(7))).len(),
        1
    );
}

#[test]
fn revokes_match_atoms_in_any_spelling_and_a_revoked_build_is_never_reported() {
    let mut s = ready(2);
    let ids = started(&s.handle(
        offer(&[(1, "dev-libs/foo-1.0"), (2, "dev-libs/bar-2")]),
        Timestamp(1),
    ));
    let reply = ServerReply {
        revoke: vec!["dev-libs/foo-1.0".into()],
        ..ServerReply::default()
    };
    let out = s.handle(AgentInput::Registered(reply.clone()), Timestamp(2));
    let revoked = Stop::Revoked("revoked by the control plane".into());
    assert_eq!(
        out,
        [AgentAction::Kill {
            job: ids[0],
            stop: revoked.clone()
        }]
    );
    let again = ServerReply {
        revoke: vec!["=dev-libs/foo-1.0".into()],
        ..ServerReply::default()
    };
    assert!(s
        .handle(AgentInput::Registered(again), Timestamp(3))
        .is_empty());
    let end = BuildEnd::Built { took_s: 1 };
    let out = s.handle(AgentInput::BuildEnded { job: ids[0], end }, Timestamp(4));
    assert!(matches!(
        &out[0],
        AgentAction::Report {
            what: ReportWhat::Nothing(Some(_)),
            ..
        }
    ));
}

/// A heartbeat reply revoking `atoms`, listing `leases`, answering a request sent at `sent`.
fn revoking(sent: Option<RequestMark>, atoms: &[&str], leases: Vec<Listed>) -> AgentInput {
    AgentInput::Registered(ServerReply {
        revoke: atoms.iter().map(|a| (*a).to_string()).collect(),
        leases,
        sent,
        ..ServerReply::default()
    })
}

#[test]
fn a_revoke_answered_before_the_package_was_given_again_spares_the_new_build() {
    let mut s = ready(2);
    // The heartbeat goes out; the server's answer to it still repeats a revoke of =a/x-1 (an old
    // lease of it was taken away from this drone).
    let sent = s.request_mark();
    // Meanwhile the work reply gives =a/x-1 to this drone again, under lease 5 (the core drops
    // its old revoke then), and its build starts.
    let id = started(&s.handle(offer(&[(5, "a/x-1")]), Timestamp(1)))[0];
    s.handle(AgentInput::BuildStarted(id), Timestamp(2));
    // The heartbeat's reply, made before lease 5 existed, is applied after the work reply.
    let out = s.handle(revoking(Some(sent), &["=a/x-1"], vec![]), Timestamp(3));
    assert!(out.is_empty(), "the new build was stopped: {out:?}");
    assert!(s.job(id).is_some_and(|j| j.stop.is_none()));
    let stop_work = AgentInput::Registered(ServerReply {
        stop_work: Some(("=a/x-1".into(), "not yours".into())),
        sent: Some(sent),
        ..ServerReply::default()
    });
    assert!(s.handle(stop_work, Timestamp(4)).is_empty());
    // A revoke meant for lease 5 itself is repeated in the next reply, whose request went out
    // while the job was held: that one stops it.
    let sent = s.request_mark();
    let out = s.handle(revoking(Some(sent), &["=a/x-1"], vec![]), Timestamp(5));
    assert_eq!(
        out,
        [AgentAction::Kill {
            job: id,
            stop: Stop::Revoked("revoked by the control plane".into())
        }]
    );
}

#[test]
fn a_revoke_answered_before_a_running_build_adopted_the_new_lease_spares_it() {
    let mut s = ready(2);
    let id = started(&s.handle(offer(&[(1, "a/x-1")]), Timestamp(1)))[0];
    s.handle(AgentInput::BuildStarted(id), Timestamp(2));
    // The heartbeat goes out; the server has taken lease 1 away, and answers with its revoke.
    let sent = s.request_mark();
    // Meanwhile the work reply gives =a/x-1 again under lease 5: the running build adopts it.
    assert!(started(&s.handle(offer(&[(5, "a/x-1")]), Timestamp(3))).is_empty());
    assert_eq!(s.job(id).and_then(|j| j.lease), Some(5));
    let out = s.handle(revoking(Some(sent), &["=a/x-1"], vec![]), Timestamp(4));
    assert!(
        out.is_empty(),
        "the build under lease 5 was stopped: {out:?}"
    );
}

#[test]
fn a_lease_given_up_on_a_revoke_that_the_server_keeps_listing_is_handed_back() {
    let mut s = ready(2);
    let ids = started(&s.handle(offer(&[(5, "a/x-1"), (6, "a/y-1")]), Timestamp(1)));
    // A revoke stops lease 5's build (say the server meant an older lease of the package).
    let out = s.handle(AgentInput::Revoke(vec!["a/x-1".into()]), Timestamp(2));
    assert!(matches!(out[..], [AgentAction::Kill { job, .. }] if job == ids[0]));
    let end = BuildEnd::Stopped;
    s.handle(AgentInput::BuildEnded { job: ids[0], end }, Timestamp(3));
    // Lease 6 builds and is reported: the server is told, so a late listing of it is no orphan.
    let end = BuildEnd::Built { took_s: 1 };
    s.handle(AgentInput::BuildEnded { job: ids[1], end }, Timestamp(3));
    s.handle(AgentInput::Reported(ids[0]), Timestamp(4));
    s.handle(AgentInput::Reported(ids[1]), Timestamp(4));
    assert!(s.jobs().is_empty());
    let both = || vec![listed(5, "=a/x-1"), listed(6, "=a/y-1")];
    s.handle(beat(both()), Timestamp(5));
    assert!(s.orphans().is_empty(), "one listing is not enough");
    s.handle(beat(both()), Timestamp(6));
    let out = s.handle(AgentInput::Tick, Timestamp(7));
    let returns: Vec<&AgentAction> = out
        .iter()
        .filter(|a| matches!(a, AgentAction::ReturnLease { .. }))
        .collect();
    assert_eq!(
        returns,
        [&AgentAction::ReturnLease {
            lease: 5,
            package: "=a/x-1".into()
        }]
    );
    // Never started again, and handed back once.
    assert!(started(&s.handle(offer(&[(5, "a/x-1")]), Timestamp(8))).is_empty());
    s.handle(AgentInput::OrphanReturned(5), Timestamp(9));
    s.handle(beat(both()), Timestamp(10));
    s.handle(beat(both()), Timestamp(11));
    assert!(s.orphans().is_empty());
}

#[test]
fn a_register_reply_applies_epoch_pause_and_stop_work() {
    let mut s = AgentState::new(2, POLL, HealthMonitor::default());
    s.handle(beat(vec![]), Timestamp(0));
    let ids = started(&s.handle(offer(&[(1, "a/x-1"), (2, "a/y-1")]), Timestamp(1)));
    let reply = ServerReply {
        epoch: Some(4),
        paused: true,
        stop_work: Some(("a/y-1".into(), "work reassigned to drone-b".into())),
        leases: vec![listed(1, "=a/x-1"), listed(2, "=a/y-1")],
        ..ServerReply::default()
    };
    let out = s.handle(AgentInput::Registered(reply), Timestamp(2));
    assert_eq!(
        out,
        [AgentAction::Kill {
            job: ids[1],
            stop: Stop::Revoked("stop_work: work reassigned to drone-b".into())
        }]
    );
    assert!(s.paused() && s.is_registered());
    assert_eq!((s.epoch(), s.beats()), (Some(4), 2));
    assert!(s.orphans().is_empty());
}

#[test]
fn a_listed_lease_is_adopted_only_by_a_job_running_that_package_and_others_are_handed_back() {
    let mut s = ready(1);
    let out = s.handle(
        AgentInput::Work(WorkOffer {
            offered: vec![(None, atom("a/x-1"))],
            ..WorkOffer::default()
        }),
        Timestamp(1),
    );
    let id = started(&out)[0];
    s.handle(
        beat(vec![listed(9, "a/x-1"), listed(10, "=a/z-1")]),
        Timestamp(2),
    );
    assert_eq!(s.job(id).and_then(|j| j.lease), Some(9), "adopted");
    assert!(s.orphans().is_empty(), "one listing is not enough");
    s.handle(
        beat(vec![listed(9, "a/x-1"), listed(10, "=a/z-1")]),
        Timestamp(3),
    );
    let out = s.handle(AgentInput::Tick, Timestamp(4));
    assert!(out.contains(&AgentAction::ReturnLease {
        lease: 10,
        package: "=a/z-1".into()
    }));
    s.handle(AgentInput::OrphanReturned(10), Timestamp(5));
    s.handle(beat(vec![listed(10, "=a/z-1")]), Timestamp(6));
    s.handle(beat(vec![listed(10, "=a/z-1")]), Timestamp(7));
    assert!(
        s.orphans().is_empty(),
        "a returned orphan is not returned twice"
    );
}

#[test]
fn an_unknown_lease_that_stops_being_listed_is_forgotten_and_one_taken_by_work_is_no_orphan() {
    let mut s = ready(1);
    s.handle(beat(vec![listed(3, "a/b-1")]), Timestamp(1));
    s.handle(beat(vec![]), Timestamp(2));
    s.handle(beat(vec![listed(3, "a/b-1")]), Timestamp(3));
    assert!(s.orphans().is_empty());
    s.handle(beat(vec![listed(5, "a/c-1")]), Timestamp(4));
    s.handle(offer(&[(5, "a/c-1")]), Timestamp(5));
    s.handle(beat(vec![listed(5, "a/c-1")]), Timestamp(6));
    assert!(s.orphans().is_empty());
}

/// An earlier agent's finished build, delivered while the new agent beats: the server keeps
/// listing its lease, which is neither handed back, nor started again, nor given a slot; once
/// delivered, the slot is free and a late listing is no orphan.
#[test]
fn a_spooled_build_holds_its_lease_and_its_slot_until_delivered() {
    let mut s = AgentState::new(1, POLL, HealthMonitor::default());
    s.handle(AgentInput::Spooled(4), Timestamp(0));
    for t in 1..=3 {
        s.handle(beat(vec![listed(4, "a/b-1")]), Timestamp(t));
    }
    let out = s.handle(AgentInput::Tick, Timestamp(4));
    assert!(
        !out.iter()
            .any(|a| matches!(a, AgentAction::ReturnLease { .. })),
        "{out:?}"
    );
    assert_eq!(asks(&out), None, "the one slot is the spooled build's");
    assert_eq!(s.lease_lists(), (vec![], vec![4]), "listed as started only");
    assert!(started(&s.handle(offer(&[(4, "a/b-1")]), Timestamp(5))).is_empty());
    let out = s.handle(AgentInput::Signal(OnStop::Finish), Timestamp(6));
    assert!(out.is_empty());
    assert!(
        !s.handle(AgentInput::Tick, Timestamp(7))
            .contains(&AgentAction::Exit),
        "a delivery in progress is waited for"
    );
    let mut s2 = s.clone();
    assert_eq!(
        s2.handle(AgentInput::Unspooled(4), Timestamp(8)),
        [AgentAction::Beat]
    );
    assert_eq!(
        s2.handle(AgentInput::Tick, Timestamp(9)),
        [AgentAction::Exit]
    );
    // Not stopping: once delivered, the slot is free and the lease ended. One late listing
    // (a reply made before the report) makes no orphan.
    let mut s = AgentState::new(1, POLL, HealthMonitor::default());
    s.handle(AgentInput::Spooled(4), Timestamp(0));
    s.handle(beat(vec![listed(4, "a/b-1")]), Timestamp(1));
    s.handle(AgentInput::Unspooled(4), Timestamp(2));
    s.handle(beat(vec![listed(4, "a/b-1")]), Timestamp(3));
    s.handle(beat(vec![]), Timestamp(4));
    let out = s.handle(AgentInput::Tick, Timestamp(POLL));
    assert_eq!(asks(&out), Some(1));
    assert!(s.orphans().is_empty(), "a delivered lease is no orphan");
    assert!(
        started(&s.handle(offer(&[(4, "a/b-1")]), Timestamp(POLL + 1))).is_empty(),
        "a delivered lease is never started"
    );
    // A server that goes on listing a delivered lease holds it for something else (an entry
    // spooled without its farm, whose number is one of this farm's leases): it goes back.
    let mut s = ready(1);
    s.handle(AgentInput::Spooled(5), Timestamp(0));
    s.handle(AgentInput::Unspooled(5), Timestamp(1));
    for t in 2..=3 {
        s.handle(beat(vec![listed(5, "a/q-1")]), Timestamp(t));
    }
    let out = s.handle(AgentInput::Tick, Timestamp(4));
    assert!(
        out.contains(&AgentAction::ReturnLease {
            lease: 5,
            package: "a/q-1".into()
        }),
        "{out:?}"
    );
    // Another farm's build: its lease number may be one of this farm's, offered later.
    let mut s = ready(1);
    s.handle(AgentInput::Spooled(6), Timestamp(0));
    s.handle(AgentInput::SpooledElsewhere(6), Timestamp(1));
    assert!(s.spooled().is_empty());
    assert_eq!(
        started(&s.handle(offer(&[(6, "a/c-1")]), Timestamp(POLL))).len(),
        1,
        "lease 6 of this farm is built"
    );
    // Two entries under one number (one another farm's): setting that one aside
    // leaves this farm's lease held until its own delivery is over.
    let mut s = ready(2);
    s.handle(AgentInput::Spooled(7), Timestamp(0));
    s.handle(AgentInput::Spooled(7), Timestamp(0));
    s.handle(AgentInput::SpooledElsewhere(7), Timestamp(1));
    assert!(s.has_lease(7));
    assert!(started(&s.handle(offer(&[(7, "a/d-1")]), Timestamp(2))).is_empty());
    s.handle(AgentInput::Unspooled(7), Timestamp(3));
    assert!(!s.has_lease(7) && s.spooled().is_empty());
}

/// A reply of farm `farm` listing `leases` and revoking `revoke`.
fn farm_beat(farm: &str, leases: Vec<Listed>, revoke: &[&str]) -> AgentInput {
    AgentInput::Registered(ServerReply {
        leases,
        revoke: revoke.iter().map(|a| (*a).to_string()).collect(),
        farm: Some(farm.into()),
        ..ServerReply::default()
    })
}

/// The server at the drone's address is replaced by another farm for a while, then comes back.
/// The other farm's replies neither stop the first farm's build nor hear of its lease; a build
/// the other farm refused ends its lease unsaid, and so does one whose delivery a revoke
/// abandoned: the first farm, back and listing the lease, gets it handed back instead of
/// keeping it "building" on an idle drone for good.
#[test]
fn another_farms_replies_leave_this_farms_leases_alone_and_a_lease_it_never_heard_of_goes_back() {
    let mut s = AgentState::new(2, POLL, HealthMonitor::default());
    s.handle(farm_beat("f", vec![], &[]), Timestamp(0));
    let got = s.handle(
        AgentInput::Work(WorkOffer {
            offered: vec![(Some(20), atom("=x/u-8"))],
            farm: Some("f".into()),
            ..WorkOffer::default()
        }),
        Timestamp(1),
    );
    let job = started(&got)[0];
    s.handle(AgentInput::BuildStarted(job), Timestamp(2));
    assert_eq!(s.lease_lists(), (vec![20], vec![20]));
    // Farm g answers at the same address: it knows nothing of lease 20 and revokes the atom.
    let out = s.handle(farm_beat("g", vec![], &["=x/u-8"]), Timestamp(3));
    assert!(
        !out.iter().any(|a| matches!(a, AgentAction::Kill { .. })),
        "{out:?}"
    );
    assert!(s.job(job).is_some_and(|j| j.stop.is_none()), "not stopped");
    assert_eq!(
        s.lease_lists(),
        (vec![], vec![]),
        "g never hears of lease 20"
    );
    // g's own lease 20 is another lease: it is built.
    let got = s.handle(
        AgentInput::Work(WorkOffer {
            offered: vec![(Some(20), atom("=y/z-1"))],
            farm: Some("g".into()),
            ..WorkOffer::default()
        }),
        Timestamp(4),
    );
    assert_eq!(started(&got).len(), 1, "g's lease 20 is built: {got:?}");
    // f's build ends; g refuses its delivery (another farm's): nothing reached f.
    s.handle(
        AgentInput::BuildEnded {
            job,
            end: BuildEnd::Built { took_s: 1 },
        },
        Timestamp(5),
    );
    s.handle(AgentInput::Reported(job), Timestamp(6));
    // f is back and lists lease 20 (its record of the build that never arrived).
    for t in 7..=8 {
        s.handle(farm_beat("f", vec![listed(20, "x/u-8")], &[]), Timestamp(t));
    }
    let out = s.handle(AgentInput::Tick, Timestamp(9));
    assert!(
        out.contains(&AgentAction::ReturnLease {
            lease: 20,
            package: "x/u-8".into()
        }),
        "f gets lease 20 back: {out:?}"
    );

    // A build of f's lease 7 reported (set aside) while g answers: g's own lease 7 is still
    // built, not taken for the number that just ended.
    let mut s = AgentState::new(1, POLL, HealthMonitor::default());
    s.handle(farm_beat("f", vec![], &[]), Timestamp(0));
    let offer_of = |farm: &str| {
        AgentInput::Work(WorkOffer {
            offered: vec![(Some(7), atom("=p/a-1"))],
            farm: Some(farm.into()),
            ..WorkOffer::default()
        })
    };
    let job = started(&s.handle(offer_of("f"), Timestamp(1)))[0];
    s.handle(farm_beat("g", vec![], &[]), Timestamp(2));
    s.handle(
        AgentInput::BuildEnded {
            job,
            end: BuildEnd::Built { took_s: 1 },
        },
        Timestamp(3),
    );
    s.handle(AgentInput::NotRecorded(job), Timestamp(4));
    s.handle(AgentInput::Reported(job), Timestamp(5));
    assert_eq!(
        started(&s.handle(offer_of("g"), Timestamp(6))).len(),
        1,
        "g's lease 7 is built"
    );

    // One farm throughout: a finished build whose delivery a revoke abandoned ends its lease
    // unsaid too.
    let mut s = ready(1);
    let job = started(&s.handle(offer(&[(30, "=a/b-1")]), Timestamp(1)))[0];
    s.handle(
        AgentInput::BuildEnded {
            job,
            end: BuildEnd::Built { took_s: 1 },
        },
        Timestamp(2),
    );
    s.handle(revoking(None, &["=a/b-1"], vec![]), Timestamp(3));
    s.handle(AgentInput::Reported(job), Timestamp(4));
    for t in 5..=6 {
        s.handle(beat(vec![listed(30, "a/b-1")]), Timestamp(t));
    }
    let out = s.handle(AgentInput::Tick, Timestamp(7));
    assert!(
        out.iter()
            .any(|a| matches!(a, AgentAction::ReturnLease { lease: 30, .. })),
        "{out:?}"
    );
    // And so does one whose report the server refused (it recorded nothing); a report it
    // answered ends the lease for good.
    for (refused, lease) in [(true, 40), (false, 41)] {
        let mut s = ready(1);
        let job = started(&s.handle(offer(&[(lease, "=a/c-1")]), Timestamp(1)))[0];
        s.handle(
            AgentInput::BuildEnded {
                job,
                end: BuildEnd::Built { took_s: 1 },
            },
            Timestamp(2),
        );
        if refused {
            s.handle(AgentInput::NotRecorded(job), Timestamp(3));
        }
        s.handle(AgentInput::Reported(job), Timestamp(4));
        for t in 5..=6 {
            s.handle(beat(vec![listed(lease, "a/c-1")]), Timestamp(t));
        }
        let back = s
            .handle(AgentInput::Tick, Timestamp(7))
            .iter()
            .any(|a| matches!(a, AgentAction::ReturnLease { lease: l, .. } if *l == lease));
        assert_eq!(back, refused, "lease {lease}");
    }
}

#[test]
fn work_is_asked_for_only_when_every_condition_holds_and_never_before_the_poll() {
    let mut s = ready(2);
    assert_eq!(asks(&s.handle(AgentInput::Tick, Timestamp(1))), Some(2));
    s.handle(offer(&[]), Timestamp(2));
    assert_eq!(
        asks(&s.handle(AgentInput::Tick, Timestamp(3))),
        None,
        "polls"
    );
    assert_eq!(
        asks(&s.handle(AgentInput::Tick, Timestamp(2 + POLL))),
        Some(2)
    );
    s.handle(offer(&[(1, "a/b-1")]), Timestamp(2 + POLL));
    assert_eq!(
        asks(&s.handle(AgentInput::Tick, Timestamp(3 + POLL))),
        Some(1),
        "asks again at once after getting work, for the free slots only"
    );
    s.handle(offer(&[(2, "a/c-1"), (3, "a/d-1")]), Timestamp(4 + POLL));
    assert_eq!(s.jobs().len(), 2, "never more jobs than slots");
    assert_eq!(s.free_slots(), None);

    let not_registered = AgentState::new(1, POLL, HealthMonitor::default());
    assert_eq!(not_registered.free_slots(), None);
    let mut paused = ready(1);
    paused.handle(
        AgentInput::Registered(ServerReply {
            paused: true,
            ..ServerReply::default()
        }),
        Timestamp(1),
    );
    assert_eq!(paused.free_slots(), None);
    let mut syncing = ready(1);
    syncing.handle(
        AgentInput::Work(WorkOffer {
            sync: Some("2026-02-17 00:00".into()),
            ..WorkOffer::default()
        }),
        Timestamp(1),
    );
    assert_eq!(syncing.free_slots(), None);
    assert!(syncing
        .handle(AgentInput::Tick, Timestamp(2))
        .contains(&AgentAction::Sync("2026-02-17 00:00".into())));
    syncing.handle(AgentInput::Synced(None), Timestamp(3));
    assert_eq!(
        syncing.free_slots(),
        None,
        "not before the server heard the new tree"
    );
    syncing.handle(beat(vec![]), Timestamp(4));
    assert_eq!(syncing.free_slots(), Some(1));
    let mut draining = ready(1);
    draining.handle(AgentInput::Signal(OnStop::Finish), Timestamp(1));
    assert_eq!(draining.phase(), Phase::Draining);
    assert_eq!(draining.free_slots(), None);
    let mut forgotten = ready(1);
    forgotten.handle(AgentInput::Forgotten, Timestamp(1));
    assert_eq!(forgotten.free_slots(), None);
    let mut degraded = ready(1);
    degraded.handle(
        AgentInput::Health(HealthSample {
            mem_percent: 95,
            ..HealthSample::default()
        }),
        Timestamp(1),
    );
    assert_eq!(degraded.free_slots(), None);
}

#[test]
fn an_oom_kill_stops_new_work_until_assessed_and_critical_health_returns_everything() {
    let mut s = ready(2);
    let ids = started(&s.handle(offer(&[(1, "a/x-1"), (2, "a/y-1")]), Timestamp(1)));
    let end = BuildEnd::Failed {
        class: FailureClass::Oom,
        crash: false,
        took_s: 3,
    };
    s.handle(AgentInput::BuildEnded { job: ids[0], end }, Timestamp(2));
    s.handle(AgentInput::Reported(ids[0]), Timestamp(3));
    assert_eq!(s.pending_events(), (1, 0));
    assert_eq!(s.free_slots(), None, "an OOM kill waits to be assessed");
    let out = s.handle(AgentInput::Health(HealthSample::default()), Timestamp(4));
    assert_eq!(
        out,
        [AgentAction::Kill {
            job: ids[1],
            stop: Stop::Return("drone health is critical".into())
        }]
    );
    let out = s.handle(
        AgentInput::BuildEnded {
            job: ids[1],
            end: BuildEnd::Stopped,
        },
        Timestamp(5),
    );
    assert!(matches!(
        &out[0],
        AgentAction::Report {
            what: ReportWhat::Returned(_),
            ..
        }
    ));
}

#[test]
fn shutdown_drains_or_returns_and_leaves_once_nothing_is_held() {
    let mut s = ready(1);
    let id = started(&s.handle(offer(&[(1, "a/x-1")]), Timestamp(1)))[0];
    s.handle(AgentInput::Signal(OnStop::Finish), Timestamp(2));
    let out = s.handle(AgentInput::Tick, Timestamp(3));
    assert!(out.is_empty(), "draining lets the build finish: {out:?}");
    s.handle(AgentInput::Signal(OnStop::Finish), Timestamp(4));
    let out = s.handle(AgentInput::Tick, Timestamp(5));
    assert_eq!(
        out,
        [AgentAction::Kill {
            job: id,
            stop: Stop::Return("drone shutting down".into())
        }]
    );
    s.handle(
        AgentInput::BuildEnded {
            job: id,
            end: BuildEnd::Stopped,
        },
        Timestamp(6),
    );
    s.handle(AgentInput::Reported(id), Timestamp(7));
    assert_eq!(
        s.handle(AgentInput::Tick, Timestamp(8)),
        [AgentAction::Exit]
    );
}

/// Three signals with no tick between them set no job's stop, yet the agent leaves at once and
/// kills every build: each build's stop is asked all the same.
#[test]
fn a_build_must_stop_once_the_agent_leaves_at_once_though_no_tick_set_its_stop() {
    let mut s = ready(1);
    let id = started(&s.handle(offer(&[(1, "a/x-1")]), Timestamp(1)))[0];
    assert!(!s.stop_asked(id));
    for t in 2..5 {
        s.handle(AgentInput::Signal(OnStop::Finish), Timestamp(t));
    }
    assert_eq!(s.phase(), Phase::Exit);
    assert!(
        s.job(id).is_some_and(|j| j.stop.is_none()),
        "no tick set it"
    );
    assert!(s.stop_asked(id));
    assert!(s.stop_asked(id + 1), "a job that is gone");
}

/// One random step.
#[derive(Clone, Debug)]
enum Step {
    Tick(u64),
    /// A heartbeat goes out: later beats may answer it.
    Send,
    /// A reply listing leases and revoking packages, answering the last heartbeat sent (`true`)
    /// or answered at once.
    Beat(Vec<(u64, u8)>, Vec<u8>, bool),
    /// A reply listing what the server believes the drone holds: every lease it was offered and
    /// has not reported or handed back.
    Listing,
    Work(Vec<(u64, u8)>, Vec<u8>),
    Start(usize),
    End(usize, u8),
    Report(usize),
    Orphan(u64),
    Health(u8, u8),
    Signal(bool),
    Forgotten,
    /// A finished build of an earlier agent, under this lease and of this package, is being
    /// delivered (unless a job holds the lease: a spool holds only an earlier agent's builds).
    Spooled(u64, u8),
    /// The delivery of the n-th spooled build is over (`false`), or it was another farm's.
    Unspooled(usize, bool),
}

fn package(p: u8) -> String {
    format!("=cat/p{}-1", p % 6)
}

fn step() -> impl Strategy<Value = Step> {
    let lease = 1..24u64;
    let pkgs = prop::collection::vec((lease.clone(), any::<u8>()), 0..4);
    prop_oneof![
        3 => (0..3 * POLL).prop_map(Step::Tick),
        1 => Just(Step::Send),
        2 => Just(Step::Listing),
        2 => (pkgs.clone(), prop::collection::vec(any::<u8>(), 0..2), any::<bool>()).prop_map(|(l, r, m)| Step::Beat(l, r, m)),
        3 => (pkgs, prop::collection::vec(any::<u8>(), 0..2)).prop_map(|(l, r)| Step::Work(l, r)),
        2 => any::<usize>().prop_map(Step::Start),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(j, e)| Step::End(j, e)),
        2 => any::<usize>().prop_map(Step::Report),
        1 => lease.prop_map(Step::Orphan),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(m, o)| Step::Health(m, o)),
        1 => any::<bool>().prop_map(Step::Signal),
        1 => Just(Step::Forgotten),
        1 => (1..24u64, any::<u8>()).prop_map(|(l, p)| Step::Spooled(l, p)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, e)| Step::Unspooled(n, e)),
    ]
}

fn nth_job(s: &AgentState, n: usize) -> Option<JobId> {
    let ids: Vec<JobId> = s.jobs().keys().copied().collect();
    (!ids.is_empty()).then(|| ids[n % ids.len()])
}

fn input(
    s: &AgentState,
    step: &Step,
    sent: Option<RequestMark>,
    server: &BTreeMap<u64, String>,
) -> Option<AgentInput> {
    let listed = |l: &[(u64, u8)]| l.iter().map(|(l, p)| listed(*l, &package(*p))).collect();
    let revoke = |r: &[u8]| r.iter().map(|p| package(*p)).collect();
    Some(match step {
        Step::Tick(_) => AgentInput::Tick,
        Step::Send => return None,
        Step::Listing => beat(
            server
                .iter()
                .map(|(l, p)| Listed {
                    lease: *l,
                    package: p.clone(),
                })
                .collect(),
        ),
        Step::Beat(l, r, marked) => AgentInput::Registered(ServerReply {
            leases: listed(l),
            revoke: revoke(r),
            sent: sent.filter(|_| *marked),
            ..ServerReply::default()
        }),
        Step::Work(l, r) => AgentInput::Work(WorkOffer {
            offered: l
                .iter()
                .map(|(l, p)| (Some(*l), atom(&package(*p))))
                .collect(),
            revoke: revoke(r),
            sync: None,
            farm: None,
        }),
        Step::Start(n) => AgentInput::BuildStarted(nth_job(s, *n)?),
        Step::End(n, e) => AgentInput::BuildEnded {
            job: nth_job(s, *n)?,
            end: match e % 4 {
                0 => BuildEnd::Stopped,
                1 => BuildEnd::Built { took_s: 1 },
                2 => BuildEnd::Failed {
                    class: FailureClass::Build,
                    crash: false,
                    took_s: 1,
                },
                _ => BuildEnd::Failed {
                    class: FailureClass::Oom,
                    crash: e % 8 == 7,
                    took_s: 1,
                },
            },
        },
        Step::Report(n) => AgentInput::Reported(nth_job(s, *n)?),
        Step::Orphan(l) => AgentInput::OrphanReturned(*l),
        Step::Health(m, o) => AgentInput::Health(HealthSample {
            mem_percent: m % 101,
            oom_kills: u32::from(o % 5 == 0),
            ..HealthSample::default()
        }),
        Step::Signal(ret) => AgentInput::Signal(if *ret { OnStop::Return } else { OnStop::Finish }),
        Step::Forgotten => AgentInput::Forgotten,
        Step::Spooled(l, _) if s.jobs().values().any(|j| j.lease == Some(*l)) => return None,
        Step::Spooled(l, _) => AgentInput::Spooled(*l),
        Step::Unspooled(n, elsewhere) => {
            let spooled: Vec<u64> = s.spooled().iter().copied().collect();
            let lease = *spooled.get(n % spooled.len().max(1))?;
            if *elsewhere {
                AgentInput::SpooledElsewhere(lease)
            } else {
                AgentInput::Unspooled(lease)
            }
        }
    })
}

/// Checks the invariants of the state after a step and of the actions it gave.
fn check(
    s: &AgentState,
    before_jobs: usize,
    slots: u32,
    input: &AgentInput,
    out: &[AgentAction],
) -> Result<(), TestCaseError> {
    let leases: Vec<u64> = s.jobs().values().filter_map(|j| j.lease).collect();
    let unique: BTreeSet<u64> = leases.iter().copied().collect();
    prop_assert_eq!(
        unique.len(),
        leases.len(),
        "two jobs for one lease: {:?}",
        s.jobs()
    );
    let running: Vec<&str> = s
        .jobs()
        .values()
        .filter(|j| j.stop.is_none() && !j.ended)
        .map(|j| j.atom.as_str())
        .collect();
    let distinct: BTreeSet<&str> = running.iter().copied().collect();
    prop_assert_eq!(
        distinct.len(),
        running.len(),
        "two builds of one package: {:?}",
        s.jobs()
    );
    prop_assert!(s.jobs().len() <= slots as usize, "more jobs than slots");
    // A spooled build holds its lease: no job takes it, and the server hears it started.
    for (id, j) in s.jobs() {
        prop_assert!(
            j.lease.is_none_or(|l| !s.spooled().contains(&l)),
            "job {} took spooled lease {:?}",
            id,
            j.lease
        );
    }
    let (_, started) = s.lease_lists();
    prop_assert!(
        s.spooled().iter().all(|l| started.contains(l)),
        "a spooled lease not listed as started"
    );
    let before_held = before_jobs + s.spooled().len();
    for a in out {
        match a {
            AgentAction::AskForWork { free_slots } => {
                prop_assert!(
                    *free_slots >= 1
                        && *free_slots as usize <= slots as usize - before_held.min(slots as usize)
                );
                prop_assert!(s.phase() == Phase::Running && s.is_registered());
            }
            AgentAction::Exit => prop_assert!(
                s.phase() == Phase::Exit || s.spooled().is_empty(),
                "left with spooled builds being delivered"
            ),
            AgentAction::Report { job, what, .. } => {
                let stop = s.job(*job).and_then(|j| j.stop.clone());
                if matches!(stop, Some(Stop::Revoked(_))) {
                    prop_assert!(
                        matches!(what, ReportWhat::Nothing(_)),
                        "a revoked lease reported: {:?}",
                        what
                    );
                }
            }
            AgentAction::ReturnLease { lease, .. } => {
                prop_assert!(!s.has_lease(*lease));
                prop_assert!(
                    !s.spooled().contains(lease),
                    "spooled lease {} handed back",
                    lease
                );
            }
            _ => {}
        }
    }
    let returning = s.phase().returns_work() || s.health().state().returns_work();
    if matches!(input, AgentInput::Tick) && returning && !out.contains(&AgentAction::Exit) {
        for (id, j) in s.jobs() {
            prop_assert!(
                j.stop.is_some() || j.ended,
                "job {} kept on shutdown/Critical: {:?}",
                id,
                j
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_agent_keeps_its_promises_after_every_step(
        slots in 1..=3u32,
        steps in prop::collection::vec(step(), 1..=80),
    ) {
        let mut s = AgentState::new(slots, POLL, HealthMonitor::default());
        let mut now = 0u64;
        let mut ended = BTreeSet::new();
        let mut sent = None;
        let mut unsaid = Unsaid::default();
        let mut server = BTreeMap::new();
        for st in &steps {
            match st {
                Step::Tick(dt) => now += dt,
                Step::Send => sent = Some((s.request_mark(), held(&s))),
                _ => {}
            }
            let Some(i) = input(&s, st, sent.as_ref().map(|x| x.0), &server) else { continue };
            let before = s.jobs().len();
            let out = s.handle(i.clone(), Timestamp(now));
            check(&s, before, slots, &i, &out)?;
            unsaid.check(&s, &i, &out, sent.as_ref().map(|x| &x.1))?;
            believe(&mut server, &i, &out);
            if let (Step::Spooled(l, p), AgentInput::Spooled(_)) = (st, &i) {
                // The server still holds the lease on this drone.
                server.insert(*l, package(*p));
            }
            for a in &out {
                if let AgentAction::Start { lease: Some(l), .. } = a {
                    prop_assert!(!ended.contains(l), "lease {} started again after it ended", l);
                }
            }
            ended.extend(
                (1..24u64).filter(|l| !s.has_lease(*l) && steps_ended(&out, *l)),
            );
        }
    }
}

/// What the server believes the drone holds after a step: the leases offered, less those
/// reported or handed back.
fn believe(server: &mut BTreeMap<u64, String>, input: &AgentInput, out: &[AgentAction]) {
    match input {
        AgentInput::Work(offer) => {
            for (l, a) in &offer.offered {
                if let Some(l) = l {
                    server.insert(*l, a.as_str().to_string());
                }
            }
        }
        AgentInput::OrphanReturned(l) | AgentInput::Unspooled(l) => {
            server.remove(l);
        }
        _ => {}
    }
    for a in out {
        if let AgentAction::Report {
            lease: Some(l),
            what: ReportWhat::Outcome | ReportWhat::Returned(_),
            ..
        } = a
        {
            server.remove(l);
        }
    }
}

/// The jobs held and their leases.
fn held(s: &AgentState) -> BTreeSet<(JobId, Option<u64>)> {
    s.jobs().iter().map(|(id, j)| (*id, j.lease)).collect()
}

/// Leases the agent gave up without telling the server, and how many replies in a row have
/// listed each since: the server still counts such a lease as held.
#[derive(Default)]
struct Unsaid(std::collections::BTreeMap<u64, u32>);

impl Unsaid {
    /// A reply's revokes stop only jobs that held their lease when its request went out
    /// (`held_then`), and a lease given up unsaid that two replies in a row list is handed back
    /// at the next turn.
    fn check(
        &mut self,
        s: &AgentState,
        input: &AgentInput,
        out: &[AgentAction],
        held_then: Option<&BTreeSet<(JobId, Option<u64>)>>,
    ) -> Result<(), TestCaseError> {
        match input {
            AgentInput::Registered(reply) => {
                for a in out {
                    if let (AgentAction::Kill { job, .. }, Some(then)) = (a, held_then) {
                        let lease = s.job(*job).and_then(|j| j.lease);
                        prop_assert!(
                            reply.sent.is_none() || then.contains(&(*job, lease)),
                            "job {} took lease {:?} after the request",
                            job,
                            lease
                        );
                    }
                }
                let listed: BTreeSet<u64> = reply.leases.iter().map(|l| l.lease).collect();
                for (lease, n) in &mut self.0 {
                    *n = if listed.contains(lease) && !s.has_lease(*lease) {
                        *n + 1
                    } else {
                        0
                    };
                }
            }
            AgentInput::Tick if !out.contains(&AgentAction::Exit) => {
                for (lease, n) in &self.0 {
                    let back = out.iter().any(
                        |a| matches!(a, AgentAction::ReturnLease { lease: l, .. } if l == lease),
                    );
                    prop_assert!(
                        *n < 2 || back,
                        "lease {} listed {} times, not handed back",
                        lease,
                        n
                    );
                }
            }
            AgentInput::OrphanReturned(lease) => {
                self.0.remove(lease);
            }
            // A spooled build holds its lease from now on (an agent spools before it
            // registers; the steps may do so later).
            AgentInput::Spooled(lease) => {
                self.0.remove(lease);
            }
            // Its delivery over, a number the server goes on listing is another lease's.
            AgentInput::Unspooled(lease) if !s.has_lease(*lease) => {
                self.0.insert(*lease, 0);
            }
            _ => {}
        }
        for a in out {
            if let AgentAction::Report {
                lease: Some(l),
                what: ReportWhat::Nothing(_),
                ..
            } = a
            {
                self.0.insert(*l, 0);
            }
        }
        Ok(())
    }
}

/// Whether `lease` ended with this step's report.
fn steps_ended(out: &[AgentAction], lease: u64) -> bool {
    out.iter()
        .any(|a| matches!(a, AgentAction::Report { lease: Some(l), .. } if *l == lease))
}

#[test]
fn finish_drains_first_and_a_second_signal_returns_at_once() {
    let p = Phase::Running.on_signal(OnStop::Finish);
    assert_eq!(p, Phase::Draining);
    assert!(!p.takes_work() && !p.returns_work());
    assert!(!p.may_exit(1), "a running build is finished first");
    assert!(p.may_exit(0));
    let p = p.on_signal(OnStop::Finish);
    assert_eq!(p, Phase::Returning);
    assert!(p.returns_work());
    let p = Phase::Running.on_signal(OnStop::Return);
    assert_eq!(p, Phase::Returning);
    assert!(!p.takes_work() && !p.may_exit(2) && p.may_exit(0));
}

#[test]
fn a_third_signal_leaves_at_once_and_running_never_exits_on_its_own() {
    for mode in [OnStop::Finish, OnStop::Return] {
        let mut p = Phase::Running;
        for _ in 0..2 {
            p = p.on_signal(mode);
            assert_ne!(
                p,
                Phase::Exit,
                "{mode:?}: delivered through two signals (h49 F1)"
            );
            assert!(!p.takes_work());
        }
        p = p.on_signal(mode);
        assert_eq!(p, Phase::Exit, "{mode:?}: the third leaves at once");
        p = p.on_signal(mode).on_signal(mode);
        assert_eq!(p, Phase::Exit);
        assert!(p.may_exit(5) && !p.takes_work());
    }
    assert!(Phase::Running.takes_work());
    assert!(!Phase::Running.may_exit(0));
}

#[test]
fn a_new_lease_of_an_atom_is_built_while_the_ended_build_of_it_waits_for_its_reports_answer() {
    // h52 F2: the ended job still counted as "building that package", so the new lease was
    // offered to it for adoption, which an ended job never takes: the lease went unbuilt until the
    // server took it back. (A build failed here and is retried here while its report's answer is
    // lost and awaited, up to the 30 s reply timeout.)
    let mut s = ready(2);
    let first = started(&s.handle(offer(&[(7, "a/b-1")]), Timestamp(1)))[0];
    s.handle(AgentInput::BuildStarted(first), Timestamp(2));
    let end = BuildEnd::Failed {
        class: FailureClass::Build,
        crash: false,
        took_s: 5,
    };
    s.handle(AgentInput::BuildEnded { job: first, end }, Timestamp(3));
    let again = started(&s.handle(offer(&[(9, "a/b-1")]), Timestamp(4)));
    assert_eq!(again.len(), 1, "the new lease gets a build of its own");
    assert_eq!(s.job(again[0]).and_then(|j| j.lease), Some(9));
    assert_eq!(
        s.job(first).and_then(|j| j.lease),
        Some(7),
        "the ended one keeps its own"
    );
    assert_eq!(
        s.current_task().as_deref(),
        None,
        "the new one has not started"
    );
}
