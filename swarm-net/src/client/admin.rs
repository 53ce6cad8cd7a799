//! The operator side of the API: read endpoints and admin actions, as typed
//! calls on [`Client`].
//!
//! Every read returns an [`Answer`]: the server's JSON exactly as sent (what
//! `--json` prints, so nothing the server adds is lost) next to a typed body
//! holding only the fields the CLI renders. The typed bodies are deliberately
//! lenient (missing fields take defaults, unknown ones are ignored), so a newer
//! server with extra fields, or an older one missing a few, still renders
//! instead of failing the whole command.

use super::{Auth, Client, ClientError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use swarm_core::PackageSpec;
/// The history rows the server sends are the store's own, decoded leniently.
pub use swarm_store::{BuildRow as Build, EventRow as EventRecord, PackageStats};

/// A read answer in both forms, from one request.
#[derive(Clone, Debug)]
pub struct Answer<T> {
    /// The JSON as the server sent it.
    pub raw: Value,
    /// The fields the CLI relies on.
    pub body: T,
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Health {
    /// `ok` when serving.
    pub status: String,
    /// Server version.
    pub version: String,
    /// Last input sequence number applied.
    pub seq: u64,
    /// Seconds since start.
    pub uptime_s: u64,
}

/// Package counts by state (swarm-core's `Counts`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct QueueCounts {
    /// All packages.
    pub total: u32,
    /// Waiting for assignment.
    pub queued: u32,
    /// Queued and assignable now.
    pub ready: u32,
    /// Queued but backing off after a failure.
    pub backoff: u32,
    /// Leased.
    pub assigned: u32,
    /// Leased and started.
    pub building: u32,
    /// Done.
    pub built: u32,
    /// Blocked.
    pub blocked: u32,
}

/// Drones by liveness.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct DroneCounts {
    /// Heartbeat fresh.
    pub online: u32,
    /// Heartbeat late.
    pub suspect: u32,
    /// Gone.
    pub offline: u32,
    /// Stopped cleanly (the agent said goodbye).
    pub stopped: u32,
}

/// The disruption brake (swarm-core's `BrakeView`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Brake {
    /// Whether it holds work back.
    pub engaged: bool,
    /// Why it engaged.
    pub reason: String,
    /// Atoms held back.
    pub held: Vec<String>,
    /// Drones set aside for its cause (absent from older servers: none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<String>,
    /// How often each of them gets a trial build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_every_ms: Option<u64>,
}

/// `GET /api/v1/status`: v3's counters next to swarm's own.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Status {
    /// v3: packages still to build.
    pub needed: u64,
    /// v3: packages handed to drones.
    pub delegated: u64,
    /// v3: packages built.
    pub received: u64,
    /// v3: packages blocked.
    pub blocked: u64,
    /// v3: failed builds.
    pub failed: u64,
    /// v3: all packages.
    pub total: u64,
    /// v3: registered drones.
    pub nodes: u64,
    /// v3: drones online.
    pub nodes_online: u64,
    /// Whether the whole swarm is paused.
    pub paused: bool,
    /// Package counts by state.
    pub counts: QueueCounts,
    /// Drones by liveness. (`drones` is v3's: each drone by name.)
    pub drone_counts: DroneCounts,
    /// The brake.
    pub brake: Brake,
    /// Queue generation.
    pub generation: u64,
    /// The Portage snapshot drones must be on, if one is set.
    pub expected_portage: Option<String>,
    /// Last input applied.
    pub seq: u64,
    /// The server's clock; relative times are computed against it so a skewed
    /// operator clock does not distort them.
    pub now_ms: u64,
}

/// One lease as the read endpoints list it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Lease {
    /// Lease id.
    pub lease: u64,
    /// Atom.
    pub package: String,
    /// Holder.
    pub drone: String,
    /// Issued, ms since the epoch.
    pub issued_at: u64,
    /// Build started, ms since the epoch.
    pub started_at: Option<u64>,
}

/// One drone (swarm-core's `DroneView` plus the address it registered from).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Node {
    /// Name.
    pub name: String,
    /// `online`, `suspect` or `offline`.
    pub status: String,
    /// Self-assessed health.
    #[serde(deserialize_with = "text")]
    pub health: String,
    /// Machine kind.
    #[serde(deserialize_with = "text")]
    pub kind: String,
    /// Cores.
    pub cores: u32,
    /// RAM, MiB.
    pub ram_mb: u64,
    /// Build slots.
    pub slots: u32,
    /// Last heartbeat, ms since the epoch.
    pub last_heartbeat: u64,
    /// Paused by an operator.
    pub paused: bool,
    /// Drained by an operator.
    pub drained: bool,
    /// Grounded until then, ms since the epoch.
    pub grounded_until: Option<u64>,
    /// Consecutive infrastructure failures.
    pub consecutive_failures: u32,
    /// Escalation steps taken.
    pub escalation_steps: u32,
    /// Leases held.
    pub leases: Vec<Lease>,
    /// Successful builds.
    pub builds_ok: u64,
    /// Failed builds.
    pub builds_failed: u64,
    /// Memory use, percent.
    pub mem_percent: Option<u32>,
    /// Disk use, percent.
    pub disk_percent: Option<u32>,
    /// Load average × 100.
    pub load_centi: Option<u32>,
    /// Portage snapshot.
    pub portage_snapshot: Option<String>,
    /// Agent version.
    pub version: Option<String>,
    /// Why it gets no work, if it gets none.
    pub no_work: Option<String>,
    /// Set aside by the brake (absent from older servers: false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub set_aside: bool,
    /// Where it registered from.
    pub address: Option<String>,
    /// How its build environment differs from the closest profile's when no profile admits
    /// it (empty: some profile does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_differences: Vec<swarm_core::EnvDiff>,
    /// The profiles whose packages it may build (absent from servers before profiles).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<String>,
    /// When it serves no profile: the closest one, which `env_differences` is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_profile: Option<String>,
}

/// `GET /api/v1/nodes?all=true`: a JSON array (v3's shape).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Nodes {
    /// Every registered drone.
    pub nodes: Vec<Node>,
}

/// A package's state (swarm-core's `PackageStatus`, tagged by `state`), flat
/// so a state this client does not know still renders by name.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct PackageState {
    /// `queued`, `assigned`, `built` or `blocked`.
    pub state: String,
    /// Queued: backing off until then.
    pub retry_at: Option<u64>,
    /// Assigned: lease id.
    pub lease: Option<u64>,
    /// Assigned: holder.
    pub drone: Option<String>,
    /// Assigned: whether the build started.
    pub started: bool,
    /// Built: when.
    pub at: Option<u64>,
    /// Blocked: why (swarm-core's `BlockReason` as JSON).
    pub reason: Option<Value>,
    /// Blocked: retried automatically then.
    pub auto_unblock_at: Option<u64>,
}

/// One package (swarm-core's `PackageView`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Package {
    /// Atom.
    pub atom: String,
    /// State.
    pub status: PackageState,
    /// Priority.
    pub priority: i32,
    /// Failed attempts.
    pub attempts: u32,
    /// Remaining critical path, ms.
    pub critical_path_ms: u64,
    /// Estimated build time, ms (what the monitor's ETA is computed from).
    pub estimate_ms: u64,
    /// Queue generation.
    pub generation: u64,
    /// Unbuilt dependencies in the queue.
    pub waiting_for: u32,
    /// Last failure detail.
    pub last_error: Option<String>,
    /// Its profile; `None` is the default profile.
    pub profile: Option<String>,
}

/// Which packages `GET /api/v1/queue` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueState {
    /// Waiting.
    Queued,
    /// Leased.
    Assigned,
    /// Done.
    Built,
    /// Blocked.
    Blocked,
}

impl QueueState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Assigned => "assigned",
            QueueState::Built => "built",
            QueueState::Blocked => "blocked",
        }
    }
}

/// `GET /api/v1/queue`: one page.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct QueuePage {
    /// Matching packages in all pages.
    pub total: u64,
    /// First item's position.
    pub offset: u64,
    /// Page size asked for.
    pub limit: u64,
    /// This page.
    pub items: Vec<Package>,
}

/// Filters of `GET /api/v1/history`.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// At most this many builds.
    pub limit: Option<u32>,
    /// Only this package.
    pub package: Option<String>,
    /// Only this drone.
    pub drone: Option<String>,
}

/// `GET /api/v1/history`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Builds {
    /// Newest first.
    pub builds: Vec<Build>,
}

/// `GET /api/v1/events` and `/events/history`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Events {
    /// Oldest first from `/events`, newest first from `/events/history`.
    pub events: Vec<EventRecord>,
    /// Pass as `after` to continue the feed.
    pub next: Option<i64>,
}

/// Filters of `GET /api/v1/events/history`.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// At most this many.
    pub limit: Option<u32>,
    /// Only this drone.
    pub drone: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

/// `GET /api/v1/build-stats/by-package`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BuildStats {
    /// One row per package.
    pub packages: Vec<PackageStats>,
}

/// `GET /api/v1/explain`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Explain {
    /// The atom, normalised by the server.
    pub package: String,
    /// The core's explanation, for humans.
    pub explain: String,
    /// Its queue entry, if it has one; `None` also when the atom is queued in several profiles
    /// and the request named none (then `explain` gives each profile's package a line).
    pub status: Option<Package>,
    /// The profiles the atom is queued in (`default` for the default one).
    pub profiles: Vec<String>,
}

/// `POST /api/v1/queue`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnqueueRequest {
    /// Packages with their dependencies.
    pub packages: Vec<PackageSpec>,
    /// Portage snapshot the list was computed on (drones on another one sync first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portage_timestamp: Option<String>,
    /// Start a new queue generation with this list (`swarm fresh`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
    /// The profile of every package that names none; with `fresh`, only this profile's list
    /// is replaced (`swarm fresh --profile P`) and the generation stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Reply to `POST /api/v1/queue`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Enqueued {
    /// `ok`.
    pub status: String,
    /// How many were new to the queue.
    pub queued: u64,
    /// How many were there already.
    pub already: u64,
    /// With `fresh`: what starting the new generation did.
    pub fresh: Option<String>,
    /// With `fresh`: the new generation.
    pub generation: Option<u64>,
    /// With `fresh`: the Portage snapshot drones must now be on.
    pub portage_snapshot: Option<String>,
}

/// `POST /api/v1/control`: `{"action":..,"package"|"drone":..}`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ControlRequest {
    /// The action's name (`pause`, `unblock`, ...).
    pub action: String,
    /// The package it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The drone it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drone: Option<String>,
    /// The package's profile, when its atom is queued in several (`default`: the default one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Reply to a control action.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ControlReply {
    /// `ok`.
    pub status: String,
    /// The action, as the server understood it.
    pub action: String,
    /// What it did, as core events.
    pub events: Vec<Value>,
}

/// The per-drone actions of `POST /api/v1/nodes/<name>/<action>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAction {
    /// Take no new work.
    Pause,
    /// Undo pause.
    Resume,
    /// Finish current work, take nothing new.
    Drain,
    /// Undo drain.
    Undrain,
    /// Put the escalation ladder back at the bottom.
    ResetEscalation,
    /// Retire the drone: its work is requeued, its history stays.
    Remove,
}

impl NodeAction {
    /// The path segment the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAction::Pause => "pause",
            NodeAction::Resume => "resume",
            NodeAction::Drain => "drain",
            NodeAction::Undrain => "undrain",
            NodeAction::ResetEscalation => "reset-escalation",
            NodeAction::Remove => "remove",
        }
    }
}

/// A column of an SQL answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SqlColumn {
    /// Name.
    pub name: String,
    /// Declared type, if the column comes from a table.
    pub decl_type: Option<String>,
    /// Storage class seen in the rows.
    pub observed_type: Option<String>,
}

/// `GET /api/v1/sql/query` (swarm-store's `QueryResult`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SqlAnswer {
    /// Columns, in order.
    pub columns: Vec<SqlColumn>,
    /// Rows of JSON values.
    pub rows: Vec<Vec<Value>>,
    /// More rows matched than the server returns.
    pub truncated: bool,
    /// Server time spent.
    pub elapsed_ms: u64,
}

impl Client {
    fn read<T: DeserializeOwned>(&self, path: &str, auth: Auth) -> Result<Answer<T>, ClientError> {
        let raw: Value = self.get_json(path, auth)?;
        let body = serde_json::from_value(raw.clone()).map_err(|e| ClientError::Decode {
            url: self.url(path),
            cause: e.to_string(),
        })?;
        Ok(Answer { raw, body })
    }

    /// `GET /api/v1/health`.
    pub fn health(&self) -> Result<Answer<Health>, ClientError> {
        self.read("/api/v1/health", Auth::None)
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Result<Answer<Status>, ClientError> {
        self.read("/api/v1/status", Auth::None)
    }

    /// `GET /api/v1/nodes?all=true`: every registered drone, offline ones too.
    pub fn nodes(&self) -> Result<Answer<Nodes>, ClientError> {
        self.read("/api/v1/nodes?all=true", Auth::None)
    }

    /// `GET /api/v1/queue`, one page.
    pub fn queue(
        &self,
        state: Option<QueueState>,
        offset: u64,
        limit: u64,
    ) -> Result<Answer<QueuePage>, ClientError> {
        let mut q = Query::default();
        q.push("state", state.map(QueueState::as_str));
        q.push("offset", Some(offset));
        q.push("limit", Some(limit));
        self.read(&q.path("/api/v1/queue"), Auth::None)
    }

    /// `GET /api/v1/history`: build attempts, newest first.
    pub fn history(&self, filter: &HistoryQuery) -> Result<Answer<Builds>, ClientError> {
        let mut q = Query::default();
        q.push("limit", filter.limit);
        q.push("package", filter.package.as_deref());
        q.push("drone", filter.drone.as_deref());
        self.read(&q.path("/api/v1/history"), Auth::None)
    }

    /// `GET /api/v1/events`: the feed after an id, oldest first.
    pub fn events_after(
        &self,
        after: i64,
        limit: Option<u32>,
    ) -> Result<Answer<Events>, ClientError> {
        let mut q = Query::default();
        q.push("after", Some(after));
        q.push("limit", limit);
        self.read(&q.path("/api/v1/events"), Auth::None)
    }

    /// `GET /api/v1/events/history`: the newest events, newest first in `body` (the server lists
    /// them oldest first, as v3 did; `raw` keeps its order).
    pub fn events_history(&self, filter: &EventQuery) -> Result<Answer<Events>, ClientError> {
        let mut q = Query::default();
        q.push("limit", filter.limit);
        q.push("drone", filter.drone.as_deref());
        q.push("kind", filter.kind.as_deref());
        let mut answer: Answer<Events> =
            self.read(&q.path("/api/v1/events/history"), Auth::None)?;
        answer.body.events.reverse();
        Ok(answer)
    }

    /// `GET /api/v1/build-stats/by-package`.
    pub fn build_stats(&self) -> Result<Answer<BuildStats>, ClientError> {
        self.read("/api/v1/build-stats/by-package", Auth::None)
    }

    /// `GET /api/v1/explain?package=`.
    pub fn explain(&self, atom: &str) -> Result<Answer<Explain>, ClientError> {
        self.explain_in(atom, None)
    }

    /// `GET /api/v1/explain?package=&profile=`: the atom's package in one profile (`None`: its
    /// only one; an atom queued in several profiles is explained as needing one named).
    pub fn explain_in(
        &self,
        atom: &str,
        profile: Option<&str>,
    ) -> Result<Answer<Explain>, ClientError> {
        let mut q = Query::default();
        q.push("package", Some(atom));
        q.push("profile", profile);
        self.read(&q.path("/api/v1/explain"), Auth::None)
    }

    /// `GET /metrics`, Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.get_text("/metrics", Auth::None)
    }

    /// `POST /api/v1/queue` (admin).
    pub fn enqueue(&self, request: &EnqueueRequest) -> Result<Answer<Enqueued>, ClientError> {
        self.write("/api/v1/queue", request)
    }

    /// `POST /api/v1/control` (admin).
    pub fn control(&self, request: &ControlRequest) -> Result<Answer<ControlReply>, ClientError> {
        self.write("/api/v1/control", request)
    }

    /// `POST /api/v1/control` (admin) with a body of fields `ControlRequest` does not name
    /// (a profile's `env`, `world`, `force`, `reason`).
    pub fn control_json(&self, body: &Value) -> Result<Answer<ControlReply>, ClientError> {
        self.write("/api/v1/control", body)
    }

    /// `GET /api/v1/profiles`: every profile, its environment, world set and drones, as the
    /// server shapes it.
    pub fn profiles(&self) -> Result<Answer<Value>, ClientError> {
        self.read("/api/v1/profiles", Auth::None)
    }

    /// `POST /api/v1/nodes/<name>/<action>` (admin).
    pub fn node_action(
        &self,
        name: &str,
        action: NodeAction,
    ) -> Result<Answer<ControlReply>, ClientError> {
        let path = format!("/api/v1/nodes/{}/{}", encode(name), action.as_str());
        self.write(&path, &serde_json::json!({}))
    }

    /// `GET /api/v1/sql/query` (admin): one read-only statement, aborted
    /// after `timeout_ms` (the server refuses more than its own budget).
    pub fn sql_query(&self, sql: &str, timeout_ms: u64) -> Result<Answer<SqlAnswer>, ClientError> {
        let mut q = Query::default();
        q.push("q", Some(sql));
        q.push("timeout_ms", Some(timeout_ms));
        self.read(&q.path("/api/v1/sql/query"), Auth::Admin)
    }

    /// `GET /api/v1/sql/tables` (admin), as the server shapes it.
    pub fn sql_tables(&self) -> Result<Value, ClientError> {
        self.get_json("/api/v1/sql/tables", Auth::Admin)
    }

    /// `GET /api/v1/sql/schema` (admin), as the server shapes it.
    pub fn sql_schema(&self) -> Result<Value, ClientError> {
        self.get_json("/api/v1/sql/schema", Auth::Admin)
    }

    fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Answer<T>, ClientError> {
        let raw: Value = self.post_json(path, body, Auth::Admin)?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| ClientError::Decode {
            url: self.url(path),
            cause: e.to_string(),
        })?;
        Ok(Answer { raw, body: typed })
    }
}

/// A query string built from optional parameters; absent ones are left out
/// so the server applies its own defaults.
#[derive(Default)]
struct Query {
    parts: Vec<String>,
}

impl Query {
    fn push<V: ToString>(&mut self, key: &str, value: Option<V>) {
        if let Some(v) = value {
            self.parts.push(format!("{key}={}", encode(&v.to_string())));
        }
    }

    fn path(&self, base: &str) -> String {
        if self.parts.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", self.parts.join("&"))
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so atoms
/// (`=`, `>`, `:`, `/`) and SQL survive a query string or a path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Accepts a string, or any other JSON as its text, so a field whose type the
/// server later refines (an enum, an object) still renders.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_atoms_and_sql_intact_in_a_query_string() {
        assert_eq!(
            encode(">=dev-libs/foo-1.0:2"),
            "%3E%3Ddev-libs%2Ffoo-1.0%3A2"
        );
        assert_eq!(encode("SELECT 1 & 'x'"), "SELECT%201%20%26%20%27x%27");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn absent_parameters_are_left_to_the_server() {
        let mut q = Query::default();
        q.push("limit", None::<u32>);
        assert_eq!(q.path("/api/v1/history"), "/api/v1/history");
        q.push("limit", Some(5));
        q.push("drone", Some("a b"));
        assert_eq!(
            q.path("/api/v1/history"),
            "/api/v1/history?limit=5&drone=a%20b"
        );
    }

    #[test]
    fn a_package_view_as_the_core_serialises_it_is_read() {
        let json = serde_json::json!({
            "atom": "=dev-libs/foo-1.0",
            "status": {"state": "blocked", "reason": {"why": "masked"}, "auto_unblock_at": null},
            "priority": 3, "attempts": 2, "critical_path_ms": 10, "estimate_ms": 60000,
            "generation": 1, "waiting_for": 0, "last_error": "boom", "future_field": true
        });
        let p: Package = serde_json::from_value(json).expect("lenient");
        assert_eq!(p.status.state, "blocked");
        assert_eq!(p.estimate_ms, 60_000);
        assert_eq!(p.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn a_field_of_another_type_still_renders_as_text() {
        let b: Build = serde_json::from_value(serde_json::json!({
            "id": 1, "outcome": {"failed": "build"}, "class": null
        }))
        .expect("lenient");
        assert_eq!(b.outcome.as_deref(), Some(r#"{"failed":"build"}"#));
        assert_eq!(b.class, None);
    }

    #[test]
    fn a_control_request_names_only_its_target() {
        let r = ControlRequest {
            action: "unblock".into(),
            package: Some("=a/b-1".into()),
            drone: None,
            profile: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"action":"unblock","package":"=a/b-1"}"#
        );
    }
}
