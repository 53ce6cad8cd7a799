//! The package sets `swarm demo` queues, bundled into the binary so an
//! installed `swarm` needs no data files, and the makespan lower bound the
//! summary compares the real run against.
//!
//! A set is a TOML file in `swarm-bin/data/`: `[[package]]` tables with an
//! `atom`, a `size_s` hint (seconds to build on an 8-core drone) and `deps`,
//! plus the atoms the stand-in builder fails (`fail`) or "runs out of memory"
//! on (`oom`). Loading checks what the demo relies on: every atom parses and
//! is versioned, dependencies name packages of the set, the graph is a DAG,
//! and nothing depends on a package meant to break (else the run would end
//! with work waiting forever behind a blocked package).

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use swarm_core::{Atom, PackageSpec};

/// The bundled world sample (≈150 packages).
const WORLD_SAMPLE: &str = include_str!("../../data/world-sample.toml");
/// The bundled CI set (12 packages of the world sample).
const TINY: &str = include_str!("../../data/tiny.toml");

/// Which bundled set to queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sample {
    /// ≈150 packages of a Gentoo desktop world: toolchain, Python, LLVM,
    /// Rust, Firefox, Qt 6 with QtWebEngine, KDE Frameworks, LibreOffice.
    WorldSample,
    /// 12 packages, for CI.
    Tiny,
}

impl Sample {
    /// The set's name as the flag spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sample::WorldSample => "world-sample",
            Sample::Tiny => "tiny",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Sample::WorldSample => WORLD_SAMPLE,
            Sample::Tiny => TINY,
        }
    }
}

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleFile {
    name: String,
    #[serde(default)]
    fail: Vec<String>,
    #[serde(default)]
    oom: Vec<String>,
    package: Vec<PackageEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageEntry {
    atom: String,
    size_s: u64,
    #[serde(default)]
    deps: Vec<String>,
}

/// One package of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Package {
    /// The versioned atom (`=sys-libs/zlib-1.3.1-r1`).
    pub(crate) atom: Atom,
    /// Build time hint, seconds.
    pub(crate) size_s: u64,
    /// Indexes of its dependencies in [`World::packages`].
    pub(crate) deps: Vec<usize>,
}

/// A loaded, checked package set.
#[derive(Clone, Debug)]
pub(crate) struct World {
    /// Its name (`world-sample`).
    pub(crate) name: String,
    /// Packages in file order (dependencies first).
    pub(crate) packages: Vec<Package>,
    /// Atoms the stand-in fails with a build error.
    pub(crate) fail: Vec<Atom>,
    /// Atoms the stand-in fails with an OOM kill.
    pub(crate) oom: Vec<Atom>,
}

impl World {
    /// Loads a bundled set.
    pub(crate) fn bundled(sample: Sample) -> anyhow::Result<World> {
        World::parse(sample.text()).with_context(|| format!("bundled sample {}", sample.name()))
    }

    /// Parses and checks a set's TOML.
    pub(crate) fn parse(text: &str) -> anyhow::Result<World> {
        let file: SampleFile = toml::from_str(text).context("not a package set")?;
        let mut index: BTreeMap<Atom, usize> = BTreeMap::new();
        let mut packages = Vec::with_capacity(file.package.len());
        for (i, p) in file.package.iter().enumerate() {
            let atom = versioned(&p.atom)?;
            if index.insert(atom.clone(), i).is_some() {
                bail!("{atom} is listed twice");
            }
            packages.push(Package {
                atom,
                size_s: p.size_s,
                deps: Vec::new(),
            });
        }
        for (i, p) in file.package.iter().enumerate() {
            for d in &p.deps {
                let dep = versioned(d)?;
                let Some(&j) = index.get(&dep) else {
                    bail!("{} depends on {dep}, which is not in the set", p.atom);
                };
                if packages[i].deps.contains(&j) {
                    bail!("{} lists {dep} twice", p.atom);
                }
                packages[i].deps.push(j);
            }
        }
        let world = World {
            name: file.name,
            fail: listed(&file.fail, &index)?,
            oom: listed(&file.oom, &index)?,
            packages,
        };
        world.topological_order()?;
        for atom in world.fail.iter().chain(&world.oom) {
            if let Some(p) = world
                .packages
                .iter()
                .find(|p| p.deps.iter().any(|&d| world.packages[d].atom == *atom))
            {
                bail!(
                    "{} depends on {atom}, which is meant to break: it would wait forever",
                    p.atom
                );
            }
        }
        Ok(world)
    }

    /// Whether the stand-in is told to break this package.
    pub(crate) fn breaks(&self, atom: &Atom) -> bool {
        self.fail.contains(atom) || self.oom.contains(atom)
    }

    /// The size hint of an atom of the set, seconds.
    pub(crate) fn size_of(&self, atom: &str) -> Option<u64> {
        let atom = Atom::parse(atom).ok()?;
        self.packages
            .iter()
            .find(|p| p.atom == atom)
            .map(|p| p.size_s)
    }

    /// How many packages should end up built.
    pub(crate) fn expected_built(&self) -> usize {
        self.packages
            .iter()
            .filter(|p| !self.breaks(&p.atom))
            .count()
    }

    /// Package indexes with every dependency before its dependents, or an
    /// error naming a package on a cycle.
    pub(crate) fn topological_order(&self) -> anyhow::Result<Vec<usize>> {
        // Kahn's algorithm; ties in index order so the result is stable.
        let n = self.packages.len();
        let mut missing: Vec<usize> = self.packages.iter().map(|p| p.deps.len()).collect();
        let mut dependents = vec![Vec::new(); n];
        for (i, p) in self.packages.iter().enumerate() {
            for &d in &p.deps {
                dependents[d].push(i);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| missing[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &dependents[i] {
                missing[j] -= 1;
                if missing[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        if let Some(stuck) = (0..n).find(|&i| missing[i] > 0) {
            bail!(
                "the dependencies have a cycle through {}",
                self.packages[stuck].atom
            );
        }
        Ok(order)
    }

    /// What `POST /api/v1/queue` gets: every package with its dependencies
    /// and its size hint as the estimate.
    pub(crate) fn specs(&self) -> Vec<PackageSpec> {
        self.packages
            .iter()
            .map(|p| PackageSpec {
                atom: p.atom.clone(),
                deps: p
                    .deps
                    .iter()
                    .map(|&d| self.packages[d].atom.clone())
                    .collect(),
                priority: 0,
                estimate_s: Some(p.size_s.max(1)),
                profile: None,
            })
            .collect()
    }

    /// The stand-in's `SWARM_STANDIN_SIZES` file: `atom size_s` lines.
    pub(crate) fn sizes_file(&self) -> String {
        let mut out = format!(
            "# {}: size hints in seconds for the stand-in builder\n",
            self.name
        );
        for p in &self.packages {
            out += &format!("{} {}\n", p.atom, p.size_s);
        }
        out
    }

    /// The lower bound on the makespan of building every package that should
    /// build, at `speed` build-seconds per demo-second on `slots` slots.
    pub(crate) fn lower_bound(&self, speed: f64, slots: u32) -> LowerBound {
        let durations_ms: Vec<u64> = self
            .packages
            .iter()
            .map(|p| {
                if self.breaks(&p.atom) {
                    0
                } else {
                    demo_ms(p.size_s, speed)
                }
            })
            .collect();
        let deps: Vec<&[usize]> = self.packages.iter().map(|p| p.deps.as_slice()).collect();
        // The order exists: `parse` refused cycles.
        let order = self.topological_order().unwrap_or_default();
        lower_bound(&durations_ms, &deps, &order, slots)
    }
}

/// How long a package of `size_s` sleeps in the demo, in ms.
pub(crate) fn demo_ms(size_s: u64, speed: f64) -> u64 {
    if speed <= 0.0 {
        return 0;
    }
    (size_s as f64 * 1000.0 / speed).round() as u64
}

/// A makespan lower bound and its two parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LowerBound {
    /// The longest dependency chain, ms: no schedule finishes sooner, however
    /// many slots it has (all drones run at the same speed here).
    pub(crate) critical_path_ms: u64,
    /// All the work, ms.
    pub(crate) work_ms: u64,
    /// Build slots it is spread over.
    pub(crate) slots: u32,
    /// `max(critical_path_ms, ceil(work_ms / slots))`.
    pub(crate) bound_ms: u64,
}

/// `max(critical path, total work / slots)`: durations in ms, `deps[i]` the
/// dependencies of package `i`, `order` a topological order of all packages.
pub(crate) fn lower_bound(
    durations_ms: &[u64],
    deps: &[&[usize]],
    order: &[usize],
    slots: u32,
) -> LowerBound {
    let mut finish = vec![0u64; durations_ms.len()];
    for &i in order {
        let start = deps[i].iter().map(|&d| finish[d]).max().unwrap_or(0);
        finish[i] = start + durations_ms[i];
    }
    let critical_path_ms = finish.iter().copied().max().unwrap_or(0);
    let work_ms: u64 = durations_ms.iter().sum();
    let slots = slots.max(1);
    let spread_ms = work_ms.div_ceil(u64::from(slots));
    LowerBound {
        critical_path_ms,
        work_ms,
        slots,
        bound_ms: critical_path_ms.max(spread_ms),
    }
}

fn versioned(text: &str) -> anyhow::Result<Atom> {
    let atom = Atom::parse(text).map_err(|e| anyhow::anyhow!("atom {text:?}: {e}"))?;
    if !atom.as_str().starts_with('=') {
        bail!("atom {text:?} has no version: the demo builds exact versions");
    }
    Ok(atom)
}

fn listed(atoms: &[String], index: &BTreeMap<Atom, usize>) -> anyhow::Result<Vec<Atom>> {
    atoms
        .iter()
        .map(|a| {
            let atom = versioned(a)?;
            if !index.contains_key(&atom) {
                bail!("{atom} is marked to break but is not in the set");
            }
            Ok(atom)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sample: Sample) -> World {
        match World::bundled(sample) {
            Ok(w) => w,
            Err(e) => panic!("{e:#}"),
        }
    }

    #[test]
    fn the_world_sample_parses_into_about_150_versioned_packages() {
        let w = load(Sample::WorldSample);
        assert_eq!(w.name, "world-sample");
        assert!(
            (140..=170).contains(&w.packages.len()),
            "{}",
            w.packages.len()
        );
        assert!(w.packages.iter().all(|p| p.atom.as_str().starts_with('=')));
    }

    #[test]
    fn the_world_sample_has_its_giants_virtuals_and_real_names() {
        let w = load(Sample::WorldSample);
        let size = |atom: &str| {
            w.packages
                .iter()
                .find(|p| p.atom.as_str() == atom)
                .map(|p| p.size_s)
                .unwrap_or_else(|| panic!("{atom} is in the sample"))
        };
        for giant in [
            "=sys-devel/gcc-14.2.1_p20241116",
            "=llvm-core/llvm-19.1.4",
            "=www-client/firefox-128.5.0",
            "=dev-qt/qtwebengine-6.8.0",
        ] {
            assert!(size(giant) >= 3600, "{giant} is big");
        }
        assert!(size("=sys-libs/zlib-1.3.1-r1") <= 60);
        assert!(size("=dev-libs/openssl-3.3.2") > 0);
        assert!(size("=dev-lang/python-3.12.7") > 0);
        assert!(size("=dev-qt/qtbase-6.8.0") > 0);
        let virtuals = w.packages.iter().filter(|p| p.atom.is_virtual()).count();
        assert!(virtuals >= 3, "{virtuals} virtual packages");
        let kf = w
            .packages
            .iter()
            .filter(|p| p.atom.category() == "kde-frameworks")
            .count();
        assert!(kf >= 10, "{kf} KDE frameworks");
    }

    #[test]
    fn the_samples_break_a_few_leaves_on_purpose() {
        let w = load(Sample::WorldSample);
        assert!((2..=3).contains(&w.fail.len()), "{:?}", w.fail);
        assert_eq!(w.oom.len(), 1);
        assert_eq!(w.expected_built(), w.packages.len() - 4);
        let t = load(Sample::Tiny);
        assert_eq!(t.fail.len(), 1);
        assert_eq!(t.oom.len(), 1);
    }

    #[test]
    fn dependencies_form_a_dag_listed_dependencies_first() {
        for sample in [Sample::WorldSample, Sample::Tiny] {
            let w = load(sample);
            let order = w.topological_order().unwrap_or_default();
            assert_eq!(order.len(), w.packages.len());
            for (i, p) in w.packages.iter().enumerate() {
                assert!(p.deps.iter().all(|&d| d < i), "{} before its deps", p.atom);
            }
        }
    }

    #[test]
    fn tiny_is_a_small_dag_drawn_from_the_world_sample() {
        let w = load(Sample::WorldSample);
        let t = load(Sample::Tiny);
        assert!((8..=16).contains(&t.packages.len()));
        for p in &t.packages {
            let Some(big) = w.packages.iter().find(|q| q.atom == p.atom) else {
                panic!("{} is not in the world sample", p.atom)
            };
            assert_eq!(big.size_s, p.size_s, "{}", p.atom);
            for &d in &p.deps {
                let dep = &t.packages[d].atom;
                assert!(
                    big.deps.iter().any(|&e| w.packages[e].atom == *dep),
                    "{} -> {dep} is not a dependency in the world sample",
                    p.atom
                );
            }
        }
    }

    #[test]
    fn a_cycle_an_unknown_dependency_and_a_dependent_of_a_broken_package_are_refused() {
        let cycle = r#"
            name = "bad"
            [[package]]
            atom = "=a/b-1"
            size_s = 1
            deps = ["=a/c-1"]
            [[package]]
            atom = "=a/c-1"
            size_s = 1
            deps = ["=a/b-1"]
        "#;
        let e = World::parse(cycle)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        assert!(matches!(&e, Err(m) if m.contains("cycle")), "{e:?}");
        assert!(World::parse(&cycle.replace("=a/b-1\"]", "=a/x-1\"]")).is_err());
        let blocked_dep = r#"
            name = "bad"
            fail = ["=a/b-1"]
            [[package]]
            atom = "=a/b-1"
            size_s = 1
            [[package]]
            atom = "=a/c-1"
            size_s = 1
            deps = ["=a/b-1"]
        "#;
        let e = World::parse(blocked_dep)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        assert!(matches!(&e, Err(m) if m.contains("wait forever")), "{e:?}");
    }

    #[test]
    fn the_lower_bound_is_the_critical_path_when_slots_are_plenty() {
        // a(10) -> b(20) -> c(30), d(5): chain 60, work 65.
        let durations = [10, 20, 30, 5];
        let deps: [&[usize]; 4] = [&[], &[0], &[1], &[]];
        let lb = lower_bound(&durations, &deps, &[0, 1, 2, 3], 8);
        assert_eq!(lb.critical_path_ms, 60);
        assert_eq!(lb.work_ms, 65);
        assert_eq!(lb.bound_ms, 60);
    }

    #[test]
    fn the_lower_bound_is_the_work_per_slot_when_slots_are_scarce() {
        // Ten independent 10 ms packages on 3 slots: ceil(100 / 3) = 34.
        let durations = [10u64; 10];
        let deps: Vec<&[usize]> = vec![&[]; 10];
        let order: Vec<usize> = (0..10).collect();
        let lb = lower_bound(&durations, &deps, &order, 3);
        assert_eq!(lb.critical_path_ms, 10);
        assert_eq!(lb.bound_ms, 34);
        assert_eq!(lower_bound(&durations, &deps, &order, 0).slots, 1);
    }

    #[test]
    fn the_lower_bound_takes_the_longest_of_two_branches_into_a_join() {
        // a(5) and b(50) both before c(1): 51.
        let deps: [&[usize]; 3] = [&[], &[], &[0, 1]];
        let lb = lower_bound(&[5, 50, 1], &deps, &[0, 1, 2], 100);
        assert_eq!(lb.critical_path_ms, 51);
    }

    #[test]
    fn demo_time_scales_size_hints_by_the_speed() {
        assert_eq!(demo_ms(3600, 720.0), 5000);
        assert_eq!(demo_ms(1, 720.0), 1);
        assert_eq!(demo_ms(10, 0.0), 0);
    }

    #[test]
    fn the_world_lower_bound_leaves_out_the_packages_meant_to_break() {
        let w = load(Sample::WorldSample);
        let lb = w.lower_bound(1.0, 8);
        let all: u64 = w.packages.iter().map(|p| p.size_s * 1000).sum();
        let broken: u64 = w
            .packages
            .iter()
            .filter(|p| w.breaks(&p.atom))
            .map(|p| p.size_s * 1000)
            .sum();
        assert_eq!(lb.work_ms, all - broken);
        assert!(lb.bound_ms >= lb.critical_path_ms);
    }
}
