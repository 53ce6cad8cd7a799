//! Admin endpoints: queue, control actions, per-drone actions and the
//! read-only SQL explorer. The router checks the admin token first.

use super::front::Request;
use super::http::{parse_json, read_body, ApiError, Query, Reply};
use super::jobs::Plan;
use super::profile_purge;
use super::read::value;
use super::shared::Shared;
use crate::wire::{QueueItem, QueueRequest, QueueSpec};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use swarm_core::{
    Atom, Control, DroneName, Enqueue, Event, Generation, Input, Output, PackageSpec,
    PortageSnapshot, RejectReason,
};
use swarm_store::{Explorer, ExplorerOptions};

/// Parses an atom, naming its field only when it is bad: a 500-package
/// post holds about 1,500 atoms, and none needs its name formatted.
fn atom_at(text: &str, field: impl FnOnce() -> String) -> Result<Atom, ApiError> {
    Atom::parse(text).map_err(|e| ApiError::field(400, &field(), format!("bad atom {text:?}: {e}")))
}

pub(crate) fn queue(sh: &Shared, req: &mut Request) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    if body.len() >= super::bulk_nice::BULK_BYTES {
        super::bulk_nice::yield_to_drones();
    }
    let r: QueueRequest = parse_json(&body)?;
    if r.packages.is_empty() {
        // v3 answers an empty list with this exact error; its tools check for it.
        return Err(ApiError::field(400, "packages", "No packages"));
    }
    let mut packages = Vec::with_capacity(r.packages.len());
    for (i, item) in r.packages.into_iter().enumerate() {
        packages.push(match item {
            QueueItem::Atom(a) => PackageSpec {
                profile: r.profile.clone(),
                ..PackageSpec::new(atom_at(&a, || format!("packages[{i}]"))?)
            },
            QueueItem::Spec(QueueSpec {
                atom,
                deps,
                priority,
                estimate_s,
                profile,
            }) => PackageSpec {
                atom: atom_at(&atom, || format!("packages[{i}].atom"))?,
                deps: deps
                    .iter()
                    .enumerate()
                    .map(|(j, d)| atom_at(d, || format!("packages[{i}].deps[{j}]")))
                    .collect::<Result<_, _>>()?,
                priority,
                estimate_s,
                profile: profile.or_else(|| r.profile.clone()),
            },
        });
    }
    // Normalised here so the log holds one spelling, and refused with the
    // field named; the core refuses it too.
    let snapshot = match &r.portage_timestamp {
        None => None,
        Some(t) => Some(
            PortageSnapshot::parse(t)
                .map_err(|e| ApiError::field(400, "portage_timestamp", e.to_string()))?
                .as_str()
                .to_owned(),
        ),
    };
    let fresh_profile = match (&r.profile, r.fresh) {
        (Some(name), true) => Some(fresh_profile_check(sh, name, &packages)?),
        _ => None,
    };
    if r.fresh && r.generation.is_some() {
        return Err(ApiError::field(
            400,
            "generation",
            "`fresh` starts a new generation: do not name one",
        ));
    }
    let enqueue = Enqueue {
        packages,
        generation: r.generation.map(Generation),
        portage_snapshot: snapshot,
    };
    swarm_core::bounds::check_enqueue(&enqueue)
        .map_err(|e| ApiError::field(400, &e.field, e.detail))?;
    // `fresh` and the new list go in one group commit: the queue is never
    // seen (or recovered) empty between them. A plain push goes in parts,
    // so drone inputs are committed between them (`lanes`).
    let plan = if r.fresh {
        Plan::Inputs(vec![
            Input::Control(match fresh_profile {
                Some(profile) => Control::FreshProfile { profile },
                None => Control::Fresh,
            }),
            Input::Enqueue(enqueue),
        ])
    } else {
        Plan::Parts(
            enqueue
                .into_parts(swarm_core::PART_WEIGHT)
                .into_iter()
                .map(|e| vec![Input::Enqueue(e)])
                .collect(),
        )
    };
    // No forced publish for a plain push: copying a large core per post would
    // make a big import cost in proportion to the queue; readers that need
    // this seq get a fresh copy on demand (`Shared::fresh`). A new generation
    // is rare and everyone should see it at once.
    let done = sh.submit(plan, None, r.fresh)?;
    rejected(&done.outputs)?;
    let fresh = done.outputs.iter().find_map(|o| match o {
        Output::Event(Event::ControlApplied { summary, .. }) if r.fresh => Some(summary.clone()),
        _ => None,
    });
    // One `Queued` event per part.
    let (added, already) = done
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Queued { added, already }) => Some((*added, *already)),
            _ => None,
        })
        .fold((0u32, 0u32), |(a, b), (x, y)| {
            (a.saturating_add(x), b.saturating_add(y))
        });
    let mut reply = json!({"status": "ok", "queued": added, "already": already, "seq": done.seq});
    if let Some(summary) = fresh {
        let view = sh.fresh();
        reply["fresh"] = json!(summary);
        reply["generation"] = json!(view.swarm.view().generation());
        reply["portage_snapshot"] = json!(view.swarm.view().expected_portage());
    }
    Reply::ok(&reply)
}

/// A fresh list for one profile: the profile exists, and every package is its own (a fresh list
/// replaces that profile's packages only, so a package of another profile in it is refused
/// here, naming it). An atom queued for another profile as well is fine: a package is
/// (profile, atom), and each profile stages its builds in its own tree.
fn fresh_profile_check(
    sh: &Shared,
    name: &str,
    packages: &[PackageSpec],
) -> Result<String, ApiError> {
    if let Some(problem) = swarm_core::profile::name_problem(name) {
        return Err(ApiError::field(400, "profile", problem));
    }
    let p = sh.fresh();
    let view = p.swarm.view();
    if !view.profiles().iter().any(|v| v.name == name) {
        return Err(ApiError::field(
            400,
            "profile",
            format!("no profile {name:?}: create it first (`swarm profile create`)"),
        ));
    }
    if let Some((i, spec)) = packages
        .iter()
        .enumerate()
        .find(|(_, s)| s.profile.as_deref() != Some(name))
    {
        return Err(ApiError::field(
            400,
            &format!("packages[{i}].profile"),
            format!(
                "a fresh list for profile {name} holds {} for profile {}; push it separately",
                spec.atom,
                spec.profile
                    .as_deref()
                    .unwrap_or(swarm_core::profile::DEFAULT_PROFILE)
            ),
        ));
    }
    Ok(name.to_owned())
}

/// The words for [`RejectReason::ProfileConflict`], which logs from when the queue held one
/// package per atom may still replay; the core gives it no more.
fn conflict_words(atom: &str, held: &str, asked: &str) -> String {
    format!("{atom} is queued for profile {held}, not {asked}; nothing was queued")
}

fn rejected(outputs: &[Output]) -> Result<(), ApiError> {
    for o in outputs {
        if let Output::Event(Event::InputRejected { reason }) = o {
            let msg = match reason {
                RejectReason::IllegalControl { detail } => detail.clone(),
                RejectReason::UnknownDrone { drone } => format!("unknown drone {drone}"),
                RejectReason::UnknownPackage { package } => {
                    format!("{package} is not in the queue")
                }
                RejectReason::StaleGeneration { given, current } => format!(
                    "queue generation {given} is older than the current generation {current}"
                ),
                RejectReason::StaleReport { package, .. } => format!("stale report for {package}"),
                RejectReason::NoEnvironment { drone } => format!(
                    "{drone} has reported no build environment (a v3 or an older agent); \
                     write the environment down instead (`env`)"
                ),
                RejectReason::BadSnapshot { detail, .. } => {
                    return Err(ApiError::field(400, "portage_timestamp", detail.clone()))
                }
                RejectReason::ProfileConflict {
                    package,
                    queued_for,
                    asked_for,
                } => {
                    return Err(ApiError::field(
                        409,
                        "profile",
                        conflict_words(package.as_str(), queued_for, asked_for),
                    ))
                }
                RejectReason::AmbiguousPackage { package, profiles } => {
                    return Err(ApiError::field(
                        409,
                        "profile",
                        swarm_core::profile::ambiguous_words(package, profiles),
                    ))
                }
                RejectReason::ProfileBuilding { profile, running } => {
                    return Err(ApiError::field(
                        409,
                        "force",
                        building_words(profile, running),
                    ))
                }
                RejectReason::UnknownProfile { profile } => {
                    return Err(ApiError::field(
                        400,
                        "profile",
                        format!("no profile {profile:?}: create it first (set_profile)"),
                    ))
                }
            };
            return Err(ApiError::new(409, msg));
        }
    }
    Ok(())
}

/// Why a forced removal of `profile` waits for its `running` builds, and what to do.
fn building_words(profile: &str, running: &[Atom]) -> String {
    let one = running.len() == 1;
    let (is, has, them) = if one {
        ("build is", "it has", "it")
    } else {
        ("builds are", "they have", "them")
    };
    let atoms: Vec<&str> = running.iter().map(Atom::as_str).collect();
    format!(
        "{} of profile {profile} {is} running ({}); nothing was changed. A profile is removed \
         once no build of it runs: retry when {has} finished, or reclaim {them} \
         (`swarm control reclaim ATOM --profile {profile}`)",
        running.len(),
        atoms.join(", "),
    )
}

#[derive(Deserialize)]
struct ControlRequest {
    action: String,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    drone: Option<String>,
    #[serde(default)]
    drone_id: Option<String>,
    #[serde(default)]
    node: Option<String>,
    /// `expect_env`, `set_profile`: the environment written down (variable → value).
    #[serde(default)]
    env: Option<std::collections::BTreeMap<String, String>>,
    /// `set_profile`, `remove_profile`, `fresh_profile`: the profile.
    #[serde(default)]
    profile: Option<String>,
    /// `set_profile`: the profile's world set (atoms and `@sets`); absent keeps it.
    #[serde(default)]
    world: Option<Vec<String>>,
    /// `remove_profile`: drop its packages that are not being built first.
    #[serde(default)]
    force: bool,
    /// Why `force` (required with it; recorded in the log with the action).
    #[serde(default)]
    reason: Option<String>,
    /// `remove_profile`: also delete its published tree and release records (refused while
    /// any of its packages is building, or queued without `force`).
    #[serde(default)]
    purge: bool,
}

fn drone_of(sh: &Shared, r: &ControlRequest) -> Result<Option<DroneName>, ApiError> {
    if let Some(id) = &r.drone_id {
        return sh
            .resolve(id)
            .map(Some)
            .ok_or_else(|| ApiError::field(404, "drone_id", format!("unknown drone id {id:?}")));
    }
    match r.drone.as_ref().or(r.node.as_ref()) {
        None => Ok(None),
        Some(n) => DroneName::new(n.clone())
            .map(Some)
            .map_err(|e| ApiError::field(400, "drone", format!("bad drone name {n:?}: {e}"))),
    }
}

/// Maps an action name (swarm's or v3's, `-` or `_`) and its target to a control.
pub(crate) fn control_of(
    action: &str,
    package: Option<Atom>,
    drone: Option<DroneName>,
) -> Result<Control, ApiError> {
    let need_drone = |d: Option<DroneName>| {
        d.ok_or_else(|| ApiError::field(400, "drone", format!("`{action}` needs a `drone`")))
    };
    let need_package = |p: Option<Atom>| {
        p.ok_or_else(|| ApiError::field(400, "package", format!("`{action}` needs a `package`")))
    };
    Ok(match action.replace('-', "_").as_str() {
        "pause" => match drone {
            Some(drone) => Control::PauseDrone { drone },
            None => Control::Pause,
        },
        "resume" => match drone {
            Some(drone) => Control::ResumeDrone { drone },
            None => Control::Resume,
        },
        "pause_drone" => Control::PauseDrone {
            drone: need_drone(drone)?,
        },
        "resume_drone" => Control::ResumeDrone {
            drone: need_drone(drone)?,
        },
        "drain" => Control::Drain {
            drone: need_drone(drone)?,
        },
        "undrain" => Control::Undrain {
            drone: need_drone(drone)?,
        },
        "unblock" => Control::Unblock {
            package,
            profile: None,
        },
        "block" => Control::Block {
            package: need_package(package)?,
            profile: None,
        },
        "unground" => Control::Unground { drone },
        "reset" => Control::Reset,
        "rebalance" => Control::Rebalance,
        "clear_failures" => Control::ClearFailures,
        // `retry` with a package retries that one (v3's `retry` took none and
        // retried every failure, as it still does without one).
        "retry" => match package {
            Some(package) => Control::Retry {
                package,
                profile: None,
            },
            None => Control::RetryFailures,
        },
        "retry_failures" => {
            // Retrying acts on every failed package; a package here would be
            // silently ignored, so say what retries one.
            if let Some(p) = package {
                return Err(ApiError::field(
                    400,
                    "package",
                    format!(
                        "`{action}` retries every failed package and takes no `package`; \
                         to retry {p} alone, use `retry` with the package"
                    ),
                ));
            }
            Control::RetryFailures
        }
        "fresh" => Control::Fresh,
        "reset_escalation" => Control::ResetEscalation {
            drone: need_drone(drone)?,
        },
        "release_brake" => Control::ReleaseBrake,
        "reclaim" => {
            if package.is_none() && drone.is_none() {
                return Err(ApiError::bad("`reclaim` needs a `package` or a `drone`"));
            }
            Control::Reclaim {
                package,
                profile: None,
                drone,
            }
        }
        "clear_history" => Control::ClearHistory,
        "remove_drone" => Control::RemoveDrone {
            drone: need_drone(drone)?,
        },
        _ => {
            return Err(ApiError::field(
                400,
                "action",
                format!("Unknown action: {action}"),
            ));
        }
    })
}

pub(crate) fn control(sh: &Shared, req: &mut Request) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let r: ControlRequest = parse_json(&body)?;
    let package = match &r.package {
        Some(p) => Some(atom_at(p, || "package".to_owned())?),
        None => None,
    };
    let drone = drone_of(sh, &r)?;
    let action = r.action.replace('-', "_");
    let env = match r.env {
        Some(vars) => Some(
            swarm_core::BuildEnv::new(vars)
                .map_err(|e| ApiError::field(400, "env", e.to_string()))?,
        ),
        None => None,
    };
    let profile = || {
        let name = r.profile.clone().ok_or_else(|| {
            ApiError::field(400, "profile", format!("`{action}` needs a `profile`"))
        })?;
        match swarm_core::profile::name_problem(&name) {
            Some(problem) => Err(ApiError::field(400, "profile", problem)),
            None => Ok(name),
        }
    };
    if let Some(problem) = r
        .world
        .as_deref()
        .and_then(swarm_core::profile::world_problem)
    {
        return Err(ApiError::field(400, "world", problem));
    }
    let c = if action == "expect_env" {
        Control::ExpectEnv { env, from: drone }
    } else if action == "set_profile" {
        let name = profile()?;
        // The profile's tree is `<binhost>/<name>/`, where a default release of that name lives.
        if sh.releases.list().0.iter().any(|r| r.name == name) {
            return Err(ApiError::field(
                409,
                "profile",
                format!("{name} is the name of a release of the default profile (/binhost/{name}/); name the profile otherwise"),
            ));
        }
        Control::SetProfile {
            name,
            env,
            from: drone,
            world: r.world.clone(),
        }
    } else if action == "remove_profile" {
        let how = Removal {
            force: r.force,
            reason: r.reason.as_deref(),
            purge: r.purge,
        };
        return remove_profile(sh, &how, profile()?);
    } else if action == "fresh_profile" {
        Control::FreshProfile {
            profile: profile()?,
        }
    } else {
        in_profile(control_of(&r.action, package, drone)?, r.profile.clone())?
    };
    apply(sh, c)
}

/// How `remove_profile` was asked for (see [`ControlRequest`]).
struct Removal<'a> {
    force: bool,
    reason: Option<&'a str>,
    purge: bool,
}

/// `remove_profile`: with `force`, its queued packages are dropped first (in the same commit);
/// with `purge`, its published tree and release records are deleted after; without, the answer
/// says what stays on disk (`kept`).
fn remove_profile(sh: &Shared, r: &Removal<'_>, name: String) -> Result<Reply, ApiError> {
    if r.purge && sh.fresh().swarm.view().profile_env(&name).is_none() {
        // Removed before: purge what it left.
        let purged = profile_purge::purge_removed(sh, &name)?;
        return Reply::ok(
            &json!({"status": "ok", "action": "remove_profile", "profile": name,
                                 "events": [], "purged": purged}),
        );
    }
    let reason = r.reason.map(str::trim).unwrap_or_default();
    if r.force && reason.is_empty() {
        return Err(ApiError::field(
            400,
            "reason",
            "`force` drops the profile's queued packages: say why (`reason`)",
        ));
    }
    if r.purge {
        profile_purge::refuse(sh, &name, r.force)?;
    }
    // One input: the queue is dropped and the profile removed together, or neither (h31 F4).
    let remove = Control::RemoveProfile {
        name: name.clone(),
        force: r.force,
    };
    // Said once it is done: a refusal (a build of it runs) changed nothing (h35 F5).
    let mut answer = applied(sh, vec![remove]).inspect_err(|e| {
        tracing::info!(profile = %name, force = r.force, error = %e.body.error, "profile not removed");
    })?;
    if r.force {
        tracing::warn!(profile = %name, reason, "removed a profile with its queued packages");
    }
    answer["profile"] = json!(name);
    if r.purge {
        answer["purged"] = json!(profile_purge::purge(sh, &name)?);
    } else {
        let found = profile_purge::leftovers(sh, &name);
        answer["note"] = json!(profile_purge::kept_note(&found));
        answer["kept"] = json!(found);
    }
    Reply::ok(&answer)
}

/// Names the profile of the package a control acts on (`block`, `unblock`, `retry`, `reclaim`):
/// needed when its atom is queued in several profiles; `default` is the default profile.
fn in_profile(mut c: Control, given: Option<String>) -> Result<Control, ApiError> {
    let Some(name) = given else {
        return Ok(c);
    };
    if name != swarm_core::profile::DEFAULT_PROFILE {
        if let Some(problem) = swarm_core::profile::name_problem(&name) {
            return Err(ApiError::field(400, "profile", problem));
        }
    }
    match &mut c {
        Control::Unblock { profile, .. }
        | Control::Block { profile, .. }
        | Control::Retry { profile, .. }
        | Control::Reclaim {
            package: Some(_),
            profile,
            ..
        } => *profile = Some(name),
        other => {
            return Err(ApiError::field(
                400,
                "profile",
                format!("`{}` takes no `profile`", other.name()),
            ))
        }
    }
    Ok(c)
}

fn apply(sh: &Shared, c: Control) -> Result<Reply, ApiError> {
    apply_all(sh, vec![c])
}

/// Applies controls in one commit and answers with what they did (the last one's name).
fn apply_all(sh: &Shared, cs: Vec<Control>) -> Result<Reply, ApiError> {
    Reply::ok(&applied(sh, cs)?)
}

/// [`apply_all`]'s answer as JSON.
fn applied(sh: &Shared, cs: Vec<Control>) -> Result<serde_json::Value, ApiError> {
    let name = cs.last().map_or("", Control::name);
    let inputs = cs.into_iter().map(Input::Control).collect();
    let done = sh.submit(Plan::Inputs(inputs), None, true)?;
    rejected(&done.outputs)?;
    let events: Vec<_> = done
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(value(e)),
            Output::Command(_) => None,
        })
        .collect();
    Ok(json!({"status": "ok", "action": name, "events": events, "seq": done.seq}))
}

pub(crate) fn node_action(sh: &Shared, name: &str, action: &str) -> Result<Reply, ApiError> {
    let drone = DroneName::new(name)
        .map_err(|e| ApiError::field(400, "drone", format!("bad drone name {name:?}: {e}")))?;
    let known = sh.published().swarm.view().drone(&drone).is_some() || sh.resolve(name).is_some();
    if !known {
        return Err(ApiError::field(
            404,
            "drone",
            format!("unknown drone {name:?}"),
        ));
    }
    let c = match action {
        "pause" => Control::PauseDrone { drone },
        "resume" => Control::ResumeDrone { drone },
        "drain" => Control::Drain { drone },
        "undrain" => Control::Undrain { drone },
        "reset-escalation" | "reset_escalation" => Control::ResetEscalation { drone },
        "remove" => Control::RemoveDrone { drone },
        other => {
            return Err(ApiError::new(
                404,
                format!("unknown drone action {other:?}: use pause, resume, drain, undrain, reset-escalation or remove"),
            ))
        }
    };
    apply(sh, c)
}

/// The one SQL query running, released when dropped.
struct SqlTurn<'a>(&'a Shared);

impl<'a> SqlTurn<'a> {
    fn take(sh: &'a Shared) -> Result<SqlTurn<'a>, ApiError> {
        sh.sql_running
            .compare_exchange(
                false,
                true,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .map(|_| SqlTurn(sh))
            .map_err(|_| {
                ApiError::new(
                    429,
                    "another SQL query is running (one at a time, each within its 2 s budget); retry in a moment",
                )
            })
    }
}

impl Drop for SqlTurn<'_> {
    fn drop(&mut self) {
        self.0
            .sql_running
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

fn explorer(sh: &Shared, budget: Duration) -> Result<Explorer, ApiError> {
    let opts = ExplorerOptions {
        budget,
        ..ExplorerOptions::default()
    };
    Explorer::open(&sh.db_path, opts).map_err(ApiError::internal)
}

/// A query's own budget (`?timeout_ms=`): shorter than the server's, never
/// longer, since a long read holds the WAL from being checkpointed and the
/// one-at-a-time turn from everyone else. A longer one is refused rather
/// than cut, so `swarm sql --timeout-ms` never means less than it says.
fn sql_budget(q: &Query) -> Result<Duration, ApiError> {
    let most = ExplorerOptions::default().budget;
    let Some(raw) = q.get("timeout_ms") else {
        return Ok(most);
    };
    let max = most.as_millis();
    match raw.parse::<u64>() {
        Ok(ms) if ms >= 1 && u128::from(ms) <= max => Ok(Duration::from_millis(ms)),
        _ => Err(ApiError::field(
            400,
            "timeout_ms",
            format!(
                "{raw:?} is not 1 to {max} ms: the server's explorer gives a query at most \
                 {max} ms (for a longer query, read a copy of the store: swarm sql --db FILE)"
            ),
        )),
    }
}

pub(crate) fn sql(sh: &Shared, what: &str, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let ex = explorer(sh, sql_budget(&q)?)?;
    match what {
        "tables" => Reply::ok(&json!({"tables": ex.tables().map_err(ApiError::internal)?})),
        "schema" => Reply::ok(&json!({"tables": ex.schema().map_err(ApiError::internal)?})),
        "query" => {
            let sql = q
                .get("q")
                .or(q.get("sql"))
                .ok_or_else(|| ApiError::field(400, "q", "send ?q=<SQL>"))?;
            let _turn = SqlTurn::take(sh)?;
            match ex.query(sql) {
                Ok(r) => Reply::ok(&r),
                Err(e) => Err(ApiError::field(400, "q", e.to_string())),
            }
        }
        other => Err(ApiError::new(
            404,
            format!("no such SQL endpoint {other:?}: use tables, schema or query"),
        )),
    }
}
