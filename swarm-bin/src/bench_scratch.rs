//! What the server benchmarks share around their run: the `--synchronous` choice and a scratch
//! data dir that is removed however the run ends.

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
