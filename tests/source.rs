//! Reading Rust sources for the repository-wide checks (tidy.rs, imports.rs): textual, not a
//! parser, so the checks stay fast and dependency-free.

use std::fs;
use std::path::{Path, PathBuf};

/// `src` with comments and the contents of string and char literals replaced by spaces, so that
/// lines and columns still match.
pub(crate) fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let ident = |k: usize| k < c.len() && (c[k].is_alphanumeric() || c[k] == '_');
    // Index just past the `quote` that closes a literal whose body starts at `k`.
    let close = |mut k: usize, quote: char| {
        while k < c.len() && c[k] != quote {
            k += if c[k] == '\\' { 2 } else { 1 };
        }
        k + 1
    };
    let (mut out, mut i) = (String::with_capacity(src.len()), 0);
    while i < c.len() {
        let hashes = (i + 1..c.len()).take_while(|&k| c[k] == '#').count();
        let raw = at(i) == 'r' && at(i + 1 + hashes) == '"';
        let end = if at(i) == '/' && at(i + 1) == '/' {
            (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len())
        } else if at(i) == '/' && at(i + 1) == '*' {
            let (mut k, mut depth) = (i + 2, 1);
            while k < c.len() && depth > 0 {
                let step = match (c[k], at(k + 1)) {
                    ('/', '*') => 1,
                    ('*', '/') => -1,
                    _ => 0,
                };
                depth += step;
                k += if step == 0 { 1 } else { 2 };
            }
            k
        } else if raw
            && (i == 0 || !ident(i - 1) || (at(i - 1) == 'b' && !ident(i.wrapping_sub(2))))
        {
            let mut k = i + 2 + hashes;
            while k < c.len() && !(c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#')) {
                k += 1;
            }
            k + 1 + hashes
        } else if at(i) == '"' {
            close(i + 1, '"')
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            close(i + 1, '\'')
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        out.extend(
            c[i..end]
                .iter()
                .map(|&ch| if ch == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// Every `.rs` file under `dir`, sorted, so reports are stable.
pub(crate) fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}
