//! Drone credentials: one token per enrolled drone name, shown once at
//! enrolment and kept only as its SHA-256 (a token is 32 random bytes, so a
//! fast hash is enough). They live in `drone-credentials.json` beside the
//! database, written atomically (temporary file, fsync, rename), so an
//! enrolment that was answered survives a restart or a crash.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The file's name, next to the database.
pub const CREDENTIALS_FILE: &str = "drone-credentials.json";

/// Every token starts with this, so a leaked one is recognisable.
const TOKEN_PREFIX: &str = "swd_";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Entry {
    /// Hex SHA-256 of the token (empty once revoked: no token matches it).
    sha256: String,
    /// Milliseconds since the epoch.
    enrolled_at_ms: u64,
    /// When the credential was revoked: the name stays enrolled, so no one can act as it
    /// until it is enrolled again (forgetting it opened the name to any caller without a
    /// credential from `legacy_drones`, h110 F2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at_ms: Option<u64>,
}

/// The enrolled drones and their hashed tokens.
pub(crate) struct Credentials {
    path: PathBuf,
    by_name: RwLock<BTreeMap<String, Entry>>,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

impl Credentials {
    /// Loads the file next to `db_path` (none yet: nobody is enrolled).
    pub(crate) fn open(db_path: &Path) -> std::io::Result<Credentials> {
        let path = credentials_path(db_path);
        let by_name = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a credentials file: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Credentials {
            path,
            by_name: RwLock::new(by_name),
        })
    }

    /// The drone a token belongs to.
    pub(crate) fn who(&self, token: &str) -> Option<String> {
        let want = digest(token);
        let m = self.by_name.read().ok()?;
        m.iter()
            .find(|(_, e)| constant_time_eq::constant_time_eq(e.sha256.as_bytes(), want.as_bytes()))
            .map(|(n, _)| n.clone())
    }

    /// Whether `name` has a credential, or had one revoked (then only the holder of a new
    /// one may act as it).
    pub(crate) fn is_enrolled(&self, name: &str) -> bool {
        self.by_name.read().is_ok_and(|m| m.contains_key(name))
    }

    /// An enrolled name that `name` differs from only in letter case, if any: `ALPHA`
    /// beside an enrolled `alpha` reads as that drone in a list (h110).
    pub(crate) fn enrolled_like(&self, name: &str) -> Option<String> {
        let m = self.by_name.read().ok()?;
        if m.contains_key(name) {
            return None;
        }
        let folded = name.to_lowercase();
        m.keys().find(|k| k.to_lowercase() == folded).cloned()
    }

    /// How many drones hold a credential (revoked ones left out).
    pub(crate) fn count(&self) -> usize {
        self.by_name
            .read()
            .map(|m| m.values().filter(|e| e.revoked_at_ms.is_none()).count())
            .unwrap_or(0)
    }

    /// A new token for `name`, replacing any earlier one; durable before it
    /// is returned.
    pub(crate) fn enroll(&self, name: &str, now_ms: u64) -> std::io::Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let mut m = self
            .by_name
            .write()
            .map_err(|_| std::io::Error::other("credentials lock poisoned"))?;
        let mut next = m.clone();
        next.insert(
            name.to_string(),
            Entry {
                sha256: digest(&token),
                enrolled_at_ms: now_ms,
                revoked_at_ms: None,
            },
        );
        self.persist(&next)?;
        *m = next;
        Ok(token)
    }

    /// Voids `name`'s credential and keeps the name locked until it is enrolled again;
    /// false if it had none (or it was revoked already).
    pub(crate) fn revoke(&self, name: &str, now_ms: u64) -> std::io::Result<bool> {
        let mut m = self
            .by_name
            .write()
            .map_err(|_| std::io::Error::other("credentials lock poisoned"))?;
        if m.get(name).is_none_or(|e| e.revoked_at_ms.is_some()) {
            return Ok(false);
        }
        let mut next = m.clone();
        next.insert(
            name.to_string(),
            Entry {
                sha256: String::new(),
                enrolled_at_ms: m[name].enrolled_at_ms,
                revoked_at_ms: Some(now_ms),
            },
        );
        self.persist(&next)?;
        *m = next;
        Ok(true)
    }

    fn persist(&self, m: &BTreeMap<String, Entry>) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Where the credentials of the store at `db_path` are kept.
pub fn credentials_path(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(CREDENTIALS_FILE)
}

/// How many drones have a credential in the store at `db_path` (for
/// `swarm config check`); 0 when there is no file.
pub fn enrolled_count(db_path: &Path) -> usize {
    Credentials::open(db_path).map(|c| c.count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_hashed_survives_reopening_and_dies_with_revoke() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("swarm.db");
        let c = Credentials::open(&db).expect("open");
        let t = c.enroll("drone-a", 1).expect("enroll");
        assert!(t.starts_with("swd_") && t.len() == 68);
        let text = std::fs::read_to_string(credentials_path(&db)).expect("file");
        assert!(!text.contains(&t[4..]), "the token itself is never stored");
        let c = Credentials::open(&db).expect("reopen");
        assert_eq!(c.who(&t).as_deref(), Some("drone-a"));
        assert_eq!(c.who("swd_wrong"), None);
        let t2 = c.enroll("drone-a", 2).expect("re-enroll");
        assert_eq!(c.who(&t), None, "re-enrolling replaces the old token");
        assert_eq!(c.who(&t2).as_deref(), Some("drone-a"));
        assert!(c.revoke("drone-a", 3).expect("revoke"));
        assert!(!c.revoke("drone-a", 4).expect("revoke again"));
        let c = Credentials::open(&db).expect("reopen");
        assert_eq!(c.who(&t2), None);
        assert_eq!(c.who(""), None, "no token matches a revoked credential");
        // The name stays locked until it is enrolled again.
        assert!(c.is_enrolled("drone-a"));
        assert_eq!(c.count(), 0);
        let t3 = c.enroll("drone-a", 5).expect("enrolled again");
        assert_eq!(c.who(&t3).as_deref(), Some("drone-a"));
        assert_eq!(c.count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(credentials_path(&db))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
