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
    /// SLOT and sub-slot from the package's metadata; `None` when it could not be read.
    pub(crate) slot: Option<(String, Option<String>)>,
}

impl Built {
    /// The category of [`Built::cpv`].
    pub(crate) fn category(&self) -> &str {
        self.cpv.split('/').next().unwrap_or("")
    }
}

/// An empty `PKGDIR` for one build: `<work_dir>/builds/<label>/pkgdir`, or under
/// `<label>.<n>` when a directory of that label is there. An existing one is never removed: the
/// label names the agent's pid, and in a container every agent may be pid 1, so a directory of
/// the same label can be an earlier agent's build that this one is still delivering from its
/// files (h45 F5). Directories nobody delivers went at start (`outcome::sweep`).
pub(crate) fn fresh_pkgdir(work_dir: &Path, label: &str) -> std::io::Result<PathBuf> {
    let builds = work_dir.join("builds");
    std::fs::create_dir_all(&builds)?;
    for n in 0..1_000u32 {
        let name = if n == 0 {
            label.to_owned()
        } else {
            format!("{label}.{n}")
        };
        let build = builds.join(name);
        match std::fs::create_dir(&build) {
            Ok(()) => {
                let dir = build.join("pkgdir");
                std::fs::create_dir(&dir)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "1,000 build directories named {label} or {label}.<n> are taken under {}",
        builds.display()
    )))
}

/// Every binary package under `dir` (`<cat>/<file>` or `<cat>/<pn>/<file>`), identified by its
/// own metadata; a package whose metadata cannot be read is an error naming the file.
pub(crate) fn collect(dir: &Path) -> Result<Vec<Built>, String> {
    let mut files = Vec::new();
    walk(dir, 0, &mut |path, name| {
        if let Some((_, up)) = EXTENSIONS.iter().find(|(ext, _)| name.ends_with(ext)) {
            files.push((path, *up));
        }
    })
    .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
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

/// Calls `visit` with each regular file (and its name) where builds write packages under
/// `dir`: `<cat>/<file>` or `<cat>/<pn>/<file>`.
fn walk<F: FnMut(PathBuf, &str)>(dir: &Path, depth: usize, visit: &mut F) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && depth < 2 {
            walk(&entry.path(), depth + 1, visit)?;
        } else if kind.is_file() && depth > 0 {
            visit(entry.path(), &entry.file_name().to_string_lossy());
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
                slot: Some((pkg.slot().to_owned(), pkg.sub_slot().map(str::to_owned))),
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
                slot: None,
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

/// What a build wrote, split into the packages its lease covers and the rest: of `atom`'s
/// name, a version its operator admits and the slot it asks for (as the server judges an
/// upload: `Atom::admits`, `Atom::admits_slot`), and of those only the highest version, the one
/// emerge chose; its builds (several with build ids) all go. The rest (dependencies emerge
/// built along, `dev-java/jdk:17` bootstrapping `:21`, an older version) stays on the drone:
/// uploaded under the lease, the server refused them and the whole build was lost (h21).
pub(crate) fn split<'a>(built: &'a [Built], atom: &Atom) -> (Vec<&'a Built>, Vec<&'a Built>) {
    let versioned = |b: &Built| Atom::parse(&format!("={}", b.cpv)).ok();
    let covered = |b: &Built| {
        versioned(b).is_some_and(|v| atom.admits(&v))
            && b.slot
                .as_ref()
                .is_none_or(|(slot, sub)| atom.admits_slot(slot, sub.as_deref()))
    };
    let best = built
        .iter()
        .filter(|b| covered(b))
        .filter_map(versioned)
        .max_by(|a, b| a.version_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    built.iter().partition(|b| {
        covered(b)
            && versioned(b).zip(best.as_ref()).is_some_and(|(v, best)| {
                v.key() == best.key() && v.version_cmp(best) == Some(std::cmp::Ordering::Equal)
            })
    })
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
            .and_then(|()| move_file(&b.path, &to));
        if let Err(e) = moved {
            tracing::warn!(from = %b.path.display(), to = %to.display(), "cannot keep the package in the drone's PKGDIR ({e}); the server has its copy");
        }
    }
    if let Some(build_dir) = build_pkgdir.parent() {
        if let Err(e) = std::fs::remove_dir_all(build_dir) {
            tracing::debug!(dir = %build_dir.display(), "removing the build dir failed: {e}");
        }
    }
}

/// What names a copy [`move_file`] makes: `<package>.swarm-moving.<pid>.<n>`.
const MOVING: &str = ".swarm-moving.";

/// At start: removes the copies into `pkgdir` an agent killed in the middle of one left behind
/// (`<cat>/` and `<cat>/<pn>/`, as builds write it): each is as big as its package, and
/// nothing else ever removes it. A copy whose process still runs is another agent's (one
/// PKGDIR may serve two work dirs) and stays. Returns how many went.
pub(crate) fn sweep_moving(pkgdir: &Path) -> usize {
    let mut stale = Vec::new();
    let listed = walk(pkgdir, 0, &mut |path, name| {
        if left_by_the_dead(name) {
            stale.push(path);
        }
    });
    if let Err(e) = listed {
        tracing::warn!(pkgdir = %pkgdir.display(), "cannot list the PKGDIR for copies an earlier agent left: {e}");
    }
    let mut gone = 0;
    for path in stale {
        match std::fs::remove_file(&path) {
            Ok(()) => gone += 1,
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot remove a copy an earlier agent left: {e}")
            }
        }
    }
    gone
}

/// Whether `name` is a copy of [`move_file`]'s whose process is gone (or is this one, which
/// made none yet: a reused pid).
fn left_by_the_dead(name: &str) -> bool {
    let Some((_, tail)) = name.rsplit_once(MOVING) else {
        return false;
    };
    let Some(pid) = tail
        .split_once('.')
        .and_then(|(p, _)| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
}

/// Renames `from` to `to`, or, across file systems (a PKGDIR on a mount of its own, where a
/// rename fails and the build's copy was then removed with its directory), copies it under a
/// temporary name beside `to`, syncs it, renames it into place and removes `from`.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            // A name of its own per copy: two builds keeping the same package (one built
            // along in both) at once wrote into one temp file, and a torn mix of the two, or
            // one truncated by the other, was renamed into the PKGDIR (h40).
            static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut tmp = to.as_os_str().to_owned();
            tmp.push(format!("{MOVING}{}.{n}", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            let copied = std::fs::copy(from, &tmp)
                .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, to));
            if copied.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            copied?;
            std::fs::remove_file(from)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build directory of the same label (an earlier agent of the same pid, whose build is
    /// being delivered from it) is left whole; the new build gets a directory of its own.
    #[test]
    fn a_new_build_never_takes_an_existing_build_directory() {
        let work = tempfile::tempdir().expect("temp dir");
        let first = fresh_pkgdir(work.path(), "nolease-1-0").expect("first");
        std::fs::write(first.join("kept.gpkg.tar"), "x").expect("package");
        let second = fresh_pkgdir(work.path(), "nolease-1-0").expect("second");
        assert_ne!(first, second);
        assert!(
            first.join("kept.gpkg.tar").is_file(),
            "the earlier build's files stay"
        );
        assert!(second.is_dir() && std::fs::read_dir(&second).expect("read").next().is_none());
        assert_eq!(second, work.path().join("builds/nolease-1-0.1/pkgdir"));
    }

    /// A copy left by an agent killed in the middle of it goes at start; a live process's copy,
    /// a package, and a name like a copy's outside the package dirs stay.
    #[test]
    fn copies_left_by_a_dead_agent_go_at_start() {
        let pkgdir = tempfile::tempdir().expect("temp dir");
        let p = |rel: &str| pkgdir.path().join(rel);
        std::fs::create_dir_all(p("dev-libs/foo")).expect("mkdir");
        // A pid above the kernel's limit (4,194,304) never runs.
        let dead = "dev-libs/foo-1.0.gpkg.tar.swarm-moving.4194305.0";
        let multi = "dev-libs/foo/foo-1.0-1.gpkg.tar.swarm-moving.4194306.3";
        let mine = format!(
            "dev-libs/bar-1.0.gpkg.tar.swarm-moving.{}.0",
            std::process::id()
        );
        let live = "dev-libs/baz-1.0.gpkg.tar.swarm-moving.1.0";
        let kept = [
            "dev-libs/foo-1.0.gpkg.tar",
            live,
            "Packages.swarm-moving.4194305.0",
        ];
        for f in [dead, multi, mine.as_str()].iter().chain(kept.iter()) {
            std::fs::write(p(f), b"x").expect("write");
        }
        assert_eq!(sweep_moving(pkgdir.path()), 3);
        for f in [dead, multi, mine.as_str()] {
            assert!(!p(f).exists(), "{f} stayed");
        }
        for f in kept {
            assert!(p(f).exists(), "{f} went");
        }
    }

    /// A PKGDIR on another file system (here `/dev/shm`, a tmpfs) gets the packages: a rename
    /// fails there, and the build directory's removal took them with it.
    #[test]
    fn packages_are_kept_in_a_pkgdir_on_another_file_system() {
        use std::os::unix::fs::MetadataExt;
        let build = tempfile::tempdir().expect("temp dir");
        let pkgdir = tempfile::tempdir_in("/dev/shm").expect("a dir on /dev/shm");
        let dev = |p: &Path| std::fs::metadata(p).expect("metadata").dev();
        assert_ne!(
            dev(build.path()),
            dev(pkgdir.path()),
            "the test needs two file systems"
        );
        let build_pkgdir = build.path().join("b1/pkgdir");
        let file = build_pkgdir.join("dev-libs/foo-1.0.gpkg.tar");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"package").expect("write");
        let built = [Built {
            path: file.clone(),
            cpv: "dev-libs/foo-1.0".into(),
            upload_name: "foo-1.0.gpkg.tar".into(),
            size: 7,
            sha256: String::new(),
            slot: None,
        }];
        keep(&build_pkgdir, pkgdir.path(), &built);
        let kept = pkgdir.path().join("dev-libs/foo-1.0.gpkg.tar");
        assert_eq!(std::fs::read(&kept).expect("kept"), b"package");
        assert!(!build.path().join("b1").exists(), "the build dir went");
        assert_eq!(
            std::fs::read_dir(pkgdir.path().join("dev-libs"))
                .expect("dir")
                .count(),
            1,
            "no temporary file is left"
        );
    }

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

    fn built(cpv: &str, slot: Option<&str>) -> Built {
        Built {
            path: PathBuf::from(format!("/p/{cpv}.gpkg.tar")),
            cpv: cpv.to_owned(),
            upload_name: String::new(),
            size: 1,
            sha256: String::new(),
            slot: slot.map(|s| match s.split_once('/') {
                Some((s, sub)) => (s.to_owned(), Some(sub.to_owned())),
                None => (s.to_owned(), None),
            }),
        }
    }

    fn uploaded(lease: &str, wrote: &[(&str, Option<&str>)]) -> Vec<String> {
        let all: Vec<Built> = wrote.iter().map(|(c, s)| built(c, *s)).collect();
        let atom = Atom::parse(lease).expect("atom");
        let (mine, along) = split(&all, &atom);
        assert_eq!(
            mine.len() + along.len(),
            all.len(),
            "every package kept somewhere"
        );
        mine.iter().map(|b| b.cpv.clone()).collect()
    }

    /// h21: `dev-java/jdk:21` bootstrapped by `:17`, two versions under `app-misc/foo`, or an
    /// older version beside an exact lease: the lease's own package goes, the rest stays.
    #[test]
    fn only_the_package_the_lease_covers_is_uploaded() {
        let jdk = [
            ("dev-java/jdk-17.0.9", Some("17")),
            ("dev-java/jdk-21.0.5", Some("21")),
        ];
        assert_eq!(uploaded("dev-java/jdk:21", &jdk), ["dev-java/jdk-21.0.5"]);
        assert_eq!(uploaded("dev-java/jdk", &jdk), ["dev-java/jdk-21.0.5"]);
        assert_eq!(
            uploaded("=dev-java/jdk-17.0.9", &jdk),
            ["dev-java/jdk-17.0.9"]
        );
        let foo = [
            ("app-misc/foo-1.0", Some("0")),
            ("app-misc/foo-2.0_rc1", Some("0")),
        ];
        assert_eq!(uploaded("app-misc/foo", &foo), ["app-misc/foo-2.0_rc1"]);
        assert_eq!(uploaded("<app-misc/foo-2", &foo), ["app-misc/foo-1.0"]);
        assert!(uploaded(">=app-misc/foo-3", &foo).is_empty());
        // A dependency of another name stays; a package named by its path alone (no
        // metadata, so no slot) is judged by name and version, and the server by its slot.
        let deps = [("dev-libs/dep-1", Some("0")), ("app-misc/bar-1", None)];
        assert_eq!(uploaded("app-misc/bar:2", &deps), ["app-misc/bar-1"]);
        let subslot = [("dev-libs/s-1", Some("0/1.2"))];
        assert_eq!(uploaded("dev-libs/s:0/1.2", &subslot), ["dev-libs/s-1"]);
        assert!(uploaded("dev-libs/s:0/1.3", &subslot).is_empty());
    }
}
