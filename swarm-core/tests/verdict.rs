//! `Swarm::verdict` agrees with the outputs: after every step of the fuzzer's generator (random
//! bytes and its committed corpus) and of simulator runs, the verdict for the input's drone says
//! what the server used to recover by scanning the outputs (the oracle below is that scanning,
//! moved here): the work given is the lease `Assign`/`Resend` names, every `Revoke` for the
//! drone is among its revokes, a `Built` event is `Reported::Built`, a rejection is
//! `Rejected`/`Stale`, a deregistration returns as many leases as were reclaimed.

mod common;

use common::live_lease_named;
use proptest::prelude::*;
use swarm_core::sim;
use swarm_core::*;

/// The drone whose request `input` is.
fn requester(input: &Input) -> Option<&DroneName> {
    match input {
        Input::Register(spec) => Some(&spec.name),
        Input::Heartbeat(hb) | Input::Announce(Announce { beat: hb, .. }) => Some(&hb.drone),
        Input::RequestWork { drone, .. } | Input::Deregister { drone } => Some(drone),
        Input::BuildStarted(r) | Input::BuildFinished { report: r, .. } => Some(&r.drone),
        _ => None,
    }
}

/// The revokes sent to `name`, in order, that name a package.
fn revokes_for<'a>(out: &'a [Output], name: &DroneName) -> Vec<(&'a Atom, &'a RevokeReason)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Command(Command::Revoke {
                drone,
                package: Some(p),
                reason,
                ..
            }) if drone == name => Some((p, reason)),
            _ => None,
        })
        .collect()
}

/// What the server's `/work` reply was made of: `SyncPortage`, else the first `Assign` or
/// `Resend` for the drone, else its `no_work` or "nothing ready".
fn work_oracle(out: &[Output], name: &DroneName, view: View<'_>) -> Work {
    let sync = out.iter().find_map(|o| match o {
        Output::Command(Command::SyncPortage { drone, expected }) if drone == name => {
            Some(expected.clone())
        }
        _ => None,
    });
    if let Some(expected) = sync {
        return Work::SyncPortage { expected };
    }
    let given = out.iter().find_map(|o| match o {
        Output::Command(Command::Assign {
            drone,
            package,
            lease,
            profile,
            ..
        }) if drone == name => Some((package, lease, profile, false)),
        Output::Command(Command::Resend {
            drone,
            package,
            lease,
            profile,
        }) if drone == name => Some((package, lease, profile, true)),
        _ => None,
    });
    match given {
        Some((package, lease, profile, resent)) => Work::Given {
            package: package.clone(),
            lease: *lease,
            profile: profile.clone(),
            resent,
        },
        None => Work::Nothing {
            reason: view
                .drone(name)
                .and_then(|d| d.no_work)
                .unwrap_or_else(|| "nothing ready".into()),
        },
    }
}

/// Who holds what a refused report was about, if not its sender (the server's old
/// `other_holder`, read from the view).
fn other_holder(view: View<'_>, report: &Report) -> Option<DroneName> {
    let holder = match report.lease {
        Some(l) => view.lease(l).map(|l| l.drone),
        None => {
            let holders: Vec<DroneName> = view
                .packages_of(&report.package)
                .into_iter()
                .filter_map(|p| match p.status {
                    PackageStatus::Assigned { drone, .. } => Some(drone),
                    _ => None,
                })
                .collect();
            if holders.contains(&report.drone) {
                None
            } else {
                holders.into_iter().next()
            }
        }
    };
    holder.filter(|h| *h != report.drone)
}

/// What each drone's reports that ended a lease did: built the package or not.
#[derive(Default)]
struct Ended(std::collections::BTreeMap<(DroneName, LeaseId), bool>);

impl Ended {
    /// What the first report of the lease `report` names did, if one ended it.
    fn first(&self, report: &Report) -> Option<bool> {
        let lease = report.lease?;
        self.0.get(&(report.drone.clone(), lease)).copied()
    }

    /// Notes what a finished report that ended `lease` did.
    fn note(&mut self, report: &Report, lease: LeaseId, built: bool) {
        self.0.insert((report.drone.clone(), lease), built);
    }
}

/// How the server's report reply read the outputs: the first rejection, else `Built`; a report
/// (finished or started) that named no live lease before the step and was not refused repeats
/// one that ended its lease, and says what that one did.
fn report_oracle(
    out: &[Output],
    report: &Report,
    view: View<'_>,
    repeat: Option<&Ended>,
) -> Reported {
    let rejected = out.iter().find_map(|o| match o {
        Output::Event(Event::InputRejected { reason }) => Some(reason),
        _ => None,
    });
    match rejected {
        Some(RejectReason::StaleReport { .. } | RejectReason::UnknownPackage { .. }) => {
            // The server took the first revoke of any drone; a timer that fired first could
            // make that another drone's or another package's.
            let revoke = revokes_for(out, &report.drone)
                .into_iter()
                .find(|(p, _)| **p == report.package)
                .map_or(RevokeReason::Unknown, |(_, r)| r.clone());
            Reported::Stale {
                revoke,
                holder: other_holder(view, report),
            }
        }
        Some(reason) => Reported::Rejected {
            reason: reason.clone(),
        },
        None if out.iter().any(|o| {
            matches!(o, Output::Event(Event::Built { package, .. }) if *package == report.package)
        }) =>
        {
            Reported::Built
        }
        None => match repeat {
            Some(ended) => Reported::Repeated {
                built: ended
                    .first(report)
                    .unwrap_or_else(|| panic!("a repeat of a report that ended no lease: {report:?} {out:?}")),
            },
            None => Reported::Accepted,
        },
    }
}

/// Which kinds of verdict a replay met, so a test can show it reached each.
#[derive(Default, Debug)]
struct Seen(std::collections::BTreeSet<&'static str>);

impl Seen {
    fn note(&mut self, v: &Verdict) {
        let work = match &v.work {
            Some(Work::Given { resent: false, .. }) => "given",
            Some(Work::Given { resent: true, .. }) => "resent",
            Some(Work::SyncPortage { .. }) => "sync_portage",
            Some(Work::Nothing { .. }) => "nothing",
            None => "",
        };
        let report = match &v.report {
            Some(Reported::Accepted) => "accepted",
            Some(Reported::Built) => "built",
            Some(Reported::Rejected { .. }) => "rejected",
            Some(Reported::Repeated { .. }) => "repeated",
            Some(Reported::Stale { holder: None, .. }) => "stale",
            Some(Reported::Stale {
                holder: Some(_), ..
            }) => "stale_held",
            None => "",
        };
        self.0
            .extend([work, report].into_iter().filter(|k| !k.is_empty()));
        if v.stop_work().is_some() {
            self.0.insert("stop_work");
        }
        if !v.revoked.is_empty() {
            self.0.insert("revoked");
        }
        if v.revokes.len() > v.revoked.len() {
            self.0.insert("pending");
        }
        if v.returned > 0 {
            self.0.insert("returned");
        }
    }
}

/// Handles `env` and asserts that the verdict says what the outputs and the view say.
fn assert_verdict_agrees(
    swarm: &mut Swarm,
    env: &Envelope,
    step: usize,
    seen: &mut Seen,
    ended: &mut Ended,
) {
    let reports = matches!(
        env.input,
        Input::BuildFinished { .. } | Input::BuildStarted(_)
    );
    let named = match &env.input {
        Input::BuildFinished { report, .. } | Input::BuildStarted(report) => {
            live_lease_named(swarm.view(), report)
        }
        _ => None,
    };
    let out = swarm.handle(env);
    let verdict = swarm.verdict();
    let input = format!("{:?}", env.input);
    let at = format!("step {step}, {}", input.get(..300).unwrap_or(&input));
    let Some(name) = requester(&env.input) else {
        assert_eq!(verdict, None, "{at}: a verdict for no drone's request");
        return;
    };
    let v = verdict.unwrap_or_else(|| panic!("{at}: no verdict for a drone's request"));
    seen.note(&v);
    let view = swarm.view();
    assert_eq!(v.drone, *name, "{at}");
    let d = view.drone(name);
    assert_eq!(v.known, d.is_some(), "{at}: known");
    if let Some(d) = &d {
        assert_eq!(v.epoch, d.epoch, "{at}: epoch");
        assert_eq!(v.paused, view.paused() || d.paused, "{at}: paused");
        assert_eq!(v.leases, d.leases, "{at}: leases");
    }
    let sent = revokes_for(&out, name);
    let revoked: Vec<(&Atom, &RevokeReason)> =
        v.revoked.iter().map(|r| (&r.package, &r.reason)).collect();
    assert_eq!(revoked, sent, "{at}: revokes sent");
    let mut revokes: Vec<Atom> = Vec::new();
    for a in sent
        .iter()
        .map(|(a, _)| (*a).clone())
        .chain(view.pending_revokes(name))
    {
        if !revokes.contains(&a) {
            revokes.push(a);
        }
    }
    assert_eq!(v.revokes, revokes, "{at}: revokes (sent, then pending)");
    let work =
        matches!(env.input, Input::RequestWork { .. }).then(|| work_oracle(&out, name, view));
    assert_eq!(v.work, work, "{at}: work");
    let report = match &env.input {
        Input::BuildStarted(r) | Input::BuildFinished { report: r, .. } => Some(report_oracle(
            &out,
            r,
            view,
            (reports && named.is_none()).then_some(&*ended),
        )),
        _ => None,
    };
    assert_eq!(v.report, report, "{at}: report");
    if let (Input::BuildFinished { report: r, .. }, Some(lease)) = (&env.input, named) {
        match &report {
            Some(Reported::Built) => ended.note(r, lease, true),
            Some(Reported::Accepted) => ended.note(r, lease, false),
            _ => {}
        }
    }
    if let Input::Heartbeat(hb) | Input::Announce(Announce { beat: hb, .. }) = &env.input {
        let stop = hb
            .current_task
            .as_ref()
            .and_then(|task| sent.iter().find(|(a, _)| *a == task));
        let said = v.stop_work().map(|r| (&r.package, &r.reason));
        assert_eq!(said, stop.copied(), "{at}: stop_work");
    }
    if matches!(env.input, Input::Deregister { .. }) {
        let reclaimed = out
            .iter()
            .filter(|o| matches!(o, Output::Event(Event::Reclaimed { drone, .. }) if drone == name))
            .count();
        assert_eq!(v.returned as usize, reclaimed, "{at}: returned");
    }
}

fn replay_checked(envelopes: &[Envelope], seen: &mut Seen) {
    let mut swarm = Swarm::new(Config::default()).expect("defaults are valid");
    let mut ended = Ended::default();
    for (step, env) in envelopes.iter().enumerate() {
        assert_verdict_agrees(&mut swarm, env, step, seen, &mut ended);
    }
}

fn replay_bytes(data: &[u8], seen: &mut Seen) {
    for run in fuzzing::trace_bytes(data) {
        let envelopes: Vec<Envelope> = run.into_iter().map(|(env, _)| env).collect();
        replay_checked(&envelopes, seen);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_verdict_agrees_with_the_outputs_of_every_step(
        data in proptest::collection::vec(any::<u8>(), 0..3_000)
    ) {
        replay_bytes(&data, &mut Seen::default());
    }
}

#[test]
fn the_verdict_agrees_with_the_outputs_over_the_fuzz_corpus() {
    let mut seen = Seen::default();
    for data in common::handle_corpus() {
        replay_bytes(&data, &mut seen);
    }
    // The corpus reaches every kind of verdict: a corpus that stopped doing so would leave
    // part of the agreement unchecked.
    let every = [
        "accepted",
        "built",
        "given",
        "nothing",
        "pending",
        "rejected",
        "repeated",
        "resent",
        "returned",
        "revoked",
        "stale",
        "stale_held",
        "stop_work",
        "sync_portage",
    ];
    let missed: Vec<&str> = every.into_iter().filter(|k| !seen.0.contains(k)).collect();
    assert!(
        missed.is_empty(),
        "the corpus reaches no {missed:?} verdict"
    );
}

#[test]
fn the_verdict_agrees_with_the_outputs_of_every_simulated_scenario() {
    // All but big-farm, whose millions of steps add scale, not kinds of verdict.
    for name in sim::BUILTIN.into_iter().filter(|n| *n != "big-farm") {
        replay_checked(&common::sim_log(name), &mut Seen::default());
    }
}

#[test]
fn a_registration_and_its_heartbeat_answer_with_both_revokes_in_order() {
    let a = |s: &str| Atom::parse(s).expect("atom");
    let name = DroneName::new("d").expect("name");
    let revoked = |p: &str| Revoked {
        package: a(p),
        reason: RevokeReason::Unknown,
    };
    let first = Verdict {
        drone: name.clone(),
        known: true,
        epoch: Epoch(2),
        paused: false,
        leases: Vec::new(),
        work: None,
        report: None,
        revoked: vec![revoked("x/a-1"), revoked("x/b-1")],
        revokes: vec![a("x/a-1"), a("x/b-1"), a("x/old-1")],
        current_task: None,
        returned: 2,
    };
    let later = Verdict {
        epoch: Epoch(3),
        revoked: vec![revoked("x/c-1")],
        revokes: vec![a("x/c-1"), a("x/a-1")],
        current_task: Some(a("x/b-1")),
        returned: 0,
        ..first.clone()
    };
    let both = first.then(later);
    assert_eq!(both.epoch, Epoch(3));
    assert_eq!(both.revokes, [a("x/a-1"), a("x/b-1"), a("x/c-1")]);
    assert_eq!(both.revoked.len(), 3);
    assert_eq!(both.stop_work().map(|r| &r.package), Some(&a("x/b-1")));
    assert_eq!(both.returned, 2);
}
