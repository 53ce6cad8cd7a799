//! Every key the server's configuration knows, its type, and the conversion of
//! file values and environment strings into typed values. Each value is
//! checked where it enters, so an error can name the key and where it came from.

use crate::heal::{CommandTemplate, ESCALATION_PLACEHOLDERS, PROBE_PLACEHOLDERS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use swarm_core::Config;
use swarm_store::Synchronous;

/// The type of a key.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Addr,
    Path,
    OptPath,
    Secret,
    Sync,
    Int {
        min: u64,
        max: u64,
    },
    Bool,
    Template(&'static [&'static str]),
    OptTemplate(&'static [&'static str]),
    Policy,
    /// A list of networks (`10.0.0.0/24`, or a bare address).
    Networks,
    /// A list of host names (`swarm.example.org`, `*.lan`, `*`).
    Hosts,
}

/// Server, `[probe]` and `[escalation]` keys, in the order `swarm config show` prints them.
pub(super) const SERVER_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Addr),
    ("data_dir", Kind::Path),
    ("db_path", Kind::Path),
    ("staging_path", Kind::Path),
    ("binhost_path", Kind::OptPath),
    (
        "release_keep",
        Kind::Int {
            min: 1,
            max: 10_000,
        },
    ),
    ("release_max_drop_percent", Kind::Int { min: 0, max: 100 }),
    ("binhost_header_from", Kind::OptPath),
    ("binpkg_keyring", Kind::OptPath),
    ("require_signed", Kind::Bool),
    ("admin_token", Kind::Secret),
    ("admin_token_file", Kind::Path),
    ("drone_token", Kind::Secret),
    ("read_token", Kind::Secret),
    ("legacy_drones", Kind::Networks),
    ("allowed_hosts", Kind::Hosts),
    ("tls_cert", Kind::OptPath),
    ("tls_key", Kind::OptPath),
    ("tls_proxy", Kind::Bool),
    (
        "max_drones",
        Kind::Int {
            min: 1,
            max: 1_000_000,
        },
    ),
    (
        "max_registrations_per_minute",
        Kind::Int {
            min: 1,
            max: 1_000_000,
        },
    ),
    ("synchronous", Kind::Sync),
    // A request body is parsed in memory: 1 GiB is far past any queue.
    (
        "max_body_bytes",
        Kind::Int {
            min: 1,
            max: 1 << 30,
        },
    ),
    // Artifacts stream to disk; the largest binary packages are a few GiB.
    (
        "max_artifact_bytes",
        Kind::Int {
            min: 1,
            max: 1 << 40,
        },
    ),
    (
        "http.max_connections",
        Kind::Int {
            min: 1,
            max: 65_536,
        },
    ),
    ("http.header_timeout_s", Kind::Int { min: 1, max: 3_600 }),
    (
        "http.idle_timeout_s",
        Kind::Int {
            min: 1,
            max: 86_400,
        },
    ),
    ("http.body_timeout_s", Kind::Int { min: 1, max: 3_600 }),
    ("http.write_timeout_s", Kind::Int { min: 1, max: 3_600 }),
    (
        "http.min_body_rate",
        Kind::Int {
            min: 1,
            max: 1 << 30,
        },
    ),
    (
        "http.min_reply_rate",
        Kind::Int {
            min: 1,
            max: 1 << 30,
        },
    ),
    ("probe.enabled", Kind::Bool),
    ("probe.command", Kind::Template(PROBE_PLACEHOLDERS)),
    (
        "probe.interval_s",
        Kind::Int {
            min: 1,
            max: 86_400,
        },
    ),
    ("probe.timeout_s", Kind::Int { min: 1, max: 3_600 }),
    ("probe.parallel", Kind::Int { min: 1, max: 256 }),
    ("probe.networks", Kind::Networks),
    (
        "escalation.restart_service",
        Kind::OptTemplate(ESCALATION_PLACEHOLDERS),
    ),
    (
        "escalation.hard_restart",
        Kind::OptTemplate(ESCALATION_PLACEHOLDERS),
    ),
    (
        "escalation.reboot",
        Kind::OptTemplate(ESCALATION_PLACEHOLDERS),
    ),
    (
        "escalation.manual",
        Kind::OptTemplate(ESCALATION_PLACEHOLDERS),
    ),
    (
        "escalation.timeout_s",
        Kind::Int {
            min: 1,
            max: 86_400,
        },
    ),
];

/// The tables whose keys are `table.key`. `[drone]` is the agent's and is skipped.
pub(super) const TABLES: &[&str] = &["http", "probe", "escalation", "policy"];

/// Every field of `swarm_core::Config` with its default, by name. Taken from
/// the type itself, so a new policy field is configurable without touching this file.
pub(super) fn policy_defaults() -> &'static BTreeMap<String, serde_json::Value> {
    static DEFAULTS: OnceLock<BTreeMap<String, serde_json::Value>> = OnceLock::new();
    DEFAULTS.get_or_init(|| match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    })
}

/// The kind of `key` (`listen`, `probe.timeout_s`, `policy.max_prefetch`), if known.
pub(super) fn kind_of(key: &str) -> Option<Kind> {
    if let Some(field) = key.strip_prefix("policy.") {
        return policy_defaults()
            .contains_key(field)
            .then_some(Kind::Policy);
    }
    SERVER_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

/// Every known key, for suggestions and `swarm config show`.
pub(super) fn all_keys() -> Vec<String> {
    SERVER_KEYS
        .iter()
        .map(|(k, _)| (*k).to_owned())
        .chain(policy_defaults().keys().map(|f| format!("policy.{f}")))
        .collect()
}

/// A checked value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Typed {
    Addr(SocketAddr),
    /// v3's `CONTROL_PLANE_PORT`: the port of `listen`, keeping its host.
    Port(u16),
    Path(PathBuf),
    NoPath,
    Text(String),
    Sync(Synchronous),
    Int(u64),
    Bool(bool),
    Template(CommandTemplate),
    NoTemplate,
    /// A policy field's value, already known to deserialize into `Config`.
    Policy(toml::Value),
    Networks(Vec<ipnet::IpNet>),
    Hosts(Vec<String>),
}

/// Converts a value from the TOML file. The error is the reason only; the
/// caller adds the key and the file.
pub(super) fn from_toml(key: &str, kind: Kind, value: &toml::Value) -> Result<Typed, String> {
    use toml::Value as V;
    match (kind, value) {
        (Kind::Addr, V::String(s)) => parse_addr(s),
        (Kind::Addr, _) => Err("expected an address in quotes such as \"127.0.0.1:8100\"".into()),
        (Kind::Path, V::String(s)) if s.is_empty() => {
            Err("is empty; leave the key out for the default".into())
        }
        (Kind::Path, V::String(s)) => Ok(Typed::Path(PathBuf::from(s))),
        (Kind::OptPath, V::String(s)) if s.is_empty() => Ok(Typed::NoPath),
        (Kind::OptPath, V::String(s)) => Ok(Typed::Path(PathBuf::from(s))),
        (Kind::Path | Kind::OptPath, _) => Err("expected a path in quotes".into()),
        (Kind::Secret, V::String(s)) if s.trim().is_empty() => {
            Err("is empty; leave the key out instead".into())
        }
        (Kind::Secret, V::String(s)) => secret(s.trim()),
        (Kind::Secret, _) => Err("expected a token in quotes".into()),
        (Kind::Sync, V::String(s)) => parse_sync(s),
        (Kind::Sync, _) => Err("expected \"normal\" or \"full\"".into()),
        (Kind::Int { min, max }, V::Integer(i)) => u64::try_from(*i)
            .map_or_else(|_| Err(range_reason(min, max)), |n| in_range(n, min, max)),
        (Kind::Int { .. }, _) => Err("expected a whole number".into()),
        (Kind::Bool, V::Boolean(b)) => Ok(Typed::Bool(*b)),
        (Kind::Bool, _) => Err("expected true or false".into()),
        (Kind::Template(allowed), V::String(s)) => parse_template(s, allowed),
        (Kind::OptTemplate(_), V::String(s)) if s.trim().is_empty() => Ok(Typed::NoTemplate),
        (Kind::OptTemplate(allowed), V::String(s)) => parse_template(s, allowed),
        (Kind::Template(_) | Kind::OptTemplate(_), _) => Err("expected a command in quotes".into()),
        (Kind::Policy, v) => check_policy(key, v.clone()),
        (Kind::Networks, V::Array(items)) => items
            .iter()
            .map(|i| match i {
                V::String(s) => parse_network(s),
                _ => Err("expected networks in quotes such as [\"10.0.0.0/24\"]".into()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Typed::Networks),
        (Kind::Networks, _) => {
            Err("expected a list such as [\"10.0.0.0/24\", \"127.0.0.0/8\"]".into())
        }
        (Kind::Hosts, V::Array(items)) => hosts(items.iter().map(|i| match i {
            V::String(s) => Ok(s.as_str()),
            _ => Err("expected names in quotes such as [\"swarm.example.org\"]".to_string()),
        })),
        (Kind::Hosts, _) => {
            Err("expected a list such as [\"swarm.example.org\", \"*.lan\"]".into())
        }
    }
}

/// A token no client could present is refused rather than kept: it locked
/// out whoever needed it, and only a wire error said so.
fn secret(trimmed: &str) -> Result<Typed, String> {
    match crate::client::unsendable_token(trimmed) {
        Some(why) => Err(why),
        None => Ok(Typed::Text(trimmed.to_owned())),
    }
}

/// `allowed_hosts`: each entry checked, at most `MAX_ALLOWED_HOSTS`.
fn hosts<'a>(entries: impl Iterator<Item = Result<&'a str, String>>) -> Result<Typed, String> {
    let names = entries
        .map(|e| e.and_then(crate::host_names::check_entry))
        .collect::<Result<Vec<_>, _>>()?;
    if names.len() > crate::host_names::MAX_ALLOWED_HOSTS {
        return Err(format!(
            "{} names; at most {}: use a pattern such as \"*.lan\"",
            names.len(),
            crate::host_names::MAX_ALLOWED_HOSTS
        ));
    }
    Ok(Typed::Hosts(names))
}

/// One network: `10.0.0.0/24`, `fd00::/8`, or one address.
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a network such as 10.0.0.0/24 or an address"))
}

/// Converts an environment string (never empty: empty variables count as unset).
pub(super) fn from_env(key: &str, kind: Kind, raw: &str) -> Result<Typed, String> {
    let trimmed = raw.trim();
    match kind {
        Kind::Addr => parse_addr(trimmed),
        Kind::Path | Kind::OptPath => Ok(Typed::Path(PathBuf::from(raw))),
        // Trimmed, as a presented token is (h10: a read token ending in a
        // newline refused every reader, and an admin token with spaces
        // around it hid that it equalled the read token).
        Kind::Secret if trimmed.is_empty() => Err("is blank; unset it instead".into()),
        Kind::Secret => secret(trimmed),
        Kind::Sync => parse_sync(trimmed),
        Kind::Int { min, max } => in_range(parse_number(trimmed)?, min, max),
        Kind::Bool => parse_bool(trimmed).map(Typed::Bool),
        Kind::Template(allowed) | Kind::OptTemplate(allowed) => parse_template(raw, allowed),
        Kind::Networks => trimmed
            .split(',')
            .filter(|n| !n.trim().is_empty())
            .map(parse_network)
            .collect::<Result<Vec<_>, _>>()
            .map(Typed::Networks),
        Kind::Hosts => hosts(trimmed.split(',').filter(|n| !n.trim().is_empty()).map(Ok)),
        Kind::Policy => {
            let field = key.trim_start_matches("policy.");
            let value = match policy_defaults().get(field) {
                Some(serde_json::Value::Number(_)) => integer(parse_number(trimmed)?)?,
                Some(serde_json::Value::Bool(_)) => toml::Value::Boolean(parse_bool(trimmed)?),
                Some(serde_json::Value::Array(_)) => parse_list(trimmed)?,
                _ => toml::Value::String(trimmed.to_owned()),
            };
            check_policy(key, value)
        }
    }
}

/// A whole number from an environment variable.
pub(super) fn parse_number(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse::<u64>()
        .map_err(|_| "not a number".to_owned())
}

/// A policy integer as TOML holds it.
pub(super) fn integer(n: u64) -> Result<toml::Value, String> {
    i64::try_from(n)
        .map(toml::Value::Integer)
        .map_err(|_| "is too large".to_owned())
}

fn parse_list(raw: &str) -> Result<toml::Value, String> {
    let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|n| parse_number(n).and_then(integer))
        .collect::<Result<Vec<_>, _>>()
        .map(toml::Value::Array)
        .map_err(|_| "not a list of numbers such as 30000,30000,120000".to_owned())
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (use true or false)".into()),
    }
}

fn parse_addr(s: &str) -> Result<Typed, String> {
    s.parse::<SocketAddr>()
        .map(Typed::Addr)
        .map_err(|_| "expected IP:PORT such as 127.0.0.1:8100 or [::1]:8100".into())
}

fn parse_sync(s: &str) -> Result<Typed, String> {
    match s.to_ascii_lowercase().as_str() {
        "normal" => Ok(Typed::Sync(Synchronous::Normal)),
        "full" => Ok(Typed::Sync(Synchronous::Full)),
        _ => Err("expected \"normal\" or \"full\"".into()),
    }
}

fn parse_template(s: &str, allowed: &[&str]) -> Result<Typed, String> {
    CommandTemplate::parse(s, allowed)
        .map(Typed::Template)
        .map_err(|e| e.to_string())
}

fn in_range(n: u64, min: u64, max: u64) -> Result<Typed, String> {
    if (min..=max).contains(&n) {
        Ok(Typed::Int(n))
    } else {
        Err(range_reason(min, max))
    }
}

fn range_reason(min: u64, max: u64) -> String {
    if max == u64::MAX {
        if min == 1 {
            "must be greater than zero".into()
        } else {
            format!("must be at least {min}")
        }
    } else {
        format!("must be between {min} and {max}")
    }
}

/// Checks one policy field by deserializing it alone into `Config`, so the
/// type rules (u32 or u64, enum names, array length) are the core's own.
fn check_policy(key: &str, value: toml::Value) -> Result<Typed, String> {
    let field = key.trim_start_matches("policy.");
    let default = policy_defaults().get(field);
    match (default, &value) {
        (Some(serde_json::Value::Number(_)), toml::Value::Integer(i)) if *i < 0 => {
            return Err("must not be negative".into())
        }
        (Some(serde_json::Value::Number(_)), v) if !v.is_integer() => {
            return Err("expected a whole number".into())
        }
        (Some(serde_json::Value::Bool(_)), v) if !v.is_bool() => {
            return Err("expected true or false".into())
        }
        _ => {}
    }
    let mut table = toml::Table::new();
    table.insert(field.to_owned(), value.clone());
    match toml::Value::Table(table).try_into::<Config>() {
        Ok(_) => Ok(Typed::Policy(value)),
        Err(_) if value.is_integer() => Err("is too large".into()),
        Err(e) => Err(e.message().trim().to_owned()),
    }
}

/// The known key closest to `unknown`, if it is a plausible typo.
pub(super) fn suggest(unknown: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for key in all_keys()
        .into_iter()
        .chain(std::iter::once("drone".to_owned()))
    {
        let d = distance(unknown, &key);
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, key));
        }
    }
    best.filter(|(d, _)| *d <= 2 || *d * 4 <= unknown.len())
        .filter(|(d, _)| *d > 0)
        .map(|(_, k)| k)
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
