//! The package universe of a run: durations, RAM, failures and the DAG, plus
//! the makespan lower bound the report compares against.

use super::rng::Rng;
use super::scenario::{PackageModel, Packages};
use crate::atom::Atom;
use std::collections::BTreeMap;

/// A package as the world knows it (ground truth the core never sees).
#[derive(Clone, Debug)]
pub(crate) struct TruePackage {
    pub(crate) atom: Atom,
    pub(crate) deps: Vec<usize>,
    pub(crate) duration_ms: u64,
    pub(crate) ram_mb: u64,
    pub(crate) fail_permille: u32,
}

/// Well-known heavy builds, so a generated world has its real giants.
const GIANTS: [(&str, u64, u64); 8] = [
    ("www-client/chromium-131.0.6778.85", 5 * 3600, 12),
    ("dev-qt/qtwebengine-6.7.2", 3 * 3600, 12),
    ("sys-devel/llvm-18.1.8", 2 * 3600, 8),
    ("dev-lang/rust-1.82.0", 2 * 3600, 8),
    ("www-client/firefox-128.5.0", 2 * 3600, 10),
    ("sys-devel/gcc-14.2.1", 3600 + 1800, 4),
    ("app-office/libreoffice-24.8.3", 2 * 3600 + 1800, 10),
    ("dev-lang/ghc-9.4.8", 3600 + 1200, 6),
];

const CATEGORIES: [&str; 12] = [
    "dev-libs",
    "sys-libs",
    "dev-python",
    "x11-libs",
    "media-libs",
    "net-misc",
    "app-misc",
    "dev-util",
    "sys-apps",
    "kde-frameworks",
    "gnome-base",
    "dev-perl",
];

pub(crate) fn build(spec: &Packages, rng: &mut Rng) -> Result<Vec<TruePackage>, String> {
    match spec {
        Packages::List { items } => from_list(items),
        Packages::Generated {
            count,
            max_deps,
            fail_permille,
        } => Ok(generate(
            *count as usize,
            *max_deps as usize,
            *fail_permille,
            rng,
        )),
    }
}

fn from_list(items: &[PackageModel]) -> Result<Vec<TruePackage>, String> {
    let mut index = BTreeMap::new();
    let mut out = Vec::new();
    for (i, p) in items.iter().enumerate() {
        let atom = Atom::parse(&p.atom).map_err(|e| format!("package {i}: {e}"))?;
        if index.insert(atom.clone(), i).is_some() {
            return Err(format!("package {} is listed twice", p.atom));
        }
        out.push(TruePackage {
            atom,
            deps: Vec::new(),
            duration_ms: p.duration_s.max(1) * 1000,
            ram_mb: p.ram_gb * 1024,
            fail_permille: p.fail_permille,
        });
    }
    for (i, p) in items.iter().enumerate() {
        for d in &p.deps {
            let atom = Atom::parse(d).map_err(|e| format!("dependency of {}: {e}", p.atom))?;
            let j = *index
                .get(&atom)
                .ok_or_else(|| format!("{} depends on {d}, which is not listed", p.atom))?;
            out[i].deps.push(j);
        }
    }
    Ok(out)
}

/// A world-shaped DAG: libraries early and depended on a lot, applications
/// late; durations mostly minutes with a long tail of giants.
fn generate(count: usize, max_deps: usize, fail_permille: u32, rng: &mut Rng) -> Vec<TruePackage> {
    let mut out: Vec<TruePackage> = Vec::with_capacity(count);
    let giants_at: Vec<usize> = (0..GIANTS.len())
        .map(|g| (count * (3 + 9 * g)) / 80)
        .collect();
    for i in 0..count {
        let (atom, duration_s, ram_gb) = match giants_at.iter().position(|&at| at == i) {
            Some(g) if count >= 100 => (GIANTS[g].0.to_owned(), GIANTS[g].1, GIANTS[g].2),
            _ => {
                let cat = CATEGORIES[rng.below(CATEGORIES.len())];
                let bucket = rng.range(0, 100);
                let secs = match bucket {
                    0..=54 => rng.range(20, 180),
                    55..=84 => rng.range(180, 900),
                    85..=97 => rng.range(900, 2700),
                    _ => rng.range(2700, 5400),
                };
                (format!("{cat}/pkg{i}-{}.{}", 1 + i % 7, i % 13), secs, 0)
            }
        };
        // Dependencies on earlier packages, biased toward the oldest (libraries).
        let n_deps = if i == 0 {
            0
        } else {
            rng.range(0, max_deps as u64 + 1) as usize
        };
        let mut deps = Vec::new();
        for _ in 0..n_deps {
            let span = i.min(1 + i / 3 + rng.below(i));
            let d = rng.below(span.max(1));
            if d < i && !deps.contains(&d) {
                deps.push(d);
            }
        }
        out.push(TruePackage {
            atom: Atom::parse(&atom)
                .unwrap_or_else(|_| unreachable!("generated atoms are valid: {atom}")),
            deps,
            duration_ms: duration_s * 1000,
            ram_mb: ram_gb * 1024,
            fail_permille,
        });
    }
    out
}

/// Longest dependency chain, in ms at 100 % speed (deps always point backwards
/// or are resolved by the list order check).
pub(crate) fn critical_path_ms(pkgs: &[TruePackage]) -> u64 {
    let order = topo(pkgs);
    let mut finish = vec![0u64; pkgs.len()];
    for &i in &order {
        let start = pkgs[i].deps.iter().map(|d| finish[*d]).max().unwrap_or(0);
        finish[i] = start + pkgs[i].duration_ms;
    }
    finish.into_iter().max().unwrap_or(0)
}

fn topo(pkgs: &[TruePackage]) -> Vec<usize> {
    let mut indeg: Vec<usize> = pkgs.iter().map(|p| p.deps.len()).collect();
    let mut dependents = vec![Vec::new(); pkgs.len()];
    for (i, p) in pkgs.iter().enumerate() {
        for d in &p.deps {
            dependents[*d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..pkgs.len()).filter(|i| indeg[*i] == 0).collect();
    let mut out = Vec::new();
    while let Some(i) = ready.pop() {
        out.push(i);
        for &j in &dependents[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.push(j);
            }
        }
    }
    out
}
