//! The part of a `Packages` header Portage takes from its configuration, made
//! from the build environment a release is for.
//!
//! Portage's binary tree writes, besides VERSION, TIMESTAMP, PACKAGES and
//! CHOST, the profile it was configured with (`PROFILE`), a fixed set of
//! settings (ACCEPT_*, CBUILD, CONFIG_PROTECT*, FEATURES, GENTOO_MIRRORS,
//! INSTALL_MASK, IUSE_IMPLICIT, USE and the USE_EXPAND* lists), the variables
//! `USE_EXPAND_IMPLICIT` and `USE_EXPAND_UNPREFIXED` name (ARCH, ELIBC,
//! KERNEL, ...) and `USE_EXPAND_VALUES_<name>` for the implicit ones, so a
//! client without the profile can still evaluate implicit IUSE. Empty values
//! are left out. A drone reports these with its build environment (the
//! agent asks `portageq envvar`), under [`INDEX_PREFIX`] when the
//! fingerprint's own value differs (FEATURES there keeps only the features
//! that change a binary).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::buildenv::{is_expand_name, BuildEnv, INDEX_HEADER_KEYS, INDEX_PREFIX};

/// Keys Portage always writes for a configured profile; an environment
/// without them was reported by an agent that did not ask for them.
const ALWAYS: [&str; 5] = [
    "ACCEPT_KEYWORDS",
    "FEATURES",
    "IUSE_IMPLICIT",
    "PROFILE",
    "USE_EXPAND_IMPLICIT",
];

/// Fingerprint variables whose plain value is not Portage's setting: the
/// header takes them only from their [`INDEX_PREFIX`] form.
const NOT_PLAIN: [&str; 1] = ["FEATURES"];

/// Header keys Portage reads for itself when it fetches an index: where to
/// download binaries from (`URI`), how long to trust the index (`TTL`,
/// `DOWNLOAD_TIMESTAMP`), which repository revisions it matches, its format
/// and size. A name in a drone's `USE_EXPAND_IMPLICIT` or
/// `USE_EXPAND_UNPREFIXED` never becomes one of them: one drone could
/// otherwise send every client to another host or freeze their index.
const PORTAGE_READS: [&str; 8] = [
    "CHOST",
    "DOWNLOAD_TIMESTAMP",
    "PACKAGES",
    "REPO_REVISIONS",
    "TIMESTAMP",
    "TTL",
    "URI",
    "VERSION",
];

/// At most this many names are taken from `USE_EXPAND_IMPLICIT` and
/// `USE_EXPAND_UNPREFIXED` together (Gentoo's profiles name four).
const MAX_EXPANDED: usize = 32;

/// Where a release's header environment comes from: the environment most of
/// its packages were recorded as built with, else the expected one.
pub struct HeaderEnv<'a> {
    /// The environment a package (`category/pf`) was recorded as built with.
    pub recorded: &'a dyn Fn(&str) -> Option<BuildEnv>,
    /// The environment the release is for, used when no package has a
    /// recorded one (the default profile's expected environment).
    pub expected: Option<BuildEnv>,
}

impl HeaderEnv<'_> {
    /// No environment known: the header has what swarm knows by itself.
    pub const NONE: HeaderEnv<'static> = HeaderEnv {
        recorded: &|_| None,
        expected: None,
    };

    /// The environment for a release of `cpvs`, and where it came from in words.
    pub fn resolve<'c>(
        &self,
        cpvs: impl IntoIterator<Item = &'c str>,
    ) -> (Option<BuildEnv>, String) {
        let mut total = 0usize;
        let recorded: Vec<BuildEnv> = cpvs
            .into_iter()
            .inspect(|_| total += 1)
            .filter_map(|c| (self.recorded)(c))
            .collect();
        if let Some((env, n)) = most_common(&recorded) {
            let digest = env.digest().unwrap_or_default();
            let source = format!(
                "the build environment {digest} that {n} of {total} packages were recorded as built with"
            );
            return (Some(env), source);
        }
        match self.expected.as_ref().filter(|e| !e.is_empty()) {
            Some(e) => (
                Some(e.clone()),
                "the expected build environment (no package has a recorded one)".into(),
            ),
            None => (
                None,
                "no build environment known (no package has a recorded one and none is \
                 expected: swarm control expect-env)"
                    .into(),
            ),
        }
    }
}

/// What a release's header was made from, shown by `release create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderNote {
    /// Where the environment came from, or why there was none.
    pub source: String,
    /// The header keys written besides VERSION, TIMESTAMP, PACKAGES and CHOST.
    pub keys: Vec<String>,
    /// Keys Portage would write that the environment lacks.
    pub missing: Vec<String>,
    /// Keys set by `binhost_header_from` or the configured header, which win.
    pub overridden: Vec<String>,
}

impl HeaderNote {
    /// One paragraph for people.
    pub fn describe(&self) -> String {
        let mut text = format!("index header: {}", self.source);
        if self.keys.is_empty() {
            text.push_str(
                "; it carries only VERSION, TIMESTAMP, PACKAGES and CHOST \
                 (a client needs the profile locally to evaluate implicit IUSE)",
            );
        } else {
            text.push_str(&format!("; {} keys", self.keys.len()));
        }
        if !self.missing.is_empty() {
            text.push_str(&format!(
                "; missing {} (drones report them when their env command is portageq: \
                 an older agent or a custom --env-command does not)",
                self.missing.join(", ")
            ));
        }
        if !self.overridden.is_empty() {
            text.push_str(&format!(
                "; set by configuration: {}",
                self.overridden.join(", ")
            ));
        }
        text
    }
}

/// The header keys Portage would write for `env`, and the ones it always
/// writes that `env` lacks.
pub fn from_env(env: &BuildEnv) -> (BTreeMap<String, String>, Vec<String>) {
    let value = |k: &str| -> Option<String> {
        env.get(&format!("{INDEX_PREFIX}{k}"))
            .or_else(|| (!NOT_PLAIN.contains(&k)).then(|| env.get(k)).flatten())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string)
    };
    let mut out = BTreeMap::new();
    for k in INDEX_HEADER_KEYS.into_iter().chain(["PROFILE"]) {
        if let Some(v) = value(k) {
            out.insert(k.to_string(), v);
        }
    }
    let words = |k: &str| -> Vec<String> {
        value(k)
            .unwrap_or_default()
            .split_whitespace()
            .filter(|n| is_expand_name(n) && !PORTAGE_READS.contains(n))
            .map(str::to_string)
            .collect()
    };
    let implicit = words("USE_EXPAND_IMPLICIT");
    let named: BTreeSet<String> = implicit
        .iter()
        .cloned()
        .chain(words("USE_EXPAND_UNPREFIXED"))
        .take(MAX_EXPANDED)
        .collect();
    for n in &named {
        if let Some(v) = value(n) {
            out.insert(n.clone(), v);
        }
    }
    for n in implicit.iter().take(MAX_EXPANDED) {
        let k = format!("USE_EXPAND_VALUES_{n}");
        if let Some(v) = value(&k) {
            out.insert(k, v);
        }
    }
    let missing = ALWAYS
        .iter()
        .filter(|k| !out.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    (out, missing)
}

/// The environment most of `envs` are (ties go to the first in digest
/// order, so the choice is stable), and how many are it.
pub fn most_common<'a>(envs: impl IntoIterator<Item = &'a BuildEnv>) -> Option<(BuildEnv, usize)> {
    let mut count: BTreeMap<String, (usize, &BuildEnv)> = BTreeMap::new();
    for e in envs {
        let Some(d) = e.digest() else { continue };
        count.entry(d).or_insert((0, e)).0 += 1;
    }
    let best = count.values().map(|(n, _)| *n).max()?;
    count
        .into_values()
        .find(|(n, _)| *n == best)
        .map(|(n, e)| (e.clone(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BuildEnv {
        let vars: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.try_into().expect("valid")
    }

    #[test]
    fn the_header_takes_portages_settings_and_the_variables_the_lists_name() {
        let e = env(&[
            ("ARCH", "amd64"),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("CFLAGS", "-O2"),
            ("USE", "ssl amd64"),
            ("FEATURES", "splitdebug"),
            ("PROFILE", "default/linux/amd64"),
            ("ACCEPT_KEYWORDS", "amd64"),
            ("pkgindex.FEATURES", "buildpkg splitdebug"),
            ("pkgindex.CONFIG_PROTECT", "/etc /usr/share/config"),
            ("pkgindex.IUSE_IMPLICIT", "prefix prefix-guest"),
            ("pkgindex.USE_EXPAND_IMPLICIT", "ARCH ELIBC KERNEL bad-name"),
            ("pkgindex.USE_EXPAND_UNPREFIXED", "ARCH"),
            ("pkgindex.USE_EXPAND_VALUES_ARCH", "amd64 arm64"),
            ("pkgindex.ELIBC", "glibc"),
            ("pkgindex.INSTALL_MASK", ""),
        ]);
        let (h, missing) = from_env(&e);
        assert_eq!(
            h.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            [
                "ACCEPT_KEYWORDS=amd64",
                "ARCH=amd64",
                "CONFIG_PROTECT=/etc /usr/share/config",
                "ELIBC=glibc",
                "FEATURES=buildpkg splitdebug",
                "IUSE_IMPLICIT=prefix prefix-guest",
                "PROFILE=default/linux/amd64",
                "USE=amd64 ssl",
                "USE_EXPAND_IMPLICIT=ARCH ELIBC KERNEL bad-name",
                "USE_EXPAND_UNPREFIXED=ARCH",
                "USE_EXPAND_VALUES_ARCH=amd64 arm64",
            ]
        );
        assert!(missing.is_empty(), "{missing:?}");

        // A fingerprint without the index variables: the filtered FEATURES
        // is not Portage's, so it is left out and named missing.
        let (h, missing) = from_env(&env(&[("USE", "ssl"), ("FEATURES", "splitdebug")]));
        assert_eq!(h.keys().collect::<Vec<_>>(), ["USE"]);
        assert_eq!(
            missing,
            [
                "ACCEPT_KEYWORDS",
                "FEATURES",
                "IUSE_IMPLICIT",
                "PROFILE",
                "USE_EXPAND_IMPLICIT"
            ]
        );
    }

    #[test]
    fn a_drone_cannot_name_a_header_key_portage_reads_for_itself() {
        // A drone whose USE_EXPAND lists name URI or TTL would otherwise
        // send every client to its host or freeze their index (found by
        // the breaker: both were written before this check).
        let e = env(&[
            (
                "pkgindex.USE_EXPAND_IMPLICIT",
                "ARCH URI TTL REPO_REVISIONS",
            ),
            (
                "pkgindex.USE_EXPAND_UNPREFIXED",
                "DOWNLOAD_TIMESTAMP VERSION TIMESTAMP PACKAGES CHOST",
            ),
            ("pkgindex.ARCH", "amd64"),
            ("pkgindex.URI", "https://evil.example/"),
            ("pkgindex.TTL", "999999999"),
            ("pkgindex.DOWNLOAD_TIMESTAMP", "9999999999"),
            ("pkgindex.REPO_REVISIONS", "{}"),
            ("pkgindex.VERSION", "9"),
            ("pkgindex.TIMESTAMP", "1"),
            ("pkgindex.PACKAGES", "0"),
            ("pkgindex.CHOST", "evil"),
            ("pkgindex.USE_EXPAND_VALUES_URI", "x"),
        ]);
        let (h, _) = from_env(&e);
        let keys: Vec<&String> = h.keys().collect();
        assert_eq!(
            keys,
            ["ARCH", "USE_EXPAND_IMPLICIT", "USE_EXPAND_UNPREFIXED"],
            "{h:?}"
        );
        for k in PORTAGE_READS {
            assert!(!h.contains_key(k), "{k} in {h:?}");
        }
    }

    #[test]
    fn the_most_common_environment_wins_and_ties_are_stable() {
        let a = env(&[("CFLAGS", "-O2")]);
        let b = env(&[("CFLAGS", "-O3")]);
        let (e, n) = most_common([&a, &b, &a, &BuildEnv::default()]).expect("some");
        assert_eq!((e, n), (a.clone(), 2));
        let first = most_common([&a, &b]).expect("tie");
        assert_eq!(most_common([&b, &a]).expect("tie"), first);
        assert_eq!(most_common([&BuildEnv::default()]), None);
    }

    #[test]
    fn the_recorded_environment_wins_then_the_expected_one_then_none() {
        let built = env(&[("CFLAGS", "-O2")]);
        let other = env(&[("CFLAGS", "-O3")]);
        let expected = env(&[("CHOST", "x86_64-pc-linux-gnu")]);
        let recorded = |cpv: &str| match cpv {
            "a/a-1" | "a/b-1" => Some(built.clone()),
            "a/c-1" => Some(other.clone()),
            _ => None,
        };
        let with = HeaderEnv {
            recorded: &recorded,
            expected: Some(expected.clone()),
        };
        let (e, why) = with.resolve(["a/a-1", "a/b-1", "a/c-1", "a/d-1"]);
        assert_eq!(e, Some(built.clone()));
        assert!(why.contains("that 2 of 4 packages were recorded"), "{why}");
        let (e, why) = with.resolve(["a/d-1"]);
        assert_eq!(e, Some(expected));
        assert!(why.starts_with("the expected build environment"), "{why}");
        let (e, why) = HeaderEnv::NONE.resolve(["a/a-1"]);
        assert_eq!(e, None);
        assert!(why.starts_with("no build environment known"), "{why}");
    }

    #[test]
    fn the_note_says_what_is_missing_and_what_configuration_set() {
        let note = HeaderNote {
            source: "no build environment known".into(),
            keys: vec![],
            missing: vec!["PROFILE".into()],
            overridden: vec!["GENTOO_MIRRORS".into()],
        };
        let text = note.describe();
        assert!(
            text.contains("only VERSION, TIMESTAMP, PACKAGES and CHOST"),
            "{text}"
        );
        assert!(text.contains("missing PROFILE"), "{text}");
        assert!(
            text.contains("set by configuration: GENTOO_MIRRORS"),
            "{text}"
        );
    }
}
