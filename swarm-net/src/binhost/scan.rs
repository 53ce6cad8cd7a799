//! Finding the built set in staging: every binary package file, validated by
//! [`crate::binpkg::inspect`] (cached per inode, size and mtime, so a file
//! already in a release is not read again), one per CPV.
//!
//! Uploads land in staging while a release is made, and a rebuild replaces a
//! file under its name. So every candidate is first hardlinked into the
//! release's private `snapshot` directory, and its facts (size, mtime, the
//! digests inspect computes) are taken from that link, an inode nobody else
//! can swap: the index then describes exactly the file the release links.
//! (Stat, inspect and link by staging name, at three moments, put another
//! build's checksums beside a file, and Portage refused it.)

use super::error::{io, ReleaseError};
use crate::binpkg::{self, BinPkg, Format};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A staging file left out of a release, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Relative to staging.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Why a staging file is left out of a release, by its package's CPV, its
/// path in staging and the sha256 of the very file linked (an upload may
/// replace the name meanwhile); `None` takes it.
/// Asked of every file before the newest of a package is chosen, so a refused
/// newer build leaves an older one in.
pub type Refuse<'a> = dyn Fn(&str, &str, &str) -> Option<String> + 'a;

/// One package chosen for the release.
pub(crate) struct Found {
    /// Its link in the snapshot directory.
    pub(crate) path: PathBuf,
    pub(crate) mtime_s: u64,
    pub(crate) pkg: BinPkg,
}

pub(crate) struct Scan {
    /// Sorted by CPV, one per CPV.
    pub(crate) packages: Vec<Found>,
    pub(crate) skipped: Vec<Skipped>,
    /// What `refuse` left out, as `cpv: reason` (also in `skipped`).
    pub(crate) refused: Vec<String>,
    pub(crate) cached: u32,
}

const CACHE: &str = "inspect-cache.json";
/// Bound on files considered in one scan.
const MAX_FILES: usize = 1_000_000;

#[derive(Default, Serialize, Deserialize)]
struct Cache {
    /// `dev:ino:size:mtime_ns` → what inspect said.
    entries: BTreeMap<String, BinPkg>,
}

struct Candidate {
    path: PathBuf,
    rel: String,
    key: String,
    mtime_s: u64,
    mtime_ns: i128,
}

/// Where a package goes inside a release: Portage's own layout, so
/// `emaint binhost` on the release directory agrees with swarm's index.
pub(crate) fn release_path(p: &BinPkg) -> String {
    let (cat, pf) = p.cpv.split_once('/').unwrap_or(("", &p.cpv));
    match (p.format, p.build_id) {
        (_, Some(_)) => {
            let pn = swarm_core::Atom::parse(&p.cpv)
                .map(|a| a.pn().to_string())
                .unwrap_or_else(|_| pf.to_string());
            format!("{cat}/{pn}/{}", p.file_name())
        }
        (Format::Gpkg, None) | (Format::Xpak, None) => format!("{cat}/{}", p.file_name()),
    }
}

/// Scans `staging`, linking each candidate into `snapshot` (an empty
/// directory on staging's filesystem) and taking its facts from the link.
pub(crate) fn scan(
    staging: &Path,
    state_dir: &Path,
    snapshot: &Path,
    refuse: &Refuse<'_>,
) -> Result<Scan, ReleaseError> {
    let mut named = Vec::new();
    walk(staging, staging, 0, &mut named)?;
    let mut cands = Vec::with_capacity(named.len());
    for (i, (path, rel)) in named.into_iter().enumerate() {
        let link = snapshot.join(i.to_string());
        match std::fs::hard_link(&path, &link) {
            Ok(()) => {}
            // Removed since the walk (a file replaced by a rename is
            // linked as its new inode).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(super::files::link_error(&link, source)),
        }
        let meta = std::fs::symlink_metadata(&link).map_err(io("stat", &link))?;
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        cands.push(Candidate {
            key: format!("{}:{}:{}:{}", meta.dev(), meta.ino(), meta.len(), mtime_ns),
            path: link,
            rel,
            mtime_s: meta.mtime().max(0) as u64,
            mtime_ns,
        });
    }
    let cache_path = state_dir.join(CACHE);
    let cache: Cache = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut results: Vec<Option<Result<BinPkg, String>>> = Vec::with_capacity(cands.len());
    let mut todo = Vec::new();
    let mut cached = 0u32;
    for (i, c) in cands.iter().enumerate() {
        match cache.entries.get(&c.key) {
            Some(p) => {
                cached += 1;
                results.push(Some(Ok(p.clone())));
            }
            None => {
                results.push(None);
                todo.push(i);
            }
        }
    }
    // Inspecting reads and hashes every byte: spread it over the cores.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(todo.len().max(1));
    let chunk = todo.len().div_ceil(workers).max(1);
    let inspected: Vec<(usize, Result<BinPkg, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = todo
            .chunks(chunk)
            .map(|part| {
                let cands = &cands;
                s.spawn(move || {
                    part.iter()
                        .map(|&i| {
                            (
                                i,
                                binpkg::inspect(&cands[i].path).map_err(|e| e.to_string()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, r) in inspected {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(r);
        }
    }
    let mut new_cache = Cache::default();
    let mut best: BTreeMap<String, (usize, BinPkg)> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let c = &cands[i];
        match r {
            Some(Ok(pkg)) => {
                new_cache.entries.insert(c.key.clone(), pkg.clone());
                let collides = c.rel.starts_with("Packages").then(|| {
                    "its category would take the place of the release's own Packages index"
                        .to_string()
                });
                if let Some(reason) = collides.or_else(|| refuse(&pkg.cpv, &c.rel, &pkg.sha256)) {
                    refused.push(format!("{}: {reason}", pkg.cpv));
                    skipped.push(Skipped {
                        path: c.rel.clone(),
                        reason,
                    });
                    continue;
                }
                let prev = best
                    .get(&pkg.cpv)
                    .map(|(j, other)| (*j, newer(&cands[*j], other, c, &pkg)));
                match prev {
                    Some((j, true)) => skipped.push(Skipped {
                        path: c.rel.clone(),
                        reason: format!("a newer file of {} is {}", pkg.cpv, cands[j].rel),
                    }),
                    Some((j, false)) => {
                        skipped.push(Skipped {
                            path: cands[j].rel.clone(),
                            reason: format!("a newer file of {} is {}", pkg.cpv, c.rel),
                        });
                        best.insert(pkg.cpv.clone(), (i, pkg));
                    }
                    None => {
                        best.insert(pkg.cpv.clone(), (i, pkg));
                    }
                }
            }
            Some(Err(e)) => skipped.push(Skipped {
                path: c.rel.clone(),
                reason: format!("not a valid binary package: {e}"),
            }),
            None => {}
        }
    }
    if let Ok(bytes) = serde_json::to_vec(&new_cache) {
        // A cache that cannot be written only costs time next run.
        let _ = super::files::write_atomic(&cache_path, &bytes);
    }
    let packages = best
        .into_values()
        .map(|(i, pkg)| Found {
            path: cands[i].path.clone(),
            mtime_s: cands[i].mtime_s,
            pkg,
        })
        .collect();
    Ok(Scan {
        packages,
        skipped,
        refused,
        cached,
    })
}

/// Whether the file already chosen (`a`) beats the new one (`b`): newer
/// mtime, then the higher build id, then the path.
fn newer(a: &Candidate, pa: &BinPkg, b: &Candidate, pb: &BinPkg) -> bool {
    (a.mtime_ns, pa.build_id, &b.rel) > (b.mtime_ns, pb.build_id, &a.rel)
}

fn is_package_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".gpkg.tar") || name.ends_with(".tbz2") || name.ends_with(".xpak"))
}

/// `<cat>/<file>` and `<cat>/<pn>/<file>`: the two layouts Portage and v3
/// use. Each file as (its path, its path relative to `root`).
fn walk(
    root: &Path,
    dir: &Path,
    depth: u32,
    out: &mut Vec<(PathBuf, String)>,
) -> Result<(), ReleaseError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut names: Vec<_> = rd.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || out.len() >= MAX_FILES {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && depth < 2 {
            walk(root, &path, depth + 1, out)?;
        } else if meta.is_file() && depth >= 1 && is_package_name(&name) {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| name.clone());
            out.push((path, rel));
        }
    }
    Ok(())
}
