//! The drone protocol's JSON bodies (V3-PROTOCOL.md), shared by the server,
//! swarm's own agent and the CLI so the two ends cannot drift apart.
//!
//! Every request field is optional on the wire: v3 drones send few of them and
//! the server says which one was missing. Fields marked "(swarm)" are swarm's
//! additions; a v3 drone never sends them and ignores them in replies.

use serde::{Deserialize, Deserializer, Serialize};
use swarm_core::{DroneHealth, DroneKind, FailureClass};

/// `POST /api/v1/register`: registration and heartbeat in one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterRequest {
    /// v3 identity, usually `/etc/machine-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// v4 identity: the name alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The display name v3 drones send next to `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address the prober and escalation reach the drone at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `drone` or `orchestrator` (the latter is ignored).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Agent version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the machine can do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Load figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// The atom being built. Absent: unchanged; `null`: nothing.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub current_task: Option<Option<String>>,
    /// (swarm) The epoch the agent believes it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// (swarm) The agent's self-assessed health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<DroneHealth>,
    /// (swarm) Lease ids held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<u64>>,
    /// (swarm) Lease ids whose build has started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<Vec<u64>>,
    /// (swarm) Disk use in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<f64>,
    /// (swarm) Machine kind, for escalation (bare metal is never rebooted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<DroneKind>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `capabilities` of a registration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// CPU cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// RAM in GB (v3 sends a number, sometimes fractional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_gb: Option<f64>,
    /// Whether the drone may be rebooted automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_reboot: Option<bool>,
    /// The Portage tree's `metadata/timestamp.chk`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portage_timestamp: Option<String>,
    /// (swarm) CPU architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// (swarm) The build environment as Portage resolves it (variable → value): what decides
    /// whether a binary built here works on the binhost's clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// Anything else a drone sends is kept out of the way, not refused.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `metrics` of a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// CPU use, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// RAM use, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_percent: Option<f64>,
    /// 1-minute load average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_1m: Option<f64>,
    /// Disk use, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<f64>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A lease as replies list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    /// Lease id: quote it in `started`, `complete` and `return`.
    pub lease: u64,
    /// The atom.
    pub package: String,
}

/// `stop_work` in a heartbeat reply: the drone's `current_task` is not its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopWork {
    /// The atom.
    pub package: String,
    /// v3 wording: "work reassigned to X", "work already completed elsewhere", "work reclaimed".
    pub reason: String,
    /// The new holder, if any.
    #[serde(default)]
    pub reassigned_to: Option<String>,
}

/// Reply to `POST /api/v1/register`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// `registered` (or `ignored` for an orchestrator).
    pub status: String,
    /// The control plane's address as the drone reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// The control plane's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_port: Option<u16>,
    /// Always `swarm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_name: Option<String>,
    /// For `ignored`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Atoms taken away: stop building them. Repeated until the drone stops reporting them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke: Vec<String>,
    /// The reported `current_task` is not this drone's work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_work: Option<StopWork>,
    /// The swarm or this drone is paused: take no new work.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// (swarm) The drone's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// (swarm) Every lease the drone holds, so an agent that restarted adopts them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<LeaseRef>,
    /// (swarm) Builds the server lets this drone run at once:
    /// `max(1, cores / cores_per_slot)`. An agent asking for more
    /// (`--slots`) says why it gets fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// (swarm) The server's `cores_per_slot` policy, for that explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores_per_slot: Option<u32>,
    /// (swarm) The largest binary package the server takes, in bytes. An
    /// agent reports a bigger build `upload_failed` at once instead of
    /// sending it: the server's 413 comes while the body is still being
    /// sent, which the sender sees as a broken connection and would retry
    /// for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
    /// (swarm) Which farm this is (its store's id, new after an accepted
    /// loss). An agent keeps it with each finished build it spools and
    /// delivers the build only to the same farm: a lease number means
    /// nothing to another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_id: Option<String>,
    /// (swarm) The server answers an upload's checks without its body
    /// (`X-Swarm-Check`). A refusal made before the body is read (the
    /// lease gone, another farm, another version) closes the connection
    /// under a big body still being sent, which the sender sees as an
    /// outage and would retry for ever; an agent asks first instead.
    #[serde(default, skip_serializing_if = "is_false")]
    pub upload_check: bool,
    /// (swarm) The environment this heartbeat reported is a change the server
    /// held back (a second within a minute): the farm still has the one before,
    /// so a build about to start would be recorded under it. An agent waits for
    /// the change to be taken (or hands the build back) instead of starting it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub env_held: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reply to `GET /api/v1/work` and `GET /api/v1/poll`.
///
/// Serialised by hand in one of the v3 shapes: `{"package":…}` or
/// `{"action":"sync_portage",…}`; both may carry `revoke`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkReply {
    /// The atom to build; `None`: nothing for you now.
    pub package: Option<String>,
    /// (swarm) Its lease.
    pub lease: Option<u64>,
    /// (swarm) The profile it is built for, when not the default one: whose binhost the
    /// binary goes to. Informational; a drone builds what its own make.conf says.
    pub profile: Option<String>,
    /// (swarm) Every lease the drone holds.
    pub packages: Vec<LeaseRef>,
    /// `sync_portage` when the drone's tree is older than the queue's.
    pub action: Option<String>,
    /// The Portage timestamp to sync to.
    pub expected_timestamp: Option<String>,
    /// Atoms taken away.
    pub revoke: Vec<String>,
    /// (swarm) Why there is no work, for humans.
    pub reason: Option<String>,
    /// Set on errors (unknown drone).
    pub error: Option<String>,
    /// (swarm) Which farm gave the lease (the register reply's `farm_id`):
    /// the agent keeps it with the build, from the reply that leased it.
    pub farm_id: Option<String>,
}

impl Serialize for WorkReply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(action) = &self.action {
            m.serialize_entry("action", action)?;
            if let Some(ts) = &self.expected_timestamp {
                m.serialize_entry("expected_timestamp", ts)?;
            }
        } else {
            m.serialize_entry("package", &self.package)?;
            if let Some(lease) = self.lease {
                m.serialize_entry("lease", &lease)?;
            }
            if let Some(profile) = &self.profile {
                m.serialize_entry("profile", profile)?;
            }
            if !self.packages.is_empty() {
                m.serialize_entry("packages", &self.packages)?;
            }
            if let Some(farm) = &self.farm_id {
                m.serialize_entry("farm_id", farm)?;
            }
        }
        if !self.revoke.is_empty() {
            m.serialize_entry("revoke", &self.revoke)?;
        }
        if let Some(reason) = &self.reason {
            m.serialize_entry("reason", reason)?;
        }
        if let Some(error) = &self.error {
            m.serialize_entry("error", error)?;
        }
        m.end()
    }
}

/// `POST /api/v1/complete` (v3) and `POST /api/v1/report` (v4, which says
/// `node`, `duration` and `error`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompleteRequest {
    /// v3 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// v4 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// v4 identity (alternative spelling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The atom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// `success`, `failed` (or any error text), `returned`, `upload_failed`, `masked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Wall time of the build (v3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_duration_s: Option<f64>,
    /// Wall time of the build (v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// What went wrong (v3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    /// What went wrong (v4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// (swarm) The lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// (swarm) The farm the build was made for (its register reply's
    /// `farm_id`): a server of another farm refuses the report (409, field
    /// `farm_id`), since the lease number means nothing there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_id: Option<String>,
    /// (swarm) The epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// (swarm) Whose fault a failure is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    /// (swarm) sha256 of the uploaded artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// (swarm) `category/pf` of every binary package the build uploaded, read from the packages:
    /// how a success for `>=cat/pkg-1`, `cat/pkg` or `=cat/pkg-1*` finds its binary in staging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<String>>,
}

/// Reply to a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompleteReply {
    /// Always `ok` for a 200.
    pub status: String,
    /// True when the report counted as a success.
    pub accepted: bool,
    /// The drone does not hold this package: stop.
    #[serde(skip_serializing_if = "is_false")]
    pub stale: bool,
    /// `stop_work` with `stale`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// v3 wording of why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The new holder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reassigned_to: Option<String>,
    /// (swarm) What the report was recorded as (`built`, `failed`, `returned`, `missing_binary`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
}

/// `POST /api/v1/started` and `POST /api/v1/return` (swarm, lease-based).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseRequest {
    /// v3 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// v4 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The atom (needed when there is no lease).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// For `return`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// (swarm) The farm that gave the lease (its `farm_id`): a server of
    /// another farm refuses the call (409), since its lease of that number
    /// is another one. v3 drones send none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub farm_id: Option<String>,
}

/// One package in `POST /api/v1/queue` (and in `swarm queue import` lists):
/// a bare atom as v3 clients send, or an object with dependencies.
///
/// Deserialized by hand rather than as an untagged enum: serde's untagged
/// enums replace every inner error with "data did not match any variant",
/// so a bad `priority` did not say which field or what bound. A string is an
/// atom; a map is a [`QueueSpec`], whose own errors come through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum QueueItem {
    /// `"=dev-libs/foo-1.0"`.
    Atom(String),
    /// `{"atom": …, "deps": […], "priority": N, "estimate_s": N}`.
    Spec(QueueSpec),
}

impl<'de> Deserialize<'de> for QueueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item;
        impl<'de> serde::de::Visitor<'de> for Item {
            type Value = QueueItem;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an atom string or an object with atom, deps, priority, estimate_s")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<QueueItem, E> {
                Ok(QueueItem::Atom(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<QueueItem, E> {
                Ok(QueueItem::Atom(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<QueueItem, A::Error> {
                QueueSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(QueueItem::Spec)
            }
        }
        d.deserialize_any(Item)
    }
}

/// A whole number within `lo..=hi`; any other number or type is refused
/// with the bounds named.
fn bounded_int<'de, D: Deserializer<'de>>(
    d: D,
    lo: i64,
    hi: i64,
    what: &str,
) -> Result<i64, D::Error> {
    struct Bounded<'a> {
        lo: i64,
        hi: i64,
        what: &'a str,
    }
    impl Bounded<'_> {
        fn check<E: serde::de::Error>(
            &self,
            v: i128,
            shown: serde::de::Unexpected<'_>,
        ) -> Result<i64, E> {
            if (self.lo as i128..=self.hi as i128).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(shown, self))
            }
        }
    }
    impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} from {} to {}", self.what, self.lo, self.hi)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            self.check(v.into(), serde::de::Unexpected::Signed(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            self.check(v.into(), serde::de::Unexpected::Unsigned(v))
        }
    }
    d.deserialize_any(Bounded { lo, hi, what })
}

fn priority_of<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    bounded_int(d, i32::MIN.into(), i32::MAX.into(), "a whole number").map(|v| v as i32)
}

fn estimate_of<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded_int(d, 0, i64::MAX, "a whole number of seconds").map(|v| Some(v as u64))
}

/// The object form of a [`QueueItem`]. Unknown fields are refused, so a
/// misspelt `deps` is an error rather than a package without dependencies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// The atom.
    pub atom: String,
    /// Atoms it depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<String>,
    /// Higher goes first.
    #[serde(default, deserialize_with = "priority_of")]
    pub priority: i32,
    /// Expected build time, seconds, until swarm has learned its own.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "estimate_of"
    )]
    pub estimate_s: Option<u64>,
    /// The profile it is built for (default: the request's `profile`, else the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// `POST /api/v1/queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    /// The packages.
    pub packages: Vec<QueueItem>,
    /// The Portage tree the list was computed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portage_timestamp: Option<String>,
    /// The queue generation this push belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Start a new generation first (`swarm fresh`): the old queue is dropped
    /// and this list queued in the same commit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh: bool,
    /// The profile of every package that names none (`swarm fresh --profile P`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Every 4xx/5xx body: what was wrong, and with which field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, for a human.
    pub error: String,
    /// The offending field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Reply to `PUT /api/v1/artifacts/…`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactReply {
    /// `stored`.
    pub status: String,
    /// Path under staging.
    pub path: String,
    /// Bytes stored.
    pub size: u64,
    /// sha256 of what was stored, hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_task_tells_absent_from_null() {
        let absent: RegisterRequest = serde_json::from_str(r#"{"id":"a"}"#).expect("parse");
        assert_eq!(absent.current_task, None);
        let null: RegisterRequest =
            serde_json::from_str(r#"{"id":"a","current_task":null}"#).expect("parse");
        assert_eq!(null.current_task, Some(None));
        let set: RegisterRequest =
            serde_json::from_str(r#"{"id":"a","current_task":"=a/b-1"}"#).expect("parse");
        assert_eq!(set.current_task, Some(Some("=a/b-1".into())));
    }

    #[test]
    fn the_v3_register_body_parses() {
        let body = r#"{"id":"drone-a-0001","name":"drone-alpha","ip":"10.0.0.5","type":"drone","version":"2.6.1",
 "capabilities":{"cores":8,"ram_gb":16,"auto_reboot":false,"portage_timestamp":"2026-02-16 00:00"},
 "metrics":{"cpu_percent":12.5,"ram_percent":40.1,"load_1m":0.5},
 "current_task":"=dev-libs/foo-1.0"}"#;
        let r: RegisterRequest = serde_json::from_str(body).expect("parse");
        assert_eq!(r.name.as_deref(), Some("drone-alpha"));
        let caps = r.capabilities.expect("caps");
        assert_eq!(caps.cores, Some(8));
        assert_eq!(caps.ram_gb, Some(16.0));
    }

    #[test]
    fn work_reply_has_the_v3_shapes() {
        let none = WorkReply::default();
        assert_eq!(
            serde_json::to_string(&none).expect("json"),
            r#"{"package":null}"#
        );
        let sync = WorkReply {
            action: Some("sync_portage".into()),
            expected_timestamp: Some("2026-02-17 00:00".into()),
            ..WorkReply::default()
        };
        assert_eq!(
            serde_json::to_string(&sync).expect("json"),
            r#"{"action":"sync_portage","expected_timestamp":"2026-02-17 00:00"}"#
        );
        let back: WorkReply =
            serde_json::from_str(&serde_json::to_string(&sync).expect("json")).expect("parse");
        assert_eq!(back, sync);
    }
}
