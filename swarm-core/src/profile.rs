//! Profiles (issue 17): several targets share one fleet. A profile names the build environment
//! its binaries must be built in; a package queued for a profile goes only to a drone whose
//! reported environment that profile admits.
//!
//! The expected environment set with `expect_env` is the default profile's: a package that names
//! no profile belongs to it, so a farm with one target keeps working as before. Named profiles
//! are added, changed and removed with `Control::SetProfile` and `Control::RemoveProfile`.

use crate::buildenv::BuildEnv;
use crate::state::SwarmState;
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

/// The environment a package of `profile` must be built in; `None` when the profile does not
/// exist (removed while the package waited): then no drone matches.
pub(crate) fn expected_for<'a>(st: &'a SwarmState, profile: &ProfileTag) -> Option<&'a BuildEnv> {
    match &profile.0 {
        None => Some(&st.expected_env),
        Some(name) => st.profiles.0.get(name),
    }
}

/// Whether some profile (the default one included) admits this environment: a drone no profile
/// admits gets no work at all and hears why from the default profile's differences.
pub(crate) fn admitted_by_some(st: &SwarmState, env: &BuildEnv) -> bool {
    st.expected_env.admits(env) || st.profiles.0.values().any(|p| p.admits(env))
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
}
