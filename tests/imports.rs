//! Tidy: the files of each crate import each other without cycles (STYLE.md; issue 10).
//!
//! A cycle between files means neither can be read, tested or moved alone. Each crate's files are
//! read as modules (`a/b.rs` and `a/b/mod.rs` are `a::b`); an edge `A -> B` is a path in A's code
//! (comments, literals and `#[cfg(test)]` modules blanked) that names module B or an item defined in
//! B's file: `crate::…`, `super::…`, `self::…`, and in a `mod.rs`/`lib.rs`/`main.rs` a child
//! module's name. `use` groups are expanded. A re-export seen through a parent (`super::Item` where
//! the parent only re-exports `Item`) is not an edge to the parent. Every strongly connected group
//! of more than one file fails the test, unless it is listed in [`KNOWN`]; a listed group that is
//! gone fails too, so the list only shrinks.

mod source;

use source::{code_only, rs_files};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Cycles not yet broken, as `crate: module, module, …` (sorted). Remove a line when its cycle is
/// gone; never add one.
const KNOWN: &[&str] = &[];

const CRATES: &[&str] = &["swarm-core", "swarm-store", "swarm-net", "swarm-bin"];

type Module = Vec<String>;

/// A crate's files: module path -> (is a `mod.rs`/`lib.rs`/`main.rs`, code without tests).
type Files = BTreeMap<Module, (bool, String)>;

fn module_of(src_dir: &Path, file: &Path) -> (Module, bool) {
    let rel = file
        .strip_prefix(src_dir)
        .unwrap_or(file)
        .with_extension("");
    let mut parts: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let is_dir = matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    );
    if is_dir {
        parts.pop();
    }
    (parts, is_dir)
}

/// `code` with every `#[cfg(test)]`-gated inline module blanked.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|k| k + from) {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let item = rest.trim_start();
        let gated_mod = item.starts_with("mod ") || item.starts_with("pub(crate) mod ");
        let brace = rest.find('{');
        let semi = rest.find(';');
        from = at + 1;
        if !gated_mod || brace.is_none() || semi.is_some_and(|s| Some(s) < brace) {
            continue;
        }
        let open = at + "#[cfg(test)]".len() + brace.unwrap_or(0);
        let mut depth = 0i64;
        let mut end = out.len();
        for (k, ch) in out[open..].char_indices() {
            depth += i64::from(ch == '{') - i64::from(ch == '}');
            if depth == 0 {
                end = open + k + 1;
                break;
            }
        }
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blank);
    }
    out
}

fn read_crate(root: &Path, krate: &str) -> Files {
    let src_dir = root.join(krate).join("src");
    let mut paths = Vec::new();
    rs_files(&src_dir, &mut paths);
    assert!(!paths.is_empty(), "no sources in {}", src_dir.display());
    paths
        .iter()
        .map(|p| {
            let (module, is_dir) = module_of(&src_dir, p);
            let src = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (module, (is_dir, without_test_modules(&code_only(&src))))
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    End,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(c[start..i].iter().collect()));
            continue;
        }
        out.push(match ch {
            ':' if c.get(i + 1) == Some(&':') => {
                i += 1;
                Token::Path
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            ';' => Token::End,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            _ => Token::Other,
        });
        i += 1;
    }
    out
}

/// Expands the use tree starting at `t[*i]` under `prefix` into full paths.
fn use_tree(t: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<Module>) {
    let mut path = prefix.to_vec();
    loop {
        match t.get(*i) {
            Some(Token::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if t.get(*i) == Some(&Token::Path) {
                    *i += 1;
                    continue;
                }
                out.push(path);
                // `as name` and the like: skip to the end of this item.
                while !matches!(
                    t.get(*i),
                    None | Some(Token::Comma | Token::Close | Token::End)
                ) {
                    *i += 1;
                }
                return;
            }
            Some(Token::Open) => {
                *i += 1;
                loop {
                    match t.get(*i) {
                        None | Some(Token::End) => return,
                        Some(Token::Close) => {
                            *i += 1;
                            return;
                        }
                        Some(Token::Comma) => *i += 1,
                        _ => use_tree(t, i, &path, out),
                    }
                }
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every path the code names: use trees expanded, and `a::b::c` chains elsewhere.
fn paths(code: &str) -> Vec<Module> {
    let t = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let after_path = i > 0 && t[i - 1] == Token::Path;
        match &t[i] {
            Token::Ident(s) if s == "use" && !after_path => {
                i += 1;
                use_tree(&t, &mut i, &[], &mut out);
            }
            Token::Ident(_) if !after_path => {
                let mut path = Vec::new();
                while let Some(Token::Ident(s)) = t.get(i) {
                    path.push(s.clone());
                    if t.get(i + 1) != Some(&Token::Path) {
                        break;
                    }
                    i += 2;
                }
                if path.len() > 1 {
                    out.push(path);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether `code` defines an item called `name` at any depth (textual, errs towards yes).
fn defines(code: &str, name: &str) -> bool {
    let t = tokens(code);
    let kinds = [
        "fn", "struct", "enum", "const", "type", "trait", "static", "union",
    ];
    t.windows(2).any(|w| match (&w[0], &w[1]) {
        (Token::Ident(k), Token::Ident(n)) => n == name && kinds.contains(&k.as_str()),
        _ => false,
    }) || code.contains(&format!("macro_rules! {name}"))
}

/// The module each file's paths lead to, per file.
fn edges(files: &Files) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (module, (is_dir, code)) in files {
        let mut to = BTreeSet::new();
        for path in paths(code) {
            let (mut base, rest): (Module, &[String]) = match path[0].as_str() {
                "crate" => (Vec::new(), &path[1..]),
                "self" => (module.clone(), &path[1..]),
                "super" => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    let keep = module.len().saturating_sub(ups);
                    (module[..keep].to_vec(), &path[ups..])
                }
                _ if *is_dir => (module.clone(), &path[..]),
                _ => continue,
            };
            let start = base.len();
            base.extend(rest.iter().cloned());
            // The longest prefix that is a file of this crate.
            let Some(k) = (start..=base.len())
                .rev()
                .find(|&k| k > 0 && files.contains_key(&base[..k]))
            else {
                continue;
            };
            let target = base[..k].to_vec();
            if target == *module {
                continue;
            }
            let named_item = base.get(k);
            let counts = match named_item {
                None => true,
                Some(item) => defines(&files[&target].1, item),
            };
            if counts {
                to.insert(target);
            }
        }
        graph.insert(module.clone(), to);
    }
    graph
}

/// Strongly connected groups of more than one module (Tarjan, iterative enough for our depth).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

fn describe(krate: &str, group: &[Module]) -> String {
    let names: Vec<String> = group.iter().map(|m| m.join("::")).collect();
    format!("{krate}: {}", names.join(", "))
}

/// One line on a crate's graph for `--nocapture` runs (and the closing notes that cite it):
/// files, imports between them, and the longest chain of imports when there is no cycle.
fn summary(krate: &str, graph: &BTreeMap<Module, BTreeSet<Module>>) -> String {
    fn depth<'g>(
        v: &'g Module,
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        memo: &mut BTreeMap<&'g Module, usize>,
        path: &mut BTreeSet<&'g Module>,
    ) -> Option<usize> {
        if let Some(d) = memo.get(v) {
            return Some(*d);
        }
        if !path.insert(v) {
            return None;
        }
        let mut best = 0;
        for w in graph.get(v).into_iter().flatten() {
            best = best.max(1 + depth(w, graph, memo, path)?);
        }
        path.remove(v);
        memo.insert(v, best);
        Some(best)
    }
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    let mut memo = BTreeMap::new();
    let longest = graph
        .keys()
        .map(|v| depth(v, graph, &mut memo, &mut BTreeSet::new()))
        .try_fold(0, |m, d| d.map(|d| m.max(d)));
    let chain = longest.map_or("a cycle".to_owned(), |d| format!("{d} imports"));
    format!(
        "{krate}: {} files, {edges} imports between them, longest chain {chain}",
        graph.len()
    )
}

#[test]
fn no_files_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = BTreeSet::new();
    let mut detail = Vec::new();
    for krate in CRATES {
        let files = read_crate(&root, krate);
        let graph = edges(&files);
        eprintln!("{}", summary(krate, &graph));
        if std::env::var_os("SWARM_PRINT_IMPORTS").is_some() {
            for (a, bs) in &graph {
                let to: Vec<String> = bs.iter().map(|b| b.join("::")).collect();
                eprintln!("  {} -> {}", a.join("::"), to.join(", "));
            }
        }
        for group in cycles(&graph) {
            let line = describe(krate, &group);
            let links: Vec<String> = group
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| group.contains(b))
                        .map(move |b| format!("{} -> {}", a.join("::"), b.join("::")))
                })
                .collect();
            detail.push(format!("{line}\n    {}", links.join("\n    ")));
            found.insert(line);
        }
    }
    let known: BTreeSet<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<&String> = found.difference(&known).collect();
    let gone: Vec<&String> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "files that import each other (break the cycle: move what both need into a leaf module):\n{}\n\nall cycles with their links:\n{}",
        new.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n"),
        detail.join("\n")
    );
    assert!(
        gone.is_empty(),
        "these cycles are gone: remove them from KNOWN in tests/imports.rs:\n{}",
        gone.iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn fake_crate(files: &[(&str, bool, &str)]) -> Files {
    files
        .iter()
        .map(|(m, is_dir, src)| {
            let module: Module = m
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            (module, (*is_dir, without_test_modules(&code_only(src))))
        })
        .collect()
}

#[test]
fn the_import_check_finds_cycles_and_ignores_what_is_not_one() {
    let cyclic = fake_crate(&[
        ("", true, "mod a; mod b; mod c;"),
        ("a", false, "use crate::b::{self, Thing};\nfn f() {}"),
        ("b", false, "pub struct Thing;\nfn g() { super::c::h() }"),
        ("c", false, "pub fn h() { crate::a::f() }"),
    ]);
    let groups = cycles(&edges(&cyclic));
    assert_eq!(describe("x", &groups[0]), "x: a, b, c");

    let fine = fake_crate(&[
        ("", true, "mod a; mod b;"),
        // A parent that re-exports its child, and a child naming the re-export through it.
        ("p", true, "mod kid;\npub use kid::Thing;\npub fn helper() {}"),
        ("p::kid", false, "pub struct Thing;\nfn f() -> super::Thing { todo!() }"),
        // Mentions in comments, literals and test modules are not imports.
        (
            "a",
            false,
            "// crate::b::g\nfn f() { let s = \"crate::b::g\"; }\n#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}",
        ),
        ("b", false, "pub fn g() { crate::a::f() }"),
    ]);
    assert!(cycles(&edges(&fine)).is_empty(), "{:?}", edges(&fine));

    // A child that calls an item defined in its parent, which uses the child: a cycle.
    let parent_child = fake_crate(&[
        ("", true, "mod p;"),
        ("p", true, "mod kid;\nuse kid::run;\npub fn helper() {}"),
        ("p::kid", false, "pub fn run() { super::helper() }"),
    ]);
    assert_eq!(
        describe("x", &cycles(&edges(&parent_child))[0]),
        "x: p, p::kid"
    );
}
