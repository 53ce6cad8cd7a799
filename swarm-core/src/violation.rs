//! What a broken invariant reports: a leaf of its own so that the state machine (which
//! refuses to restore an inconsistent snapshot) and the checks (which read the state
//! machine) do not import each other.

/// A broken invariant: which one (DESIGN §8 numbering; 0 for index consistency) and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant {invariant} violated: {detail}")]
pub struct Violation {
    /// DESIGN §8 number.
    pub invariant: u8,
    /// What was seen.
    pub detail: String,
}

pub(crate) fn fail<T>(invariant: u8, detail: String) -> Result<T, Violation> {
    Err(Violation { invariant, detail })
}
