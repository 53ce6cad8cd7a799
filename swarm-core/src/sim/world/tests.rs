//! The world's delivery of commands to agents, against what swarm's replies tell a drone.

use super::{SimOptions, World};
use crate::agent::JobId;
use crate::atom::Atom;
use crate::config::Config;
use crate::id::LeaseId;
use crate::output::{Command, RevokeReason};
use crate::sim::scenario::Scenario;

/// A fault-free world; it runs until a drone builds a package under a live lease, and returns
/// the world with that (drone, job, lease, atom).
fn building() -> (World, usize, JobId, u64, Atom) {
    let mut sc = Scenario::builtin("chaos").expect("built-in");
    sc.faults.random = false;
    let opts = SimOptions {
        seed: 1,
        config: Config::default(),
        keep_log: false,
    };
    let mut w = World::new(&sc, &opts).expect("valid scenario");
    while let Some((t, ev)) = w.queue.pop() {
        w.now = t;
        w.on_event(ev);
        let found = w.agents.iter().enumerate().find_map(|(i, a)| {
            a.model.jobs().iter().find_map(|(id, j)| {
                let lease = j
                    .lease
                    .filter(|l| w.swarm.view().lease(LeaseId(*l)).is_some())?;
                (j.started && j.stop.is_none()).then(|| (i, *id, lease, j.atom.clone()))
            })
        });
        if let Some((i, job, lease, atom)) = found {
            return (w, i, job, lease, atom);
        }
    }
    panic!("no drone ever built anything");
}

fn revoke(w: &World, i: usize, lease: u64, atom: &Atom) -> Command {
    Command::Revoke {
        drone: w.agents[i].name.clone(),
        lease: Some(LeaseId(lease)),
        package: Some(atom.clone()),
        reason: RevokeReason::Unknown,
    }
}

#[test]
fn a_revoke_of_an_old_lease_spares_the_build_of_the_package_given_again() {
    let (mut w, i, job, lease, atom) = building();
    // The core's answer to a late report of an older lease of the same package (lease 0 is
    // never issued, so it stands for any lease other than the live one).
    let old = revoke(&w, i, 0, &atom);
    w.deliver(i, old);
    let still = w.agents[i].model.job(job).expect("the build goes on");
    assert!(still.stop.is_none(), "the new build was stopped: {still:?}");
    assert!(w.agents[i].builds.contains_key(&job));
    // A revoke of the live lease itself still stops it.
    let live = revoke(&w, i, lease, &atom);
    w.deliver(i, live);
    assert!(
        w.agents[i].model.job(job).is_none_or(|j| j.stop.is_some()),
        "a revoke of the live lease must stop its build"
    );
    assert!(!w.agents[i].builds.contains_key(&job));
}
