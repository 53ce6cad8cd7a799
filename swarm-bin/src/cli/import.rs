//! Parsing the package lists `swarm queue import` accepts: `emerge --pretend`
//! output, a JSON list, or a TOML file. Pure functions from text to validated
//! [`PackageSpec`]s, so every format is tested without a server.
//!
//! `emerge --pretend` prints packages in merge order, which says nothing a
//! scheduler can rely on about which package needs which; so a flat listing
//! gives packages without dependencies. With `--tree`, a line indented deeper
//! than the one above it is a dependency of the nearest shallower line above,
//! and those edges are kept. Portage shows a package's dependencies under one
//! of its appearances only; when it shows them under a package merged elsewhere
//! in the list, it re-displays that package as `[nomerge]`, so `[nomerge]` lines
//! are parents like any other. An edge is kept when both ends are merged
//! somewhere in the list (a `[nomerge]` package that is merged nowhere is
//! installed already). `[binary]` lines carry a build id (`dev-libs/foo-1.0-1`),
//! which names a binary package, not a version: the queued atom is the version.
//! `[blocks]` and `[uninstall]` lines name nothing to build.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use swarm_core::{Atom, PackageSpec};
use swarm_net::wire::{QueueItem, QueueSpec};

/// Which parser reads the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// By file extension, then by content.
    Auto,
    /// `emerge --pretend [--tree]` output.
    Emerge,
    /// A JSON list of atoms or {atom, deps, priority, estimate_s} objects.
    Json,
    /// A TOML file of [[package]] tables.
    Toml,
}

/// Parses `text` in `format`; `name` (a file name or `-`) only guides `Auto`.
pub(crate) fn parse(text: &str, format: Format, name: &str) -> anyhow::Result<Vec<PackageSpec>> {
    // An editor's byte-order mark is no package line nor JSON (h13: "no
    // package lines", "expected value at line 1 column 1").
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Emerge => parse_emerge(text),
        Format::Json => parse_json(text),
        Format::Toml => parse_toml(text),
        Format::Auto => {
            let format = detect(text, name);
            parse(text, format, name)
                .with_context(|| format!("reading {name} as {}", format_name(format)))
        }
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Auto => "auto",
        Format::Emerge => "emerge --pretend output",
        Format::Json => "JSON",
        Format::Toml => "TOML",
    }
}

/// Guesses the format: the extension if it says, else the content. An emerge
/// line also starts with `[`, so JSON is recognised by what follows the
/// bracket.
pub(crate) fn detect(text: &str, name: &str) -> Format {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return Format::Json;
    }
    if lower.ends_with(".toml") {
        return Format::Toml;
    }
    let body = strip_ansi(text);
    if body.lines().any(|l| package_line(l).is_some()) {
        return Format::Emerge;
    }
    let t = body.trim_start();
    let after_bracket = t.strip_prefix('[').map(str::trim_start);
    if t.starts_with('{') || after_bracket.is_some_and(|r| r.starts_with(['"', '{', ']'])) {
        return Format::Json;
    }
    if body.contains("[[package]]") {
        return Format::Toml;
    }
    Format::Emerge
}

/// One `[ebuild ...] cat/pkg-ver...` line: its indentation after the bracket,
/// whether it is merged (else it is a tree node shown for structure), and
/// the `cat/pkg-ver` text as printed (build id included).
#[derive(Debug, PartialEq, Eq)]
struct EmergeLine<'a> {
    indent: usize,
    merged: bool,
    atom: &'a str,
}

fn package_line(line: &str) -> Option<EmergeLine<'_>> {
    let line = line.trim_end();
    let rest = line.trim_start().strip_prefix('[')?;
    let close = rest.find(']')?;
    let (inside, after) = (&rest[..close], &rest[close + 1..]);
    let kind = inside.split_whitespace().next()?;
    let merged = match kind {
        "ebuild" | "binary" => true,
        "nomerge" => false,
        // blocks, uninstall and anything else name no package to build.
        _ => return None,
    };
    let text = after.strip_prefix(' ').unwrap_or(after);
    let indent = text.len() - text.trim_start().len();
    let token = text.split_whitespace().next()?;
    // `cat/pkg-1.0:slot/sub::repo`: a versioned atom already names the slot.
    let atom = token.split(':').next().unwrap_or(token);
    atom.contains('/').then_some(EmergeLine {
        indent,
        merged,
        atom,
    })
}

/// The exact atom of a package line: `=cat/pkg-ver`, without the build id a
/// `[binary]` line shows.
fn line_atom(text: &str) -> anyhow::Result<Atom> {
    let atom = Atom::parse(text)?;
    anyhow::ensure!(
        atom.version().is_some(),
        "{text:?} has no version: emerge prints cat/pkg-version on every package line"
    );
    Ok(Atom::parse(&format!("={}", atom.cpv()))?)
}

/// Removes colour escapes (`emerge --color y`, or output pasted from a
/// terminal).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `emerge --pretend [--verbose] [--tree] [--emptytree] [--color y]` output.
pub(crate) fn parse_emerge(text: &str) -> anyhow::Result<Vec<PackageSpec>> {
    let text = strip_ansi(text);
    let mut list = Specs::default();
    // (indent, atom) of the open tree branch, [nomerge] nodes included.
    let mut stack: Vec<(usize, Atom)> = Vec::new();
    let mut edges: Vec<(Atom, Atom)> = Vec::new();
    let mut seen_any = false;
    for (i, raw) in text.lines().enumerate() {
        let Some(line) = package_line(raw) else {
            continue;
        };
        seen_any = true;
        let atom = line_atom(line.atom).with_context(|| format!("line {}", i + 1))?;
        while stack.last().is_some_and(|(ind, _)| *ind >= line.indent) {
            stack.pop();
        }
        if let Some((_, parent)) = stack.last() {
            edges.push((parent.clone(), atom.clone()));
        }
        if line.merged {
            list.add(PackageSpec::new(atom.clone()));
        }
        stack.push((line.indent, atom));
    }
    anyhow::ensure!(
        seen_any,
        "no package lines: expected `[ebuild  N     ] cat/pkg-1.0` lines as `emerge --pretend` prints them"
    );
    for (parent, child) in edges {
        if list.by_key.contains_key(&(child.clone(), None)) {
            list.add_dep(&parent, child);
        }
    }
    list.finish()
}

/// An entry of a JSON or TOML list: the queue endpoint's own item shape.
type Entry = QueueItem;

/// The JSON body form, `{"packages": [...]}` as `POST /api/v1/queue` takes
/// it, with the request's `profile` for the packages that name none. Any
/// other key is refused: `"Profile"` was ignored and the packages went to
/// the default profile (h15).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    packages: Vec<serde_json::Value>,
    #[serde(default)]
    profile: Option<String>,
}

fn entry(value: serde_json::Value, index: usize) -> anyhow::Result<Entry> {
    // Untagged enums hide the inner error, so an object is parsed on its own
    // to name the offending field.
    if value.is_object() {
        return serde_json::from_value::<QueueSpec>(value)
            .map(QueueItem::Spec)
            .with_context(|| format!("package #{}", index + 1));
    }
    serde_json::from_value::<Entry>(value).with_context(|| {
        format!(
            "package #{}: expected an atom string or an object with atom, deps, priority, estimate_s",
            index + 1
        )
    })
}

/// `["=cat/a-1", {"atom": "=cat/b-2", "deps": ["=cat/a-1"], "priority": 5, "estimate_s": 600}]`.
pub(crate) fn parse_json(text: &str) -> anyhow::Result<Vec<PackageSpec>> {
    const SHAPE: &str = "expected a JSON list of packages, or {\"packages\": [...]}";
    let doc: serde_json::Value = serde_json::from_str(text).context(SHAPE)?;
    let (values, profile) = match doc {
        serde_json::Value::Array(values) => (values, None),
        body @ serde_json::Value::Object(_) => {
            let b: JsonBody = serde_json::from_value(body).context(SHAPE)?;
            (b.packages, b.profile)
        }
        _ => anyhow::bail!(SHAPE),
    };
    let entries = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| entry(v, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    from_entries(entries, profile.as_deref())
}

/// A TOML list: `[[package]]` tables, and the keys of the demo's world
/// sample (`swarm-bin/data/world-sample.toml`) so that file imports as is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDoc {
    /// The list's name (the world sample has one); not sent.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    /// The demo's stand-in failures; meaningless to a real server, ignored.
    #[serde(default)]
    #[allow(dead_code)]
    fail: Vec<String>,
    /// The demo's stand-in OOMs; ignored likewise.
    #[serde(default)]
    #[allow(dead_code)]
    oom: Vec<String>,
    #[serde(default)]
    package: Vec<TomlPackage>,
}

/// One `[[package]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPackage {
    atom: String,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    estimate_s: Option<u64>,
    /// The world sample's size hint: seconds to build on an 8-core drone,
    /// taken as the estimate when `estimate_s` is not given.
    #[serde(default)]
    size_s: Option<u64>,
    /// The profile it is built for (default: the default profile).
    #[serde(default)]
    profile: Option<String>,
}

/// `[[package]]` tables with `atom`, and optionally `deps`, `priority`,
/// `estimate_s` (or the world sample's `size_s`).
pub(crate) fn parse_toml(text: &str) -> anyhow::Result<Vec<PackageSpec>> {
    let doc: TomlDoc = toml::from_str(text).context("expected [[package]] tables")?;
    anyhow::ensure!(
        !doc.package.is_empty(),
        "no [[package]] tables: write `[[package]]` then `atom = \"cat/pkg-1.0\"`"
    );
    from_entries(
        doc.package
            .into_iter()
            .map(|p| {
                QueueItem::Spec(QueueSpec {
                    atom: p.atom,
                    deps: p.deps,
                    priority: p.priority,
                    estimate_s: p.estimate_s.or(p.size_s),
                    profile: p.profile,
                })
            })
            .collect(),
        None,
    )
}

/// The list's packages; `profile` is the one of those that name none (a
/// JSON body's own).
fn from_entries(entries: Vec<Entry>, profile: Option<&str>) -> anyhow::Result<Vec<PackageSpec>> {
    let mut list = Specs::default();
    for (i, e) in entries.into_iter().enumerate() {
        let at = || format!("package #{}", i + 1);
        let spec = match e {
            QueueItem::Atom(a) => PackageSpec {
                profile: profile.map(str::to_owned),
                ..PackageSpec::new(Atom::parse(&a).with_context(at)?)
            },
            QueueItem::Spec(f) => PackageSpec {
                atom: Atom::parse(&f.atom).with_context(at)?,
                deps: f
                    .deps
                    .iter()
                    .map(|d| Atom::parse(d).with_context(|| format!("{}: deps", at())))
                    .collect::<anyhow::Result<_>>()?,
                priority: f.priority,
                estimate_s: f.estimate_s,
                // Dropped before: the package went to the default profile
                // unsaid (h13).
                profile: f.profile.or_else(|| profile.map(str::to_owned)),
            },
        };
        list.add(spec);
    }
    list.finish()
}

/// Packages in first-seen order; a package listed twice is merged (deps
/// united, the higher priority and the known estimate kept). One atom for two
/// profiles is two packages, as in the queue.
#[derive(Default)]
struct Specs {
    order: Vec<SpecKey>,
    by_key: BTreeMap<SpecKey, PackageSpec>,
}

/// A package of the list: its atom and its profile (`None`: the default).
type SpecKey = (Atom, Option<String>);

impl Specs {
    fn add(&mut self, spec: PackageSpec) {
        let key = (spec.atom.clone(), spec.profile.clone());
        match self.by_key.get_mut(&key) {
            Some(have) => {
                for d in spec.deps {
                    if !have.deps.contains(&d) {
                        have.deps.push(d);
                    }
                }
                have.priority = have.priority.max(spec.priority);
                have.estimate_s = have.estimate_s.or(spec.estimate_s);
            }
            None => {
                self.order.push(key.clone());
                self.by_key.insert(key, spec);
            }
        }
    }

    /// A dependency found in an emerge tree, whose packages name no profile.
    fn add_dep(&mut self, of: &Atom, dep: Atom) {
        if let Some(p) = self.by_key.get_mut(&(of.clone(), None)) {
            if !p.deps.contains(&dep) && *of != dep {
                p.deps.push(dep);
            }
        }
    }

    fn finish(mut self) -> anyhow::Result<Vec<PackageSpec>> {
        anyhow::ensure!(!self.order.is_empty(), "the list is empty");
        Ok(self
            .order
            .iter()
            .filter_map(|k| self.by_key.remove(k))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demos_world_sample_imports_as_is() {
        let text = include_str!("../../data/world-sample.toml");
        let specs = parse(text, Format::Auto, "world-sample.toml").expect("accepted");
        assert!(specs.len() > 100, "{}", specs.len());
        assert!(specs.iter().any(|s| !s.deps.is_empty()));
        assert!(specs.iter().all(|s| s.estimate_s.is_some()));
    }

    fn atoms(specs: &[PackageSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.atom.as_str()).collect()
    }

    fn deps_of<'a>(specs: &'a [PackageSpec], atom: &str) -> Vec<&'a str> {
        specs
            .iter()
            .find(|s| s.atom.as_str() == atom)
            .map(|s| s.deps.iter().map(Atom::as_str).collect())
            .unwrap_or_default()
    }

    /// `emerge --pretend --verbose app-editors/vim` on an amd64 desktop.
    const PRETEND: &str = r#"
These are the packages that would be merged, in order:

Calculating dependencies... done!
Dependency resolution took 1.84 s (backtrack: 0/20).

[ebuild  N     ] dev-libs/libsodium-1.0.19:0/26::gentoo  USE="asm urandom -minimal -static-libs -verify-sig" CPU_FLAGS_X86="aes sse4_1" 1,909 KiB
[ebuild     U  ] sys-libs/zlib-1.3.1-r1:0/1::gentoo [1.3-r4:0/1::gentoo] USE="minizip -static-libs -verify-sig" 1,257 KiB
[binary   R    ] dev-lang/python-3.12.3:3.12::gentoo  USE="ensurepip gdbm ncurses readline sqlite ssl -bluetooth -build -debug -examples -libedit -pgo -test -tk -valgrind -verify-sig" 0 KiB
[ebuild  NS    ] dev-lang/lua-5.4.6:5.4::gentoo [5.1.5-r200:5.1::gentoo] USE="deprecated -readline" 0 KiB
[ebuild  N     ] app-vim/gentoo-syntax-20240228::gentoo  USE="-ignore-glep31" 19 KiB
[ebuild  N     ] app-editors/vim-core-9.1.0148::gentoo  USE="acl nls -minimal" 17,503 KiB
[ebuild  N     ] app-editors/vim-9.1.0148::gentoo  USE="acl crypt gpm nls python -X -cscope -debug -lua -minimal -perl -racket -ruby (-selinux) -sound -tcl -terminal -vim-pager" PYTHON_SINGLE_TARGET="python3_12 -python3_11" 0 KiB
[blocks b      ] <app-editors/vim-core-9.0 ("<app-editors/vim-core-9.0" is soft blocking app-editors/gvim-9.1.0148)
[uninstall     ] app-misc/old-thing-1.0::gentoo

Total: 7 packages (1 upgrade, 4 new, 1 in new slot, 1 reinstall, 1 binary), Size of downloads: 20,688 KiB

 * IMPORTANT: 3 news items need reading for repository 'gentoo'.
"#;

    #[test]
    fn a_flat_pretend_listing_gives_every_package_without_deps() {
        let specs = parse_emerge(PRETEND).expect("parses");
        assert_eq!(
            atoms(&specs),
            [
                "=dev-libs/libsodium-1.0.19",
                "=sys-libs/zlib-1.3.1-r1",
                "=dev-lang/python-3.12.3",
                "=dev-lang/lua-5.4.6",
                "=app-vim/gentoo-syntax-20240228",
                "=app-editors/vim-core-9.1.0148",
                "=app-editors/vim-9.1.0148",
            ]
        );
        assert!(specs.iter().all(|s| s.deps.is_empty()));
        assert_eq!(detect(PRETEND, "-"), Format::Emerge);
    }

    /// `emerge --pretend --tree app-editors/vim`, with a parent already
    /// installed (`nomerge`) and colour left on.
    const TREE: &str = "\
[ebuild  N     ] app-editors/vim-9.1.0148::gentoo  USE=\"acl nls\"
[ebuild  N     ]  app-editors/vim-core-9.1.0148::gentoo  USE=\"acl nls\"
[ebuild  N     ]   app-vim/gentoo-syntax-20240228::gentoo
[ebuild  N     ]  dev-libs/libsodium-1.0.19:0/26::gentoo
[nomerge       ]  dev-lang/python-3.12.3:3.12::gentoo
\u{1b}[32;01m[ebuild     U  ]\u{1b}[0m   \u{1b}[32;01msys-libs/zlib-1.3.1-r1:0/1::gentoo\u{1b}[0m
[ebuild  N     ] app-misc/tmux-3.4::gentoo
";

    #[test]
    fn tree_indentation_makes_a_line_a_dependency_of_the_shallower_one_above() {
        let specs = parse_emerge(TREE).expect("parses");
        assert_eq!(
            atoms(&specs),
            [
                "=app-editors/vim-9.1.0148",
                "=app-editors/vim-core-9.1.0148",
                "=app-vim/gentoo-syntax-20240228",
                "=dev-libs/libsodium-1.0.19",
                "=sys-libs/zlib-1.3.1-r1",
                "=app-misc/tmux-3.4",
            ]
        );
        assert_eq!(
            deps_of(&specs, "=app-editors/vim-9.1.0148"),
            [
                "=app-editors/vim-core-9.1.0148",
                "=dev-libs/libsodium-1.0.19"
            ]
        );
        assert_eq!(
            deps_of(&specs, "=app-editors/vim-core-9.1.0148"),
            ["=app-vim/gentoo-syntax-20240228"]
        );
        // zlib sits under python, which is installed already: no edge to anything queued.
        assert!(deps_of(&specs, "=sys-libs/zlib-1.3.1-r1").is_empty());
        assert!(deps_of(&specs, "=app-misc/tmux-3.4").is_empty());
        assert_eq!(detect(TREE, "-"), Format::Emerge);
    }

    /// Real `emerge --pretend --tree` outputs over the fixture repository, printed by
    /// tests/portage/emerge-outputs.sh (a CI test prints them again and compares).
    const REAL: [(&str, &str); 4] = [
        (
            "tree.txt",
            include_str!("../../../tests/portage/emerge/tree.txt"),
        ),
        (
            "tree-verbose.txt",
            include_str!("../../../tests/portage/emerge/tree-verbose.txt"),
        ),
        (
            "tree-color.txt",
            include_str!("../../../tests/portage/emerge/tree-color.txt"),
        ),
        (
            "tree-binary.txt",
            include_str!("../../../tests/portage/emerge/tree-binary.txt"),
        ),
    ];

    /// Every edge the trees above display, read off them by hand (the ebuilds agree). The
    /// binary run does not show plugin's dependency on plugin-host (plugin is a binary there).
    const DISPLAYED: [(&str, &str); 13] = [
        ("=app-misc/daemon-0.9", "=acct-user/builder-0"),
        ("=app-misc/daemon-0.9", "=dev-lang/lang-2.0"),
        ("=app-misc/daemon-0.9", "=virtual/libcrypt-2"),
        ("=app-misc/hello-1.0", "=dev-libs/libbar-2.1"),
        ("=app-misc/hello-1.0", "=dev-libs/libssl-3.0.1"),
        ("=app-misc/hello-1.0", "=dev-util/buildtool-1.0"),
        ("=app-misc/plugin-1.0", "=app-misc/plugin-host-1.0"),
        ("=app-misc/plugin-host-1.0", "=app-misc/plugin-1.0"),
        ("=acct-user/builder-0", "=acct-group/builder-0"),
        ("=dev-libs/circ-a-1.0", "=dev-libs/circ-b-1.0"),
        ("=dev-libs/circ-b-1.0", "=dev-libs/circ-a-1.0"),
        ("=virtual/libcrypt-2", "=sys-libs/libxcrypt-4.4.36"),
        ("=x11-libs/gtk+-3.24.43", "=dev-libs/libfoo-1.2"),
    ];

    fn edges(specs: &[PackageSpec]) -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = specs
            .iter()
            .flat_map(|s| s.deps.iter().map(|d| (s.atom.to_string(), d.to_string())))
            .collect();
        e.sort();
        e
    }

    #[test]
    fn every_edge_a_real_emerge_tree_displays_is_recovered() {
        for (name, text) in REAL {
            let binary = name == "tree-binary.txt";
            let mut want: Vec<(String, String)> = DISPLAYED
                .iter()
                .filter(|(a, _)| !(binary && *a == "=app-misc/plugin-1.0"))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            want.sort();
            assert_eq!(detect(text, "-"), Format::Emerge, "{name}");
            let specs = parse_emerge(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let got = edges(&specs);
            println!(
                "{name}: {} of {} displayed edges recovered",
                got.len(),
                want.len()
            );
            assert_eq!(got, want, "{name}");
            // 17 packages; the binary run adds app-misc/modern (and a blocker, which is not one).
            assert_eq!(
                specs.len(),
                if binary { 18 } else { 17 },
                "{name}: {:?}",
                atoms(&specs)
            );
            for spec in &specs {
                assert!(spec.atom.build_id().is_none(), "{name}: {}", spec.atom);
                assert!(spec.atom.is_exact(), "{name}: {}", spec.atom);
            }
        }
    }

    #[test]
    fn binary_lines_queue_the_version_not_the_build_id() {
        let specs = parse_emerge(REAL[3].1).expect("parses");
        let all = atoms(&specs);
        assert!(all.contains(&"=dev-libs/libfoo-1.2"), "{all:?}");
        assert!(all.contains(&"=app-misc/plugin-host-1.0"), "{all:?}");
        assert!(!all.iter().any(|a| a.contains("legacy")), "{all:?}");
    }

    #[test]
    fn text_without_package_lines_is_refused_with_the_expected_shape() {
        let err = parse_emerge("Calculating dependencies... done!\n").expect_err("nothing");
        assert!(err.to_string().contains("[ebuild"), "{err}");
    }

    #[test]
    fn a_bad_atom_names_its_line() {
        let err = parse_emerge("\n[ebuild  N     ] not/an/atom-1.0::gentoo\n").expect_err("bad");
        assert_eq!(err.to_string(), "line 2");
        assert!(format!("{err:#}").contains("not/an/atom-1.0"), "{err:#}");
    }

    #[test]
    fn a_json_list_takes_strings_and_objects() {
        let text = r#"["dev-libs/a-1.0",
            {"atom": "dev-libs/b-2.0", "deps": ["dev-libs/a-1.0"], "priority": 5, "estimate_s": 600}]"#;
        assert_eq!(detect(text, "-"), Format::Json);
        let specs = parse(text, Format::Auto, "-").expect("parses");
        assert_eq!(atoms(&specs), ["=dev-libs/a-1.0", "=dev-libs/b-2.0"]);
        assert_eq!(deps_of(&specs, "=dev-libs/b-2.0"), ["=dev-libs/a-1.0"]);
        assert_eq!(specs[1].priority, 5);
        assert_eq!(specs[1].estimate_s, Some(600));
        let body = r#"{"packages": ["dev-libs/a-1.0"]}"#;
        assert_eq!(
            atoms(&parse_json(body).expect("body form")),
            ["=dev-libs/a-1.0"]
        );
    }

    #[test]
    fn a_json_entry_with_an_unknown_field_is_named() {
        let err = parse_json(r#"["a/b-1", {"atom": "a/c-1", "dependencies": []}]"#)
            .expect_err("unknown field");
        let text = format!("{err:#}");
        assert!(text.contains("package #2"), "{text}");
        assert!(text.contains("dependencies"), "{text}");
    }

    #[test]
    fn a_json_body_with_a_key_it_does_not_take_is_refused() {
        let e = parse_json(r#"{"packages": ["a/x-1"], "Profile": "desktop"}"#)
            .expect_err("an unknown key");
        assert!(
            format!("{e:#}").contains("unknown field `Profile`"),
            "{e:#}"
        );
        let e = parse_json("42").expect_err("no list");
        assert!(format!("{e:#}").contains("expected a JSON list"), "{e:#}");
    }

    #[test]
    fn a_byte_order_mark_is_no_part_of_the_list() {
        for (text, name) in [
            ("\u{feff}[ebuild  N     ] dev-libs/a-1.0\n", "world.txt"),
            ("\u{feff}[\"dev-libs/a-1.0\"]", "list.json"),
            (
                "\u{feff}[[package]]\natom = \"dev-libs/a-1.0\"\n",
                "list.toml",
            ),
        ] {
            let specs = parse(text, Format::Auto, name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(atoms(&specs), ["=dev-libs/a-1.0"], "{name}");
        }
    }

    #[test]
    fn a_package_keeps_the_profile_its_list_names() {
        let profiles = |specs: &[PackageSpec]| -> Vec<(String, Option<String>)> {
            specs
                .iter()
                .map(|s| (s.atom.as_str().to_owned(), s.profile.clone()))
                .collect()
        };
        let some = |p: &str| Some(p.to_owned());
        // Each entry's own, else the body's; one atom for two profiles is two packages.
        let body = r#"{"profile": "desktop", "packages": ["a/x-1",
            {"atom": "a/y-1", "profile": "server"}, {"atom": "a/x-1", "profile": "server"},
            {"atom": "a/z-1"}]}"#;
        assert_eq!(
            profiles(&parse_json(body).expect("body")),
            [
                ("=a/x-1".to_owned(), some("desktop")),
                ("=a/y-1".to_owned(), some("server")),
                ("=a/x-1".to_owned(), some("server")),
                ("=a/z-1".to_owned(), some("desktop")),
            ]
        );
        let list = r#"[{"atom": "a/x-1", "profile": "desktop"}, "a/x-1"]"#;
        assert_eq!(
            profiles(&parse_json(list).expect("list")),
            [
                ("=a/x-1".to_owned(), some("desktop")),
                ("=a/x-1".to_owned(), None)
            ]
        );
        let toml = "[[package]]\natom = \"a/x-1\"\nprofile = \"desktop\"\n";
        assert_eq!(
            profiles(&parse_toml(toml).expect("toml")),
            [("=a/x-1".to_owned(), some("desktop"))]
        );
    }

    #[test]
    fn a_toml_file_lists_packages_as_tables() {
        let text = r#"
[[package]]
atom = "dev-libs/a-1.0"

[[package]]
atom = "dev-libs/b-2.0"
deps = ["dev-libs/a-1.0"]
priority = -1
"#;
        assert_eq!(detect(text, "queue.txt"), Format::Toml);
        let specs = parse(text, Format::Auto, "queue.txt").expect("parses");
        assert_eq!(deps_of(&specs, "=dev-libs/b-2.0"), ["=dev-libs/a-1.0"]);
        assert_eq!(specs[1].priority, -1);
        let err = parse_toml("[[package]]\natom = \"a/b-1\"\nprio = 3\n").expect_err("typo");
        assert!(format!("{err:#}").contains("prio"), "{err:#}");
    }

    #[test]
    fn the_extension_wins_over_the_content() {
        assert_eq!(detect("[[package]]", "x.json"), Format::Json);
        assert_eq!(detect("[\"a/b-1\"]", "x.toml"), Format::Toml);
    }

    #[test]
    fn a_package_listed_twice_is_queued_once_with_both_deps() {
        let specs = parse_json(
            r#"[{"atom":"a/x-1","deps":["a/y-1"]},{"atom":"a/x-1","deps":["a/z-1"],"priority":2}]"#,
        )
        .expect("parses");
        assert_eq!(specs.len(), 1);
        assert_eq!(deps_of(&specs, "=a/x-1"), ["=a/y-1", "=a/z-1"]);
        assert_eq!(specs[0].priority, 2);
    }
}
