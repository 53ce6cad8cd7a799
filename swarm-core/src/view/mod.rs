//! Read-only queries over a swarm: what dashboards, the HTTP API and tests see.

use crate::atom::Atom;
use crate::buildenv::{BuildEnv, EnvDiff};
use crate::health::DroneHealth;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::DroneKind;
use crate::output::{BlockReason, RejectReason};
use crate::policy::{brake, schedule};
use crate::state::{Drone, Liveness, Package, PackageState};
use crate::swarm::Swarm;
use crate::time::{human_ms, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;

/// A borrowed, read-only view.
#[derive(Clone, Copy)]
pub struct View<'a> {
    s: &'a Swarm,
}

/// How many packages are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All packages in the queue.
    pub total: u32,
    /// Queued (ready, waiting for dependencies, or backing off).
    pub queued: u32,
    /// Queued and ready to assign now.
    pub ready: u32,
    /// Queued, held back by retry backoff.
    pub backoff: u32,
    /// Holding a lease (started or not).
    pub assigned: u32,
    /// Holding a lease, and the build started.
    pub building: u32,
    /// Built.
    pub built: u32,
    /// Blocked.
    pub blocked: u32,
}

/// Drone liveness as the outside sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DroneStatus {
    /// Heartbeat fresh.
    Online,
    /// Heartbeat late: no new work.
    Suspect,
    /// Heartbeat older than the offline timeout: holds nothing.
    Offline,
    /// Stopped cleanly: the agent said goodbye. Holds nothing, expects no work.
    Stopped,
}

/// One drone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DroneView {
    /// Name.
    pub name: DroneName,
    /// v3 machine id.
    pub machine_id: Option<String>,
    /// Epoch.
    pub epoch: Epoch,
    /// Liveness.
    pub status: DroneStatus,
    /// Self-assessed health.
    pub health: DroneHealth,
    /// Machine kind.
    pub kind: DroneKind,
    /// Cores.
    pub cores: u32,
    /// RAM, MiB.
    pub ram_mb: u64,
    /// Build slots.
    pub slots: u32,
    /// Last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Paused by an operator.
    pub paused: bool,
    /// Drained by an operator.
    pub drained: bool,
    /// Grounded until then.
    pub grounded_until: Option<Timestamp>,
    /// Consecutive infra/OOM failures.
    pub consecutive_failures: u32,
    /// Escalation steps taken since it was last healthy.
    pub escalation_steps: u8,
    /// Leases held.
    pub leases: Vec<LeaseView>,
    /// Successful builds.
    pub builds_ok: u64,
    /// Failed builds.
    pub builds_failed: u64,
    /// Memory use, percent.
    pub mem_percent: Option<u8>,
    /// Disk use, percent.
    pub disk_percent: Option<u8>,
    /// Load × 100.
    pub load_centi: Option<u32>,
    /// Portage snapshot.
    pub portage_snapshot: Option<String>,
    /// Agent version.
    pub version: Option<String>,
    /// Why it gets no work right now, if it gets none.
    pub no_work: Option<String>,
    /// Its build environment as it reported it (empty: none reported).
    #[serde(skip_serializing_if = "BuildEnv::is_empty")]
    pub env: BuildEnv,
    /// How its environment differs from the closest profile's when no profile admits it (empty
    /// when one does): what keeps it from getting work.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_differences: Vec<EnvDiff>,
    /// The profiles whose packages it may build: the default one (`expect_env`'s) first, then
    /// the named ones by name. Empty: it gets no work of any (see `env_differences`).
    pub serves: Vec<String>,
    /// When it serves no profile: the one it comes closest to (fewest differing variables),
    /// which `env_differences` is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_profile: Option<String>,
}

/// "no drone matches profile desktop-amd64: drone-tarn differs in CFLAGS (-O3 vs -O2)" when no
/// online drone's environment the package's profile admits; `None` when one matches.
fn profile_mismatch(
    st: &crate::state::SwarmState,
    p: &crate::state::Package,
    online: &[&Drone],
) -> Option<String> {
    let name = p.profile.name();
    let Some(expected) = st.expected_env_of(&p.profile) else {
        return Some(format!(
            "waiting: profile {name} no longer exists; no drone matches it"
        ));
    };
    if online.iter().any(|d| expected.admits(&d.spec.env)) {
        return None;
    }
    let first = online.first()?;
    let diffs = expected.differences(&first.spec.env);
    let words = crate::buildenv::describe_differences(&diffs);
    let words = words.strip_prefix("environment ").unwrap_or(&words);
    let more = online.len() - 1;
    Some(format!(
        "no drone matches profile {name}: {} {words}{}",
        first.spec.name,
        if more > 0 {
            format!(" (and {more} more drones differ)")
        } else {
            String::new()
        }
    ))
}

/// One profile (see [`crate::profile`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileView {
    /// Its name; `default` is `expect_env`'s.
    pub name: String,
    /// The environment its packages must be built in (empty: any).
    pub env: BuildEnv,
    /// Drones whose environment it admits.
    pub matching: Vec<DroneName>,
    /// Its packages in the queue not built yet.
    pub unbuilt: u32,
    /// Its packages in the queue, built or not.
    pub packages: u32,
    /// The drones it does not admit and what differs ("environment differs in CFLAGS (-O3 vs
    /// -O2)"), by drone.
    pub differing: BTreeMap<DroneName, String>,
    /// Its world set (named profiles; empty: none written down).
    pub world: Vec<String>,
    /// Its packages by state: waiting, leased to a drone (started or not), built, blocked.
    pub states: ProfileStates,
}

/// How many of one profile's packages are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileStates {
    /// Waiting to be assigned.
    pub queued: u32,
    /// Leased to a drone (building, or about to).
    pub building: u32,
    /// Built.
    pub built: u32,
    /// Blocked.
    pub blocked: u32,
}

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    /// Lease id.
    pub lease: LeaseId,
    /// Package.
    pub package: Atom,
    /// Holder.
    pub drone: DroneName,
    /// Issued at.
    pub issued_at: Timestamp,
    /// Started at.
    pub started_at: Option<Timestamp>,
    /// The package's profile (`None`: the default profile): whose binhost its binary is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A package's state as the outside sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PackageStatus {
    /// Waiting to be assigned.
    Queued {
        /// Backing off until then.
        retry_at: Option<Timestamp>,
    },
    /// Leased.
    Assigned {
        /// Lease.
        lease: LeaseId,
        /// Holder.
        drone: DroneName,
        /// Whether it started.
        started: bool,
    },
    /// Built.
    Built {
        /// When.
        at: Timestamp,
    },
    /// Blocked.
    Blocked {
        /// Why.
        reason: BlockReason,
        /// Retried automatically then.
        auto_unblock_at: Option<Timestamp>,
    },
}

/// One package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageView {
    /// Atom.
    pub atom: Atom,
    /// State.
    pub status: PackageStatus,
    /// Priority.
    pub priority: i32,
    /// Failed attempts.
    pub attempts: u32,
    /// Remaining critical path, ms.
    pub critical_path_ms: u64,
    /// Estimated duration, ms.
    pub estimate_ms: u64,
    /// Queue generation.
    pub generation: u64,
    /// Dependencies in the queue that are not built yet.
    pub waiting_for: u32,
    /// Last failure detail.
    pub last_error: Option<String>,
    /// Its profile; `None` is the default profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The disruption brake's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrakeView {
    /// Engaged?
    pub engaged: bool,
    /// Why.
    pub reason: String,
    /// Packages held.
    pub held: Vec<Atom>,
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
            .map(|id| self.s.st.pkg(*id).deps.clone())
            .unwrap_or_default()
    }

    /// The brake.
    pub fn brake(&self) -> BrakeView {
        let b = &self.s.st.brake;
        BrakeView {
            engaged: b.engaged,
            reason: b.reason.clone(),
            held: b.held.iter().cloned().collect(),
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

    /// Why a package is (not) running, in words an operator understands; for an atom queued in
    /// several profiles, it asks which ([`View::explain_in`]) and explains each on its own line.
    pub fn explain(&self, atom: &Atom) -> String {
        self.explain_in(atom, None)
    }

    /// [`View::explain`] of the atom in `profile` (`default`: the default one; `None`: its one).
    pub fn explain_in(&self, atom: &Atom, profile: Option<&str>) -> String {
        let s = self.s;
        let st = &s.st;
        let id = match s.resolve(atom, profile) {
            Ok(id) => id,
            Err(RejectReason::AmbiguousPackage { profiles, .. }) => {
                let one = |p: &str| self.explain_in(atom, Some(p));
                return crate::profile::ambiguous_explanation(atom, &profiles, one);
            }
            Err(_) => {
                return match profile {
                    Some(p) => format!("{atom} is not in the queue for profile {p}"),
                    None => format!("{atom} is not in the queue"),
                }
            }
        };
        let p = st.pkg(id);
        match p.state() {
            PackageState::Built { .. } => return "built".to_owned(),
            PackageState::Assigned { lease } => {
                let Some(l) = st.leases.get(lease) else {
                    return "assigned".to_owned();
                };
                return match l.started_at {
                    Some(t) => format!(
                        "building on {} for {} (lease {})",
                        l.drone,
                        human_ms(st.now.since(t)),
                        l.id
                    ),
                    None => format!("assigned to {} (lease {}), not started yet", l.drone, l.id),
                };
            }
            PackageState::Blocked {
                reason,
                auto_unblock_at,
                ..
            } => {
                let when = auto_unblock_at
                    .map(|t| format!("; retried automatically in {}", human_ms(t.since(st.now))))
                    .unwrap_or_default();
                return format!("blocked: {reason}{when}");
            }
            PackageState::Queued { retry_at: Some(t) } => {
                return format!(
                    "retrying after failure {} ({}); next attempt in {}",
                    p.attempts,
                    p.last_error.as_deref().unwrap_or("no detail"),
                    human_ms(t.since(st.now))
                );
            }
            PackageState::Queued { retry_at: None } => {}
        }
        if let Some(dep) = p
            .eff_deps
            .iter()
            .map(|d| st.pkg(*d))
            .find(|d| !d.is_built())
        {
            let more = p.unbuilt.saturating_sub(1);
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            return format!("waiting: dependency {} not built{more}", dep.atom);
        }
        if st.brake.engaged && st.brake.held.contains(&p.atom) {
            return format!("held by the disruption brake: {}", st.brake.reason);
        }
        if st.paused {
            return "waiting: the swarm is paused".to_owned();
        }
        let online: Vec<&Drone> = st
            .drones
            .values()
            .filter(|d| d.liveness == Liveness::Online && !d.spec.name.is_sweeper())
            .collect();
        if online.is_empty() {
            return "waiting: no drone online".to_owned();
        }
        if let Some(why) = profile_mismatch(st, p, &online) {
            return why;
        }
        let need = st.ram_need_mb(&p.key);
        let big_enough: Vec<&&Drone> = online
            .iter()
            .filter(|d| d.spec.ram_mb == 0 || d.spec.ram_mb >= need)
            .collect();
        if big_enough.is_empty() {
            return format!(
                "waiting: no drone with ≥ {} GB RAM online",
                need.div_ceil(1024)
            );
        }
        let fits: Vec<&&&Drone> = big_enough
            .iter()
            .filter(|d| !p.failed_recently_on(&d.spec.name, st.now, st.config.failure_memory_ms))
            .collect();
        if fits.is_empty() {
            return format!(
                "waiting: all {} drones that could build it failed it recently",
                big_enough.len()
            );
        }
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        let mut free = 0;
        for d in &fits {
            match schedule::capacity(st, d, u32::MAX) {
                Ok(_) => free += 1,
                Err(why) => *reasons.entry(why.to_string()).or_default() += 1,
            }
        }
        if free > 0 {
            let ahead =
                s.ix.ready_key
                    .get(&id)
                    .map_or(0, |k| s.ix.ready.range(..*k).count());
            return format!(
                "ready: {free} drones eligible with free slots; {ahead} packages ahead of it"
            );
        }
        let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "waiting: {} drones eligible, none free ({})",
            fits.len(),
            why.join(", ")
        )
    }

    fn drone_view(&self, d: &Drone) -> DroneView {
        let st = &self.s.st;
        let serving = crate::serving::serving(&st.expected_env, &st.profiles, &d.spec.env);
        DroneView {
            name: d.spec.name.clone(),
            machine_id: d.spec.machine_id.clone(),
            epoch: d.epoch,
            status: match d.liveness {
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
