//! `swarm config check` and `swarm config show`: the server's configuration as
//! `swarm serve` would load it (same file, same environment, same rules), so
//! an operator finds a typo before a restart, not after.

use clap::Args;
use std::path::PathBuf;
use swarm_net::settings::{LoadRequest, Loaded, Settings, DEFAULT_CONFIG_PATH};

/// `swarm config check`.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The config file [default: $SWARM_CONFIG, else /etc/swarm/swarm.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `swarm config show`.
#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The config file [default: $SWARM_CONFIG, else /etc/swarm/swarm.toml if it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON: {"file", "warnings", "settings": {key: {"value", "source"}}}.
    #[arg(long)]
    json: bool,
}

/// Loads like `swarm serve` does; the error names the key and its source.
fn load(config: Option<PathBuf>) -> anyhow::Result<Loaded> {
    Ok(Settings::load(&LoadRequest::from_process(config)?)?)
}

/// Prints `ok: <file or defaults>`, or fails (non-zero exit) with the first
/// problem of the values, else every file or directory `serve` would refuse.
pub(crate) fn check(args: CheckArgs) -> anyhow::Result<()> {
    let loaded = load(args.config)?;
    for warning in &loaded.warnings {
        warn(warning);
    }
    let problems = crate::preflight::problems(&loaded.settings);
    anyhow::ensure!(
        problems.is_empty(),
        "serve would refuse to start:\n  {}",
        problems.join("\n  ")
    );
    emit(&format!("{}\n", summary(&loaded)))
}

/// A loader's warning on stderr, fitted to the terminal.
fn warn(warning: &str) {
    let width = crate::cli::fmt::columns(crate::cli::fmt::Stream::Stderr);
    eprint!(
        "{}",
        crate::cli::fmt::fit(&format!("warning: {warning}\n"), width)
    );
}

/// Prints every effective value and where it came from.
pub(crate) fn show(args: ShowArgs) -> anyhow::Result<()> {
    let loaded = load(args.config)?;
    if args.json {
        crate::cli::fmt::emit_raw(&format!(
            "{}\n",
            serde_json::to_string_pretty(&to_json(&loaded))?
        ))
    } else {
        for warning in &loaded.warnings {
            warn(warning);
        }
        emit(&to_text(&loaded))
    }
}

/// Writes to stdout, fitted to the terminal like every human output
/// (`--json` is for scripts); a closed pipe (`swarm config show | head`) is
/// not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    crate::cli::fmt::emit(text)
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

/// Every policy setting: what it does, and when an operator changes it.
/// `swarm config defaults` prints these above each default; a test keeps
/// the list in step with `swarm_core::Config`.
const POLICY_DOCS: &[(&str, &str, &str)] = &[
    ("heartbeat_grace_ms", "A drone whose last heartbeat is older than this is suspect: it gets no new work (its running builds are left alone).", "Raise it if drones on a slow or lossy link show as suspect while they work; keep it above 3 heartbeats (the agent beats every 15 s)."),
    ("offline_timeout_ms", "A drone silent for this long is offline: every lease it holds is reclaimed and built elsewhere.", "Lower it to rebuild a dead drone's packages sooner; raise it if drones reboot for longer than this and should keep their work."),
    ("confirmed_dead_after_ms", "A suspect drone that two probes in a row find down loses its work this long after its last heartbeat, before the offline timeout.", "Only matters with the prober on; lower it for faster recovery from machines that die outright."),
    ("failover_grace_ms", "After the control plane restarts, no drone is judged offline before this has passed, so a restart reclaims nothing.", "Raise it if your drones need longer than 5 minutes to find a restarted server."),
    ("max_prefetch", "Not-started leases one drone may hold at once (work queued on the drone before a slot is free).", "Raise it for drones with slow links to the server; lower it to 1 to spread a small queue thinly."),
    ("cores_per_slot", "A drone runs max(1, cores / cores_per_slot) builds at once; a drone's --slots can only lower that.", "Lower it (e.g. 2) for small drones that should run two builds; raise it when builds use MAKEOPTS=-j of more cores."),
    ("default_duration_ms", "The estimate for a package that has never been built here; later estimates are learned from history.", "Rarely: it only orders the first run of a new queue."),
    ("failure_memory_ms", "How long a drone that failed a package is kept away from it.", "Lower it if failures were the drone's fault and are fixed quickly."),
    ("block_after_drones", "A package that fails with class `build` on this many distinct drones is blocked: it is the package, not the drones.", "Raise it in a fleet of unlike drones where one bad drone is common."),
    ("retry_base_ms", "The first retry of a failed package waits this long; each later retry waits three times longer.", "Lower it for fast flaky failures; raise it when retries hammer a shared resource."),
    ("retry_cap_ms", "The longest wait between retries.", "Rarely."),
    ("max_attempts", "Failed attempts before a package is blocked.", "Raise it for known-flaky packages; `swarm control unblock` retries a blocked one by hand."),
    ("failure_age_ms", "A blocked package is retried automatically after this long.", "Raise it if auto-retries of broken packages waste drone time."),
    ("max_auto_unblocks", "How many times one package is unblocked automatically; after that only an operator unblocks it.", "Set 0 to keep every block until an operator acts."),
    ("max_drone_failures", "Consecutive infra/OOM failures that ground a drone (the circuit breaker); a success resets the count.", "Lower it to take sick drones out sooner; raise it for drones that fail transiently."),
    ("grounding_timeout_ms", "How long the first grounding lasts; each later one triples, up to grounding_cap_ms.", "Lower it if grounded drones are usually fine again quickly. `swarm control unground` ends it now."),
    ("grounding_cap_ms", "The longest grounding.", "Rarely."),
    ("upload_failure_limit", "Upload failures within upload_failure_window_ms after which a drone takes no work for that window.", "Raise it on unreliable links between drones and the binhost."),
    ("upload_failure_window_ms", "The window for counting upload failures, and the length of the hold that follows.", "Rarely."),
    ("brake_window_ms", "The disruption brake counts groundings, suspect reclaims and escalations within this window.", "Rarely; see brake_ratio_percent."),
    ("brake_ratio_percent", "If more than this percent of active drones would be disrupted within the window, the brake engages: the swarm stops grounding, reclaiming for suspicion and escalating, and says why.", "Lower it to stop fleet-wide damage sooner; `swarm control release_brake` releases it by hand."),
    ("brake_min_drones", "The brake never engages for this many disrupted drones or fewer.", "Raise it in a large fleet where a few sick drones are normal."),
    ("min_consecutive_failures", "Probe failures in a row before any escalation (restart_service, hard_restart, reboot).", "Raise it if probes fail spuriously."),
    ("min_failure_window_ms", "The probe failures must span at least this long before escalation.", "Raise it to give drones more time to recover alone."),
    ("escalation_cooldowns_ms", "Waits after restart_service, hard_restart and reboot before the next step of the ladder.", "Raise the last one for machines that take long to boot."),
    ("max_escalations_per_window", "Escalations allowed fleet-wide per escalation_window_ms: no restart storms.", "Raise it only for large fleets."),
    ("escalation_window_ms", "The window of that fleet-wide limit.", "Rarely."),
    ("replan_interval_ms", "Learned durations and new packages re-plan the critical path at most this often.", "Rarely: lower costs CPU on huge queues."),
    ("ordering", "How ready packages are ordered: `critical_path` (priority, then the longest remaining chain) or `fifo` (Build Swarm v3's enqueue order).", "Only to compare with v3."),
    ("dependency_aware", "Wait for in-queue dependencies before assigning a package.", "Only to compare with v3; off builds packages before their dependencies."),
    ("brake_enabled", "The disruption brake (see brake_ratio_percent).", "Only to compare with v3, which once grounded every drone over a stale queue."),
    ("probe_disk_warning_percent", "A probe that sees the build filesystem at least this full says disk_warning: logged, never escalated.", "Lower it to hear sooner about drones filling up; keep it at most probe_disk_critical_percent."),
    ("probe_disk_critical_percent", "A probe that sees the build filesystem at least this full says disk_critical, which counts toward escalation.", "Lower it if builds fail for lack of space before the disk is this full (big packages in /var/tmp)."),
    ("probe_memory_critical_percent", "A probe that sees at least this much memory in use says memory_critical, which counts toward escalation.", "Raise it for drones that run with little free memory by design."),
    ("probe_overload_per_core_centi", "A probe that sees a 5-minute load above this many runnable tasks per core, times 100, says overloaded (200: twice the cores, sustained; a drone compiling with -j<cores> sits near 100).", "Raise it if drones that build with more jobs than cores are reported overloaded while they work."),
];

/// `swarm config defaults` as text: a commented `[policy]` table, every
/// setting with what it does and when to change it.
pub(crate) fn defaults_text(defaults: &serde_json::Value) -> String {
    let mut out = String::from(
        "# swarm's scheduling policy, every setting at its default.\n\
         # Change one in the [policy] table of swarm.toml (or SWARM_POLICY_<KEY>);\n\
         # `swarm config check` validates the result. Durations are in milliseconds.\n\
         # How they work together: docs/DESIGN.md, section 3 \"Policy\".\n\n[policy]\n",
    );
    let Some(map) = defaults.as_object() else {
        return out;
    };
    for (key, value) in map {
        if let Some((_, what, when)) = POLICY_DOCS.iter().find(|(k, _, _)| k == key) {
            let mut when = when.chars();
            let when: String = when
                .next()
                .map(|c| c.to_lowercase().chain(when).collect())
                .unwrap_or_default();
            for line in wrap(&format!("{what} When to change: {when}"), 76) {
                out.push_str(&format!("# {line}\n"));
            }
        }
        out.push_str(&format!("{key} = {value}\n\n"));
    }
    out
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod defaults_tests {
    use super::*;

    #[test]
    fn every_policy_setting_says_what_it_does_and_when_to_change_it() {
        let value = serde_json::to_value(swarm_core::Config::default()).expect("serializes");
        let keys: Vec<&String> = value.as_object().expect("a table").keys().collect();
        for key in &keys {
            assert!(
                POLICY_DOCS.iter().any(|(k, _, _)| k == key),
                "config defaults has no words for {key}"
            );
        }
        for (k, _, _) in POLICY_DOCS {
            assert!(keys.iter().any(|key| key == k), "{k} is not a setting");
        }
        let text = defaults_text(&value);
        assert!(text.contains("When to change"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }

    #[test]
    fn the_defaults_text_is_a_policy_table_that_parses_as_toml() {
        let value = serde_json::to_value(swarm_core::Config::default()).expect("serializes");
        let parsed: toml::Table = toml::from_str(&defaults_text(&value)).expect("valid TOML");
        assert_eq!(parsed["policy"]["max_prefetch"].as_integer(), Some(2));
    }
}
