//! Tidy: `swarm-core` stays pure and deterministic (STYLE.md, "Never inside swarm-core").
//!
//! Every `.rs` file under `swarm-core/src`, the simulator included, is scanned with comments, doc
//! comments and literals blanked out and `#[cfg(test)]` modules skipped. A line that reads the
//! clock, does IO, prints, uses a hash map or set, draws unseeded randomness or calls `.unwrap()`
//! fails the test with `file:line: rule`. The check is textual, not a parser, and errs towards
//! flagging: a swarm-core module named like a std one (`fs`, `net`, `env`, ...) is flagged too.

mod source;

use source::{code_only, rs_files};
use std::fs;
use std::path::Path;

/// `(tag, why it is forbidden, the tokens that reveal it)`.
#[rustfmt::skip]
const RULES: &[(&str, &str, &str)] = &[
    ("clock", "reads the clock", "SystemTime Instant UNIX_EPOCH"),
    ("io", "does IO", "std::fs std::net std::thread std::env std::process \
        fs:: net:: thread:: env:: process:: stdin stdout stderr"),
    ("print", "prints", "println! eprintln! print! eprint! dbg!"),
    ("hash", "uses HashMap/HashSet, use BTree*", "HashMap HashSet hash_map hash_set"),
    ("rng", "uses unseeded randomness, use a seeded ChaCha8Rng", "thread_rng rand::random \
        rand::rng StdRng OsRng from_entropy from_os_rng RandomState getrandom"),
    ("unwrap", "calls .unwrap() outside tests", ".unwrap()"),
];

/// Whether `pat` occurs in `line` as whole tokens; a pattern ending in `::` must start its path.
fn has_token(line: &str, pat: &str) -> bool {
    let ident = |ch: Option<char>| ch.is_some_and(|ch| ch.is_alphanumeric() || ch == '_');
    line.match_indices(pat).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + pat.len()..].chars().next();
        let glued_before = ident(pat.chars().next()) && ident(before);
        let mid_path = pat.ends_with("::") && before == Some(':');
        let glued_after = ident(pat.chars().next_back()) && ident(after);
        !(glued_before || mid_path || glued_after)
    })
}

/// Violations in one file as `(line, rule tag, token)`, and its out-of-line `#[cfg(test)] mod x;`s.
fn check(src: &str) -> (Vec<(usize, &'static str, &'static str)>, Vec<String>) {
    let (mut found, mut test_mods) = (Vec::new(), Vec::new());
    let (mut depth, mut cfg_test, mut skip) = (0i64, false, None::<(i64, bool)>);
    for (n, line) in code_only(src).lines().enumerate() {
        let mut t = line.trim();
        if skip.is_none() {
            if let Some(rest) = t.strip_prefix("#[cfg(test)]") {
                (cfg_test, t) = (true, rest.trim());
            }
            let item = ["pub(crate) ", "pub(super) ", "pub "]
                .iter()
                .fold(t, |t, p| t.strip_prefix(p).unwrap_or(t));
            if let Some(module) = item.strip_prefix("mod ").filter(|_| cfg_test) {
                match module.strip_suffix(';') {
                    Some(name) => test_mods.push(name.trim().to_string()),
                    None => skip = Some((depth, false)),
                }
            }
            cfg_test &= t.is_empty() || t.starts_with("#[");
        }
        if skip.is_none() {
            for (tag, _, pats) in RULES {
                if let Some(pat) = pats.split_whitespace().find(|p| has_token(line, p)) {
                    found.push((n + 1, *tag, pat));
                }
            }
        }
        for ch in line.chars() {
            depth += i64::from(ch == '{') - i64::from(ch == '}');
            if let Some((start, opened)) = &mut skip {
                *opened |= depth > *start;
                if *opened && depth <= *start {
                    skip = None;
                }
            }
        }
    }
    (found, test_mods)
}

#[test]
fn swarm_core_does_no_io_reads_no_clock_and_stays_deterministic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../swarm-core/src");
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("lib.rs")),
        "no lib.rs in {}",
        root.display()
    );
    let (mut report, mut test_paths) = (Vec::new(), Vec::new());
    for file in &files {
        let src = fs::read_to_string(file).expect("readable source");
        let (found, test_mods) = check(&src);
        let base = match file.file_stem().and_then(|s| s.to_str()) {
            Some("lib" | "main" | "mod") => file.with_file_name(""),
            _ => file.with_extension(""),
        };
        test_paths.extend(
            test_mods
                .iter()
                .flat_map(|m| [base.join(format!("{m}.rs")), base.join(m)]),
        );
        let lines: Vec<&str> = src.lines().collect();
        for (n, tag, pat) in found {
            let why = RULES.iter().find(|r| r.0 == tag).map_or(tag, |r| r.1);
            let shown = file.strip_prefix(&root).unwrap_or(file).display();
            let text = lines[n - 1].trim();
            report.push((
                file,
                format!("swarm-core/src/{shown}:{n}: {why} (`{pat}`): {text}"),
            ));
        }
    }
    report.retain(|(file, _)| !test_paths.iter().any(|t| file.starts_with(t)));
    let report: Vec<String> = report.into_iter().map(|(_, line)| line).collect();
    assert!(
        report.is_empty(),
        "tidy: {} problem(s)\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn the_tidy_check_catches_bad_code_and_passes_good_code() {
    let bad = [
        ("clock", "use std::time::Instant;"),
        ("clock", "let t = std::time::SystemTime::now();"),
        ("io", "use std::fs;"),
        ("io", "use std::{fs, io};\nfn f() { fs::read(\"x\"); }"),
        ("io", "std::thread::spawn(|| ());"),
        ("io", "let v = std::env::var(\"HOME\");"),
        ("io", "let o = io::stdout();"),
        ("print", "println!(\"{x}\");"),
        ("print", "dbg!(x);"),
        ("hash", "let m: HashMap<u8, u8> = HashMap::new();"),
        ("hash", "use std::collections::HashSet;"),
        ("rng", "let mut r = rand::thread_rng();"),
        ("rng", "let r = StdRng::from_entropy();"),
        ("unwrap", "let x = input.parse::<u8>().unwrap();"),
        ("unwrap", "#[cfg(test)]\nfn helper() { x.unwrap(); }"),
        (
            "unwrap",
            "#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn f() { x.unwrap() }",
        ),
        (
            "unwrap",
            "let s = r\"a\"; let c = 'x';\nlet b = br#\"\"#;\nf(b.unwrap());",
        ),
    ];
    for (rule, snippet) in bad {
        let last = snippet.lines().count();
        let (found, _) = check(snippet);
        assert!(
            found.iter().any(|&(n, tag, _)| tag == rule && n == last),
            "missed `{rule}` on line {last} of:\n{snippet}\nfound {found:?}"
        );
    }
    let good = r####"
//! Doc: println!, HashMap, Instant::now(), std::fs and .unwrap() in prose are fine.
use std::collections::{BTreeMap, BTreeSet};
use crate::time::Timestamp; // SystemTime is the adapter's job
/* block comment: /* nested */ thread_rng() */
/// Returns `x.unwrap()`-free code.
fn f<'a>(s: &'a str, r#mod: u8) -> Option<char> {
    let q = '"'; let e = '\''; let brace = '{';
    let msg = "std::env::var(\"X\") and println!";
    let raw = r#"HashMap "quoted" .unwrap()"#;
    let rng = ChaCha8Rng::seed_from_u64(7);
    let i = Instant_like(); let d = std::time::Duration::from_secs(1);
    s.chars().next()
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    fn t() { let m = std::collections::HashMap::<u8, u8>::new(); println!("{m:?}"); Some(1).unwrap(); }
}
#[cfg(test)]
mod more_tests;
"####;
    let (found, test_mods) = check(good);
    assert!(found.is_empty(), "false positives: {found:?}");
    assert_eq!(test_mods, ["more_tests"]);
}

/// Issue 10: a core file past this many lines mixes concerns and hides its rules; split it.
const CORE_FILE_LINES: usize = 600;

/// Core files still over [`CORE_FILE_LINES`], as (path under swarm-core/src, its line count when
/// listed). Shrink-only: a file that grows past its count, or a new file over the limit, fails; a
/// listed file that got under the limit must be removed from the list.
const CORE_FILES_TOO_LONG: &[(&str, usize)] = &[];

/// swarm-core's sources as (path under swarm-core/src, text), for the checks over its files.
fn core_sources() -> Vec<(String, String)> {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../swarm-core/src");
    let mut paths = Vec::new();
    rs_files(&src_dir, &mut paths);
    assert!(!paths.is_empty(), "no sources in {}", src_dir.display());
    paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src_dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (rel, text)
        })
        .collect()
}

#[test]
fn swarm_core_files_stay_small() {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (rel, text) in core_sources() {
        let lines = text.lines().count();
        let allowed = CORE_FILES_TOO_LONG.iter().find(|(f, _)| *f == rel);
        match allowed {
            Some(_) if lines <= CORE_FILE_LINES => problems.push(format!(
                "{rel} is {lines} lines, under {CORE_FILE_LINES} now: remove it from CORE_FILES_TOO_LONG"
            )),
            Some((_, n)) if lines > *n => problems.push(format!(
                "{rel} grew to {lines} lines (listed at {n}): split it by concern instead"
            )),
            None if lines > CORE_FILE_LINES => problems.push(format!(
                "{rel} is {lines} lines (over {CORE_FILE_LINES}): split it by concern"
            )),
            _ => {}
        }
        if allowed.is_some() {
            seen.push(rel);
        }
    }
    for (f, _) in CORE_FILES_TOO_LONG {
        if !seen.iter().any(|s| s == f) {
            problems.push(format!("{f} is gone: remove it from CORE_FILES_TOO_LONG"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue 10: a package changes state only through `Swarm::transition` and a drone's liveness only
/// through `Swarm::set_liveness` (swarm/upkeep.rs), which keep the index in step.
/// `Package::enter` and `Drone::enter` are the raw setters they use (each checks the move against
/// its diagram); test fixtures that build a bare state (after the file's `#[cfg(test)]`) may call
/// them too, nothing else.
#[test]
fn package_and_drone_states_change_only_through_their_transitions() {
    let mut found = Vec::new();
    for (rel, text) in core_sources() {
        let setters = ["swarm/upkeep.rs", "state/package.rs", "state/drone.rs"];
        if setters.contains(&rel.as_str()) || rel.ends_with("tests.rs") {
            continue;
        }
        let code = code_only(&text);
        let tests_from = code.find("#[cfg(test)]").unwrap_or(code.len());
        for (at, _) in code.match_indices(".enter(") {
            if at < tests_from {
                let line = code[..at].lines().count();
                found.push(format!("{rel}:{line}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a package's state or a drone's liveness set outside Swarm::transition or \
         Swarm::set_liveness (use them; they keep the index in step): {}",
        found.join(", ")
    );
}
