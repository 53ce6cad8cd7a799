//! `swarm control <action> [target]`: operator actions through
//! `POST /api/v1/control`, with the target checked before anything is sent.

use super::confirm::confirm;
use super::conn::{admin_error, AdminArgs};
use super::fmt::{cell, compact, emit, emit_json, plural};
use anyhow::Context;
use serde_json::Value;
use swarm_core::Atom;
use swarm_net::client::admin::ControlRequest;

#[derive(clap::Args, Debug)]
pub(crate) struct ControlArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// What to do.
    #[arg(value_enum, value_name = "ACTION")]
    action: Action,
    /// The drone or package it concerns (an atom has a `/`, a drone name has none).
    #[arg(value_name = "TARGET")]
    target: Option<String>,
    /// The profile of PACKAGE (block, unblock, retry, reclaim), needed when its atom is queued
    /// in several profiles (`default` for the default profile); unblock with only a profile
    /// unblocks that profile's packages.
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Do a destructive action (fresh, reset, clear_history) without asking
    /// (needed when there is no terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

/// The actions of DESIGN §3 plus v3's names, spelled as the API spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Stop assigning work anywhere (with a drone: only there).
    Pause,
    /// Undo pause (with a drone: only there).
    Resume,
    /// Stop assigning work to DRONE.
    #[value(alias = "pause-drone")]
    PauseDrone,
    /// Undo pause_drone.
    #[value(alias = "resume-drone")]
    ResumeDrone,
    /// Let DRONE finish its work and take nothing new.
    Drain,
    /// Undo drain.
    Undrain,
    /// Requeue blocked PACKAGE, or every blocked package.
    Unblock,
    /// Block PACKAGE by hand (revoking it if assigned).
    Block,
    /// Lift grounding from DRONE, or from all drones.
    Unground,
    /// Forget every drone's failures, groundings and escalations; release the brake.
    Reset,
    /// Reclaim every not-started lease so work spreads again.
    Rebalance,
    /// Forget which drones failed which packages.
    #[value(alias = "clear-failures")]
    ClearFailures,
    /// Retry now: lift backoff and unblock everything not masked.
    #[value(alias = "retry-failures")]
    RetryFailures,
    /// Retry failed PACKAGE now: end its backoff or unblock it.
    Retry,
    /// Start a new queue generation: drop everything not running.
    Fresh,
    /// Put DRONE's escalation ladder back at the bottom.
    #[value(alias = "reset-escalation")]
    ResetEscalation,
    /// Release the disruption brake.
    #[value(alias = "release-brake")]
    ReleaseBrake,
    /// Take back PACKAGE's lease, or all of DRONE's.
    Reclaim,
    /// Forget learned build durations and memory needs.
    #[value(alias = "clear-history")]
    ClearHistory,
    /// Build only on drones whose Portage environment is DRONE's (none: any).
    #[value(alias = "expect-env")]
    ExpectEnv,
}

/// What an action accepts as its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    Nothing,
    Drone,
    OptionalDrone,
    Package,
    OptionalPackage,
    PackageOrDrone,
    /// `pause`/`resume`: nothing for the whole swarm, a drone for one.
    SwarmOrDrone,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::PauseDrone => "pause_drone",
            Action::ResumeDrone => "resume_drone",
            Action::Drain => "drain",
            Action::Undrain => "undrain",
            Action::Unblock => "unblock",
            Action::Block => "block",
            Action::Unground => "unground",
            Action::Reset => "reset",
            Action::Rebalance => "rebalance",
            Action::ClearFailures => "clear_failures",
            Action::RetryFailures => "retry_failures",
            Action::Retry => "retry",
            Action::Fresh => "fresh",
            Action::ResetEscalation => "reset_escalation",
            Action::ReleaseBrake => "release_brake",
            Action::Reclaim => "reclaim",
            Action::ClearHistory => "clear_history",
            Action::ExpectEnv => "expect_env",
        }
    }

    fn takes(self) -> Takes {
        match self {
            Action::Pause | Action::Resume => Takes::SwarmOrDrone,
            Action::PauseDrone
            | Action::ResumeDrone
            | Action::Drain
            | Action::Undrain
            | Action::ResetEscalation => Takes::Drone,
            Action::Unground | Action::ExpectEnv => Takes::OptionalDrone,
            Action::Block | Action::Retry => Takes::Package,
            Action::Unblock => Takes::OptionalPackage,
            Action::Reclaim => Takes::PackageOrDrone,
            Action::Reset
            | Action::Rebalance
            | Action::ClearFailures
            | Action::RetryFailures
            | Action::Fresh
            | Action::ReleaseBrake
            | Action::ClearHistory => Takes::Nothing,
        }
    }
}

fn is_atom(target: &str) -> bool {
    target.contains('/')
}

fn package(target: &str) -> anyhow::Result<Option<String>> {
    let atom = Atom::parse(target).with_context(|| format!("target {target}"))?;
    Ok(Some(atom.as_str().to_owned()))
}

/// The request for an action and its target, or why the pair makes no sense.
pub(crate) fn request(action: Action, target: Option<&str>) -> anyhow::Result<ControlRequest> {
    let name = action.name();
    let mut req = ControlRequest {
        action: name.to_owned(),
        package: None,
        drone: None,
        profile: None,
    };
    let wrong_kind =
        |want: &str, got: &str| anyhow::anyhow!("`{name}` takes {want}, and {got:?} is not one");
    match (action.takes(), target) {
        (Takes::Nothing, None)
        | (Takes::OptionalDrone | Takes::OptionalPackage | Takes::SwarmOrDrone, None) => {}
        (Takes::Nothing, Some(t)) => anyhow::bail!("`{name}` takes no target, but got {t:?}"),
        (Takes::Drone, None) => anyhow::bail!("`{name}` needs a drone name"),
        (Takes::Package, None) => anyhow::bail!("`{name}` needs a package atom"),
        (Takes::PackageOrDrone, None) => {
            anyhow::bail!("`{name}` needs a package atom or a drone name")
        }
        (Takes::Drone | Takes::OptionalDrone, Some(t)) if is_atom(t) => {
            return Err(wrong_kind("a drone name", t))
        }
        (Takes::Package | Takes::OptionalPackage, Some(t)) if !is_atom(t) => {
            return Err(wrong_kind("a package atom (category/name)", t))
        }
        (Takes::SwarmOrDrone, Some(t)) if is_atom(t) => {
            return Err(wrong_kind("a drone name or nothing", t))
        }
        (Takes::SwarmOrDrone, Some(t)) => {
            // v3's `pause <drone>` means the drone, not the swarm.
            req.action = if action == Action::Pause {
                "pause_drone"
            } else {
                "resume_drone"
            }
            .to_owned();
            req.drone = Some(t.to_owned());
        }
        (Takes::Drone | Takes::OptionalDrone, Some(t)) => req.drone = Some(t.to_owned()),
        (Takes::Package | Takes::OptionalPackage, Some(t)) => req.package = package(t)?,
        (Takes::PackageOrDrone, Some(t)) if is_atom(t) => req.package = package(t)?,
        (Takes::PackageOrDrone, Some(t)) => req.drone = Some(t.to_owned()),
    }
    Ok(req)
}

/// What a fresh would drop from the queue now, in words: the status' count
/// of packages not building, or a description when the status cannot be read.
pub(super) fn fresh_drops(c: &super::conn::AdminClient) -> String {
    c.client
        .status()
        .ok()
        .map(|s| s.body.counts.total.saturating_sub(s.body.counts.building))
        .map_or("every package that is not building".to_owned(), |n| {
            format!(
                "{} (every one not building)",
                plural(n as usize, "package", "packages")
            )
        })
}

/// What a destructive action will do, in one sentence, or `None` for the
/// actions that are safe to run without asking.
fn warning(action: Action, c: &super::conn::AdminClient) -> Option<String> {
    match action {
        Action::Fresh => {
            let dropped = fresh_drops(c);
            Some(format!(
                "`fresh` starts a new queue generation: it drops {dropped} and revokes not-started work."
            ))
        }
        Action::Reset => Some(
            "`reset` forgets every drone's failures, groundings and escalation steps, and \
             releases the disruption brake."
                .to_owned(),
        ),
        Action::ClearHistory => Some(
            "`clear_history` forgets every learned build duration and memory need: estimates and \
             placement start from scratch."
                .to_owned(),
        ),
        _ => None,
    }
}

pub(crate) fn run(args: ControlArgs) -> anyhow::Result<()> {
    let mut req = request(args.action, args.target.as_deref())?;
    req.profile = args.profile.clone();
    let c = args.admin.client()?;
    if let Some(what) = warning(args.action, &c) {
        confirm(&what, args.yes)?;
    }
    let answer = c
        .client
        .control(&req)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if args.json {
        return emit_json(&answer.raw);
    }
    let target = req.package.as_deref().or(req.drone.as_deref());
    let head = match target {
        Some(t) => format!("ok: {} {t}", req.action),
        None => format!("ok: {}", req.action),
    };
    emit(&(head + "\n" + &render_events(&answer.body.events)))
}

/// Core events as `  kind key=value ...` lines.
pub(crate) fn render_events(events: &[Value]) -> String {
    if events.is_empty() {
        return "  (nothing changed)\n".to_owned();
    }
    events
        .iter()
        .map(|e| {
            let mut body = e.clone();
            let kind = body
                .as_object_mut()
                .and_then(|m| m.remove("event"))
                .and_then(|k| k.as_str().map(str::to_owned));
            let rest = compact(&body);
            let text = match kind {
                Some(k) if rest.is_empty() => k,
                Some(k) => format!("{k} {rest}"),
                None => rest,
            };
            format!("  {}\n", cell(&text, 160))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(action: Action, target: Option<&str>) -> String {
        match request(action, target) {
            Ok(r) => serde_json::to_string(&r).expect("json"),
            Err(e) => format!("error: {e:#}"),
        }
    }

    #[test]
    fn targets_land_in_the_field_the_action_reads() {
        assert_eq!(json(Action::Pause, None), r#"{"action":"pause"}"#);
        assert_eq!(
            json(Action::Pause, Some("alpha")),
            r#"{"action":"pause_drone","drone":"alpha"}"#
        );
        assert_eq!(
            json(Action::Unblock, Some("dev-libs/foo-1.0")),
            r#"{"action":"unblock","package":"=dev-libs/foo-1.0"}"#
        );
        assert_eq!(json(Action::Unblock, None), r#"{"action":"unblock"}"#);
        assert_eq!(
            json(Action::Reclaim, Some("alpha")),
            r#"{"action":"reclaim","drone":"alpha"}"#
        );
        assert_eq!(
            json(Action::Reclaim, Some("=a/b-1")),
            r#"{"action":"reclaim","package":"=a/b-1"}"#
        );
        assert_eq!(
            json(Action::ResetEscalation, Some("alpha")),
            r#"{"action":"reset_escalation","drone":"alpha"}"#
        );
    }

    #[test]
    fn a_missing_or_wrong_target_is_refused_before_sending() {
        assert_eq!(
            json(Action::Drain, None),
            "error: `drain` needs a drone name"
        );
        assert_eq!(
            json(Action::Block, Some("alpha")),
            "error: `block` takes a package atom (category/name), and \"alpha\" is not one"
        );
        assert_eq!(
            json(Action::Fresh, Some("x")),
            "error: `fresh` takes no target, but got \"x\""
        );
        assert!(json(Action::Block, Some("a/b/c")).contains("target a/b/c"));
    }

    #[test]
    fn events_read_as_kind_then_fields() {
        let events = vec![
            serde_json::json!({"event": "unblocked", "package": "=a/b-1"}),
            serde_json::json!({"event": "paused", "drone": null}),
        ];
        assert_eq!(
            render_events(&events),
            "  unblocked package=\"=a/b-1\"\n  paused drone=null\n"
        );
        assert_eq!(render_events(&[]), "  (nothing changed)\n");
    }
}
