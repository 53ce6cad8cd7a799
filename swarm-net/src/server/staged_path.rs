//! Where a binary package sits in staging (`<category>/<pf>.gpkg.tar` or
//! `.tbz2`) and when a file there counts as one: shared by uploads
//! (`artifacts.rs`) and their lease records (`upload_lease.rs`).
//!
//! Each profile stages into its own tree (issue 17): the default profile into
//! staging itself, as before (existing farms and v3 drones see no change), a
//! named profile `P` into `staging/.profiles/P/`, with the same layout. The
//! same atom built for two profiles is then two files that cannot replace
//! each other, and each profile's release takes only its own builds. A dot
//! directory cannot be a category, and the default release's scan skips it.

use super::http::ApiError;
use std::path::{Path, PathBuf};
use swarm_core::profile::DEFAULT_PROFILE;
use swarm_core::Atom;

/// The directory under staging that holds the named profiles' staging trees.
pub(crate) const PROFILES_DIR: &str = ".profiles";

/// The staging tree of `profile` (`None` or `default`: staging itself). A named
/// profile's name is one path segment: the core admits only names that pass
/// [`swarm_core::profile::name_problem`] (no `/`, not starting with `.`).
pub(crate) fn staging_of(staging: &Path, profile: Option<&str>) -> PathBuf {
    match profile {
        None => staging.to_path_buf(),
        Some(p) if p == DEFAULT_PROFILE => staging.to_path_buf(),
        Some(p) => staging.join(PROFILES_DIR).join(p),
    }
}

/// Every staging tree that exists: staging itself, then each named profile's
/// (also those of profiles since removed), for sweeps that cover them all.
pub(crate) fn all_staging_trees(staging: &Path) -> Vec<PathBuf> {
    let mut trees = vec![staging.to_path_buf()];
    if let Ok(named) = std::fs::read_dir(staging.join(PROFILES_DIR)) {
        let mut named: Vec<PathBuf> = named
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        named.sort();
        trees.extend(named);
    }
    trees
}

/// Held while an upload puts its file in place (its lease checked once more, the rename, the
/// lease record) and while a profile's staging tree is purged: an upload either finishes before
/// a purge or finds its lease gone, and never leaves half a record.
pub(crate) static PLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// v3 counted a binary package only from 1 KiB: smaller is a failed build.
pub(crate) const MIN_ARTIFACT_BYTES: u64 = 1024;

/// The two binary package formats' file endings.
pub(crate) const EXTENSIONS: [&str; 2] = [".gpkg.tar", ".tbz2"];

/// A staging path that names exactly one binary package.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ArtifactPath {
    pub(crate) category: String,
    pub(crate) file: String,
    /// The package the file is a build of.
    pub(crate) atom: Atom,
}

/// Accepts only `<category>/<pf>.gpkg.tar` or `.tbz2` whose `<category>/<pf>`
/// parses as a versioned atom: no traversal, no absolute paths, no odd names.
pub(crate) fn parse_artifact_path(rest: &str) -> Result<ArtifactPath, ApiError> {
    let bad =
        |why: &str| ApiError::field(400, "path", format!("bad artifact path {rest:?}: {why}"));
    if rest.starts_with('/') || rest.contains('\\') || rest.contains('\0') {
        return Err(bad("expected <category>/<pf>.gpkg.tar or .tbz2"));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let [category, file] = parts.as_slice() else {
        return Err(bad("expected exactly <category>/<file>"));
    };
    let ok_chars = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
    };
    if !ok_chars(category) || !ok_chars(file) || category.contains("..") || file.contains("..") {
        return Err(bad(
            "only letters, digits and - _ . + are allowed, and no `..`",
        ));
    }
    // A PKGDIR (a release too) holds its index as `Packages`: a category of that name
    // would be a directory in its place, and every release made after it failed (h109).
    if category.starts_with("Packages") {
        return Err(bad(
            "a category named Packages would take the place of the binhost's own index file",
        ));
    }
    let Some(pf) = EXTENSIONS.iter().find_map(|e| file.strip_suffix(e)) else {
        return Err(bad("the file must end in .gpkg.tar or .tbz2"));
    };
    // A gpkg may carry a build id (`foo-1.0-1.gpkg.tar`); the atom is what is left.
    let atom = Atom::parse(&format!("={category}/{pf}")).map_err(|e| {
        bad(&format!(
            "`{category}/{pf}` is not a versioned package: {e}"
        ))
    })?;
    if atom.category() != *category || atom.pf() == atom.pn() {
        return Err(bad(
            "`<pf>` must be a versioned package name such as foo-1.0",
        ));
    }
    Ok(ArtifactPath {
        category: category.to_string(),
        file: file.to_string(),
        atom,
    })
}

/// Whether a file an upload stored is still in staging. No size floor: the
/// upload validated it as a binary package when it came, and a minimal
/// tbz2 (a virtual or config-only package) is under v3's 1 KiB, which
/// stored it and then never counted its build (h19).
pub(crate) fn uploaded_file_present(staging: &Path, category: &str, file: &str) -> bool {
    std::fs::metadata(staging.join(category).join(file)).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_stages_into_staging_and_a_named_one_into_its_own_dot_tree() {
        let s = Path::new("/srv/staging");
        assert_eq!(staging_of(s, None), s);
        assert_eq!(staging_of(s, Some("default")), s);
        assert_eq!(
            staging_of(s, Some("fast")),
            Path::new("/srv/staging/.profiles/fast")
        );
    }
}
