//! Why a release action did not happen, with the HTTP status each reason maps to.

use std::path::{Path, PathBuf};
use swarm_core::release_gate::GateVerdict;

/// Why a release action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No such release.
    #[error("no release named {0:?} (see `swarm release list`)")]
    NotFound(String),
    /// The name is taken.
    #[error("a release named {0:?} already exists")]
    Exists(String),
    /// The name cannot be a directory name on the binhost.
    #[error("bad release name {0:?}: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`")]
    BadName(String),
    /// A tag that does not fit.
    #[error("bad tag {0:?}: use 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadTag(String),
    /// Staging holds no valid binary package.
    #[error("staging {0} holds no valid binary package: nothing to release")]
    Empty(PathBuf),
    /// Staging holds valid packages, but none of them is this release's to take (another
    /// profile's, or built in an environment the profile does not admit).
    #[error("staging {staging} holds {skipped} valid binary package(s), none of them this release's to take (e.g. {example}): nothing to release")]
    NoneTaken {
        /// The staging tree scanned.
        staging: PathBuf,
        /// How many valid packages were left out.
        skipped: usize,
        /// One of them and why, `cat/pf: reason`.
        example: String,
    },
    /// The gate said no.
    #[error("the safety gate refuses to publish {name}: {}", .verdict.reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        /// The release.
        name: String,
        /// Every reason.
        verdict: GateVerdict,
    },
    /// Nothing earlier to go back to.
    #[error("nothing to roll back to: {0}")]
    NoRollback(String),
    /// An override without a reason.
    #[error("--force needs --reason TEXT: the override is recorded with it")]
    ForceWithoutReason,
    /// A filesystem operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `binhost_header_from` cannot be used.
    #[error("binhost_header_from {path}: {why} (point it at a Packages file Portage wrote, or unset it)")]
    BadHeaderFile {
        /// The configured file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The binhost root holds none of the listed releases: most likely its
    /// volume is not mounted, and acting would part lists and files.
    #[error("the binhost root {root} holds none of the {listed} release(s) the state lists: is its volume mounted? Nothing was changed; mount it (or restore it) and retry")]
    RootWithoutReleases {
        /// The binhost root.
        root: PathBuf,
        /// How many releases the state lists.
        listed: usize,
    },
    /// Bookkeeping that does not parse.
    #[error("release bookkeeping {path} is damaged: {why}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl ReleaseError {
    /// The HTTP status that fits.
    pub fn status(&self) -> u16 {
        match self {
            ReleaseError::NotFound(_) => 404,
            ReleaseError::Exists(_)
            | ReleaseError::Refused { .. }
            | ReleaseError::NoRollback(_) => 409,
            ReleaseError::BadName(_)
            | ReleaseError::BadTag(_)
            | ReleaseError::ForceWithoutReason => 400,
            ReleaseError::Empty(_) | ReleaseError::NoneTaken { .. } => 409,
            // A full disk or quota, as uploads answer it: the operator frees
            // space and retries.
            ReleaseError::Io { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::StorageFull)
                    || source.raw_os_error() == Some(122) =>
            {
                507
            }
            ReleaseError::RootWithoutReleases { .. } => 503,
            ReleaseError::Io { .. }
            | ReleaseError::Damaged { .. }
            | ReleaseError::BadHeaderFile { .. } => 500,
        }
    }
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ReleaseError + 'a {
    move |source| ReleaseError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_or_quota_is_507_and_other_io_500() {
        let io_err = |raw| ReleaseError::Io {
            what: "write",
            path: PathBuf::from("/binhost/Packages"),
            source: std::io::Error::from_raw_os_error(raw),
        };
        assert_eq!(io_err(28).status(), 507, "ENOSPC");
        assert_eq!(io_err(122).status(), 507, "EDQUOT");
        assert_eq!(io_err(5).status(), 500, "EIO");
    }
}
