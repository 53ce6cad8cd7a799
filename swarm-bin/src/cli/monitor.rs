//! `swarm monitor`: a live terminal view of the queue, the fleet with each
//! running build's elapsed time, ETA and progress, and the latest events.
//!
//! A frame is four reads (status, nodes, assigned packages for estimates,
//! recent events) rendered by a pure function, so `--once` and the tests see
//! exactly what the live view draws.

use super::conn::{read_error, ServerArgs};
use super::fmt::{ago, datetime, duration, emit_raw, Align, Table};
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
    let client = args.server.client()?;
    let url = args.server.url();
    if args.once {
        let snap = fetch(&client, args.events)?;
        let frame = render(&snap, &url);
        return emit_raw(&match super::term::screen() {
            Some((w, h)) => fit(&frame, w, h),
            None => frame,
        });
    }
    let interval = Duration::from_secs(args.interval_s.max(1));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Keys one at a time (`q` quits); the terminal is restored on the way out.
    let keys = super::term::Keys::new();
    // Clear once; later frames overwrite in place (home, clear each line's
    // tail, clear below) so the view does not flicker.
    emit_raw("\x1b[2J")?;
    'frames: loop {
        let (w, h) = super::term::size().unwrap_or((80, 24));
        let frame = match fetch(&client, args.events) {
            Ok(snap) => render(&snap, &url),
            Err(e) => format!(
                "swarm monitor  {url}\n\n{e:#}\n\nretrying every {}s\n",
                interval.as_secs()
            ),
        };
        // The last row stays empty so the terminal never scrolls the header away.
        let lines: Vec<String> = fit(&frame, w, h)
            .lines()
            .map(|l| format!("{l}\x1b[K"))
            .collect();
        emit_raw(&format!("\x1b[H{}\n\x1b[J", lines.join("\n")))?;
        let until = std::time::Instant::now() + interval;
        while std::time::Instant::now() < until {
            let quit = keys
                .as_ref()
                .is_some_and(|k| k.pending().iter().any(|b| matches!(b, b'q' | b'Q')));
            if quit || stop.load(std::sync::atomic::Ordering::Relaxed) {
                break 'frames;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(keys);
    emit_raw("\n")
}

/// A frame cut to the terminal: every line at most `width` columns, at most
/// `height - 1` lines (the header and the fleet first; the recent events
/// give way), with a note when drones or events did not fit.
pub(crate) fn fit(frame: &str, width: usize, height: usize) -> String {
    let cut = |l: &str| super::fmt::cell(l, width.max(10));
    let lines: Vec<&str> = frame.lines().collect();
    let room = height.saturating_sub(1).max(3);
    let events_at = lines
        .iter()
        .position(|l| *l == "Recent events")
        .unwrap_or(lines.len());
    let (top, events) = lines.split_at(events_at);
    let mut out: Vec<String> = Vec::new();
    if top.len() > room {
        out.extend(top[..room - 1].iter().map(|l| cut(l)));
        out.push(cut(&format!(
            "... {} more lines: `swarm fleet` lists every drone",
            top.len() - (room - 1)
        )));
    } else {
        out.extend(top.iter().map(|l| cut(l)));
        let left = room - top.len();
        if left >= 3 {
            // "Recent events", the table header, and the newest that fit.
            let newest = events.len().saturating_sub(1).min(left - 1);
            out.extend(events.iter().take(1).map(|l| cut(l)));
            let body = &events[1..];
            if let Some((head, rows)) = body.split_first() {
                out.push(cut(head));
                let keep = newest.saturating_sub(1);
                out.extend(
                    rows[rows.len().saturating_sub(keep)..]
                        .iter()
                        .map(|l| cut(l)),
                );
            }
        }
    }
    out.iter().map(|l| format!("{l}\n")).collect()
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
            format!("+{}", duration(elapsed_ms - estimate_ms)),
            format!("{} 99%", bar(99, 5)),
        );
    }
    // A build is never shown done before it reports.
    let pct = (elapsed_ms * 100 / estimate_ms).min(99);
    (
        duration(estimate_ms - elapsed_ms),
        format!("{} {pct:>2}%", bar(pct, 5)),
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
    let mut out = format!(
        "swarm monitor  {}  {}  seq {}  (q quits)\n",
        url.trim_start_matches("http://"),
        datetime(now),
        s.seq
    );
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
        "Queue  {}: {} queued ({} ready)  {} assigned ({} started)  {} built  {} blocked\n",
        c.total, c.queued, c.ready, c.assigned, c.building, c.built, c.blocked
    );
    let done_pct = if c.total == 0 {
        0
    } else {
        u64::from(c.built) * 100 / u64::from(c.total)
    };
    out += &format!(
        "       {} {}/{} built ({done_pct}%)\n",
        bar(done_pct, 30),
        c.built,
        c.total
    );
    out += &format!(
        "Fleet  {} online  {} suspect  {} offline  {} stopped\n\n",
        s.drone_counts.online,
        s.drone_counts.suspect,
        s.drone_counts.offline,
        s.drone_counts.stopped
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
        ("BUILD", Align::Left),
        ("ELAPSED", Align::Right),
        ("ETA", Align::Right),
        ("PROGRESS", Align::Left),
    ]);
    for n in &snap.nodes {
        // Liveness first; the health only when it is worth a look.
        let status = if n.status == "online" && n.health != "healthy" && !n.health.is_empty() {
            n.health.clone()
        } else {
            n.status.clone()
        };
        let head = vec![super::fmt::cell(&n.name, 14), status];
        if n.leases.is_empty() {
            let notes = super::fleet::notes(n, now);
            let idle = if notes.is_empty() {
                "idle".to_owned()
            } else {
                format!("idle ({notes})")
            };
            let mut row = head;
            // As wide as a package name at most, so ELAPSED, ETA and
            // PROGRESS stay on an 80-column screen (`swarm fleet` has it all).
            row.push(super::fmt::cell(&idle, 28));
            t.row(row);
            continue;
        }
        for (i, l) in n.leases.iter().enumerate() {
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 2]
            };
            row.push(super::fmt::cell(&l.package, 28));
            if super::fleet::unheard(n, now).is_some() {
                // A silent drone's build: nobody knows how far it got.
                let why = format!("no word ({})", n.status);
                row.extend(["-".to_owned(), "-".to_owned(), why]);
                t.row(row);
                continue;
            }
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
                    format!("leased {}", ago(now, l.issued_at)),
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
            ("3m48s".to_owned(), "[##...] 52%".to_owned())
        );
        assert_eq!(
            progress(500_000, 480_000),
            ("+20s".to_owned(), "[####.] 99%".to_owned())
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
                drone_counts: DroneCounts {
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
        let frame = render(&snap, "http://127.0.0.1:8100");
        insta::assert_snapshot!("monitor_frame", frame);
        // At 80×24 nothing wraps and the header stays on screen.
        let fitted = fit(&frame, 80, 24);
        assert!(fitted.lines().count() <= 23, "{fitted}");
        assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
        assert!(fitted.starts_with("swarm monitor"), "{fitted}");
        insta::assert_snapshot!("monitor_frame_80x24", fitted);
    }

    #[test]
    fn a_tall_fleet_keeps_the_header_and_says_what_did_not_fit() {
        let frame: String = std::iter::once("swarm monitor  x\n".to_owned())
            .chain((0..40).map(|i| {
                format!(
                    "drone-{i:02}  online  =dev-libs/some-very-long-package-name-{i}-1.0.0  {}\n",
                    "x".repeat(60)
                )
            }))
            .chain([
                "Recent events\n".to_owned(),
                "AGE ID\n".to_owned(),
                "1s 1\n".to_owned(),
            ])
            .collect();
        let fitted = fit(&frame, 80, 24);
        assert_eq!(fitted.lines().count(), 23, "{fitted}");
        assert!(fitted.starts_with("swarm monitor"));
        assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
        assert!(fitted.contains("more lines: `swarm fleet`"), "{fitted}");
    }
}
