//! Which uploaded binaries a release may take, by how their builds ended.

/// What a release does with a binary an upload stored under a lease. A drone stores its
/// binary before it reports the build, so the file of a build that then failed, was
/// returned or was taken back sat in staging, and the next release served it to clients
/// (h109): only a build recorded as a success vouches for its binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadedBinary {
    /// The build succeeded, or the history no longer knows the lease (it keeps builds for a
    /// while, and a file older than that was judged when it was young).
    Take,
    /// The build has not reported yet: left out of this release, kept in staging.
    Wait,
    /// The build ended otherwise: left out, and removed from staging while the history
    /// still knows why (once it forgets the lease, the file would count as [`Self::Take`]).
    Discard,
}

/// The verdict on a binary whose lease's build ended with `outcome` as the history
/// recorded it: `None` when the history holds no such lease, `Some(None)` while the build
/// has not reported, `Some(Some(status))` once it has (`success`, `failed`, `returned`...).
pub fn uploaded_binary(outcome: Option<Option<&str>>) -> UploadedBinary {
    match outcome {
        None | Some(Some("success")) => UploadedBinary::Take,
        Some(None) => UploadedBinary::Wait,
        Some(Some(_)) => UploadedBinary::Discard,
    }
}

#[cfg(test)]
mod tests {
    use super::{uploaded_binary, UploadedBinary};

    #[test]
    fn only_a_recorded_success_or_a_forgotten_lease_is_taken() {
        assert_eq!(uploaded_binary(None), UploadedBinary::Take);
        assert_eq!(uploaded_binary(Some(Some("success"))), UploadedBinary::Take);
        assert_eq!(uploaded_binary(Some(None)), UploadedBinary::Wait);
        for ended in [
            "failed",
            "returned",
            "upload_failed",
            "masked",
            "reclaimed",
            "Success",
        ] {
            assert_eq!(
                uploaded_binary(Some(Some(ended))),
                UploadedBinary::Discard,
                "{ended}"
            );
        }
    }
}
