//! Newtype identifiers. One macro so every id serialises the same way (`#[serde(transparent)]`).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};

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
///
/// Names key most of the core's maps and are compared on every scheduling step, so
/// the first 16 bytes are kept as two integers that decide nearly every comparison
/// without touching the text, and the text itself is stored inline when short.
/// Order, equality and hash are exactly those of the text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DroneName {
    head: [u64; 2],
    text: CompactString,
}

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
        Ok(DroneName::from_text(trimmed))
    }

    /// The first character of `text` that shows as nothing or turns the
    /// text around it (Unicode format characters: bidirectional overrides
    /// and isolates, zero-width ones, the soft hyphen). A drone name holding
    /// one could pass for another name in every listing, so a new one is
    /// refused where drones register; [`DroneName::new`] does not refuse it,
    /// so logs written before the rule still replay.
    pub fn hidden_char(text: &str) -> Option<char> {
        text.chars().find(|c| is_hidden(*c))
    }

    /// Builds the name and its comparison head; callers have validated `text`.
    fn from_text(text: &str) -> DroneName {
        let mut bytes = [0u8; 16];
        let n = text.len().min(16);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        let (hi, lo) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        DroneName {
            head: [word(hi), word(lo)],
            text: CompactString::new(text),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A name that sorts after every valid one, for range queries.
    pub(crate) fn max() -> DroneName {
        DroneName::from_text("\u{10ffff}")
    }

    /// Sweeper drones (`sweeper-*`) work on blocked packages only (v3 convention).
    pub fn is_sweeper(&self) -> bool {
        self.text.starts_with("sweeper-")
    }
}

impl PartialEq for DroneName {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.text == other.text
    }
}

impl Eq for DroneName {}

impl Ord for DroneName {
    /// Big-endian heads padded with zero bytes order as the text's first 16 bytes do
    /// (valid names hold no NUL), and the text breaks ties.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.text.as_bytes().cmp(other.text.as_bytes()))
    }
}

impl PartialOrd for DroneName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for DroneName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for DroneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DroneName").field(&self.as_str()).finish()
    }
}

impl Default for DroneName {
    /// A placeholder so spec structs can derive `Default` for builders and tests.
    fn default() -> Self {
        DroneName::from_text("unnamed")
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
        value.text.into_string()
    }
}

impl fmt::Display for DroneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `c` shows as nothing or turns the text around it (Unicode format characters:
/// bidirectional overrides and isolates, zero-width ones, the soft hyphen), so text holding it
/// can pass for other text: listings show such characters as their code points.
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drone_names_are_trimmed_and_checked() {
        assert_eq!(
            DroneName::new(" drone-a ").map(String::from),
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

    fn text_hash(x: &impl std::hash::Hash) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(x)
    }

    proptest::proptest! {
        /// The comparison head is an optimisation only: names order, compare and hash
        /// exactly as their text does, including names sharing long prefixes.
        #[test]
        fn names_order_and_hash_as_their_text(
            a in "[a-c\\-\u{e9}\u{10ffff}]{1,20}",
            b in "[a-c\\-\u{e9}\u{10ffff}]{1,20}",
        ) {
            let (na, nb) = (DroneName::new(a.clone()), DroneName::new(b.clone()));
            let (Ok(na), Ok(nb)) = (na, nb) else {
                return Err(proptest::test_runner::TestCaseError::fail("generated an invalid name"));
            };
            proptest::prop_assert_eq!(na.cmp(&nb), a.cmp(&b));
            proptest::prop_assert_eq!(na == nb, a == b);
            proptest::prop_assert_eq!(text_hash(&na), text_hash(&a.as_str()));
            let top = '\u{10ffff}';
            proptest::prop_assert!(na < DroneName::max() || a.starts_with(top), "{a:?} sorts after max()");
        }
    }
}
