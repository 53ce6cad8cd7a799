//! What the server benchmarks share around their run: the `--synchronous` choice, a scratch
//! data dir that is removed however the run ends, and reading one figure off `/metrics`.

use anyhow::Context;
use std::path::Path;
use swarm_store::Synchronous;

/// `--synchronous normal|full`.
pub(crate) fn synchronous(text: &str) -> anyhow::Result<Synchronous> {
    match text {
        "normal" => Ok(Synchronous::Normal),
        "full" => Ok(Synchronous::Full),
        other => anyhow::bail!("--synchronous must be normal or full, not {other:?}"),
    }
}

/// Runs `f` in a fresh `<tmp>/<prefix>-<pid>` directory and removes it afterwards.
pub(crate) fn in_scratch<T>(
    prefix: &str,
    f: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = f(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The value of the unlabelled series `name` in a `/metrics` text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    // Another series sharing the prefix (`_total`, labels) leaves no number.
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn a_metric_is_read_from_its_own_unlabelled_line() {
        let text = "# HELP swarm_replan_pending Entries left.\n\
                    swarm_replan_pending_total 9\n\
                    swarm_replan_pending{x=\"1\"} 8\n\
                    swarm_replan_pending 7\n";
        assert_eq!(metric(text, "swarm_replan_pending"), Some(7.0));
        assert_eq!(metric(text, "swarm_replan_pending_total"), Some(9.0));
        assert_eq!(metric(text, "swarm_missing"), None);
    }
}
