//! Operator actions. Each one is explicit about what it may touch: none of
//! them takes a started build except `reclaim` and `block`, which name it.

use super::{reject, Swarm};
use crate::atom::Atom;
use crate::id::DroneName;
use crate::input::Control;
use crate::output::{BlockReason, Event, Output, ReclaimReason, RejectReason};
use crate::state::{PackageState, PkgId};

pub(crate) fn apply(s: &mut Swarm, action: &Control, out: &mut Vec<Output>) {
    let summary = match action {
        Control::Pause => {
            s.st.paused = true;
            out.push(Output::Event(Event::Paused { drone: None }));
            return;
        }
        Control::Resume => {
            s.st.paused = false;
            out.push(Output::Event(Event::Resumed { drone: None }));
            return;
        }
        Control::PauseDrone { drone } | Control::ResumeDrone { drone } => {
            let pause = matches!(action, Control::PauseDrone { .. });
            let Some(d) = s.st.drones.get_mut(drone) else {
                return unknown(out, drone);
            };
            d.paused = pause;
            let drone = Some(drone.clone());
            out.push(Output::Event(if pause {
                Event::Paused { drone }
            } else {
                Event::Resumed { drone }
            }));
            return;
        }
        Control::Drain { drone } | Control::Undrain { drone } => {
            let drain = matches!(action, Control::Drain { .. });
            let Some(d) = s.st.drones.get_mut(drone) else {
                return unknown(out, drone);
            };
            d.drained = drain;
            format!("{drone} {}", if drain { "drained" } else { "undrained" })
        }
        Control::Unblock {
            package: Some(atom),
            profile,
        } => {
            let pkg = match s.resolve(atom, profile.as_deref()) {
                Ok(pkg) => pkg,
                Err(why) => return reject(out, *why),
            };
            if !matches!(*s.st.pkg(pkg).state(), PackageState::Blocked { .. }) {
                return illegal(out, format!("{atom} is not blocked"));
            }
            s.unblock(pkg, true, out);
            format!("unblocked {atom}")
        }
        Control::Unblock {
            package: None,
            profile: None,
        } => {
            let n = unblock_where(s, out, |_, _| true);
            format!("unblocked {n} packages")
        }
        Control::Unblock {
            package: None,
            profile: Some(name),
        } => {
            let tag = (name != crate::profile::DEFAULT_PROFILE).then_some(name.as_str());
            let n = unblock_where(s, out, |p, _| p.profile.0.as_deref() == tag);
            format!("unblocked {n} packages of profile {name}")
        }
        Control::Block { package, profile } => {
            let pkg = match s.resolve(package, profile.as_deref()) {
                Ok(pkg) => pkg,
                Err(why) => return reject(out, *why),
            };
            match *s.st.pkg(pkg).state() {
                PackageState::Built { .. } => {
                    return illegal(out, format!("{package} is already built"))
                }
                PackageState::Blocked { .. } => {
                    return illegal(out, format!("{package} is already blocked"))
                }
                PackageState::Assigned { lease } => s.reclaim(lease, ReclaimReason::Operator, out),
                PackageState::Queued { .. } => {}
            }
            s.block(pkg, BlockReason::Operator, out);
            format!("blocked {package}")
        }
        Control::Unground { drone } => {
            let names = match drone {
                Some(d) if !s.st.drones.contains_key(d) => return unknown(out, d),
                Some(d) => vec![d.clone()],
                None => s.st.drones.keys().cloned().collect(),
            };
            let mut n = 0;
            for name in &names {
                if let Some(d) = s.st.drones.get_mut(name) {
                    if d.grounded_until.take().is_some() {
                        n += 1;
                        out.push(Output::Event(Event::Ungrounded {
                            drone: name.clone(),
                        }));
                    }
                    d.consecutive_failures = 0;
                    d.upload_hold_until = None;
                }
                s.sync_drone(name);
            }
            format!("ungrounded {n} drones")
        }
        Control::Reset => {
            let names: Vec<DroneName> = s.st.drones.keys().cloned().collect();
            for name in &names {
                if let Some(d) = s.st.drones.get_mut(name) {
                    d.grounded_until = None;
                    d.consecutive_failures = 0;
                    d.groundings = 0;
                    d.upload_failures.clear();
                    d.upload_hold_until = None;
                    d.probe = Default::default();
                    d.ladder = Default::default();
                }
            }
            s.release_brake(true, out);
            s.st.brake.disrupted.clear();
            s.st.brake.failures.clear();
            s.st.escalations.clear();
            for name in &names {
                s.sync_drone(name);
            }
            format!(
                "reset {} drones' failures, groundings and escalations",
                names.len()
            )
        }
        Control::ExpectEnv { env, from } => {
            let expected = match named_env(s, env.as_ref(), from.as_ref()) {
                Ok(env) => env,
                Err(why) => return reject(out, *why),
            };
            let before = std::mem::replace(&mut s.st.expected_env, expected);
            let names: Vec<DroneName> = s.st.drones.keys().cloned().collect();
            let (mut matching, mut returned) = (0, 0);
            for name in &names {
                let held = s.st.drones[name].leases.len();
                let env = &s.st.drones[name].spec.env;
                let matched_before = crate::serving::matches(&before, &s.st.profiles, env);
                s.env_changed(name, &matched_before, out);
                let d = &s.st.drones[name];
                matching += usize::from(s.st.expected_env.admits(&d.spec.env));
                returned += held - d.leases.len();
            }
            if s.st.expected_env.is_empty() {
                "no build environment is expected any more".to_owned()
            } else {
                format!(
                    "expecting {} variables; {matching} of {} drones match; \
                     {returned} not-started leases returned",
                    s.st.expected_env.iter().count(),
                    names.len()
                )
            }
        }
        Control::SetProfile {
            name,
            env,
            from,
            world,
        } => {
            if let Some(problem) = crate::profile::name_problem(name)
                .or_else(|| world.as_deref().and_then(crate::profile::world_problem))
            {
                return reject(out, RejectReason::IllegalControl { detail: problem });
            }
            if !s.st.profiles.0.contains_key(name)
                && s.st.profiles.0.len() >= crate::profile::MAX_PROFILES
            {
                let detail = format!(
                    "already {} profiles, the most there may be",
                    crate::profile::MAX_PROFILES
                );
                return reject(out, RejectReason::IllegalControl { detail });
            }
            let expected = match named_env(s, env.as_ref(), from.as_ref()) {
                Ok(env) => env,
                Err(why) => return reject(out, *why),
            };
            let before: Vec<(DroneName, crate::serving::Matches)> = s
                .st
                .drones
                .iter()
                .map(|(n, d)| {
                    let m =
                        crate::serving::matches(&s.st.expected_env, &s.st.profiles, &d.spec.env);
                    (n.clone(), m)
                })
                .collect();
            s.st.profiles.0.insert(name.clone(), expected);
            for (drone, matched) in &before {
                let env = &s.st.drones[drone].spec.env;
                out.extend(
                    crate::serving::match_events(
                        &s.st.expected_env,
                        &s.st.profiles,
                        drone,
                        env,
                        matched,
                    )
                    .into_iter()
                    .map(Output::Event),
                );
            }
            match world {
                Some(w) if w.is_empty() => {
                    s.st.profile_worlds.0.remove(name);
                }
                Some(w) => {
                    s.st.profile_worlds.0.insert(name.clone(), w.clone());
                }
                None => {}
            }
            let returned = s.return_unmatched_everywhere(out);
            let matching =
                s.st.drones
                    .values()
                    .filter(|d| s.st.profiles.0[name].admits(&d.spec.env))
                    .count();
            format!(
                "profile {name} expects {} variables; {matching} of {} drones match; \
                 {returned} not-started leases returned",
                s.st.profiles.0[name].iter().count(),
                s.st.drones.len()
            )
        }
        Control::RemoveProfile { name, force } => {
            if !s.st.profiles.0.contains_key(name) {
                let detail = format!("no profile {name}");
                return reject(out, RejectReason::IllegalControl { detail });
            }
            let mut dropped = String::new();
            if *force {
                let running = running_builds_of(s, name);
                if !running.is_empty() {
                    let profile = name.clone();
                    return reject(out, RejectReason::ProfileBuilding { profile, running });
                }
                dropped = format!("{}; ", fresh_profile(s, name, out));
            }
            let queued =
                s.st.packages
                    .iter()
                    .filter(|p| p.profile.0.as_deref() == Some(name.as_str()) && !p.is_built())
                    .count();
            if queued > 0 {
                let detail = format!(
                    "{queued} packages of profile {name} are not built yet; start a fresh queue first"
                );
                return reject(out, RejectReason::IllegalControl { detail });
            }
            s.st.profiles.0.remove(name);
            s.st.profile_worlds.0.remove(name);
            format!("{dropped}profile {name} removed")
        }
        Control::FreshProfile { profile } => {
            if !s.st.profiles.0.contains_key(profile) {
                let detail = format!("no profile {profile}");
                return reject(out, RejectReason::IllegalControl { detail });
            }
            fresh_profile(s, profile, out)
        }
        Control::Rebalance => {
            let n = reclaim_not_started_everywhere(s, ReclaimReason::Rebalance, out);
            format!("reclaimed {n} not-started leases")
        }
        Control::ClearFailures => {
            for i in 0..s.st.packages.len() {
                s.st.forget_failures(PkgId(i as u32));
            }
            for d in s.st.drones.values_mut() {
                d.consecutive_failures = 0;
                d.upload_failures.clear();
            }
            "forgot which drones failed which packages".to_owned()
        }
        Control::RetryFailures => {
            let waiting: Vec<PkgId> = (0..s.st.packages.len() as u32)
                .map(PkgId)
                .filter(|p| s.st.pkg(*p).retry_at().is_some())
                .collect();
            for &pkg in &waiting {
                s.transition(pkg, PackageState::Queued { retry_at: None });
            }
            let n = unblock_where(s, out, |_, r| *r != BlockReason::Masked);
            format!("retrying {} packages now, unblocked {n}", waiting.len())
        }
        Control::Retry { package, profile } => {
            let pkg = match s.resolve(package, profile.as_deref()) {
                Ok(pkg) => pkg,
                Err(why) => return reject(out, *why),
            };
            match retry(s, pkg, out) {
                Ok(summary) => summary,
                Err(why) => return illegal(out, format!("{package} {why}")),
            }
        }
        Control::Fresh => fresh(s, out),
        Control::ResetEscalation { drone } => {
            let Some(d) = s.st.drones.get_mut(drone) else {
                return unknown(out, drone);
            };
            d.ladder = Default::default();
            d.probe = Default::default();
            s.sync_drone(drone);
            format!("escalation ladder of {drone} reset")
        }
        Control::ReleaseBrake => {
            if !s.st.brake.engaged {
                return illegal(out, "the brake is not engaged".to_owned());
            }
            s.release_brake(true, out);
            s.st.brake.disrupted.clear();
            "brake released".to_owned()
        }
        Control::Reclaim {
            package,
            profile,
            drone,
        } => {
            let mut n = 0;
            if let Some(atom) = package {
                let pkg = match s.resolve(atom, profile.as_deref()) {
                    Ok(pkg) => pkg,
                    Err(why) => return reject(out, *why),
                };
                let Some(lease) = s.st.pkg(pkg).lease() else {
                    return illegal(out, format!("{atom} is not assigned"));
                };
                s.reclaim(lease, ReclaimReason::Operator, out);
                n += 1;
            }
            if let Some(name) = drone {
                let Some(d) = s.st.drones.get(name) else {
                    return unknown(out, name);
                };
                n += d.leases.len();
                s.reclaim_all(name, ReclaimReason::Operator, out);
            }
            if package.is_none() && drone.is_none() {
                return illegal(out, "reclaim needs a package or a drone".to_owned());
            }
            format!("reclaimed {n} leases")
        }
        Control::ClearHistory => {
            s.st.learned.clear();
            s.replan();
            "forgot learned durations and memory needs".to_owned()
        }
        Control::RemoveDrone { drone } => {
            let Some(d) = s.st.drones.get(drone) else {
                return unknown(out, drone);
            };
            let n = d.leases.len();
            s.reclaim_all(drone, ReclaimReason::Operator, out);
            s.st.drones.remove(drone);
            s.st.brake.disrupted.remove(drone);
            // Nor is it set aside: a drone gone for good can pass no trial (h25).
            s.st.brake.cause_drones.remove(drone);
            s.st.brake.trials.remove(drone);
            s.sync_brake();
            // Its timers go: `sync_drone` of an unknown drone clears them.
            s.sync_drone(drone);
            out.push(Output::Event(Event::Removed {
                drone: drone.clone(),
            }));
            format!("removed {drone} from the fleet ({n} leases requeued); its build history stays")
        }
    };
    out.push(Output::Event(Event::ControlApplied {
        action: action.name().to_owned(),
        summary,
    }));
}

/// The environment an `expect_env` or `set_profile` names: written down, a
/// reference drone's (which must be registered and have reported one), or
/// none at all (which expects nothing).
fn named_env(
    s: &Swarm,
    env: Option<&crate::buildenv::BuildEnv>,
    from: Option<&DroneName>,
) -> Result<crate::buildenv::BuildEnv, Box<RejectReason>> {
    match (env, from) {
        (Some(env), _) => Ok(env.clone()),
        (None, Some(drone)) => match s.st.drones.get(drone) {
            None => Err(Box::new(RejectReason::UnknownDrone {
                drone: drone.clone(),
            })),
            Some(d) if d.spec.env.is_empty() => Err(Box::new(RejectReason::NoEnvironment {
                drone: drone.clone(),
            })),
            Some(d) => Ok(d.spec.env.clone()),
        },
        (None, None) => Ok(crate::buildenv::BuildEnv::default()),
    }
}

fn unknown(out: &mut Vec<Output>, drone: &DroneName) {
    reject(
        out,
        RejectReason::UnknownDrone {
            drone: drone.clone(),
        },
    );
}

fn illegal(out: &mut Vec<Output>, detail: String) {
    reject(out, RejectReason::IllegalControl { detail });
}

/// Makes one failed package eligible now (see [`Control::Retry`]); the
/// error says why there is nothing to retry.
fn retry(s: &mut Swarm, pkg: PkgId, out: &mut Vec<Output>) -> Result<String, String> {
    let p = s.st.pkg(pkg);
    let atom = p.atom.clone();
    let attempts = p.attempts;
    match *p.state() {
        PackageState::Built { .. } => Err("is already built".to_owned()),
        PackageState::Assigned { .. } => {
            Err("is assigned to a drone; reclaim it first to build it elsewhere".to_owned())
        }
        PackageState::Blocked {
            reason: BlockReason::Masked,
            ..
        } => Err(
            "is masked in Portage: it did not fail, no drone can build it; \
             `swarm control unblock` it to try anyway once it is unmasked"
                .to_owned(),
        ),
        PackageState::Blocked { .. } => {
            s.unblock(pkg, true, out);
            Ok(format!(
                "retrying {atom} now: unblocked, {attempts} failed attempts forgotten"
            ))
        }
        PackageState::Queued { retry_at } => {
            if retry_at.is_none() && attempts == 0 && p.failed_on.is_empty() {
                return Err("has not failed: it is queued and waits only for a drone".to_owned());
            }
            let now = s.st.now;
            let p = s.st.pkg_mut(pkg);
            p.forget_failures();
            s.transition(pkg, PackageState::Queued { retry_at: None });
            Ok(match retry_at {
                Some(at) => format!(
                    "retrying {atom} now ({} s of backoff left): {attempts} failed attempts forgotten",
                    at.since(now).div_ceil(1000)
                ),
                None => format!("retrying {atom}: {attempts} failed attempts forgotten"),
            })
        }
    }
}

fn unblock_where(
    s: &mut Swarm,
    out: &mut Vec<Output>,
    pred: impl Fn(&crate::state::Package, &BlockReason) -> bool,
) -> usize {
    let blocked: Vec<PkgId> = (0..s.st.packages.len() as u32)
        .map(PkgId)
        .filter(|id| {
            let p = s.st.pkg(*id);
            matches!(p.state(), PackageState::Blocked { reason, .. } if pred(p, reason))
        })
        .collect();
    for &pkg in &blocked {
        s.unblock(pkg, true, out);
    }
    blocked.len()
}

fn reclaim_not_started_everywhere(
    s: &mut Swarm,
    reason: ReclaimReason,
    out: &mut Vec<Output>,
) -> usize {
    let before = out.len();
    let names: Vec<DroneName> = s.st.drones.keys().cloned().collect();
    for name in &names {
        s.reclaim_not_started(name, reason, out);
    }
    out[before..]
        .iter()
        .filter(|o| matches!(o, Output::Event(Event::Reclaimed { .. })))
        .count()
}

/// A new queue generation: not-started leases are revoked, and every package
/// that is not being built right now leaves the queue.
fn fresh(s: &mut Swarm, out: &mut Vec<Output>) -> String {
    // Saturating: an adapter bounds pushed generations, the core never panics.
    s.st.generation = s.st.generation.saturating_add(1);
    let revoked = reclaim_not_started_everywhere(s, ReclaimReason::Fresh, out);
    let (dropped, kept) = drop_packages(s, |_| true);
    // A brake engaged for a failure cause judged the old queue; the new
    // generation starts without it (and without the failures that tripped it).
    if s.st.brake.cause.is_some() {
        s.st.brake.failures.clear();
        s.release_brake(true, out);
    }
    format!(
        "generation {}: revoked {revoked} not-started leases, dropped {dropped} packages, kept {kept} building",
        s.st.generation,
    )
}

/// Takes out of the queue every package `which` picks that is not being built, keeping lease
/// ids pointing at the packages they hold, and replans. (dropped, kept building of those picked).
/// Takes back `profile`'s not-started leases and drops its packages that are not being built.
fn fresh_profile(s: &mut Swarm, profile: &str, out: &mut Vec<Output>) -> String {
    let before = out.len();
    let names: Vec<DroneName> = s.st.drones.keys().cloned().collect();
    for name in &names {
        s.reclaim_not_started_where(
            name,
            ReclaimReason::Fresh,
            |p| p.profile.0.as_deref() == Some(profile),
            out,
        );
    }
    let revoked = out[before..]
        .iter()
        .filter(|o| matches!(o, Output::Event(Event::Reclaimed { .. })))
        .count();
    let (dropped, kept) = drop_packages(s, |p| p.profile.0.as_deref() == Some(profile));
    format!(
        "profile {profile}: revoked {revoked} not-started leases, dropped {dropped} packages, kept {kept} building"
    )
}

/// The packages of `profile` whose build has started, by atom.
fn running_builds_of(s: &Swarm, profile: &str) -> Vec<Atom> {
    let mut running: Vec<Atom> =
        s.st.leases
            .values()
            .filter(|l| l.started_at.is_some())
            .map(|l| s.st.pkg(l.pkg))
            .filter(|p| p.profile.0.as_deref() == Some(profile))
            .map(|p| p.atom.clone())
            .collect();
    running.sort();
    running
}

fn drop_packages(s: &mut Swarm, which: impl Fn(&crate::state::Package) -> bool) -> (usize, usize) {
    let old = std::mem::take(&mut s.st.packages);
    let mut remap = vec![None; old.len()];
    let (mut dropped, mut kept) = (0, 0);
    for (i, p) in old.into_iter().enumerate() {
        let picked = which(&p);
        if picked && !matches!(*p.state(), PackageState::Assigned { .. }) {
            dropped += 1;
            continue;
        }
        kept += usize::from(picked);
        remap[i] = Some(PkgId(s.st.packages.len() as u32));
        s.st.packages.push(p);
    }
    for lease in s.st.leases.values_mut() {
        if let Some(new) = remap[lease.pkg.index()] {
            lease.pkg = new;
        }
    }
    let atoms: std::collections::BTreeSet<_> =
        s.st.packages.iter().map(|p| p.atom.clone()).collect();
    s.st.brake.held.retain(|a| atoms.contains(a));
    crate::policy::plan::replan(&mut s.st);
    s.rebuild_index();
    (dropped, kept)
}
