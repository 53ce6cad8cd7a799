//! Profiles (issue 17): several targets share one fleet. A profile names the build environment
//! its binaries must be built in; a package queued for a profile goes only to a drone whose
//! reported environment that profile admits.
//!
//! The expected environment set with `expect_env` is the default profile's: a package that names
//! no profile belongs to it, so a farm with one target keeps working as before. Named profiles
//! are added, changed and removed with `Control::SetProfile` and `Control::RemoveProfile`.

use crate::buildenv::BuildEnv;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the profile a package that names none belongs to.
pub const DEFAULT_PROFILE: &str = "default";
/// At most this many named profiles: targets of one farm, not a catalogue.
pub const MAX_PROFILES: usize = 64;

/// Why a profile name is refused, or `None` for a good one: 1 to 64 of `[a-z0-9._-]`, starting
/// with a letter or digit (it becomes a binhost path, `/binhost/<profile>/`), and not `default`.
#[must_use]
pub fn name_problem(name: &str) -> Option<String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    if name == DEFAULT_PROFILE {
        return Some("\"default\" is the expected environment's profile (expect_env)".into());
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > 64 || !first_ok || !name.chars().all(ok) {
        return Some(format!(
            "profile name {name:?} is not 1 to 64 of [a-z0-9._-] starting with a letter or digit"
        ));
    }
    None
}

/// The named profiles: name → expected environment. Empty, it hashes to nothing, so a state
/// from before profiles existed keeps its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Profiles(pub(crate) BTreeMap<String, BuildEnv>);

impl Profiles {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::hash::Hash for Profiles {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if !self.0.is_empty() {
            self.0.hash(h);
        }
    }
}

/// Where a profile's published tree is served: `/binhost/` for the default profile,
/// `/binhost/<profile>/` for a named one (its releases live in that directory of the binhost).
#[must_use]
pub fn binhost_path(profile: &str) -> String {
    if profile == DEFAULT_PROFILE {
        "/binhost/".to_owned()
    } else {
        format!("/binhost/{profile}/")
    }
}

/// Targets in one profile's world set at most.
pub const MAX_WORLD_TARGETS: usize = 10_000;

/// Why a world set is refused, or `None` for a good one: at most [`MAX_WORLD_TARGETS`]
/// entries, each an atom or a `@set` name, as a Portage world file holds them.
#[must_use]
pub fn world_problem(world: &[String]) -> Option<String> {
    if world.len() > MAX_WORLD_TARGETS {
        return Some(format!(
            "a world set of {} targets is over the limit of {MAX_WORLD_TARGETS}",
            world.len()
        ));
    }
    for t in world {
        let bad = match t.strip_prefix('@') {
            Some(set) => {
                set.is_empty()
                    || set.len() > 128
                    || !set
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b))
            }
            None => crate::atom::Atom::parse(t).is_err(),
        };
        if bad {
            return Some(format!("world target {t:?} is neither an atom nor a @set"));
        }
    }
    None
}

/// The named profiles' world sets: name → targets. Empty, it hashes to nothing and is not
/// serialised, so states from before world sets existed keep their digest and format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Worlds(pub(crate) BTreeMap<String, Vec<String>>);

impl Worlds {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::hash::Hash for Worlds {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if !self.0.is_empty() {
            self.0.hash(h);
        }
    }
}

/// A package's profile; `None` is the default profile. `None` hashes to nothing, so packages
/// from before profiles existed keep the state's digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ProfileTag(pub(crate) Option<String>);

impl ProfileTag {
    pub(crate) fn is_default(&self) -> bool {
        self.0.is_none()
    }

    /// The profile's name, `default` for none.
    pub(crate) fn name(&self) -> &str {
        self.0.as_deref().unwrap_or(DEFAULT_PROFILE)
    }
}

impl std::hash::Hash for ProfileTag {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if let Some(p) = &self.0 {
            p.hash(h);
        }
    }
}

/// Why an operator action naming only an atom was refused: "=sys-libs/zlib-1.3 is queued in
/// profiles default, server: name one with --profile" (a package is (profile, atom)).
#[must_use]
pub fn ambiguous_words(atom: &crate::atom::Atom, profiles: &[String]) -> String {
    format!(
        "{atom} is queued in profiles {}: name one with --profile",
        profiles.join(", ")
    )
}

/// The explanation of an atom queued in several profiles, none named: [`ambiguous_words`],
/// then each profile's package's own explanation (`explain_one`) on a line of its own, as
/// `<profile>: <why>`, so the operator sees every profile's state, not the first one's.
pub(crate) fn ambiguous_explanation(
    atom: &crate::atom::Atom,
    profiles: &[String],
    explain_one: impl Fn(&str) -> String,
) -> String {
    let mut text = ambiguous_words(atom, profiles);
    for p in profiles {
        let why = explain_one(p).replace('\n', "\n  ");
        text += &format!("\n{p}: {why}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_path_safe_and_default_is_reserved() {
        assert_eq!(name_problem("desktop-amd64"), None);
        assert_eq!(name_problem("srv.o3_v2"), None);
        for bad in ["", "default", "Desktop", "-x", "a/b", "..", &"x".repeat(65)] {
            assert!(name_problem(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_world_set_holds_atoms_and_sets_only() {
        let w = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            world_problem(&w(&["app-misc/hello", "@system", ">=dev-libs/a-1"])),
            None
        );
        for bad in ["@", "@a b", "app-misc/hello extra", "!!app-misc/x"] {
            let p = world_problem(&w(&[bad])).expect("refused");
            assert!(p.contains(bad), "{p}");
        }
        assert!(world_problem(&vec!["@x".to_owned(); MAX_WORLD_TARGETS + 1]).is_some());
    }
}
