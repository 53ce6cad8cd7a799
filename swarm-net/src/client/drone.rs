//! The drone endpoints of V3-PROTOCOL.md as typed calls, for swarm's own agent.
//!
//! Each method is one HTTP call and nothing else: retries, backoff and what a
//! reply means are the agent's business, so a caller can tell "the server said
//! no" ([`ClientError::Server`]) from "the server was not reached"
//! ([`ClientError::is_transport`]) and retry only the latter.
//!
//! `/started` and `/return` answer in the report's shape (`status`, and
//! `stale` + `action` when the drone no longer holds the lease); their replies
//! are read leniently into a [`CompleteReply`] so that an answer with fewer or
//! other fields still counts as an answer.

use super::{Auth, Client, ClientError};
use crate::wire::{
    ArtifactReply, CompleteReply, CompleteRequest, LeaseRequest, RegisterReply, RegisterRequest,
    WorkReply,
};

impl Client {
    /// `POST /api/v1/register`: registration and heartbeat in one call.
    pub fn register(&self, req: &RegisterRequest) -> Result<RegisterReply, ClientError> {
        self.post_json("/api/v1/register", req, Auth::Drone)
    }

    /// `GET /api/v1/work?id=…&free_slots=N`: asks for up to `free_slots`
    /// more packages (`None`: v3 style, the server decides). `id` is the
    /// drone's id or name; the reply lists every lease the drone holds.
    pub fn work(&self, id: &str, free_slots: Option<u32>) -> Result<WorkReply, ClientError> {
        let mut path = format!("/api/v1/work?id={}", query_escape(id));
        if let Some(n) = free_slots {
            path.push_str(&format!("&free_slots={n}"));
        }
        self.get_json(&path, Auth::Drone)
    }

    /// `POST /api/v1/started`: the build of a leased package has begun.
    pub fn started(&self, req: &LeaseRequest) -> Result<CompleteReply, ClientError> {
        let value: serde_json::Value = self.post_json("/api/v1/started", req, Auth::Drone)?;
        Ok(lenient(value))
    }

    /// `POST /api/v1/complete`: the outcome of a leased build. A 200 whose JSON does not say
    /// `"status":"ok"` (as swarm and v3 always do) is no answer to it: `{}` or a gateway's own
    /// JSON read as answered, and the agent dropped the spooled build (h39, a review); it is a
    /// [`ClientError::Decode`], worth retrying.
    pub fn complete(&self, req: &CompleteRequest) -> Result<CompleteReply, ClientError> {
        let reply: CompleteReply = self.post_json("/api/v1/complete", req, Auth::Drone)?;
        if reply.status != "ok" {
            return Err(ClientError::Decode {
                url: self.url("/api/v1/complete"),
                cause: format!(
                    "a report's answer says \"status\":\"ok\"; this one says {:?}",
                    reply.status
                ),
            });
        }
        Ok(reply)
    }

    /// `POST /api/v1/return`: hands a lease back without penalty (shutdown,
    /// Critical health, a lease the agent cannot run). Named `give_back`
    /// because `return` is a keyword.
    pub fn give_back(&self, req: &LeaseRequest) -> Result<CompleteReply, ClientError> {
        let value: serde_json::Value = self.post_json("/api/v1/return", req, Auth::Drone)?;
        Ok(lenient(value))
    }

    /// `POST /api/v1/deregister`: this drone is stopping cleanly; the server
    /// shows it as stopped instead of waiting for it to time out.
    pub fn deregister(&self, req: &LeaseRequest) -> Result<serde_json::Value, ClientError> {
        self.post_json("/api/v1/deregister", req, Auth::Drone)
    }

    /// `PUT /api/v1/artifacts/<category>/<file_name>` with the raw bytes of a
    /// binary package and its sha256 in `X-Sha256`; the server checks the
    /// digest and answers with the one it computed, which the caller compares.
    ///
    /// `body` is a reader rather than a path so that a local read error stays
    /// an `io::Error` of the caller, not a made-up [`ClientError`].
    pub fn put_artifact(
        &self,
        category: &str,
        file_name: &str,
        body: impl std::io::Read,
        sha256: &str,
    ) -> Result<ArtifactReply, ClientError> {
        self.put_artifact_for_lease(category, file_name, body, sha256, &Binding::default())
    }

    /// [`Client::put_artifact`] bound to the lease it was built under, the
    /// drone's epoch and the farm that gave the lease (`X-Swarm-Lease`,
    /// `X-Swarm-Epoch`, `X-Swarm-Farm`): the server accepts it only for the
    /// caller's live lease of that package, and only if it is that farm.
    pub fn put_artifact_for_lease(
        &self,
        category: &str,
        file_name: &str,
        body: impl std::io::Read,
        sha256: &str,
        bound: &Binding<'_>,
    ) -> Result<ArtifactReply, ClientError> {
        let (path, headers) = artifact_call(category, file_name, sha256, bound);
        self.put_artifact_call(&path, &headers, body)
    }

    /// Asks whether the server would take [`Client::put_artifact_for_lease`]'s
    /// upload of `size` bytes, without sending them (`X-Swarm-Check`; only a
    /// server whose register reply says `upload_check` knows it). The
    /// server's refusals made from the headers alone come back as its
    /// answer, where under a big body they came as a broken connection.
    pub fn check_artifact_for_lease(
        &self,
        category: &str,
        file_name: &str,
        size: u64,
        sha256: &str,
        bound: &Binding<'_>,
    ) -> Result<(), ClientError> {
        let (path, mut headers) = artifact_call(category, file_name, sha256, bound);
        headers.push(("X-Swarm-Check", "1".into()));
        headers.push(("X-Swarm-Size", size.to_string()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _: serde_json::Value = self.put_small(&path, &headers, &[], Auth::Drone)?;
        Ok(())
    }

    /// A drone's PUT of [`artifact_call`]'s path and headers.
    fn put_artifact_call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&'static str, String)],
        body: impl std::io::Read,
    ) -> Result<T, ClientError> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.put_reader(path, &headers, body, Auth::Drone)
    }
}

/// The path and headers of an artifact upload bound to a lease.
fn artifact_call(
    category: &str,
    file_name: &str,
    sha256: &str,
    bound: &Binding<'_>,
) -> (String, Vec<(&'static str, String)>) {
    let Binding { lease, epoch, farm } = *bound;
    let path = format!(
        "/api/v1/artifacts/{}/{}",
        path_escape(category),
        path_escape(file_name)
    );
    let mut headers = vec![
        ("X-Sha256", sha256.to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
    ];
    if let Some(l) = lease {
        headers.push(("X-Swarm-Lease", l.to_string()));
    }
    if let Some(e) = epoch {
        headers.push(("X-Swarm-Epoch", e.to_string()));
    }
    if let Some(f) = farm {
        headers.push(("X-Swarm-Farm", f.to_string()));
    }
    (path, headers)
}

/// A reply read as a [`CompleteReply`] if it has that shape, else only its `status`.
fn lenient(value: serde_json::Value) -> CompleteReply {
    let status = value
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or("ok")
        .to_string();
    serde_json::from_value(value).unwrap_or(CompleteReply {
        status,
        ..CompleteReply::default()
    })
}

/// Percent-encodes everything but the characters drone names and atoms use.
fn escape(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_escape(text: &str) -> String {
    escape(text, "-._~")
}

fn path_escape(text: &str) -> String {
    escape(text, "-._~+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_escape("drone-a_1.x"), "drone-a_1.x");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn artifact_paths_keep_portage_characters_and_escape_the_rest() {
        assert_eq!(path_escape("gtk+-3.24.gpkg.tar"), "gtk+-3.24.gpkg.tar");
        assert_eq!(path_escape("../x"), "..%2Fx");
    }

    #[test]
    fn a_minimal_or_odd_reply_still_counts_as_an_answer() {
        let r = lenient(serde_json::json!({"status": "ok"}));
        assert_eq!(r.status, "ok");
        assert!(!r.stale);
        let r = lenient(serde_json::json!({"status": "ok", "stale": true, "action": "stop_work"}));
        assert!(r.stale);
        let r = lenient(serde_json::json!({"status": "done", "accepted": "yes"}));
        assert_eq!(r.status, "done");
    }
}

/// What an upload is bound to (each `None`: not said).
#[derive(Clone, Copy, Debug, Default)]
pub struct Binding<'a> {
    /// The lease the build was made under.
    pub lease: Option<u64>,
    /// The drone's epoch, as last heard.
    pub epoch: Option<u64>,
    /// The farm that gave the lease (its `farm_id`).
    pub farm: Option<&'a str>,
}
