//! An index entry's USE-evaluated fields, as Portage writes them: LICENSE,
//! RESTRICT, PROPERTIES and the `*DEPEND` fields of a binary package are
//! reduced with the package's own USE (Portage's binary tree runs
//! `use_reduce(value, uselist=USE)` and `paren_enclose` on each), so a client
//! reads `GPL-2 ssl? ( BSD )` built with USE=ssl as `GPL-2 BSD`.
//!
//! The reduction, in the shape Portage gives it:
//! - `flag? ( … )` keeps its contents when `flag` is in USE, `!flag? ( … )`
//!   when it is not; otherwise the group goes;
//! - a group's parentheses go wherever they change nothing: a plain group
//!   outside any-of, `|| ( A )` → `A`, `|| ( A || ( B C ) )` → `|| ( A B C )`;
//!   an all-of group inside an any-of keeps them;
//! - an any-of left empty by its conditionals is the token
//!   `__const__/empty-any-of` (Portage's marker for an unsatisfiable `|| ( )`);
//! - in `*DEPEND` atoms, USE dependencies with conditionals are evaluated too
//!   (`foo[bar?,!baz=]` with USE=bar → `foo[bar,baz]`).
//!
//! Checked against the real Portage on generated cases
//! (tests/portage/use_reduce.py → tests/portage/use_reduce.tsv).

use std::collections::BTreeSet;

/// The entry fields Portage reduces with the package's USE.
pub const USE_EVALUATED: [&str; 8] = [
    "BDEPEND",
    "DEPEND",
    "IDEPEND",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "RDEPEND",
    "RESTRICT",
];

/// Deepest nesting of parentheses accepted (real ebuilds nest a few levels).
const MAX_DEPTH: usize = 64;
/// Most tokens in one value (a large RDEPEND has a few hundred).
const MAX_TOKENS: usize = 100_000;

/// What an any-of group with nothing left in it becomes.
const EMPTY_ANY_OF: &str = "__const__/empty-any-of";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Token(String),
    Group(Vec<Item>),
}

impl Item {
    fn is(&self, s: &str) -> bool {
        matches!(self, Item::Token(t) if t == s)
    }

    fn conditional(&self) -> bool {
        matches!(self, Item::Token(t) if t.ends_with('?'))
    }
}

/// Reduces `value` with the enabled flags `use_flags`; `atoms` evaluates USE
/// conditionals inside atoms (the `*DEPEND` fields). `Err` names what is
/// malformed, as Portage would refuse it.
pub fn reduce(value: &str, use_flags: &BTreeSet<&str>, atoms: bool) -> Result<String, String> {
    let tokens: Vec<&str> = value.split_whitespace().collect();
    if tokens.len() > MAX_TOKENS {
        return Err(format!("{} tokens; at most {MAX_TOKENS}", tokens.len()));
    }
    // One list per open parenthesis; the outermost is the result.
    let mut open: Vec<Vec<Item>> = vec![Vec::new()];
    // After `||` or `flag?` only `(` may follow.
    let mut needs_paren = false;
    for (i, &tok) in tokens.iter().enumerate() {
        let at = i + 1;
        match tok {
            "(" => {
                if tokens.get(i + 1) == Some(&")") {
                    return Err(format!("empty group at token {at}"));
                }
                if open.len() > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} groups"));
                }
                needs_paren = false;
                open.push(Vec::new());
            }
            ")" => {
                if needs_paren {
                    return Err(format!("expected '(' at token {at}, got ')'"));
                }
                if open.len() == 1 {
                    return Err(format!("')' without '(' at token {at}"));
                }
                let group = open.pop().unwrap_or_default();
                close(&mut open, group, use_flags)?;
            }
            _ => {
                if needs_paren {
                    return Err(format!("expected '(' at token {at}, got {tok:?}"));
                }
                let item = if tok == "||" {
                    needs_paren = true;
                    tok.to_string()
                } else if let Some(cond) = tok.strip_suffix('?') {
                    let flag = cond.strip_prefix('!').unwrap_or(cond);
                    if !valid_flag(flag) {
                        return Err(format!("invalid USE flag in conditional {tok:?}"));
                    }
                    needs_paren = true;
                    tok.to_string()
                } else if atoms {
                    evaluate_atom(tok, use_flags)?
                } else {
                    tok.to_string()
                };
                if let Some(top) = open.last_mut() {
                    top.push(Item::Token(item));
                }
            }
        }
    }
    if open.len() != 1 {
        return Err("missing ')' at the end".into());
    }
    if needs_paren {
        return Err("missing '(' at the end".into());
    }
    Ok(enclose(&open[0]))
}

/// Whether the list at `level` ends in `||` (its next group is an any-of).
fn ends_in_any_of(open: &[Vec<Item>], level: Option<usize>) -> bool {
    level.is_some_and(|k| open[k].last().is_some_and(|x| x.is("||")))
}

/// Whether an any-of is in force at `level` or above, looking through
/// conditionals and lists that are empty or end in a group.
fn any_of_above(open: &[Vec<Item>], level: Option<usize>) -> bool {
    let Some(level) = level else { return false };
    for list in open[..=level].iter().rev() {
        match list.last() {
            Some(Item::Token(t)) if t == "||" => return true,
            Some(Item::Token(t)) if !t.ends_with('?') => return false,
            _ => {}
        }
    }
    false
}

/// Merges the closed `group` into the list that opened it.
fn close(
    open: &mut [Vec<Item>],
    mut group: Vec<Item>,
    use_flags: &BTreeSet<&str>,
) -> Result<(), String> {
    let level = open.len() - 1;
    let parent = level.checked_sub(1);
    // One member, or one any-of: `( A )`, `( ( … ) )`, `( || ( … ) )`. Judged
    // before an emptied any-of gets its marker, so the marker keeps its group
    // (`( __const__/empty-any-of )`), as Portage writes it.
    let single = group.len() == 1 || (group.len() == 2 && group[0].is("||"));
    let mut dropped = false;
    if open[level].last().is_some_and(|x| x.is("||")) && group.is_empty() {
        open[level].pop();
        group.push(Item::Token(EMPTY_ANY_OF.into()));
    } else if open[level].last().is_some_and(Item::conditional) {
        if let Some(Item::Token(c)) = open[level].pop() {
            dropped = !active(&c, use_flags);
        }
    }
    if group.is_empty() || dropped {
        return Ok(());
    }
    let here = ends_in_any_of(open, Some(level));
    if !here && !ends_in_any_of(open, parent) {
        open[level].extend(group);
    } else if open[level].is_empty() {
        attach(open, level, group, single);
    } else if single && here {
        open[level].pop();
        attach(open, level, group, single);
    } else if here && ends_in_any_of(open, parent) {
        open[level].pop();
        open[level].extend(group);
    } else {
        attach(open, level, group, single);
    }
    Ok(())
}

/// Adds `group` to the list at `level`, without parentheses where they
/// would change nothing.
fn attach(open: &mut [Vec<Item>], level: usize, mut group: Vec<Item>, single: bool) {
    let parent = level.checked_sub(1);
    if !single {
        open[level].push(Item::Group(group));
        return;
    }
    if group[0].is("||") && ends_in_any_of(open, parent) {
        if let Some(Item::Group(members)) = group.pop() {
            open[level].extend(members);
        }
    } else if group.len() == 1 && matches!(group[0], Item::Group(_)) {
        let inner = group.pop();
        match inner {
            Some(Item::Group(members)) if !any_of_above(open, parent) => {
                open[level].extend(members)
            }
            Some(g) => open[level].push(g),
            None => {}
        }
    } else {
        open[level].extend(group);
    }
}

fn active(conditional: &str, use_flags: &BTreeSet<&str>) -> bool {
    let c = conditional.strip_suffix('?').unwrap_or(conditional);
    match c.strip_prefix('!') {
        Some(flag) => !use_flags.contains(flag),
        None => use_flags.contains(c),
    }
}

/// A USE flag name: a letter or digit, then letters, digits, `+`, `_`, `@`, `-`.
fn valid_flag(flag: &str) -> bool {
    flag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && flag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '@' | '-'))
}

/// An atom with its conditional USE dependencies evaluated: `flag?` and
/// `!flag?` kept (as `flag` / `-flag`) or dropped, `flag=` and `!flag=` turned
/// into `flag` or `-flag`. An atom without conditionals is unchanged.
fn evaluate_atom(atom: &str, use_flags: &BTreeSet<&str>) -> Result<String, String> {
    let Some(open) = atom.find('[') else {
        return Ok(atom.to_string());
    };
    let Some(deps) = atom[open + 1..].strip_suffix(']') else {
        return Err(format!("invalid atom {atom:?}: '[' without a closing ']'"));
    };
    if !deps
        .split(',')
        .any(|d| d.ends_with('?') || d.ends_with('='))
    {
        return Ok(atom.to_string());
    }
    let mut kept = Vec::new();
    for dep in deps.split(',') {
        let (negated, rest) = match dep.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, dep),
        };
        let (rest, op) = match rest.chars().last() {
            Some(c @ ('?' | '=')) => (&rest[..rest.len() - 1], Some(c)),
            _ => (rest, None),
        };
        let (flag, default) = match rest.find('(') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        let plain = flag.strip_prefix('-').unwrap_or(flag);
        if !valid_flag(plain) || !matches!(default, "" | "(+)" | "(-)") || (negated && op.is_none())
        {
            return Err(format!("invalid USE dependency {dep:?} in {atom:?}"));
        }
        let on = use_flags.contains(flag);
        let out = match (op, negated) {
            (None, _) => Some(dep.to_string()),
            (Some('?'), false) => on.then(|| format!("{flag}{default}")),
            (Some('?'), true) => (!on).then(|| format!("-{flag}{default}")),
            (Some(_), false) if on => Some(format!("{flag}{default}")),
            (Some(_), false) => Some(format!("-{flag}{default}")),
            (Some(_), true) if on => Some(format!("-{flag}{default}")),
            (Some(_), true) => Some(format!("{flag}{default}")),
        };
        kept.extend(out);
    }
    // Portage rebuilds the atom from its parts, which leaves a `::repo` out.
    let mut base = &atom[..open];
    if let Some(p) = base.find("::") {
        base = &base[..p];
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}[{}]", kept.join(","))
    })
}

/// The reduced list as text: groups in `( … )`, tokens separated by spaces.
fn enclose(items: &[Item]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|x| match x {
            Item::Token(t) => t.clone(),
            Item::Group(g) => format!("( {} )", enclose(g)),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(flags: &str) -> BTreeSet<&str> {
        flags.split_whitespace().collect()
    }

    #[test]
    fn conditionals_and_groups_reduce_as_portage_reduces_them() {
        let use_ = on("ssl foo");
        for (input, want) in [
            ("GPL-2 ssl? ( BSD ) !ssl? ( MIT )", "GPL-2 BSD"),
            ("|| ( foo? ( a/b ) )", "a/b"),
            ("|| ( bar? ( a/b ) ) c/d", "__const__/empty-any-of c/d"),
            ("|| ( a/b foo? ( c/d e/f ) )", "|| ( a/b ( c/d e/f ) )"),
            ("( a/b ( c/d ) )", "a/b c/d"),
            ("|| ( a/b || ( c/d e/f ) )", "|| ( a/b c/d e/f )"),
            ("foo? ( || ( a/b c/d ) )", "|| ( a/b c/d )"),
            (
                ">=a/b-1:2/3=[foo?,-bar,!baz=,x(+)?]",
                ">=a/b-1:2/3=[foo,-bar,baz]",
            ),
            ("a/b[bar?]", "a/b"),
        ] {
            assert_eq!(reduce(input, &use_, true).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        let use_ = on("");
        for (input, why) in [
            ("( )", "empty group"),
            ("a )", "without '('"),
            ("( a", "missing ')'"),
            ("foo? a", "expected '('"),
            ("||", "missing '('"),
            ("f$o? ( a )", "invalid USE flag"),
            ("a/b[foo", "without a closing"),
        ] {
            let err = reduce(input, &use_, true).expect_err(input);
            assert!(err.contains(why), "{input}: {err}");
        }
        let deep = format!(
            "{}a{}",
            "( ".repeat(MAX_DEPTH + 1),
            " )".repeat(MAX_DEPTH + 1)
        );
        assert!(reduce(&deep, &use_, false)
            .expect_err("deep")
            .contains("deeper"));
    }

    /// The cases of tests/portage/use_reduce.tsv: kind, USE, value, Portage's result.
    pub(super) fn fixture() -> Vec<[String; 4]> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/portage/use_reduce.tsv"
        );
        let text = std::fs::read_to_string(path).expect("tests/portage/use_reduce.tsv");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|line| {
                let f: Vec<String> = line.split('\t').map(str::to_string).collect();
                f.try_into()
                    .unwrap_or_else(|_| panic!("malformed fixture line {line:?}"))
            })
            .collect()
    }

    /// Portage's verdicts on generated cases (tests/portage/use_reduce.tsv).
    #[test]
    fn agrees_with_portage_on_the_generated_fixture() {
        let mut checked = 0;
        for f in fixture() {
            let [kind, flags, input, want] = [&f[0], &f[1], &f[2], &f[3]].map(String::as_str);
            let use_: BTreeSet<&str> = flags.split(',').filter(|s| !s.is_empty()).collect();
            let got = reduce(input, &use_, kind == "dep");
            match (want, &got) {
                ("ERR", Err(_)) => {}
                (w, Ok(g)) if w == g => {}
                _ => panic!("{kind} USE={flags} {input:?}: Portage {want:?}, swarm {got:?}"),
            }
            checked += 1;
        }
        assert!(checked >= 500, "only {checked} cases");
    }
}

/// Mutations of the Portage fixture's values (byte flips, truncations,
/// splices): the reducer never panics, refuses with a reason, and what it
/// makes of a value is one line of balanced, non-empty groups. (Not a fixed
/// point: like Portage it writes `|| ( ( __const__/empty-any-of ) … )`.)
#[cfg(test)]
mod mutations {
    use super::*;

    #[test]
    fn mutated_values_never_panic_and_reduce_to_balanced_groups() {
        let mut m = crate::mutate::Mutator::new(0x0bad_5eed);
        let (mut reduced, mut tried) = (0, 0);
        for [kind, flags, input, _] in super::tests::fixture() {
            let use_: BTreeSet<&str> = flags.split(',').filter(|s| !s.is_empty()).collect();
            let atoms = kind == "dep";
            if input.is_empty() {
                continue;
            }
            for _ in 0..20 {
                let bytes = m.mutate(input.as_bytes());
                let value = String::from_utf8_lossy(&bytes);
                tried += 1;
                match reduce(&value, &use_, atoms) {
                    Ok(once) => {
                        reduced += 1;
                        let words: Vec<&str> = once.split(' ').collect();
                        let depth = words.iter().try_fold(0i64, |d, w| match *w {
                            "(" => Some(d + 1),
                            ")" => (d > 0).then(|| d - 1),
                            _ => Some(d),
                        });
                        assert!(
                            depth == Some(0)
                                && !once.contains("( )")
                                && !once.contains(|c: char| c.is_whitespace() && c != ' ')
                                && !words.iter().any(|w| w.is_empty() && !once.is_empty()),
                            "{value:?} reduced to {once:?}"
                        );
                    }
                    Err(why) => assert!(!why.is_empty(), "{value:?}"),
                }
            }
        }
        assert!(
            tried > 10_000 && reduced > tried / 10,
            "{reduced} of {tried}"
        );
    }

    /// A megabyte-sized value, nested as deep as allowed, reduces in one
    /// pass (each token moves once per level); one token over the bound is
    /// refused before any work.
    #[test]
    fn values_at_the_bounds_reduce_and_over_them_are_refused() {
        let use_: BTreeSet<&str> = ["a"].into();
        let n = MAX_TOKENS - 6 * (MAX_DEPTH / 2);
        let deep = format!(
            "{}{}{}",
            "|| ( a? ( ".repeat(MAX_DEPTH / 2),
            "x/y[a?,b=] ".repeat(n),
            ") ) ".repeat(MAX_DEPTH / 2)
        );
        assert!(deep.len() > 1 << 20, "{}", deep.len());
        let out = reduce(&deep, &use_, true).expect("at the bounds");
        // As Portage: `|| ( a? ( x/y x/z ) )` with USE=a is `x/y x/z`.
        assert_eq!(out, vec!["x/y[a,-b]"; n].join(" "));
        let over = "x/y ".repeat(MAX_TOKENS + 1);
        let err = reduce(&over, &use_, true).expect_err("over");
        assert!(err.contains("at most"), "{err}");
    }
}
