//! `swarm history`: finished build attempts, or statistics per package.

use super::conn::{read_error, ServerArgs};
use super::fmt::{ago_i, cell, duration_i, emit, emit_json, now_ms, Align, Table};
use anyhow::Context;
use swarm_core::profile::DEFAULT_PROFILE;
use swarm_core::Atom;
use swarm_net::client::admin::{Build, HistoryQuery, PackageStats};

#[derive(clap::Args, Debug)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Show at most this many builds, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: u32,
    /// Only this package.
    #[arg(long, value_name = "ATOM")]
    package: Option<String>,
    /// Only this drone.
    #[arg(long, value_name = "NAME")]
    drone: Option<String>,
    /// Per-package statistics (builds, successes, failures, mean duration) instead.
    #[arg(long, conflicts_with_all = ["package", "drone"])]
    by_package: bool,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    if args.by_package {
        let answer = client.build_stats().map_err(read_error)?;
        if args.json {
            return emit_json(&answer.raw);
        }
        return emit(&render_stats(&answer.body.packages));
    }
    let package = args
        .package
        .as_deref()
        .map(|p| Atom::parse(p).with_context(|| format!("--package {p}")))
        .transpose()?;
    let answer = client
        .history(&HistoryQuery {
            limit: Some(args.limit),
            package: package.map(|a| a.as_str().to_owned()),
            drone: args.drone.clone(),
        })
        .map_err(read_error)?;
    if args.json {
        return emit_json(&answer.raw);
    }
    emit(&render(&answer.body.builds, now_ms()))
}

/// The build table, newest first; pure for tests.
pub(crate) fn render(builds: &[Build], now_ms: u64) -> String {
    if builds.is_empty() {
        return "no builds recorded\n".to_owned();
    }
    // A profile column once a named profile's build is listed (h31 F5).
    let named = |b: &Build| !b.profile.is_empty() && b.profile != DEFAULT_PROFILE;
    let profiles = builds.iter().any(named);
    let mut columns = vec![("FINISHED", Align::Left), ("PACKAGE", Align::Left)];
    if profiles {
        columns.push(("PROFILE", Align::Left));
    }
    columns.extend([
        ("DRONE", Align::Left),
        ("OUTCOME", Align::Left),
        ("CLASS", Align::Left),
        ("DURATION", Align::Right),
        ("DETAIL", Align::Left),
    ]);
    let mut t = Table::new(&columns);
    for b in builds {
        let finished = match b.finished_at {
            Some(at) => ago_i(now_ms, at),
            None => "running".to_owned(),
        };
        let duration = b
            .duration_ms
            .or_else(|| Some(b.finished_at? - b.started_at?))
            .map(duration_i)
            .unwrap_or_else(|| "-".to_owned());
        let mut row = vec![finished, b.package.clone()];
        if profiles {
            row.push(if b.profile.is_empty() {
                DEFAULT_PROFILE.to_owned()
            } else {
                b.profile.clone()
            });
        }
        row.extend([
            b.drone.clone(),
            b.outcome.clone().unwrap_or_else(|| "-".to_owned()),
            b.class.clone().unwrap_or_default(),
            duration,
            cell(b.detail.as_deref().unwrap_or(""), 80),
        ]);
        t.row(row);
    }
    t.render()
}

/// Per-package statistics; pure for tests.
pub(crate) fn render_stats(stats: &[PackageStats]) -> String {
    if stats.is_empty() {
        return "no builds recorded\n".to_owned();
    }
    let mut t = Table::new(&[
        ("PACKAGE", Align::Left),
        ("BUILDS", Align::Right),
        ("OK", Align::Right),
        ("FAILED", Align::Right),
        ("MEAN", Align::Right),
        ("LAST", Align::Left),
    ]);
    for s in stats {
        t.row(vec![
            s.package.clone(),
            s.builds.to_string(),
            s.ok.to_string(),
            s.failed.to_string(),
            s.avg_duration_ms
                .map(duration_i)
                .unwrap_or_else(|| "-".to_owned()),
            s.last_outcome.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_show_when_where_and_how_long() {
        let now: i64 = 10_000_000;
        let builds = vec![
            Build {
                package: "=dev-libs/foo-1.0".into(),
                drone: "alpha".into(),
                started_at: Some(now - 300_000),
                finished_at: Some(now - 48_000),
                outcome: Some("success".into()),
                duration_ms: Some(252_000),
                ..Build::default()
            },
            Build {
                package: "=dev-libs/bar-2.0".into(),
                drone: "bravo".into(),
                started_at: Some(now - 90_000),
                finished_at: Some(now - 12_000),
                outcome: Some("failed".into()),
                class: Some("build".into()),
                detail: Some("emerge exited 1".into()),
                ..Build::default()
            },
        ];
        assert_eq!(
            render(&builds, u64::try_from(now).expect("positive")),
            "FINISHED  PACKAGE            DRONE  OUTCOME  CLASS  DURATION  DETAIL\n\
             48s ago   =dev-libs/foo-1.0  alpha  success            4m12s\n\
             12s ago   =dev-libs/bar-2.0  bravo  failed   build     1m18s  emerge exited 1\n"
        );
    }

    #[test]
    fn builds_of_a_named_profile_are_listed_with_a_profile_column() {
        let build = |profile: &str| Build {
            package: "=dev-libs/foo-1.0".into(),
            drone: "alpha".into(),
            outcome: Some("success".into()),
            profile: profile.into(),
            ..Build::default()
        };
        let text = render(&[build("default"), build("fast")], 0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("PACKAGE            PROFILE  DRONE"),
            "{text}"
        );
        assert!(
            lines[1].contains("=dev-libs/foo-1.0  default  alpha"),
            "{text}"
        );
        assert!(
            lines[2].contains("=dev-libs/foo-1.0  fast     alpha"),
            "{text}"
        );
        assert!(!render(&[build("default")], 0).contains("PROFILE"));
    }

    #[test]
    fn statistics_show_the_mean_of_successes() {
        let stats = vec![PackageStats {
            package: "=dev-libs/foo-1.0".into(),
            builds: 3,
            ok: 2,
            failed: 1,
            avg_duration_ms: Some(61_000),
            last_outcome: Some("success".into()),
            ..PackageStats::default()
        }];
        assert_eq!(
            render_stats(&stats),
            "PACKAGE            BUILDS  OK  FAILED   MEAN  LAST\n\
             =dev-libs/foo-1.0       3   2       1  1m01s  success\n"
        );
    }
}
