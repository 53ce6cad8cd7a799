//! Package atoms, checked the way `emerge` checks a build target and normalised the same way
//! everywhere: queue, control actions, reports.
//!
//! An atom is accepted exactly when emerge accepts it as a target (`grammar`): operators, versions
//! with suffixes and revisions, build ids, `=name-1.2*`, slots, sub-slots, slot operators (`:=`,
//! `:*`), `::repository`, USE dependencies (`[a,-b]`) and category-less names, passed to emerge as
//! given. Blockers, wildcards other than `=…*`, and malformed versions are refused with the reason.
//! On top of that, v3's rules (V3-PROTOCOL "Atom normalisation"): a versioned atom without an
//! operator gets a leading `=` (`dev-libs/foo-1.0` → `=dev-libs/foo-1.0`, which emerge alone would
//! refuse), and `=` before an unversioned name is dropped (`=dev-libs/foo` → `dev-libs/foo`) unless
//! the name ends like a version (`=dev-libs/foo-1_bad` stays an error: it is a typo'd version, not a
//! package called `foo-1_bad`). Surrounding whitespace is ignored.

mod grammar;
mod version;

pub use grammar::AtomRefusal;
use grammar::Spans;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an atom was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    /// Nothing to queue.
    #[error("atom is empty")]
    Empty,
    /// Atoms are `category/name`; anything else cannot be built.
    #[error(
        "atom {0:?} is not of the form [operator]category/name[-version][:slot][::repository][[use,...]]"
    )]
    NotCategoryName(String),
    /// Atoms end up in paths and command lines, so only Portage's own characters pass.
    #[error("atom {atom:?} contains {ch:?}, a character Portage does not allow")]
    BadCharacter {
        /// The atom as given.
        atom: String,
        /// The first character not allowed.
        ch: char,
    },
    /// emerge would refuse it as a target.
    #[error("atom {atom:?} is not a build target emerge accepts: {why}")]
    Invalid {
        /// The atom as given.
        atom: String,
        /// What is wrong with it.
        why: AtomRefusal,
    },
    /// Bounded so a request cannot grow the state without limit.
    #[error("atom is longer than {0} characters")]
    TooLong(usize),
}

impl AtomError {
    fn new(atom: &str, why: AtomRefusal) -> AtomError {
        match why {
            AtomRefusal::Shape => AtomError::NotCategoryName(atom.to_owned()),
            AtomRefusal::Character(ch) => AtomError::BadCharacter {
                atom: atom.to_owned(),
                ch,
            },
            why => AtomError::Invalid {
                atom: atom.to_owned(),
                why,
            },
        }
    }
}

/// A normalised package atom: a build target emerge accepts.
///
/// Equality, order and hash are those of the text (the spans follow from it), so the state
/// digest is the same as when an atom was only its text.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Atom {
    /// Shared: a package's copy after a publish (`SwarmState::pkg_mut`)
    /// and the indexes copy atoms by pointer, not by text.
    text: std::sync::Arc<str>,
    spans: Spans,
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Atom {}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Atom {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl std::hash::Hash for Atom {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

const OPERATOR_CHARS: [char; 5] = ['=', '<', '>', '~', '!'];

impl Atom {
    /// Longest accepted atom.
    pub const MAX_LEN: usize = 256;

    /// Parses and normalises an atom.
    pub fn parse(text: &str) -> Result<Atom, AtomError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AtomError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(AtomError::TooLong(Self::MAX_LEN));
        }
        let first = match grammar::parse(text) {
            Ok(spans) => return Ok(Atom::new(text.to_owned(), spans)),
            Err(why) => why,
        };
        if !text.starts_with(OPERATOR_CHARS) {
            // v3: `dev-libs/foo-1.0` means `=dev-libs/foo-1.0`.
            let with_eq = format!("={text}");
            return match grammar::parse(&with_eq) {
                Ok(spans) => Ok(Atom::new(with_eq, spans)),
                Err(second) if looks_versioned(text) => Err(AtomError::new(text, second)),
                Err(_) => Err(AtomError::new(text, first)),
            };
        }
        if let Some(rest) = text.strip_prefix('=') {
            // v3: `=dev-libs/foo` means `dev-libs/foo`, unless `foo` ends like a broken version.
            if !rest.starts_with(OPERATOR_CHARS) {
                if let Ok(spans) = grammar::parse(rest) {
                    let atom = Atom::new(rest.to_owned(), spans);
                    if !looks_versioned(atom.pn()) {
                        return Ok(atom);
                    }
                }
            }
        }
        Err(AtomError::new(text, first))
    }

    fn new(text: String, spans: Spans) -> Atom {
        Atom {
            text: text.into(),
            spans,
        }
    }

    /// Whether two atoms hold one copy of their text (a package's copy
    /// after a publish must not copy it).
    #[cfg(test)]
    pub(crate) fn shares_text(&self, other: &Atom) -> bool {
        std::sync::Arc::ptr_eq(&self.text, &other.text)
    }

    /// The atom as text, as it is passed to emerge.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `category/pn`: the version-free key that learned durations and memory needs
    /// are kept under, so a version bump inherits its predecessor's history.
    pub fn key(&self) -> &str {
        &self.text[self.spans.body..self.spans.pn_end]
    }

    /// The operator (`>=`, `=`, `~`, ...; empty for an unversioned atom).
    pub fn operator(&self) -> &str {
        &self.text[..self.spans.body]
    }

    /// The category (`dev-libs`); empty for a category-less name, which emerge resolves.
    pub fn category(&self) -> &str {
        match self.spans.slash {
            Some(slash) => &self.text[self.spans.body..slash],
            None => "",
        }
    }

    /// `category/name-version` without build id, `*`, slot, repository or USE deps
    /// (Portage's `Atom.cpv`); `category/name` when unversioned.
    pub fn cpv(&self) -> &str {
        &self.text[self.spans.body..self.spans.cpv_end]
    }

    /// Package name and version (`foo-1.0`), the file stem of its binary package.
    pub fn pf(&self) -> &str {
        &self.text[self.name_start()..self.spans.cpv_end]
    }

    /// Package name without version (`foo`).
    pub fn pn(&self) -> &str {
        &self.text[self.name_start()..self.spans.pn_end]
    }

    /// The version with revision (`1.0-r1`), if the atom has one.
    pub fn version(&self) -> Option<&str> {
        (self.spans.cpv_end > self.spans.pn_end)
            .then(|| &self.text[self.spans.pn_end + 1..self.spans.cpv_end])
    }

    /// The binary package build id of `=cat/pkg-1.0-3` (`3`).
    pub fn build_id(&self) -> Option<&str> {
        let tail = &self.text[self.spans.cpv_end..self.spans.head_end];
        tail.strip_prefix('-')
    }

    /// `=cat/pkg-1.2*`: any version starting with `1.2`.
    pub fn is_wildcard(&self) -> bool {
        self.text[..self.spans.head_end].ends_with('*')
    }

    /// Names exactly one version (`=cat/pkg-1.0`, any slot, repository or USE deps): the one
    /// form whose binary package name is known before the build.
    pub fn is_exact(&self) -> bool {
        self.operator() == "=" && self.version().is_some() && !self.is_wildcard()
    }

    /// `virtual/*` packages install no files. A v3 drone uploads no binary for them, so the
    /// server counts one built without it; swarm's agent uploads their (empty) gpkg so a
    /// binhost client can install them.
    pub fn is_virtual(&self) -> bool {
        self.category() == "virtual"
    }

    /// The slot this atom asks for (`2`, `2/3`, `2=`, `=`, `*`), if any.
    pub fn slot(&self) -> Option<&str> {
        let rest = &self.text[self.spans.head_end..];
        let rest = rest.split('[').next().unwrap_or_default();
        if rest.starts_with("::") {
            return None;
        }
        let slot = rest.strip_prefix(':')?;
        Some(slot.split("::").next().unwrap_or(slot))
    }

    /// Whether `candidate`, a versioned atom (a binary package's
    /// `=cat/pkg-1.0`), is a version of this atom's package that its
    /// operator admits, as Portage matches it: `>=cat/foo-5` admits
    /// `foo-5.1`, not `foo-1`; an unversioned atom admits every version; a
    /// category-less one, the name in any category. Slots are not judged:
    /// a version alone does not say its slot.
    pub fn admits(&self, candidate: &Atom) -> bool {
        let same = if self.category().is_empty() {
            self.pn() == candidate.pn()
        } else {
            self.key() == candidate.key()
        };
        match (self.version(), candidate.version()) {
            _ if !same => false,
            (None, _) => true,
            (Some(_), None) => false,
            (Some(wanted), Some(version)) => {
                version::admits(self.operator(), wanted, version, self.is_wildcard())
            }
        }
    }

    /// Whether a package of `slot` (and `sub_slot`) is of the slot this atom asks
    /// for: `cat/foo:2` takes SLOT 2 only, `:2/3` also sub-slot 3; no slot, or a slot
    /// operator alone (`:=`, `:*`), takes any.
    pub fn admits_slot(&self, slot: &str, sub_slot: Option<&str>) -> bool {
        let Some(wanted) = self.slot() else {
            return true;
        };
        let wanted = wanted.trim_end_matches('=');
        let (want_slot, want_sub) = match wanted.split_once('/') {
            Some((s, sub)) => (s, Some(sub)),
            None => (wanted, None),
        };
        if want_slot.is_empty() || want_slot == "*" {
            return true;
        }
        want_slot == slot && want_sub.is_none_or(|w| sub_slot.unwrap_or(slot) == w)
    }

    /// Portage's order of two versioned atoms' versions (`foo-2.0` after
    /// `foo-1.0_rc1`); `None` when either has no version. Which of several
    /// builds a lease admits is the one emerge chose: the highest.
    pub fn version_cmp(&self, other: &Atom) -> Option<std::cmp::Ordering> {
        version::compare(self.version()?, other.version()?)
    }

    fn name_start(&self) -> usize {
        self.spans.slash.map_or(self.spans.body, |s| s + 1)
    }
}

/// A `-` followed by a digit: the name was meant to carry a version.
fn looks_versioned(name: &str) -> bool {
    name.match_indices('-')
        .any(|(i, _)| name[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
}

impl TryFrom<String> for Atom {
    type Error = AtomError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Atom::parse(&value)
    }
}

impl From<Atom> for String {
    fn from(value: Atom) -> Self {
        value.text.to_string()
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Atom::parse(s)
            .map(String::from)
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn versioned_atoms_gain_an_equals_sign() {
        assert_eq!(norm("dev-libs/foo-1.0"), "=dev-libs/foo-1.0");
        assert_eq!(norm("=dev-libs/foo-1.0"), "=dev-libs/foo-1.0");
        assert_eq!(norm("dev-libs/foo-1.0-r3:2"), "=dev-libs/foo-1.0-r3:2");
        assert_eq!(
            norm("sys-devel/gcc-13.2.1_p20240113-r1"),
            "=sys-devel/gcc-13.2.1_p20240113-r1"
        );
    }

    #[test]
    fn unversioned_atoms_lose_a_bare_equals_sign() {
        assert_eq!(norm("=dev-libs/foo"), "dev-libs/foo");
        assert_eq!(norm("dev-libs/foo:2"), "dev-libs/foo:2");
        assert_eq!(
            norm("media-fonts/font-adobe-100dpi"),
            "media-fonts/font-adobe-100dpi"
        );
    }

    #[test]
    fn other_operators_are_kept() {
        assert_eq!(norm(">=dev-libs/foo-1.0"), ">=dev-libs/foo-1.0");
        assert_eq!(norm("~dev-libs/foo-1.0"), "~dev-libs/foo-1.0");
        assert_eq!(norm("<dev-libs/foo-2"), "<dev-libs/foo-2");
        assert_eq!(norm("=dev-libs/foo-1.2*"), "=dev-libs/foo-1.2*");
    }

    #[test]
    fn bad_atoms_are_refused_with_a_reason() {
        assert!(norm("").starts_with("ERR"));
        assert!(norm("!dev-libs/foo").contains("a blocker"));
        assert!(norm(">=dev-libs/foo").contains("`>=` needs a version"));
        assert!(norm("=dev-libs/foo-1_bad").contains("\"1_bad\" is not a Portage version"));
        assert!(norm("dev-libs/*").contains("`*` is only allowed"));
        assert!(norm("dev-libs/foo:2*").contains("slot \"2*\""));
        assert!(norm("dev-libs/foo[a,]").contains("USE dependency \"\""));
        assert!(norm("dev-libs/foo;rm -rf").starts_with("ERR"));
        assert!(norm("../etc/passwd").starts_with("ERR"));
        assert!(norm("dev-libs/a/b").starts_with("ERR"));
    }

    #[test]
    fn what_emerge_accepts_is_accepted_as_given() {
        for atom in [
            "dev-libs/foo[a,-b]",
            "dev-libs/foo:=",
            "dev-libs/foo:*",
            "dev-libs/foo:2/3=::gentoo[ssl(+)?]",
            "=dev-libs/foo-1.0-3",
            "hello",
        ] {
            assert_eq!(norm(atom), atom);
        }
    }

    #[test]
    fn parts_of_an_atom_are_reachable() -> Result<(), AtomError> {
        let a = Atom::parse("dev-qt/qtwebengine-6.7.2-r1:6")?;
        assert_eq!(a.key(), "dev-qt/qtwebengine");
        assert_eq!(a.category(), "dev-qt");
        assert_eq!(a.pf(), "qtwebengine-6.7.2-r1");
        assert_eq!(a.pn(), "qtwebengine");
        assert!(Atom::parse("virtual/libc-1")?.is_virtual());
        let b = Atom::parse("=dev-libs/foo-1.0-r1-3:2[ssl]")?;
        assert_eq!(b.cpv(), "dev-libs/foo-1.0-r1");
        assert_eq!(b.version(), Some("1.0-r1"));
        assert_eq!(b.build_id(), Some("3"));
        assert!(b.is_exact());
        let w = Atom::parse("=dev-libs/foo-1.2*")?;
        assert!(w.is_wildcard() && !w.is_exact());
        assert_eq!(w.cpv(), "dev-libs/foo-1.2");
        let n = Atom::parse("gtk+:3")?;
        assert_eq!((n.category(), n.key(), n.version()), ("", "gtk+", None));
        Ok(())
    }
}
