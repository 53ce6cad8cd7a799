//! `/api/v1/releases`: binhost releases. Reads are open like every read
//! endpoint; create, publish, rollback, keep, tag and purge are admin. Each
//! action is recorded in the store as an `Input::Release` event, so the
//! activity feed and `swarm events` show who published what and every gate
//! override with its reason.

use super::front::Request;
use super::http::{parse_json, read_body, ApiError, Query, Reply};
use super::jobs::Plan;
use super::shared::Shared;
use crate::binhost::header::HeaderEnv;
use crate::binhost::{ReleaseError, Releases};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use swarm_core::release_gate::{check_publish_for, GateFacts, GateVerdict};
use swarm_core::{BuildEnv, Input, ReleaseNote};

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

/// The releases an endpoint acts on: the default profile's, or a named profile's (`?profile=P`).
pub(crate) struct Target<'a> {
    /// The profile's name (`default` for the default one).
    profile: String,
    named: Option<Arc<Releases>>,
    default: &'a Releases,
}

impl std::ops::Deref for Target<'_> {
    type Target = Releases;
    fn deref(&self) -> &Releases {
        self.named.as_deref().unwrap_or(self.default)
    }
}

impl Target<'_> {
    /// How a release is named in events: `P/NAME` for a named profile's.
    fn label(&self, release: &str) -> String {
        if self.named.is_some() {
            format!("{}/{release}", self.profile)
        } else {
            release.to_owned()
        }
    }

    /// A release action the server could not carry out (a full disk, a
    /// binhost root without its releases, an index it could not write) is
    /// an event too, so the activity feed says why the binhost did not
    /// change, and when; an operator's own mistake (4xx) is only answered.
    fn failed(
        &self,
        sh: &Shared,
        action: &'static str,
        release: &str,
        e: ReleaseError,
    ) -> ApiError {
        let e = ApiError::from(e);
        if e.status >= 500 {
            sh.metrics.release_failed(action);
            tracing::error!(action, release, error = %e.body.error, "release action failed");
            note(
                sh,
                &format!("{action}_failed"),
                &self.label(release),
                e.body.error.clone(),
            );
        }
        e
    }
}

/// The releases of the profile `?profile=` names (none or `default`: the default profile's).
/// A named profile's tree is `<binhost>/<profile>/`, so it is served at `/binhost/<profile>/`
/// by swarm and by an nginx serving the binhost root alike; its bookkeeping is
/// `<state>/profiles/<profile>/`; it takes the builds staged in its own tree
/// (`staging/.profiles/<profile>/`). The profile must exist.
pub(crate) fn target<'a>(sh: &'a Shared, url: &str) -> Result<Target<'a>, ApiError> {
    let q = Query::parse(url);
    let default = &sh.releases;
    let name = match q.get("profile") {
        None => swarm_core::profile::DEFAULT_PROFILE,
        Some(n) => n,
    };
    if name == swarm_core::profile::DEFAULT_PROFILE {
        return Ok(Target {
            profile: name.to_owned(),
            named: None,
            default,
        });
    }
    if let Some(problem) = swarm_core::profile::name_problem(name) {
        return Err(ApiError::field(400, "profile", problem));
    }
    let known = sh.published().swarm.view().profile_env(name).is_some()
        || sh.fresh().swarm.view().profile_env(name).is_some();
    if !known {
        return Err(ApiError::field(
            404,
            "profile",
            format!("no profile {name:?} (`swarm profile list`)"),
        ));
    }
    let mut open = sh
        .profile_releases
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let named = match open.get(name) {
        Some(r) => r.clone(),
        None => {
            let base = default.options();
            let opts = crate::binhost::BinhostOptions {
                root: base.root.join(name),
                state_dir: base.state_dir.join("profiles").join(name),
                ..base.clone()
            };
            // A named profile's builds are staged in its own tree (staged_path::staging_of).
            let staging = super::staged_path::staging_of(&sh.staging, Some(name));
            let r = Arc::new(Releases::open(opts, &staging)?);
            note_completed_at_open(sh, &r, Some(name));
            open.insert(name.to_owned(), r.clone());
            r
        }
    };
    Ok(Target {
        profile: name.to_owned(),
        named: Some(named),
        default,
    })
}

/// Records, as an event, a publish that a crash cut short and the open of `r` completed:
/// the publish recorded none (h109 F3), and the operator was told it failed.
pub(crate) fn note_completed_at_open(sh: &Shared, r: &Releases, profile: Option<&str>) {
    if let Some(name) = r.publish_completed_at_open() {
        let label = profile.map_or_else(|| name.to_owned(), |p| format!("{p}/{name}"));
        note(
            sh,
            "published",
            &label,
            "completed at start: the served index was not this release's although it is the \
             published one (the server stopped in the middle of publishing it, or the index \
             file was changed), and it was written again; a publish cut short recorded no \
             event of its own (nor a forced publish's reason)"
                .to_string(),
        );
    }
}

/// Records an action as an event; a failure to record is logged, not fatal:
/// the action itself already happened on disk.
fn note(sh: &Shared, action: &str, release: &str, detail: String) {
    tracing::info!(action, release, detail = %detail, "release");
    let input = Input::Release(ReleaseNote {
        action: action.into(),
        release: release.into(),
        detail,
    });
    if let Err(e) = sh.submit(Plan::Inputs(vec![input]), None, false) {
        tracing::warn!(action, release, error = %e.body.error, "release event not recorded");
    }
}

pub(crate) fn list(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let (list, published) = r.list();
    let rollback_to = r.rollback_target().ok();
    Reply::ok(&json!({
        "profile": r.profile,
        "published": published,
        "rollback_to": rollback_to,
        "releases": list,
        "binhost": swarm_core::profile::binhost_path(&r.profile),
        "keep_last": r.options().keep_last,
    }))
}

pub(crate) fn show(sh: &Shared, url: &str, name: &str) -> Result<Reply, ApiError> {
    Reply::ok(&target(sh, url)?.show(name)?)
}

pub(crate) fn diff(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let a = q
        .get("a")
        .ok_or_else(|| ApiError::field(400, "a", "diff needs ?a=RELEASE&b=RELEASE"))?;
    let b = q
        .get("b")
        .ok_or_else(|| ApiError::field(400, "b", "diff needs ?a=RELEASE&b=RELEASE"))?;
    Reply::ok(&target(sh, url)?.diff(a, b)?)
}

/// The gate's verdict on publishing `name` of `r`'s profile now.
fn verdict(sh: &Shared, r: &Target<'_>, name: &str) -> Result<GateVerdict, ApiError> {
    let (mut release, published) = r.gate_facts(name)?;
    // What each binary was built with, as recorded with its build for this profile (issue 17).
    let envs = sh
        .with_history(|h| h.last_build_envs(&r.profile))
        .unwrap_or_default();
    let by_cpv = super::by_cpv::ByCpv::new(&envs);
    for (cpv, facts) in &mut release {
        let recorded = by_cpv.get(cpv);
        facts.env = recorded.and_then(|vars| swarm_core::BuildEnv::new(vars.clone()).ok());
    }
    let p = sh.fresh();
    let mut v = check_publish_for(
        p.swarm.view(),
        &GateFacts {
            release: &release,
            published: published.as_ref(),
            max_drop_permille: r.options().max_drop_permille,
        },
        &r.profile,
    );
    v.notes.push(
        "a package's Portage snapshot is the one its drone reported when the release was made; \
         swarm does not record the snapshot of each build"
            .into(),
    );
    Ok(v)
}

pub(crate) fn gate(sh: &Shared, url: &str, name: &str) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let v = verdict(sh, &r, name)?;
    Reply::ok(
        &json!({ "release": name, "profile": r.profile, "passed": v.passed(), "reasons": v.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(), "verdict": v }),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
}

/// Why a staging package is not `profile`'s to release (the rule is the core's,
/// [`swarm_core::release_gate::not_in_release_of`]); the store gives the environment
/// recorded with its build.
fn not_ours(
    view: &swarm_core::View<'_>,
    envs: &super::by_cpv::ByCpv<'_, std::collections::BTreeMap<String, String>>,
    profile: &str,
    cpv: &str,
) -> Option<String> {
    let atom = swarm_core::Atom::parse(&format!("={cpv}")).ok();
    let recorded = envs
        .get(cpv)
        .and_then(|vars| swarm_core::BuildEnv::new(vars.clone()).ok());
    swarm_core::release_gate::not_in_release_of(*view, profile, atom.as_ref(), recorded.as_ref())
}

pub(crate) fn create(sh: &Shared, req: &mut Request, url: &str) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let body: CreateBody = optional_body(sh, req)?;
    let p = sh.fresh();
    let view = p.swarm.view();
    if let Some(n) = &body.name {
        if r.named.is_none() && view.profile_env(n).is_some() {
            return Err(ApiError::field(
                409,
                "name",
                format!("{n} is a profile's name: its tree is /binhost/{n}/; name the release otherwise"),
            ));
        }
    }
    let builders = sh
        .with_history(|h| h.last_builders(&r.profile))
        .unwrap_or_default();
    let snapshots: std::collections::BTreeMap<String, Option<String>> = view
        .drones()
        .into_iter()
        .map(|d| (d.name.as_str().to_string(), d.portage_snapshot))
        .collect();
    let builders = super::by_cpv::ByCpv::new(&builders);
    let provenance = |cpv: &str| {
        let drone = builders.get(cpv).cloned();
        let snapshot = drone
            .as_ref()
            .and_then(|d| snapshots.get(d).cloned().flatten());
        (drone, snapshot)
    };
    // The index header comes from what the packages were built with (issue 12).
    let envs = sh
        .with_history(|h| h.last_build_envs(&r.profile))
        .unwrap_or_default();
    let envs = super::by_cpv::ByCpv::new(&envs);
    let recorded = |cpv: &str| {
        envs.get(cpv)
            .and_then(|vars| BuildEnv::new(vars.clone()).ok())
    };
    let env = HeaderEnv {
        recorded: &recorded,
        expected: view.profile_env(&r.profile).cloned(),
    };
    let now = (sh.clock)().0;
    let (uploads, removed) = super::release_uploads::prepare(sh, r.staging())?;
    let refuse = |cpv: &str, rel: &str, sha256: &str| {
        uploads
            .refuse(rel, sha256)
            .or_else(|| not_ours(&view, &envs, &r.profile, cpv))
    };
    let created = r
        .create_taking(
            body.name.as_deref(),
            now,
            view.generation(),
            &provenance,
            &env,
            &refuse,
            // Profiles' trees share the default profile's root.
            &|n: &str| r.named.is_none() && view.profile_env(n).is_some(),
        )
        .map_err(|e| r.failed(sh, "create", body.name.as_deref().unwrap_or("-"), e))?;
    tracing::info!(release = %r.label(&created.release.name), "{}", created.header.describe());
    note(
        sh,
        "created",
        &r.label(&created.release.name),
        format!(
            "{} packages, {} bytes, {} staging files skipped, {} removed from staging (their \
             builds did not succeed)",
            created.release.packages,
            created.release.bytes,
            created.skipped.len(),
            removed.len()
        ),
    );
    let mut reply = serde_json::to_value(&created)
        .map_err(|e| ApiError::internal(format!("cannot write the reply: {e}")))?;
    reply["removed_from_staging"] = json!(removed);
    Reply::with_status(201, &reply)
}

/// A release action's JSON body, where an empty body means every default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    sh: &Shared,
    req: &mut Request<'_>,
) -> Result<T, ApiError> {
    let body = read_body(req, sh.max_body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(&body)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) fn publish(
    sh: &Shared,
    req: &mut Request<'_>,
    url: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let body: PublishBody = optional_body(sh, req)?;
    if body.force && body.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ReleaseError::ForceWithoutReason.into());
    }
    let v = verdict(sh, &r, name)?;
    let force = body.force.then_some(body.reason.as_deref().unwrap_or(""));
    let now = (sh.clock)().0;
    match r.publish(name, now, v, force) {
        Err(ReleaseError::Refused { name, verdict }) => Ok(Reply::Json(
            409,
            json!({
                "error": format!(
                    "the safety gate refuses to publish {name} ({} reason(s)):\n{}\nfix them, or override with --force --reason TEXT (recorded as an event)",
                    verdict.reasons.len(),
                    verdict.reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n")
                ),
                "reasons": verdict.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "verdict": verdict,
            }),
        )),
        Err(e) => Err(r.failed(sh, "publish", name, e)),
        Ok(done) => {
            if let Some(reason) = &done.forced {
                let reasons: Vec<String> =
                    done.gate.reasons.iter().map(ToString::to_string).collect();
                note(
                    sh,
                    "gate_overridden",
                    &r.label(name),
                    format!("{reason} (overrode: {})", reasons.join("; ")),
                );
            }
            note(
                sh,
                "published",
                &r.label(name),
                format!(
                    "TIMESTAMP {}{}",
                    done.timestamp,
                    done.previous
                        .as_ref()
                        .map(|p| format!(", replacing {p}"))
                        .unwrap_or_default()
                ),
            );
            Reply::ok(&done)
        }
    }
}

pub(crate) fn rollback(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let done = r
        .rollback((sh.clock)().0)
        .map_err(|e| r.failed(sh, "rollback", "-", e))?;
    // Packages the release rolled back from rebuilt at the same version: a
    // client that fetched such a build keeps it in its PKGDIR, and Portage
    // prefers the newest build there over the index's older one (h18). The
    // index alone cannot take those back; the operator is told which.
    let kept = done
        .previous
        .as_deref()
        .and_then(|from| r.diff(&done.release, from).ok())
        .map(|d| d.changed)
        .unwrap_or_default();
    note(
        sh,
        "rolled_back",
        &r.label(&done.release),
        format!(
            "from {}, TIMESTAMP {}{}",
            done.previous.as_deref().unwrap_or("-"),
            done.timestamp,
            if kept.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} rebuilt at the same version, which clients that fetched them keep: {}",
                    kept.len(),
                    kept.join(" ")
                )
            }
        ),
    );
    Reply::ok(&RolledBack {
        published: done,
        rebuilds_clients_keep: kept,
    })
}

/// A rollback's reply: what was published, and the packages (CPVs) that
/// clients who fetched the newer release keep (see [`rollback`]).
#[derive(serde::Serialize)]
struct RolledBack {
    #[serde(flatten)]
    published: crate::binhost::Published,
    rebuilds_clients_keep: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepBody {
    #[serde(default = "yes")]
    keep: bool,
}

impl Default for KeepBody {
    fn default() -> Self {
        KeepBody { keep: true }
    }
}

fn yes() -> bool {
    true
}

pub(crate) fn keep(
    sh: &Shared,
    req: &mut Request<'_>,
    url: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let body: KeepBody = optional_body(sh, req)?;
    let info = r
        .keep(name, body.keep)
        .map_err(|e| r.failed(sh, "keep", name, e))?;
    note(
        sh,
        if body.keep { "kept" } else { "unkept" },
        &r.label(name),
        String::new(),
    );
    Reply::ok(&info)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    tag: String,
    #[serde(default)]
    remove: bool,
}

pub(crate) fn tag(
    sh: &Shared,
    req: &mut Request<'_>,
    url: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let body: TagBody = parse_json(&read_body(req, sh.max_body)?)?;
    let info = r
        .tag(name, &body.tag, body.remove)
        .map_err(|e| r.failed(sh, "tag", name, e))?;
    note(
        sh,
        if body.remove { "untagged" } else { "tagged" },
        &r.label(name),
        body.tag,
    );
    Reply::ok(&info)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    dry_run: bool,
}

pub(crate) fn purge(sh: &Shared, req: &mut Request, url: &str) -> Result<Reply, ApiError> {
    let r = target(sh, url)?;
    let body: PurgeBody = optional_body(sh, req)?;
    let purged = r
        .purge(body.dry_run)
        .map_err(|e| r.failed(sh, "purge", "-", e))?;
    if !body.dry_run {
        for name in &purged {
            note(sh, "purged", &r.label(name), String::new());
        }
    }
    Reply::ok(&json!({ "dry_run": body.dry_run, "purged": purged }))
}
