//! `swarm logs PACKAGE [--build N]`: a build's log as the drone uploaded it
//! (its tail when the log was large), without a shell on the drone.

use super::conn::{read_error, ServerArgs};
use super::fmt::{emit, emit_json};
use anyhow::{bail, Context};
use swarm_core::Atom;
use swarm_net::client::logs::LoggedBuild;

#[derive(clap::Args, Debug)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The package, e.g. dev-libs/foo-1.2.3.
    #[arg(value_name = "ATOM")]
    package: String,
    /// The build to show (its number in `--list` and in the dashboard; the
    /// lease). Default: the newest build of the package that has a log.
    #[arg(long, value_name = "N")]
    build: Option<u64>,
    /// List the package's builds and which have a log, instead of printing one.
    #[arg(long)]
    list: bool,
    /// Print JSON (the build and its log, or the list).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: LogsArgs) -> anyhow::Result<()> {
    let atom = Atom::parse(&args.package)
        .with_context(|| format!("cannot show logs of {}", args.package))?;
    let client = args.server.client()?;
    let builds = client
        .logged_builds(Some(atom.as_str()), 200)
        .map_err(read_error)?;
    if args.list {
        if args.json {
            let rows: Vec<_> = builds.iter().map(row_json).collect();
            return emit_json(&serde_json::Value::Array(rows));
        }
        return emit(&render_list(atom.as_str(), &builds));
    }
    let chosen = pick(&builds, args.build).with_context(|| {
        format!(
            "no log to show for {}{}",
            atom.as_str(),
            args.build
                .map(|b| format!(" build {b}"))
                .unwrap_or_default()
        )
    })?;
    let lease = chosen.build.lease as u64;
    let text = client.log_text(lease).map_err(read_error)?;
    if args.json {
        let mut v = row_json(chosen);
        if let Some(o) = v.as_object_mut() {
            o.insert("log".into(), serde_json::Value::String(text));
        }
        return emit_json(&v);
    }
    eprintln!("{}", header(chosen));
    // The builder's own text: the terminal wraps it, swarm does not.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    super::fmt::emit_raw(&as_printed(text, tty))
}

/// A log as printed: a terminal gets it without the escape sequences that
/// would drive it; a pipe or a file gets it as the drone sent it.
fn as_printed(text: String, tty: bool) -> String {
    if tty {
        super::fmt::terminal_safe(&text)
    } else {
        text
    }
}

/// The build to show: the asked one, else the newest with a log.
fn pick(builds: &[LoggedBuild], want: Option<u64>) -> anyhow::Result<&LoggedBuild> {
    match want {
        Some(n) => match builds.iter().find(|b| b.build.lease as u64 == n) {
            Some(b) if b.log_bytes.is_some() => Ok(b),
            Some(_) => {
                bail!("build {n} has no stored log (the drone sent none, or retention removed it)")
            }
            None => bail!("build {n} is not a build of this package (see --list)"),
        },
        None => builds
            .iter()
            .find(|b| b.log_bytes.is_some())
            .ok_or_else(|| anyhow::anyhow!("none of its {} builds has a stored log", builds.len())),
    }
}

fn row_json(b: &LoggedBuild) -> serde_json::Value {
    let mut v = serde_json::to_value(&b.build).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("log_bytes".into(), serde_json::json!(b.log_bytes));
    }
    v
}

fn outcome(b: &LoggedBuild) -> String {
    match (&b.build.outcome, &b.build.class) {
        (Some(o), Some(c)) => format!("{o} ({c})"),
        (Some(o), None) => o.clone(),
        (None, _) if b.build.started_at.is_some() => "building".into(),
        (None, _) => "assigned".into(),
    }
}

/// One line naming the build, printed before its log (to stderr).
fn header(b: &LoggedBuild) -> String {
    let mut s = format!(
        "build {} of {} on {}: {}",
        b.build.lease,
        b.build.package,
        b.build.drone,
        outcome(b)
    );
    if let Some(d) = &b.build.detail {
        s += &format!(" — {}", super::fmt::cell(d, 200));
    }
    s
}

/// The `--list` table; pure for tests.
fn render_list(package: &str, builds: &[LoggedBuild]) -> String {
    if builds.is_empty() {
        return format!("{package}: no builds recorded\n");
    }
    let mut out = format!("{:>8}  {:<16}  {:<20}  log\n", "build", "drone", "outcome");
    for b in builds {
        let log = b
            .log_bytes
            .map_or_else(|| "-".to_string(), |n| format!("{n} B"));
        out += &format!(
            "{:>8}  {:<16}  {:<20}  {log}\n",
            b.build.lease,
            super::fmt::cell(&b.build.drone, 16),
            outcome(b)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_store::BuildRow;

    fn b(lease: i64, outcome: Option<&str>, log: Option<u64>) -> LoggedBuild {
        LoggedBuild {
            build: BuildRow {
                lease,
                package: "=a/b-1".into(),
                drone: "d1".into(),
                outcome: outcome.map(str::to_string),
                ..BuildRow::default()
            },
            log_bytes: log,
        }
    }

    #[test]
    fn the_newest_build_with_a_log_is_shown_unless_one_is_named() {
        let builds = [
            b(9, None, None),
            b(7, Some("failed"), Some(300)),
            b(3, Some("success"), Some(10)),
        ];
        assert_eq!(pick(&builds, None).expect("pick").build.lease, 7);
        assert_eq!(pick(&builds, Some(3)).expect("pick").build.lease, 3);
        let e = pick(&builds, Some(9)).expect_err("no log").to_string();
        assert!(e.contains("no stored log"), "{e}");
        let e = pick(&builds, Some(4)).expect_err("unknown").to_string();
        assert!(e.contains("not a build of this package"), "{e}");
        assert!(pick(&[b(1, None, None)], None).is_err());
    }

    #[test]
    fn a_terminal_gets_the_log_without_what_would_drive_it_a_pipe_as_sent() {
        let log = "\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{1b}[0m\n".to_string();
        assert_eq!(
            as_printed(log.clone(), true),
            "^[]0;pwned^G\u{1b}[31mred\u{1b}[0m\n"
        );
        assert_eq!(as_printed(log.clone(), false), log);
    }

    #[test]
    fn the_list_names_each_build_and_its_log() {
        let text = render_list(
            "=a/b-1",
            &[b(7, Some("failed"), Some(300)), b(9, None, None)],
        );
        assert!(
            text.contains("       7  d1                failed                300 B"),
            "{text}"
        );
        assert!(
            text.contains("       9  d1                assigned              -"),
            "{text}"
        );
    }
}
