//! Build environments: the values that decide whether a binary built on one machine works on
//! another (ARCH, CHOST, the profile, CFLAGS, USE, the compiler and libc, ...).
//!
//! A drone reports its [`BuildEnv`] as Portage resolved it; the operator sets the environment the
//! binhost's users expect; a drone whose environment differs gets no work (DESIGN §4, issue 17).
//! Comparing is pure and canonical: flag sets (USE, FEATURES and every variable `USE_EXPAND`
//! names) compare as sets, because Portage does not care about their order, while compiler flags
//! compare as written, because the compiler does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// At most this many variables: a fingerprint, not a whole `emerge --info`.
pub const MAX_ENV_KEYS: usize = 96;
/// At most this many bytes per value (USE on a desktop is a few KiB).
pub const MAX_ENV_VALUE: usize = 16 * 1024;

/// A drone's reported environment changes at most once in this many
/// milliseconds after its first report: each change is logged in full (up
/// to [`MAX_ENV_KEYS`] values of [`MAX_ENV_VALUE`] bytes), and swarm's agent
/// reads Portage every ten minutes and before each build, so a faster change is rare. Applied
/// where reports arrive (the server), not in replay: logs written before
/// it replay as they were.
pub const ENV_CHANGE_EVERY_MS: u64 = 60_000;

/// Names under this prefix (`pkgindex.FEATURES`, `pkgindex.CONFIG_PROTECT`, ...) carry what
/// Portage writes into a binhost's `Packages` header, not what makes binaries compatible: they are
/// kept verbatim, never compared, and a release's index header is made from them (issue 12).
pub const INDEX_PREFIX: &str = "pkgindex.";

/// The settings Portage's binary tree copies into a `Packages` header by name (besides PROFILE
/// and the variables `USE_EXPAND_IMPLICIT` / `USE_EXPAND_UNPREFIXED` name): what a drone reports
/// under [`INDEX_PREFIX`] and a release's index header is made of.
pub const INDEX_HEADER_KEYS: [&str; 16] = [
    "ACCEPT_KEYWORDS",
    "ACCEPT_LICENSE",
    "ACCEPT_PROPERTIES",
    "ACCEPT_RESTRICT",
    "CBUILD",
    "CONFIG_PROTECT",
    "CONFIG_PROTECT_MASK",
    "FEATURES",
    "GENTOO_MIRRORS",
    "INSTALL_MASK",
    "IUSE_IMPLICIT",
    "USE",
    "USE_EXPAND",
    "USE_EXPAND_HIDDEN",
    "USE_EXPAND_IMPLICIT",
    "USE_EXPAND_UNPREFIXED",
];

/// Whether `name`, found in `USE_EXPAND_IMPLICIT` or `USE_EXPAND_UNPREFIXED`, can be a header
/// variable (`ARCH`, `ELIBC`): upper case, digits and `_`, at most 32 characters.
#[must_use]
pub fn is_expand_name(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Variables whose value is a set of flags even when `USE_EXPAND` does not list them.
const FLAG_SETS: [&str; 4] = ["USE", "FEATURES", "ACCEPT_KEYWORDS", "USE_EXPAND"];

/// A build environment: variable name to its value, canonical (see the module doc). Empty means
/// "none reported" on a drone and "nothing expected" as an expectation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct BuildEnv(BTreeMap<String, String>);

/// Why a reported environment was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// More variables than [`MAX_ENV_KEYS`].
    #[error("{0} variables; at most {MAX_ENV_KEYS}")]
    TooManyKeys(usize),
    /// A name that is not a shell variable name (or `profile`, `gcc`, `libc`, ...).
    #[error("variable name {0:?} is not [A-Za-z0-9_.-], 1 to 64 characters")]
    BadKey(String),
    /// A value over [`MAX_ENV_VALUE`] bytes.
    #[error("value of {0} is over {MAX_ENV_VALUE} bytes")]
    ValueTooLong(String),
}

impl BuildEnv {
    /// Checks the bounds and puts every value in canonical form.
    pub fn new(vars: BTreeMap<String, String>) -> Result<BuildEnv, EnvError> {
        if vars.len() > MAX_ENV_KEYS {
            return Err(EnvError::TooManyKeys(vars.len()));
        }
        for (k, v) in &vars {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if k.is_empty() || k.len() > 64 || !k.chars().all(ok_char) {
                return Err(EnvError::BadKey(k.clone()));
            }
            if v.len() > MAX_ENV_VALUE {
                return Err(EnvError::ValueTooLong(k.clone()));
            }
        }
        let expanded: Vec<String> = vars
            .get("USE_EXPAND")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let canonical = vars
            .into_iter()
            .map(|(k, v)| {
                let is_set = !k.starts_with(INDEX_PREFIX)
                    && (FLAG_SETS.contains(&k.as_str()) || expanded.contains(&k));
                let mut words: Vec<&str> = v.split_whitespace().collect();
                if is_set {
                    words.sort_unstable();
                    words.dedup();
                }
                let v = words.join(" ");
                (k, v)
            })
            .collect();
        Ok(BuildEnv(canonical))
    }

    /// The value of one variable.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every variable, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no variable is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variables that decide compatibility: all but the [`INDEX_PREFIX`] ones.
    fn compared(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().filter(|(k, _)| !k.starts_with(INDEX_PREFIX))
    }

    /// How `actual` differs from this expected environment. Only the variables the expectation
    /// names count: an operator who writes down CFLAGS and CHOST alone gets matching on those.
    #[must_use]
    pub fn differences(&self, actual: &BuildEnv) -> Vec<EnvDiff> {
        self.compared()
            .filter(|(k, v)| actual.get(k) != Some(v.as_str()))
            .map(|(k, v)| EnvDiff {
                key: k.clone(),
                expected: v.clone(),
                actual: actual.get(k).map(str::to_string),
            })
            .collect()
    }

    /// A short stable name for this environment (16 hex digits of FNV-1a over the canonical
    /// values), stamped on each build so a release can tell what its binaries were built with;
    /// `None` for an empty environment.
    #[must_use]
    pub fn digest(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| format!("{:016x}", crate::stable_hash::stable_hash(&self.0)))
    }

    /// Whether `actual` has every expected value.
    #[must_use]
    pub fn admits(&self, actual: &BuildEnv) -> bool {
        self.compared()
            .all(|(k, v)| actual.get(k) == Some(v.as_str()))
    }
}

/// Fingerprint keys under this prefix name the snapshot a drone builds each repository from
/// (`SNAPSHOT.gentoo`: `timestamp.chk`'s text, or a git commit); compared like any other key
/// when a profile's expectation names one.
pub const SNAPSHOT_PREFIX: &str = "SNAPSHOT.";

/// The main repository whose snapshot stands for the drone's Portage snapshot.
pub const MAIN_REPO: &str = "gentoo";

impl BuildEnv {
    /// The drone's Portage snapshot as its fingerprint reports it: `SNAPSHOT.gentoo`, in the
    /// normalised form of [`crate::PortageSnapshot`] when it is a timestamp (`timestamp.chk`'s
    /// text, or `timestamp.x`'s leading Unix seconds), else as reported (a git commit). For a
    /// drone that sends no `portage_timestamp` of its own.
    #[must_use]
    pub fn main_snapshot(&self) -> Option<String> {
        let v = self.get(&format!("{SNAPSHOT_PREFIX}{MAIN_REPO}"))?;
        let first = v.split_whitespace().next().unwrap_or_default();
        let parsed =
            crate::PortageSnapshot::parse(v).or_else(|_| crate::PortageSnapshot::parse(first));
        Some(parsed.map_or_else(|_| v.to_owned(), |s| s.as_str().to_owned()))
    }
}

/// An empty environment hashes to nothing, so a state from before environments existed keeps its
/// digest and its stored snapshots still verify after an upgrade.
impl std::hash::Hash for BuildEnv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if !self.0.is_empty() {
            self.0.hash(state);
        }
    }
}

impl TryFrom<BTreeMap<String, String>> for BuildEnv {
    type Error = EnvError;
    fn try_from(vars: BTreeMap<String, String>) -> Result<Self, EnvError> {
        BuildEnv::new(vars)
    }
}

impl From<BuildEnv> for BTreeMap<String, String> {
    fn from(env: BuildEnv) -> Self {
        env.0
    }
}

/// One variable whose value differs from the expected one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDiff {
    /// The variable.
    pub key: String,
    /// What the expectation says.
    pub expected: String,
    /// What the drone has; `None` when it does not report the variable.
    pub actual: Option<String>,
}

impl fmt::Display for EnvDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |s: &str| {
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(60).collect::<String>())
            } else {
                s.to_string()
            }
        };
        match &self.actual {
            Some(a) => write!(
                f,
                "{} ({} vs {})",
                self.key,
                short(a),
                short(&self.expected)
            ),
            None => write!(
                f,
                "{} (not reported vs {})",
                self.key,
                short(&self.expected)
            ),
        }
    }
}

/// The words a drone gets for not matching: "differs in CFLAGS (-O3 vs -O2), USE (...)".
#[must_use]
pub fn describe_differences(diffs: &[EnvDiff]) -> String {
    const SHOWN: usize = 3;
    let mut text = diffs
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if diffs.len() > SHOWN {
        text.push_str(&format!(" and {} more", diffs.len() - SHOWN));
    }
    format!("environment differs in {text}")
}

/// An environment from `(name, value)` pairs, for tests.
#[cfg(test)]
pub(crate) fn env(pairs: &[(&str, &str)]) -> BuildEnv {
    BuildEnv::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    )
    .expect("valid env")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flag_sets_compare_as_sets_and_compiler_flags_as_written() {
        let a = env(&[
            ("USE_EXPAND", "PYTHON_TARGETS VIDEO_CARDS"),
            ("USE", "ssl  X -doc ssl"),
            ("PYTHON_TARGETS", "python3_13 python3_12"),
            ("CFLAGS", "-O2  -pipe"),
        ]);
        let b = env(&[
            ("USE_EXPAND", "VIDEO_CARDS PYTHON_TARGETS"),
            ("USE", "-doc X ssl"),
            ("PYTHON_TARGETS", "python3_12 python3_13"),
            ("CFLAGS", "-O2 -pipe"),
        ]);
        assert_eq!(a, b);
        let c = env(&[("CFLAGS", "-pipe -O2")]);
        assert!(!env(&[("CFLAGS", "-O2 -pipe")]).admits(&c));
    }

    #[test]
    fn only_the_expected_variables_count_and_the_difference_names_both_values() {
        let expected = env(&[("CFLAGS", "-O2 -pipe"), ("CHOST", "x86_64-pc-linux-gnu")]);
        let drone = env(&[
            ("CFLAGS", "-O3 -pipe"),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("MAKEOPTS", "-j32"),
        ]);
        let d = expected.differences(&drone);
        assert_eq!(d.len(), 1);
        assert_eq!(
            describe_differences(&d),
            "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)"
        );
        assert!(!expected.admits(&drone));
        assert!(expected.admits(&env(&[
            ("CFLAGS", "-O2 -pipe"),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("MAKEOPTS", "-j4"),
        ])));
        let missing = expected.differences(&env(&[("CFLAGS", "-O2 -pipe")]));
        assert_eq!(
            missing[0].to_string(),
            "CHOST (not reported vs x86_64-pc-linux-gnu)"
        );
    }

    #[test]
    fn index_header_variables_are_kept_verbatim_and_never_compared() {
        let expected = env(&[
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("pkgindex.GENTOO_MIRRORS", "http://a"),
            ("pkgindex.USE_EXPAND", "KERNEL ELIBC"),
        ]);
        assert_eq!(expected.get("pkgindex.USE_EXPAND"), Some("KERNEL ELIBC"));
        let other_mirror = env(&[
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("pkgindex.GENTOO_MIRRORS", "http://b"),
        ]);
        assert!(expected.admits(&other_mirror));
        assert!(expected.differences(&other_mirror).is_empty());
        assert_ne!(expected.digest(), other_mirror.digest());
    }

    #[test]
    fn absurd_environments_are_refused_with_the_reason() {
        let many: BTreeMap<String, String> = (0..=MAX_ENV_KEYS)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert_eq!(
            BuildEnv::new(many),
            Err(EnvError::TooManyKeys(MAX_ENV_KEYS + 1))
        );
        let bad: BTreeMap<String, String> = [("C FLAGS".to_string(), String::new())].into();
        assert!(matches!(BuildEnv::new(bad), Err(EnvError::BadKey(_))));
        let long: BTreeMap<String, String> =
            [("USE".to_string(), "x".repeat(MAX_ENV_VALUE + 1))].into();
        assert!(matches!(
            BuildEnv::new(long),
            Err(EnvError::ValueTooLong(_))
        ));
        let json = format!(r#"{{"USE":"{}"}}"#, "x".repeat(MAX_ENV_VALUE + 1));
        assert!(serde_json::from_str::<BuildEnv>(&json).is_err());
    }

    #[test]
    fn the_main_snapshot_is_normalised_when_it_is_a_timestamp() {
        assert_eq!(env(&[("CFLAGS", "-O2")]).main_snapshot(), None);
        let chk = env(&[("SNAPSHOT.gentoo", "Mon, 16 Feb 2026 00:45:01 +0000")]);
        assert_eq!(chk.main_snapshot().as_deref(), Some("2026-02-16 00:45"));
        let x = env(&[("SNAPSHOT.gentoo", "1771202701 Mon Feb 16 00:45:01 UTC 2026")]);
        assert_eq!(x.main_snapshot().as_deref(), Some("2026-02-16 00:45"));
        let git = env(&[("SNAPSHOT.gentoo", "0123abcd"), ("SNAPSHOT.local", "x")]);
        assert_eq!(git.main_snapshot().as_deref(), Some("0123abcd"));
    }

    proptest! {
        /// `admits` and `differences` agree, and an environment always admits itself.
        #[test]
        fn admits_exactly_when_nothing_differs(
            exp in proptest::collection::btree_map("[A-Z]{1,3}", "[a-z -]{0,8}", 0..6),
            act in proptest::collection::btree_map("[A-Z]{1,3}", "[a-z -]{0,8}", 0..6),
        ) {
            let e = BuildEnv::new(exp).expect("generated names are valid");
            let a = BuildEnv::new(act).expect("generated names are valid");
            prop_assert_eq!(e.admits(&a), e.differences(&a).is_empty());
            prop_assert!(e.admits(&e));
            let json = serde_json::to_string(&e).expect("serialises");
            let back: BuildEnv = serde_json::from_str(&json).expect("parses what it wrote");
            prop_assert_eq!(back, e);
        }
    }
}
