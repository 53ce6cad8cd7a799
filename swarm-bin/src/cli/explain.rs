//! `swarm explain <pkg>`: why a package is where it is, in the core's words.

use super::conn::{read_error, ServerArgs};
use super::fmt::{duration, emit, emit_json, now_ms};
use anyhow::Context;
use swarm_core::Atom;
use swarm_net::client::admin::Explain;

#[derive(clap::Args, Debug)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The package, e.g. dev-libs/foo-1.2.3.
    #[arg(value_name = "ATOM")]
    package: String,
    /// Print the server's JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let atom =
        Atom::parse(&args.package).with_context(|| format!("cannot explain {}", args.package))?;
    let answer = args
        .server
        .client()
        .explain(atom.as_str())
        .map_err(read_error)?;
    if args.json {
        return emit_json(&answer.raw);
    }
    emit(&render(&answer.body, now_ms()))
}

/// The explanation, then the queue entry's figures; pure for tests.
pub(crate) fn render(e: &Explain, now_ms: u64) -> String {
    let mut out = format!("{}\n", e.package);
    for line in e.explain.lines() {
        out += &format!("  {}\n", super::fmt::cell(line, usize::MAX));
    }
    match &e.status {
        Some(p) => {
            let (state, detail) = super::queue::state_text(p, now_ms);
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
        None => out += "not in the queue\n",
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::client::admin::{Package, PackageState};

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
        };
        assert_eq!(
            render(&gone, 0),
            "=a/b-1\n  unknown package\nnot in the queue\n"
        );
    }
}
