//! Read-only queries over a swarm: what dashboards, the HTTP API and tests see.

mod explain;
mod types;

pub use types::*;

use crate::atom::Atom;
use crate::buildenv::BuildEnv;
use crate::id::{DroneName, LeaseId};
use crate::policy::{brake, schedule};
use crate::state::{Drone, Liveness, Package, PackageState};
use crate::swarm::Swarm;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// A borrowed, read-only view.
#[derive(Clone, Copy)]
pub struct View<'a> {
    s: &'a Swarm,
}

impl Swarm {
    /// Read-only queries.
    pub fn view(&self) -> View<'_> {
        View { s: self }
    }
}

impl<'a> View<'a> {
    /// The core's notion of now.
    pub fn now(&self) -> Timestamp {
        self.s.st.now
    }

    /// Whether the whole swarm is paused.
    pub fn paused(&self) -> bool {
        self.s.st.paused
    }

    /// The current queue generation.
    pub fn generation(&self) -> u64 {
        self.s.st.generation
    }

    /// The build environment drones must have to get work (empty: any).
    pub fn expected_env(&self) -> &'a BuildEnv {
        &self.s.st.expected_env
    }

    /// Every profile, the default one (`expect_env`'s) first: name, expected environment, the
    /// drones whose environment it admits, and its packages not built yet.
    pub fn profiles(&self) -> Vec<ProfileView> {
        let st = &self.s.st;
        let default = (crate::profile::DEFAULT_PROFILE, &st.expected_env, None);
        let named = st
            .profiles
            .0
            .iter()
            .map(|(n, e)| (n.as_str(), e, Some(n.as_str())));
        std::iter::once(default)
            .chain(named)
            .map(|(name, env, tag)| ProfileView {
                name: name.to_owned(),
                env: env.clone(),
                matching: st
                    .drones
                    .values()
                    .filter(|d| env.admits(&d.spec.env))
                    .map(|d| d.spec.name.clone())
                    .collect(),
                unbuilt: st
                    .packages
                    .iter()
                    .filter(|p| p.profile.0.as_deref() == tag && !p.is_built())
                    .count() as u32,
                packages: st
                    .packages
                    .iter()
                    .filter(|p| p.profile.0.as_deref() == tag)
                    .count() as u32,
                differing: st
                    .drones
                    .values()
                    .filter(|d| !env.admits(&d.spec.env))
                    .map(|d| {
                        let words = if d.spec.env.is_empty() {
                            "reports no build environment".to_owned()
                        } else {
                            crate::buildenv::describe_differences(&env.differences(&d.spec.env))
                        };
                        (d.spec.name.clone(), words)
                    })
                    .collect(),
                world: tag
                    .and_then(|t| st.profile_worlds.0.get(t))
                    .cloned()
                    .unwrap_or_default(),
                states: st
                    .packages
                    .iter()
                    .filter(|p| p.profile.0.as_deref() == tag)
                    .fold(ProfileStates::default(), |mut n, p| {
                        match *p.state() {
                            PackageState::Queued { .. } => n.queued += 1,
                            PackageState::Assigned { .. } => n.building += 1,
                            PackageState::Built { .. } => n.built += 1,
                            PackageState::Blocked { .. } => n.blocked += 1,
                        }
                        n
                    }),
            })
            .collect()
    }

    /// The environment `profile` expects (`default`: `expect_env`'s), or `None` for no such
    /// profile.
    pub fn profile_env(&self, profile: &str) -> Option<&'a BuildEnv> {
        let s: &'a Swarm = self.s;
        if profile == crate::profile::DEFAULT_PROFILE {
            Some(&s.st.expected_env)
        } else {
            s.st.profiles.0.get(profile)
        }
    }

    /// The profiles the queue holds `atom` for (`None`: the default profile), in enqueue
    /// order; empty when it is not queued. A package is (profile, atom).
    pub fn queued_profiles(&self, atom: &Atom) -> Vec<Option<&'a str>> {
        let s: &'a Swarm = self.s;
        s.ids_of(atom)
            .into_iter()
            .map(|id| s.st.pkg(id).profile.0.as_deref())
            .collect()
    }

    /// The Portage snapshot drones must be on to get work, if one is set.
    pub fn expected_portage(&self) -> Option<&'a str> {
        self.s.st.expected_portage.as_deref()
    }

    /// Counts per state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.s.st.packages.len() as u32,
            ..Counts::default()
        };
        for p in &self.s.st.packages {
            match p.state() {
                PackageState::Queued { retry_at } => {
                    c.queued += 1;
                    c.backoff += u32::from(retry_at.is_some());
                }
                PackageState::Assigned { lease } => {
                    c.assigned += 1;
                    let started = self
                        .s
                        .st
                        .leases
                        .get(lease)
                        .is_some_and(|l| l.started_at.is_some());
                    c.building += u32::from(started);
                }
                PackageState::Built { .. } => c.built += 1,
                PackageState::Blocked { .. } => c.blocked += 1,
            }
        }
        c.ready = self.s.ix.ready.len() as u32;
        c
    }

    /// Packages in the queue (any state), in O(1).
    pub fn package_count(&self) -> u32 {
        self.s.st.packages.len() as u32
    }

    /// Entries left in the work list of the critical-path walk a big
    /// enqueue leaves to ticks (a frontier, not a count of the packages it
    /// will move): while above 0 the queue's order is still settling and
    /// the writer ticks every few milliseconds; 0 once the order is exact.
    pub fn replan_pending(&self) -> usize {
        self.s.st.cp_pending.0.len()
    }

    /// Ready packages, in O(1) (for samplers that cannot afford `counts`).
    pub fn ready_count(&self) -> u32 {
        self.s.ix.ready.len() as u32
    }

    /// Live leases, in O(1).
    pub fn lease_count(&self) -> u32 {
        self.s.st.leases.len() as u32
    }

    /// Every drone, by name.
    pub fn drones(&self) -> Vec<DroneView> {
        self.s
            .st
            .drones
            .values()
            .map(|d| self.drone_view(d))
            .collect()
    }

    /// One drone.
    pub fn drone(&self, name: &DroneName) -> Option<DroneView> {
        self.s.st.drones.get(name).map(|d| self.drone_view(d))
    }

    /// Finds a drone by its v3 machine id.
    pub fn drone_by_machine_id(&self, id: &str) -> Option<&'a DroneName> {
        self.s
            .st
            .drones
            .values()
            .find(|d| d.spec.machine_id.as_deref() == Some(id))
            .map(|d| &d.spec.name)
    }

    /// The revokes to repeat in `name`'s replies: work it was told to stop and has not yet been
    /// seen to stop (see `REVOKE_REPEAT_MS`).
    pub fn pending_revokes(&self, name: &DroneName) -> Vec<Atom> {
        let now = self.s.st.now;
        self.s
            .st
            .drones
            .get(name)
            .map(|d| d.revokes.pending(now).cloned().collect())
            .unwrap_or_default()
    }

    /// A drone's leases, oldest first.
    pub fn leases_of(&self, name: &DroneName) -> Vec<LeaseView> {
        let Some(d) = self.s.st.drones.get(name) else {
            return Vec::new();
        };
        d.leases.iter().filter_map(|l| self.lease(*l)).collect()
    }

    /// One lease, if live.
    pub fn lease(&self, id: LeaseId) -> Option<LeaseView> {
        let st = &self.s.st;
        st.leases.get(&id).map(|l| LeaseView {
            lease: l.id,
            package: l.package.clone(),
            drone: l.drone.clone(),
            issued_at: l.issued_at,
            started_at: l.started_at,
            profile: st.pkg(l.pkg).profile.0.clone(),
        })
    }

    /// Every live lease.
    pub fn leases(&self) -> Vec<LeaseView> {
        self.s
            .st
            .leases
            .keys()
            .filter_map(|l| self.lease(*l))
            .collect()
    }

    /// Every package, in enqueue order.
    pub fn queue(&self) -> impl Iterator<Item = PackageView> + 'a {
        let s = self.s;
        s.st.packages.iter().map(move |p| package_view(s, p))
    }

    /// Ready packages in the order they will be handed out.
    pub fn ready(&self) -> Vec<Atom> {
        self.s
            .ix
            .ready
            .iter()
            .map(|k| self.s.st.pkg(k.pkg).atom.clone())
            .collect()
    }

    /// The atom's package queued first (its only one unless it is queued in several profiles;
    /// [`View::packages_of`] gives them all, [`View::package_in`] the one of a profile).
    pub fn package(&self, atom: &Atom) -> Option<PackageView> {
        let id = self.s.ids_of(atom).into_iter().next()?;
        Some(package_view(self.s, self.s.st.pkg(id)))
    }

    /// The atom's package in `profile` (`default`: the default profile).
    pub fn package_in(&self, atom: &Atom, profile: &str) -> Option<PackageView> {
        self.s
            .resolve(atom, Some(profile))
            .ok()
            .map(|id| package_view(self.s, self.s.st.pkg(id)))
    }

    /// The packages the last `handle` touched (see [`crate::Touched`]), in enqueue order; none
    /// when it touched everything (read [`View::queue`] then).
    pub fn touched_packages(&self) -> impl Iterator<Item = PackageView> + 'a {
        let s = self.s;
        s.touched
            .packages
            .iter()
            .filter_map(move |id| s.st.packages.get(id.index()))
            .map(move |p| package_view(s, p))
    }

    /// Every package of an atom, one per profile it is queued for, in enqueue order.
    pub fn packages_of(&self, atom: &Atom) -> Vec<PackageView> {
        self.s
            .ids_of(atom)
            .into_iter()
            .map(|id| package_view(self.s, self.s.st.pkg(id)))
            .collect()
    }

    /// The dependencies a package was queued with (in the queue or not); the atom's first
    /// package's, as [`View::package`].
    pub fn deps_of(&self, atom: &Atom) -> Vec<Atom> {
        self.s
            .ids_of(atom)
            .first()
            .map(|id| self.s.st.pkg(*id).deps.to_vec())
            .unwrap_or_default()
    }

    /// The brake.
    pub fn brake(&self) -> BrakeView {
        let b = &self.s.st.brake;
        BrakeView {
            engaged: b.engaged,
            reason: b.reason.clone(),
            held: b.held.iter().cloned().collect(),
            set_aside: if b.engaged {
                b.cause_drones.iter().cloned().collect()
            } else {
                Vec::new()
            },
            trial_every_ms: (b.engaged && !b.cause_drones.is_empty())
                .then_some(self.s.st.config.brake_window_ms),
        }
    }

    /// Fleet-wide escalations inside the rate-limit window.
    pub fn recent_escalations(&self) -> u32 {
        crate::policy::escalate::recent(&self.s.st)
    }

    /// Drones that count as the active fleet for the brake.
    pub fn active_drones(&self) -> u32 {
        brake::active(&self.s.st)
    }

    /// Learned durations, ms, per `category/pn`.
    pub fn learned_durations(&self) -> BTreeMap<String, u64> {
        self.s
            .st
            .learned
            .iter()
            .filter_map(|(k, l)| l.duration_ms.map(|d| (k.clone(), d)))
            .collect()
    }

    fn drone_view(&self, d: &Drone) -> DroneView {
        let st = &self.s.st;
        let serving = crate::serving::serving(&st.expected_env, &st.profiles, &d.spec.env);
        DroneView {
            name: d.spec.name.clone(),
            machine_id: d.spec.machine_id.clone(),
            epoch: d.epoch,
            status: match d.liveness() {
                Liveness::Online => DroneStatus::Online,
                Liveness::Suspect => DroneStatus::Suspect,
                Liveness::Offline => DroneStatus::Offline,
                Liveness::Stopped => DroneStatus::Stopped,
            },
            health: d.health,
            kind: d.spec.kind,
            cores: d.spec.cores,
            ram_mb: d.spec.ram_mb,
            slots: st.config.slots_for(d.spec.cores),
            last_heartbeat: d.last_heartbeat,
            paused: d.paused,
            drained: d.drained,
            grounded_until: d.grounded_until.filter(|u| *u > st.now),
            consecutive_failures: d.consecutive_failures,
            escalation_steps: d.ladder.steps,
            leases: self.leases_of(&d.spec.name),
            builds_ok: d.builds_ok,
            builds_failed: d.builds_failed,
            mem_percent: d.mem_percent,
            disk_percent: d.disk_percent,
            load_centi: d.load_centi,
            portage_snapshot: d.spec.portage_snapshot.clone(),
            version: d.spec.version.clone(),
            set_aside: st.brake.sets_aside(&d.spec.name),
            no_work: schedule::capacity(st, d, u32::MAX)
                .err()
                .filter(|w| *w != schedule::NoWork::Full)
                .map(|w| w.to_string()),
            env: d.spec.env.clone(),
            env_differences: serving
                .closest
                .as_ref()
                .map(|c| c.differences.clone())
                .unwrap_or_default(),
            closest_profile: serving.closest.map(|c| c.profile),
            serves: serving.serves,
        }
    }
}

fn package_view(s: &Swarm, p: &Package) -> PackageView {
    let st = &s.st;
    let status = match p.state() {
        PackageState::Queued { retry_at } => PackageStatus::Queued {
            retry_at: *retry_at,
        },
        PackageState::Assigned { lease } => {
            let l = st.leases.get(lease);
            PackageStatus::Assigned {
                lease: *lease,
                drone: l.map(|l| l.drone.clone()).unwrap_or_default(),
                started: l.is_some_and(|l| l.started_at.is_some()),
            }
        }
        PackageState::Built { at } => PackageStatus::Built { at: *at },
        PackageState::Blocked {
            reason,
            auto_unblock_at,
            ..
        } => PackageStatus::Blocked {
            reason: reason.clone(),
            auto_unblock_at: *auto_unblock_at,
        },
    };
    PackageView {
        atom: p.atom.clone(),
        status,
        priority: p.priority,
        attempts: p.attempts,
        critical_path_ms: p.cp_ms,
        estimate_ms: st.estimate_ms(p),
        generation: p.generation,
        waiting_for: p.unbuilt,
        last_error: p.last_error.clone(),
        profile: p.profile.0.clone(),
    }
}
