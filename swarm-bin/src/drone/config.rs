//! `swarm drone` settings: flags > environment > the `[drone]` table of
//! `swarm.toml` > built-in defaults.
//!
//! Every argument is an `Option` with no clap default, so a value left unset
//! on the command line can still come from the environment (`SWARM_URL`,
//! `SWARM_DRONE_NAME`, `SWARM_DRONE_TOKEN`; `SWARM_CONFIG` names the file) or
//! the file. [`DroneArgs::resolve`] layers them and the defaults and checks the
//! result once, so the agent itself never sees a half-valid setting.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_core::{DroneKind, DroneName};

/// The default builder. `{atom}` already carries the `=` of a versioned atom. `--getbinpkg=n`
/// because `FEATURES=getbinpkg` (common since Gentoo's own binhost) turns `--usepkg` back on:
/// the drone then installed a downloaded package and uploaded it as its own build (h20).
pub(crate) const DEFAULT_BUILDER: &str =
    "emerge --oneshot --buildpkg --usepkg=n --getbinpkg=n {atom}";
/// The default Portage sync.
pub(crate) const DEFAULT_SYNC: &str = "emaint sync -r gentoo";
/// Where Gentoo keeps the tree's timestamp.
pub(crate) const DEFAULT_TIMESTAMP_FILE: &str = "/var/db/repos/gentoo/metadata/timestamp.chk";
/// Where a config file is looked for when none is named.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "/etc/swarm/swarm.toml";

/// What to do with running builds on SIGTERM/SIGINT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnStop {
    /// Let running builds finish and report them, then exit (the service default).
    Finish,
    /// Kill running builds and hand their leases back at once.
    Return,
}

impl From<OnStop> for swarm_core::agent::OnStop {
    fn from(o: OnStop) -> Self {
        match o {
            OnStop::Finish => swarm_core::agent::OnStop::Finish,
            OnStop::Return => swarm_core::agent::OnStop::Return,
        }
    }
}

/// Machine kind, when detection guesses wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KindArg {
    /// LXC container.
    Lxc,
    /// QEMU/KVM virtual machine.
    Qemu,
    /// Real hardware (never rebooted automatically).
    BareMetal,
}

impl From<KindArg> for DroneKind {
    fn from(k: KindArg) -> DroneKind {
        match k {
            KindArg::Lxc => DroneKind::Lxc,
            KindArg::Qemu => DroneKind::Qemu,
            KindArg::BareMetal => DroneKind::BareMetal,
        }
    }
}

/// `swarm drone`: the agent that runs on a build machine.
///
/// Every option can also be set in the `[drone]` table of swarm.toml (same
/// name, `_` for `-`); flags beat environment variables, which beat the file.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct DroneArgs {
    /// Control plane URL [env: SWARM_URL] [default: http://127.0.0.1:8100].
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// This drone's name [env: SWARM_DRONE_NAME] [default: the host name].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Drone token, sent as `Authorization: Bearer` [env: SWARM_DRONE_TOKEN]
    /// (prefer --token-file or the env var: flags show in `ps`).
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// File holding the drone token (`swarm node enroll NAME` issues one).
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Send the token over plain http even to a server that is not on this
    /// machine (anyone on the path can read it; use https instead).
    #[arg(long)]
    pub(crate) insecure_http: bool,
    /// For an https:// server: trust only the CA certificate(s) in this PEM
    /// file (the private CA that signed the server's certificate) instead of
    /// the system's CA store [env: SWARM_CA].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// The v3 `id` sent at registration [default: /etc/machine-id].
    #[arg(long)]
    pub(crate) machine_id: Option<String>,
    /// Builder command template with {atom}, {category}, {pn}, {pf}; split like a
    /// shell would but run without one. `standin` runs the bundled STAND-IN
    /// script that fakes builds (demos and tests).
    #[arg(long, verbatim_doc_comment)]
    pub(crate) builder: Option<String>,
    /// Builds run at once [default: 1].
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// On SIGTERM/SIGINT: finish running builds, or kill and return them [default: finish].
    #[arg(long, value_enum)]
    pub(crate) on_stop: Option<OnStop>,
    /// Take no new builds while the work dir or PKGDIR has less free space
    /// than this (`20GiB`, `512MiB`, `0` to never stop) [default: 5GiB].
    #[arg(long)]
    pub(crate) min_free_disk: Option<String>,
    /// Command that prints the build environment as Portage resolves it,
    /// reported so the server can match drones to the expected environment;
    /// empty to report none [default: portageq envvar -v ARCH CHOST CFLAGS ...].
    #[arg(long)]
    pub(crate) env_command: Option<String>,
    /// Seconds between heartbeats [default: 15].
    #[arg(long)]
    pub(crate) heartbeat_s: Option<u64>,
    /// Seconds between requests for work while idle [default: 5].
    #[arg(long)]
    pub(crate) poll_s: Option<u64>,
    /// Working directory: logs, the stand-in builder [default: /var/lib/swarm/drone].
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Per-build logs [default: <work-dir>/logs].
    #[arg(long)]
    pub(crate) log_dir: Option<PathBuf>,
    /// Where the builder puts binary packages (exported as PKGDIR) [default: /var/cache/binpkgs].
    #[arg(long)]
    pub(crate) pkgdir: Option<PathBuf>,
    /// Kill a build whose log has not grown for this long; 0: never [default: 3600].
    #[arg(long)]
    pub(crate) stall_timeout_s: Option<u64>,
    /// Kill a build that runs longer than this; 0: never [default: 43200].
    #[arg(long)]
    pub(crate) build_timeout_s: Option<u64>,
    /// Seconds between TERM and KILL when a build is stopped [default: 10].
    #[arg(long)]
    pub(crate) kill_grace_s: Option<u64>,
    /// Command run when the server asks for a Portage sync [default: emaint sync -r gentoo].
    /// `{snapshot}` becomes the snapshot to reach (`2026-02-16 00:45`, UTC) and
    /// `{snapshot_date}` its date (`20260216`, for `emerge-webrsync --revert`).
    #[arg(long)]
    pub(crate) sync_command: Option<String>,
    /// The Portage tree's timestamp file [default: /var/db/repos/gentoo/metadata/timestamp.chk].
    #[arg(long)]
    pub(crate) portage_timestamp_file: Option<PathBuf>,
    /// Machine kind, if detection is wrong [default: detected].
    #[arg(long, value_enum)]
    pub(crate) kind: Option<KindArg>,
    /// Address the control plane reaches this drone at [default: the route to the server].
    #[arg(long)]
    pub(crate) ip: Option<String>,
    /// swarm.toml to read the `[drone]` table from [env: SWARM_CONFIG]
    /// [default: /etc/swarm/swarm.toml if present].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

/// The `[drone]` table of swarm.toml. Unknown keys are refused so a typo is
/// an error, not a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileTable {
    server: Option<String>,
    name: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    machine_id: Option<String>,
    builder: Option<String>,
    slots: Option<u32>,
    on_stop: Option<OnStop>,
    min_free_disk: Option<String>,
    env_command: Option<String>,
    heartbeat_s: Option<u64>,
    poll_s: Option<u64>,
    work_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    pkgdir: Option<PathBuf>,
    stall_timeout_s: Option<u64>,
    build_timeout_s: Option<u64>,
    kill_grace_s: Option<u64>,
    sync_command: Option<String>,
    portage_timestamp_file: Option<PathBuf>,
    kind: Option<KindArg>,
    ip: Option<String>,
}

/// The whole file: only `[drone]` is read here; other tables belong to other commands.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default)]
    drone: FileTable,
}

/// Which builder runs a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Builder {
    /// A command template (already split into words).
    Template(Vec<String>),
    /// The bundled stand-in script.
    Standin,
}

/// Every setting of the agent, resolved and checked.
#[derive(Clone, Debug)]
pub(crate) struct DroneConfig {
    pub(crate) server: String,
    pub(crate) name: String,
    pub(crate) token: Option<String>,
    /// Where the token came from, when a file: read again when the server refuses it.
    pub(crate) token_file: Option<PathBuf>,
    /// How https servers are checked (the system's CAs or `--ca`).
    pub(crate) tls: swarm_net::client::TlsClient,
    pub(crate) machine_id: Option<String>,
    pub(crate) builder: Builder,
    pub(crate) slots: u32,
    pub(crate) on_stop: OnStop,
    /// Free space (MiB) below which the drone takes no new work.
    pub(crate) min_free_disk_mib: u64,
    /// Prints the build environment (`NAME='value'` lines); empty: report none.
    pub(crate) env_command: Vec<String>,
    pub(crate) heartbeat: Duration,
    pub(crate) poll: Duration,
    pub(crate) work_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) pkgdir: PathBuf,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) build_timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
    pub(crate) sync_command: Vec<String>,
    pub(crate) portage_timestamp_file: PathBuf,
    pub(crate) kind: Option<DroneKind>,
    pub(crate) ip: Option<String>,
}

impl DroneConfig {
    /// The directories a build needs to write: the work dir, PKGDIR and the spool that keeps a
    /// finished build until the server has it. The spool may be a volume of its own: full, a
    /// finished build was delivered without a copy on disk while the drone took more work
    /// (h36 F5), so the disk floor and the self check look at it too.
    pub(crate) fn written_dirs(&self) -> [PathBuf; 3] {
        [
            self.work_dir.clone(),
            self.pkgdir.clone(),
            spool_dir(&self.work_dir),
        ]
    }
}

/// The spool directory of an agent working in `work_dir` (`spool::dir`).
pub(crate) fn spool_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("spool")
}

impl DroneArgs {
    /// Layers the environment, the config file and the defaults under the
    /// flags, and checks the result.
    pub(crate) fn resolve(self) -> anyhow::Result<DroneConfig> {
        crate::process_env::require_text(&[
            "SWARM_URL",
            "SWARM_DRONE_NAME",
            "SWARM_DRONE_TOKEN",
            "SWARM_CA",
            "SWARM_CONFIG",
        ])?;
        self.with_env(crate::process_env::var).resolve_file()
    }

    /// Fills flags left unset from the environment (`var` reads one variable).
    fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> DroneArgs {
        self.server = self.server.or_else(|| var("SWARM_URL"));
        self.name = self.name.or_else(|| var("SWARM_DRONE_NAME"));
        self.token = self.token.or_else(|| var("SWARM_DRONE_TOKEN"));
        self.ca = self.ca.or_else(|| var("SWARM_CA").map(PathBuf::from));
        self.config = self
            .config
            .or_else(|| var("SWARM_CONFIG").map(PathBuf::from));
        self
    }

    fn resolve_file(self) -> anyhow::Result<DroneConfig> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                load_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => FileTable::default(),
        };
        self.merge(file)
    }

    fn merge(self, f: FileTable) -> anyhow::Result<DroneConfig> {
        let server = self
            .server
            .or(f.server)
            .unwrap_or_else(|| "http://127.0.0.1:8100".into());
        // A bare HOST:PORT means http://, as for the operator CLI.
        let server = swarm_net::client::server_url(&server).map_err(anyhow::Error::msg)?;
        let name = match self.name.or(f.name) {
            Some(n) => n,
            None => host_name().context("no drone name: pass --name or set SWARM_DRONE_NAME")?,
        };
        let name = DroneName::new(name.clone())
            .map_err(|e| anyhow::anyhow!("drone name {name:?}: {e}"))?
            .as_str()
            .to_string();
        let given = match (self.token, f.token) {
            (Some(t), _) => Some((t, "--token or SWARM_DRONE_TOKEN")),
            (None, Some(t)) => Some((t, "the config file's [drone] token")),
            (None, None) => None,
        };
        let (token, from, token_file) = match (given, self.token_file.or(f.token_file)) {
            (Some((t, from)), _) => (Some(t), from.to_string(), None),
            (None, Some(path)) => (
                Some(super::token_file::read(&path)?),
                path.display().to_string(),
                Some(path),
            ),
            (None, None) => (None, String::new(), None),
        };
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(why) = token
            .as_deref()
            .and_then(swarm_net::client::unsendable_token)
        {
            bail!("the drone token ({from}) {why}; issue a new one with `swarm node enroll NAME`");
        }
        if token.is_some() && !self.insecure_http {
            refuse_plain_http_credential(&server)?;
        }
        let ca = self.ca.or(f.ca);
        if ca.is_some() && !server.starts_with("https://") {
            tracing::warn!(server = %server, "--ca is set but the server URL is plain http://: the CA is not used");
        }
        let tls = swarm_net::client::TlsClient::load(ca.as_deref())?;
        let machine_id = self
            .machine_id
            .or(f.machine_id)
            .or_else(|| read_trimmed("/etc/machine-id"));
        let builder = parse_builder(
            self.builder
                .or(f.builder)
                .as_deref()
                .unwrap_or(DEFAULT_BUILDER),
        )?;
        let slots = self.slots.or(f.slots).unwrap_or(1);
        bounded("slots", u64::from(slots), 1, MAX_SLOTS)?;
        let min_free_disk_mib = match self.min_free_disk.or(f.min_free_disk) {
            None => swarm_core::HealthThresholds::default().disk_free_mib,
            Some(text) => {
                let size: bytesize::ByteSize = text.trim().parse().map_err(|e| {
                    anyhow::anyhow!(
                        "min-free-disk {text:?} is not a size like 20GiB or 512MiB: {e}"
                    )
                })?;
                let mib = size.as_u64() / (1024 * 1024);
                // A floor no volume has grounds the drone for good: every
                // sample would read as a full disk.
                if mib > MAX_MIN_FREE_DISK_MIB {
                    bail!(
                        "min-free-disk {text:?} is {mib} MiB, but must be at most \
                         {MAX_MIN_FREE_DISK_MIB} MiB (1 PiB)"
                    );
                }
                mib
            }
        };
        let env_text = self
            .env_command
            .or(f.env_command)
            .unwrap_or_else(|| super::buildenv::DEFAULT_ENV_COMMAND.into());
        let env_command = shell_words::split(&env_text)
            .with_context(|| format!("env command {env_text:?} does not split into words"))?;
        let heartbeat_s = self.heartbeat_s.or(f.heartbeat_s).unwrap_or(15);
        bounded("heartbeat-s", heartbeat_s, 1, MAX_HEARTBEAT_S)?;
        let poll_s = self.poll_s.or(f.poll_s).unwrap_or(5);
        bounded("poll-s", poll_s, 1, MAX_POLL_S)?;
        let stall_timeout_s = self.stall_timeout_s.or(f.stall_timeout_s).unwrap_or(3600);
        bounded("stall-timeout-s", stall_timeout_s, 0, MAX_BUILD_S)?;
        let build_timeout_s = self.build_timeout_s.or(f.build_timeout_s).unwrap_or(43_200);
        bounded("build-timeout-s", build_timeout_s, 0, MAX_BUILD_S)?;
        let kill_grace_s = self.kill_grace_s.or(f.kill_grace_s).unwrap_or(10);
        bounded("kill-grace-s", kill_grace_s, 0, MAX_KILL_GRACE_S)?;
        // Absolute: builds run in the work dir, and a path relative to the
        // agent's own directory (the builder, PKGDIR, the log) would name
        // nothing there; every build failed, counted against its package.
        let work_dir = absolute(
            self.work_dir
                .or(f.work_dir)
                .unwrap_or_else(|| PathBuf::from("/var/lib/swarm/drone")),
        )?;
        let log_dir = absolute(
            self.log_dir
                .or(f.log_dir)
                .unwrap_or_else(|| work_dir.join("logs")),
        )?;
        let sync = self
            .sync_command
            .or(f.sync_command)
            .unwrap_or_else(|| DEFAULT_SYNC.into());
        let sync_command = shell_words::split(&sync)
            .with_context(|| format!("sync command {sync:?} does not split into words"))?;
        if sync_command.is_empty() {
            bail!("sync command is empty");
        }
        check_sync_placeholders(&sync_command)?;
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Ok(DroneConfig {
            server,
            name,
            token,
            token_file,
            tls,
            machine_id,
            builder,
            slots,
            on_stop: self.on_stop.or(f.on_stop).unwrap_or(OnStop::Finish),
            min_free_disk_mib,
            env_command,
            heartbeat: Duration::from_secs(heartbeat_s),
            poll: Duration::from_secs(poll_s),
            work_dir,
            log_dir,
            pkgdir: absolute(
                self.pkgdir
                    .or(f.pkgdir)
                    .unwrap_or_else(|| PathBuf::from("/var/cache/binpkgs")),
            )?,
            stall_timeout: secs(stall_timeout_s),
            build_timeout: secs(build_timeout_s),
            kill_grace: Duration::from_secs(kill_grace_s),
            sync_command,
            portage_timestamp_file: absolute(
                self.portage_timestamp_file
                    .or(f.portage_timestamp_file)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_TIMESTAMP_FILE)),
            )?,
            kind: self.kind.or(f.kind).map(DroneKind::from),
            ip: self.ip.or(f.ip),
        })
    }
}

/// `path` from the agent's working directory, without resolving links.
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(&path)
        .with_context(|| format!("cannot make {} an absolute path", path.display()))
}

/// Most build slots (the server accepts at most 1024 cores).
const MAX_SLOTS: u64 = 1024;
/// Longest heartbeat interval: the server's default grace is 90 s, so a
/// slower heartbeat makes a healthy drone look dead.
const MAX_HEARTBEAT_S: u64 = 60;
/// Longest idle poll interval.
const MAX_POLL_S: u64 = 3600;
/// Highest free-space floor: 1 PiB, more than any build volume holds.
const MAX_MIN_FREE_DISK_MIB: u64 = 1 << 30;
/// Longest stall or build timeout: 30 days, the longest build the server
/// records.
const MAX_BUILD_S: u64 = 30 * 86_400;
/// Longest wait between TERM and KILL.
const MAX_KILL_GRACE_S: u64 = 3600;

/// Refuses a setting outside `min..=max`, naming it (flag spelling; the
/// `[drone]` key is the same with `_`).
fn bounded(name: &str, value: u64, min: u64, max: u64) -> anyhow::Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    bail!("{name} is {value}, but must be between {min} and {max}")
}

fn load_file(path: &Path) -> anyhow::Result<FileTable> {
    let text =
        swarm_net::regular_file::read_small_text(path, swarm_net::regular_file::MAX_CONFIG_BYTES)
            .with_context(|| format!("reading config file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("config file {}", path.display()))
}

fn parse_file(text: &str) -> anyhow::Result<FileTable> {
    let file: FileConfig = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!(swarm_net::settings::toml_error_text(&e, text)))
        .context("in the [drone] table")?;
    Ok(file.drone)
}

fn parse_builder(text: &str) -> anyhow::Result<Builder> {
    if text.trim() == "standin" {
        return Ok(Builder::Standin);
    }
    let words = shell_words::split(text)
        .with_context(|| format!("builder template {text:?} does not split into words"))?;
    if words.is_empty() {
        bail!("builder template is empty");
    }
    if !words.iter().any(|w| w.contains("{atom}")) {
        tracing::warn!(
            template = text,
            "builder template has no {{atom}}: the builder must read SWARM_ATOM"
        );
    }
    Ok(Builder::Template(words))
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// The placeholders a sync command may use.
const SYNC_PLACEHOLDERS: [&str; 2] = ["{snapshot}", "{snapshot_date}"];

/// Refuses a sync command with a `{placeholder}` other than the known ones
/// (a typo would otherwise reach the sync tool as literal text).
pub(crate) fn check_sync_placeholders(argv: &[String]) -> anyhow::Result<()> {
    for word in argv {
        let mut rest = word.as_str();
        while let Some(open) = rest.find('{') {
            let tail = &rest[open..];
            let Some(close) = tail.find('}') else { break };
            let p = &tail[..=close];
            if !SYNC_PLACEHOLDERS.contains(&p) {
                bail!(
                    "sync command: unknown placeholder {p} in {word:?}; use {}",
                    SYNC_PLACEHOLDERS.join(" or ")
                );
            }
            rest = &tail[close + 1..];
        }
    }
    Ok(())
}

/// The largest JSON reply the agent reads: its replies are a few KB (a
/// registration, a lease list), and a server streaming gigabytes into one
/// took the agent to 2 GB before the request timed out.
pub(crate) const REPLY_CAP: u64 = 4 << 20;

/// The sync command for reaching `expected`, placeholders filled in with
/// its normalised form. An error if the command names the snapshot and
/// `expected` is not one: the value comes from the server, and put into a
/// command as sent (`--upload-pack=...` after `git fetch origin`) it would
/// run whatever the server chose.
pub(crate) fn sync_argv(template: &[String], expected: &str) -> anyhow::Result<Vec<String>> {
    let placeholders = template
        .iter()
        .any(|w| SYNC_PLACEHOLDERS.iter().any(|p| w.contains(p)));
    if !placeholders {
        return Ok(template.to_vec());
    }
    let snapshot = swarm_core::PortageSnapshot::parse(expected).map_err(|e| {
        anyhow::anyhow!(
            "the server asked for a Portage sync to {expected:?}, which is not a Portage \
             snapshot ({e}); the sync command names the snapshot, so it is not run"
        )
    })?;
    if snapshot.as_str().starts_with('-') {
        bail!("the server asked for a Portage sync to a snapshot before year 0 ({expected:?}); not run");
    }
    Ok(template
        .iter()
        .map(|w| {
            w.replace("{snapshot}", snapshot.as_str())
                .replace("{snapshot_date}", &snapshot.date_compact())
        })
        .collect())
}

/// A credential goes over plain http only to this machine: elsewhere it
/// would cross a network in clear text.
fn refuse_plain_http_credential(server: &str) -> anyhow::Result<()> {
    let Some(host) = swarm_net::client::clear_text_host(server) else {
        return Ok(());
    };
    bail!(
        "refusing to send the drone credential over plain http to {host}: anyone on the network could read it and act as this drone. Use an https:// server URL (with --ca FILE for a private CA), or pass --insecure-http if the network is trusted"
    )
}

#[cfg(test)]
mod credential_tests {
    use super::refuse_plain_http_credential as check;

    #[test]
    fn a_credential_goes_over_plain_http_only_to_loopback() {
        assert!(check("http://127.0.0.1:8100").is_ok());
        assert!(check("http://localhost:8100/").is_ok());
        assert!(check("http://[::1]:8100").is_ok());
        assert!(check("https://binhost.example:8100").is_ok());
        let e = check("http://10.0.0.1:8100").expect_err("plain http to the network");
        assert!(e.to_string().contains("--insecure-http"), "{e}");
        assert!(check("http://binhost:8100").is_err());
        assert!(check("http://127.0.0.1.evil.example:8100").is_err());
        // A backslash ends an http URL's host for the parser ureq connects
        // with: this goes to remote.example, not to 127.0.0.1 (h13).
        let e = check("http://remote.example\\@127.0.0.1:8100").expect_err("remote");
        assert!(e.to_string().contains("to remote.example"), "{e}");
        assert!(check("http://user@[::1]:8100").is_ok());
        assert!(
            check("http://0x7f.1:8100").is_ok(),
            "127.0.0.1 spelt otherwise"
        );
        assert!(
            check("http://[::ffff:127.0.0.1]:8100").is_ok(),
            "127.0.0.1 mapped into IPv6"
        );
        // Not in /etc/hosts: a resolver may ask DNS, which can answer anything.
        assert!(check("http://localhost.:8100").is_err());
        assert!(check("http://[::ffff:10.0.0.1]:8100").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DroneArgs {
        DroneArgs {
            name: Some("drone-a".into()),
            ..DroneArgs::default()
        }
    }

    #[test]
    fn a_bare_host_and_port_means_http_as_for_the_cli() {
        let c = DroneArgs {
            server: Some("127.0.0.1:8100".into()),
            ..args()
        }
        .merge(FileTable::default())
        .expect("accepted");
        assert_eq!(c.server, "http://127.0.0.1:8100");
    }

    #[test]
    fn the_disk_floor_watches_the_spool_too() {
        let c = args().merge(FileTable::default()).expect("resolves");
        let dirs = c.written_dirs();
        assert!(dirs.contains(&c.work_dir), "{dirs:?}");
        assert!(dirs.contains(&c.pkgdir), "{dirs:?}");
        assert!(dirs.contains(&c.work_dir.join("spool")), "{dirs:?}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = args().merge(FileTable::default()).expect("resolves");
        assert_eq!(c.server, "http://127.0.0.1:8100");
        assert_eq!(c.slots, 1);
        assert_eq!(c.on_stop, OnStop::Finish);
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(
            c.builder,
            Builder::Template(
                [
                    "emerge",
                    "--oneshot",
                    "--buildpkg",
                    "--usepkg=n",
                    "--getbinpkg=n",
                    "{atom}"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(c.sync_command, ["emaint", "sync", "-r", "gentoo"]);
        assert_eq!(c.log_dir, PathBuf::from("/var/lib/swarm/drone/logs"));
        assert_eq!(c.pkgdir, PathBuf::from("/var/cache/binpkgs"));
        // Relative paths are the agent's directory's: builds run elsewhere.
        let mut rel = args();
        rel.work_dir = Some("drone/work".into());
        rel.pkgdir = Some("pkgs".into());
        let c = rel.merge(FileTable::default()).expect("resolves");
        let here = std::env::current_dir().expect("cwd");
        assert_eq!(c.work_dir, here.join("drone/work"));
        assert_eq!(c.log_dir, here.join("drone/work/logs"));
        assert_eq!(c.pkgdir, here.join("pkgs"));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = parse_file(
            r#"
            [serve]
            listen = "0.0.0.0:8100"
            [drone]
            server = "http://binhost:8100"
            name = "from-file"
            slots = 3
            on_stop = "return"
            builder = "standin"
            stall_timeout_s = 0
            "#,
        )
        .expect("parses");
        let c = DroneArgs {
            slots: Some(2),
            ..args()
        }
        .merge(file)
        .expect("resolves");
        assert_eq!(c.server, "http://binhost:8100");
        assert_eq!(c.name, "drone-a");
        assert_eq!(c.slots, 2);
        assert_eq!(c.on_stop, OnStop::Return);
        assert_eq!(c.builder, Builder::Standin);
        assert_eq!(c.stall_timeout, None);
    }

    #[test]
    fn the_environment_fills_what_flags_leave_unset() {
        let env = |k: &str| match k {
            "SWARM_URL" => Some("http://env:8100".to_string()),
            "SWARM_DRONE_NAME" => Some("env-name".to_string()),
            "SWARM_DRONE_TOKEN" => Some("secret".to_string()),
            _ => None,
        };
        let file = parse_file("[drone]\nserver = \"http://file:8100\"\n").expect("parses");
        let c = DroneArgs {
            insecure_http: true,
            ..DroneArgs::default()
        }
        .with_env(env)
        .merge(file)
        .expect("resolves");
        assert_eq!(
            (c.server.as_str(), c.name.as_str()),
            ("http://env:8100", "env-name")
        );
        assert_eq!(c.token.as_deref(), Some("secret"));
        let c = DroneArgs {
            insecure_http: true,
            ..args()
        }
        .with_env(env)
        .merge(FileTable::default())
        .expect("resolves");
        assert_eq!(c.name, "drone-a", "a flag beats the environment");
    }

    /// Every number the agent takes is bounded: one past the bound is
    /// refused naming the setting, the bound itself is accepted.
    #[test]
    fn every_numeric_agent_setting_is_bounded() {
        type Set = fn(&mut DroneArgs, u64);
        let table: [(&str, u64, Set); 6] = [
            ("slots", MAX_SLOTS, |a, v| a.slots = Some(v as u32)),
            ("heartbeat-s", MAX_HEARTBEAT_S, |a, v| {
                a.heartbeat_s = Some(v)
            }),
            ("poll-s", MAX_POLL_S, |a, v| a.poll_s = Some(v)),
            ("stall-timeout-s", MAX_BUILD_S, |a, v| {
                a.stall_timeout_s = Some(v)
            }),
            ("build-timeout-s", MAX_BUILD_S, |a, v| {
                a.build_timeout_s = Some(v)
            }),
            ("kill-grace-s", MAX_KILL_GRACE_S, |a, v| {
                a.kill_grace_s = Some(v)
            }),
        ];
        for (name, max, set) in table {
            let mut a = args();
            set(&mut a, max + 1);
            let err = a.merge(FileTable::default()).expect_err(name);
            assert!(
                err.to_string()
                    .starts_with(&format!("{name} is {}", max + 1)),
                "{name}: {err}"
            );
            let mut a = args();
            set(&mut a, max);
            assert!(a.merge(FileTable::default()).is_ok(), "{name} at {max}");
        }
        for zero in [
            |a: &mut DroneArgs| a.heartbeat_s = Some(0),
            |a: &mut DroneArgs| a.poll_s = Some(0),
        ] {
            let mut a = args();
            zero(&mut a);
            let err = a.merge(FileTable::default()).expect_err("0 is refused");
            assert!(
                err.to_string().contains(" is 0, but must be between 1"),
                "{err}"
            );
        }
        // A floor no volume has would ground the drone for good.
        let mut a = args();
        a.min_free_disk = Some("1PiB".into());
        assert!(a.merge(FileTable::default()).is_ok(), "1 PiB is the bound");
        let mut a = args();
        a.min_free_disk = Some("1025TiB".into());
        let err = a.merge(FileTable::default()).expect_err("past 1 PiB");
        assert!(err.to_string().contains("must be at most"), "{err}");
    }

    #[test]
    fn a_typo_in_the_drone_table_is_an_error() {
        let err = parse_file("[drone]\nslot = 2\n").expect_err("refused");
        assert!(format!("{err:#}").contains("slot"), "{err:#}");
    }

    #[test]
    fn nonsense_settings_are_refused() {
        for bad in [
            DroneArgs {
                slots: Some(0),
                ..args()
            },
            DroneArgs {
                heartbeat_s: Some(0),
                ..args()
            },
            DroneArgs {
                server: Some("ftp://binhost:8100".into()),
                ..args()
            },
            DroneArgs {
                name: Some("a b".into()),
                ..args()
            },
            DroneArgs {
                builder: Some("emerge 'unclosed".into()),
                ..args()
            },
        ] {
            assert!(bad.merge(FileTable::default()).is_err());
        }
    }

    #[test]
    fn an_empty_token_counts_as_none() {
        let c = DroneArgs {
            token: Some(String::new()),
            ..args()
        }
        .merge(FileTable::default())
        .expect("resolves");
        assert_eq!(c.token, None);
    }

    #[test]
    fn a_token_file_must_be_a_small_regular_file_with_a_token() {
        let dir = tempfile::tempdir().expect("dir");
        let with_file = |path: &std::path::Path| {
            DroneArgs {
                token_file: Some(path.to_owned()),
                ..args()
            }
            .merge(FileTable::default())
            .map(|c| c.token)
            .map_err(|e| format!("{e:#}"))
        };
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "\n").expect("write");
        let e = with_file(&empty).expect_err("empty");
        assert!(e.contains("is empty"), "{e}");
        // A device (or a FIFO, waited on for ever) is refused at once.
        let e = with_file(std::path::Path::new("/dev/zero")).expect_err("a device");
        assert!(e.contains("not a regular file"), "{e}");
        let good = dir.path().join("good.token");
        std::fs::write(&good, "swd_abc\n").expect("write");
        assert_eq!(with_file(&good), Ok(Some("swd_abc".to_owned())));
    }

    #[test]
    fn a_server_url_that_can_never_work_is_refused_at_start() {
        let server = |raw: &str| {
            DroneArgs {
                server: Some(raw.into()),
                ..args()
            }
            .merge(FileTable::default())
            .map(|c| c.server)
            .map_err(|e| e.to_string())
        };
        for bad in [
            "http://[::1",
            "http://a b:1",
            "http://127.0.0.1:99999",
            "ftp://127.0.0.1",
            "http://",
            "http://u:secret@127.0.0.1:8100",
            "http://127.0.0.1:8100/?x=1",
            "http://remote.example\\@127.0.0.1:8100",
        ] {
            let e = server(bad).expect_err(bad);
            assert!(!e.contains("secret"), "{e}");
        }
        assert_eq!(
            server("127.0.0.1:8100/").as_deref(),
            Ok("http://127.0.0.1:8100")
        );
        assert_eq!(
            server("https://farm.example/").as_deref(),
            Ok("https://farm.example")
        );
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused_at_start_without_showing_it() {
        let e = DroneArgs {
            token: Some(" tok\u{7}en-secret\n".into()),
            ..args()
        }
        .merge(FileTable::default())
        .expect_err("refused");
        let text = format!("{e:#}");
        assert!(text.contains("control character (U+0007)"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let ok = DroneArgs {
            token: Some(" token-secret\n".into()),
            ..args()
        }
        .merge(FileTable::default())
        .expect("a trimmed token is fine");
        assert_eq!(ok.token.as_deref(), Some("token-secret"));
    }

    #[test]
    fn the_sync_command_is_told_which_snapshot_to_reach() {
        let t: Vec<String> = [
            "emerge-webrsync",
            "--revert={snapshot_date}",
            "--to={snapshot}",
        ]
        .map(String::from)
        .to_vec();
        check_sync_placeholders(&t).expect("known placeholders");
        assert_eq!(
            sync_argv(&t, "Mon, 16 Feb 2026 00:45:01 +0000").expect("fills"),
            [
                "emerge-webrsync",
                "--revert=20260216",
                "--to=2026-02-16 00:45"
            ]
        );
        assert!(sync_argv(&t, "latest").is_err(), "no date to give");
        // What the server sends goes into the command only as a snapshot.
        let git = ["git", "fetch", "origin", "{snapshot}"]
            .map(String::from)
            .to_vec();
        for hostile in ["latest", "--upload-pack=touch /tmp/x;false", "-x", ""] {
            let e = sync_argv(&git, hostile).expect_err(hostile);
            assert!(e.to_string().contains("not a Portage snapshot"), "{e}");
        }
        let e = sync_argv(&git, "-0001-01-01").expect_err("reads as an option");
        assert!(e.to_string().contains("before year 0"), "{e}");
        assert_eq!(
            sync_argv(&git, "2026-02-17 00:00").expect("a snapshot")[3],
            "2026-02-17 00:00"
        );
        // A command without placeholders never sees the value.
        let emaint = ["emaint", "sync", "-r", "gentoo"]
            .map(String::from)
            .to_vec();
        assert_eq!(sync_argv(&emaint, "-x").expect("no placeholder"), emaint);
        let typo = ["sync", "{snapshots}"].map(String::from).to_vec();
        let e = check_sync_placeholders(&typo).expect_err("typo");
        assert!(e.to_string().contains("{snapshots}"), "{e}");
    }
}
