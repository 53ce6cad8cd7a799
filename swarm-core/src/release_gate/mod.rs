//! The safety gate in front of publishing a binhost release: a pure verdict
//! over the current generation (from a [`View`]) and facts the adapter read
//! from the release and the published one.
//!
//! A release may be published when it holds a binary for every package of
//! the current generation, every in-queue dependency of what it holds, was
//! built against the generation's Portage snapshot, and does not drop more
//! than a configured share of what clients install today. Every failed rule
//! is listed, so an operator sees the whole picture before `--force`.

mod uploaded;

pub use uploaded::{uploaded_binary, UploadedBinary};

use crate::atom::Atom;
use crate::buildenv::{describe_differences, BuildEnv};
use crate::profile::DEFAULT_PROFILE;
use crate::view::{PackageStatus, View};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the adapter knows about one package of the release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFacts {
    /// The Portage snapshot of the drone that built it, as that drone
    /// reported it; `None` when nobody knows (a rsynced file, a drone that
    /// reports no snapshot).
    pub portage_snapshot: Option<String>,
    /// The drone that built it, when known.
    pub built_by: Option<String>,
    /// The build environment recorded with its build (the building drone's, stamped when it
    /// reported the build); `None` when nothing was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<crate::BuildEnv>,
}

/// The release being judged and what is published now.
pub struct GateFacts<'a> {
    /// The release's packages, `category/pf` → facts.
    pub release: &'a BTreeMap<String, EntryFacts>,
    /// The published release's packages, if one is published.
    pub published: Option<&'a BTreeSet<String>>,
    /// Refuse when more than this share (per mille) of the published
    /// release's packages would disappear.
    pub max_drop_permille: u32,
}

/// One reason to refuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum GateReason {
    /// A package of the current generation has no binary in the release.
    Missing {
        /// The queued atom.
        package: String,
        /// Its state in the queue: `built`, `queued`, `building`, `blocked`, ...
        state: String,
    },
    /// A package in the release needs an in-queue dependency the release lacks.
    MissingDependency {
        /// The package in the release.
        package: String,
        /// The dependency it was queued with.
        dependency: String,
    },
    /// Built against a Portage snapshot other than the generation's.
    Snapshot {
        /// The package.
        package: String,
        /// The snapshot of the drone that built it.
        built_with: String,
        /// The generation's snapshot.
        expected: String,
        /// The drone, when known.
        drone: Option<String>,
    },
    /// Built in an environment other than the expected one.
    Environment {
        /// The package.
        package: String,
        /// The drone that built it, when known.
        drone: Option<String>,
        /// What differs: "environment differs in CFLAGS (-O3 vs -O2)".
        differences: String,
    },
    /// Publishing would take away too much of what clients install today.
    Drops {
        /// Packages of the published release missing from this one.
        dropped: u32,
        /// Packages in the published release.
        published: u32,
        /// The configured limit, per mille.
        limit_permille: u32,
        /// A few of them.
        examples: Vec<String>,
    },
}

impl std::fmt::Display for GateReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateReason::Missing { package, state } => {
                write!(f, "{package} is in the current generation but not in the release ({state})")
            }
            GateReason::MissingDependency {
                package,
                dependency,
            } => write!(
                f,
                "{package} needs {dependency}, which is queued but not in the release"
            ),
            GateReason::Snapshot {
                package,
                built_with,
                expected,
                drone,
            } => write!(
                f,
                "{package} was built against Portage snapshot {built_with:?}{}, the generation expects {expected:?}",
                drone.as_ref().map(|d| format!(" on {d}")).unwrap_or_default()
            ),
            GateReason::Environment {
                package,
                drone,
                differences,
            } => write!(
                f,
                "{package} was built{} in another environment: {differences}",
                drone.as_ref().map(|d| format!(" on {d}")).unwrap_or_default()
            ),
            GateReason::Drops {
                dropped,
                published,
                limit_permille,
                examples,
            } => write!(
                f,
                "it would drop {dropped} of the {published} published packages (limit {}.{}%), e.g. {}",
                limit_permille / 10,
                limit_permille % 10,
                examples.join(", ")
            ),
        }
    }
}

/// The gate's answer: refuse when `reasons` is not empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Every rule that failed.
    pub reasons: Vec<GateReason>,
    /// What the gate could not check, and why.
    pub notes: Vec<String>,
}

impl GateVerdict {
    /// Whether publishing may go ahead without `--force`.
    pub fn passed(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Judges a release of the default profile against the current generation.
pub fn check_publish(view: View<'_>, facts: &GateFacts<'_>) -> GateVerdict {
    check_publish_for(view, facts, crate::profile::DEFAULT_PROFILE)
}

/// Judges a release of `profile` against that profile's packages of the current generation
/// and its expected environment (issue 17): each profile's release is judged by its own world.
pub fn check_publish_for(view: View<'_>, facts: &GateFacts<'_>, profile: &str) -> GateVerdict {
    let mut v = GateVerdict::default();
    let by_key = index_by_key(facts.release.keys());
    let generation = view.generation();
    let tag = (profile != crate::profile::DEFAULT_PROFILE).then_some(profile);
    let world: Vec<_> = view
        .queue()
        .filter(|p| p.generation == generation && p.profile.as_deref() == tag)
        .collect();
    if world.is_empty() {
        v.notes
            .push("the current generation queues no packages: nothing to compare with".into());
    }
    let queued: BTreeSet<&Atom> = world.iter().map(|p| &p.atom).collect();
    for p in &world {
        if !satisfied(&p.atom, &by_key) {
            v.reasons.push(GateReason::Missing {
                package: p.atom.as_str().to_string(),
                state: state_name(&p.status).to_string(),
            });
        }
    }
    // Dependencies: only of packages the release holds, only those in the queue.
    for p in &world {
        if !satisfied(&p.atom, &by_key) {
            continue;
        }
        for dep in view.deps_of(&p.atom) {
            if queued.contains(&dep) && !satisfied(&dep, &by_key) {
                v.reasons.push(GateReason::MissingDependency {
                    package: p.atom.as_str().to_string(),
                    dependency: dep.as_str().to_string(),
                });
            }
        }
    }
    match view.expected_portage() {
        None => v
            .notes
            .push("the generation names no Portage snapshot: snapshots were not compared".into()),
        Some(expected) => {
            let mut unknown = Vec::new();
            for (cpv, f) in facts.release {
                match &f.portage_snapshot {
                    Some(s) if s != expected => v.reasons.push(GateReason::Snapshot {
                        package: cpv.clone(),
                        built_with: s.clone(),
                        expected: expected.to_string(),
                        drone: f.built_by.clone(),
                    }),
                    Some(_) => {}
                    None => unknown.push(cpv.as_str()),
                }
            }
            note_unknown(&mut v, "known Portage snapshot", &unknown);
        }
    }
    match view.profile_env(profile) {
        Some(env) => check_environments(env, facts, &mut v),
        None => v.notes.push(format!(
            "there is no profile {profile} any more: environments were not compared"
        )),
    }
    if let Some(published) = facts.published {
        let dropped: Vec<&String> = published
            .iter()
            .filter(|c| !facts.release.contains_key(*c))
            .collect();
        let n = published.len() as u64;
        if n > 0 && (dropped.len() as u64) * 1000 > u64::from(facts.max_drop_permille) * n {
            v.reasons.push(GateReason::Drops {
                dropped: dropped.len() as u32,
                published: n as u32,
                limit_permille: facts.max_drop_permille,
                examples: dropped.iter().take(5).map(|s| s.to_string()).collect(),
            });
        }
    }
    v
}

/// Every package must have been built in an environment the expectation admits; one with no
/// recorded environment is noted, not refused (built before environments were recorded).
fn check_environments(expected: &crate::BuildEnv, facts: &GateFacts<'_>, v: &mut GateVerdict) {
    if expected.is_empty() {
        v.notes
            .push("no build environment is expected: environments were not compared".into());
        return;
    }
    let mut unknown = Vec::new();
    for (cpv, f) in facts.release {
        match &f.env {
            Some(env) if !expected.admits(env) => v.reasons.push(GateReason::Environment {
                package: cpv.clone(),
                drone: f.built_by.clone(),
                differences: crate::buildenv::describe_differences(&expected.differences(env)),
            }),
            Some(_) => {}
            None => unknown.push(cpv.as_str()),
        }
    }
    note_unknown(v, "recorded build environment", &unknown);
}

/// Notes the packages a rule could not judge for want of `what`, with a few examples.
fn note_unknown(v: &mut GateVerdict, what: &str, unknown: &[&str]) {
    if !unknown.is_empty() {
        v.notes.push(format!(
            "no {what} for {} package(s), e.g. {}: not compared",
            unknown.len(),
            unknown
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

fn state_name(s: &PackageStatus) -> &'static str {
    match s {
        PackageStatus::Queued { retry_at: Some(_) } => "failed, retrying later",
        PackageStatus::Queued { retry_at: None } => "not built yet",
        PackageStatus::Assigned { started: true, .. } => "building",
        PackageStatus::Assigned { .. } => "assigned, not started",
        PackageStatus::Built { .. } => "built, but its binary is not in the release",
        PackageStatus::Blocked { .. } => "blocked",
    }
}

/// `category/pn` → the release's `category/pf`s of that package.
fn index_by_key<'a>(cpvs: impl Iterator<Item = &'a String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for cpv in cpvs {
        if let Ok(a) = Atom::parse(cpv) {
            m.entry(a.key().to_string()).or_default().insert(format!(
                "{}/{}",
                a.category(),
                a.pf()
            ));
        }
    }
    m
}

/// An exact `=cat/pf` needs that very version; any other atom is satisfied by
/// some version of its package (the queue resolved it, the release holds it).
fn satisfied(atom: &Atom, by_key: &BTreeMap<String, BTreeSet<String>>) -> bool {
    let Some(versions) = by_key.get(atom.key()) else {
        return false;
    };
    let exact = atom.as_str().starts_with('=') && !atom.as_str().ends_with('*');
    if exact && atom.pf() != atom.pn() {
        versions.contains(&format!("{}/{}", atom.category(), atom.pf()))
    } else {
        true
    }
}

/// Why a staged package is not `profile`'s to release, or `None` when it is. A named
/// profile takes the builds whose recorded environment it admits (a profile expecting
/// nothing: its own queued packages); the default profile leaves out what is queued for a
/// named one. `atom` is `None` when the package's CPV does not parse; `recorded` is the
/// environment recorded with its build, when one was.
pub fn not_in_release_of(
    view: View<'_>,
    profile: &str,
    atom: Option<&Atom>,
    recorded: Option<&BuildEnv>,
) -> Option<String> {
    // A package is (profile, atom): the atom may be queued for several profiles.
    let queued_for: Vec<&str> = atom
        .map(|a| view.queued_profiles(a))
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.unwrap_or(DEFAULT_PROFILE))
        .collect();
    let ours = queued_for.contains(&profile);
    if profile == DEFAULT_PROFILE {
        return queued_for
            .first()
            .filter(|_| !ours)
            .map(|q| format!("queued for profile {q}: it goes in that profile's release"));
    }
    let expected = view.profile_env(profile)?;
    if expected.is_empty() {
        return (!ours)
            .then(|| format!("profile {profile} expects no environment and does not queue it"));
    }
    match recorded {
        None => Some(format!(
            "no build environment recorded with its build: not known to be profile {profile}'s"
        )),
        Some(env) if !expected.admits(env) => Some(format!(
            "built in an environment profile {profile} does not admit: {}",
            describe_differences(&expected.differences(env))
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests;
