//! `swarm explain <pkg>`: why a package is where it is, in the core's words.

use super::conn::{read_error, ServerArgs};
use super::fmt::{duration, emit, emit_json, now_ms};
use anyhow::Context;
use swarm_core::Atom;
use swarm_net::client::admin::Explain;
use swarm_net::client::Client;

#[derive(clap::Args, Debug)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The package, e.g. dev-libs/foo-1.2.3.
    #[arg(value_name = "ATOM")]
    package: String,
    /// The profile whose package to explain, when the atom is queued in several (`default` for
    /// the default profile).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Print the server's JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let atom =
        Atom::parse(&args.package).with_context(|| format!("cannot explain {}", args.package))?;
    let client = args.server.client()?;
    let answer = client
        .explain_in(atom.as_str(), args.profile.as_deref())
        .map_err(read_error)?;
    let e = &answer.body;
    let several = e.profiles.len() > 1 && args.profile.is_none();
    let unknown = e.status.is_none() && !several;
    if args.json {
        // The JSON as the server gave it, and the exit code text gets: a
        // script saw 0 for a package not in the queue (h13).
        emit_json(&answer.raw)?;
        anyhow::ensure!(!unknown, "{} is not in the queue", e.package);
        return Ok(());
    }
    if e.status.is_none() && several {
        // Queued in several profiles, none named: each profile's line, and how to pick one.
        return emit(&format!(
            "{}next: `swarm explain {} --profile PROFILE` for one of them\n",
            render(e, now_ms()),
            e.package
        ));
    }
    anyhow::ensure!(
        e.status.is_some(),
        "{} is not in the queue (`swarm queue list` shows what is; `swarm queue add {}` queues it)",
        e.package,
        e.package
    );
    let now = now_ms();
    let mut out = render(e, now);
    let chain = blocking_chain(&client, e);
    out += &next_steps(e, &chain);
    emit(&out)
}

/// Follows "dependency X not built" down to the dependency that holds the
/// package up (at most a few steps, never in a circle).
fn blocking_chain(client: &Client, e: &Explain) -> Vec<Explain> {
    let mut chain: Vec<Explain> = Vec::new();
    let mut text = e.explain.clone();
    for _ in 0..8 {
        let Some(dep) = dependency_in(&text) else {
            break;
        };
        if dep == e.package || chain.iter().any(|c| c.package == dep) {
            break;
        }
        let Ok(answer) = client.explain(&dep) else {
            break;
        };
        text = answer.body.explain.clone();
        chain.push(answer.body);
    }
    chain
}

/// The atom in the core's "waiting: dependency X not built" sentence.
fn dependency_in(explain: &str) -> Option<String> {
    let rest = explain.split("dependency ").nth(1)?;
    let atom = rest.split(" not built").next()?.trim();
    (!atom.is_empty() && atom.contains('/')).then(|| atom.to_owned())
}

fn state_of(e: &Explain) -> &str {
    e.status.as_ref().map_or("", |p| p.status.state.as_str())
}

/// What the operator can do about it, as commands.
pub(crate) fn next_steps(e: &Explain, chain: &[Explain]) -> String {
    let mut out = String::new();
    if let Some(root) = chain.last() {
        let path: Vec<&str> = chain.iter().map(|c| c.package.as_str()).collect();
        out += &format!("held up by: {}\n", path.join(" <- "));
        out += &format!(
            "  {}: {}\n",
            root.package,
            root.explain.lines().next().unwrap_or("")
        );
        if state_of(root) == "blocked" {
            out += &format!(
                "next: see why with `swarm explain {0}` and `swarm history --package {0}`; \
                 once fixed, `swarm control unblock {0}` lets it (and then {1}) build\n",
                root.package, e.package
            );
        }
    }
    let text = &e.explain;
    if text.contains("GB RAM") {
        out += &format!(
            "next: swarm learned this need from an out-of-memory failure. Register a drone with \
             that much RAM, or forget learned needs with `swarm control clear_history` \
             (it forgets learned durations too){}\n",
            if state_of(e) == "blocked" {
                format!(", then `swarm control unblock {}`", e.package)
            } else {
                String::new()
            }
        );
    } else if state_of(e) == "blocked" && !text.contains("masked") {
        out += &format!(
            "next: see why with `swarm history --package {0}`; `swarm control unblock {0}` retries it\n",
            e.package
        );
    } else if state_of(e) == "queued"
        && e.status
            .as_ref()
            .is_some_and(|p| p.status.retry_at.is_some())
    {
        out += &format!(
            "next: it waits out a backoff after failing; once the cause is fixed, \
             `swarm control retry {0}` has it built now\n",
            e.package
        );
    }
    out
}

/// The explanation, then the queue entry's figures; pure for tests.
pub(crate) fn render(e: &Explain, now_ms: u64) -> String {
    let mut out = format!("{}\n", e.package);
    for line in e.explain.lines() {
        out += &format!("  {}\n", super::fmt::cell(line, usize::MAX));
    }
    match &e.status {
        Some(p) => {
            let (state, detail) =
                super::queue::state_text(p, now_ms, &std::collections::BTreeMap::new());
            out += &format!(
                "state: {state}; priority {}, {} failed attempt{}, estimate {}, critical path {}\n",
                p.priority,
                p.attempts,
                if p.attempts == 1 { "" } else { "s" },
                duration(p.estimate_ms),
                duration(p.critical_path_ms)
            );
            if !detail.is_empty() {
                out += &format!("detail: {}\n", super::fmt::cell(&detail, usize::MAX));
            }
        }
        None if e.profiles.len() > 1 => {}
        None => out += "not in the queue\n",
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::{Package, PackageState};

    fn explained(atom: &str, state: &str, explain: &str) -> Explain {
        Explain {
            package: atom.into(),
            explain: explain.into(),
            status: Some(Package {
                atom: atom.into(),
                status: PackageState {
                    state: state.into(),
                    ..PackageState::default()
                },
                ..Package::default()
            }),
            profiles: vec!["default".into()],
        }
    }

    #[test]
    fn a_package_behind_a_blocked_dependency_names_it_and_the_command_to_unblock() {
        let app = explained(
            "=app/x-1",
            "queued",
            "waiting: dependency =dev-libs/y-1 not built",
        );
        assert_eq!(
            dependency_in(&app.explain).as_deref(),
            Some("=dev-libs/y-1")
        );
        let dep = explained("=dev-libs/y-1", "blocked", "blocked: failed on 2 drones");
        insta::assert_snapshot!("explain_blocked_dependency", next_steps(&app, &[dep]));
    }

    #[test]
    fn a_package_in_backoff_says_how_to_retry_it_now() {
        let mut e = explained(
            "=dev-libs/x-1",
            "queued",
            "retrying after failure 1 (compile); next attempt in 59s",
        );
        assert_eq!(next_steps(&e, &[]), "", "no retry_at, no step");
        if let Some(p) = e.status.as_mut() {
            p.status.retry_at = Some(1);
        }
        let steps = next_steps(&e, &[]);
        assert!(
            steps.contains("swarm control retry =dev-libs/x-1"),
            "{steps}"
        );
    }

    #[test]
    fn a_memory_wait_says_how_to_clear_it() {
        let e = explained(
            "=dev-qt/web-6",
            "queued",
            "waiting: no drone with ≥ 24 GB RAM online",
        );
        let steps = next_steps(&e, &[]);
        assert!(steps.contains("swarm control clear_history"), "{steps}");
        assert!(steps.contains("RAM"), "{steps}");
    }

    #[test]
    fn an_explanation_is_followed_by_the_queue_figures() {
        let e = Explain {
            package: "=dev-libs/foo-1.0".into(),
            explain: "queued, ready\nno drone has a free slot".into(),
            status: Some(Package {
                atom: "=dev-libs/foo-1.0".into(),
                status: PackageState {
                    state: "queued".into(),
                    ..PackageState::default()
                },
                priority: 2,
                attempts: 1,
                estimate_ms: 252_000,
                critical_path_ms: 600_000,
                ..Package::default()
            }),
            profiles: vec!["default".into()],
        };
        assert_eq!(
            render(&e, 0),
            "=dev-libs/foo-1.0\n  queued, ready\n  no drone has a free slot\n\
             state: ready; priority 2, 1 failed attempt, estimate 4m12s, critical path 10m00s\n"
        );
        let gone = Explain {
            package: "=a/b-1".into(),
            explain: "unknown package".into(),
            status: None,
            profiles: Vec::new(),
        };
        assert_eq!(
            render(&gone, 0),
            "=a/b-1\n  unknown package\nnot in the queue\n"
        );
        // In several profiles, none named: the explanation's line per profile, no one state.
        let both = Explain {
            package: "=a/b-1".into(),
            explain: "=a/b-1 is queued in profiles default, fast: name one with --profile\n\
                      default: built\nfast: blocked: blocked by operator"
                .into(),
            status: None,
            profiles: vec!["default".into(), "fast".into()],
        };
        assert_eq!(
            render(&both, 0),
            "=a/b-1\n  =a/b-1 is queued in profiles default, fast: name one with --profile\n  \
             default: built\n  fast: blocked: blocked by operator\n"
        );
    }
}
