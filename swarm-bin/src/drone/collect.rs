//! What a build produced: every binary package emerge wrote into the build's own, fresh `PKGDIR`.
//!
//! The agent cannot know beforehand which file a build writes: `>=dev-libs/foo-1`, `dev-libs/foo`,
//! `=dev-libs/foo-1*` or `foo:2` name no file, and one emerge may build dependencies too. So each
//! build gets an empty `PKGDIR` (Portage lets the environment's `PKGDIR` win over make.conf), and
//! afterwards every binary package in it is identified by its own metadata (CATEGORY and PF, read
//! by [`swarm_net::binpkg::inspect`]) and uploaded. The files then join the drone's own PKGDIR.

use std::path::{Path, PathBuf};
use swarm_core::Atom;

/// At most this many packages are taken from one build (a runaway builder cannot flood uploads).
const MAX_PACKAGES: usize = 512;

/// The extensions of binary packages, with the extension each is uploaded under.
const EXTENSIONS: [(&str, &str); 3] = [
    (".gpkg.tar", ".gpkg.tar"),
    (".tbz2", ".tbz2"),
    (".xpak", ".tbz2"),
];

/// One binary package a build wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Built {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// `category/pf`, from the package's own metadata.
    pub(crate) cpv: String,
    /// The name it is uploaded under: `<pf>.gpkg.tar` or `<pf>.tbz2`.
    pub(crate) upload_name: String,
    /// Bytes.
    pub(crate) size: u64,
    /// sha256 of the file, hex.
    pub(crate) sha256: String,
}

impl Built {
    /// The category of [`Built::cpv`].
    pub(crate) fn category(&self) -> &str {
        self.cpv.split('/').next().unwrap_or("")
    }
}

/// An empty `PKGDIR` for one build: `<work_dir>/builds/<label>/pkgdir`, emptied if a crashed agent
/// left one behind.
pub(crate) fn fresh_pkgdir(work_dir: &Path, label: &str) -> std::io::Result<PathBuf> {
    let dir = work_dir.join("builds").join(label).join("pkgdir");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Every binary package under `dir` (`<cat>/<file>` or `<cat>/<pn>/<file>`), identified by its
/// own metadata; a package whose metadata cannot be read is an error naming the file.
pub(crate) fn collect(dir: &Path) -> Result<Vec<Built>, String> {
    let mut files = Vec::new();
    walk(dir, 0, &mut files).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    files.sort();
    if files.len() > MAX_PACKAGES {
        return Err(format!(
            "the build wrote {} binary packages into {}, more than the {MAX_PACKAGES} one build may upload",
            files.len(),
            dir.display()
        ));
    }
    files
        .into_iter()
        .map(|(path, upload_ext)| identify(&path, upload_ext))
        .collect()
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, &'static str)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() && depth < 2 {
            walk(&path, depth + 1, out)?;
        } else if kind.is_file() && depth > 0 {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some((_, up)) = EXTENSIONS.iter().find(|(ext, _)| name.ends_with(ext)) {
                out.push((path, up));
            }
        }
    }
    Ok(())
}

fn identify(path: &Path, upload_ext: &str) -> Result<Built, String> {
    match swarm_net::binpkg::inspect(path) {
        Ok(pkg) => {
            let pf = pkg.cpv.split_once('/').map_or("", |(_, pf)| pf).to_owned();
            Ok(Built {
                path: path.to_path_buf(),
                upload_name: format!("{pf}{upload_ext}"),
                cpv: pkg.cpv,
                size: pkg.size,
                sha256: pkg.sha256,
            })
        }
        // Not a package Portage wrote (the stand-in builder's tar, an old format): named by its
        // path, `<cat>/[<pn>/]<pf>[-<build id>]<ext>`, and the server judges the upload.
        Err(e) => {
            let cpv = cpv_from_path(path).ok_or_else(|| {
                format!(
                    "{} is not a binary package swarm can read: {e}",
                    path.display()
                )
            })?;
            tracing::warn!(path = %path.display(), cpv, "metadata unreadable ({e}); named by its path");
            let pf = cpv.split_once('/').map_or("", |(_, pf)| pf).to_owned();
            let size = std::fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            let sha256 = super::artifact::sha256_file(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Built {
                path: path.to_path_buf(),
                upload_name: format!("{pf}{upload_ext}"),
                cpv,
                size,
                sha256,
            })
        }
    }
}

/// `cat/pf` from `<pkgdir>/<cat>/<pf>.gpkg.tar` or `<pkgdir>/<cat>/<pn>/<pf>-<build id>.gpkg.tar`.
fn cpv_from_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = EXTENSIONS
        .iter()
        .find_map(|(ext, _)| name.strip_suffix(ext))?;
    let parent = path.parent()?;
    let parent_name = parent.file_name()?.to_str()?;
    let versioned = |cat: &str| {
        Atom::parse(&format!("={cat}/{stem}"))
            .ok()
            .filter(|a| a.version().is_some())
    };
    // `<cat>/<pn>/<pf>-<id>` (binpkg-multi-instance) when the directory is the package's name.
    let in_pn_dir = parent
        .parent()
        .and_then(Path::file_name)
        .and_then(|c| c.to_str())
        .and_then(versioned)
        .filter(|a| a.pn() == parent_name);
    let atom = in_pn_dir.or_else(|| versioned(parent_name))?;
    Some(atom.cpv().to_owned())
}

/// The package the queued `atom` asked for among what was built: same category and name.
pub(crate) fn pick<'a>(built: &'a [Built], atom: &Atom) -> Option<&'a Built> {
    built.iter().find(|b| matches(&b.cpv, atom))
}

/// Whether `cpv` (`cat/pf`) is a version of the package `atom` names.
pub(crate) fn matches(cpv: &str, atom: &Atom) -> bool {
    let Ok(built) = Atom::parse(&format!("={cpv}")) else {
        return false;
    };
    if atom.category().is_empty() {
        built.pn() == atom.pn()
    } else {
        built.key() == atom.key()
    }
}

/// Moves what a build wrote into the drone's own `pkgdir` (same layout) and removes the build's
/// directory. Best effort: a failure is logged, never fatal.
pub(crate) fn keep(build_pkgdir: &Path, pkgdir: &Path, built: &[Built]) {
    for b in built {
        let Ok(rel) = b.path.strip_prefix(build_pkgdir) else {
            continue;
        };
        let to = pkgdir.join(rel);
        let moved = to
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(&b.path, &to));
        if let Err(e) = moved {
            tracing::debug!(from = %b.path.display(), to = %to.display(), "keeping the package failed: {e}");
        }
    }
    if let Some(build_dir) = build_pkgdir.parent() {
        if let Err(e) = std::fs::remove_dir_all(build_dir) {
            tracing::debug!(dir = %build_dir.display(), "removing the build dir failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_without_readable_metadata_is_named_by_its_path() {
        let cases = [
            ("/p/dev-libs/foo-1.0.gpkg.tar", Some("dev-libs/foo-1.0")),
            (
                "/p/dev-libs/foo/foo-1.0-3.gpkg.tar",
                Some("dev-libs/foo-1.0"),
            ),
            (
                "/p/x11-libs/gtk+/gtk+-3.24.43-1.gpkg.tar",
                Some("x11-libs/gtk+-3.24.43"),
            ),
            ("/p/dev-libs/foo.gpkg.tar", None),
        ];
        for (path, want) in cases {
            assert_eq!(cpv_from_path(Path::new(path)).as_deref(), want, "{path}");
        }
    }
}
