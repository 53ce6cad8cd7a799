//! State the HTTP workers share: the published view, the writer's queue,
//! identities and addresses, metrics.

use super::http::ApiError;
use super::jobs::{Done, Job, Plan};
use super::metrics::Metrics;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use swarm_core::{DroneName, EscalationAction, Swarm, Timestamp};
use swarm_store::History;

/// The wall clock, injected so only `swarm-bin` reads it and tests can step it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Called for every `Escalate` command: (drone, registered address, step).
pub type EscalateHook = Arc<dyn Fn(&DroneName, Option<&str>, EscalationAction) + Send + Sync>;

/// A consistent copy of the core for readers, replaced as a whole.
pub(crate) struct Published {
    pub(crate) swarm: Swarm,
    pub(crate) seq: u64,
}

/// At most one forced copy of the core per this interval (see `fresh`).
const PUBLISH_GAP: Duration = Duration::from_millis(50);

/// Forced copies are also spaced by this many times what the last one cost
/// the writer, so readers never take more than a tenth of it, whatever the
/// state's size (a copy costs about 3 ms at 200,000 queued packages).
const PUBLISH_GAP_PER_COPY: u32 = 10;

/// The longest spacing: one slow copy (a preempted writer, the drop of a
/// big replaced copy) must not leave readers, drones' lease checks among
/// them, on a view older than `fresh`'s 2 s give-up.
const PUBLISH_GAP_MAX: Duration = Duration::from_secs(1);

/// How long after a forced copy the next may be forced, when the last copy
/// cost the writer `cost_us`.
fn publish_gap(cost_us: u64) -> Duration {
    let paced = Duration::from_micros(cost_us).saturating_mul(PUBLISH_GAP_PER_COPY);
    paced.clamp(PUBLISH_GAP, PUBLISH_GAP_MAX)
}

/// Which drone each machine id names: one id per drone, the last it
/// registered with, so a drone that registers under a new id each time
/// replaces its entry instead of adding one (an unbounded map grew by
/// 96 MB over 225,000 such registrations). Both directions are maps, so a
/// lookup by id or by name is O(log n).
#[derive(Default)]
pub(crate) struct MachineIds {
    by_id: BTreeMap<String, DroneName>,
    /// Every known name, with its machine id if it has one.
    by_name: BTreeMap<DroneName, Option<String>>,
}

impl MachineIds {
    /// `machine_id` now names `name`: the name's old id no longer does, and
    /// a drone that had this id loses it (it stays known by name).
    pub(crate) fn bind(&mut self, machine_id: &str, name: &DroneName) {
        let id = machine_id.to_string();
        if let Some(Some(old)) = self.by_name.insert(name.clone(), Some(id.clone())) {
            if old != id && self.by_id.get(&old) == Some(name) {
                self.by_id.remove(&old);
            }
        }
        if let Some(before) = self.by_id.insert(id.clone(), name.clone()) {
            if before != *name && self.by_name.get(&before) == Some(&Some(id)) {
                self.by_name.insert(before, None);
            }
        }
    }

    /// A drone known by name, with no machine id yet.
    pub(crate) fn know(&mut self, name: &DroneName) {
        self.by_name.entry(name.clone()).or_insert(None);
    }

    /// The drone a machine id or a drone's name refers to.
    pub(crate) fn resolve(&self, id: &str) -> Option<DroneName> {
        // A drone's own name first: another drone's machine id of the same
        // text (refused at registration since, but a store may hold one)
        // must not lock the named drone out of its own calls.
        if let Some(name) = DroneName::new(id)
            .ok()
            .filter(|n| self.by_name.contains_key(n))
        {
            return Some(name);
        }
        self.by_id.get(id).cloned()
    }

    /// The drone, other than `name`, whose machine id is `name`'s text: a v3
    /// drone's calls name it by that id, so a drone of that name would take
    /// them over.
    pub(crate) fn id_of_another(&self, name: &DroneName) -> Option<DroneName> {
        self.by_id
            .get(name.as_str())
            .filter(|owner| *owner != name)
            .cloned()
    }

    /// The known drone, other than `name`, whose name `machine_id` is.
    pub(crate) fn named_by(&self, machine_id: &str, name: &DroneName) -> Option<DroneName> {
        DroneName::new(machine_id)
            .ok()
            .filter(|n| n != name && self.by_name.contains_key(n))
    }

    /// How many machine ids are bound (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

pub(crate) struct Shared {
    pub(crate) clock: Clock,
    pub(crate) stop: AtomicBool,
    pub(crate) queued: AtomicUsize,
    /// When a reader last forced a new published copy.
    pub(crate) forced_publish: Mutex<Instant>,
    /// What the writer's last copy for readers cost it, in µs (the copy
    /// and dropping the one it replaced).
    pub(crate) publish_cost_us: AtomicU64,
    /// The last seq the writer committed.
    pub(crate) committed: AtomicU64,
    pub(crate) jobs: SyncSender<Job>,
    pub(crate) published: RwLock<Arc<Published>>,
    pub(crate) ids: RwLock<MachineIds>,
    pub(crate) addresses: RwLock<BTreeMap<DroneName, String>>,
    /// The CPU use each drone last reported (v3's `metrics.cpu_percent`),
    /// shown on `/status` and `/nodes`; the core has no use for it.
    pub(crate) cpu_percent: RwLock<BTreeMap<DroneName, f64>>,
    /// The drones whose last heartbeat said `current_task: null`.
    pub(crate) said_idle: RwLock<std::collections::BTreeSet<DroneName>>,
    /// The names of the drones the core knows, for the registration gate.
    pub(crate) known: super::gate::KnownDrones,
    /// Shared with the fsync thread, which needs nothing else.
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) history: Vec<Mutex<Option<History>>>,
    pub(crate) db_path: PathBuf,
    pub(crate) staging: PathBuf,
    pub(crate) releases: crate::binhost::Releases,
    /// Named profiles' releases, opened on first use (see `releases::target`).
    pub(crate) profile_releases: Mutex<BTreeMap<String, Arc<crate::binhost::Releases>>>,
    pub(crate) admin_token: String,
    pub(crate) drone_token: Option<String>,
    /// See `ServerOptions::read_token`.
    pub(crate) read_token: Option<String>,
    pub(crate) max_body: u64,
    pub(crate) max_artifact: u64,
    /// The store's id (`Store::store_id`), told to drones as `farm_id`.
    pub(crate) farm_id: String,
    /// What an upload's signature must be.
    pub(crate) signatures: crate::binpkg::signature::Policy,
    pub(crate) started: Instant,
    /// The swarm build serving (`swarm --version`, from `StoreOptions::build`; the crate's
    /// version when none was given), so health and `/metrics` say which build runs after an
    /// upgrade.
    pub(crate) build: String,
    pub(crate) on_escalate: Option<EscalateHook>,
    pub(crate) port: u16,
    pub(crate) history_next: AtomicUsize,
    /// Enrolled drones' hashed credentials.
    pub(crate) creds: super::creds::Credentials,
    /// Networks credential-less (v3) drones may call from.
    pub(crate) legacy_drones: Vec<ipnet::IpNet>,
    /// The names a browser's request may carry in `Host` (DNS rebinding).
    pub(crate) allowed_hosts: crate::host_names::AllowedHosts,
    /// Whether loopback requests' `X-Forwarded-For` is believed (`tls_proxy`).
    pub(crate) behind_proxy: bool,
    /// `max_drones`, the registration rate and `probe.networks`.
    pub(crate) drone_limits: super::gate::DroneLimits,
    /// New registrations per minute, as a token bucket.
    pub(crate) registrations: super::gate::RegistrationGate,
    /// Rate-limited log of refused drone requests.
    pub(crate) refusals: super::ratelog::RefusalLog,
    /// Why the store cannot write right now (`None`: it can). Set by the
    /// writer after every write attempt; health and metrics read it.
    pub(crate) store_fault: RwLock<Option<String>>,
    /// Why the store-id file cannot record how far the store came (`Store::id_file_error`),
    /// copied by the writer: the store writes, but an older copy of it put back would open.
    pub(crate) id_file_fault: RwLock<Option<String>>,
    /// Whether uploads can be stored (health is 503 while they cannot).
    pub(crate) staging_health: super::staging_health::StagingHealth,
    /// The dashboard's event stream and time series.
    pub(crate) dashboard: super::dashboard::kept::Dashboard,
    /// Uploaded build logs; `None` when the directory could not be opened.
    pub(crate) logs: Option<super::log_store::LogStore>,
    /// When each drone's reported environment last changed.
    pub(crate) env_pace: super::env_pace::EnvPace,
    /// An SQL explorer query is running: one at a time, so admins' queries
    /// (each up to its budget on a core) cannot take every core from drones.
    pub(crate) sql_running: AtomicBool,
}

impl Shared {
    /// Whether a credential-less drone may call from `ip`.
    pub(crate) fn legacy_allowed(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.legacy_drones.iter().any(|n| n.contains(&ip))
    }

    /// Queues a job for the writer and waits for its answer (30 s at most).
    pub(crate) fn submit(
        &self,
        plan: Plan,
        drone: Option<DroneName>,
        publish_now: bool,
    ) -> Result<Done, ApiError> {
        self.submit_within(plan, drone, publish_now, Duration::from_secs(30))
    }

    /// `submit`, waiting at most `wait` for the answer.
    fn submit_within(
        &self,
        plan: Plan,
        drone: Option<DroneName>,
        publish_now: bool,
        wait: Duration,
    ) -> Result<Done, ApiError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(ApiError::new(503, "the server is shutting down; retry"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.queued.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            plan,
            drone,
            publish_now,
            tx,
            queued_at: Instant::now(),
        };
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(503, "the writer has stopped; retry"));
        }
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ApiError::new(
                503,
                "the writer stopped before answering; the request may or may not have been \
                 recorded",
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ApiError::new(
                503,
                format!(
                    "the writer did not answer within {:.1} s; the request may or may not have been recorded",
                    wait.as_secs_f64()
                ),
            )),
        }
    }

    pub(crate) fn published(&self) -> Arc<Published> {
        match self.published.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A published view that holds every input committed before this call
    /// (asks the writer for one if needed), so a read right after a write
    /// sees it. Drones never pay for this: only readers trigger the copy.
    /// Bounded: after 2 s (a writer held by a long commit or a hung fsync)
    /// it gives the last copy instead, which may miss recent inputs.
    pub(crate) fn fresh(&self) -> Arc<Published> {
        // What this reader must see: everything committed before it came.
        let want = self.committed.load(Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            let p = self.published();
            // A dead writer makes no copy: the last one is all there is.
            let lost = self.metrics.lost_thread().is_some();
            if p.seq >= want || Instant::now() >= give_up || lost {
                return p;
            }
            // Copies are rationed, at most one forced copy per `publish_gap`,
            // so a storm of dashboard reads cannot turn the writer into a
            // copying machine; readers in the same window share the copy.
            let gap = publish_gap(self.publish_cost_us.load(Ordering::Relaxed));
            let force = match self.forced_publish.lock() {
                Ok(mut last) if last.elapsed() >= gap => {
                    *last = Instant::now();
                    true
                }
                Ok(last) => {
                    let wait = gap.saturating_sub(last.elapsed());
                    drop(last);
                    std::thread::sleep(wait.min(Duration::from_millis(10)));
                    false
                }
                Err(_) => true,
            };
            if force {
                // Best effort: if the writer cannot answer by the give-up
                // (a hung disk holds it in an fsync), serve what we have.
                let wait = give_up.saturating_duration_since(Instant::now());
                // Too close to the give-up for a copy to come back in time:
                // do not queue one nobody waits for.
                if wait < Duration::from_millis(10)
                    || self
                        .submit_within(Plan::Inputs(Vec::new()), None, true, wait)
                        .is_err()
                {
                    return self.published();
                }
            }
        }
    }

    /// The drone a v3 `id` (machine id) or a name refers to.
    pub(crate) fn resolve(&self, id: &str) -> Option<DroneName> {
        self.ids.read().ok()?.resolve(id)
    }

    /// See [`MachineIds::id_of_another`].
    pub(crate) fn name_is_machine_id_of(&self, name: &DroneName) -> Option<DroneName> {
        self.ids.read().ok()?.id_of_another(name)
    }

    /// See [`MachineIds::named_by`].
    pub(crate) fn machine_id_names_another(
        &self,
        machine_id: &str,
        name: &DroneName,
    ) -> Option<DroneName> {
        self.ids.read().ok()?.named_by(machine_id, name)
    }

    pub(crate) fn remember(&self, machine_id: &str, name: &DroneName, address: Option<&str>) {
        if let Ok(mut m) = self.ids.write() {
            m.bind(machine_id, name);
        }
        if let Some(a) = address {
            if let Ok(mut m) = self.addresses.write() {
                m.insert(name.clone(), a.to_string());
            }
        }
    }

    /// Keeps a reported CPU use; a heartbeat without one keeps the old value.
    pub(crate) fn note_cpu(&self, drone: &DroneName, percent: Option<f64>) {
        let Some(p) = percent.filter(|p| p.is_finite() && (0.0..=100.0).contains(p)) else {
            return;
        };
        if let Ok(mut m) = self.cpu_percent.write() {
            m.insert(drone.clone(), p);
        }
    }

    /// Keeps whether `drone` said it builds nothing (`current_task` null or
    /// empty); a task named, or none sent, forgets it.
    pub(crate) fn note_task(&self, drone: &DroneName, said: &Option<Option<String>>) {
        let idle = matches!(said, Some(t) if t.as_deref().is_none_or(|t| t.trim().is_empty()));
        if let Ok(mut s) = self.said_idle.write() {
            if idle {
                s.insert(drone.clone());
            } else {
                s.remove(drone);
            }
        }
    }

    /// What `drone` last said that the core keeps no record of.
    pub(crate) fn said_of(&self, drone: &DroneName) -> super::v3::Said {
        super::v3::Said {
            address: self.address_of(drone),
            cpu_percent: self
                .cpu_percent
                .read()
                .ok()
                .and_then(|m| m.get(drone).copied()),
            idle: self.said_idle.read().is_ok_and(|s| s.contains(drone)),
        }
    }

    pub(crate) fn address_of(&self, drone: &DroneName) -> Option<String> {
        self.addresses.read().ok()?.get(drone).cloned()
    }

    /// A read-only history connection from the pool (opened lazily).
    pub(crate) fn with_history<T>(
        &self,
        f: impl FnOnce(&History) -> Result<T, swarm_store::StoreError>,
    ) -> Result<T, ApiError> {
        let n = self.history.len().max(1);
        let start = self.history_next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let Some(slot) = self.history.get((start + i) % n) else {
                break;
            };
            if let Ok(mut guard) = slot.try_lock() {
                return run_history(&mut guard, &self.db_path, f);
            }
        }
        let slot = self
            .history
            .get(start % n)
            .ok_or_else(|| ApiError::internal("no history connection"))?;
        let mut guard = slot
            .lock()
            .map_err(|_| ApiError::internal("history connection poisoned"))?;
        run_history(&mut guard, &self.db_path, f)
    }
}

fn run_history<T>(
    slot: &mut Option<History>,
    path: &std::path::Path,
    f: impl FnOnce(&History) -> Result<T, swarm_store::StoreError>,
) -> Result<T, ApiError> {
    if slot.is_none() {
        *slot = Some(History::open(path).map_err(ApiError::internal)?);
    }
    let h = slot
        .as_ref()
        .ok_or_else(|| ApiError::internal("history connection missing"))?;
    f(h).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::{publish_gap, MachineIds};
    use std::time::Duration;
    use swarm_core::DroneName;

    fn name(s: &str) -> DroneName {
        DroneName::new(s).expect("a valid name")
    }

    #[test]
    fn a_name_registered_under_many_ids_keeps_only_its_last() {
        let mut ids = MachineIds::default();
        ids.bind("m-other", &name("drone-b"));
        for i in 0..10_000 {
            ids.bind(&format!("m-{i}"), &name("drone-a"));
        }
        assert_eq!(ids.len(), 2, "one id for drone-a, one for drone-b");
        assert_eq!(ids.resolve("m-9999"), Some(name("drone-a")));
        assert_eq!(ids.resolve("m-0"), None, "an old id no longer resolves");
        assert_eq!(ids.resolve("m-9998"), None);
        assert_eq!(ids.resolve("drone-a"), Some(name("drone-a")), "by name");
        assert_eq!(ids.resolve("m-other"), Some(name("drone-b")));
        assert_eq!(ids.resolve("drone-c"), None, "an unknown name");
    }

    #[test]
    fn an_id_taken_over_by_another_drone_leaves_the_first_known_by_name() {
        let mut ids = MachineIds::default();
        ids.bind("m-1", &name("drone-a"));
        ids.bind("m-1", &name("drone-b"));
        assert_eq!(ids.resolve("m-1"), Some(name("drone-b")));
        assert_eq!(ids.resolve("drone-a"), Some(name("drone-a")));
        // drone-a's next id does not remove drone-b's.
        ids.bind("m-2", &name("drone-a"));
        assert_eq!(ids.resolve("m-1"), Some(name("drone-b")));
        assert_eq!(ids.resolve("m-2"), Some(name("drone-a")));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn a_name_resolves_to_its_drone_even_when_another_drone_has_it_as_machine_id() {
        let mut ids = MachineIds::default();
        ids.know(&name("plain"));
        ids.bind("plain", &name("drone-enr"));
        assert_eq!(ids.resolve("plain"), Some(name("plain")));
        assert_eq!(
            ids.named_by("plain", &name("drone-enr")),
            Some(name("plain"))
        );
        assert_eq!(ids.named_by("plain", &name("plain")), None, "its own name");
        assert_eq!(ids.named_by("m-1", &name("drone-enr")), None);
        assert_eq!(ids.id_of_another(&name("plain")), Some(name("drone-enr")));
        assert_eq!(ids.id_of_another(&name("drone-enr")), None);
    }

    #[test]
    fn forced_copies_are_spaced_by_what_the_last_one_cost() {
        assert_eq!(publish_gap(0), Duration::from_millis(50), "the floor");
        assert_eq!(publish_gap(3_000), Duration::from_millis(50));
        assert_eq!(publish_gap(20_000), Duration::from_millis(200));
        assert_eq!(publish_gap(500_000), Duration::from_secs(1), "capped");
        assert_eq!(publish_gap(u64::MAX), Duration::from_secs(1), "no overflow");
    }
}
