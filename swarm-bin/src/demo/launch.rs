//! Starting the demo's server and the command lines of its drones.

use super::procs::Supervisor;
use super::progress::Progress;
use super::world::World;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_net::client::Client;

/// Seconds between a drone's heartbeats in the demo (the product's default is 15).
const HEARTBEAT_S: u64 = 1;

/// What every demo drone's command line shares.
pub(super) struct DroneLaunch<'a> {
    pub(super) url: &'a str,
    pub(super) run_id: &'a str,
    pub(super) config: &'a Path,
}

impl DroneLaunch<'_> {
    /// `swarm drone …` for `name` with `builder` and `slots`.
    pub(super) fn args(
        &self,
        name: &str,
        builder: &str,
        slots: u32,
        work: &Path,
        pkgdir: &Path,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "drone".into(),
            "--server".into(),
            self.url.to_owned(),
            "--name".into(),
            name.to_owned(),
            "--machine-id".into(),
            format!("{}-{name}", self.run_id),
            "--builder".into(),
            builder.to_owned(),
            "--slots".into(),
            slots.to_string(),
            "--heartbeat-s".into(),
            HEARTBEAT_S.to_string(),
            "--poll-s".into(),
            "1".into(),
            "--on-stop".into(),
            "return".into(),
            "--kill-grace-s".into(),
            "1".into(),
            // The demo's builds write little; the real default (5 GiB free)
            // would stop the demo on a nearly full machine for no reason.
            "--min-free-disk".into(),
            "256MiB".into(),
            "--work-dir".into(),
            path_arg(work),
            "--pkgdir".into(),
            path_arg(pkgdir),
            "--portage-timestamp-file".into(),
            path_arg(&work.join("no-portage-timestamp")),
            "--config".into(),
            path_arg(self.config),
        ];
        if builder == "standin" {
            // Stand-in builds have no Portage environment to report.
            args.extend(["--env-command".into(), String::new()]);
        }
        args
    }
}

/// The demo's running server.
pub(super) struct Started {
    pub(super) url: String,
    /// An admin client of it.
    pub(super) client: Client,
    /// The (empty) config file the server and the drones read.
    pub(super) config: PathBuf,
    /// Its data dir.
    pub(super) server_dir: PathBuf,
}

/// Starts the demo's `swarm serve` (loopback, a random port, the demo's
/// policy, data in `dir/server`).
pub(super) fn start_server(
    sup: &mut Supervisor,
    dir: &Path,
    progress: &mut Progress,
) -> anyhow::Result<Started> {
    // An empty config file, so /etc/swarm/swarm.toml on this host cannot
    // change the demo; the settings come from the environment.
    let config = dir.join("swarm.toml");
    std::fs::write(
        &config,
        "# swarm demo: settings come from the environment\n",
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let server_dir = dir.join("server");
    let url = sup.start_server(
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            path_arg(&server_dir),
            "--config".into(),
            path_arg(&config),
        ],
        &server_env(),
        &dir.join("server.log"),
    )?;
    progress.note(&format!(
        "server listening on {url} (pid {}), data in {}",
        sup.server().map_or(0, |p| p.pid),
        server_dir.display()
    ));
    let token_file = server_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the admin token {}", token_file.display()))?;
    // Creating a release inspects every staged file: give the server time.
    let client = Client::new(url.clone(), Duration::from_secs(60))
        .with_admin_token(Some(token.trim().to_string()));
    Ok(Started {
        url,
        client,
        config,
        server_dir,
    })
}

/// The server's settings for the demo: every timeout shortened so a drone's
/// death is noticed in seconds, retries quick, the prober off (drones here
/// have no SSH to probe), and one slot per core so the demo's `--slots`
/// decides.
pub(crate) fn server_env() -> Vec<(String, String)> {
    let log = std::env::var("SWARM_LOG").unwrap_or_else(|_| "info".into());
    [
        ("SWARM_POLICY_HEARTBEAT_GRACE_MS", "3000"),
        ("SWARM_POLICY_OFFLINE_TIMEOUT_MS", "5000"),
        ("SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS", "5000"),
        ("SWARM_POLICY_FAILOVER_GRACE_MS", "1000"),
        ("SWARM_POLICY_CORES_PER_SLOT", "1"),
        ("SWARM_POLICY_RETRY_BASE_MS", "1000"),
        ("SWARM_POLICY_RETRY_CAP_MS", "4000"),
        ("SWARM_POLICY_FAILURE_MEMORY_MS", "5000"),
        ("SWARM_POLICY_REPLAN_INTERVAL_MS", "1000"),
        ("SWARM_PROBE_ENABLED", "false"),
        ("SWARM_LOG", log.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The stand-in's settings: sleep `size_s / speed` seconds, break the
/// packages the sample names.
pub(super) fn standin_env(world: &World, sizes: &Path, speed: f64) -> Vec<(String, String)> {
    let list = |atoms: &[swarm_core::Atom]| {
        atoms
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        (
            "SWARM_STANDIN_SCALE_MS".into(),
            format!("{:.6}", 1000.0 / speed),
        ),
        ("SWARM_STANDIN_SIZES".into(), sizes.display().to_string()),
        ("SWARM_STANDIN_FAIL".into(), list(&world.fail)),
        ("SWARM_STANDIN_OOM".into(), list(&world.oom)),
        (
            "SWARM_LOG".into(),
            std::env::var("SWARM_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ]
}

/// A path as one command-line argument.
pub(super) fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policy_is_valid_and_reclaims_within_seconds() {
        let loaded = swarm_net::settings::Settings::load(&swarm_net::settings::LoadRequest {
            config: swarm_net::settings::ConfigFile::None,
            env: server_env().into_iter().collect(),
            listen: None,
            data_dir: Some(PathBuf::from("/nonexistent")),
            running_as_root: false,
        });
        let s = match loaded {
            Ok(l) => l.settings,
            Err(e) => panic!("{e}"),
        };
        assert!(!s.probe.enabled);
        assert!(s.policy.offline_timeout_ms <= 10_000);
        assert!(s.policy.heartbeat_grace_ms >= 2 * HEARTBEAT_S * 1000);
        assert_eq!(s.policy.cores_per_slot, 1);
    }
}
