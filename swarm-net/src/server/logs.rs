//! Build logs: the agent uploads each build's log (gzip, its tail when the
//! log is large) with its report, so an operator reads why a package failed
//! without a shell on the drone.
//!
//! One file per build (lease) under `logs/` next to the database,
//! `<lease>.log.gz`, written atomically. Retention is bounded by count and
//! by total bytes; the oldest builds (lowest leases) go first.
//!
//! - `PUT /api/v1/logs/<lease>?package=<atom>&node=<drone>` (drone token):
//!   the body is gzip; it must be the build of that drone and package.
//! - `GET /api/v1/logs/<lease>` (a read: open unless `read_token` is set):
//!   the log as text.
//! - `GET /api/v1/logs?package=<atom>` (a read): the package's builds
//!   with whether each has a log.

use super::http::{header, read_body, ApiError, Query, Reply};
use super::log_store::{gunzip_capped, LogStore, MAX_UPLOAD_BYTES};
use super::shared::Shared;
use serde_json::json;
use swarm_core::Atom;

fn lease_of(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| {
        ApiError::field(
            400,
            "lease",
            format!("`{text}` is not a build (lease) number"),
        )
    })
}

fn store(sh: &Shared) -> Result<&LogStore, ApiError> {
    sh.logs
        .as_ref()
        .ok_or_else(|| ApiError::new(503, "build logs are unavailable: the log directory could not be opened (see the server's log)"))
}

/// `PUT /api/v1/logs/<lease>?package=&node=`.
pub(crate) fn put(
    sh: &Shared,
    req: &mut super::front::Request<'_>,
    rest: &str,
    url: &str,
    caller: &super::identity::Caller,
) -> Result<Reply, ApiError> {
    let lease = lease_of(rest)?;
    // Another farm's lease of this number is another build.
    super::upload_lease::same_farm(sh, header(req, "X-Swarm-Farm"), "X-Swarm-Farm")?;
    let q = Query::parse(url);
    let package = q
        .get("package")
        .ok_or_else(|| ApiError::field(400, "package", "send ?package=<atom>"))?;
    let atom = Atom::parse(package)
        .map_err(|e| ApiError::field(400, "package", format!("bad atom {package:?}: {e}")))?;
    let node = q
        .get("node")
        .ok_or_else(|| ApiError::field(400, "node", "send ?node=<drone name>"))?
        .to_string();
    // An enrolled drone attaches logs only as itself.
    let acting = super::identity::act_as(sh, caller, Some(&node), "upload a build log")?;
    let logs = store(sh)?;
    // Only the drone that held the lease may attach a log to it: checked
    // before its body is read and decompressed (up to 8 MiB of work).
    let builds = sh.with_history(|h| h.builds(Some(atom.as_str()), None, 200))?;
    let Some(build) = builds.iter().find(|b| b.lease as u64 == lease) else {
        return Err(ApiError::new(
            404,
            format!("no build of {} with lease {lease}", atom.as_str()),
        ));
    };
    let holder = acting
        .or_else(|| sh.resolve(&node))
        .map(|n| n.as_str().to_string());
    if holder.as_deref() != Some(build.drone.as_str()) {
        return Err(ApiError::new(
            403,
            format!("lease {lease} was held by {}, not by {node}", build.drone),
        ));
    }
    let body = read_body(req, MAX_UPLOAD_BYTES)?;
    let text = gunzip_capped(&body).map_err(|e| ApiError::bad(format!("log body: {e}")))?;
    logs.put(lease, &body)
        .map_err(|e| ApiError::internal(format!("cannot store the log: {e}")))?;
    tracing::debug!(lease, package = %atom, bytes = body.len(), text = text.len(), "build log stored");
    Reply::ok(
        &json!({"status": "ok", "lease": lease, "bytes": body.len(), "text_bytes": text.len()}),
    )
}

/// `GET /api/v1/logs/<lease>`.
pub(crate) fn get(sh: &Shared, rest: &str) -> Result<Reply, ApiError> {
    let lease = lease_of(rest)?;
    match store(sh)?.text(lease)? {
        Some(text) => Ok(Reply::Stream(
            200,
            "text/plain; charset=utf-8",
            Box::new(text),
        )),
        None => Err(ApiError::new(
            404,
            format!("no log for build {lease}: the drone sent none, or retention removed it"),
        )),
    }
}

/// `GET /api/v1/logs?package=<atom>[&limit=]`: the package's builds, newest
/// first, each with `log_bytes` when a log is stored.
pub(crate) fn list(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let limit = q.number("limit", 50, 1000)? as u32;
    let package = super::read::package_param(&q)?;
    let logs = store(sh)?;
    let builds = sh.with_history(|h| h.builds(package.as_deref(), None, limit))?;
    let items: Vec<_> = builds
        .into_iter()
        .map(|b| {
            let mut v = serde_json::to_value(&b).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("log_bytes".into(), json!(logs.size(b.lease as u64)));
            }
            v
        })
        .collect();
    Reply::ok(&json!({ "builds": items }))
}
