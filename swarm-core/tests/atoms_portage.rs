//! `Atom` against Portage's own verdicts (tests/portage/atoms.tsv, made by tests/portage/atoms.py
//! with the real Portage): every atom emerge accepts as a target is accepted, as given, with
//! Portage's cp, cpv and build id; every atom it refuses is refused, except the two forms v3's
//! normalisation adds (`cat/pkg-1.0` → `=cat/pkg-1.0`, `=cat/pkg` → `cat/pkg`), which must come
//! out as the form Portage accepts. And `Atom::admits` against Portage's `match_from_list`
//! (tests/portage/matches.tsv, made by tests/portage/matches.py): which versions an operator admits.

use std::collections::BTreeMap;
use std::path::Path;
use swarm_core::Atom;

struct Verdict {
    ok: bool,
    cp: String,
    cpv: String,
    build_id: Option<String>,
}

fn fixture() -> Vec<(String, Verdict)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/portage/atoms.tsv");
    let text = std::fs::read_to_string(path).expect("tests/portage/atoms.tsv is readable");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "malformed fixture line {line:?}");
            let v = Verdict {
                ok: f[1] == "ok",
                cp: f[2].to_owned(),
                cpv: f[3].to_owned(),
                build_id: (f[4] != "-").then(|| f[4].to_owned()),
            };
            (f[0].to_owned(), v)
        })
        .collect()
}

/// What swarm must make of `input`: the accepted form and its verdict, or `None` (refused).
fn expected<'a>(
    input: &str,
    by_atom: &'a BTreeMap<&str, &Verdict>,
) -> Option<(String, &'a Verdict)> {
    let accepted = |a: &str| by_atom.get(a).filter(|v| v.ok).copied();
    let input = input.trim();
    if input.len() > Atom::MAX_LEN {
        return None;
    }
    if let Some(v) = accepted(input) {
        return Some((input.to_owned(), v));
    }
    if !input.starts_with(['=', '<', '>', '~', '!']) {
        let with_eq = format!("={input}");
        return accepted(&with_eq).map(|v| (with_eq, v));
    }
    let rest = input.strip_prefix('=')?;
    let v = accepted(rest)?;
    // The v3 rule drops `=` only before a name that does not end like a version.
    let pn = v.cp.rsplit('/').next().unwrap_or("");
    let versionish = pn
        .match_indices('-')
        .any(|(i, _)| pn[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
    (!versionish && !rest.starts_with(['=', '<', '>', '~', '!'])).then(|| (rest.to_owned(), v))
}

#[test]
fn atoms_agree_with_portage_on_every_fixture_entry() {
    let rows = fixture();
    assert!(
        rows.len() >= 5000,
        "the fixture holds only {} atoms",
        rows.len()
    );
    let by_atom: BTreeMap<&str, &Verdict> = rows.iter().map(|(a, v)| (a.as_str(), v)).collect();
    let mut disagreements = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (input, _) in &rows {
        let got = Atom::parse(input);
        match (expected(input, &by_atom), &got) {
            (Some((text, v)), Ok(atom)) => {
                accepted += 1;
                let got = (atom.as_str(), atom.key(), atom.cpv(), atom.build_id());
                let want = (
                    text.as_str(),
                    v.cp.as_str(),
                    v.cpv.as_str(),
                    v.build_id.as_deref(),
                );
                if got != want {
                    disagreements.push(format!("{input:?}: swarm {got:?}, Portage {want:?}"));
                }
            }
            (None, Err(_)) => refused += 1,
            (Some((text, _)), Err(e)) => disagreements.push(format!(
                "{input:?}: Portage accepts {text:?}, swarm refuses: {e}"
            )),
            (None, Ok(atom)) => disagreements.push(format!(
                "{input:?}: Portage refuses, swarm accepts as {:?}",
                atom.as_str()
            )),
        }
    }
    println!(
        "{} atoms: {accepted} accepted and {refused} refused as Portage does, {} disagreements",
        rows.len(),
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements with Portage, first ones:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(40)].join("\n")
    );
}

/// The Portage venv (`SWARM_PORTAGE_VENV`, else `target/portage-venv` from tests/portage/venv.sh);
/// `None` (with the reason printed) outside CI when it is missing, a failure under `CI=true`.
fn portage_python() -> Option<std::path::PathBuf> {
    let root = repo_root();
    let venv = std::env::var_os("SWARM_PORTAGE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/portage-venv"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    let why = format!(
        "no Portage venv at {} (run tests/portage/venv.sh or set SWARM_PORTAGE_VENV)",
        venv.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: CI must run this test with the real Portage");
    }
    println!("skipped: {why}");
    None
}

#[test]
fn versions_are_admitted_as_portage_matches_them() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/portage/matches.tsv");
    let text = std::fs::read_to_string(path).expect("tests/portage/matches.tsv is readable");
    let (mut yes, mut no, mut disagreements) = (0, 0, Vec::new());
    for line in rows(&text) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 3, "malformed fixture line {line:?}");
        let atom = Atom::parse(f[0]).unwrap_or_else(|e| panic!("{}: {e}", f[0]));
        let candidate = Atom::parse(&format!("=app-misc/foo-{}", f[1]))
            .unwrap_or_else(|e| panic!("{}: {e}", f[1]));
        let portage = f[2] == "yes";
        if portage {
            yes += 1
        } else {
            no += 1
        }
        if atom.admits(&candidate) != portage {
            disagreements.push(format!("{} admits {}: Portage says {}", f[0], f[1], f[2]));
        }
    }
    println!(
        "{} pairs: {yes} admitted and {no} not, as Portage matches them",
        yes + no
    );
    assert!(yes > 1000 && no > 1000, "the fixture holds {yes} and {no}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements with Portage, first ones:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(40)].join("\n")
    );
}

#[test]
fn the_installed_portage_still_matches_as_the_fixture_says() {
    let Some(python) = portage_python() else {
        return;
    };
    let fresh = run_script(&python, "matches.py", &[]);
    let committed = std::fs::read_to_string(repo_root().join("tests/portage/matches.tsv"))
        .expect("the fixture is readable");
    assert!(
        rows(&fresh) == rows(&committed),
        "the installed Portage matches versions differently from tests/portage/matches.tsv \
         (regenerate it with matches.py and check swarm against it)"
    );
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What `tests/portage/<script>` prints, run by the Portage venv's python.
fn run_script(python: &std::path::Path, script: &str, args: &[&std::path::Path]) -> String {
    let out = std::process::Command::new(python)
        .arg(repo_root().join("tests/portage").join(script))
        .args(args)
        .output()
        .expect("the Portage venv's python runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the script prints UTF-8")
}

fn rows(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn the_installed_portage_still_gives_the_fixture_verdicts() {
    let Some(python) = portage_python() else {
        return;
    };
    let fixture = repo_root().join("tests/portage/atoms.tsv");
    let fresh = run_script(&python, "atoms.py", &[Path::new("--inputs"), &fixture]);
    let committed = std::fs::read_to_string(&fixture).expect("the fixture is readable");
    let (fresh, committed) = (rows(&fresh), rows(&committed));
    assert_eq!(
        fresh.len(),
        committed.len(),
        "atoms.py judged a different number of atoms"
    );
    let drift: Vec<String> = committed
        .iter()
        .zip(&fresh)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("committed {a:?}\n    Portage now {b:?}"))
        .collect();
    assert!(
        drift.is_empty(),
        "the installed Portage judges {} atoms differently from tests/portage/atoms.tsv \
         (regenerate it with atoms.py and check swarm against it):\n{}",
        drift.len(),
        drift[..drift.len().min(20)].join("\n")
    );
}
