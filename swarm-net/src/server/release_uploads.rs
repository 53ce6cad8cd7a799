//! Which staged binaries that uploads stored a release may take: only those of builds
//! recorded as a success ([`swarm_core::release_gate::uploaded_binary`]). A drone stores its
//! binary before it reports, and nothing took the file away when the build then failed,
//! its lease was taken back or it was returned: the next release served it, the gate
//! passed it, and clients installed it (h109). Files no upload placed (a v3 drone's copies,
//! an operator's) are taken as before.
//!
//! Each file a release links is judged by the record line of that very content
//! (`file_leases`), read under `PLACING`, so an upload that replaces the file while the
//! release is made cannot pass its own unreported build off under the record of the one it
//! replaced (h111 F5).

use super::file_leases;
use super::http::ApiError;
use super::shared::Shared;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use swarm_core::release_gate::{uploaded_binary, UploadedBinary};
use swarm_core::LeaseId;

/// How each lease's build ended, as the history said (`Err`: it could not be read).
type Outcomes = BTreeMap<u64, Result<Option<Option<String>>, String>>;

/// Judges the files a release links; made by [`prepare`].
pub(crate) struct Uploads<'a> {
    sh: &'a Shared,
    staging: &'a Path,
    outcomes: RefCell<Outcomes>,
}

/// Removes from `staging` the binaries of builds that ended in anything but a success
/// (while the history still knows why: retention forgets a lease after a while, h111 F4),
/// and returns the judge of what a release links with the list of what went. A history
/// or records that cannot be read fail the create (h111 F6, h112 L2): every such file
/// would otherwise be released unchecked.
pub(crate) fn prepare<'a>(
    sh: &'a Shared,
    staging: &'a Path,
) -> Result<(Uploads<'a>, Vec<String>), ApiError> {
    let stored = super::upload_lease::stored_under_leases(staging).map_err(|e| {
        ApiError::new(
            503,
            format!(
                "cannot read the lease records in {}, which say which staged binaries uploads \
                 stored ({e}); nothing was made",
                super::lease_files::records_dir(staging).display()
            ),
        )
    })?;
    let outcomes: Outcomes = sh
        .with_history(|h| {
            stored
                .iter()
                .map(|(_, lease)| Ok((lease.0, Ok(h.lease_outcome(lease.0)?))))
                .collect()
        })
        .map_err(history_unreadable)?;
    let mut removed = Vec::new();
    for (rel, lease) in stored {
        let Some(Ok(outcome)) = outcomes.get(&lease.0) else {
            continue;
        };
        if uploaded_binary(outcome.as_ref().map(|o| o.as_deref())) != UploadedBinary::Discard {
            continue;
        }
        let why = reason(lease.0, outcome);
        match super::upload_lease::discard_if_still(staging, &rel, lease) {
            Ok(true) => {
                tracing::warn!(file = %rel, lease = lease.0, "removed from staging: {why}");
                removed.push(format!("{rel}: {why}"));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(file = %rel, error = %e, "cannot remove from staging the binary of a build that did not succeed; releases still leave it out")
            }
        }
    }
    let judge = Uploads {
        sh,
        staging,
        outcomes: RefCell::new(outcomes),
    };
    Ok((judge, removed))
}

impl Uploads<'_> {
    /// Why the file linked from `rel` (its content's digest is `sha256`) is left out of the
    /// release, or `None` when no upload placed it or its build succeeded. A record that
    /// cannot be read leaves the file out with the reason; the rest of the release goes on.
    pub(crate) fn refuse(&self, rel: &str, sha256: &str) -> Option<String> {
        let (category, file) = rel.split_once('/')?;
        let lease = {
            let _placing = super::staged_path::PLACING
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            file_leases::lease_of(self.staging, category, file, sha256)
        };
        let lease = match lease {
            Ok(l) => l?,
            Err(e) => {
                return Some(format!(
                    "cannot read which lease stored it ({e}): a binary that may be a failed \
                     build's is not released"
                ))
            }
        };
        let mut outcomes = self.outcomes.borrow_mut();
        let outcome = outcomes.entry(lease).or_insert_with(|| {
            // A lease first seen now: an upload placed the file while the release was made.
            self.sh
                .with_history(|h| h.lease_outcome(lease))
                .map_err(|e| e.body.error)
        });
        match outcome {
            Ok(outcome) => match uploaded_binary(outcome.as_ref().map(|o| o.as_deref())) {
                UploadedBinary::Take => None,
                UploadedBinary::Wait | UploadedBinary::Discard => Some(reason(lease, outcome)),
            },
            Err(e) => Some(format!(
                "uploaded under lease {lease}, and the build history cannot be read ({e}): \
                 only a successful build's binary is released"
            )),
        }
    }
}

fn reason(lease: u64, outcome: &Option<Option<String>>) -> String {
    let lease = LeaseId(lease);
    match outcome {
        Some(Some(ended)) => format!(
            "uploaded under lease {lease}, whose build ended {ended}: only a successful build's \
             binary is released"
        ),
        _ => format!(
            "uploaded under lease {lease}, whose build has not reported yet: only a successful \
             build's binary is released"
        ),
    }
}

/// The answer to a create when the history cannot be read.
fn history_unreadable(e: ApiError) -> ApiError {
    ApiError::new(
        503,
        format!(
            "cannot read the build history, which says which staged binaries successful builds \
             stored ({}); nothing was made, try again",
            e.body.error
        ),
    )
}
