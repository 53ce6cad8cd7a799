//! The spool: a finished build is written to disk before it is delivered,
//! so neither a control plane that answers with errors for a while nor an
//! agent restart drops it.
//!
//! `<work_dir>/spool/<lease>_<farm>_<category>_<pf>.json` (`<farm>`: the
//! first 16 characters of the farm id, `nofarm` when the server gave none;
//! two farms give the same lease numbers) holds the report (with
//! the `cat/pf` list of what the build wrote) and each artifact's name and
//! sha256; `<same>.<i>.artifact` is a hard link to (or a copy of) the i-th
//! binary package, so a later build of the same package cannot change what
//! is uploaded; `<same>.log.gz` is the build log's compressed tail.
//! Delivery uploads the artifacts, then the log, then sends the report, each
//! retried with backoff until the server answers; the entry is removed once
//! the report is answered (accepted, a duplicate, or stale).
//!
//! Retrying stops without removing the entry only when the agent leaves; the
//! next agent delivers what is left while it registers and beats, holding
//! the leases the reports name (see [`start_redelivery`]). An entry keeps
//! the farm it was made for (the server's `farm_id`) and names it in every
//! upload and report; one a server of another farm refuses is set aside,
//! not delivered. `upload_failed` is reported
//! only for failures on the drone itself: an artifact it cannot read, or one
//! the server refuses outright (4xx: wrong checksum, too large). The log
//! never holds a report back once the server answers: a refused log, or
//! one the server failed to store [`LOG_ANSWERS`] times, is dropped.

use super::backoff::Backoff;
use super::shared::Agent;
use super::shutdown::Phase;
use super::state::{JobId, Stop};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use swarm_core::agent::AgentInput;
use swarm_core::FailureClass;
use swarm_net::client::ClientError;
use swarm_net::wire::CompleteRequest;

/// Longest wait between two delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long an upload waits for the agent's first register reply, which says whether the
/// server answers an upload's checks (a restarted agent delivers its spool while it
/// registers); past it, the upload goes without (a server that is down answers neither).
const REGISTER_WAIT: Duration = Duration::from_secs(10);
/// Server errors on a log upload before the log is dropped (an unreachable
/// server is waited for, as for everything else).
const LOG_ANSWERS: u32 = 3;
/// The largest entry file read at start. An entry this agent writes is a few
/// KiB (its report's detail is one line of the build's log tail); a bigger
/// one is junk, and a report over the server's body limit (1 MiB by default)
/// is cut off by a 413 the agent sees as a broken connection, retried for
/// ever while the entry holds a slot.
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// A finished build waiting for the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The report, as it will be sent (its epoch is refreshed at each send
    /// while the agent is registered).
    pub(crate) report: CompleteRequest,
    /// The binary packages to upload first, in order.
    #[serde(default)]
    pub(crate) artifacts: Vec<SpooledArtifact>,
    /// Whether a build log (`<stem>.log.gz`) goes with the report.
    #[serde(default)]
    pub(crate) log: bool,
    /// The farm whose lease the build was made under (the server's
    /// `farm_id`); it goes to no other. `None`: the server did not say, or
    /// an entry spooled before agents kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) farm: Option<String>,
}

impl Entry {
    fn of(f: &Finished<'_>) -> Entry {
        Entry {
            report: f.report.clone(),
            artifacts: f.artifacts.iter().map(|(a, _)| a.clone()).collect(),
            log: f.log_gz.is_some(),
            farm: f.farm.clone(),
        }
    }
}

/// One binary package of a spooled success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpooledArtifact {
    pub(crate) category: String,
    /// `<pf>.gpkg.tar` or `<pf>.tbz2`.
    pub(crate) name: String,
    pub(crate) sha256: String,
}

/// What a finished build hands to the spool: the files as the build left
/// them (they may move once spooled).
pub(crate) struct Finished<'a> {
    pub(crate) report: CompleteRequest,
    pub(crate) artifacts: Vec<(SpooledArtifact, &'a Path)>,
    /// The build log's compressed tail, if it could be read.
    pub(crate) log_gz: Option<Vec<u8>>,
    /// The farm that gave the build's lease (its work reply's `farm_id`).
    pub(crate) farm: Option<String>,
}

/// The spool directory of an agent.
pub(crate) fn dir(work_dir: &Path) -> PathBuf {
    super::config::spool_dir(work_dir)
}

/// How many finished builds wait in the spool (entries, without reading them).
pub(crate) fn waiting(work_dir: &Path) -> usize {
    std::fs::read_dir(dir(work_dir)).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    })
}

fn artifact_path(entry: &Path, i: usize) -> PathBuf {
    entry.with_extension(format!("{i}.artifact"))
}

fn log_path(entry: &Path) -> PathBuf {
    entry.with_extension("log.gz")
}

fn sync_rename(tmp: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, dst)
}

/// Writes an entry durably: the artifacts (hard links, or copies) and the
/// log first, then the report via a temp file and a rename, all fsynced.
/// Returns the entry's path. A write that fails (a full disk) removes what
/// it wrote: left behind, it filled the disk for the next build's entry too.
pub(crate) fn put(work_dir: &Path, f: &Finished<'_>) -> std::io::Result<PathBuf> {
    let mut wrote = Vec::new();
    let result = put_files(work_dir, f, &mut wrote);
    if result.is_err() {
        for p in &wrote {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

fn put_files(
    work_dir: &Path,
    f: &Finished<'_>,
    wrote: &mut Vec<PathBuf>,
) -> std::io::Result<PathBuf> {
    let dir = dir(work_dir);
    // A report holds a failed build's error line: not for every user of the
    // drone, even in a work dir that is (h12).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o750)
        .create(&dir)?;
    let package = f.report.package.as_deref().unwrap_or("unknown");
    let lease = f
        .report
        .lease
        .map_or_else(|| "nolease".to_string(), |l| l.to_string());
    // The farm too: two farms give the same lease numbers (for the same
    // package, with the same queue), and an entry set aside for one must not
    // share its files with the other's build of that number.
    let farm: String = f
        .farm
        .as_deref()
        .unwrap_or("nofarm")
        .chars()
        .take(16)
        .collect();
    let stem: String = format!("{lease}_{farm}_{package}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = free_entry_path(&dir, &stem)?;
    for (i, (_, src)) in f.artifacts.iter().enumerate() {
        let dst = artifact_path(&path, i);
        let _ = std::fs::remove_file(&dst);
        wrote.push(dst.clone());
        if std::fs::hard_link(src, &dst).is_err() {
            let tmp = dst.with_extension("artifact.tmp");
            wrote.push(tmp.clone());
            std::fs::copy(src, &tmp)?;
            sync_rename(&tmp, &dst)?;
        }
    }
    if let Some(gz) = &f.log_gz {
        let tmp = path.with_extension("log.gz.tmp");
        wrote.extend([tmp.clone(), log_path(&path)]);
        // A build's log: not for every user of the drone (h11).
        std::io::Write::write_all(&mut private_file(&tmp)?, gz)?;
        sync_rename(&tmp, &log_path(&path))?;
    }
    let entry = Entry::of(f);
    let tmp = path.with_extension("json.tmp");
    wrote.push(tmp.clone());
    let text = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
    std::io::Write::write_all(&mut private_file(&tmp)?, &text)?;
    sync_rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// A new spool file, 0640 whatever the umask allows beyond it.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
        0o640,
    )
    .open(path)
}

/// Entries of one name kept side by side at most (`<stem>~2` and on).
const MAX_SAME_NAME: usize = 64;

/// The first `<stem>[~n].json` that no entry, waiting or set aside, holds.
/// Two builds can share a stem: a server that gives one lease number twice
/// (a restored data dir), farm ids alike in their first 16 characters,
/// atoms that sanitise alike (`a/b_c`, `a_b/c`). With one path the second
/// build overwrote the first's artifacts, set aside or not.
fn free_entry_path(dir: &Path, stem: &str) -> std::io::Result<PathBuf> {
    (1..=MAX_SAME_NAME)
        .map(|n| match n {
            1 => dir.join(format!("{stem}.json")),
            n => dir.join(format!("{stem}~{n}.json")),
        })
        .find(|p| !p.exists() && !p.with_extension("bad").exists())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{MAX_SAME_NAME} spooled builds already have the name {stem}"
            ))
        })
}

/// Every spooled entry, oldest name first; unreadable ones (not a regular
/// file, or not an entry) are logged and set aside (renamed `.bad`), never
/// retried forever. Files of no entry (a write that a kill or a full disk
/// cut short) are removed. Called at start only, before any build runs.
pub(crate) fn list(work_dir: &Path) -> Vec<(PathBuf, Entry)> {
    let Ok(read) = std::fs::read_dir(dir(work_dir)) else {
        return Vec::new();
    };
    let all: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
    let has_ext = |p: &Path, ext: &str| p.extension().is_some_and(|e| e == ext);
    let stems: Vec<String> = all
        .iter()
        .filter(|p| has_ext(p, "json") || has_ext(p, "bad"))
        .filter_map(|p| p.file_stem().map(|s| format!("{}.", s.to_string_lossy())))
        .collect();
    for p in all
        .iter()
        .filter(|p| !has_ext(p, "json") && !has_ext(p, "bad"))
    {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !stems.iter().any(|s| name.starts_with(s.as_str())) {
            tracing::warn!(file = %p.display(), "removing a spool file of no entry (a spool write cut short)");
            let _ = std::fs::remove_file(p);
        }
    }
    let mut paths: Vec<PathBuf> = all.into_iter().filter(|p| has_ext(p, "json")).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match read_entry(&p) {
            Ok(e) => out.push((p, e)),
            Err(why) => {
                tracing::error!(file = %p.display(), why, "unreadable spool entry set aside as .bad");
                let _ = std::fs::rename(&p, p.with_extension("bad"));
            }
        }
    }
    out
}

/// Reads one entry file, refusing what no agent wrote: anything but a
/// regular file (reading a FIFO blocks until a writer comes), or one over
/// [`MAX_ENTRY_BYTES`].
pub(crate) fn read_entry(p: &Path) -> Result<Entry, String> {
    let bytes = match std::fs::symlink_metadata(p) {
        Ok(m) if !m.is_file() => Err("not a regular file".to_string()),
        Ok(m) if m.len() > MAX_ENTRY_BYTES => Err(format!(
            "{} bytes, over the {MAX_ENTRY_BYTES} an entry of this agent can be",
            m.len()
        )),
        Ok(_) => std::fs::read(p).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }?;
    serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string())
}

fn remove(path: &Path, entry: &Entry) {
    for i in 0..entry.artifacts.len() {
        let _ = std::fs::remove_file(artifact_path(path, i));
    }
    let _ = std::fs::remove_file(log_path(path));
    let _ = std::fs::remove_file(path);
}

/// Who delivers: a job's own thread (stops when its job is revoked), or the
/// start-up pass (an earlier agent's builds). Both stop when the agent
/// leaves (a third signal), not before.
#[derive(Clone, Copy, Debug)]
pub(crate) enum By {
    Job(JobId),
    Startup,
}

/// What became of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The server answered the report (accepted, duplicate or stale).
    Answered,
    /// Not delivered; the entry stays for the next agent.
    Kept(String),
    /// Dropped: the server revoked the package meanwhile.
    Revoked,
    /// Set aside: the server is another farm than the build's.
    Elsewhere,
    /// Dropped: the server refused the report; it recorded nothing.
    Refused,
}

/// Where a delivery reads its files: the spool, or (when the spool could not
/// be written) the build's own files and the log in memory.
enum Source<'a> {
    Spool,
    Build {
        artifacts: Vec<&'a Path>,
        log_gz: Option<&'a [u8]>,
    },
}

/// Delivers one entry: uploads, log, then report, until answered.
fn deliver(agent: &Agent, path: &Path, entry: &Entry, src: &Source<'_>, by: By) -> Delivered {
    let mut report = entry.report.clone();
    report.farm_id.clone_from(&entry.farm);
    for (i, a) in entry.artifacts.iter().enumerate() {
        let file = match src {
            Source::Spool => artifact_path(path, i),
            Source::Build { artifacts, .. } => artifacts[i].to_path_buf(),
        };
        match upload(agent, &file, a, &report, by) {
            Ok(()) => {}
            Err(Stopped::OtherFarm(why)) => {
                set_aside_elsewhere(path, entry, &why);
                return Delivered::Elsewhere;
            }
            Err(Stopped::Keep(why)) => return Delivered::Kept(why),
            Err(Stopped::Revoked) => {
                remove(path, entry);
                return Delivered::Revoked;
            }
            Err(Stopped::LeaseGone(detail)) => {
                // Nothing it could upload would count. The report goes as it
                // is; the server's answer (stale, or already recorded by an
                // agent killed before it could clear the spool) says what
                // became of the build.
                // Most often the report went through and only its reply was lost (the agent was
                // killed, or the reply timed out): the answer then says "repeated", and nothing
                // is wrong, so this is no warning; a stale answer warns below.
                tracing::info!(package = %crate::logging::shown(&report.package), lease = %crate::logging::shown(&report.lease), detail, "the server no longer holds this build's lease (its report already recorded, or the lease taken back): not uploading; sending the report to hear which");
                let result = send_report(agent, &mut report, by);
                return finish_report(path, entry, &report, result);
            }
            Err(Stopped::Refused(detail)) => {
                tracing::error!(package = %crate::logging::shown(&report.package), detail, "artifact refused: reporting upload_failed");
                report.status = Some("upload_failed".into());
                report.sha256 = None;
                report.artifacts = None;
                report.failure_class = Some(FailureClass::Infra);
                report.error_detail = Some(detail);
                break;
            }
        }
    }
    if entry.log {
        let gz = match src {
            Source::Spool => std::fs::read(log_path(path)).map_err(|e| e.to_string()),
            Source::Build { log_gz, .. } => log_gz
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "no log in memory".to_string()),
        };
        match gz {
            Ok(gz) => {
                if let Err(Stopped::Keep(why)) = send_log(agent, &report, &gz, by) {
                    return Delivered::Kept(why);
                }
            }
            Err(why) => {
                tracing::warn!(package = %crate::logging::shown(&report.package), why, "spooled build log unreadable; the report goes without it")
            }
        }
    }
    let result = send_report(agent, &mut report, by);
    finish_report(path, entry, &report, result)
}

/// Sends the report until the server answers it.
fn send_report(
    agent: &Agent,
    report: &mut CompleteRequest,
    by: By,
) -> Result<swarm_net::wire::CompleteReply, Stopped> {
    retry(agent, by, "report", |a| {
        if matches!(by, By::Job(_)) {
            report.epoch = a.lock().epoch().or(report.epoch);
        }
        Ok(a.client.complete(report)?)
    })
}

/// Logs the report's answer and removes the entry once answered.
fn finish_report(
    path: &Path,
    entry: &Entry,
    report: &CompleteRequest,
    result: Result<swarm_net::wire::CompleteReply, Stopped>,
) -> Delivered {
    match result {
        Ok(reply) => {
            if reply.stale {
                tracing::warn!(package = %crate::logging::shown(&report.package), lease = %crate::logging::shown(&report.lease), why = reply.reason.as_deref().unwrap_or("work reclaimed"), "report was stale: the server had already moved the package");
            } else if reply.recorded.as_deref() == Some("repeated") {
                tracing::info!(package = %crate::logging::shown(&report.package), lease = %crate::logging::shown(&report.lease), accepted = reply.accepted, "report sent again: the server had recorded it already (the first reply was lost); not counted twice");
            } else {
                tracing::info!(package = %crate::logging::shown(&report.package), lease = %crate::logging::shown(&report.lease), accepted = reply.accepted, recorded = %crate::logging::shown(&reply.recorded), "report sent");
            }
            remove(path, entry);
            Delivered::Answered
        }
        Err(Stopped::Revoked) => {
            remove(path, entry);
            Delivered::Revoked
        }
        Err(Stopped::Keep(why)) => Delivered::Kept(why),
        Err(Stopped::OtherFarm(why)) => {
            set_aside_elsewhere(path, entry, &why);
            Delivered::Elsewhere
        }
        Err(Stopped::Refused(why) | Stopped::LeaseGone(why)) => {
            tracing::error!(package = %crate::logging::shown(&report.package), why, "report refused by the server; dropping it");
            remove(path, entry);
            Delivered::Refused
        }
    }
}

/// Uploads the build log. Waits for an unreachable server like everything
/// else, but once the server answers, a refusal or [`LOG_ANSWERS`] server
/// errors drop the log: it never holds the report back.
fn send_log(agent: &Agent, report: &CompleteRequest, gz: &[u8], by: By) -> Result<(), Stopped> {
    let (Some(lease), Some(package)) = (report.lease, report.package.as_deref()) else {
        return Ok(()); // a lease-less (v3-style) assignment has nothing to attach a log to
    };
    let node = report.node_name.clone().unwrap_or_default();
    let mut answers = 0;
    let sent = retry(agent, by, "build log upload", |a| {
        match a
            .client
            .put_log(lease, package, &node, report.farm_id.as_deref(), gz)
        {
            Ok(r) => Ok(Ok(r.bytes)),
            // Transport errors wait; so does a refused credential (see `retry`).
            Err(e) if e.is_transport() || e.status() == Some(401) => Err(CallError::Client(e)),
            Err(e)
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                Ok(Err(format!("the server refused it: {e}")))
            }
            Err(e) => {
                answers += 1;
                if answers >= LOG_ANSWERS {
                    Ok(Err(format!("{answers} server errors, the last: {e}")))
                } else {
                    Err(CallError::Client(e))
                }
            }
        }
    });
    match sent {
        Ok(Ok(bytes)) => {
            tracing::debug!(package, lease, bytes, "build log uploaded");
            Ok(())
        }
        Ok(Err(why))
        | Err(Stopped::Refused(why) | Stopped::LeaseGone(why) | Stopped::OtherFarm(why)) => {
            tracing::warn!(
                package,
                lease,
                why,
                "build log dropped; the report goes without it"
            );
            Ok(())
        }
        Err(stop) => Err(stop),
    }
}

/// Starts delivering what an earlier agent left in the spool, on a thread
/// of its own, so the agent registers and beats meanwhile: a delivery that
/// waited longer than the server's offline timeout without a heartbeat lost
/// its lease, and the finished build with it. The leases are held
/// ([`AgentInput::Spooled`]) before this returns, so the first registration
/// reply, which lists them, does not make them orphans to hand back.
pub(crate) fn start_redelivery(
    agent: &Arc<Agent>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let entries = list(&agent.cfg.work_dir);
    if !entries.is_empty() {
        tracing::info!(
            builds = entries.len(),
            "delivering finished builds an earlier agent left in the spool"
        );
    }
    deliver_in_background(agent, entries)
}

/// Delivers `entries` on a thread of their own, their leases held
/// ([`AgentInput::Spooled`]) before this returns; `None` when there are none.
pub(crate) fn deliver_in_background(
    agent: &Arc<Agent>,
    entries: Vec<(PathBuf, Entry)>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    hold(&mut agent.lock(), &entries);
    spawn_delivery(agent, entries)
}

/// Holds the leases of entries about to be delivered: listed, they are
/// neither orphans to hand back nor work to start again.
pub(crate) fn hold(st: &mut super::state::State, entries: &[(PathBuf, Entry)]) {
    for lease in entries.iter().filter_map(|(_, e)| e.report.lease) {
        st.feed(AgentInput::Spooled(lease));
    }
}

/// Delivers held `entries` on a thread of their own; `None` when there are
/// none.
pub(crate) fn spawn_delivery(
    agent: &Arc<Agent>,
    entries: Vec<(PathBuf, Entry)>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let agent = Arc::clone(agent);
    std::thread::Builder::new()
        .name("redeliver".into())
        .spawn(move || redeliver(&agent, entries))
        .map(Some)
}

/// Delivers the entries in order; returns when all are delivered or the
/// agent leaves. Each lease is let go ([`AgentInput::Unspooled`]) once its
/// delivery is over, and every one left when delivery stops.
fn redeliver(agent: &Agent, entries: Vec<(PathBuf, Entry)>) {
    let mut entries = entries.into_iter();
    while let Some((path, entry)) = entries.next() {
        // Another farm's entry is refused by the server at its first upload
        // or report (409, before any body is read), and `deliver` sets it
        // aside.
        let result = deliver(agent, &path, &entry, &Source::Spool, By::Startup);
        if result == Delivered::Elsewhere {
            let_go(agent, &entry, AgentInput::SpooledElsewhere);
            continue;
        }
        let_go(agent, &entry, AgentInput::Unspooled);
        match result {
            Delivered::Kept(why) => {
                tracing::warn!(file = %path.display(), why, "spooled build kept for the next start");
                for (_, rest) in entries.by_ref() {
                    let_go(agent, &rest, AgentInput::Unspooled);
                }
                return;
            }
            // Refused: `finish_report` logged it, and the entry is gone.
            Delivered::Refused => {}
            other => {
                tracing::info!(package = %crate::logging::shown(&entry.report.package), result = ?other, "spooled build delivered")
            }
        }
    }
}

/// Sets aside (as `.bad`, its files kept) a spooled build another farm
/// leased: its lease number means nothing here, and delivered, it could
/// land under a lease of that number that this farm gave for something else.
fn set_aside_elsewhere(path: &Path, entry: &Entry, why: &str) {
    let bad = path.with_extension("bad");
    if !path.exists() {
        // Delivered from the build's own files (the spool could not take it): nothing to set
        // aside, and the build's packages stay in the drone's PKGDIR only (h42 F7).
        tracing::error!(
            package = %crate::logging::shown(&entry.report.package),
            lease = %crate::logging::shown(&entry.report.lease),
            why,
            "a finished build belongs to another farm (the agent was pointed at a new server, or \
             the store's loss was accepted), and the spool could not take it: not delivered; its \
             packages stay in the drone's PKGDIR"
        );
        return;
    }
    let _ = std::fs::rename(path, &bad);
    if let Some(spool) = path.parent() {
        trim_set_aside(spool, MAX_SET_ASIDE);
    }
    tracing::error!(
        package = %crate::logging::shown(&entry.report.package),
        lease = %crate::logging::shown(&entry.report.lease),
        why,
        file = %bad.display(),
        "a spooled build belongs to another farm (the agent was pointed at a new server, or the \
         store's loss was accepted): set aside, not delivered. It is delivered when the agent next \
         hears from the farm it was built for; if that farm is gone for good, delete it"
    );
}

/// Set-aside builds kept at most: a server whose farm id changes with
/// every reply set each build aside, and they filled the disk.
const MAX_SET_ASIDE: usize = 64;

/// Deletes the oldest set-aside entries (`.bad`, with their artifacts and
/// log) beyond `keep`, saying which.
fn trim_set_aside(spool: &Path, keep: usize) {
    let Ok(read) = std::fs::read_dir(spool) else {
        return;
    };
    let mut bad: Vec<(std::time::SystemTime, PathBuf)> = read
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bad"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if bad.len() <= keep {
        return;
    }
    bad.sort();
    let over = bad.len() - keep;
    for (_, p) in bad.into_iter().take(over) {
        match read_entry(&p) {
            Ok(entry) => remove(&p, &entry),
            Err(_) => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    tracing::error!(
        removed = over,
        kept = keep,
        spool = %spool.display(),
        "more builds were set aside for other farms than the spool keeps: the oldest were deleted \
         (a server whose farm id keeps changing sets every build aside)"
    );
}

/// Lets go of a spooled build's lease once its delivery is over: ended
/// (`Unspooled`), or, for another farm's build, without ending its number
/// here (`SpooledElsewhere`).
fn let_go(agent: &Agent, entry: &Entry, how: fn(u64) -> AgentInput) {
    if let Some(lease) = entry.report.lease {
        agent.lock().feed(how(lease));
        agent.notify();
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
    /// The lease (or the epoch) the call is bound to is no longer live: the
    /// package was reclaimed, or its report was already recorded.
    LeaseGone(String),
    /// The server is another farm than the one the build was made for.
    OtherFarm(String),
}

/// Uploads one artifact bound to the build's lease and the drone's current
/// epoch: the server takes it only for this drone's live lease of the package.
fn upload(
    agent: &Agent,
    file: &Path,
    a: &SpooledArtifact,
    report: &CompleteRequest,
    by: By,
) -> Result<(), Stopped> {
    let (lease, farm) = (report.lease, report.farm_id.as_deref());
    // Over the server's limit its 413 would come while the body is still
    // being sent, and a broken connection is retried as an outage for ever.
    let limit = agent.lock().max_artifact;
    if let (Some(limit), Ok(m)) = (limit, std::fs::metadata(file)) {
        if m.len() > limit {
            return Err(Stopped::Refused(format!(
                "{}/{} is {} bytes, over the {limit} bytes the server takes (its max_artifact_bytes)",
                a.category,
                a.name,
                m.len()
            )));
        }
    }
    let until = std::time::Instant::now() + REGISTER_WAIT;
    while std::time::Instant::now() < until {
        let st = agent.lock();
        if st.agent.is_registered() || st.phase() == Phase::Exit {
            break;
        }
        drop(st);
        agent.pause(Duration::from_millis(100));
    }
    let reply = retry(agent, by, "artifact upload", |ag| {
        // A regular file only, opened without blocking: a FIFO in its place hung the delivery
        // for good, and a directory failed mid-send as a "network error", retried for ever
        // (h36 F7). Either is this drone's fault: the build is reported `upload_failed`.
        let (f, _) = swarm_net::regular_file::open_regular(file).map_err(|e| {
            CallError::Local(format!(
                "cannot read spooled artifact {}: {e}",
                file.display()
            ))
        })?;
        let (epoch, check) = {
            let st = ag.lock();
            (st.epoch(), st.upload_check)
        };
        let bound = swarm_net::client::drone::Binding { lease, epoch, farm };
        if check {
            // A refusal the server makes from the headers reaches a sender
            // still sending a big body as a broken connection, retried as
            // an outage for ever: asked first, it comes as the answer.
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            ag.client
                .check_artifact_for_lease(&a.category, &a.name, size, &a.sha256, &bound)?;
        }
        let failed = std::cell::RefCell::new(None);
        let body = LocalReads {
            inner: f,
            failed: &failed,
        };
        match ag
            .client
            .put_artifact_for_lease(&a.category, &a.name, body, &a.sha256, &bound)
        {
            Ok(reply) => Ok(reply),
            // The transport reports a failed read of the body as its own failure: told apart,
            // so a disk error on this drone is not retried as an outage for ever.
            Err(e) => match failed.into_inner() {
                Some(why) => Err(CallError::Local(format!(
                    "reading spooled artifact {} failed: {why}",
                    file.display()
                ))),
                None => Err(CallError::Client(e)),
            },
        }
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

/// A body whose read errors are noted, to tell them from the transport's own.
struct LocalReads<'a, R> {
    inner: R,
    failed: &'a std::cell::RefCell<Option<String>>,
}

impl<R: std::io::Read> std::io::Read for LocalReads<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != std::io::ErrorKind::Interrupted {
                *self.failed.borrow_mut() = Some(e.to_string());
            }
        })
    }
}

/// Calls until the server answers. Transport errors, redirects, 5xx, 408, 429, 401 and 403
/// (this drone's credential refused) are retried with backoff (1 s doubling
/// to a minute) for as long as it takes.
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
                agent.lock().feed(swarm_core::agent::AgentInput::Forgotten);
                agent.beat_soon();
            }
            // A credential the server does not take is a fault on this drone
            // (a wrong or revoked token), not the server's judgement of the
            // build: the build stays spooled until the credential works.
            // 403 too: on a drone's calls the server answers it only for who the caller is
            // (another drone's token, a drone it does not let in without one); h24 saw a
            // finished build dropped for a token file holding another drone's token.
            e if matches!(e.status(), Some(401 | 403)) => {
                if agent.reread_token_file() {
                    continue;
                }
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::error!(
                        attempt,
                        "{what}: the server refuses this drone's credential ({e}); the build stays in the spool and is retried until the credential is accepted"
                    );
                }
            }
            e if lease_gone(&e) => return Err(Stopped::LeaseGone(e.to_string())),
            e if other_farm(&e) => return Err(Stopped::OtherFarm(e.to_string())),
            e if !e.is_worth_retrying() => return Err(Stopped::Refused(e.to_string())),
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

/// The server's 409 on the lease or epoch an upload or a report is bound to (`X-Swarm-Lease`,
/// `X-Swarm-Epoch`, a report's `lease`): no longer live, or another drone's.
fn lease_gone(e: &ClientError) -> bool {
    matches!(e, ClientError::Server { status: 409, body, .. }
        if matches!(body.field.as_deref(), Some("X-Swarm-Lease" | "X-Swarm-Epoch" | "lease")))
}

/// The server's 409 on the farm a call names (`X-Swarm-Farm`, `farm_id`).
fn other_farm(e: &ClientError) -> bool {
    matches!(e, ClientError::Server { status: 409, body, .. }
        if matches!(body.field.as_deref(), Some("X-Swarm-Farm" | "farm_id")))
}

fn should_stop(agent: &Agent, by: By) -> Option<Stopped> {
    let st = agent.lock();
    if let By::Job(id) = by {
        if let Some(Stop::Revoked(why)) = st.job(id).and_then(|j| j.stop.as_ref()) {
            // The server lists a lease as revoked once it has recorded its report too: a reply
            // lost after the server took the build reads the same (h36 F8).
            tracing::warn!(
                why,
                "delivery ended: the server no longer lists this build's lease (it recorded the \
                 build already, or revoked or reclaimed the lease; its history says which)"
            );
            return Some(Stopped::Revoked);
        }
    }
    // A finished build is delivered through a drain or a return (the first
    // and second signals), whoever delivers it: given up then, the goodbye
    // that follows gave its lease back, and the build was done again.
    if st.phase() == Phase::Exit {
        return Some(Stopped::Keep("the agent is leaving now".into()));
    }
    None
}

/// Spools a finished build and delivers it. `spooled` runs as soon as the
/// build's own files are no longer needed where they are (once spooled, or
/// after delivery when the spool could not be written). True when they are
/// still needed: the spool could not take the build and the agent left
/// before delivering it, so its directory (with its outcome record) must
/// stay for the next start. `unspooled` runs when the spool cannot take the
/// build, before it is delivered from the build's own files.
#[must_use]
pub(crate) fn spool_and_deliver(
    agent: &Agent,
    id: JobId,
    f: Finished<'_>,
    spooled: impl FnOnce(),
    unspooled: impl FnOnce(),
) -> bool {
    let entry = Entry::of(&f);
    let path = match put(&agent.cfg.work_dir, &f) {
        Ok(p) => p,
        Err(e) => {
            // The disk refused the spool: deliver from the build's files, as before.
            tracing::error!(error = %e, "cannot spool the finished build; delivering it without a copy on disk");
            unspooled();
            match deliver_from_files(agent, &f, By::Job(id)) {
                Delivered::Kept(why) => {
                    // Its outcome record and its directory stay: the next start spools it
                    // from there. Removed, the build was lost (h39, a review).
                    tracing::error!(package = %crate::logging::shown(&entry.report.package), why, "build not delivered; the next start delivers it from its build directory");
                    return true;
                }
                Delivered::Refused | Delivered::Elsewhere => not_recorded(agent, id),
                Delivered::Answered | Delivered::Revoked => {}
            }
            spooled();
            return false;
        }
    };
    spooled();
    match deliver(agent, &path, &entry, &Source::Spool, By::Job(id)) {
        Delivered::Kept(why) => {
            tracing::warn!(package = %crate::logging::shown(&entry.report.package), file = %path.display(), why, "build kept in the spool; the next agent delivers it");
        }
        Delivered::Refused | Delivered::Elsewhere => not_recorded(agent, id),
        Delivered::Answered | Delivered::Revoked => {}
    }
    false
}

/// Delivers a finished build the spool could not take from the build's own files (and the
/// log's tail in memory): nothing of it is on disk but where the build left it.
pub(crate) fn deliver_from_files(agent: &Agent, f: &Finished<'_>, by: By) -> Delivered {
    // No spool entry: whatever `deliver` removes or sets aside under this name is not there.
    let scratch = dir(&agent.cfg.work_dir).join("unspooled.json");
    let src = Source::Build {
        artifacts: f.artifacts.iter().map(|(_, p)| *p).collect(),
        log_gz: f.log_gz.as_deref(),
    };
    deliver(agent, &scratch, &Entry::of(f), &src, by)
}

/// Nothing of the job reached its lease's farm: should that farm go on
/// listing the lease, it is handed back rather than left "building" here.
fn not_recorded(agent: &Agent, id: JobId) {
    agent.lock().feed(AgentInput::NotRecorded(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two farms give the same lease number for the same package: the build
    /// of one, spooled (or set aside) first, keeps its own files when the
    /// other's build of that number is spooled and delivered.
    #[test]
    fn builds_of_one_lease_number_for_two_farms_keep_their_own_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool_one = |farm: &str, bytes: &[u8]| {
            let art = dir.path().join(format!("{farm}.gpkg.tar"));
            std::fs::write(&art, bytes).expect("artifact");
            let finished = Finished {
                report: CompleteRequest {
                    package: Some("dev-libs/pa-1.0".into()),
                    lease: Some(1),
                    ..CompleteRequest::default()
                },
                artifacts: vec![(
                    SpooledArtifact {
                        category: "dev-libs".into(),
                        name: "pa-1.0.gpkg.tar".into(),
                        sha256: "ab".repeat(32),
                    },
                    art.as_path(),
                )],
                log_gz: Some(bytes.to_vec()),
                farm: Some(farm.into()),
            };
            put(dir.path(), &finished).expect("put")
        };
        let a = spool_one("0123456789abcdef", b"farm A's build");
        let b = spool_one("fedcba9876543210", b"farm B's build");
        assert_ne!(a, b, "one entry each");
        let entry_b = list(dir.path())
            .into_iter()
            .find(|(p, _)| *p == b)
            .expect("B's entry")
            .1;
        remove(&b, &entry_b);
        for file in [artifact_path(&a, 0), log_path(&a)] {
            let kept = std::fs::read(&file).unwrap_or_default();
            assert_eq!(kept, b"farm A's build", "{}", file.display());
        }
    }

    /// One lease number given twice for one package (a server restored from
    /// an older data dir): the first build, set aside, keeps its files when
    /// the second is spooled, and each entry lists its own.
    #[test]
    fn two_builds_of_one_name_keep_their_own_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool_one = |bytes: &[u8]| {
            let report = one_build(dir.path()).1;
            // Each build's own file, as the builder's PKGDIR gives (the spool links it).
            let art = dir.path().join(format!("{}.gpkg.tar", bytes[4]));
            std::fs::write(&art, bytes).expect("artifact");
            let mut finished = one_finished(&art, report, Some("farm-a".into()));
            finished.log_gz = Some(bytes.to_vec());
            put(dir.path(), &finished).expect("put")
        };
        let first = spool_one(b"the first build");
        std::fs::rename(&first, first.with_extension("bad")).expect("set aside");
        let second = spool_one(b"the second build");
        let third = spool_one(b"the third build");
        assert!(
            first != second && second != third,
            "{first:?} {second:?} {third:?}"
        );
        for (entry, bytes) in [
            (&first, &b"the first build"[..]),
            (&second, &b"the second build"[..]),
            (&third, &b"the third build"[..]),
        ] {
            for file in [artifact_path(entry, 0), log_path(entry)] {
                let kept = std::fs::read(&file).unwrap_or_default();
                assert_eq!(kept, bytes, "{}", file.display());
            }
        }
        let listed: Vec<PathBuf> = list(dir.path()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            listed,
            [second.clone(), third.clone()],
            "the set-aside one waits apart"
        );
        let left = spool_files(dir.path());
        assert_eq!(
            left.len(),
            9,
            "three entries with an artifact and a log each: {left:?}"
        );
    }

    #[test]
    fn an_entry_its_artifacts_and_its_log_survive_a_round_trip_through_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let art = dir.path().join("foo-1.gpkg.tar");
        let dep = dir.path().join("bar-2.gpkg.tar");
        std::fs::write(&art, b"binary package").expect("artifact");
        std::fs::write(&dep, b"its dependency").expect("artifact");
        let artifact = |name: &str| SpooledArtifact {
            category: "dev-libs".into(),
            name: name.into(),
            sha256: "ab".repeat(32),
        };
        let finished = Finished {
            report: CompleteRequest {
                package: Some("dev-libs/foo-1".into()),
                lease: Some(7),
                status: Some("success".into()),
                artifacts: Some(vec!["dev-libs/foo-1".into(), "dev-libs/bar-2".into()]),
                ..CompleteRequest::default()
            },
            artifacts: vec![
                (artifact("foo-1.gpkg.tar"), art.as_path()),
                (artifact("bar-2.gpkg.tar"), dep.as_path()),
            ],
            log_gz: Some(b"gzipped log".to_vec()),
            farm: Some("farm-a".into()),
        };
        // Under the usual umask, in a work dir every user may enter, what
        // the spool writes is still not for every user (h12).
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let path = put(dir.path(), &finished).expect("put");
        for p in [path.clone(), log_path(&path), dir.path().join("spool")] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&p).expect("spooled").permissions(),
            );
            assert_eq!(mode & 0o007, 0, "{}: {mode:o}", p.display());
        }
        std::fs::remove_file(&art).expect("the build's copy goes away");
        std::fs::remove_file(&dep).expect("the build's copy goes away");
        let listed = list(dir.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, path);
        let entry = &listed[0].1;
        assert_eq!(entry.report, finished.report, "the artifacts list is kept");
        assert_eq!(
            entry.artifacts,
            [artifact("foo-1.gpkg.tar"), artifact("bar-2.gpkg.tar")]
        );
        assert!(entry.log);
        assert_eq!(entry.farm.as_deref(), Some("farm-a"), "the farm it is for");
        assert_eq!(
            std::fs::read(artifact_path(&path, 0)).expect("spooled artifact"),
            b"binary package"
        );
        assert_eq!(
            std::fs::read(artifact_path(&path, 1)).expect("spooled artifact"),
            b"its dependency"
        );
        assert_eq!(
            std::fs::read(log_path(&path)).expect("spooled log"),
            b"gzipped log"
        );
        std::fs::write(dir.path().join("spool/bad.json"), b"{").expect("bad");
        assert_eq!(list(dir.path()).len(), 1, "a bad entry is set aside");
        assert!(dir.path().join("spool/bad.bad").exists());
        remove(&path, entry);
        assert!(list(dir.path()).is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
            .expect("spool")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["bad.bad"], "nothing of the entry is left behind");
    }

    /// A one-artifact build of `dev-libs/foo-1` under lease 9, with a log.
    fn one_build(dir: &Path) -> (PathBuf, CompleteRequest) {
        let art = dir.join("foo-1.gpkg.tar");
        std::fs::write(&art, b"binary package").expect("artifact");
        let report = CompleteRequest {
            package: Some("dev-libs/foo-1".into()),
            lease: Some(9),
            status: Some("success".into()),
            ..CompleteRequest::default()
        };
        (art, report)
    }

    /// Set-aside builds are bounded: the oldest go, with their files.
    #[test]
    fn set_aside_builds_beyond_the_bound_go_oldest_first_with_their_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        for lease in 1..=5u64 {
            let (art, mut report) = one_build(dir.path());
            report.lease = Some(lease);
            let finished = one_finished(&art, report, Some(format!("farm-{lease}")));
            let path = put(dir.path(), &finished).expect("spooled");
            let bad = path.with_extension("bad");
            std::fs::rename(&path, &bad).expect("set aside");
            // Oldest first by time, whatever the names.
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + lease);
            std::fs::File::options()
                .write(true)
                .open(&bad)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        trim_set_aside(&dir.path().join("spool"), 2);
        let left = spool_files(dir.path());
        assert_eq!(
            left.iter().filter(|f| f.ends_with(".bad")).count(),
            2,
            "{left:?}"
        );
        assert!(
            left.iter()
                .all(|f| f.starts_with("4_") || f.starts_with("5_")),
            "{left:?}"
        );
        assert_eq!(
            left.len(),
            6,
            "two entries with an artifact and a log each: {left:?}"
        );
    }

    /// [`one_build`] finished: its artifact and a log, for `farm`.
    fn one_finished(art: &Path, report: CompleteRequest, farm: Option<String>) -> Finished<'_> {
        Finished {
            report,
            artifacts: vec![(
                SpooledArtifact {
                    category: "dev-libs".into(),
                    name: "foo-1.gpkg.tar".into(),
                    sha256: "ab".repeat(32),
                },
                art,
            )],
            log_gz: Some(b"gzipped log".to_vec()),
            farm,
        }
    }

    fn spool_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("spool"))
            .expect("spool")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A 409 naming another drone's lease, on an upload's header or a report's `lease`, ends
    /// the delivery as a lease gone; one on the farm does not.
    #[test]
    fn another_drones_lease_ends_the_delivery_as_a_lease_gone() {
        let answer = |field: &str| ClientError::Server {
            url: "http://127.0.0.1:8100/api/v1/complete".into(),
            status: 409,
            body: swarm_net::wire::ErrorBody {
                error: "=dev-libs/a-1 is leased to d1, not to d2".into(),
                field: Some(field.into()),
            },
        };
        // A report's `lease` as an upload's header (h36 F4: retried for ever as a 403).
        for field in ["lease", "X-Swarm-Lease", "X-Swarm-Epoch"] {
            assert!(lease_gone(&answer(field)), "{field}");
        }
        assert!(!lease_gone(&answer("farm_id")));
    }

    /// A read of the spooled package that fails while it is sent is noted as the drone's
    /// fault (an interrupted read is retried, not noted).
    #[test]
    fn a_failed_read_of_an_uploaded_body_is_noted_as_the_drones() {
        struct Failing(u8);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    1 => Err(std::io::ErrorKind::Interrupted.into()),
                    2 => {
                        buf[0] = b'x';
                        Ok(1)
                    }
                    _ => Err(std::io::Error::other("Input/output error")),
                }
            }
        }
        let failed = std::cell::RefCell::new(None);
        let mut body = LocalReads {
            inner: Failing(0),
            failed: &failed,
        };
        let mut buf = [0u8; 8];
        assert!(std::io::Read::read(&mut body, &mut buf).is_err());
        assert_eq!(
            *failed.borrow(),
            None,
            "an interrupted read is retried, not noted"
        );
        assert_eq!(std::io::Read::read(&mut body, &mut buf).ok(), Some(1));
        assert!(std::io::Read::read(&mut body, &mut buf).is_err());
        assert_eq!(failed.into_inner().as_deref(), Some("Input/output error"));
    }

    /// A spool write that fails (here the report's temp file cannot be
    /// made; a full disk does the same) removes what it wrote before.
    #[test]
    fn a_failed_spool_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (art, report) = one_build(dir.path());
        std::fs::create_dir_all(dir.path().join("spool/9_nofarm_dev-libs_foo-1.json.tmp"))
            .expect("a directory where the temp file goes");
        let finished = one_finished(&art, report, None);
        put(dir.path(), &finished).expect_err("the write fails");
        assert_eq!(
            spool_files(dir.path()),
            ["9_nofarm_dev-libs_foo-1.json.tmp"]
        );
    }

    /// At start, files of no entry (a write cut short by a kill) are
    /// removed, and a FIFO named like an entry is set aside without being
    /// read (reading one blocks until a writer comes: the agent never
    /// registered), as is an entry over `MAX_ENTRY_BYTES`.
    #[test]
    fn at_start_files_of_no_entry_go_and_a_fifo_is_set_aside_unread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).expect("spool");
        let huge = serde_json::json!({"report": {"error_detail": "x".repeat(1 << 20)}});
        std::fs::write(spool.join("5_z.json"), huge.to_string()).expect("a huge entry");
        for orphan in [
            "3_x.0.artifact",
            "3_x.0.artifact.tmp",
            "3_x.log.gz.tmp",
            "3_x.json.tmp",
        ] {
            std::fs::write(spool.join(orphan), b"cut short").expect("orphan");
        }
        let fifo = spool.join("4_y.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let work = dir.path().to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(list(&work).len());
        });
        let listed = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("list returns: the FIFO is not read");
        assert_eq!(listed, 0);
        assert_eq!(
            spool_files(dir.path()),
            ["4_y.bad", "5_z.bad"],
            "a FIFO and an entry too big to be one this agent wrote are set aside"
        );
    }
}
