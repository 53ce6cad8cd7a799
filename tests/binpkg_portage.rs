//! `swarm_net::binpkg` against the real Portage (tests/portage/): gpkgs that real
//! `emerge --buildpkg` makes pass `inspect` with the metadata `emaint binhost --fix` indexes,
//! and a gpkg from `write_gpkg` (the stand-in builder's output) is installed by real
//! `emerge --usepkgonly`. Needs the Portage venv (`SWARM_PORTAGE_VENV`); fails under
//! `CI=true` without it, skips with a reason otherwise.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::portage::{machine_env, venv};
use swarm_net::binpkg::{self, INDEX_KEYS};

/// One Portage "machine" made by tests/portage/prefix.sh: its environment.
struct Machine {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(dir: &Path, venv: &Path) -> Machine {
        let env = machine_env(dir, venv);
        Machine {
            dir: dir.to_path_buf(),
            env,
        }
    }

    fn pkgdir(&self) -> PathBuf {
        self.dir.join("pkgdir")
    }

    fn prefix(&self) -> PathBuf {
        self.dir.join("prefix")
    }

    /// Runs a Portage command in this machine; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("FEATURES", "-binpkg-request-signature")
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} failed:\n{text}");
        text
    }
}

/// `Packages` as Portage writes it: the header and one map per package.
fn read_index(path: &Path) -> (BTreeMap<String, String>, Vec<BTreeMap<String, String>>) {
    let text = std::fs::read_to_string(path).expect("Packages");
    let mut blocks = text.split("\n\n").map(|block| {
        block
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    });
    let header = blocks.next().expect("header");
    (header, blocks.filter(|b| !b.is_empty()).collect())
}

fn gpkgs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(gpkgs(&p));
        } else if p.to_string_lossy().ends_with(".gpkg.tar") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn real_gpkgs_pass_inspect_with_the_metadata_emaint_indexes() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let m = Machine::new(dir.path(), &venv);
    // hello pulls libbar -> libfoo (sub-slot operator), libssl (USE conditional) and a
    // BDEPEND; virtual/libcrypt is a virtual with a slot operator on its provider.
    m.run(&[
        "emerge",
        "--oneshot",
        "--buildpkg",
        "=app-misc/hello-1.0",
        "virtual/libcrypt",
    ]);
    let files = gpkgs(&m.pkgdir());
    assert!(files.len() >= 7, "emerge made {files:?}");
    std::fs::remove_file(m.pkgdir().join("Packages")).expect("rm Packages");
    m.run(&["emaint", "binhost", "--fix"]);
    let (header, entries) = read_index(&m.pkgdir().join("Packages"));
    assert_eq!(entries.len(), files.len(), "emaint indexed every package");

    let defaults: BTreeMap<&str, &str> = [("SLOT", "0"), ("EAPI", "0")].into();
    for path in &files {
        let pkg = binpkg::inspect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rel = path
            .strip_prefix(m.pkgdir())
            .expect("in pkgdir")
            .to_string_lossy()
            .into_owned();
        let entry = entries
            .iter()
            .find(|e| e.get("PATH") == Some(&rel))
            .unwrap_or_else(|| panic!("emaint has no entry for {rel}"));
        assert_eq!(entry["CPV"], pkg.cpv, "{rel}");
        assert_eq!(entry["SIZE"], pkg.size.to_string(), "{rel}");
        assert_eq!(entry["MD5"], pkg.md5, "{rel}");
        assert_eq!(entry["SHA1"], pkg.sha1, "{rel}");
        assert_eq!(
            pkg.file_name(),
            rel.rsplit('/').next().expect("name"),
            "{rel}"
        );
        for key in INDEX_KEYS {
            let index_key = if *key == "repository" { "REPO" } else { key };
            // Portage leaves out defaults and values equal to the header's (CHOST).
            let expected = entry
                .get(index_key)
                .or_else(|| header.get(index_key).filter(|_| *key == "CHOST"))
                .map(String::as_str)
                .or_else(|| defaults.get(key).copied())
                .unwrap_or("");
            let ours = pkg.metadata.get(*key).map(String::as_str).unwrap_or("");
            assert_eq!(ours, expected, "{rel}: {key}");
        }
    }

    let by_cpv = |cpv: &str| {
        let path = files
            .iter()
            .find(|p| binpkg::inspect(p).is_ok_and(|b| b.cpv == cpv))
            .unwrap_or_else(|| panic!("no gpkg for {cpv}"));
        binpkg::inspect(path).expect("valid")
    };
    let hello = by_cpv("app-misc/hello-1.0");
    assert_eq!(hello.metadata["USE"], "amd64 elibc_glibc kernel_linux ssl");
    assert_eq!(hello.metadata["IUSE"], "+ssl debug");
    assert_eq!(
        hello.metadata["RDEPEND"],
        "dev-libs/libbar dev-libs/libssl:0/3="
    );
    assert_eq!(hello.metadata["BDEPEND"], "dev-util/buildtool");
    assert_eq!(hello.build_id, Some(1));
    let libfoo = by_cpv("dev-libs/libfoo-1.2");
    assert_eq!((libfoo.slot(), libfoo.sub_slot()), ("0", Some("1.2")));
    let virt = by_cpv("virtual/libcrypt-2");
    assert_eq!(virt.metadata["RDEPEND"], "sys-libs/libxcrypt:0/1=");
}

#[test]
fn portage_installs_a_gpkg_that_write_gpkg_made() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let m = Machine::new(dir.path(), &venv);
    let meta: BTreeMap<String, String> = [
        ("SLOT", "0/1.2"),
        ("EAPI", "8"),
        ("KEYWORDS", "amd64"),
        // USE-conditional values stored unreduced: the index reduces them with USE.
        ("LICENSE", "|| ( MIT BSD ) ssl? ( BSD ) !ssl? ( GPL-2 )"),
        ("RESTRICT", "debug? ( strip ) !debug? ( test )"),
        (
            "RDEPEND",
            "debug? ( dev-util/buildtool ) !debug? ( !dev-libs/nothing[ssl?,!debug=] )",
        ),
        ("IUSE", "+ssl debug"),
        ("USE", "amd64 ssl"),
        ("DESCRIPTION", "written by write_gpkg"),
        ("BUILD_ID", "1"),
        ("BUILD_TIME", "1700000000"),
        ("CHOST", "x86_64-pc-linux-gnu"),
        ("repository", "gentoo"),
        ("DEFINED_PHASES", "-"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = m.pkgdir().join("dev-libs/libfoo/libfoo-1.2-1.gpkg.tar");
    binpkg::write_gpkg(
        "dev-libs/libfoo-1.2",
        &meta,
        &[("usr/share/swarm-fixture/libfoo-0", b"dev-libs/libfoo-1.2\n")],
        &out,
    )
    .expect("write_gpkg");
    let pkg = binpkg::inspect(&out).expect("inspect accepts it");
    m.run(&["emaint", "binhost", "--fix"]);
    let (_, entries) = read_index(&m.pkgdir().join("Packages"));
    assert_eq!(entries.len(), 1, "Portage indexed it: {entries:?}");
    assert_eq!(entries[0]["CPV"], "dev-libs/libfoo-1.2");
    assert_eq!(entries[0]["SHA1"], pkg.sha1);
    // swarm's index entry for the same file says what Portage's says, key by key.
    let mut ours = vec![swarm_net::binhost::index::IndexEntry {
        cpv: pkg.cpv.clone(),
        path: "dev-libs/libfoo/libfoo-1.2-1.gpkg.tar".into(),
        size: pkg.size,
        mtime_s: 0,
        md5: pkg.md5.clone(),
        sha1: pkg.sha1.clone(),
        metadata: pkg.metadata.clone(),
    }];
    let text = swarm_net::binhost::index::render(&BTreeMap::new(), 1, &mut ours);
    let block = text.split("\n\n").nth(1).expect("one entry");
    let ours: BTreeMap<&str, &str> = block.lines().filter_map(|l| l.split_once(": ")).collect();
    for (k, v) in &entries[0] {
        if k != "MTIME" {
            assert_eq!(ours.get(k.as_str()), Some(&v.as_str()), "{k}:\n{text}");
        }
    }
    assert_eq!(ours.len(), entries[0].len(), "{text}");
    assert_eq!(ours["LICENSE"], "|| ( MIT BSD ) BSD");
    assert_eq!(ours["RESTRICT"], "test");
    assert_eq!(ours["RDEPEND"], "!dev-libs/nothing[ssl,debug]");
    let log = m.run(&[
        "emerge",
        "--usepkgonly",
        "--oneshot",
        "=dev-libs/libfoo-1.2",
    ]);
    assert!(log.contains("dev-libs/libfoo-1.2"), "{log}");
    let installed = m.prefix().join("usr/share/swarm-fixture/libfoo-0");
    assert_eq!(
        std::fs::read_to_string(&installed)
            .unwrap_or_else(|e| panic!("{}: {e}\n{log}", installed.display())),
        "dev-libs/libfoo-1.2\n"
    );
    assert!(
        m.prefix().join("var/db/pkg/dev-libs/libfoo-1.2").is_dir(),
        "Portage recorded the install"
    );
}

/// What the installed Portage writes for `script`, against the committed `fixture`.
fn fixture_is_current(venv: &Path, script: &str, fixture: &str) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("portage");
    let out = Command::new(venv.join("bin/python"))
        .arg(root.join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root.join(fixture)).expect("fixture");
    String::from_utf8_lossy(&out.stdout) == committed
}

/// The committed use_reduce fixture is what the installed Portage says today.
#[test]
fn the_use_reduce_fixture_is_what_portage_still_writes() {
    let Some(venv) = venv() else { return };
    assert!(
        fixture_is_current(&venv, "use_reduce.py", "use_reduce.tsv"),
        "Portage now reduces differently: regenerate tests/portage/use_reduce.tsv and check swarm's reducer"
    );
}

/// The committed fixture of dependency features per EAPI is what the installed Portage
/// says today.
#[test]
fn the_dep_eapi_fixture_is_what_portage_still_judges() {
    let Some(venv) = venv() else { return };
    assert!(
        fixture_is_current(&venv, "dep_eapi.py", "dep_eapi.tsv"),
        "Portage now judges dependency features per EAPI differently: regenerate \
         tests/portage/dep_eapi.tsv and check swarm_net::binpkg's meta_rules"
    );
}
