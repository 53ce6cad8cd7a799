//! `/api/v1/releases`: binhost releases. Reads are open like every read
//! endpoint; create, publish, rollback, keep, tag and purge are admin. Each
//! action is recorded in the store as an `Input::Release` event, so the
//! activity feed and `swarm events` show who published what and every gate
//! override with its reason.

use super::front::Request;
use super::http::{parse_json, read_body, ApiError, Query, Reply};
use super::shared::Shared;
use super::writer::Plan;
use crate::binhost::header::HeaderEnv;
use crate::binhost::{ReleaseError, Releases};
use serde::Deserialize;
use serde_json::json;
use swarm_core::release_gate::{check_publish, GateFacts, GateVerdict};
use swarm_core::{BuildEnv, Input, ReleaseNote};

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

fn releases(sh: &Shared) -> &Releases {
    &sh.releases
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

pub(crate) fn list(sh: &Shared) -> Result<Reply, ApiError> {
    let (list, published) = releases(sh).list();
    let rollback_to = releases(sh).rollback_target().ok();
    Reply::ok(&json!({
        "published": published,
        "rollback_to": rollback_to,
        "releases": list,
        "binhost": "/binhost/",
        "keep_last": releases(sh).options().keep_last,
    }))
}

pub(crate) fn show(sh: &Shared, name: &str) -> Result<Reply, ApiError> {
    Reply::ok(&releases(sh).show(name)?)
}

pub(crate) fn diff(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let a = q
        .get("a")
        .ok_or_else(|| ApiError::field(400, "a", "diff needs ?a=RELEASE&b=RELEASE"))?;
    let b = q
        .get("b")
        .ok_or_else(|| ApiError::field(400, "b", "diff needs ?a=RELEASE&b=RELEASE"))?;
    Reply::ok(&releases(sh).diff(a, b)?)
}

/// The gate's verdict on publishing `name` now.
fn verdict(sh: &Shared, name: &str) -> Result<GateVerdict, ApiError> {
    let (mut release, published) = releases(sh).gate_facts(name)?;
    // What each binary was built with, as recorded with its build (issue 17).
    let envs = sh.with_history(|h| h.last_build_envs()).unwrap_or_default();
    for (cpv, facts) in &mut release {
        let recorded = envs
            .get(&format!("={cpv}"))
            .or_else(|| envs.get(cpv.as_str()));
        facts.env = recorded.and_then(|vars| swarm_core::BuildEnv::new(vars.clone()).ok());
    }
    let p = sh.fresh();
    let mut v = check_publish(
        p.swarm.view(),
        &GateFacts {
            release: &release,
            published: published.as_ref(),
            max_drop_permille: releases(sh).options().max_drop_permille,
        },
    );
    v.notes.push(
        "a package's Portage snapshot is the one its drone reported when the release was made; \
         swarm does not record the snapshot of each build"
            .into(),
    );
    Ok(v)
}

pub(crate) fn gate(sh: &Shared, name: &str) -> Result<Reply, ApiError> {
    let v = verdict(sh, name)?;
    Reply::ok(
        &json!({ "release": name, "passed": v.passed(), "reasons": v.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(), "verdict": v }),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
}

pub(crate) fn create(sh: &Shared, req: &mut Request) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let body: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        parse_json(&body)?
    };
    let p = sh.fresh();
    let view = p.swarm.view();
    let builders = sh.with_history(|h| h.last_builders()).unwrap_or_default();
    let snapshots: std::collections::BTreeMap<String, Option<String>> = view
        .drones()
        .into_iter()
        .map(|d| (d.name.as_str().to_string(), d.portage_snapshot))
        .collect();
    let provenance = |cpv: &str| {
        let drone = builders
            .get(&format!("={cpv}"))
            .or_else(|| builders.get(cpv))
            .cloned();
        let snapshot = drone
            .as_ref()
            .and_then(|d| snapshots.get(d).cloned().flatten());
        (drone, snapshot)
    };
    // The index header comes from what the packages were built with (issue 12).
    let envs = sh.with_history(|h| h.last_build_envs()).unwrap_or_default();
    let recorded = |cpv: &str| {
        envs.get(&format!("={cpv}"))
            .or_else(|| envs.get(cpv))
            .and_then(|vars| BuildEnv::new(vars.clone()).ok())
    };
    let env = HeaderEnv {
        recorded: &recorded,
        expected: Some(view.expected_env().clone()),
    };
    let now = (sh.clock)().0;
    let created = releases(sh).create(
        body.name.as_deref(),
        now,
        view.generation(),
        &provenance,
        &env,
    )?;
    tracing::info!(release = %created.release.name, "{}", created.header.describe());
    note(
        sh,
        "created",
        &created.release.name,
        format!(
            "{} packages, {} bytes, {} staging files skipped",
            created.release.packages,
            created.release.bytes,
            created.skipped.len()
        ),
    );
    Reply::with_status(201, &created)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) fn publish(sh: &Shared, req: &mut Request<'_>, name: &str) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let body: PublishBody = if body.iter().all(u8::is_ascii_whitespace) {
        PublishBody::default()
    } else {
        parse_json(&body)?
    };
    if body.force && body.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ReleaseError::ForceWithoutReason.into());
    }
    let v = verdict(sh, name)?;
    let force = body.force.then_some(body.reason.as_deref().unwrap_or(""));
    let now = (sh.clock)().0;
    match releases(sh).publish(name, now, v, force) {
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
        Err(e) => Err(e.into()),
        Ok(done) => {
            if let Some(reason) = &done.forced {
                let reasons: Vec<String> =
                    done.gate.reasons.iter().map(ToString::to_string).collect();
                note(
                    sh,
                    "gate_overridden",
                    name,
                    format!("{reason} (overrode: {})", reasons.join("; ")),
                );
            }
            note(
                sh,
                "published",
                name,
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

pub(crate) fn rollback(sh: &Shared) -> Result<Reply, ApiError> {
    let done = releases(sh).rollback((sh.clock)().0)?;
    note(
        sh,
        "rolled_back",
        &done.release,
        format!(
            "from {}, TIMESTAMP {}",
            done.previous.as_deref().unwrap_or("-"),
            done.timestamp
        ),
    );
    Reply::ok(&done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepBody {
    #[serde(default = "yes")]
    keep: bool,
}

fn yes() -> bool {
    true
}

pub(crate) fn keep(sh: &Shared, req: &mut Request<'_>, name: &str) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let body: KeepBody = if body.iter().all(u8::is_ascii_whitespace) {
        KeepBody { keep: true }
    } else {
        parse_json(&body)?
    };
    let info = releases(sh).keep(name, body.keep)?;
    note(
        sh,
        if body.keep { "kept" } else { "unkept" },
        name,
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

pub(crate) fn tag(sh: &Shared, req: &mut Request<'_>, name: &str) -> Result<Reply, ApiError> {
    let body: TagBody = parse_json(&read_body(req, sh.max_body)?)?;
    let info = releases(sh).tag(name, &body.tag, body.remove)?;
    note(
        sh,
        if body.remove { "untagged" } else { "tagged" },
        name,
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

pub(crate) fn purge(sh: &Shared, req: &mut Request) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let body: PurgeBody = if body.iter().all(u8::is_ascii_whitespace) {
        PurgeBody::default()
    } else {
        parse_json(&body)?
    };
    let purged = releases(sh).purge(body.dry_run)?;
    if !body.dry_run {
        for name in &purged {
            note(sh, "purged", name, String::new());
        }
    }
    Reply::ok(&json!({ "dry_run": body.dry_run, "purged": purged }))
}
