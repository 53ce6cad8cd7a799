//! The metadata checks behind a client's mask: values that make Portage mask a binary
//! package (`invalid: SLOT`, `invalid: RDEPEND`, `EAPI.unsupported`) or rewrite it
//! (a `repository` it does not accept as a name), so it must not be published.
//!
//! Each rule follows Portage 3.0.83:
//! - EAPI: `portage.eapi_is_supported` (`0`…`9`, the testing `9-pre1`) minus the
//!   deprecated `*_pre*` EAPIs, which `Package._eval_masks` masks too;
//! - SLOT: `versions._get_slot_re`, `[\w][\w+.-]*` with a `/sub-slot` of the same form
//!   from EAPI 5 on (ASCII word characters);
//! - `*DEPEND`: `Package._validate_deps` runs `use_reduce` on each: balanced groups, `||`
//!   and `flag?` followed by a group, and every other token an atom: an optional `!`/`!!`
//!   blocker, a category, an operator exactly when there is a version, no build id and no
//!   `::repository` (no EAPI allows repository dependencies), and only the features the
//!   package's EAPI has (`Atom(eapi=…)`): slot dependencies from EAPI 1, USE dependencies
//!   and `!!` from 2, USE dependency defaults from 4, slot operators and sub-slots from 5
//!   (the cases of `tests/portage/dep_eapi.tsv`, made by real Portage);
//!   LICENSE, PROPERTIES and RESTRICT must reduce too;
//! - repository: `dep._repo_name_re`, `[\w][\w-]*` (`_gen_valid_repo` would turn
//!   `evil repo` into `evil-repo`: the client then records a repository nobody named).
//!
//! Not checked: USE flags of conditionals against IUSE (Portage also counts a profile's
//! implicit IUSE, which the server does not know).

use super::model::BinPkgError;
use crate::binhost::use_reduce::reduce;
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::Atom;

/// EAPIs a Portage 3.0.83 client installs without masking.
const SUPPORTED_EAPIS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "9-pre1"];
/// EAPIs without sub-slots (`slot_operator` arrives in EAPI 5).
const EAPIS_WITHOUT_SUB_SLOTS: &[&str] = &["0", "1", "2", "3", "4"];
/// The dependency keys Portage validates as atoms (`Package._dep_keys`).
const DEP_KEYS: &[&str] = &["BDEPEND", "DEPEND", "IDEPEND", "PDEPEND", "RDEPEND"];
/// Keys with USE conditionals that are not atoms (`Package._use_conditional_misc_keys`).
const MISC_KEYS: &[&str] = &["LICENSE", "PROPERTIES", "RESTRICT"];

/// Checks the normalised index `metadata` (as [`super::meta`] builds it).
pub(super) fn check(metadata: &BTreeMap<String, String>) -> Result<(), BinPkgError> {
    let bad = |m: String| Err(BinPkgError::Metadata(m));
    let eapi = metadata.get("EAPI").map(String::as_str).unwrap_or("0");
    if !SUPPORTED_EAPIS.contains(&eapi) {
        return bad(format!(
            "EAPI {eapi:?} is not one Portage supports ({}): clients mask the package",
            SUPPORTED_EAPIS.join(", ")
        ));
    }
    let slot = metadata.get("SLOT").map(String::as_str).unwrap_or("");
    let slot_ok = match slot.split_once('/') {
        Some((main, sub)) => {
            !EAPIS_WITHOUT_SUB_SLOTS.contains(&eapi) && slot_name(main) && slot_name(sub)
        }
        None => slot_name(slot),
    };
    if !slot_ok {
        return bad(format!(
            "SLOT {slot:?} is not a slot name (a letter, digit or _, then letters, digits, \
             +, _, . or -; a /sub-slot from EAPI 5): clients mask the package as invalid"
        ));
    }
    if let Some(repo) = metadata.get("repository") {
        let b = repo.as_bytes();
        if !(b.first().is_some_and(|&c| word(c)) && b.iter().all(|&c| word(c) || c == b'-')) {
            return bad(format!(
                "repository {repo:?} is not a repository name (a letter, digit or _, then \
                 letters, digits, _ or -)"
            ));
        }
    }
    let none = BTreeSet::new();
    for key in DEP_KEYS.iter().chain(MISC_KEYS) {
        let Some(value) = metadata.get(*key) else {
            continue;
        };
        let atoms = DEP_KEYS.contains(key);
        if let Err(why) = reduce(value, &none, atoms) {
            return bad(format!("{key} does not parse: {why}"));
        }
        if atoms {
            for token in value.split_whitespace() {
                if matches!(token, "(" | ")" | "||") || token.ends_with('?') {
                    continue;
                }
                if let Err(why) = dep_atom(token) {
                    return bad(format!("{key}: {token:?} is not a dependency atom: {why}"));
                }
                if let Err(what) = eapi_has(token, eapi) {
                    return bad(format!(
                        "{key}: {token:?} uses {what}: clients mask the package"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An ASCII word character (`\w` with `re.ASCII`).
fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Portage's `_slot`: `[\w][\w+.-]*`.
fn slot_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(|&c| word(c)) && b.iter().all(|&c| word(c) || b"+.-".contains(&c))
}

/// The first EAPI with each dependency feature, as Portage's `eapi.py` dates them.
const SLOT_DEPS: u32 = 1;
const USE_DEPS: u32 = 2;
const STRONG_BLOCKS: u32 = 2;
const USE_DEP_DEFAULTS: u32 = 4;
const SLOT_OPERATORS: u32 = 5;

/// Names a feature of `token` (an atom [`dep_atom`] accepted) that `eapi` (a supported
/// one) lacks: a client masks the package, as `Atom(token, eapi=EAPI)` raises.
fn eapi_has(token: &str, eapi: &str) -> Result<(), String> {
    // `9-pre1` has what 9 has; every supported EAPI starts with its number.
    let level: u32 = eapi
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let (head, use_deps) = match token.find('[') {
        Some(at) => token.split_at(at),
        None => (token, ""),
    };
    let slot = head.split_once(':').map(|(_, slot)| slot);
    let needs = [
        (slot.is_some(), SLOT_DEPS, "a slot dependency"),
        (
            slot.is_some_and(|s| !slot_name(s)),
            SLOT_OPERATORS,
            "a slot operator or sub-slot",
        ),
        (!use_deps.is_empty(), USE_DEPS, "a USE dependency"),
        (
            use_deps.contains("(+)") || use_deps.contains("(-)"),
            USE_DEP_DEFAULTS,
            "a USE dependency default",
        ),
        (token.starts_with("!!"), STRONG_BLOCKS, "a strong blocker"),
    ];
    match needs
        .iter()
        .find(|(used, since, _)| *used && level < *since)
    {
        Some((_, since, what)) => Err(format!(
            "{what}, which EAPI {eapi} lacks (it arrives in EAPI {since})"
        )),
        None => Ok(()),
    }
}

/// Checks one dependency atom. `Atom::parse` knows Portage's atom grammar for build
/// targets; a dependency differs in allowing blockers and in taking the text literally
/// (no operator added or dropped), with a category, no build id and no repository.
fn dep_atom(token: &str) -> Result<(), String> {
    let text = token
        .strip_prefix("!!")
        .or_else(|| token.strip_prefix('!'))
        .unwrap_or(token);
    let (head, use_deps) = match text.find('[') {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    if head.contains("::") {
        return Err("repository dependencies are not allowed in any EAPI".into());
    }
    if !head.split(':').next().unwrap_or("").contains('/') {
        return Err("no category".into());
    }
    // Long USE dependency lists (evaluated LLVM or Python targets) can pass Atom's length
    // bound: the head and each USE dependency are then checked on their own.
    let atom = if text.len() <= Atom::MAX_LEN {
        Atom::parse(text)
    } else {
        for dep in use_deps
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
        {
            Atom::parse(&format!("a/b[{dep}]")).map_err(|e| e.to_string())?;
        }
        Atom::parse(head)
    }
    .map_err(|e| e.to_string())?;
    let literal = if text.len() <= Atom::MAX_LEN {
        text
    } else {
        head
    };
    if atom.as_str() != literal {
        return Err(if atom.operator().is_empty() {
            "an operator without a version".into()
        } else {
            "a version without an operator".into()
        });
    }
    if atom.build_id().is_some() {
        return Err("a build id".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [("SLOT", "0"), ("EAPI", "8")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in pairs {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        check(&with(pairs))
            .expect_err("metadata a client masks was accepted")
            .to_string()
    }

    #[test]
    fn metadata_portage_accepts_passes() {
        for pairs in [
            vec![("SLOT", "0/1.2"), ("repository", "gentoo")],
            vec![
                ("SLOT", "2.7"),
                ("EAPI", "4"),
                ("repository", "my_overlay-2"),
            ],
            vec![("EAPI", "9-pre1")],
            vec![(
                "RDEPEND",
                "!!dev-libs/a !<dev-libs/b-2 >=dev-libs/c-1.2:0/1= =dev-libs/d-1* \
                 ssl? ( || ( dev-libs/openssl:= ( dev-libs/libressl:* dev-libs/x ) ) ) \
                 !test? ( ~dev-libs/e-1.0-r1[foo,-bar,baz(+)?,!qux=] ) dev-lang/python:3.12",
            )],
            vec![
                ("LICENSE", "GPL-2 ssl? ( BSD )"),
                ("RESTRICT", "!test? ( test )"),
            ],
        ] {
            check(&with(&pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        }
        let long = format!(
            "sys-devel/llvm:17[{}]",
            (0..30)
                .map(|i| format!("llvm_targets_T{i}(-)"))
                .collect::<Vec<_>>()
                .join(",")
        );
        check(&with(&[("DEPEND", &long)])).expect("a long USE dependency list");
    }

    #[test]
    fn an_unsupported_eapi_is_refused_by_name() {
        for eapi in ["99", "5_pre1", "7_pre1", "ten"] {
            let e = refusal(&[("EAPI", eapi)]);
            assert!(
                e.contains("EAPI") && e.contains("not one Portage supports"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_slot_portage_calls_invalid_is_refused() {
        for slot in ["0/../../x y", "-1", "0/", "/1", "a/b/c", "0 1", "é"] {
            let e = refusal(&[("SLOT", slot)]);
            assert!(
                e.contains("SLOT") && e.contains("not a slot name"),
                "{slot}: {e}"
            );
        }
        let e = refusal(&[("SLOT", "0/1"), ("EAPI", "4")]);
        assert!(
            e.contains("SLOT \"0/1\""),
            "no sub-slots before EAPI 5: {e}"
        );
    }

    #[test]
    fn a_repository_name_portage_rewrites_is_refused() {
        for repo in ["evil repo", "-gentoo", "a/b", "gentoo.org"] {
            let e = refusal(&[("repository", repo)]);
            assert!(e.contains("is not a repository name"), "{repo}: {e}");
        }
    }

    #[test]
    fn a_dependency_string_that_does_not_parse_is_refused_naming_the_key() {
        for key in DEP_KEYS {
            let e = refusal(&[(key, "|| ( ( >=>=foo")]);
            assert!(e.starts_with(&format!("bad metadata: {key} ")), "{e}");
        }
        for (value, why) in [
            (">=>=dev-libs/foo-1", "not a dependency atom"),
            ("dev-libs/foo-1.0", "a version without an operator"),
            (">=dev-libs/foo", "not a dependency atom"),
            ("foo", "no category"),
            ("dev-libs/foo::gentoo", "repository dependencies"),
            ("=dev-libs/foo-1.0-3", "a build id"),
            ("dev-libs/foo[bar", "does not parse"),
            ("ssl? dev-libs/foo", "does not parse"),
            ("dev-libs/foo )", "does not parse"),
        ] {
            let e = refusal(&[("RDEPEND", value)]);
            assert!(e.contains(why), "{value}: {e}");
        }
        let e = refusal(&[("LICENSE", "GPL-2 ssl? ( BSD")]);
        assert!(e.contains("LICENSE does not parse"), "{e}");
    }

    /// Every case of tests/portage/dep_eapi.tsv (tests/portage/dep_eapi.py, real Portage):
    /// the atom is refused in RDEPEND under that EAPI exactly when Portage refuses it.
    #[test]
    fn dependency_features_follow_the_eapi_as_portage_judges_them() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/portage/dep_eapi.tsv");
        let text = std::fs::read_to_string(path).expect("tests/portage/dep_eapi.tsv");
        let mut wrong = Vec::new();
        let mut cases = 0;
        for line in text.lines() {
            let mut cols = line.split('\t');
            let (Some(eapi), Some(atom), Some(verdict)) = (cols.next(), cols.next(), cols.next())
            else {
                panic!("a fixture line of three columns: {line:?}");
            };
            cases += 1;
            let ours = check(&with(&[("EAPI", eapi), ("RDEPEND", atom)]));
            if ours.is_ok() != (verdict == "ok") {
                wrong.push(format!(
                    "EAPI {eapi} {atom}: Portage {verdict}, swarm {ours:?}"
                ));
            }
        }
        assert!(cases > 10_000, "the fixture lost its cases: {cases}");
        assert!(
            wrong.is_empty(),
            "{} of {cases} disagree, first: {:#?}",
            wrong.len(),
            &wrong[..wrong.len().min(8)]
        );
        let e = refusal(&[("EAPI", "4"), ("DEPEND", "dev-libs/a:=")]);
        assert!(
            e.contains(
                "uses a slot operator or sub-slot, which EAPI 4 lacks (it arrives in EAPI 5)"
            ),
            "{e}"
        );
    }
}
