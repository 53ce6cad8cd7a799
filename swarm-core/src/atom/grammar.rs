//! Portage's atom grammar for build targets, as `emerge` checks a command-line target
//! (`is_valid_package_atom(atom, allow_repo=True)`: no blockers, no wildcards, repositories and
//! build ids allowed, a category-less name judged as if it had a category).
//!
//! ```text
//! target  := [op] cat "/" pkg ["-" version ["-" build-id]] [":" slot] ["::" repo] ["[" use,… "]"]
//!          | "=" cat "/" pkg "-" version "*" [":" slot] ["::" repo] ["[" use,… "]"]
//! op      := "=" | "~" | "<" | "<=" | ">" | ">="          (an op needs a version; no op, no version)
//! version := N("." N)*[a-z](_(alpha|beta|pre|rc|p)N?)*["-r" N]
//! slot    := slot["/" subslot]["="] | "=" | "*"
//! ```
//! Where the grammar is ambiguous (`=cat/foo-1-2-3`), the split follows Portage's own regular
//! expression: the shortest package name first, a version inside the name (the build-id form)
//! before a plain version. The fixture `tests/portage/atoms.tsv` holds Portage's verdict on
//! thousands of atoms and a test checks this module against every one.

use std::fmt;

/// Where the parts of a valid target lie in its text (byte offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Spans {
    /// End of the operator (`>=`): where `category/` (or the name) starts.
    pub(crate) body: usize,
    /// Index of the `/` after the category; `None` for a category-less name.
    pub(crate) slash: Option<usize>,
    /// End of the package name.
    pub(crate) pn_end: usize,
    /// End of the version (and revision); equals `pn_end` when unversioned.
    pub(crate) cpv_end: usize,
    /// End of the build id (or of `*`); where `:slot`, `::repo` or `[use]` start.
    pub(crate) head_end: usize,
}

/// Why Portage refuses an atom as a build target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtomRefusal {
    /// `!` or `!!`: says what must not be installed.
    Blocker,
    /// A character no part of an atom may hold.
    Character(char),
    /// No `category/name`, or more than one `/`.
    Shape,
    /// A category Portage does not accept.
    Category(String),
    /// A package name Portage does not accept.
    Name(String),
    /// An operator without a version.
    OperatorNeedsVersion(String),
    /// A version that is not Portage version syntax.
    Version(String),
    /// A `*` anywhere but after the version of an `=` atom.
    Wildcard,
    /// A build id that is not a number without leading zeros.
    BuildId(String),
    /// A malformed `:slot`.
    Slot(String),
    /// A malformed `::repository`.
    Repository(String),
    /// A malformed USE dependency.
    Use(String),
}

impl fmt::Display for AtomRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtomRefusal::Blocker => f.write_str(
                "a blocker (`!` or `!!`) says what must not be installed; it cannot be built",
            ),
            AtomRefusal::Character(c) => write!(f, "{c:?} is not allowed in an atom"),
            AtomRefusal::Shape => f.write_str(
                "an atom is [operator]category/name[-version][:slot][::repository][[use,...]]",
            ),
            AtomRefusal::Category(c) => write!(
                f,
                "category {c:?} must start with a letter, digit or `_` and hold only letters, digits and `+_.-`"
            ),
            AtomRefusal::Name(n) => write!(
                f,
                "package name {n:?} must start with a letter, digit or `_`, hold only letters, digits and `+_-`, and not end in `-` and a version"
            ),
            AtomRefusal::OperatorNeedsVersion(op) => write!(
                f,
                "the operator `{op}` needs a version (`{op}dev-libs/foo-1.0`)"
            ),
            AtomRefusal::Version(v) => write!(
                f,
                "{v:?} is not a Portage version (1.2.3[a][_alpha|_beta|_pre|_rc|_p[N]]...[-rN])"
            ),
            AtomRefusal::Wildcard => f.write_str(
                "`*` is only allowed after the version of an `=` atom (`=dev-libs/foo-1.2*`)",
            ),
            AtomRefusal::BuildId(b) => write!(
                f,
                "build id {b:?} must be a number without leading zeros (`=dev-libs/foo-1.0-3`)"
            ),
            AtomRefusal::Slot(s) => write!(
                f,
                "slot {s:?} is not valid (`:slot`, `:slot/subslot`, `:slot=`, `:=`, `:*`)"
            ),
            AtomRefusal::Repository(r) => write!(
                f,
                "repository {r:?} must start with a letter, digit or `_` and hold only letters, digits and `_-`"
            ),
            AtomRefusal::Use(u) => write!(
                f,
                "USE dependency {u:?} is not valid (`[flag,-flag,flag?,!flag?,flag=,!flag=,flag(+),flag(-)]`)"
            ),
        }
    }
}

const OPERATORS: [&str; 6] = [">=", "<=", "=", "~", ">", "<"];

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Parses `text` as emerge parses a command-line target.
pub(crate) fn parse(text: &str) -> Result<Spans, AtomRefusal> {
    if text.starts_with('!') {
        return Err(AtomRefusal::Blocker);
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_+-.*/:=~<>[]!?@(),".contains(c)))
    {
        return Err(AtomRefusal::Character(c));
    }
    // emerge gives a name without a category a placeholder one, before the first word character.
    let before_colon = text.split(':').next().unwrap_or("");
    if !before_colon.contains('/') {
        let Some(at) = text.bytes().position(|b| is_word(b) || b == b'*') else {
            return Err(AtomRefusal::Shape);
        };
        let placed = format!("{}cat/{}", &text[..at], &text[at..]);
        let spans = parse_full(&placed)?;
        let back = |i: usize| if i > at { i - 4 } else { i };
        return Ok(Spans {
            body: spans.body,
            slash: None,
            pn_end: back(spans.pn_end),
            cpv_end: back(spans.cpv_end),
            head_end: back(spans.head_end),
        });
    }
    parse_full(text)
}

fn parse_full(text: &str) -> Result<Spans, AtomRefusal> {
    // `[use]` runs from the first `[` to the end; `:slot` and `::repo` from the first `:` before it.
    let use_at = text.find('[').unwrap_or(text.len());
    let (head_and_slot, use_part) = text.split_at(use_at);
    if !use_part.is_empty() {
        check_use(use_part)?;
    }
    let slot_at = head_and_slot.find(':').unwrap_or(head_and_slot.len());
    let (head, slot_repo) = head_and_slot.split_at(slot_at);
    if !slot_repo.is_empty() {
        check_slot_repo(slot_repo)?;
    }
    let op = OPERATORS
        .iter()
        .find(|op| head.starts_with(**op))
        .copied()
        .unwrap_or("");
    let body = &head[op.len()..];
    let Some((cat, rest)) = body.split_once('/') else {
        return Err(AtomRefusal::Shape);
    };
    if rest.contains('/') {
        return Err(AtomRefusal::Shape);
    }
    if !valid_category(cat) {
        return Err(if cat.contains('*') {
            AtomRefusal::Wildcard
        } else {
            AtomRefusal::Category(cat.to_owned())
        });
    }
    let at = op.len() + cat.len() + 1;
    if op.is_empty() {
        if rest.contains('*') {
            return Err(AtomRefusal::Wildcard);
        }
        if !valid_name(rest) {
            return Err(AtomRefusal::Name(rest.to_owned()));
        }
        if let Some(split) = first_version_split(rest) {
            // Portage reads `dev-libs/foo-1.0` as a version, which needs an operator.
            return Err(AtomRefusal::Version(rest[split + 1..].to_owned()));
        }
        let end = at + rest.len();
        return Ok(Spans {
            body: 0,
            slash: Some(op.len() + cat.len()),
            pn_end: end,
            cpv_end: end,
            head_end: end,
        });
    }
    let (rest, star) = match rest.strip_suffix('*') {
        Some(r) if op == "=" => (r, true),
        _ => (rest, false),
    };
    if rest.contains('*') {
        return Err(AtomRefusal::Wildcard);
    }
    let Some(cpv) = split_cpv(rest) else {
        return Err(version_refusal(op, rest));
    };
    let cpv_end = match cpv.build {
        Some(_) if star => return Err(AtomRefusal::Wildcard),
        Some(b) => {
            let id = &rest[b..];
            if !id.bytes().all(|c| c.is_ascii_digit()) || (id.len() > 1 && id.starts_with('0')) {
                return Err(AtomRefusal::BuildId(id.to_owned()));
            }
            b - 1
        }
        None => rest.len(),
    };
    Ok(Spans {
        body: op.len(),
        slash: Some(op.len() + cat.len()),
        pn_end: at + cpv.pn_end,
        cpv_end: at + cpv_end,
        head_end: at + rest.len() + usize::from(star),
    })
}

fn version_refusal(op: &str, rest: &str) -> AtomRefusal {
    let dash_digit = rest
        .match_indices('-')
        .find(|(i, _)| rest[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
    match dash_digit {
        Some((i, _)) if valid_name(&rest[..i]) => AtomRefusal::Version(rest[i + 1..].to_owned()),
        Some(_) => AtomRefusal::Name(rest.to_owned()),
        None if valid_name(rest) => AtomRefusal::OperatorNeedsVersion(op.to_owned()),
        None => AtomRefusal::Name(rest.to_owned()),
    }
}

/// `[\w][\w+.-]*`.
fn valid_category(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(|&c| is_word(c)) && b.iter().all(|&c| is_word(c) || b"+.-".contains(&c))
}

/// `[\w][\w+-]*`.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(|&c| is_word(c))
        && b.iter().all(|&c| is_word(c) || c == b'+' || c == b'-')
}

/// The first `-` (after a non-empty name prefix) followed by a complete version, if any.
fn first_version_split(name: &str) -> Option<usize> {
    name.match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && is_version(&name[i + 1..]))
}

struct Cpv {
    /// End of the package name within `name-version[-build]`.
    pn_end: usize,
    /// Start of the build id, when the atom has one.
    build: Option<usize>,
}

/// Splits `name-version[-build]` as Portage's expression does: shortest name first, and for each
/// name a `version-build` tail before a plain `version`.
fn split_cpv(s: &str) -> Option<Cpv> {
    for (i, _) in s.match_indices('-') {
        if !valid_name(&s[..i]) {
            return None;
        }
        let tail = &s[i + 1..];
        let with_build = tail.match_indices('-').find_map(|(j, _)| {
            (is_version(&tail[..j]) && is_version(&tail[j + 1..])).then_some(i + 1 + j + 1)
        });
        if let Some(build) = with_build {
            return Some(Cpv {
                pn_end: i,
                build: Some(build),
            });
        }
        if is_version(tail) {
            return Some(Cpv {
                pn_end: i,
                build: None,
            });
        }
    }
    None
}

/// Portage version syntax, the whole string: `N(.N)*[a-z](_(alpha|beta|pre|rc|p)N?)*(-rN)?`.
pub(crate) fn is_version(v: &str) -> bool {
    let v = match v.split_once('-') {
        Some((head, r)) => match r.strip_prefix('r') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
            _ => return false,
        },
        None => v,
    };
    let mut parts = v.split('_');
    let numeric = parts.next().unwrap_or("");
    let numeric = match numeric.as_bytes().last() {
        Some(b) if b.is_ascii_lowercase() => &numeric[..numeric.len() - 1],
        _ => numeric,
    };
    let dotted_ok = numeric
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

/// `:slot[/sub][=]`, `:=`, `:*`, then `::repo`; or `::repo` alone.
fn check_slot_repo(s: &str) -> Result<(), AtomRefusal> {
    let (slot, repo) = match s.strip_prefix("::") {
        Some(repo) => (None, Some(repo)),
        None => {
            let s = &s[1..];
            match s.find(':') {
                Some(i) => match s[i..].strip_prefix("::") {
                    Some(repo) => (Some(&s[..i]), Some(repo)),
                    None => return Err(AtomRefusal::Slot(s.to_owned())),
                },
                None => (Some(s), None),
            }
        }
    };
    if let Some(slot) = slot {
        let loose = !slot.is_empty() && slot.bytes().all(|c| is_word(c) || b"+./*=-".contains(&c));
        if !loose || !valid_slot(slot) {
            return Err(AtomRefusal::Slot(slot.to_owned()));
        }
    }
    if let Some(repo) = repo {
        let b = repo.as_bytes();
        let ok =
            b.first().is_some_and(|&c| is_word(c)) && b.iter().all(|&c| is_word(c) || c == b'-');
        if !ok {
            return Err(AtomRefusal::Repository(repo.to_owned()));
        }
    }
    Ok(())
}

fn valid_slot(slot: &str) -> bool {
    let name = |s: &str| {
        let b = s.as_bytes();
        b.first().is_some_and(|&c| is_word(c))
            && b.iter().all(|&c| is_word(c) || b"+.-".contains(&c))
    };
    let (main, op) = match slot.as_bytes().last() {
        Some(b'=') => (&slot[..slot.len() - 1], '='),
        Some(b'*') => (&slot[..slot.len() - 1], '*'),
        _ => (slot, ' '),
    };
    if main.is_empty() {
        return op != ' ';
    }
    if op == '*' {
        return false;
    }
    match main.split_once('/') {
        Some((m, sub)) => name(m) && name(sub),
        None => name(main),
    }
}

/// `[flag,-flag,flag?,!flag?,flag=,!flag=,flag(+),flag(-)]`, each flag with at most one
/// kind of default.
fn check_use(s: &str) -> Result<(), AtomRefusal> {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return Err(AtomRefusal::Use(s.to_owned()));
    };
    #[derive(PartialEq)]
    enum Default {
        None,
        Enabled,
        Disabled,
    }
    let mut seen: Vec<(&str, Default)> = Vec::new();
    for token in inner.split(',') {
        let bad = || AtomRefusal::Use(token.to_owned());
        let (prefix, t) = match token.as_bytes().first() {
            Some(b'!') => ("!", &token[1..]),
            Some(b'-') => ("-", &token[1..]),
            _ => ("", token),
        };
        let (t, suffix) = match t.as_bytes().last() {
            Some(b'?') => (&t[..t.len() - 1], "?"),
            Some(b'=') => (&t[..t.len() - 1], "="),
            _ => (t, ""),
        };
        let (flag, default) = if let Some(f) = t.strip_suffix("(+)") {
            (f, Default::Enabled)
        } else if let Some(f) = t.strip_suffix("(-)") {
            (f, Default::Disabled)
        } else {
            (t, Default::None)
        };
        let b = flag.as_bytes();
        let flag_ok = b.first().is_some_and(|c| c.is_ascii_alphanumeric())
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"+_@-".contains(&c));
        let op_ok = matches!(
            (prefix, suffix),
            ("", "") | ("-", "") | ("", "?") | ("", "=") | ("!", "=") | ("!", "?")
        );
        if !flag_ok || !op_ok {
            return Err(bad());
        }
        let conflict = seen.iter().any(|(f, d)| {
            *f == flag
                && match default {
                    Default::None => *d != Default::None,
                    Default::Enabled => *d != Default::Enabled,
                    Default::Disabled => *d != Default::Disabled,
                }
        });
        if conflict {
            return Err(bad());
        }
        seen.push((flag, default));
    }
    Ok(())
}
