//! Portage's order of versions (PMS "Version comparison") and what a version
//! operator admits, so a lease's `>=cat/foo-5` admits the build of `foo-5.1`
//! and not of `foo-1`. The fixture `tests/portage/matches.tsv` holds real
//! Portage's `match_from_list` verdicts; `tests/matches_portage.rs` checks
//! these functions against it.

use std::cmp::Ordering;

/// A version split into what PMS compares: `1.02b_rc3_p1-r2`.
struct Parts<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    /// Each suffix's rank (`_alpha` lowest, `_p` highest) and number.
    suffixes: Vec<(u8, &'a str)>,
    revision: &'a str,
}

const SUFFIXES: [&str; 5] = ["alpha", "beta", "pre", "rc", "p"];
/// The rank of `_p`: the one suffix that makes a longer version greater.
const PATCH: u8 = 4;

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// `1.2-r3` as `("1.2", "3")`; `("1.2", "")` without a revision.
fn split_revision(version: &str) -> (&str, &str) {
    match version.rsplit_once("-r") {
        Some((main, rev)) if !rev.is_empty() && digits(rev) == rev.len() => (main, rev),
        _ => (version, ""),
    }
}

fn parse(version: &str) -> Option<Parts<'_>> {
    let (main, revision) = split_revision(version);
    let (head, tail) = main.split_once('_').unwrap_or((main, ""));
    let (head, letter) = match head.as_bytes().last() {
        Some(c) if c.is_ascii_lowercase() => (&head[..head.len() - 1], Some(*c)),
        _ => (head, None),
    };
    let numbers: Vec<&str> = head.split('.').collect();
    if numbers.iter().any(|n| n.is_empty() || digits(n) != n.len()) {
        return None;
    }
    let mut suffixes = Vec::new();
    if !tail.is_empty() {
        for s in tail.split('_') {
            let name_len = s.len() - s.bytes().rev().take_while(u8::is_ascii_digit).count();
            let rank = SUFFIXES.iter().position(|n| *n == &s[..name_len])?;
            suffixes.push((rank as u8, &s[name_len..]));
        }
    }
    Some(Parts {
        numbers,
        letter,
        suffixes,
        revision,
    })
}

/// Two strings of digits as the integers they are, however long.
fn integers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A component after the first: with a leading zero on either side they
/// compare as decimals (`1.01` < `1.1`), else as integers.
fn later_component(a: &str, b: &str) -> Ordering {
    if a.starts_with('0') || b.starts_with('0') {
        a.trim_end_matches('0').cmp(b.trim_end_matches('0'))
    } else {
        integers(a, b)
    }
}

/// Portage's order of two versions; `None` when either is not a version.
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    let mut order = integers(a.numbers[0], b.numbers[0]);
    for (x, y) in a.numbers.iter().zip(&b.numbers).skip(1) {
        order = order.then_with(|| later_component(x, y));
    }
    order = order
        .then_with(|| a.numbers.len().cmp(&b.numbers.len()))
        .then_with(|| a.letter.cmp(&b.letter));
    for (x, y) in a.suffixes.iter().zip(&b.suffixes) {
        order = order.then_with(|| x.0.cmp(&y.0).then_with(|| integers(x.1, y.1)));
    }
    let extra = |longer: &Parts<'_>, at: usize| match longer.suffixes.get(at) {
        Some((PATCH, _)) => Ordering::Greater,
        _ => Ordering::Less,
    };
    order = order.then_with(|| match a.suffixes.len().cmp(&b.suffixes.len()) {
        Ordering::Equal => Ordering::Equal,
        Ordering::Greater => extra(&a, b.suffixes.len()),
        Ordering::Less => extra(&b, a.suffixes.len()).reverse(),
    });
    Some(order.then_with(|| integers(a.revision, b.revision)))
}

/// Whether `operator wanted` admits `version` (`>=` `5` admits `5.1`).
/// `=*` is Portage's prefix match on part boundaries: `=foo-1*` admits
/// `1.2` and not `10`. An operator this does not know admits nothing.
pub(crate) fn admits(operator: &str, wanted: &str, version: &str, glob: bool) -> bool {
    if glob {
        return operator == "=" && glob_admits(wanted, version);
    }
    let Some(order) = compare(version, wanted) else {
        return false;
    };
    match operator {
        "=" => order == Ordering::Equal,
        ">=" => order != Ordering::Less,
        ">" => order == Ordering::Greater,
        "<=" => order != Ordering::Greater,
        "<" => order == Ordering::Less,
        // The same text: Portage's `~` compares the version itself as a
        // string (`~foo-1.0` does not admit `1.00`).
        "~" => split_revision(version).0 == split_revision(wanted).0,
        _ => false,
    }
}

/// `=cat/foo-1.2*`: the version starts with `1.2` (leading zeros of the
/// first number aside) and the next character starts a new part.
fn glob_admits(prefix: &str, version: &str) -> bool {
    let lead = |v: &str| -> String {
        let v = v.trim_start_matches('0');
        if v.starts_with(|c: char| c.is_ascii_digit()) {
            v.to_owned()
        } else {
            format!("0{v}")
        }
    };
    let (prefix, version) = (lead(prefix), lead(version));
    let Some(rest) = version.strip_prefix(&prefix) else {
        return false;
    };
    match rest.chars().next() {
        None => true,
        Some(next) => {
            ".-_".contains(next)
                || prefix
                    .chars()
                    .last()
                    .is_some_and(|last| last.is_ascii_digit() != next.is_ascii_digit())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{admits, compare};
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn versions_order_as_portage_orders_them() {
        for (a, b, want) in [
            ("1.0", "1.00", Equal),
            ("1.01", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.2", "1.2.0", Less),
            ("1.2a", "1.2", Greater),
            ("1.2_alpha", "1.2", Less),
            ("1.2_p", "1.2", Greater),
            ("1.2_rc1_p2", "1.2_rc1", Greater),
            ("1.2_rc1_alpha", "1.2_rc1", Less),
            ("1.2-r1", "1.2", Greater),
            ("1.2-r0", "1.2", Equal),
            ("99999", "5", Greater),
            ("123456789012345678901234567890", "2", Greater),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare(b, a), Some(want.reverse()), "{b} vs {a}");
        }
        assert_eq!(compare("1.x", "1"), None);
    }

    #[test]
    fn operators_admit_what_portage_admits() {
        assert!(admits(">=", "5", "5.1", false));
        assert!(!admits(">=", "5", "1", false));
        assert!(admits("~", "1.2", "1.2-r3", false));
        assert!(!admits("~", "1.2", "1.2.1", false));
        assert!(!admits("~", "1.0", "1.00-r1", false));
        assert!(admits("=", "1.2", "1.2.3", true));
        assert!(!admits("=", "1", "10", true));
        assert!(admits("=", "1", "1a", true));
    }
}
