//! The server's configuration: what `swarm serve` needs beyond the policy.
//!
//! One place decides every value, so the server, `swarm config check` and
//! `swarm config show` can never disagree. Values come from four layers,
//! later ones winning:
//!
//! 1. built-in defaults (DESIGN §3 for the policy, §5 for the server);
//! 2. the TOML file: `--config FILE`, else `/etc/swarm/swarm.toml` if it exists;
//! 3. the environment: Build Swarm v3's names (`CONTROL_PLANE_PORT`,
//!    `MAX_PREFETCH_PER_DRONE`, `SELF_HEAL_*`, ... in v3's units), then swarm's
//!    own `SWARM_<KEY>`, `SWARM_PROBE_<KEY>`, `SWARM_ESCALATION_<KEY>` and
//!    `SWARM_POLICY_<FIELD>`, which win over the v3 names;
//! 4. command-line flags (`--listen`, `--data-dir`).
//!
//! Every value is checked where it enters, so an error names the key and its
//! source: `env MAX_PREFETCH_PER_DRONE="abc": not a number`. [`Loaded`]
//! remembers the source of every key for `swarm config show`. The environment
//! is passed in, never read here, so tests inject it.

mod env;
mod file;
pub use file::toml_error_text;
mod keys;
#[cfg(test)]
mod tests;

use crate::heal::CommandTemplate;
use keys::Typed;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use swarm_core::{Config, ConfigError, EscalationAction};
use swarm_store::Synchronous;

/// Where the server looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/swarm/swarm.toml";

/// The v3 port on loopback: reachable by drones through an SSH tunnel or a
/// reverse proxy, never open to the network by accident.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8100));

/// The default probe: one `ssh` round trip that prints the figures the prober
/// parses (see [`crate::heal::parse_figures`]). `BatchMode` makes a missing key
/// fail instead of prompting; the load is the 5-minute average; the disk is
/// the one Portage builds on.
pub const DEFAULT_PROBE_COMMAND: &str = concat!(
    "ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new root@{address} ",
    "\"if pgrep -x swarm >/dev/null 2>&1 || pgrep -f '[s]warm-drone' >/dev/null 2>&1; ",
    "then echo service=up; else echo service=down; fi; ",
    "read l1 l5 rest < /proc/loadavg; echo load=\\$l5; echo cores=\\$(nproc); ",
    "echo disk_percent=\\$(df -P /var/tmp | awk 'NR==2 {print \\$5}'); ",
    "awk '/^MemTotal:/ {t=\\$2} /^MemAvailable:/ {a=\\$2} ",
    "END {if (t > 0) print \\\"mem_percent=\\\" int((t-a)*100/t)}' /proc/meminfo\""
);

/// Everything `swarm serve` is configured with.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// Address of the HTTP API (default `127.0.0.1:8100`).
    pub listen: SocketAddr,
    /// Holds the database, the generated admin token and staging unless those
    /// are set. Default: `$STATE_DIRECTORY` (systemd), else `/var/lib/swarm` as
    /// root, else `$XDG_DATA_HOME/swarm` or `~/.local/share/swarm`, else `./swarm-data`.
    pub data_dir: PathBuf,
    /// The SQLite store (default `data_dir/swarm.db`).
    pub db_path: PathBuf,
    /// Where uploaded artifacts land before they are verified (default `data_dir/staging`).
    pub staging_path: PathBuf,
    /// Where verified binary packages are published; `None`: they stay in staging.
    pub binhost_path: Option<PathBuf>,
    /// Retention: the newest this many releases are never purged (default 5).
    pub release_keep: u32,
    /// The publish gate refuses to drop more than this percentage of the
    /// published release's packages (default 10).
    pub release_max_drop_percent: u32,
    /// A Portage `Packages` file (a reference drone's `$PKGDIR/Packages`)
    /// whose header keys (PROFILE, ACCEPT_KEYWORDS, USE_EXPAND*, ...) override
    /// the ones each release's index takes from its build environment.
    /// `None`: the build environment's alone.
    pub binhost_header_from: Option<PathBuf>,
    /// Public keys (`gpg --export KEYID > FILE`) that signed packages
    /// (`FEATURES=binpkg-signing`) are checked against with `gpgv` on upload;
    /// a bad signature is refused. `None`: signatures are not checked.
    pub binpkg_keyring: Option<PathBuf>,
    /// Refuse unsigned packages too (needs `binpkg_keyring`; default false).
    pub require_signed: bool,
    /// The admin token; `None`: read or generate `admin_token_file`, so admin is never open.
    pub admin_token: Option<String>,
    /// Where a generated admin token is written (0600) and where the CLI finds it.
    pub admin_token_file: PathBuf,
    /// A token shared by credential-less drones; enrolled drones have their own.
    pub drone_token: Option<String>,
    /// When set, reads of the API and `/metrics` need it (or the admin
    /// token); `None`: reads are open, as in v3.
    pub read_token: Option<String>,
    /// Networks credential-less (v3) drones may call from; loopback by default.
    pub legacy_drones: Vec<ipnet::IpNet>,
    /// Names a browser may reach the server under besides its addresses, `localhost` and this
    /// machine's host name (see `host_names`); empty by default.
    pub allowed_hosts: Vec<String>,
    /// `max_drones`, `max_registrations_per_minute` and `probe.networks`.
    pub drones: crate::server::DroneLimits,
    /// PEM certificate chain `serve` terminates TLS with (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The operator's note that a TLS reverse proxy on this host terminates
    /// TLS (dist/nginx/swarm-proxy.conf): a listen address beyond loopback
    /// without `tls_cert` is then not warned about, and a loopback request's
    /// `X-Forwarded-For` names its caller (ignored otherwise: anyone local
    /// can write it).
    pub tls_proxy: bool,
    /// How hard each commit waits for the disk.
    pub synchronous: Synchronous,
    /// Cap on a JSON request body (default 1 MiB).
    pub max_body_bytes: u64,
    /// Cap on an uploaded artifact (default 2 GiB).
    pub max_artifact_bytes: u64,
    /// The front door's bounds (`[http]`): open connections, header, idle
    /// and body timeouts, minimum body rate.
    pub http: crate::server::HttpLimits,
    /// The self-healing prober.
    pub probe: ProbeSettings,
    /// The commands behind each escalation step.
    pub escalation: EscalationSettings,
    /// The scheduling policy, validated with `Config::validate`.
    pub policy: Config,
}

/// How the prober looks at drones (`[probe]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSettings {
    /// Probe at all (default true). Off: the core sees no `ProbeResult` and
    /// never escalates; heartbeats alone decide liveness.
    pub enabled: bool,
    /// Run per drone with `{drone}` and `{address}` filled (default [`DEFAULT_PROBE_COMMAND`]).
    pub command: CommandTemplate,
    /// Seconds between rounds (default 60).
    pub interval_s: u64,
    /// A probe running longer is killed and reported as `timeout` (default 10).
    pub timeout_s: u64,
    /// Probes running at once (default 8).
    pub parallel: usize,
}

/// The command behind each escalation step (`[escalation]`); `None` logs that
/// the step needs a human. Placeholders: `{drone}`, `{address}`, `{action}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EscalationSettings {
    /// `restart_service`: restart the drone agent.
    pub restart_service: Option<CommandTemplate>,
    /// `hard_restart`: kill and restart everything the drone runs.
    pub hard_restart: Option<CommandTemplate>,
    /// `reboot`: reboot the machine (the core only asks for containers and VMs).
    pub reboot: Option<CommandTemplate>,
    /// `manual`: notify a human (mail, chat hook); the ladder's last step.
    pub manual: Option<CommandTemplate>,
    /// A command running longer is killed (default 120 s).
    pub timeout_s: u64,
}

impl EscalationSettings {
    /// The template for one ladder step.
    pub fn template(&self, action: EscalationAction) -> Option<&CommandTemplate> {
        match action {
            EscalationAction::RestartService => self.restart_service.as_ref(),
            EscalationAction::HardRestart => self.hard_restart.as_ref(),
            EscalationAction::Reboot => self.reboot.as_ref(),
            EscalationAction::Manual => self.manual.as_ref(),
        }
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            enabled: true,
            command: default_probe_command(),
            interval_s: 60,
            timeout_s: 10,
            parallel: 8,
        }
    }
}

fn default_probe_command() -> CommandTemplate {
    match CommandTemplate::parse(DEFAULT_PROBE_COMMAND, crate::heal::PROBE_PLACEHOLDERS) {
        Ok(t) => t,
        // A unit test parses it; this arm cannot run in a tested build.
        Err(e) => panic!("DEFAULT_PROBE_COMMAND does not parse: {e}"),
    }
}

/// Loopback only: the demo and local tests run credential-less drones.
pub fn default_legacy_drones() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Whether `nets` lets credential-less drones in from anywhere.
pub fn legacy_from_everywhere(nets: &[ipnet::IpNet]) -> bool {
    nets.iter().any(|n| n.prefix_len() == 0)
}

impl Settings {
    /// All defaults with everything under `data_dir`: for tests and embedders
    /// that configure in code.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Settings {
        let data_dir = data_dir.into();
        Settings {
            listen: DEFAULT_LISTEN,
            db_path: data_dir.join("swarm.db"),
            staging_path: data_dir.join("staging"),
            binhost_path: None,
            release_keep: 5,
            release_max_drop_percent: 10,
            binhost_header_from: None,
            binpkg_keyring: None,
            require_signed: false,
            admin_token: None,
            admin_token_file: data_dir.join("admin.token"),
            drone_token: None,
            read_token: None,
            legacy_drones: default_legacy_drones(),
            allowed_hosts: Vec::new(),
            drones: crate::server::DroneLimits::default(),
            tls_cert: None,
            tls_key: None,
            tls_proxy: false,
            synchronous: Synchronous::Full,
            max_body_bytes: 1024 * 1024,
            max_artifact_bytes: 2 * 1024 * 1024 * 1024,
            http: crate::server::HttpLimits::default(),
            probe: ProbeSettings::default(),
            escalation: EscalationSettings {
                timeout_s: 120,
                ..EscalationSettings::default()
            },
            policy: Config::default(),
            data_dir,
        }
    }

    /// Loads defaults < file < environment < flags, validates everything,
    /// and fails on the first problem with the key and its source named.
    pub fn load(request: &LoadRequest) -> Result<Loaded, SettingsError> {
        load(request)
    }

    /// The store options these settings imply (policy and durability).
    pub fn store_options(&self) -> swarm_store::StoreOptions {
        swarm_store::StoreOptions {
            config: self.policy.clone(),
            synchronous: self.synchronous,
            ..swarm_store::StoreOptions::default()
        }
    }
}

impl fmt::Debug for Settings {
    /// Tokens are hidden: settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |t: &Option<String>| t.as_ref().map(|_| "(hidden)");
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("db_path", &self.db_path)
            .field("staging_path", &self.staging_path)
            .field("binhost_path", &self.binhost_path)
            .field("release_keep", &self.release_keep)
            .field("release_max_drop_percent", &self.release_max_drop_percent)
            .field("binhost_header_from", &self.binhost_header_from)
            .field("binpkg_keyring", &self.binpkg_keyring)
            .field("require_signed", &self.require_signed)
            .field("admin_token", &hidden(&self.admin_token))
            .field("admin_token_file", &self.admin_token_file)
            .field("drone_token", &hidden(&self.drone_token))
            .field("read_token", &hidden(&self.read_token))
            .field("legacy_drones", &self.legacy_drones)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("drones", &self.drones)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_proxy", &self.tls_proxy)
            .field("synchronous", &self.synchronous)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_artifact_bytes", &self.max_artifact_bytes)
            .field("http", &self.http)
            .field("probe", &self.probe)
            .field("escalation", &self.escalation)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Which file to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigFile {
    /// Given with `--config`: it must exist.
    Explicit(PathBuf),
    /// Read it if it exists (the default, [`DEFAULT_CONFIG_PATH`]).
    IfExists(PathBuf),
    /// Read no file.
    None,
}

/// The inputs of [`Settings::load`], all explicit so tests control them.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    /// The file.
    pub config: ConfigFile,
    /// The environment (`std::env::vars()` in the binary).
    pub env: BTreeMap<String, String>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// Chooses the default data dir: `/var/lib/swarm` for root, else the user's.
    pub running_as_root: bool,
}

impl LoadRequest {
    /// [`LoadRequest::new`] with this process's environment (see
    /// `env::from_process`), and `$SWARM_CONFIG` when `config` is `None`:
    /// the agent read it and `serve` did not, so one shared swarm.toml was
    /// half read (h13).
    pub fn from_process(config: Option<PathBuf>) -> Result<LoadRequest, SettingsError> {
        let env = env::from_process()?;
        let named = env
            .iter()
            .find(|(k, v)| k == "SWARM_CONFIG" && !v.trim().is_empty())
            .map(|(_, v)| PathBuf::from(v));
        Ok(LoadRequest::new(config.or(named), env))
    }

    /// `config` from `--config` (else [`DEFAULT_CONFIG_PATH`] if present) and
    /// the environment; no flag overrides; root detected from this process.
    pub fn new(
        config: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> LoadRequest {
        LoadRequest {
            config: match config {
                Some(path) => ConfigFile::Explicit(path),
                None => ConfigFile::IfExists(PathBuf::from(DEFAULT_CONFIG_PATH)),
            },
            env: env.into_iter().collect(),
            listen: None,
            data_dir: None,
            running_as_root: running_as_root(),
        }
    }
}

/// Every Build Swarm v3 environment variable the server reads or warns about,
/// so a launcher (`swarm demo`) can keep a caller's v3 settings away from the
/// servers it starts.
pub fn v3_variables() -> impl Iterator<Item = &'static str> {
    env::all_v3_names()
}

/// Whether this process runs as root: the owner of `/proc/self` is the
/// effective uid. False when that cannot be told (no /proc).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Built in.
    Default,
    /// Built in, under the named key's value (`db_path` under `data_dir`).
    Derived(&'static str),
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag such as `--listen`.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived(key) => write!(f, "default, under {key}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Loaded settings and where each value came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// The source of every key (`listen`, `probe.timeout_s`, `policy.max_prefetch`, ...).
    pub sources: BTreeMap<String, Source>,
    /// Things that work but are probably not what the operator meant.
    pub warnings: Vec<String>,
}

/// One line of `swarm config show`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `listen`, `probe.timeout_s`, `policy.max_prefetch`, ...
    pub key: String,
    /// The effective value; tokens are shown as `"(hidden)"`, unset values as null.
    pub value: serde_json::Value,
    /// Where it came from.
    pub source: Source,
}

impl Loaded {
    /// The source of `key` (`Default` for an unknown key).
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }

    /// Every key with its effective value and source, server keys first, then
    /// the policy's, for `swarm config show`.
    pub fn entries(&self) -> Vec<Entry> {
        use serde_json::Value as J;
        let s = &self.settings;
        let path = |p: &Path| J::String(p.display().to_string());
        let template = |t: &Option<CommandTemplate>| {
            t.as_ref()
                .map_or(J::Null, |t| J::String(t.text().to_owned()))
        };
        let hidden = |t: &Option<String>| t.as_ref().map_or(J::Null, |_| J::from("(hidden)"));
        let mut values: Vec<(String, J)> = vec![
            ("listen".into(), J::String(s.listen.to_string())),
            ("data_dir".into(), path(&s.data_dir)),
            ("db_path".into(), path(&s.db_path)),
            ("staging_path".into(), path(&s.staging_path)),
            (
                "binhost_path".into(),
                s.binhost_path.as_deref().map_or(J::Null, path),
            ),
            ("release_keep".into(), J::from(s.release_keep)),
            (
                "release_max_drop_percent".into(),
                J::from(s.release_max_drop_percent),
            ),
            (
                "binhost_header_from".into(),
                s.binhost_header_from.as_deref().map_or(J::Null, path),
            ),
            (
                "binpkg_keyring".into(),
                s.binpkg_keyring.as_deref().map_or(J::Null, path),
            ),
            ("require_signed".into(), J::from(s.require_signed)),
            ("admin_token".into(), hidden(&s.admin_token)),
            ("admin_token_file".into(), path(&s.admin_token_file)),
            ("drone_token".into(), hidden(&s.drone_token)),
            ("read_token".into(), hidden(&s.read_token)),
            (
                "legacy_drones".into(),
                J::from(
                    s.legacy_drones
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>(),
                ),
            ),
            ("allowed_hosts".into(), J::from(s.allowed_hosts.clone())),
            (
                "tls_cert".into(),
                s.tls_cert.as_deref().map_or(J::Null, path),
            ),
            ("tls_key".into(), s.tls_key.as_deref().map_or(J::Null, path)),
            ("tls_proxy".into(), J::from(s.tls_proxy)),
            (
                "synchronous".into(),
                J::from(match s.synchronous {
                    Synchronous::Normal => "normal",
                    Synchronous::Full => "full",
                }),
            ),
            ("max_drones".into(), J::from(s.drones.max_drones)),
            (
                "max_registrations_per_minute".into(),
                J::from(s.drones.registrations_per_minute),
            ),
            ("max_body_bytes".into(), J::from(s.max_body_bytes)),
            ("max_artifact_bytes".into(), J::from(s.max_artifact_bytes)),
            (
                "http.max_connections".into(),
                J::from(s.http.max_connections),
            ),
            (
                "http.header_timeout_s".into(),
                J::from(s.http.header_timeout.as_secs()),
            ),
            (
                "http.idle_timeout_s".into(),
                J::from(s.http.idle_timeout.as_secs()),
            ),
            (
                "http.body_timeout_s".into(),
                J::from(s.http.body_idle_timeout.as_secs()),
            ),
            ("http.min_body_rate".into(), J::from(s.http.min_body_rate)),
            (
                "http.write_timeout_s".into(),
                J::from(s.http.write_timeout.as_secs()),
            ),
            ("http.min_reply_rate".into(), J::from(s.http.min_reply_rate)),
            ("probe.enabled".into(), J::from(s.probe.enabled)),
            (
                "probe.command".into(),
                J::String(s.probe.command.text().to_owned()),
            ),
            ("probe.interval_s".into(), J::from(s.probe.interval_s)),
            ("probe.timeout_s".into(), J::from(s.probe.timeout_s)),
            ("probe.parallel".into(), J::from(s.probe.parallel)),
            (
                "probe.networks".into(),
                J::from(
                    s.drones
                        .probe_networks
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "escalation.restart_service".into(),
                template(&s.escalation.restart_service),
            ),
            (
                "escalation.hard_restart".into(),
                template(&s.escalation.hard_restart),
            ),
            ("escalation.reboot".into(), template(&s.escalation.reboot)),
            ("escalation.manual".into(), template(&s.escalation.manual)),
            (
                "escalation.timeout_s".into(),
                J::from(s.escalation.timeout_s),
            ),
        ];
        if let Ok(J::Object(policy)) = serde_json::to_value(&s.policy) {
            values.extend(policy.into_iter().map(|(k, v)| (format!("policy.{k}"), v)));
        }
        values
            .into_iter()
            .map(|(key, value)| Entry {
                source: self.source(&key).clone(),
                key,
                value,
            })
            .collect()
    }
}

/// Why the configuration cannot be used. Each message names the key and
/// where its value came from, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}; check the path (without --config, {DEFAULT_CONFIG_PATH} is read only if it exists)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a `source`, so it is printed once).
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key the server does not know (a typo, or a key from a newer swarm).
    #[error("unknown key \"{key}\" in {}{hint}", path.display())]
    UnknownKey {
        /// The key, with its table: `polcy.max_prefetch`.
        key: String,
        /// The file.
        path: PathBuf,
        /// A suggestion.
        hint: String,
    },
    /// An environment variable in swarm's or v3's namespace that means nothing.
    #[error("unknown environment variable {name}{hint}; unset it")]
    UnknownEnv {
        /// The variable.
        name: String,
        /// A suggestion or the known names.
        hint: String,
    },
    /// A value of the wrong type or out of range.
    #[error("{}", describe_bad_value(key, origin, value, reason))]
    BadValue {
        /// The key it sets.
        key: String,
        /// Where it came from.
        origin: Source,
        /// The value as given.
        value: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
    /// Values that are fine alone but not together, or a policy `Config::validate` refuses.
    #[error("{message} (from {origin})")]
    Invalid {
        /// The key at fault.
        key: String,
        /// What is wrong, starting with the key.
        message: String,
        /// Where the values involved came from.
        origin: String,
    },
    /// Two v3 variables for the same setting disagree.
    #[error("env {first} and env {second} both set {key} to different values; unset one")]
    Conflict {
        /// The setting.
        key: String,
        /// One variable.
        first: String,
        /// The other.
        second: String,
    },
}

fn describe_bad_value(key: &str, origin: &Source, value: &str, reason: &str) -> String {
    // A refused token is still a token: errors go to logs and terminals
    // (a file's value comes here already hidden).
    let secret = matches!(keys::kind_of(key), Some(keys::Kind::Secret));
    match origin {
        Source::Env(name) if secret => format!("env {name}=(hidden): {reason}"),
        Source::Env(name) => format!("env {name}={value:?}: {reason}"),
        Source::File(path) => format!("{key} = {value} in {}: {reason}", path.display()),
        Source::Flag(flag) => format!("{flag} {value}: {reason}"),
        Source::Default | Source::Derived(_) => format!("{key} = {value}: {reason}"),
    }
}

/// The layers merged so far: each key's value and who set it last.
#[derive(Default)]
struct Layers {
    values: BTreeMap<String, (Typed, Source)>,
}

impl Layers {
    fn set(&mut self, key: String, typed: Typed, source: Source) {
        let typed = match typed {
            Typed::Port(port) => {
                let ip = match self.values.get("listen") {
                    Some((Typed::Addr(addr), _)) => addr.ip(),
                    _ => DEFAULT_LISTEN.ip(),
                };
                Typed::Addr(SocketAddr::new(ip, port))
            }
            other => other,
        };
        self.values.insert(key, (typed, source));
    }

    fn get(&self, key: &str) -> Option<&Typed> {
        self.values.get(key).map(|(t, _)| t)
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        match self.get(key) {
            Some(Typed::Path(p)) => Some(p.clone()),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Typed::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn int(&self, key: &str, default: u64) -> u64 {
        match self.get(key) {
            Some(Typed::Int(n)) => *n,
            _ => default,
        }
    }

    fn bool(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some(Typed::Bool(b)) => *b,
            _ => default,
        }
    }

    fn size(&self, key: &str, default: usize) -> usize {
        usize::try_from(self.int(key, default as u64)).unwrap_or(usize::MAX)
    }

    fn template(&self, key: &str, default: Option<CommandTemplate>) -> Option<CommandTemplate> {
        match self.get(key) {
            Some(Typed::Template(t)) => Some(t.clone()),
            Some(Typed::NoTemplate) => None,
            _ => default,
        }
    }
}

fn load(request: &LoadRequest) -> Result<Loaded, SettingsError> {
    let mut layers = Layers::default();

    let file = match &request.config {
        ConfigFile::Explicit(path) => Some(path.clone()),
        ConfigFile::IfExists(path) if path.exists() => Some(path.clone()),
        ConfigFile::IfExists(_) | ConfigFile::None => None,
    };
    if let Some(path) = &file {
        for (key, typed) in file::read(path)? {
            layers.set(key, typed, Source::File(path.clone()));
        }
    }

    let (env_values, mut warnings) = env::read(&request.env)?;
    for v in env_values {
        layers.set(v.key, v.typed, v.source);
    }

    if let Some(listen) = request.listen {
        layers.set(
            "listen".into(),
            Typed::Addr(listen),
            Source::Flag("--listen"),
        );
    }
    if let Some(dir) = &request.data_dir {
        layers.set(
            "data_dir".into(),
            Typed::Path(dir.clone()),
            Source::Flag("--data-dir"),
        );
    }

    let defaults = Settings::with_data_dir(
        layers
            .path("data_dir")
            .unwrap_or_else(|| default_data_dir(request)),
    );
    let mut settings = Settings {
        listen: match layers.get("listen") {
            Some(Typed::Addr(addr)) => *addr,
            _ => defaults.listen,
        },
        db_path: layers.path("db_path").unwrap_or(defaults.db_path),
        staging_path: layers.path("staging_path").unwrap_or(defaults.staging_path),
        binhost_path: layers.path("binhost_path"),
        release_keep: layers.int("release_keep", u64::from(defaults.release_keep)) as u32,
        release_max_drop_percent: layers.int(
            "release_max_drop_percent",
            u64::from(defaults.release_max_drop_percent),
        ) as u32,
        binhost_header_from: layers.path("binhost_header_from"),
        binpkg_keyring: layers.path("binpkg_keyring"),
        require_signed: layers.bool("require_signed", defaults.require_signed),
        admin_token: layers.text("admin_token"),
        admin_token_file: layers
            .path("admin_token_file")
            .unwrap_or(defaults.admin_token_file),
        drone_token: layers.text("drone_token"),
        read_token: layers.text("read_token"),
        legacy_drones: match layers.get("legacy_drones") {
            Some(Typed::Networks(n)) => n.clone(),
            _ => defaults.legacy_drones.clone(),
        },
        allowed_hosts: match layers.get("allowed_hosts") {
            Some(Typed::Hosts(h)) => h.clone(),
            _ => defaults.allowed_hosts.clone(),
        },
        drones: crate::server::DroneLimits {
            max_drones: layers.size("max_drones", defaults.drones.max_drones),
            registrations_per_minute: layers.int(
                "max_registrations_per_minute",
                u64::from(defaults.drones.registrations_per_minute),
            ) as u32,
            probe_networks: match layers.get("probe.networks") {
                Some(Typed::Networks(n)) => n.clone(),
                _ => defaults.drones.probe_networks.clone(),
            },
        },
        tls_cert: layers.path("tls_cert"),
        tls_key: layers.path("tls_key"),
        tls_proxy: layers.bool("tls_proxy", defaults.tls_proxy),
        synchronous: match layers.get("synchronous") {
            Some(Typed::Sync(s)) => *s,
            _ => defaults.synchronous,
        },
        max_body_bytes: layers.int("max_body_bytes", defaults.max_body_bytes),
        max_artifact_bytes: layers.int("max_artifact_bytes", defaults.max_artifact_bytes),
        http: {
            let d = &defaults.http;
            let secs = |key: &str, default: std::time::Duration| {
                std::time::Duration::from_secs(layers.int(key, default.as_secs()))
            };
            crate::server::HttpLimits {
                max_connections: layers.size("http.max_connections", d.max_connections),
                header_timeout: secs("http.header_timeout_s", d.header_timeout),
                idle_timeout: secs("http.idle_timeout_s", d.idle_timeout),
                body_idle_timeout: secs("http.body_timeout_s", d.body_idle_timeout),
                min_body_rate: layers.int("http.min_body_rate", d.min_body_rate),
                write_timeout: secs("http.write_timeout_s", d.write_timeout),
                min_reply_rate: layers.int("http.min_reply_rate", d.min_reply_rate),
                ..d.clone()
            }
        },
        probe: ProbeSettings {
            enabled: match layers.get("probe.enabled") {
                Some(Typed::Bool(b)) => *b,
                _ => defaults.probe.enabled,
            },
            command: layers
                .template("probe.command", None)
                .unwrap_or(defaults.probe.command),
            interval_s: layers.int("probe.interval_s", defaults.probe.interval_s),
            timeout_s: layers.int("probe.timeout_s", defaults.probe.timeout_s),
            parallel: layers.size("probe.parallel", defaults.probe.parallel),
        },
        escalation: EscalationSettings {
            restart_service: layers.template("escalation.restart_service", None),
            hard_restart: layers.template("escalation.hard_restart", None),
            reboot: layers.template("escalation.reboot", None),
            manual: layers.template("escalation.manual", None),
            timeout_s: layers.int("escalation.timeout_s", defaults.escalation.timeout_s),
        },
        policy: policy(&layers)?,
        data_dir: defaults.data_dir,
    };

    let mut sources: BTreeMap<String, Source> = keys::all_keys()
        .into_iter()
        .map(|key| {
            let source = match key.as_str() {
                "db_path" | "staging_path" | "admin_token_file" => Source::Derived("data_dir"),
                _ => Source::Default,
            };
            (key, source)
        })
        .collect();
    for (key, (_, source)) in layers.values {
        sources.insert(key, source);
    }
    follow_offline_timeout(&mut settings.policy, &mut sources, &mut warnings);

    let source_of = |key: &str| sources.get(key).cloned().unwrap_or(Source::Default);
    if let Err(e) = settings.policy.validate() {
        return Err(policy_error(&e, &source_of));
    }
    if settings.require_signed && settings.binpkg_keyring.is_none() {
        return Err(SettingsError::Invalid {
            key: "require_signed".into(),
            message: "require_signed = true needs binpkg_keyring: the public keys signatures are checked against".into(),
            origin: source_of("require_signed").to_string(),
        });
    }
    if settings.probe.enabled && settings.probe.timeout_s > settings.probe.interval_s {
        warnings.push(format!(
            "probe.timeout_s ({} s, {}) is longer than probe.interval_s ({} s, {}): a hung drone can stretch rounds",
            settings.probe.timeout_s,
            source_of("probe.timeout_s"),
            settings.probe.interval_s,
            source_of("probe.interval_s"),
        ));
    }
    check_tls(&settings, &source_of, &mut warnings)?;
    check_drone_access(&settings, &source_of, &mut warnings)?;
    if settings
        .read_token
        .as_ref()
        .is_some_and(|t| t.chars().count() < 16)
    {
        warnings.push(format!(
            "read_token ({}) is shorter than 16 characters; use a long random token",
            source_of("read_token")
        ));
    }
    if let Some(token) = &settings.admin_token {
        if token.chars().count() < 16 {
            warnings.push(format!(
                "admin_token ({}) is shorter than 16 characters; use a long random token",
                source_of("admin_token")
            ));
        }
        if settings.drone_token.as_ref() == Some(token) {
            warnings.push(
                "drone_token equals admin_token: every drone can run admin actions; use two tokens"
                    .into(),
            );
        }
        if settings.read_token.as_ref() == Some(token) {
            warnings.push(
                "read_token equals admin_token: every reader can run admin actions; use two tokens"
                    .into(),
            );
        }
    }
    if settings.read_token.is_some() && settings.read_token == settings.drone_token {
        warnings.push(
            "read_token equals drone_token: every drone can read everything; use two tokens".into(),
        );
    }

    Ok(Loaded {
        settings,
        file,
        sources,
        warnings,
    })
}

/// `tls_cert` and `tls_key` come together and must load (so `config check`
/// finds a bad certificate before a restart does); a listen address beyond
/// loopback with neither TLS nor a proxy note is flagged: tokens would cross
/// the network in clear text.
fn check_tls(
    settings: &Settings,
    source_of: &dyn Fn(&str) -> Source,
    warnings: &mut Vec<String>,
) -> Result<(), SettingsError> {
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            crate::server::TlsServer::from_pem_files(cert, key).map_err(|e| {
                SettingsError::Invalid {
                    key: "tls_cert".into(),
                    message: e.to_string(),
                    origin: format!(
                        "tls_cert from {}, tls_key from {}",
                        source_of("tls_cert"),
                        source_of("tls_key")
                    ),
                }
            })?;
            let mode = std::fs::metadata(key).map_or(0, |m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions())
            });
            if mode & 0o004 != 0 {
                warnings.push(format!(
                    "tls_key {} is readable by every user of this host (mode {:o}): whoever \
                     reads it can pose as this server; chmod 600 it (or 640 for a group)",
                    key.display(),
                    mode & 0o777
                ));
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            let (set, missing) = if settings.tls_cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            return Err(SettingsError::Invalid {
                key: missing.into(),
                message: format!(
                    "{set} is set but {missing} is not: TLS needs the certificate chain (tls_cert) and its private key (tls_key)"
                ),
                origin: source_of(set).to_string(),
            });
        }
        (None, None) => {
            if !settings.listen.ip().is_loopback() && !settings.tls_proxy {
                warnings.push(format!(
                    "listen = {} ({}) is reachable from the network over plain http: drone and admin tokens would cross it in clear text. Set tls_cert and tls_key so swarm serves https itself, or put a TLS reverse proxy in front (dist/nginx/swarm-proxy.conf), listen on loopback, and set tls_proxy = true",
                    settings.listen,
                    source_of("listen")
                ));
            }
        }
    }
    Ok(())
}

/// Who may act as a drone, given where the server listens: credential-less
/// drones from everywhere on a non-loopback address is refused outright;
/// a public address with no way for drones to prove who they are is flagged.
fn check_drone_access(
    settings: &Settings,
    source_of: &dyn Fn(&str) -> Source,
    warnings: &mut Vec<String>,
) -> Result<(), SettingsError> {
    let public = !settings.listen.ip().is_loopback();
    if public && legacy_from_everywhere(&settings.legacy_drones) {
        return Err(SettingsError::Invalid {
            key: "legacy_drones".into(),
            message: format!(
                "legacy_drones {:?} lets drones without a credential in from every address, and listen = {} is reachable from the network: anyone could act as any drone. Name the drones' networks (legacy_drones = [\"10.0.0.0/24\"]) or enroll the drones (`swarm node enroll NAME`) and drop the catch-all",
                settings.legacy_drones.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                settings.listen
            ),
            origin: format!(
                "legacy_drones from {}, listen from {}",
                source_of("legacy_drones"),
                source_of("listen")
            ),
        });
    }
    if !public {
        return Ok(());
    }
    let enrolled = crate::server::enrolled_count(&settings.db_path);
    let remote_legacy: Vec<String> = settings
        .legacy_drones
        .iter()
        .filter(|n| !n.network().is_loopback())
        .map(|n| n.to_string())
        .collect();
    if enrolled == 0 && settings.drone_token.is_none() && remote_legacy.is_empty() {
        warnings.push(format!(
            "listen = {} accepts connections from the network, but no drone has a credential and legacy_drones allows only loopback: remote drones will be refused. Enroll each one (`swarm node enroll NAME`, then `swarm drone --token-file FILE`)",
            settings.listen
        ));
    } else if !remote_legacy.is_empty() && settings.drone_token.is_none() {
        warnings.push(format!(
            "drones without a credential are trusted by address alone from {} ({}); enroll them (`swarm node enroll NAME`) to drop that",
            remote_legacy.join(", "),
            source_of("legacy_drones")
        ));
    }
    Ok(())
}

/// The default data dir: `$STATE_DIRECTORY` (set by systemd's
/// `StateDirectory=swarm` and by the OpenRC script, so the service user needs
/// no flag), else `/var/lib/swarm` for root, else `$XDG_DATA_HOME/swarm` or
/// `$HOME/.local/share/swarm`, else `./swarm-data`.
fn default_data_dir(request: &LoadRequest) -> PathBuf {
    let var = |name: &str| {
        request
            .env
            .get(name)
            .and_then(|v| v.split(':').next())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = var("STATE_DIRECTORY") {
        return state;
    }
    if request.running_as_root {
        return PathBuf::from("/var/lib/swarm");
    }
    if let Some(xdg) = var("XDG_DATA_HOME") {
        xdg.join("swarm")
    } else if let Some(home) = var("HOME") {
        home.join(".local/share/swarm")
    } else {
        PathBuf::from("swarm-data")
    }
}

fn policy(layers: &Layers) -> Result<Config, SettingsError> {
    let mut table = toml::Table::new();
    for (key, (typed, _)) in &layers.values {
        if let (Some(field), Typed::Policy(value)) = (key.strip_prefix("policy."), typed) {
            table.insert(field.to_owned(), value.clone());
        }
    }
    toml::Value::Table(table)
        .try_into::<Config>()
        .map_err(|e| SettingsError::Invalid {
            key: "policy".into(),
            message: format!("policy: {}", e.message().trim()),
            origin: "the [policy] values".into(),
        })
}

/// A confirmed-dead drone is reclaimed after `confirmed_dead_after_ms`, a
/// swarm setting v3 never had: a v3 operator's `RECLAIM_OFFLINE_TIMEOUT_MINUTES=1`
/// would otherwise stop the start over a default they cannot know. Left
/// unset, it follows a shorter offline timeout down (said in a warning);
/// set, it is checked as given.
fn follow_offline_timeout(
    policy: &mut Config,
    sources: &mut BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) {
    const KEY: &str = "policy.confirmed_dead_after_ms";
    let unset = matches!(sources.get(KEY), None | Some(Source::Default));
    if unset && policy.confirmed_dead_after_ms > policy.offline_timeout_ms {
        warnings.push(format!(
            "policy.confirmed_dead_after_ms follows offline_timeout_ms ({} ms, {}) down from its \
             default of {} ms: it can be at most the offline timeout",
            policy.offline_timeout_ms,
            sources
                .get("policy.offline_timeout_ms")
                .unwrap_or(&Source::Default),
            policy.confirmed_dead_after_ms,
        ));
        policy.confirmed_dead_after_ms = policy.offline_timeout_ms;
        sources.insert(KEY.into(), Source::Derived("policy.offline_timeout_ms"));
    }
}

fn policy_error(e: &ConfigError, source_of: &dyn Fn(&str) -> Source) -> SettingsError {
    let (field, other) = match e {
        ConfigError::Zero { field }
        | ConfigError::Percent { field, .. }
        | ConfigError::TooLarge { field, .. } => (*field, None),
        ConfigError::Order { field, other, .. } => (*field, Some(*other)),
    };
    // `escalation_cooldowns_ms[1]` is set as `escalation_cooldowns_ms`.
    let field = field.split('[').next().unwrap_or(field);
    let key = format!("policy.{field}");
    let origin = match other {
        Some(other) => {
            let other_key = format!("policy.{other}");
            let (a, b) = (source_of(&key), source_of(&other_key));
            if a == b {
                a.to_string()
            } else {
                format!("{field}: {a}; {other}: {b}")
            }
        }
        None => source_of(&key).to_string(),
    };
    SettingsError::Invalid {
        message: format!("policy.{e}"),
        key,
        origin,
    }
}
