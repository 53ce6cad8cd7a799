//! Environment variables: Build Swarm v3's names (with their units) first,
//! then swarm's own `SWARM_*` names, which win when both are set.

use super::keys::{self, Typed};
use super::SettingsError;
use super::Source;
use std::collections::BTreeMap;

/// How a v3 variable's number maps onto swarm's key.
#[derive(Clone, Copy)]
enum Unit {
    /// Same meaning and unit.
    Same,
    /// v3 seconds, swarm milliseconds.
    SecondsToMs,
    /// v3 minutes, swarm milliseconds.
    MinutesToMs,
    /// Only the port of `listen`.
    Port,
}

/// Build Swarm v3's variables. `SELF_HEAL_*` names not listed here are an
/// error: v3 had more of them, and silently ignoring one would leave an
/// operator believing a setting took effect.
const V3: &[(&str, &str, Unit)] = &[
    ("CONTROL_PLANE_PORT", "listen", Unit::Port),
    (
        "MAX_DRONE_FAILURES",
        "policy.max_drone_failures",
        Unit::Same,
    ),
    // v3 reads GROUNDING_TIMEOUT as minutes (GROUNDING_TIMEOUT_MINUTES).
    (
        "GROUNDING_TIMEOUT",
        "policy.grounding_timeout_ms",
        Unit::MinutesToMs,
    ),
    (
        "FAILURE_AGE_MINUTES",
        "policy.failure_age_ms",
        Unit::MinutesToMs,
    ),
    // v3 marks a node offline (no work, shown offline) after NODE_TIMEOUT
    // seconds without a heartbeat: swarm's suspect state. Reclaiming its
    // work is RECLAIM_OFFLINE_TIMEOUT_MINUTES in both.
    (
        "NODE_TIMEOUT",
        "policy.heartbeat_grace_ms",
        Unit::SecondsToMs,
    ),
    ("CORES_PER_SLOT", "policy.cores_per_slot", Unit::Same),
    (
        "MAX_UPLOAD_FAILURES",
        "policy.upload_failure_limit",
        Unit::Same,
    ),
    (
        "UPLOAD_RETRY_INTERVAL_M",
        "policy.upload_failure_window_ms",
        Unit::MinutesToMs,
    ),
    (
        "RECLAIM_OFFLINE_TIMEOUT_MINUTES",
        "policy.offline_timeout_ms",
        Unit::MinutesToMs,
    ),
    ("MAX_PREFETCH_PER_DRONE", "policy.max_prefetch", Unit::Same),
    ("ADMIN_SECRET", "admin_token", Unit::Same),
    ("STAGING_PATH", "staging_path", Unit::Same),
    ("BINHOST_PATH", "binhost_path", Unit::Same),
    ("SELF_HEAL_ENABLED", "probe.enabled", Unit::Same),
    ("SELF_HEAL_INTERVAL", "probe.interval_s", Unit::Same),
    (
        "SELF_HEAL_PROBE_INTERVAL_SECONDS",
        "probe.interval_s",
        Unit::Same,
    ),
    ("SELF_HEAL_TIMEOUT", "probe.timeout_s", Unit::Same),
    (
        "SELF_HEAL_PROBE_TIMEOUT_SECONDS",
        "probe.timeout_s",
        Unit::Same,
    ),
    ("SELF_HEAL_PARALLEL", "probe.parallel", Unit::Same),
    ("SELF_HEAL_PROBE_COMMAND", "probe.command", Unit::Same),
    (
        "SELF_HEAL_MIN_CONSECUTIVE_FAILURES",
        "policy.min_consecutive_failures",
        Unit::Same,
    ),
    (
        "SELF_HEAL_MIN_FAILURE_WINDOW_SECONDS",
        "policy.min_failure_window_ms",
        Unit::SecondsToMs,
    ),
    (
        "SELF_HEAL_MAX_ESCALATIONS",
        "policy.max_escalations_per_window",
        Unit::Same,
    ),
    (
        "SELF_HEAL_RESTART_SERVICE_COMMAND",
        "escalation.restart_service",
        Unit::Same,
    ),
    (
        "SELF_HEAL_HARD_RESTART_COMMAND",
        "escalation.hard_restart",
        Unit::Same,
    ),
    ("SELF_HEAL_REBOOT_COMMAND", "escalation.reboot", Unit::Same),
    ("SELF_HEAL_MANUAL_COMMAND", "escalation.manual", Unit::Same),
    (
        "SELF_HEAL_COMMAND_TIMEOUT",
        "escalation.timeout_s",
        Unit::Same,
    ),
];

/// v3 variables that mean nothing in swarm: a warning naming each one (at
/// startup and in `swarm config check`), not an error, so a v3 service file
/// keeps working. Every variable v3's `config.py` reads is either in [`V3`]
/// or here.
const V3_WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "RECLAIM_LEASE_SECONDS",
        "swarm never reclaims an online drone's work for its age; offline_timeout and probes decide",
    ),
    (
        "ASSIGNMENT_LEASE_SECONDS",
        "a lease lasts until the drone reports, returns it or goes offline (policy.offline_timeout_ms)",
    ),
    (
        "STALE_TIMEOUT",
        "v3 never used it either; offline drones are reclaimed after policy.offline_timeout_ms",
    ),
    (
        "QUEUE_TARGET",
        "a drone's builds at once come from its cores (policy.cores_per_slot); one slot when it reports none",
    ),
    (
        "SWEEPER_PREFIX",
        "swarm always treats names starting with sweeper- as sweepers",
    ),
    (
        "SWEEPER_THRESHOLD",
        "swarm has no sweeper threshold; drones named sweeper-* work on blocked packages only",
    ),
    (
        "LOG_FILE",
        "swarm serve logs to stderr; redirect it or use the service manager's journal",
    ),
    (
        "ADMIN_PORT",
        "the dashboard is served on the API's port (listen) under /ui/",
    ),
    (
        "RELEASES_BASE_PATH",
        "releases live under binhost_path (releases/ and the current link)",
    ),
    (
        "BINHOST_SYMLINK_PATH",
        "the published binhost is binhost_path's current link",
    ),
    (
        "PROFILES_DIR",
        "swarm has no build profiles; queue a world with `swarm fresh`",
    ),
    (
        "PORTAGE_SNAPSHOTS_DIR",
        "swarm keeps no Portage snapshots; it only gates drones on the expected timestamp",
    ),
    (
        "PROTECTED_HOSTS",
        "swarm runs only the escalation commands you configure, and never reboots a bare-metal drone; leave hosts out of escalation.reboot",
    ),
    (
        "REPORT_IP",
        "the register reply names the address the drone called",
    ),
    (
        "BINHOST_PRIMARY_IP",
        "swarm publishes to binhost_path; serve it with any web server",
    ),
    ("BINHOST_PRIMARY_PATH", "swarm publishes to binhost_path"),
    ("BINHOST_PRIMARY_PORT", "swarm publishes to binhost_path"),
    ("BINHOST_SECONDARY_IP", "swarm publishes to binhost_path"),
    ("BINHOST_SECONDARY_PATH", "swarm publishes to binhost_path"),
    ("BINHOST_SECONDARY_PORT", "swarm publishes to binhost_path"),
    ("V2_GATEWAY_URL", "swarm has no v2 gateway"),
    ("V2_SWARM_CONFIG", "swarm does not read v2's swarm.json"),
    (
        "SWARMV3_URL",
        "swarm's CLI reads SWARM_URL (or --url)",
    ),
];

/// The v3 names swarm reads, for docs and error messages.
pub(super) fn v3_names() -> impl Iterator<Item = &'static str> {
    V3.iter().map(|(name, _, _)| *name)
}

/// Every Build Swarm v3 variable swarm knows: the ones it reads and the ones
/// it warns about.
pub(super) fn all_v3_names() -> impl Iterator<Item = &'static str> {
    v3_names().chain(V3_WITHOUT_EFFECT.iter().map(|(name, _)| *name))
}

/// The process's environment as settings read it. A variable that is not
/// UTF-8 cannot be a setting and is left out (`std::env::vars` panicked on
/// any, `LANG` or not; h13), unless its name says it is one: a `SWARM_*`,
/// `SELF_HEAL_*` or v3 variable swarm reads is refused by name, never
/// skipped unsaid (one it has no use for, `LOG_FILE`, is left out; h15).
pub(crate) fn from_process() -> Result<Vec<(String, String)>, SettingsError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let lossy = name.to_string_lossy().into_owned();
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => out.push((name, value)),
            _ if lossy.starts_with("SWARM_")
                || lossy.starts_with("SELF_HEAL_")
                || v3_names().any(|v3| v3 == lossy) =>
            {
                return Err(SettingsError::Invalid {
                    message: format!("env {lossy} is not UTF-8 text: no setting can hold it"),
                    key: lossy.clone(),
                    origin: format!("env {lossy}"),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `SWARM_*` variables that other parts of swarm read (the CLI, the agent,
/// builds, the demo, tests): never taken for a misspelt setting.
const OTHERS: &[&str] = &[
    "SWARM_URL",
    "SWARM_CA",
    "SWARM_CONFIG",
    "SWARM_DATA_DIR",
    "SWARM_TOKEN_FILE",
    "SWARM_LOG",
    "SWARM_DRONE_NAME",
    "SWARM_SIM_SEED",
    "SWARM_ATOM",
    "SWARM_CATEGORY",
    "SWARM_PF",
    "SWARM_PN",
    "SWARM_LEASE",
    "SWARM_BIN",
    "SWARM_DEMO_RUN",
    "SWARM_PORTAGE_VENV",
    "SWARM_BENCH_NO_COMPACT",
    "SWARM_STANDIN_FAIL",
    "SWARM_STANDIN_OOM",
    "SWARM_STANDIN_SCALE_MS",
    "SWARM_STANDIN_SIZES",
    "SWARM_STANDIN_FAIL_FILE",
    "SWARM_STANDIN_KEYWORDS",
    "SWARM_BENCH_PER_S",
    "SWARM_TEST_BIN",
    "SWARM_PRINT_IMPORTS",
];

/// One value taken from the environment.
pub(super) struct EnvValue {
    pub(super) key: String,
    pub(super) typed: Typed,
    pub(super) source: Source,
}

/// The environment's values in the order to apply them (v3 names, then
/// `SWARM_*`), and warnings.
pub(super) fn read(
    env: &BTreeMap<String, String>,
) -> Result<(Vec<EnvValue>, Vec<String>), SettingsError> {
    let mut warnings = Vec::new();
    let set = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());

    let mut v3: BTreeMap<&str, (&str, Typed)> = BTreeMap::new();
    for &(name, key, unit) in V3 {
        let Some(raw) = set(name) else {
            // As for `SWARM_*` below (h11, h13: a blank ADMIN_SECRET).
            if env.get(name).is_some_and(|v| !v.is_empty()) {
                warnings.push(format!("{name} holds only blanks: treated as unset"));
            }
            continue;
        };
        let typed = convert(name, key, unit, raw)?;
        if let Some((first, earlier)) = v3.get(key) {
            if *earlier != typed {
                return Err(SettingsError::Conflict {
                    key: key.to_owned(),
                    first: (*first).to_owned(),
                    second: name.to_owned(),
                });
            }
            continue;
        }
        v3.insert(key, (name, typed));
    }
    for (name, why) in V3_WITHOUT_EFFECT {
        let value = set(name);
        // v3's own default prefix is what swarm does anyway.
        let same_as_swarm =
            *name == "SWEEPER_PREFIX" && value.map(String::as_str) == Some("sweeper-");
        if value.is_some() && !same_as_swarm {
            warnings.push(format!("env {name} has no effect: {why}"));
        }
    }
    for name in env.keys() {
        let is_known = V3.iter().any(|(n, _, _)| n == name)
            || V3_WITHOUT_EFFECT.iter().any(|(n, _)| n == name);
        if name.starts_with("SELF_HEAL_") && !is_known {
            return Err(SettingsError::UnknownEnv {
                name: name.clone(),
                hint: format!(
                    "; swarm reads {}",
                    v3_names()
                        .filter(|n| n.starts_with("SELF_HEAL_"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let mut values: Vec<EnvValue> = v3
        .into_iter()
        .map(|(key, (name, typed))| EnvValue {
            key: key.to_owned(),
            typed,
            source: Source::Env(name.to_owned()),
        })
        .collect();

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("SWARM_") else {
            continue;
        };
        if raw.trim().is_empty() {
            // Empty is the usual way to unset; blanks are more likely a
            // mistake (a read token of spaces left the reads open unsaid).
            if !raw.is_empty() {
                warnings.push(format!("{name} holds only blanks: treated as unset"));
            }
            continue;
        }
        let scoped = [
            ("POLICY_", "policy."),
            ("PROBE_", "probe."),
            ("ESCALATION_", "escalation."),
            ("HTTP_", "http."),
        ]
        .iter()
        .find_map(|(prefix, table)| {
            rest.strip_prefix(prefix)
                .map(|field| format!("{table}{}", field.to_ascii_lowercase()))
        });
        let strict = scoped.is_some();
        let key = scoped.unwrap_or_else(|| rest.to_ascii_lowercase());
        let Some(kind) = keys::kind_of(&key) else {
            if strict {
                return Err(SettingsError::UnknownEnv {
                    name: name.clone(),
                    hint: keys::suggest(&key)
                        .map(|k| format!(" (did you mean {}?)", env_name(&k)))
                        .unwrap_or_default(),
                });
            }
            // SWARM_URL, SWARM_SIM_SEED, the drone agent's variables: not
            // ours. A near miss of a setting is said, though: a misspelt
            // SWARM_READ_TOKEN left the reads open without a word (h13).
            if !OTHERS.contains(&name.as_str()) {
                if let Some(k) = keys::suggest(&key) {
                    warnings.push(format!(
                        "{name} is no setting and is ignored (did you mean {}?)",
                        env_name(&k)
                    ));
                }
            }
            continue;
        };
        let typed =
            keys::from_env(&key, kind, raw).map_err(|reason| bad(name, &key, raw, reason))?;
        values.push(EnvValue {
            key,
            typed,
            source: Source::Env(name.clone()),
        });
    }
    Ok((values, warnings))
}

/// The `SWARM_*` variable for a key: `policy.max_prefetch` → `SWARM_POLICY_MAX_PREFETCH`.
pub(super) fn env_name(key: &str) -> String {
    format!("SWARM_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn convert(name: &str, key: &str, unit: Unit, raw: &str) -> Result<Typed, SettingsError> {
    let Some(kind) = keys::kind_of(key) else {
        return Err(bad(name, key, raw, "is not a known setting".into()));
    };
    let scaled = |factor: u64| {
        keys::parse_number(raw)?
            .checked_mul(factor)
            .ok_or_else(|| "is too large".to_owned())
            .and_then(keys::integer)
    };
    let typed = match unit {
        Unit::Same => keys::from_env(key, kind, raw),
        Unit::SecondsToMs => scaled(1_000).and_then(|v| keys::from_env(key, kind, &v.to_string())),
        Unit::MinutesToMs => scaled(60_000).and_then(|v| keys::from_env(key, kind, &v.to_string())),
        Unit::Port => match raw.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(Typed::Port(port)),
            _ => Err("not a port number (1-65535)".to_owned()),
        },
    };
    typed.map_err(|reason| bad(name, key, raw, reason))
}

fn bad(name: &str, key: &str, raw: &str, reason: String) -> SettingsError {
    SettingsError::BadValue {
        key: key.to_owned(),
        origin: Source::Env(name.to_owned()),
        value: raw.to_owned(),
        reason,
    }
}
