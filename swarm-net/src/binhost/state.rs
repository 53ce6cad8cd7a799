//! Release bookkeeping on disk: one small `state.json` (the releases, the
//! published one, the publish history, the last index TIMESTAMP) rewritten
//! atomically on every action, and one `<release>.json` of entries written
//! once when the release is made.

use super::error::{io, ReleaseError};
use super::files::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A release at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Its name (a directory under the binhost).
    pub name: String,
    /// When it was made, ms since the epoch.
    pub created_at_ms: u64,
    /// The TIMESTAMP of its own index.
    pub timestamp: u64,
    /// Packages in it.
    pub packages: u32,
    /// Their total size.
    pub bytes: u64,
    /// The queue generation current when it was made.
    pub generation: u64,
    /// Protected from retention by `keep`.
    pub kept: bool,
    /// Tags (tagged releases are protected from retention).
    pub tags: Vec<String>,
    /// Whether clients install from it now.
    #[serde(default)]
    pub published: bool,
}

/// One package of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEntry {
    /// `category/pf`.
    pub cpv: String,
    /// Inside the release directory.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA256 of the file.
    pub sha256: String,
    /// Portage's BUILD_ID, when it has one.
    pub build_id: Option<u64>,
    /// The drone whose build this is, when the history says.
    pub built_by: Option<String>,
    /// The Portage snapshot that drone reported when the release was made.
    pub portage_snapshot: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) releases: Vec<ReleaseInfo>,
    pub(crate) published: Option<String>,
    /// Publications, oldest first (rollback walks it back).
    pub(crate) history: Vec<String>,
    /// The last TIMESTAMP written into any index.
    pub(crate) last_timestamp: u64,
    /// The TIMESTAMP of the served top `Packages`: saved before that index
    /// is written, so a start can tell an index a crash left behind (see
    /// `Releases::open`). `None` in state written before it was kept.
    #[serde(default)]
    pub(crate) published_timestamp: Option<u64>,
}

/// Publications kept in the history (rollback walks it back): each publish
/// adds one, and an unbounded list only grows `state.json`.
pub(crate) const MAX_HISTORY: usize = 256;

const STATE: &str = "state.json";

/// The names of the bookkeeping's own files beside the releases' entries
/// (`state.json`, scan's `inspect-cache.json`): no release may take one.
pub(crate) const BOOKKEEPING: [&str; 2] = ["state", "inspect-cache"];

impl State {
    pub(crate) fn load(dir: &Path) -> Result<State, ReleaseError> {
        let path = dir.join(STATE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ReleaseError::Damaged {
                path,
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), ReleaseError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ReleaseError::Damaged {
            path: dir.join(STATE),
            why: e.to_string(),
        })?;
        write_atomic(&dir.join(STATE), &bytes)
    }

    pub(crate) fn info(&self, name: &str) -> Option<ReleaseInfo> {
        self.releases
            .iter()
            .find(|r| r.name == name)
            .map(|r| ReleaseInfo {
                published: self.published.as_deref() == Some(name),
                ..r.clone()
            })
    }

    pub(crate) fn infos(&self) -> Vec<ReleaseInfo> {
        self.releases
            .iter()
            .filter_map(|r| self.info(&r.name))
            .collect()
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut ReleaseInfo> {
        self.releases.iter_mut().find(|r| r.name == name)
    }

    /// A TIMESTAMP later than every one written before, even if the clock
    /// stepped back, and at least [`PORTAGE_IMS_TOLERANCE_S`] + 1 s later:
    /// Portage asks with `If-Modified-Since: <cached TIMESTAMP + 5 s>`, so an
    /// index only 1 s newer (a quick rollback) would be answered 304 and the
    /// client would keep its stale copy.
    pub(crate) fn next_timestamp(&mut self, now_ms: u64) -> u64 {
        let t = (now_ms / 1000).max(self.last_timestamp + PORTAGE_IMS_TOLERANCE_S + 1);
        self.last_timestamp = t;
        t
    }

    /// `YYYYMMDD-HHMMSS` (UTC), with `-2`, `-3`... when taken.
    pub(crate) fn fresh_name(
        &self,
        now_ms: u64,
        root: &Path,
        reserved: &dyn Fn(&str) -> bool,
    ) -> String {
        let base = time::OffsetDateTime::from_unix_timestamp((now_ms / 1000) as i64)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year][month][day]-[hour][minute][second]"
                ))
                .ok()
            })
            .unwrap_or_else(|| format!("r{}", now_ms / 1000));
        let taken = |n: &str| self.info(n).is_some() || root.join(n).exists() || reserved(n);
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !taken(n))
            .unwrap_or(base)
    }
}

pub(crate) fn save_entries(
    dir: &Path,
    name: &str,
    entries: &[ReleaseEntry],
) -> Result<(), ReleaseError> {
    let path = dir.join(format!("{name}.json"));
    let bytes = serde_json::to_vec(entries).map_err(|e| ReleaseError::Damaged {
        path: path.clone(),
        why: e.to_string(),
    })?;
    write_atomic(&path, &bytes)
}

pub(crate) fn load_entries(dir: &Path, name: &str) -> Result<Vec<ReleaseEntry>, ReleaseError> {
    let path = dir.join(format!("{name}.json"));
    let bytes = std::fs::read(&path).map_err(io("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Damaged {
        path,
        why: e.to_string(),
    })
}

pub(crate) fn remove_entries(dir: &Path, name: &str) -> Result<(), ReleaseError> {
    let path = dir.join(format!("{name}.json"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", &path)(e)),
    }
}

/// What Portage adds to its cached index's TIMESTAMP when it asks
/// `If-Modified-Since` (`portage.util._urlopen.TIMESTAMP_TOLERANCE`).
pub(crate) const PORTAGE_IMS_TOLERANCE_S: u64 = 5;

#[cfg(test)]
mod timestamp_tests {
    use super::*;

    #[test]
    fn each_index_timestamp_clears_portages_if_modified_since_tolerance() {
        let mut st = State::default();
        let a = st.next_timestamp(1_000_000);
        let b = st.next_timestamp(1_000_000);
        assert!(b > a + PORTAGE_IMS_TOLERANCE_S, "{a} then {b}");
        let c = st.next_timestamp(2_000_000_000);
        assert_eq!(c, 2_000_000);
    }
}
