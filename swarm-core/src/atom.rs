//! Package atoms, normalised the same way everywhere: queue, control actions, reports.
//!
//! Rules (V3-PROTOCOL "Atom normalisation"): a versioned atom gets a leading `=`
//! (`dev-libs/foo-1.0` → `=dev-libs/foo-1.0`); an unversioned `=atom` loses it;
//! `>=`, `<=`, `<`, `>`, `~`, `!`, `!!` and `:slot` / `::repo` are kept.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an atom was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    /// Nothing to queue.
    #[error("atom is empty")]
    Empty,
    /// Atoms are `category/name`; anything else cannot be built.
    #[error("atom {0:?} is not of the form category/name[-version]")]
    NotCategoryName(String),
    /// Atoms end up in paths and shell templates, so only Portage's own characters pass.
    #[error("atom {0:?} contains a character Portage does not allow")]
    BadCharacter(String),
    /// Bounded so a request cannot grow the state without limit.
    #[error("atom is longer than {0} characters")]
    TooLong(usize),
}

/// A normalised package atom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Atom(String);

const OPERATORS: [&str; 8] = ["!!", ">=", "<=", "=", "~", "<", ">", "!"];

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
        let op = OPERATORS
            .iter()
            .find(|op| text.starts_with(**op))
            .copied()
            .unwrap_or("");
        let rest = &text[op.len()..];
        let (body, suffix) = match rest.find(':') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let allowed = |c: char| c.is_ascii_alphanumeric() || "+_.-".contains(c);
        let suffix_ok = suffix.chars().all(|c| allowed(c) || c == ':' || c == '/');
        let Some((category, name)) = body.split_once('/') else {
            return Err(AtomError::NotCategoryName(text.to_owned()));
        };
        if category.is_empty() || name.is_empty() || name.contains('/') {
            return Err(AtomError::NotCategoryName(text.to_owned()));
        }
        let leading_ok = |s: &str| s.chars().next().is_some_and(|c| c != '-' && c != '.');
        if !category.chars().all(allowed)
            || !name.chars().all(|c| allowed(c) || c == '*')
            || !leading_ok(category)
            || !leading_ok(name)
            || !suffix_ok
        {
            return Err(AtomError::BadCharacter(text.to_owned()));
        }
        let versioned = split_version(name).is_some();
        let op = match (op, versioned) {
            ("", true) => "=",
            ("=", false) => "",
            (op, _) => op,
        };
        Ok(Atom(format!("{op}{body}{suffix}")))
    }

    /// The atom as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `category/pn`: the version-free key that learned durations and memory needs
    /// are kept under, so a version bump inherits its predecessor's history.
    pub fn key(&self) -> &str {
        let body = self.body();
        let slash = body.find('/').unwrap_or(0);
        match split_version(&body[slash + 1..]) {
            Some((pn, _)) => &body[..slash + 1 + pn.len()],
            None => body,
        }
    }

    /// The category (`dev-libs`).
    pub fn category(&self) -> &str {
        self.body().split('/').next().unwrap_or("")
    }

    /// Package name and version (`foo-1.0`), the file stem of its binary package.
    pub fn pf(&self) -> &str {
        self.body().split_once('/').map(|(_, pf)| pf).unwrap_or("")
    }

    /// Package name without version (`foo`).
    pub fn pn(&self) -> &str {
        let pf = self.pf();
        split_version(pf).map(|(pn, _)| pn).unwrap_or(pf)
    }

    /// `virtual/*` packages install no files, so they need no binary artifact.
    pub fn is_virtual(&self) -> bool {
        self.category() == "virtual"
    }

    fn body(&self) -> &str {
        let s = self.0.trim_start_matches(['=', '>', '<', '~', '!']);
        s.split(':').next().unwrap_or(s)
    }
}

/// Splits `name-1.2.3-r1` into (`name`, `1.2.3-r1`) when the tail is a Portage version.
fn split_version(name: &str) -> Option<(&str, &str)> {
    name.match_indices('-').find_map(|(i, _)| {
        let (pn, ver) = (&name[..i], &name[i + 1..]);
        (!pn.is_empty() && is_version(ver)).then_some((pn, ver))
    })
}

/// Portage version syntax: `1.2.3[a-z][_suffix[N]]*[-rN]`, with an optional trailing `*`.
fn is_version(v: &str) -> bool {
    let v = v.strip_suffix('*').unwrap_or(v);
    let v = match v.rsplit_once("-r") {
        Some((head, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => v,
    };
    let mut parts = v.split('_');
    let Some(numeric) = parts.next() else {
        return false;
    };
    let numeric = match numeric.as_bytes().last() {
        Some(b) if b.is_ascii_lowercase() => &numeric[..numeric.len() - 1],
        _ => numeric,
    };
    let dotted_ok = !numeric.is_empty()
        && numeric
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    dotted_ok
        && parts.all(|s| {
            ["alpha", "beta", "pre", "rc", "p"].iter().any(|k| {
                s.strip_prefix(k)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
}

impl TryFrom<String> for Atom {
    type Error = AtomError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Atom::parse(&value)
    }
}

impl From<Atom> for String {
    fn from(value: Atom) -> Self {
        value.0
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        assert_eq!(norm("!dev-libs/foo"), "!dev-libs/foo");
        assert_eq!(norm("<dev-libs/foo-2"), "<dev-libs/foo-2");
    }

    #[test]
    fn bad_atoms_are_refused_with_a_reason() {
        assert!(norm("").starts_with("ERR"));
        assert!(norm("foo").starts_with("ERR atom \"foo\" is not"));
        assert!(norm("dev-libs/foo;rm -rf").starts_with("ERR"));
        assert!(norm("../etc/passwd").starts_with("ERR"));
        assert!(norm("dev-libs/a/b").starts_with("ERR"));
    }

    #[test]
    fn parts_of_an_atom_are_reachable() -> Result<(), AtomError> {
        let a = Atom::parse("dev-qt/qtwebengine-6.7.2-r1:6")?;
        assert_eq!(a.key(), "dev-qt/qtwebengine");
        assert_eq!(a.category(), "dev-qt");
        assert_eq!(a.pf(), "qtwebengine-6.7.2-r1");
        assert_eq!(a.pn(), "qtwebengine");
        assert!(Atom::parse("virtual/libc-1")?.is_virtual());
        Ok(())
    }
}
