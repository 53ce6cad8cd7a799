//! Live progress on stderr: on a terminal, a block redrawn in place (counts,
//! a bar, one line per drone with its slots and current builds) under a
//! scrolling log of notable events; otherwise plain lines, one every few
//! seconds, and the same event lines. Every figure is read from the server's
//! `/status`, `/nodes` and `/events` answers the caller passes in.

use std::io::Write;
use std::time::{Duration, Instant};
use swarm_core::Atom;
use swarm_net::client::admin::{EventRecord, Node, Status};

/// Width the block's lines are cut to, so a line never wraps (a wrapped line
/// would break the cursor arithmetic of the redraw).
const WIDTH: usize = 79;
/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(3);

/// What the progress display knows about one tick.
#[derive(Debug)]
pub(crate) struct Tick<'a> {
    /// `/api/v1/status`.
    pub(crate) status: &'a Status,
    /// `/api/v1/nodes`.
    pub(crate) nodes: &'a [Node],
    /// The drone the demo killed, if it has.
    pub(crate) killed: Option<&'a str>,
}

/// The progress display.
#[derive(Debug)]
pub(crate) struct Progress {
    tty: bool,
    start: Instant,
    slots: u32,
    /// Lines of the block currently on screen (terminal mode).
    drawn: usize,
    /// The block last drawn, redrawn after an event line.
    block: Vec<String>,
    last_plain: Option<Instant>,
}

impl Progress {
    /// A display on stderr; `tty` picks the redrawn block over plain lines.
    pub(crate) fn new(tty: bool, slots: u32) -> Progress {
        Progress {
            tty,
            start: Instant::now(),
            slots,
            drawn: 0,
            block: Vec::new(),
            last_plain: None,
        }
    }

    /// `m:ss` since the demo started, for event lines.
    pub(crate) fn clock(&self) -> String {
        let s = self.start.elapsed().as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }

    /// Prints one event line above the block.
    pub(crate) fn note(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let mut out = String::new();
        if self.tty {
            out += &self.erase();
        }
        let width = crate::cli::fmt::columns(crate::cli::fmt::Stream::Stderr);
        out += &crate::cli::fmt::fit(&format!("{:>5}  {line}\n", self.clock()), width);
        if self.tty {
            out += &self.draw_block();
        }
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Shows a new tick.
    pub(crate) fn update(&mut self, tick: &Tick<'_>) {
        if self.tty {
            self.block = block(tick, self.slots, &self.clock());
            let out = self.erase() + &self.draw_block();
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(out.as_bytes());
            let _ = err.flush();
        } else if self.last_plain.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
            self.last_plain = Some(Instant::now());
            let line = plain_line(tick);
            self.note(&line);
        }
    }

    /// Leaves the last block on screen and moves below it.
    pub(crate) fn finish(&mut self) {
        self.drawn = 0;
        self.block.clear();
    }

    fn erase(&mut self) -> String {
        let n = std::mem::take(&mut self.drawn);
        if n == 0 {
            String::new()
        } else {
            format!("\x1b[{n}A\r\x1b[J")
        }
    }

    fn draw_block(&mut self) -> String {
        self.drawn = self.block.len();
        self.block.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// The terminal block: a counts line, a bar, one line per drone.
fn block(tick: &Tick<'_>, slots: u32, clock: &str) -> Vec<String> {
    let c = &tick.status.counts;
    let failed: u64 = tick.nodes.iter().map(|n| n.builds_failed).sum();
    let mut lines = vec![format!(
        "{clock:>5}  built {}/{} · building {} · waiting {} · failed attempts {} · blocked {}",
        c.built,
        c.total,
        c.building,
        c.queued + c.assigned.saturating_sub(c.building),
        failed,
        c.blocked
    )];
    lines.push(format!("       {}", bar(c.built, c.blocked, c.total, 50)));
    for n in tick.nodes {
        lines.push(drone_line(n, slots, tick.status.now_ms, tick.killed));
    }
    lines.into_iter().map(|l| cut(&l, WIDTH)).collect()
}

/// `[█████░░░] 42%`: built, blocked (`x`), the rest.
pub(crate) fn bar(built: u32, blocked: u32, total: u32, width: usize) -> String {
    let total = total.max(1);
    let of = |n: u32| (n as usize * width) / total as usize;
    let done = of(built).min(width);
    let bad = of(blocked).min(width - done);
    format!(
        "[{}{}{}] {:>3}%",
        "█".repeat(done),
        "x".repeat(bad),
        "░".repeat(width - done - bad),
        (built as u64 * 100) / u64::from(total)
    )
}

/// One drone: its state, a slot bar (`█` building, `▒` leased, `·` free) and
/// what it builds, for how long.
fn drone_line(n: &Node, slots: u32, now_ms: u64, killed: Option<&str>) -> String {
    let started = n.leases.iter().filter(|l| l.started_at.is_some()).count();
    let waiting = n.leases.len() - started;
    let shown = (slots as usize).max(n.leases.len());
    let free = shown - started - waiting;
    let slot_bar = format!(
        "{}{}{}",
        "█".repeat(started),
        "▒".repeat(waiting),
        "·".repeat(free)
    );
    let status = if killed == Some(n.name.as_str()) {
        format!("{} (killed)", n.status)
    } else {
        n.status.clone()
    };
    let builds: Vec<String> = n
        .leases
        .iter()
        .map(|l| {
            let name = short(&l.package);
            match l.started_at {
                Some(at) => format!("{name} {:.1}s", now_ms.saturating_sub(at) as f64 / 1000.0),
                None => format!("{name} (next)"),
            }
        })
        .collect();
    format!(
        "  {:<14} {:<17} ▕{slot_bar}▏ {:>3} ok  {}",
        n.name,
        status,
        n.builds_ok,
        builds.join(", ")
    )
}

/// The plain progress line.
fn plain_line(tick: &Tick<'_>) -> String {
    let c = &tick.status.counts;
    let d = &tick.status.drone_counts;
    let failed: u64 = tick.nodes.iter().map(|n| n.builds_failed).sum();
    format!(
        "built {}/{}, building {}, waiting {}, failed attempts {}, blocked {}; drones {} online, {} suspect, {} offline",
        c.built,
        c.total,
        c.building,
        c.queued + c.assigned.saturating_sub(c.building),
        failed,
        c.blocked,
        d.online,
        d.suspect,
        d.offline
    )
}

/// `llvm-19.1.4` for `=llvm-core/llvm-19.1.4`.
pub(crate) fn short(atom: &str) -> String {
    Atom::parse(atom).map_or_else(|_| atom.to_string(), |a| a.pf().to_string())
}

/// An event worth a line, in words; `None` for the routine ones (built,
/// started, heartbeats).
pub(crate) fn describe(e: &EventRecord) -> Option<String> {
    let b = &e.body;
    let text = |key: &str| b.get(key).and_then(|v| v.as_str()).unwrap_or("?");
    let drone = e.drone.as_deref().unwrap_or_else(|| text("drone"));
    let package = e.package.as_deref().unwrap_or_else(|| text("package"));
    Some(match e.kind.as_str() {
        "registered" => format!("{drone} registered"),
        "queued" => format!(
            "queued {} packages ({} already there)",
            b.get("added").and_then(|v| v.as_u64()).unwrap_or(0),
            b.get("already").and_then(|v| v.as_u64()).unwrap_or(0)
        ),
        "build_failed" => format!(
            "{package} failed on {drone} ({}, attempt {}): {}",
            text("class"),
            b.get("attempt").and_then(|v| v.as_u64()).unwrap_or(0),
            first_line(text("detail"))
        ),
        "blocked" => format!("blocked {package}: {}", block_reason(b.get("reason"))),
        "reclaimed" => format!(
            "reclaimed {package} from {drone}: {}{}",
            text("reason"),
            if b.get("started").and_then(|v| v.as_bool()) == Some(true) {
                " (it was building)"
            } else {
                " (not started)"
            }
        ),
        "went_suspect" => format!("{drone} is suspect: its heartbeat is late"),
        "went_offline" => format!("{drone} is offline: no heartbeat within the offline timeout"),
        "came_back" => format!("{drone} is back"),
        "grounded" => format!("{drone} is grounded after repeated infrastructure failures"),
        "brake_engaged" => format!("brake engaged: {}", text("reason")),
        "brake_released" => "brake released".to_string(),
        _ => return None,
    })
}

/// A `BlockReason` as JSON, in the core's own words.
pub(crate) fn block_reason(reason: Option<&serde_json::Value>) -> String {
    match reason {
        None => "no reason given".into(),
        Some(v) => serde_json::from_value::<swarm_core::BlockReason>(v.clone())
            .map_or_else(|_| v.to_string(), |r| r.to_string()),
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// Cuts a line to `width` characters.
fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::Lease;

    #[test]
    fn the_bar_shows_built_and_blocked_in_proportion() {
        assert_eq!(bar(5, 0, 10, 10), "[█████░░░░░]  50%");
        assert_eq!(bar(8, 2, 10, 10), "[████████xx]  80%");
        assert_eq!(bar(0, 0, 0, 4), "[░░░░]   0%");
    }

    #[test]
    fn a_drone_line_shows_its_slots_and_builds_with_their_age() {
        let node = Node {
            name: "demo-drone-1".into(),
            status: "online".into(),
            builds_ok: 3,
            leases: vec![
                Lease {
                    package: "=llvm-core/llvm-19.1.4".into(),
                    started_at: Some(1_000),
                    ..Lease::default()
                },
                Lease {
                    package: "=dev-libs/icu-76.1".into(),
                    ..Lease::default()
                },
            ],
            ..Node::default()
        };
        let line = drone_line(&node, 3, 3_500, None);
        assert!(line.contains("▕█▒·▏"), "{line}");
        assert!(line.contains("llvm-19.1.4 2.5s"), "{line}");
        assert!(line.contains("icu-76.1 (next)"), "{line}");
        assert!(drone_line(&node, 2, 0, Some("demo-drone-1")).contains("(killed)"));
    }

    #[test]
    fn routine_events_are_quiet_and_notable_ones_are_told() {
        let e = |kind: &str, body: serde_json::Value| EventRecord {
            kind: kind.into(),
            body,
            ..EventRecord::default()
        };
        assert_eq!(describe(&e("built", serde_json::json!({}))), None);
        let reclaimed = e(
            "reclaimed",
            serde_json::json!({"drone": "d2", "package": "=a/b-1", "reason": "offline", "started": true}),
        );
        assert_eq!(
            describe(&reclaimed).as_deref(),
            Some("reclaimed =a/b-1 from d2: offline (it was building)")
        );
        let blocked = e(
            "blocked",
            serde_json::json!({"package": "=a/b-1", "reason": {"why": "failed_on_drones", "drones": 2}}),
        );
        assert_eq!(
            describe(&blocked).as_deref(),
            Some("blocked =a/b-1: failed on 2 drones")
        );
    }

    #[test]
    fn long_lines_are_cut_so_the_block_never_wraps() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
