//! Newtype identifiers. One macro so every id serialises the same way (`#[serde(transparent)]`).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// A lease on one package. Strictly increasing, never reused, so a report
    /// that names an old lease can always be told apart from the live one.
    LeaseId
);
numeric_id!(
    /// A drone's incarnation. Bumped when the name registers under a new machine
    /// id, which fences every report of the old incarnation.
    Epoch
);
numeric_id!(
    /// Position of an input in the durable log; stamped by the store or the simulator.
    Seq
);
numeric_id!(
    /// A queue generation. `fresh` starts a new one; an enqueue that names an older
    /// generation is a stale queue push and is rejected.
    Generation
);

/// Why a drone name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty names cannot identify anything.
    #[error("drone name is empty")]
    Empty,
    /// Names end up in URLs, logs and SQL; keep them bounded.
    #[error("drone name is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Whitespace and control characters make names ambiguous in logs and paths.
    #[error("drone name {0:?} contains whitespace, '/' or a control character")]
    BadCharacter(String),
}

/// A drone's name: the stable identity an operator sees. A name that registers
/// again under another machine id is the same drone in a new epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DroneName(String);

impl DroneName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 128;

    /// Validates a name.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name: String = name.into();
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(NameError::TooLong { max: Self::MAX_LEN });
        }
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(NameError::BadCharacter(trimmed.to_owned()));
        }
        Ok(DroneName(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name that sorts after every valid one, for range queries.
    pub(crate) fn max() -> DroneName {
        DroneName("\u{10ffff}".to_owned())
    }

    /// Sweeper drones (`sweeper-*`) work on blocked packages only (v3 convention).
    pub fn is_sweeper(&self) -> bool {
        self.0.starts_with("sweeper-")
    }
}

impl Default for DroneName {
    /// A placeholder so spec structs can derive `Default` for builders and tests.
    fn default() -> Self {
        DroneName("unnamed".to_owned())
    }
}

impl TryFrom<String> for DroneName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        DroneName::new(value)
    }
}

impl From<DroneName> for String {
    fn from(value: DroneName) -> Self {
        value.0
    }
}

impl fmt::Display for DroneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drone_names_are_trimmed_and_checked() {
        assert_eq!(
            DroneName::new(" drone-a ").map(|n| n.0),
            Ok("drone-a".into())
        );
        assert_eq!(DroneName::new("  "), Err(NameError::Empty));
        assert!(matches!(
            DroneName::new("a b"),
            Err(NameError::BadCharacter(_))
        ));
        assert!(matches!(
            DroneName::new("x".repeat(129)),
            Err(NameError::TooLong { .. })
        ));
        assert!(DroneName::new("sweeper-1")
            .map(|n| n.is_sweeper())
            .unwrap_or(false));
    }
}
