//! `swarm events [--follow]`: what the swarm did, newest last, and then what
//! it does as it happens.

use super::conn::{read_error, ServerArgs};
use super::fmt::{ago_i, cell, clock, compact, emit, emit_json, now_ms, Align, Table};
use serde_json::Value;
use std::time::Duration;
use swarm_net::client::admin::{EventQuery, EventRecord};

/// Events fetched per request while following.
const FOLLOW_PAGE: u32 = 500;

#[derive(clap::Args, Debug)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Show this many recent events.
    #[arg(long, value_name = "N", default_value_t = 30)]
    limit: u32,
    /// Only events about this drone.
    #[arg(long, value_name = "NAME")]
    drone: Option<String>,
    /// Only events of this kind (built, build_failed, reclaimed, blocked, ...).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Keep printing new events as they happen (until interrupted).
    #[arg(short, long)]
    follow: bool,
    /// With --follow: milliseconds between polls when nothing is new.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    poll_ms: u64,
    /// Print the server's JSON (with --follow: one event per line).
    #[arg(long)]
    json: bool,
}

/// Every kind of event the core emits (the `event` tag of `swarm_core::Event`).
pub(crate) const KINDS: &[&str] = &[
    "env_changed",
    "registered",
    "went_suspect",
    "went_offline",
    "came_back",
    "deregistered",
    "removed",
    "reclaimed",
    "queued",
    "started",
    "built",
    "build_failed",
    "blocked",
    "unblocked",
    "grounded",
    "ungrounded",
    "upload_hold",
    "escalated",
    "input_rejected",
    "brake_engaged",
    "brake_released",
    "paused",
    "resumed",
    "release",
    "control_applied",
];

/// A `--kind` that names no event kind is a typo, not an empty feed.
fn check_kind(kind: Option<&str>) -> anyhow::Result<()> {
    match kind {
        Some(k) if !KINDS.contains(&k) => {
            anyhow::bail!("no event kind {k:?}; the kinds are: {}", KINDS.join(", "))
        }
        _ => Ok(()),
    }
}

pub(crate) fn run(args: EventsArgs) -> anyhow::Result<()> {
    check_kind(args.kind.as_deref())?;
    let client = args.server.client()?;
    let filter = EventQuery {
        limit: Some(args.limit),
        drone: args.drone.clone(),
        kind: args.kind.clone(),
    };
    let answer = client.events_history(&filter).map_err(read_error)?;
    let mut recent = answer.body.events;
    recent.reverse();
    if !args.follow {
        if args.json {
            return emit_json(&answer.raw);
        }
        return emit(&render(&recent, now_ms()));
    }
    // The feed's tip, unfiltered, so following starts at "now" even when the
    // filter matched nothing recent.
    let tip = client
        .events_history(&EventQuery {
            limit: Some(1),
            ..EventQuery::default()
        })
        .map_err(read_error)?
        .body
        .events
        .first()
        .map(|e| e.id)
        .unwrap_or(0);
    let mut after = recent.iter().map(|e| e.id).max().unwrap_or(0).max(tip);
    for e in &recent {
        print_followed(e, args.json)?;
    }
    let mut warned = false;
    loop {
        match client.events_after(after, Some(FOLLOW_PAGE)) {
            Ok(page) => {
                if warned {
                    eprintln!("swarm: reached {} again", client.base());
                    warned = false;
                }
                let events = page.body.events;
                let full = events.len() >= FOLLOW_PAGE as usize;
                for e in &events {
                    after = after.max(e.id);
                    if matches(e, &filter) {
                        print_followed(e, args.json)?;
                    }
                }
                if let Some(next) = page.body.next {
                    after = after.max(next);
                }
                if full {
                    continue;
                }
            }
            Err(e) if e.is_transport() => {
                if !warned {
                    eprintln!("swarm: {e}; retrying");
                    warned = true;
                }
            }
            Err(e) => return Err(read_error(e)),
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms.max(100)));
    }
}

fn matches(e: &EventRecord, f: &EventQuery) -> bool {
    f.drone.as_ref().is_none_or(|d| e.drone.as_ref() == Some(d))
        && f.kind.as_ref().is_none_or(|k| &e.kind == k)
}

fn print_followed(e: &EventRecord, json: bool) -> anyhow::Result<()> {
    if json {
        return super::fmt::emit_raw(&(serde_json::to_string(e)? + "\n"));
    }
    emit(&(line(e) + "\n"))
}

/// What the body says beyond kind, drone and package.
pub(crate) fn detail(e: &EventRecord) -> String {
    let mut body = e.body.clone();
    if let Value::Object(map) = &mut body {
        for key in ["event", "kind", "drone", "package"] {
            map.remove(key);
        }
    }
    cell(&compact(&body), 100)
}

/// One followed event: fixed columns, since a stream cannot be aligned after
/// the fact.
pub(crate) fn line(e: &EventRecord) -> String {
    let at = clock(u64::try_from(e.at_ms).unwrap_or(0));
    let text = format!(
        "{at}Z  #{:<6} {:<16} {:<12} {:<28} {}",
        e.id,
        e.kind,
        e.drone.as_deref().unwrap_or("-"),
        e.package.as_deref().unwrap_or("-"),
        detail(e)
    );
    cell(text.trim_end(), usize::MAX)
}

/// Recent events, oldest first; pure for tests.
pub(crate) fn render(events: &[EventRecord], now_ms: u64) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let mut t = Table::new(&[
        ("AGE", Align::Left),
        ("ID", Align::Right),
        ("KIND", Align::Left),
        ("DRONE", Align::Left),
        ("PACKAGE", Align::Left),
        ("DETAIL", Align::Left),
    ]);
    for e in events {
        t.row(vec![
            ago_i(now_ms, e.at_ms),
            e.id.to_string(),
            e.kind.clone(),
            e.drone.clone().unwrap_or_else(|| "-".to_owned()),
            e.package.clone().unwrap_or_else(|| "-".to_owned()),
            detail(e),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds the list once lacked can be asked for (README names
    /// `swarm events --kind release`), `release` as the core tags it.
    #[test]
    fn release_and_env_changed_are_kinds() {
        let release = swarm_core::Event::Release {
            action: "published".into(),
            release: "r1".into(),
            detail: String::new(),
        };
        let tag = serde_json::to_value(&release).expect("json")["event"].clone();
        assert_eq!(tag, serde_json::json!("release"));
        check_kind(Some("release")).expect("a kind");
        assert!(check_kind(Some("env_changed")).is_ok());
        assert!(check_kind(Some("nonsense")).is_err());
    }

    fn built() -> EventRecord {
        EventRecord {
            id: 42,
            seq: 7,
            at_ms: 1_771_336_992_000,
            kind: "built".into(),
            drone: Some("alpha".into()),
            package: Some("=dev-libs/foo-1.0".into()),
            body: serde_json::json!({
                "event": "built", "drone": "alpha", "package": "=dev-libs/foo-1.0",
                "lease": 7, "duration_ms": 252000
            }),
        }
    }

    #[test]
    fn recent_events_show_their_age_and_what_the_body_adds() {
        let e = built();
        let now = 1_771_336_992_000 + 12_000;
        assert_eq!(
            render(&[e], now),
            "AGE      ID  KIND   DRONE  PACKAGE            DETAIL\n\
             12s ago  42  built  alpha  =dev-libs/foo-1.0  duration_ms=252000 lease=7\n"
        );
    }

    #[test]
    fn a_followed_event_is_one_line_with_its_clock_time() {
        assert_eq!(
            line(&built()),
            "14:03:12Z  #42     built            alpha        =dev-libs/foo-1.0            duration_ms=252000 lease=7"
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_with_the_list() {
        assert!(check_kind(Some("built")).is_ok());
        assert!(check_kind(None).is_ok());
        let err = check_kind(Some("nonsense")).expect_err("typo").to_string();
        assert!(err.contains("built, build_failed"), "{err}");
    }

    #[test]
    fn every_kind_is_one_the_core_emits() {
        let sample = swarm_core::Event::Deregistered {
            drone: swarm_core::DroneName::new("a").expect("name"),
        };
        let tag = serde_json::to_value(&sample).expect("json")["event"].clone();
        assert!(KINDS.contains(&tag.as_str().expect("tag")), "{tag}");
    }

    #[test]
    fn the_follow_filter_matches_drone_and_kind() {
        let e = built();
        let f = |drone: Option<&str>, kind: Option<&str>| EventQuery {
            limit: None,
            drone: drone.map(str::to_owned),
            kind: kind.map(str::to_owned),
        };
        assert!(matches(&e, &f(None, None)));
        assert!(matches(&e, &f(Some("alpha"), Some("built"))));
        assert!(!matches(&e, &f(Some("bravo"), None)));
        assert!(!matches(&e, &f(None, Some("reclaimed"))));
    }
}
