//! `swarm monitor`: a live terminal view of the queue, the fleet with each
//! running build's elapsed time, ETA and progress, and the latest events.
//!
//! A frame is four reads (status, nodes, assigned packages for estimates,
//! recent events) rendered by a pure function, so `--once` and the tests see
//! exactly what the live view draws.

use super::conn::{read_error, ServerArgs};
use super::fmt::{ago, datetime, duration, emit, load, percent, Align, Table};
use std::collections::BTreeMap;
use std::time::Duration;
use swarm_net::client::admin::{EventQuery, EventRecord, Node, QueueState, Status};
use swarm_net::client::Client;

/// Assigned packages fetched per frame for their estimates.
const ASSIGNED_PAGE: u64 = 1000;

#[derive(clap::Args, Debug)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Seconds between refreshes.
    #[arg(long, value_name = "S", default_value_t = 2)]
    interval_s: u64,
    /// How many recent events to show.
    #[arg(long, value_name = "N", default_value_t = 8)]
    events: u32,
    /// Print one frame without terminal control codes, and exit.
    #[arg(long)]
    once: bool,
}

/// Everything one frame shows.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) status: Status,
    pub(crate) nodes: Vec<Node>,
    /// Estimated build time by atom, for the leased packages.
    pub(crate) estimates: BTreeMap<String, u64>,
    /// Oldest first.
    pub(crate) events: Vec<EventRecord>,
}

fn fetch(client: &Client, events: u32) -> anyhow::Result<Snapshot> {
    let status = client.status().map_err(read_error)?.body;
    let nodes = client.nodes().map_err(read_error)?.body.nodes;
    let assigned = client
        .queue(Some(QueueState::Assigned), 0, ASSIGNED_PAGE)
        .map_err(read_error)?
        .body
        .items;
    let estimates = assigned
        .into_iter()
        .map(|p| (p.atom, p.estimate_ms))
        .collect();
    let mut recent = client
        .events_history(&EventQuery {
            limit: Some(events),
            ..EventQuery::default()
        })
        .map_err(read_error)?
        .body
        .events;
    recent.reverse();
    Ok(Snapshot {
        status,
        nodes,
        estimates,
        events: recent,
    })
}

pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let client = args.server.client();
    let url = args.server.url();
    if args.once {
        let snap = fetch(&client, args.events)?;
        return emit(&render(&snap, &url));
    }
    let interval = Duration::from_secs(args.interval_s.max(1));
    // Clear once; later frames overwrite in place (home, clear each line's
    // tail, clear below) so the view does not flicker.
    emit("\x1b[2J")?;
    loop {
        let frame = match fetch(&client, args.events) {
            Ok(snap) => render(&snap, &url),
            Err(e) => format!(
                "swarm monitor  {url}\n\n{e:#}\n\nretrying every {}s (Ctrl-C quits)\n",
                interval.as_secs()
            ),
        };
        let mut out = String::from("\x1b[H");
        for line in frame.lines() {
            out += line;
            out += "\x1b[K\n";
        }
        out += "\x1b[J";
        emit(&out)?;
        std::thread::sleep(interval);
    }
}

/// `[#####.....]` for a fraction in percent.
fn bar(pct: u64, width: usize) -> String {
    let filled = usize::try_from(pct.min(100)).unwrap_or(0) * width / 100;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// Elapsed, ETA and progress of a started build.
fn progress(elapsed_ms: u64, estimate_ms: u64) -> (String, String) {
    if estimate_ms == 0 {
        return ("?".to_owned(), "no estimate yet".to_owned());
    }
    if elapsed_ms >= estimate_ms {
        return (
            format!("overdue {}", duration(elapsed_ms - estimate_ms)),
            format!("{} 99%", bar(99, 10)),
        );
    }
    // A build is never shown done before it reports.
    let pct = (elapsed_ms * 100 / estimate_ms).min(99);
    (
        duration(estimate_ms - elapsed_ms),
        format!("{} {pct:>2}%", bar(pct, 10)),
    )
}

/// One frame; pure for tests.
pub(crate) fn render(snap: &Snapshot, url: &str) -> String {
    let s = &snap.status;
    let now = if s.now_ms > 0 {
        s.now_ms
    } else {
        super::fmt::now_ms()
    };
    let c = &s.counts;
    let mut out = format!("swarm monitor  {url}  {}  seq {}\n", datetime(now), s.seq);
    if s.paused {
        out += "PAUSED: no new work is assigned (`swarm control resume`)\n";
    }
    if s.brake.engaged {
        out += &format!(
            "BRAKE ENGAGED: {} ({} held; `swarm control release_brake`)\n",
            s.brake.reason,
            s.brake.held.len()
        );
    }
    out += "\n";
    out += &format!(
        "Queue  {} total  {} queued ({} ready, {} backoff)  {} assigned ({} building)  {} built  {} blocked\n",
        c.total, c.queued, c.ready, c.backoff, c.assigned, c.building, c.built, c.blocked
    );
    let done_pct = if c.total == 0 {
        0
    } else {
        u64::from(c.built) * 100 / u64::from(c.total)
    };
    out += &format!(
        "       {} {}/{} built ({done_pct}%)\n",
        bar(done_pct, 40),
        c.built,
        c.total
    );
    out += &format!(
        "Fleet  {} online  {} suspect  {} offline\n\n",
        s.drones.online, s.drones.suspect, s.drones.offline
    );
    out += &fleet_table(snap, now);
    out += "\nRecent events\n";
    if snap.events.is_empty() {
        out += "  none\n";
    } else {
        for line in super::events::render(&snap.events, now).lines() {
            out += &format!("  {line}\n");
        }
    }
    out
}

fn fleet_table(snap: &Snapshot, now: u64) -> String {
    if snap.nodes.is_empty() {
        return "no drones registered\n".to_owned();
    }
    let mut t = Table::new(&[
        ("DRONE", Align::Left),
        ("STATUS", Align::Left),
        ("HEALTH", Align::Left),
        ("LOAD", Align::Right),
        ("MEM", Align::Right),
        ("DISK", Align::Right),
        ("BUILD", Align::Left),
        ("ELAPSED", Align::Right),
        ("ETA", Align::Right),
        ("PROGRESS", Align::Left),
    ]);
    for n in &snap.nodes {
        let head = vec![
            n.name.clone(),
            n.status.clone(),
            n.health.clone(),
            load(n.load_centi),
            percent(n.mem_percent),
            percent(n.disk_percent),
        ];
        if n.leases.is_empty() {
            let notes = super::fleet::notes(n, now);
            let idle = if notes.is_empty() {
                "idle".to_owned()
            } else {
                format!("idle ({notes})")
            };
            let mut row = head;
            row.push(idle);
            t.row(row);
            continue;
        }
        for (i, l) in n.leases.iter().enumerate() {
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 6]
            };
            row.push(super::fmt::cell(&l.package, 48));
            match l.started_at {
                Some(at) => {
                    let elapsed = now.saturating_sub(at);
                    let estimate = snap.estimates.get(&l.package).copied().unwrap_or(0);
                    let (eta, bar) = progress(elapsed, estimate);
                    row.extend([duration(elapsed), eta, bar]);
                }
                None => row.extend([
                    "-".to_owned(),
                    "-".to_owned(),
                    format!("leased {}, not started", ago(now, l.issued_at)),
                ]),
            }
            t.row(row);
        }
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::{DroneCounts, Lease, QueueCounts};

    #[test]
    fn eta_counts_down_and_an_overrun_says_so() {
        assert_eq!(
            progress(252_000, 480_000),
            ("3m48s".to_owned(), "[#####.....] 52%".to_owned())
        );
        assert_eq!(
            progress(500_000, 480_000),
            ("overdue 20s".to_owned(), "[#########.] 99%".to_owned())
        );
        assert_eq!(progress(5, 0).0, "?");
    }

    #[test]
    fn a_frame_shows_queue_fleet_running_builds_and_events() {
        let now = 1_771_336_992_000;
        let snap = Snapshot {
            status: Status {
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
                drones: DroneCounts {
                    online: 2,
                    suspect: 0,
                    offline: 0,
                    stopped: 0,
                },
                paused: true,
                seq: 991,
                now_ms: now,
                ..Status::default()
            },
            nodes: vec![
                Node {
                    name: "alpha".into(),
                    status: "online".into(),
                    health: "healthy".into(),
                    load_centi: Some(150),
                    mem_percent: Some(40),
                    disk_percent: Some(61),
                    leases: vec![
                        Lease {
                            lease: 7,
                            package: "=dev-libs/foo-1.0".into(),
                            drone: "alpha".into(),
                            issued_at: now - 300_000,
                            started_at: Some(now - 252_000),
                        },
                        Lease {
                            lease: 8,
                            package: "=dev-libs/bar-2.0".into(),
                            drone: "alpha".into(),
                            issued_at: now - 10_000,
                            started_at: None,
                        },
                    ],
                    ..Node::default()
                },
                Node {
                    name: "bravo".into(),
                    status: "online".into(),
                    health: "healthy".into(),
                    drained: true,
                    ..Node::default()
                },
            ],
            estimates: [("=dev-libs/foo-1.0".to_owned(), 480_000)].into(),
            events: vec![EventRecord {
                id: 42,
                at_ms: i64::try_from(now - 12_000).expect("fits"),
                kind: "built".into(),
                drone: Some("alpha".into()),
                package: Some("=dev-libs/baz-3".into()),
                body: serde_json::json!({"event": "built", "lease": 6}),
                ..EventRecord::default()
            }],
        };
        assert_eq!(
            render(&snap, "http://127.0.0.1:8100"),
            "swarm monitor  http://127.0.0.1:8100  2026-02-17 14:03:12Z  seq 991\n\
             PAUSED: no new work is assigned (`swarm control resume`)\n\
             \n\
             Queue  120 total  80 queued (12 ready, 3 backoff)  5 assigned (4 building)  30 built  5 blocked\n       \
             [##########..............................] 30/120 built (25%)\n\
             Fleet  2 online  0 suspect  0 offline\n\
             \n\
             DRONE  STATUS  HEALTH   LOAD  MEM  DISK  BUILD              ELAPSED    ETA  PROGRESS\n\
             alpha  online  healthy  1.50  40%   61%  =dev-libs/foo-1.0    4m12s  3m48s  [#####.....] 52%\n\
             \x20                                        =dev-libs/bar-2.0        -      -  leased 10s ago, not started\n\
             bravo  online  healthy     -    -     -  idle (drained)\n\
             \n\
             Recent events\n  \
             AGE      ID  KIND   DRONE  PACKAGE          DETAIL\n  \
             12s ago  42  built  alpha  =dev-libs/baz-3  lease=6\n"
        );
    }
}
