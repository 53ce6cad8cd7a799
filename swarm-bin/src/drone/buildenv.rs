//! The drone's build environment as Portage resolves it (issue 17): `portageq envvar -v` for the
//! variables that decide binary compatibility, the profile `make.profile` points at, and the
//! compiler and libc installed (`portageq best_version`). Never make.conf or the package database
//! parsed by hand: profiles, `package.env` and defaults all feed what Portage uses. The settings
//! Portage writes into a binhost's `Packages` header ride along under `pkgindex.` names, never
//! compared, so a release's index header is the one Portage would write (issue 12).

use std::collections::BTreeMap;
use std::path::Path;

use std::time::Duration;
use swarm_core::buildenv::{is_expand_name, INDEX_HEADER_KEYS, INDEX_PREFIX};

/// What the agent asks Portage for by default; `--env-command` replaces it.
pub(crate) const DEFAULT_ENV_COMMAND: &str =
    "portageq envvar -v ARCH CHOST CFLAGS CXXFLAGS LDFLAGS FCFLAGS USE FEATURES ACCEPT_KEYWORDS";

/// FEATURES that change what lands in a binary package; the rest (ccache, parallel-fetch, ...)
/// change how a build runs, not what it makes, and would split the fleet for nothing.
const BINARY_FEATURES: [&str; 7] = [
    "compressdebug",
    "installsources",
    "nostrip",
    "splitdebug",
    "noman",
    "nodoc",
    "noinfo",
];

/// The toolchain packages that decide binary compatibility, as fingerprint keys: the first
/// installed package of each list names it (`GCC=sys-devel/gcc-14.2.1_p20241116`). `best_version`
/// gives the newest installed slot; a drone whose `gcc-config` selects an older one reports the
/// newest, which is the one an upgrade would switch to.
const TOOLCHAIN: [(&str, &[&str]); 2] = [
    ("GCC", &["sys-devel/gcc"]),
    ("LIBC", &["sys-libs/glibc", "sys-libs/musl"]),
];

/// How long Portage may take to answer; a hung `portageq` must not stop the heartbeat for long.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Parses `portageq envvar -v` output as Portage prints it: `NAME=value` or
/// `NAME='quoted value'` per line, values with their words joined by one space.
pub(super) fn parse_raw(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, raw) = line.split_once('=')?;
            let words = shell_words::split(raw).ok()?;
            Some((name.trim().to_string(), words.join(" ")))
        })
        .collect()
}

/// Parses `portageq envvar -v` output into fingerprint values: FEATURES keeps only
/// [`BINARY_FEATURES`].
pub(crate) fn parse_envvar(text: &str) -> BTreeMap<String, String> {
    parse_raw(text)
        .into_iter()
        .map(|(name, mut value)| {
            if name == "FEATURES" {
                value = value
                    .split_whitespace()
                    .filter(|f| BINARY_FEATURES.contains(f))
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            (name, value)
        })
        .collect()
}

/// At most this many names are asked for from `USE_EXPAND_IMPLICIT` and
/// `USE_EXPAND_UNPREFIXED` (Gentoo's profiles name four).
const MAX_EXPANDED: usize = 16;

/// What Portage would write into a `Packages` header, as [`INDEX_PREFIX`] variables: the
/// settings of [`INDEX_HEADER`], the variables `USE_EXPAND_IMPLICIT` and
/// `USE_EXPAND_UNPREFIXED` name and `USE_EXPAND_VALUES_*` of the implicit ones. A value the
/// fingerprint `have` already carries as Portage has it is not repeated; FEATURES always is
/// (the fingerprint keeps only binary-relevant features). Empty values are left out, as
/// Portage leaves them out.
fn index_header(
    portageq: &str,
    have: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let ask = |names: &[String]| -> Result<BTreeMap<String, String>, String> {
        let mut argv = vec![portageq.to_string(), "envvar".into(), "-v".into()];
        argv.extend(names.iter().cloned());
        Ok(parse_raw(&run_accepting(&argv, 1)?)
            .into_iter()
            .filter(|(k, _)| names.contains(k))
            .collect())
    };
    let fixed: Vec<String> = INDEX_HEADER_KEYS.iter().map(|k| k.to_string()).collect();
    let mut found = ask(&fixed)?;
    let names_in = |k: &str| -> Vec<String> {
        found
            .get(k)
            .map(|v| {
                v.split_whitespace()
                    .filter(|n| is_expand_name(n))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let implicit = names_in("USE_EXPAND_IMPLICIT");
    let mut more: Vec<String> = implicit.clone();
    more.extend(names_in("USE_EXPAND_UNPREFIXED"));
    more.sort();
    more.dedup();
    more.truncate(MAX_EXPANDED);
    more.extend(
        implicit
            .iter()
            .take(MAX_EXPANDED)
            .map(|n| format!("USE_EXPAND_VALUES_{n}")),
    );
    if !more.is_empty() {
        found.extend(ask(&more)?);
    }
    let canonical = swarm_core::BuildEnv::new(have.clone()).unwrap_or_default();
    Ok(found
        .into_iter()
        .filter(|(k, v)| !v.is_empty() && (k == "FEATURES" || canonical.get(k) != Some(v.as_str())))
        .map(|(k, v)| (format!("{INDEX_PREFIX}{k}"), v))
        .collect())
}

/// The profile a Portage configuration root uses, as the part after `profiles/` of the path
/// `make.profile` points at (`default/linux/amd64/23.0`), or the whole path when it has none.
pub(crate) fn profile_of(config_root: &Path) -> Option<String> {
    let link = config_root.join("etc/portage/make.profile");
    let target = std::fs::canonicalize(&link).ok()?;
    let text = target.to_string_lossy().into_owned();
    Some(match text.rsplit_once("/profiles/") {
        Some((_, p)) => p.to_string(),
        None => text,
    })
}

/// Runs `argv` and returns what it printed; `Err` says why it could not, in words.
fn run(argv: &[String]) -> Result<String, String> {
    run_accepting(argv, 0)
}

/// [`run`] that also accepts exit status `also_ok` (`portageq envvar` exits 1 when one of the
/// variables asked for is unset or empty, after printing the others).
pub(super) fn run_accepting(argv: &[String], also_ok: i32) -> Result<String, String> {
    let program = argv.first().ok_or("the env command is empty")?;
    // A fingerprint is small; 1 MiB bounds a runaway command.
    let ran =
        crate::cli::bounded_run::run_capped(argv, TIMEOUT, program, 1 << 20).map_err(|e| {
            let text = e.to_string();
            if text.contains("not on PATH") || text.starts_with("cannot run") {
                format!("{program} did not start: {text}")
            } else {
                text
            }
        })?;
    if ran.code != Some(0) && ran.code != Some(also_ok) {
        let status = ran
            .code
            .map_or("killed by a signal".to_owned(), |c| format!("exit {c}"));
        let err: String = ran.stderr.trim().chars().take(4096).collect();
        return Err(format!("{program} failed ({status}): {err}"));
    }
    Ok(ran.stdout)
}

/// The root Portage works on (`portageq envvar EROOT`), which its other queries take.
fn eroot_of(portageq: &str) -> Result<String, String> {
    let eroot = run(&[portageq.into(), "envvar".into(), "EROOT".into()])?;
    let eroot = eroot.trim();
    Ok(if eroot.is_empty() { "/" } else { eroot }.to_owned())
}

/// The compiler and libc Portage has installed, asked of the same `portageq` the env command
/// runs (`best_version EROOT atom`); a package not installed is left out, so an expectation
/// naming it shows "not reported".
fn toolchain(portageq: &str, eroot: &str) -> Result<BTreeMap<String, String>, String> {
    let mut found = BTreeMap::new();
    for (key, atoms) in TOOLCHAIN {
        for atom in atoms {
            let best = run(&[
                portageq.into(),
                "best_version".into(),
                eroot.into(),
                (*atom).into(),
            ])?;
            if let Some(cpv) = best.split_whitespace().next() {
                found.insert(key.to_string(), cpv.to_string());
                break;
            }
        }
    }
    Ok(found)
}

/// Runs `argv` and reads the environment; `Err` says why there is none, in words. When the
/// command is `portageq`, the toolchain ([`TOOLCHAIN`]) and each repository's snapshot
/// (`SNAPSHOT.<repo>`) are asked of it too.
pub(crate) fn read(argv: &[String]) -> Result<BTreeMap<String, String>, String> {
    let text = run(argv)?;
    let mut vars = parse_envvar(&text);
    let root = std::env::var_os("PORTAGE_OVERRIDE_EPREFIX")
        .or_else(|| std::env::var_os("PORTAGE_CONFIGROOT"))
        .unwrap_or_else(|| "/".into());
    if let Some(profile) = profile_of(Path::new(&root)) {
        vars.insert("PROFILE".into(), profile);
    }
    let program = &argv[0];
    if Path::new(program)
        .file_name()
        .is_some_and(|n| n == "portageq")
    {
        let eroot = eroot_of(program)?;
        vars.extend(toolchain(program, &eroot)?);
        vars.extend(super::snapshot::snapshots(program, &eroot, run_accepting)?);
        // The index header is for the binhost, not for matching work: without it the drone
        // still builds, and the release says its header lacks the keys.
        match index_header(program, &vars) {
            Ok(header) => vars.extend(header),
            Err(why) => tracing::warn!("Packages header variables not read from Portage: {why}"),
        }
    }
    // Checked as the server checks it: an environment it refuses got every heartbeat refused
    // (400), so the drone built on under the last one it had heard (h35 F1).
    swarm_core::buildenv::BuildEnv::new(vars.clone()).map_err(|e| {
        format!(
            "{} printed an environment the server would refuse: {e}",
            argv[0]
        )
    })?;
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portageq_is_asked_for_the_packages_header_and_the_variables_its_lists_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("portageq");
        let log = dir.path().join("asked");
        // envvar -v NAMES...: answers the names it knows, as portageq prints them.
        crate::test_exec::write_script(
            &fake,
            &format!(
                // and exits 1, as portageq does when one of them is empty or unset.
                "#!/bin/sh\necho \"$*\" >> {log}\n[ \"$1\" = envvar ] || exit 0\nshift; shift\n\
                 for n in \"$@\"; do case $n in\n\
                 USE) echo \"USE='amd64 ssl'\" ;;\n\
                 FEATURES) echo \"FEATURES='buildpkg splitdebug'\" ;;\n\
                 CONFIG_PROTECT) echo \"CONFIG_PROTECT='/etc /usr/share/config'\" ;;\n\
                 INSTALL_MASK) echo \"INSTALL_MASK=''\" ;;\n\
                 USE_EXPAND_IMPLICIT) echo \"USE_EXPAND_IMPLICIT='ARCH ELIBC bad-name'\" ;;\n\
                 USE_EXPAND_UNPREFIXED) echo USE_EXPAND_UNPREFIXED=ARCH ;;\n\
                 ARCH) echo ARCH=amd64 ;;\n\
                 ELIBC) echo ELIBC=glibc ;;\n\
                 USE_EXPAND_VALUES_ARCH) echo \"USE_EXPAND_VALUES_ARCH='amd64 arm64'\" ;;\n\
                 esac; done\nexit 1\n",
                log = log.display()
            ),
        );
        let have: BTreeMap<String, String> = [
            ("USE".to_string(), "ssl amd64".to_string()),
            ("FEATURES".to_string(), "splitdebug".to_string()),
            ("ARCH".to_string(), "amd64".to_string()),
        ]
        .into();
        let got = index_header(&fake.to_string_lossy(), &have).expect("reads");
        assert_eq!(
            got.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            [
                "pkgindex.CONFIG_PROTECT=/etc /usr/share/config",
                "pkgindex.ELIBC=glibc",
                "pkgindex.FEATURES=buildpkg splitdebug",
                "pkgindex.USE_EXPAND_IMPLICIT=ARCH ELIBC bad-name",
                "pkgindex.USE_EXPAND_UNPREFIXED=ARCH",
                "pkgindex.USE_EXPAND_VALUES_ARCH=amd64 arm64",
            ],
            "USE and ARCH are in the fingerprint as Portage has them; empty INSTALL_MASK is left out"
        );
        let asked = std::fs::read_to_string(&log).expect("log");
        let second = asked.lines().nth(1).expect("a second query");
        assert_eq!(
            second,
            "envvar -v ARCH ELIBC USE_EXPAND_VALUES_ARCH USE_EXPAND_VALUES_ELIBC"
        );
        // The result is a valid environment for the server.
        let mut all = have.clone();
        all.extend(got);
        assert!(swarm_core::BuildEnv::new(all).is_ok());
    }

    #[test]
    fn portageq_output_is_read_as_portage_prints_it() {
        let text = "ARCH=amd64\nCFLAGS='-O2 -pipe -march=x86-64-v3'\nLDFLAGS=''\n\
                    USE='amd64 elibc_glibc ssl'\n\
                    FEATURES='assume-digests buildpkg ccache splitdebug nostrip'\n";
        let vars = parse_envvar(text);
        assert_eq!(vars["ARCH"], "amd64");
        assert_eq!(vars["CFLAGS"], "-O2 -pipe -march=x86-64-v3");
        assert_eq!(vars["LDFLAGS"], "");
        assert_eq!(vars["USE"], "amd64 elibc_glibc ssl");
        assert_eq!(vars["FEATURES"], "splitdebug nostrip");
    }

    #[test]
    fn the_profile_is_named_from_its_profiles_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = dir.path().join("repo/profiles/default/linux/amd64/23.0");
        std::fs::create_dir_all(&profile).expect("profile dir");
        std::fs::create_dir_all(dir.path().join("root/etc/portage")).expect("etc");
        std::os::unix::fs::symlink(&profile, dir.path().join("root/etc/portage/make.profile"))
            .expect("link");
        assert_eq!(
            profile_of(&dir.path().join("root")).as_deref(),
            Some("default/linux/amd64/23.0")
        );
        assert_eq!(profile_of(&dir.path().join("nowhere")), None);
    }

    #[test]
    fn a_missing_or_failing_command_says_why() {
        let missing = read(&["/nonexistent/portageq".into()]).expect_err("no such program");
        assert!(missing.contains("did not start"), "{missing}");
        let failing =
            read(&["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()]).expect_err("exit 3");
        assert!(failing.contains("boom"), "{failing}");
        // What the server would refuse is no environment either (h35 F1).
        let refused = read(&[
            "sh".into(),
            "-c".into(),
            "printf 'CFLAGS=-O2\\n=novalue\\nbad key=x\\n'".into(),
        ])
        .expect_err("a key the server refuses");
        assert!(refused.contains("would refuse"), "{refused}");
    }

    #[test]
    fn a_portageq_command_also_names_the_installed_compiler_and_libc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("portageq");
        // Answers as portageq does: envvar, then best_version EROOT ATOM (empty when none).
        crate::test_exec::write_script(
            &fake,
            "#!/bin/sh\ncase \"$1 $3\" in\n\
             'envvar '*) [ \"$2\" = EROOT ] && echo /r/ || echo \"CFLAGS='-O2'\" ;;\n\
             'best_version sys-devel/gcc') [ \"$2\" = /r/ ] && echo sys-devel/gcc-14.2.1 ;;\n\
             'best_version sys-libs/musl') echo sys-libs/musl-1.2.5 ;;\n\
             *) echo ;;\nesac\n",
        );
        let path = fake.to_string_lossy().into_owned();
        let vars = read(&[path, "envvar".into(), "-v".into(), "CFLAGS".into()]).expect("reads");
        assert_eq!(vars["CFLAGS"], "-O2");
        assert_eq!(vars["GCC"], "sys-devel/gcc-14.2.1");
        assert_eq!(
            vars["LIBC"], "sys-libs/musl-1.2.5",
            "glibc absent, musl next"
        );
        assert!(
            !vars.keys().any(|k| k.starts_with(INDEX_PREFIX)),
            "a portageq that knows no header settings adds none: {vars:?}"
        );
        // Another command is not asked for a toolchain it cannot answer.
        let other = read(&["sh".into(), "-c".into(), "echo CFLAGS=-O2".into()]).expect("sh");
        assert!(!other.contains_key("GCC"), "{other:?}");
    }
}
