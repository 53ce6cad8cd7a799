//! `swarm config check` and `swarm config show`: the server's configuration as
//! `swarm serve` would load it (same file, same environment, same rules), so
//! an operator finds a typo before a restart, not after.

use clap::Args;
use std::path::PathBuf;
use swarm_net::settings::{LoadRequest, Loaded, Settings, DEFAULT_CONFIG_PATH};

/// `swarm config check`.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The config file [default: /etc/swarm/swarm.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `swarm config show`.
#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The config file [default: /etc/swarm/swarm.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON: {"file", "warnings", "settings": {key: {"value", "source"}}}.
    #[arg(long)]
    json: bool,
}

/// Loads like `swarm serve` does; the error names the key and its source.
fn load(config: Option<PathBuf>) -> anyhow::Result<Loaded> {
    // Variables that are not UTF-8 cannot be swarm's; skip them instead of panicking.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Ok(Settings::load(&LoadRequest::new(config, env))?)
}

/// Prints `ok: <file or defaults>`, or fails (non-zero exit) with the first problem.
pub(crate) fn check(args: CheckArgs) -> anyhow::Result<()> {
    let loaded = load(args.config)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    emit(&format!("{}\n", summary(&loaded)))
}

/// Prints every effective value and where it came from.
pub(crate) fn show(args: ShowArgs) -> anyhow::Result<()> {
    let loaded = load(args.config)?;
    if args.json {
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&to_json(&loaded))?
        ))
    } else {
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        emit(&to_text(&loaded))
    }
}

/// Writes to stdout; a closed pipe (`swarm config show | head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn summary(loaded: &Loaded) -> String {
    let from_env = loaded
        .sources
        .values()
        .filter(|s| matches!(s, swarm_net::settings::Source::Env(_)))
        .count();
    let base = match &loaded.file {
        Some(path) => format!("ok: {}", path.display()),
        None => format!("ok: defaults (no config file; {DEFAULT_CONFIG_PATH} does not exist)"),
    };
    match from_env {
        0 => base,
        1 => format!("{base}, 1 value from the environment"),
        n => format!("{base}, {n} values from the environment"),
    }
}

/// `key = value  # source` lines, values in TOML-like notation.
fn to_text(loaded: &Loaded) -> String {
    let entries = loaded.entries();
    let lines: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let value = match &e.value {
                serde_json::Value::Null => "(unset)".to_owned(),
                v => v.to_string(),
            };
            (format!("{} = {value}", e.key), e.source.to_string())
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .filter(|w| *w <= 60)
        .max()
        .unwrap_or(0);
    let mut out = match &loaded.file {
        Some(path) => format!("# file: {}\n", path.display()),
        None => format!("# file: none ({DEFAULT_CONFIG_PATH} does not exist)\n"),
    };
    for (line, source) in lines {
        out.push_str(&format!("{line:<width$}  # {source}\n"));
    }
    out
}

fn to_json(loaded: &Loaded) -> serde_json::Value {
    let settings: serde_json::Map<String, serde_json::Value> = loaded
        .entries()
        .into_iter()
        .map(|e| {
            (
                e.key,
                serde_json::json!({ "value": e.value, "source": e.source.to_string() }),
            )
        })
        .collect();
    serde_json::json!({
        "file": loaded.file.as_ref().map(|p| p.display().to_string()),
        "warnings": loaded.warnings,
        "settings": settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_net::settings::ConfigFile;

    fn loaded(env: &[(&str, &str)]) -> Loaded {
        let mut request = LoadRequest::new(
            None,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        request.config = ConfigFile::None;
        request.running_as_root = false;
        Settings::load(&request).expect("the settings load")
    }

    #[test]
    fn show_prints_each_value_with_its_source() {
        let l = loaded(&[("HOME", "/home/op"), ("MAX_PREFETCH_PER_DRONE", "3")]);
        let text = to_text(&l);
        assert!(text.starts_with("# file: none"), "{text}");
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        assert_eq!(
            line("listen").as_deref(),
            Some("listen = \"127.0.0.1:8100\" # default")
        );
        assert_eq!(
            line("policy.max_prefetch").as_deref(),
            Some("policy.max_prefetch = 3 # env MAX_PREFETCH_PER_DRONE")
        );
        assert_eq!(
            line("binhost_path").as_deref(),
            Some("binhost_path = (unset) # default")
        );
        assert_eq!(
            line("db_path").as_deref(),
            Some("db_path = \"/home/op/.local/share/swarm/swarm.db\" # default, under data_dir")
        );
    }

    #[test]
    fn show_json_keys_values_by_name() {
        let l = loaded(&[("HOME", "/home/op"), ("ADMIN_SECRET", "0123456789abcdef")]);
        let json = to_json(&l);
        assert_eq!(json["file"], serde_json::Value::Null);
        assert_eq!(
            json["settings"]["admin_token"],
            serde_json::json!({"value": "(hidden)", "source": "env ADMIN_SECRET"})
        );
        assert_eq!(
            json["settings"]["probe.interval_s"],
            serde_json::json!({"value": 60, "source": "default"})
        );
    }

    #[test]
    fn check_says_where_the_values_came_from() {
        assert_eq!(
            summary(&loaded(&[])),
            "ok: defaults (no config file; /etc/swarm/swarm.toml does not exist)"
        );
        assert_eq!(
            summary(&loaded(&[("CONTROL_PLANE_PORT", "9000")])),
            "ok: defaults (no config file; /etc/swarm/swarm.toml does not exist), \
             1 value from the environment"
        );
    }
}
