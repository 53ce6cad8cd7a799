//! `swarm fleet`: every drone, its liveness and load, and what it is building.

use super::conn::{read_error, ServerArgs};
use super::fmt::{ago, duration, emit, emit_json, load, percent, Align, Table};
use swarm_net::client::admin::Node;

#[derive(clap::Args, Debug)]
pub(crate) struct FleetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: FleetArgs) -> anyhow::Result<()> {
    let answer = args.server.client()?.nodes().map_err(read_error)?;
    if args.json {
        return emit_json(&answer.raw);
    }
    let width = super::fmt::columns(super::fmt::Stream::Stdout);
    emit(&render_within(
        &answer.body.nodes,
        super::fmt::now_ms(),
        width,
    ))
}

/// What a lease on this drone is, when the drone itself cannot be heard:
/// a suspect or offline drone's package is not "building" as far as anyone
/// knows, and shows no ETA. `None` for an online drone.
pub(crate) fn unheard(n: &Node, now_ms: u64) -> Option<String> {
    match n.status.as_str() {
        "online" => None,
        "suspect" => Some(format!(
            "no word: drone suspect, silent {}; requeued if it stays silent",
            duration(now_ms.saturating_sub(n.last_heartbeat))
        )),
        other => Some(format!("no word: drone {other}; being requeued")),
    }
}

/// Why a drone may not be taking work, in a few words.
pub(crate) fn notes(n: &Node, now_ms: u64) -> String {
    let mut notes = Vec::new();
    // Whether a note already says why it takes no work; counts and profiles do not.
    let said = n.paused
        || n.drained
        || n.grounded_until.is_some_and(|u| u > now_ms)
        || matches!(n.status.as_str(), "stopped" | "offline");
    if n.status == "stopped" {
        notes.push("stopped cleanly; back when its agent starts".to_owned());
    }
    if n.status == "offline" {
        notes.push(format!(
            "silent {}; its work was requeued",
            duration(now_ms.saturating_sub(n.last_heartbeat))
        ));
    }
    if n.paused {
        notes.push("paused".to_owned());
    }
    if n.drained {
        notes.push("drained".to_owned());
    }
    if let Some(until) = n.grounded_until.filter(|u| *u > now_ms) {
        notes.push(format!("grounded, back {}", ago(now_ms, until)));
    }
    if n.escalation_steps > 0 {
        notes.push(format!("escalation step {}", n.escalation_steps));
    }
    if n.consecutive_failures > 0 {
        notes.push(format!(
            "{} in a row",
            super::fmt::plural(n.consecutive_failures as usize, "failure", "failures")
        ));
    }
    if !n.env_differences.is_empty() {
        // The closest profile is named when it is not the default one (the only one before
        // profiles, so the text stays what scripts matched).
        let from = n
            .closest_profile
            .as_deref()
            .filter(|p| *p != swarm_core::profile::DEFAULT_PROFILE)
            .map(|p| format!(" from profile {p}"))
            .unwrap_or_default();
        notes.push(format!(
            "ENV DRIFT{from}: {}",
            n.env_differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if n.serves
        .iter()
        .any(|p| p != swarm_core::profile::DEFAULT_PROFILE)
    {
        notes.push(format!("serves {}", n.serves.join(", ")));
    }
    if let Some(why) = n.no_work.as_ref().filter(|_| n.env_differences.is_empty()) {
        // A drone set aside by the brake also has failures in a row: the count alone did not
        // say why it takes no work (h24).
        if !said {
            notes.push(why.clone());
        }
    } else if n.set_aside {
        // Its trial is due, so nothing stops it taking work: still say why it takes one build.
        notes.push("set aside by the brake: its trial build is due".to_owned());
    }
    notes.join(", ")
}

/// The drone table, then one row per lease; pure so its layout is tested.
#[cfg(test)]
pub(crate) fn render(nodes: &[Node], now_ms: u64) -> String {
    render_within(nodes, now_ms, None)
}

/// [`render`] within `width` columns: NOTES go under each drone's row and
/// the least needed columns give way (see [`Table::render_within`]).
pub(crate) fn render_within(nodes: &[Node], now_ms: u64, width: Option<usize>) -> String {
    if nodes.is_empty() {
        return "no drones registered\n".to_owned();
    }
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("STATUS", Align::Left),
        ("HEALTH", Align::Left),
        ("CORES", Align::Right),
        ("SLOTS", Align::Right),
        ("LEASES", Align::Right),
        ("LOAD", Align::Right),
        ("MEM", Align::Right),
        ("DISK", Align::Right),
        ("OK", Align::Right),
        ("FAILED", Align::Right),
        ("SEEN", Align::Left),
        ("ADDRESS", Align::Left),
        ("NOTES", Align::Left),
    ]);
    for n in nodes {
        t.row(vec![
            n.name.clone(),
            n.status.clone(),
            n.health.clone(),
            n.cores.to_string(),
            n.slots.to_string(),
            n.leases.len().to_string(),
            load(n.load_centi),
            percent(n.mem_percent),
            percent(n.disk_percent),
            n.builds_ok.to_string(),
            n.builds_failed.to_string(),
            ago(now_ms, n.last_heartbeat),
            n.address.clone().unwrap_or_else(|| "-".to_owned()),
            notes(n, now_ms),
        ]);
    }
    let mut out = t.render_within(
        width,
        Some("NOTES"),
        &["ADDRESS", "LOAD", "DISK", "MEM", "CORES", "HEALTH"],
    );
    out += &super::fmt::fit(
        "SLOTS: CORES / cores_per_slot, at least 1; `swarm drone --slots` only lowers it\n",
        width,
    );
    let mut builds = Table::new(&[
        ("DRONE", Align::Left),
        ("LEASE", Align::Right),
        ("PACKAGE", Align::Left),
        ("STATE", Align::Left),
        ("ELAPSED", Align::Right),
    ]);
    for n in nodes {
        for l in &n.leases {
            let (state, since) = match l.started_at {
                Some(at) => ("building".to_owned(), at),
                None => ("leased".to_owned(), l.issued_at),
            };
            let state = unheard(n, now_ms).unwrap_or(state);
            builds.row(vec![
                n.name.clone(),
                l.lease.to_string(),
                l.package.clone(),
                state,
                duration(now_ms.saturating_sub(since)),
            ]);
        }
    }
    if !builds.is_empty() {
        out.push('\n');
        out += &builds.render_within(width, Some("STATE"), &["LEASE"]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::Lease;

    #[test]
    fn the_fleet_lists_drones_then_their_builds() {
        let now = 10_000_000;
        let nodes = vec![
            Node {
                name: "alpha".into(),
                status: "online".into(),
                health: "healthy".into(),
                cores: 8,
                slots: 2,
                last_heartbeat: now - 12_000,
                load_centi: Some(150),
                mem_percent: Some(40),
                disk_percent: Some(61),
                builds_ok: 12,
                builds_failed: 1,
                address: Some("10.0.0.5".into()),
                leases: vec![Lease {
                    lease: 7,
                    package: "=dev-libs/foo-1.0".into(),
                    drone: "alpha".into(),
                    issued_at: now - 300_000,
                    started_at: Some(now - 252_000),
                }],
                ..Node::default()
            },
            Node {
                name: "bravo".into(),
                status: "suspect".into(),
                health: "degraded".into(),
                cores: 2,
                slots: 1,
                last_heartbeat: now - 95_000,
                drained: true,
                grounded_until: Some(now + 60_000),
                consecutive_failures: 1,
                leases: vec![Lease {
                    lease: 9,
                    package: "=dev-libs/bar-2.0".into(),
                    drone: "bravo".into(),
                    issued_at: now - 500_000,
                    started_at: Some(now - 423_000),
                }],
                ..Node::default()
            },
            Node {
                name: "charlie".into(),
                status: "stopped".into(),
                health: "healthy".into(),
                cores: 4,
                slots: 1,
                last_heartbeat: now - 30_000,
                no_work: Some("not online".into()),
                ..Node::default()
            },
            Node {
                name: "delta".into(),
                status: "offline".into(),
                health: "healthy".into(),
                cores: 4,
                slots: 1,
                last_heartbeat: now - 420_000,
                no_work: Some("heartbeat late".into()),
                ..Node::default()
            },
        ];
        insta::assert_snapshot!(
            "fleet_with_a_suspect_and_a_stopped_drone",
            render(&nodes, now)
        );
        // In a terminal of 80 columns: notes under their drone, columns left out.
        let narrow = render_within(&nodes, now, Some(80));
        assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
        insta::assert_snapshot!("fleet_at_80_columns", narrow);
    }

    #[test]
    fn notes_say_which_profiles_a_drone_serves_or_what_differs_from_the_closest() {
        let online = |name: &str| Node {
            name: name.into(),
            status: "online".into(),
            health: "healthy".into(),
            ..Node::default()
        };
        let only_default = Node {
            serves: vec!["default".into()],
            ..online("alpha")
        };
        assert_eq!(notes(&only_default, 0), "", "one target: nothing to say");
        let two = Node {
            serves: vec!["default".into(), "fast".into()],
            ..online("bravo")
        };
        assert_eq!(notes(&two, 0), "serves default, fast");
        let set_aside = Node {
            consecutive_failures: 2,
            no_work: Some("its builds failed with the cause the brake is engaged for".into()),
            ..online("delta")
        };
        assert_eq!(
            notes(&set_aside, 0),
            "2 failures in a row, its builds failed with the cause the brake is engaged for"
        );
        let trial_due = Node {
            consecutive_failures: 2,
            set_aside: true,
            ..online("echo")
        };
        assert_eq!(
            notes(&trial_due, 0),
            "2 failures in a row, set aside by the brake: its trial build is due"
        );
        let drift = |closest: &str| Node {
            closest_profile: Some(closest.into()),
            env_differences: vec![swarm_core::EnvDiff {
                key: "CFLAGS".into(),
                expected: "-O3".into(),
                actual: Some("-O2".into()),
            }],
            no_work: Some("environment differs".into()),
            ..online("charlie")
        };
        assert_eq!(
            notes(&drift("fast"), 0),
            "ENV DRIFT from profile fast: CFLAGS (-O2 vs -O3)"
        );
        assert_eq!(
            notes(&drift("default"), 0),
            "ENV DRIFT: CFLAGS (-O2 vs -O3)",
            "the text scripts matched before profiles"
        );
    }

    #[test]
    fn an_empty_fleet_says_so() {
        assert_eq!(render(&[], 0), "no drones registered\n");
    }
}
