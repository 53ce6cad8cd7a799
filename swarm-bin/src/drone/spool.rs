//! The spool: a finished build is written to disk before it is delivered,
//! so neither a control plane that answers with errors for a while nor an
//! agent restart drops it.
//!
//! `<work_dir>/spool/<lease>_<category>_<pf>.json` holds the report (and
//! the artifact's name and sha256); `<same>.artifact` a hard link to (or a
//! copy of) the binary package, so a later build of the same package cannot
//! change what is uploaded. Delivery uploads the artifact, then sends the
//! report, each retried with backoff until the server answers; the entry is
//! removed once the report is answered (accepted, a duplicate, or stale).
//!
//! Retrying stops without removing the entry only when the agent leaves; the
//! next agent delivers what is left before it registers (a registration
//! would reclaim the leases the reports name). `upload_failed` is reported
//! only for failures on the drone itself: an artifact it cannot read, or one
//! the server refuses outright (4xx: wrong checksum, too large).

use super::agent::Agent;
use super::backoff::Backoff;
use super::shutdown::Phase;
use super::state::{JobId, Stop};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_core::FailureClass;
use swarm_net::client::ClientError;
use swarm_net::wire::CompleteRequest;

/// Longest wait between two delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A finished build waiting for the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The report, as it will be sent (its epoch is refreshed at each send
    /// while the agent is registered).
    pub(crate) report: CompleteRequest,
    /// The artifact to upload first, if any.
    pub(crate) artifact: Option<SpooledArtifact>,
}

/// The binary package of a spooled success.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SpooledArtifact {
    pub(crate) category: String,
    /// `<pf>.gpkg.tar` or `<pf>.tbz2`.
    pub(crate) name: String,
    pub(crate) sha256: String,
}

/// The spool directory of an agent.
pub(crate) fn dir(work_dir: &Path) -> PathBuf {
    work_dir.join("spool")
}

fn artifact_path(entry: &Path) -> PathBuf {
    entry.with_extension("artifact")
}

/// Writes an entry (and links or copies the artifact next to it) durably:
/// the artifact first, then the report via a temp file and a rename, both
/// fsynced. Returns the entry's path.
pub(crate) fn put(
    work_dir: &Path,
    entry: &Entry,
    artifact: Option<&Path>,
) -> std::io::Result<PathBuf> {
    let dir = dir(work_dir);
    std::fs::create_dir_all(&dir)?;
    let package = entry.report.package.as_deref().unwrap_or("unknown");
    let lease = entry
        .report
        .lease
        .map_or_else(|| "nolease".to_string(), |l| l.to_string());
    let stem: String = format!("{lease}_{package}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{stem}.json"));
    if let Some(src) = artifact {
        let dst = artifact_path(&path);
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(src, &dst).is_err() {
            let tmp = dst.with_extension("artifact.tmp");
            std::fs::copy(src, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &dst)?;
        }
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Every spooled entry, oldest name first; unreadable ones are logged and
/// set aside (renamed `.bad`), never retried forever.
pub(crate) fn list(work_dir: &Path) -> Vec<(PathBuf, Entry)> {
    let Ok(read) = std::fs::read_dir(dir(work_dir)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Entry>(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => out.push((p, e)),
            Err(why) => {
                tracing::error!(file = %p.display(), why, "unreadable spool entry set aside as .bad");
                let _ = std::fs::rename(&p, p.with_extension("bad"));
            }
        }
    }
    out
}

fn remove(entry: &Path) {
    let _ = std::fs::remove_file(artifact_path(entry));
    let _ = std::fs::remove_file(entry);
}

/// Who delivers: a job's own thread (stops when its job is revoked), or the
/// start-up pass (before registration).
#[derive(Clone, Copy, Debug)]
enum By {
    Job(JobId),
    Startup,
}

/// What became of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Delivered {
    /// The server answered the report (accepted, duplicate or stale).
    Answered,
    /// Not delivered; the entry stays for the next agent.
    Kept(String),
    /// Dropped: the server revoked the package meanwhile.
    Revoked,
}

/// Delivers one entry: upload, then report, until answered. The artifact
/// is read from the spool, or from `file` when it could not be spooled.
fn deliver(agent: &Agent, path: &Path, entry: &Entry, file: Option<PathBuf>, by: By) -> Delivered {
    let mut report = entry.report.clone();
    if let Some(a) = &entry.artifact {
        let file = file.unwrap_or_else(|| artifact_path(path));
        match upload(agent, &file, a, by) {
            Ok(()) => {}
            Err(Stopped::Keep(why)) => return Delivered::Kept(why),
            Err(Stopped::Revoked) => {
                remove(path);
                return Delivered::Revoked;
            }
            Err(Stopped::Refused(detail)) => {
                tracing::error!(package = ?report.package, detail, "artifact refused: reporting upload_failed");
                report.status = Some("upload_failed".into());
                report.sha256 = None;
                report.failure_class = Some(FailureClass::Infra);
                report.error_detail = Some(detail);
            }
        }
    }
    let result = retry(agent, by, "report", |a| {
        if matches!(by, By::Job(_)) {
            report.epoch = a.lock().epoch.or(report.epoch);
        }
        Ok(a.client.complete(&report)?)
    });
    match result {
        Ok(reply) => {
            if reply.stale {
                tracing::warn!(package = ?report.package, lease = ?report.lease, why = reply.reason.as_deref().unwrap_or("work reclaimed"), "report was stale: the server had already moved the package");
            } else {
                tracing::info!(package = ?report.package, lease = ?report.lease, accepted = reply.accepted, recorded = ?reply.recorded, "report sent");
            }
            remove(path);
            Delivered::Answered
        }
        Err(Stopped::Revoked) => {
            remove(path);
            Delivered::Revoked
        }
        Err(Stopped::Keep(why)) => Delivered::Kept(why),
        Err(Stopped::Refused(why)) => {
            tracing::error!(package = ?report.package, why, "report refused by the server; dropping it");
            remove(path);
            Delivered::Answered
        }
    }
}

/// Delivers everything a previous agent left in the spool. Runs before the
/// agent registers; returns when the spool is empty or the agent leaves.
pub(crate) fn redeliver(agent: &Agent) {
    let entries = list(&agent.cfg.work_dir);
    if entries.is_empty() {
        return;
    }
    tracing::info!(
        builds = entries.len(),
        "delivering finished builds an earlier agent left in the spool"
    );
    for (path, entry) in entries {
        match deliver(agent, &path, &entry, None, By::Startup) {
            Delivered::Kept(why) => {
                tracing::warn!(file = %path.display(), why, "spooled build kept for the next start");
                return;
            }
            other => {
                tracing::info!(package = ?entry.report.package, result = ?other, "spooled build delivered")
            }
        }
    }
}

/// A failed call: on the drone itself, or the server's answer.
enum CallError {
    Local(String),
    Client(ClientError),
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        CallError::Client(e)
    }
}

enum Stopped {
    /// Leave the entry for the next agent.
    Keep(String),
    /// The server took the package away.
    Revoked,
    /// A definitive refusal (4xx).
    Refused(String),
}

fn upload(agent: &Agent, file: &Path, a: &SpooledArtifact, by: By) -> Result<(), Stopped> {
    let reply = retry(agent, by, "artifact upload", |ag| {
        let f = std::fs::File::open(file).map_err(|e| {
            CallError::Local(format!(
                "cannot read spooled artifact {}: {e}",
                file.display()
            ))
        })?;
        Ok(ag.client.put_artifact(&a.category, &a.name, f, &a.sha256)?)
    })?;
    if reply.sha256.eq_ignore_ascii_case(&a.sha256) {
        tracing::info!(path = reply.path, sha256 = a.sha256, "artifact uploaded");
        Ok(())
    } else {
        Err(Stopped::Refused(format!(
            "server stored {} with sha256 {}, expected {}",
            reply.path, reply.sha256, a.sha256
        )))
    }
}

/// Calls until the server answers. Transport errors, 5xx, 408 and 429 are
/// retried with backoff (1 s doubling to a minute) for as long as it takes.
fn retry<T>(
    agent: &Agent,
    by: By,
    what: &str,
    mut call: impl FnMut(&Agent) -> Result<T, CallError>,
) -> Result<T, Stopped> {
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        if let Some(stop) = should_stop(agent, by) {
            return Err(stop);
        }
        let e = match call(agent) {
            Ok(v) => return Ok(v),
            Err(CallError::Local(why)) => return Err(Stopped::Refused(why)),
            Err(CallError::Client(e)) => e,
        };
        match e {
            e if e.status() == Some(404) && matches!(by, By::Job(_)) => {
                tracing::warn!("{what}: the server does not know this drone; registering again");
                agent.lock().registered = false;
                agent.beat_soon();
            }
            e if !retryable(&e) => return Err(Stopped::Refused(e.to_string())),
            e => {
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(
                        attempt,
                        "{what} failed: {e}; retrying until the server answers"
                    );
                }
            }
        }
        agent.pause(backoff.next_delay());
    }
}

fn retryable(e: &ClientError) -> bool {
    e.is_transport() || e.is_bare() || e.status().is_some_and(|s| s >= 500 || s == 429 || s == 408)
}

fn should_stop(agent: &Agent, by: By) -> Option<Stopped> {
    let st = agent.lock();
    if let By::Job(id) = by {
        if let Some(Stop::Revoked(why)) = st.jobs.get(&id).and_then(|j| j.stop.as_ref()) {
            tracing::warn!(why, "delivery abandoned: the server revoked the package");
            return Some(Stopped::Revoked);
        }
    }
    if st.phase == Phase::Exit {
        return Some(Stopped::Keep("the agent is leaving now".into()));
    }
    if st.phase != Phase::Running && matches!(by, By::Startup) {
        return Some(Stopped::Keep("the agent is stopping".into()));
    }
    None
}

/// Turns a finished build's report into a spool entry and delivers it.
pub(crate) fn spool_and_deliver(
    agent: &Agent,
    id: JobId,
    report: CompleteRequest,
    artifact: Option<(SpooledArtifact, &Path)>,
) {
    let entry = Entry {
        report,
        artifact: artifact.as_ref().map(|(a, _)| a.clone()),
    };
    let source = artifact.as_ref().map(|(_, p)| *p);
    let path = match put(&agent.cfg.work_dir, &entry, source) {
        Ok(p) => p,
        Err(e) => {
            // The disk refused the spool: deliver from memory, as before.
            tracing::error!(error = %e, "cannot spool the finished build; delivering it without a copy on disk");
            let scratch = dir(&agent.cfg.work_dir).join("unspooled.json");
            let file = source.map(Path::to_path_buf);
            if let Delivered::Kept(why) = deliver(agent, &scratch, &entry, file, By::Job(id)) {
                tracing::error!(package = ?entry.report.package, why, "build not delivered");
            }
            return;
        }
    };
    if let Delivered::Kept(why) = deliver(agent, &path, &entry, None, By::Job(id)) {
        tracing::warn!(package = ?entry.report.package, file = %path.display(), why, "build kept in the spool; the next agent delivers it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_and_its_artifact_survive_a_round_trip_through_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let art = dir.path().join("foo-1.gpkg.tar");
        std::fs::write(&art, b"binary package").expect("artifact");
        let entry = Entry {
            report: CompleteRequest {
                package: Some("dev-libs/foo-1".into()),
                lease: Some(7),
                status: Some("success".into()),
                ..CompleteRequest::default()
            },
            artifact: Some(SpooledArtifact {
                category: "dev-libs".into(),
                name: "foo-1.gpkg.tar".into(),
                sha256: "ab".repeat(32),
            }),
        };
        let path = put(dir.path(), &entry, Some(&art)).expect("put");
        std::fs::remove_file(&art).expect("the build's copy goes away");
        let listed = list(dir.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, path);
        assert_eq!(listed[0].1.report, entry.report);
        assert_eq!(
            std::fs::read(artifact_path(&path)).expect("spooled artifact"),
            b"binary package"
        );
        std::fs::write(dir.path().join("spool/bad.json"), b"{").expect("bad");
        assert_eq!(list(dir.path()).len(), 1, "a bad entry is set aside");
        assert!(dir.path().join("spool/bad.bad").exists());
        remove(&path);
        assert!(list(dir.path()).is_empty());
    }
}
