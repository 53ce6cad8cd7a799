//! `swarm status`: the queue, the fleet and the brake at a glance.

use super::conn::{read_error, ServerArgs};
use super::fmt::{datetime, emit, emit_json};
use swarm_net::client::admin::Status;

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON (v3's counters and swarm's own) instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<()> {
    let answer = args.server.client()?.status().map_err(read_error)?;
    if args.json {
        return emit_json(&answer.raw);
    }
    emit(&render(&answer.body, &args.server.url()))
}

/// The text form; pure so its layout is tested.
pub(crate) fn render(s: &Status, url: &str) -> String {
    let c = &s.counts;
    let mut lines = vec![
        (
            "server",
            format!("{url}  seq {}  at {}", s.seq, datetime(s.now_ms)),
        ),
        (
            "queue",
            format!(
                "{} total: {} queued ({} ready, {} backing off), {} assigned ({} building), \
                 {} built, {} blocked",
                c.total, c.queued, c.ready, c.backoff, c.assigned, c.building, c.built, c.blocked
            ),
        ),
        (
            "drones",
            format!(
                "{} online, {} suspect, {} offline, {} stopped",
                s.drone_counts.online,
                s.drone_counts.suspect,
                s.drone_counts.offline,
                s.drone_counts.stopped
            ),
        ),
        (
            "paused",
            if s.paused {
                "YES: no new work is assigned (`swarm control resume`)".to_owned()
            } else {
                "no".to_owned()
            },
        ),
        ("brake", brake_line(s)),
        ("generation", s.generation.to_string()),
    ];
    if let Some(p) = &s.expected_portage {
        lines.push(("portage", p.clone()));
    }
    lines.push((
        "v3",
        format!(
            "needed {}  delegated {}  received {}  blocked {}  failed {}  total {}  \
             nodes {}/{} online",
            s.needed,
            s.delegated,
            s.received,
            s.blocked,
            s.failed,
            s.total,
            s.nodes_online,
            s.nodes
        ),
    ));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| format!("{k:width$}  {}\n", super::fmt::cell(v, usize::MAX)))
        .collect()
}

fn brake_line(s: &Status) -> String {
    if !s.brake.engaged {
        return "released".to_owned();
    }
    let held = s.brake.held.len();
    let aside = match s.brake.set_aside.as_slice() {
        [] => String::new(),
        names => format!(
            "; set aside, each with one trial build every {}: {}",
            s.brake
                .trial_every_ms
                .map_or_else(|| "brake window".to_owned(), swarm_core::time::human_ms),
            names.join(", ")
        ),
    };
    format!(
        "ENGAGED: {} ({held} package{} held{aside}; `swarm control release_brake` releases it)",
        s.brake.reason,
        if held == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::{Brake, DroneCounts, QueueCounts};

    #[test]
    fn status_reads_as_one_line_per_concern() {
        let s = Status {
            needed: 85,
            delegated: 5,
            received: 30,
            blocked: 5,
            failed: 2,
            total: 120,
            nodes: 4,
            nodes_online: 3,
            paused: false,
            counts: QueueCounts {
                total: 120,
                queued: 80,
                ready: 12,
                backoff: 3,
                assigned: 5,
                building: 4,
                built: 30,
                blocked: 5,
            },
            drone_counts: DroneCounts {
                online: 3,
                suspect: 1,
                offline: 0,
                stopped: 1,
            },
            brake: Brake {
                engaged: true,
                reason: "4 reclaims in 10m".into(),
                held: vec!["=a/b-1".into()],
                set_aside: Vec::new(),
                trial_every_ms: None,
            },
            generation: 2,
            expected_portage: None,
            seq: 991,
            now_ms: 1_771_336_992_000,
        };
        let text = render(&s, "http://127.0.0.1:8100");
        assert_eq!(
            text,
            "server      http://127.0.0.1:8100  seq 991  at 2026-02-17 14:03:12Z\n\
             queue       120 total: 80 queued (12 ready, 3 backing off), 5 assigned (4 building), 30 built, 5 blocked\n\
             drones      3 online, 1 suspect, 0 offline, 1 stopped\n\
             paused      no\n\
             brake       ENGAGED: 4 reclaims in 10m (1 package held; `swarm control release_brake` releases it)\n\
             generation  2\n\
             v3          needed 85  delegated 5  received 30  blocked 5  failed 2  total 120  nodes 3/4 online\n"
        );
    }

    #[test]
    fn the_brake_names_the_drones_it_set_aside() {
        let s = Status {
            brake: Brake {
                engaged: true,
                reason: "8 packages failed on 4 drones".into(),
                held: Vec::new(),
                set_aside: vec!["d0".into(), "d3".into()],
                trial_every_ms: Some(600_000),
            },
            ..Status::default()
        };
        assert_eq!(
            brake_line(&s),
            "ENGAGED: 8 packages failed on 4 drones (0 packages held; set aside, each with one \
             trial build every 10m: d0, d3; `swarm control release_brake` releases it)"
        );
    }
}
