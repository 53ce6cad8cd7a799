//! Build logs over HTTP: the agent uploads one per build, the CLI reads them.

use super::admin::encode;
use super::{Auth, Client, ClientError};
use serde::Deserialize;
use swarm_store::BuildRow;

/// One build of `GET /api/v1/logs?package=`: the history row and whether a
/// log is stored for it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoggedBuild {
    /// The build (one lease).
    #[serde(flatten)]
    pub build: BuildRow,
    /// Compressed size of the stored log, when there is one.
    pub log_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct LoggedBuilds {
    builds: Vec<LoggedBuild>,
}

/// The server's answer to an upload.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogStored {
    /// Compressed bytes stored.
    pub bytes: u64,
}

impl Client {
    /// `PUT /api/v1/logs/<lease>`: a gzip body, sent by the drone that held the lease.
    pub fn put_log(
        &self,
        lease: u64,
        package: &str,
        node: &str,
        farm: Option<&str>,
        gzip: &[u8],
    ) -> Result<LogStored, ClientError> {
        let path = format!(
            "/api/v1/logs/{lease}?package={}&node={}",
            encode(package),
            encode(node)
        );
        let mut headers = vec![("Content-Type", "application/gzip")];
        // The farm that gave the lease: another farm's lease of that number
        // is another build (see `Binding`).
        if let Some(farm) = farm {
            headers.push(("X-Swarm-Farm", farm));
        }
        self.put_small(&path, &headers, gzip, Auth::Drone)
    }

    /// `GET /api/v1/logs?package=`: the package's builds, newest first.
    pub fn logged_builds(
        &self,
        package: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LoggedBuild>, ClientError> {
        let mut path = format!("/api/v1/logs?limit={limit}");
        if let Some(p) = package {
            path.push_str(&format!("&package={}", encode(p)));
        }
        let r: LoggedBuilds = self.get_json(&path, Auth::None)?;
        Ok(r.builds)
    }

    /// `GET /api/v1/logs/<lease>`: one build's log as text.
    pub fn log_text(&self, lease: u64) -> Result<String, ClientError> {
        self.get_text(&format!("/api/v1/logs/{lease}"), Auth::None)
    }
}
