//! The agent's and the CLI's own environment variables. A value that is
//! not UTF-8 was read as unset: the agent ran without the token it was
//! given, and the CLI fell back to another token (h15). Such a value is an
//! error naming the variable, as it is for `serve` (settings'
//! `LoadRequest::from_process`).

/// Fails, naming the first of `names` whose value is not UTF-8 text.
pub(crate) fn require_text(names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        if std::env::var_os(name).is_some_and(|v| v.to_str().is_none()) {
            anyhow::bail!(
                "env {name} is not UTF-8 text: no token, path or URL can be read from it"
            );
        }
    }
    Ok(())
}

/// One variable's text; unset, empty or blank count as unset.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
