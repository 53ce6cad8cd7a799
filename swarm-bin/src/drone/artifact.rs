//! Finding the binary package a build produced, and its sha256.
//!
//! Portage writes `<PKGDIR>/<category>/<pf>.gpkg.tar` or, with
//! `FEATURES=binpkg-multi-instance`, `<PKGDIR>/<category>/<pn>/<pf>-<build-id>.gpkg.tar`
//! (`.tbz2` / `.xpak` for the old format). The name must be exactly `<pf>` or
//! `<pf>-<digits>` before the extension: a plain prefix match would take
//! `foo-1.0.1` for `foo-1.0`. Of several candidates the newest wins.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use swarm_core::Atom;

/// Smallest gpkg the server accepts as a real package (V3-PROTOCOL).
pub(crate) const MIN_GPKG_BYTES: u64 = 1024;

/// A binary package found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Artifact {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// The name it is uploaded under: `<pf>.gpkg.tar` or `<pf>.tbz2`.
    pub(crate) upload_name: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Last modification.
    pub(crate) modified: SystemTime,
}

/// The extensions looked for, best first, with the upload extension of each.
const EXTENSIONS: [(&str, &str); 3] = [
    (".gpkg.tar", ".gpkg.tar"),
    (".tbz2", ".tbz2"),
    (".xpak", ".tbz2"),
];

/// The newest artifact of `atom` under `pkgdir`, if any.
pub(crate) fn find(pkgdir: &Path, atom: &Atom) -> Option<Artifact> {
    let pf = atom.pf();
    let dirs = [
        pkgdir.join(atom.category()).join(atom.pn()),
        pkgdir.join(atom.category()),
    ];
    let mut best: Option<Artifact> = None;
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(upload_ext) = matches(name, pf) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let found = Artifact {
                path: entry.path(),
                upload_name: format!("{pf}{upload_ext}"),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            };
            let newer = best.as_ref().is_none_or(|b| {
                (ext_rank(&found.upload_name), found.modified)
                    > (ext_rank(&b.upload_name), b.modified)
            });
            if newer {
                best = Some(found);
            }
        }
    }
    best
}

/// gpkg beats tbz2 whatever the times: Portage's current format is preferred.
fn ext_rank(upload_name: &str) -> u8 {
    u8::from(upload_name.ends_with(".gpkg.tar"))
}

/// The upload extension if `name` is an artifact of `pf`.
fn matches(name: &str, pf: &str) -> Option<&'static str> {
    let rest = name.strip_prefix(pf)?;
    EXTENSIONS.iter().find_map(|(ext, upload)| {
        let stem = rest.strip_suffix(ext)?;
        let build_id_ok = stem.is_empty()
            || stem
                .strip_prefix('-')
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
        build_id_ok.then_some(*upload)
    })
}

/// sha256 of a file, hex.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(a: &str) -> Atom {
        Atom::parse(a).expect("atom")
    }

    fn put(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, vec![7u8; bytes]).expect("write");
    }

    #[test]
    fn names_must_be_the_pf_or_the_pf_with_a_build_id() {
        assert_eq!(matches("foo-1.0.gpkg.tar", "foo-1.0"), Some(".gpkg.tar"));
        assert_eq!(matches("foo-1.0-3.gpkg.tar", "foo-1.0"), Some(".gpkg.tar"));
        assert_eq!(matches("foo-1.0.tbz2", "foo-1.0"), Some(".tbz2"));
        assert_eq!(matches("foo-1.0-12.xpak", "foo-1.0"), Some(".tbz2"));
        assert_eq!(matches("foo-1.0.1.gpkg.tar", "foo-1.0"), None);
        assert_eq!(matches("foo-1.0-r1.gpkg.tar", "foo-1.0"), None);
        assert_eq!(matches("foo-1.0-.gpkg.tar", "foo-1.0"), None);
        assert_eq!(matches("foo-1.0.gpkg.tar.partial", "foo-1.0"), None);
    }

    #[test]
    fn finds_a_flat_artifact() {
        let dir = tempfile::tempdir().expect("tempdir");
        put(&dir.path().join("dev-libs/foo-1.0.gpkg.tar"), 2048);
        put(&dir.path().join("dev-libs/foo-1.0.1.gpkg.tar"), 2048);
        let a = find(dir.path(), &atom("=dev-libs/foo-1.0")).expect("found");
        assert_eq!(a.path, dir.path().join("dev-libs/foo-1.0.gpkg.tar"));
        assert_eq!(a.upload_name, "foo-1.0.gpkg.tar");
        assert_eq!(a.size, 2048);
    }

    #[test]
    fn finds_the_newest_multi_instance_artifact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("dev-libs/foo/foo-1.0-1.gpkg.tar");
        let new = dir.path().join("dev-libs/foo/foo-1.0-2.gpkg.tar");
        put(&old, 1500);
        put(&new, 1600);
        let past = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
        let a = find(dir.path(), &atom("dev-libs/foo-1.0")).expect("found");
        assert_eq!(a.path, new);
        assert_eq!(a.upload_name, "foo-1.0.gpkg.tar");
    }

    #[test]
    fn a_gpkg_beats_a_tbz2_and_a_tbz2_is_found_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        put(&dir.path().join("app-misc/bar-2.tbz2"), 2000);
        let a = find(dir.path(), &atom("app-misc/bar-2")).expect("found");
        assert_eq!(a.upload_name, "bar-2.tbz2");
        put(&dir.path().join("app-misc/bar-2.gpkg.tar"), 2000);
        let past = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("app-misc/bar-2.gpkg.tar"))
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
        let a = find(dir.path(), &atom("app-misc/bar-2")).expect("found");
        assert_eq!(a.upload_name, "bar-2.gpkg.tar");
    }

    #[test]
    fn nothing_found_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find(dir.path(), &atom("dev-libs/foo-1.0")), None);
        put(&dir.path().join("dev-libs/foo-1.0.gpkg.tar/inner"), 10);
        assert_eq!(find(dir.path(), &atom("dev-libs/foo-1.0")), None);
    }

    #[test]
    fn sha256_is_of_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").expect("write");
        assert_eq!(
            sha256_file(&p).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
