//! The Portage snapshot a drone builds from, per repository (issue 17): the repositories Portage
//! itself knows (`portageq get_repos EROOT`, `portageq get_repo_path EROOT REPO`), each named by
//! its `metadata/timestamp.chk` (rsync and webrsync trees), else `metadata/timestamp.x`, else the
//! commit a git checkout is at (`git -C PATH rev-parse HEAD`). A repository with none of these
//! reports nothing. The values go into the fingerprint as `SNAPSHOT.<repo>`, compared only when
//! a profile's expectation names them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use swarm_core::buildenv::SNAPSHOT_PREFIX;

/// At most this many repositories are reported: a fingerprint has room for 96 variables.
const MAX_REPOS: usize = 16;

/// A snapshot value longer than this is not a timestamp or a commit; it is left out.
const MAX_VALUE: usize = 128;

/// Runs a command with a deadline and returns what it printed (see `buildenv::run_accepting`).
pub(crate) type Runner = fn(&[String], i32) -> Result<String, String>;

/// How long all repositories together may take. Each command has its own deadline, but 16
/// repositories of a hung `portageq` or `git` would otherwise stall the heartbeat thread for
/// 33 of them; repositories not reached within this are left out (and logged).
const BUDGET: Duration = Duration::from_secs(30);

/// `SNAPSHOT.<repo>` → snapshot for every repository `portageq` names under `eroot`. `Err`
/// only when Portage cannot list its repositories; a repository whose snapshot cannot be read
/// is left out.
pub(crate) fn snapshots(
    portageq: &str,
    eroot: &str,
    run: Runner,
) -> Result<BTreeMap<String, String>, String> {
    snapshots_within(portageq, eroot, run, BUDGET)
}

/// [`snapshots`] that stops asking once `budget` has passed.
fn snapshots_within(
    portageq: &str,
    eroot: &str,
    run: Runner,
    budget: Duration,
) -> Result<BTreeMap<String, String>, String> {
    let started = Instant::now();
    let repos = run(&[portageq.into(), "get_repos".into(), eroot.into()], 0)?;
    let mut found = BTreeMap::new();
    for repo in repos
        .split_whitespace()
        .filter(|r| is_repo_name(r))
        .take(MAX_REPOS)
    {
        if started.elapsed() >= budget {
            tracing::warn!(
                repo,
                "repository snapshots not all read within {budget:?}; the rest are left out"
            );
            break;
        }
        // get_repo_path exits 1 (and prints an empty line) for a repository it does not know.
        let path = run(
            &[
                portageq.into(),
                "get_repo_path".into(),
                eroot.into(),
                repo.into(),
            ],
            1,
        )?;
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        if let Some(value) = snapshot_of(Path::new(path), run) {
            found.insert(format!("{SNAPSHOT_PREFIX}{repo}"), value);
        }
    }
    Ok(found)
}

/// Whether Portage's repository name can be a fingerprint key's tail: `[A-Za-z0-9_-]`, as
/// Portage's own repo_name rule, short enough that `SNAPSHOT.<repo>` stays within 64 bytes.
fn is_repo_name(name: &str) -> bool {
    (1..=64 - SNAPSHOT_PREFIX.len()).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The snapshot of the repository at `path`: the first line of `metadata/timestamp.chk`, else of
/// `metadata/timestamp.x`, else the git commit its checkout is at; `None` when none is there.
pub(crate) fn snapshot_of(path: &Path, run: Runner) -> Option<String> {
    for file in ["metadata/timestamp.chk", "metadata/timestamp.x"] {
        if let Some(v) = first_line(&path.join(file)) {
            return Some(v);
        }
    }
    if !path.join(".git").exists() {
        return None;
    }
    let argv = [
        "git".to_owned(),
        "-C".to_owned(),
        path.to_string_lossy().into_owned(),
        "rev-parse".to_owned(),
        "HEAD".to_owned(),
    ];
    match run(&argv, 0) {
        Ok(head) => bounded(head.lines().next().unwrap_or_default()),
        Err(why) => {
            tracing::warn!(repo = %path.display(), "no snapshot for a git repository: {why}");
            None
        }
    }
}

/// The first line of a small regular file, trimmed; `None` when it is missing, empty, too long,
/// or not a regular file. Opened non-blocking and checked on the open handle: a FIFO planted as
/// `timestamp.chk` would otherwise hang the heartbeat thread waiting for a writer.
fn first_line(file: &Path) -> Option<String> {
    let (f, _) = swarm_net::regular_file::open_regular(file).ok()?;
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text).ok()?;
    bounded(text.lines().next().unwrap_or_default())
}

fn bounded(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty() && v.len() <= MAX_VALUE).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &[String], _: i32) -> Result<String, String> {
        Err("not asked".into())
    }

    #[test]
    fn a_repository_is_named_by_timestamp_chk_then_timestamp_x() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        assert_eq!(snapshot_of(repo, never), None, "no metadata, no git");
        std::fs::create_dir_all(repo.join("metadata")).expect("metadata");
        std::fs::write(
            repo.join("metadata/timestamp.x"),
            "1765000000 Sat Dec  6 2025\n",
        )
        .expect("x");
        assert_eq!(
            snapshot_of(repo, never).as_deref(),
            Some("1765000000 Sat Dec  6 2025")
        );
        std::fs::write(
            repo.join("metadata/timestamp.chk"),
            "Mon, 16 Feb 2026 00:45:01 +0000\nmore\n",
        )
        .expect("chk");
        assert_eq!(
            snapshot_of(repo, never).as_deref(),
            Some("Mon, 16 Feb 2026 00:45:01 +0000")
        );
        std::fs::write(
            repo.join("metadata/timestamp.chk"),
            "x".repeat(MAX_VALUE + 1),
        )
        .expect("long");
        assert_eq!(
            snapshot_of(repo, never).as_deref(),
            Some("1765000000 Sat Dec  6 2025"),
            "an over-long timestamp.chk is not a snapshot"
        );
    }

    #[test]
    fn a_git_checkout_is_named_by_its_head_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        std::fs::create_dir_all(repo.join(".git")).expect(".git");
        fn head(argv: &[String], _: i32) -> Result<String, String> {
            assert_eq!(argv[0], "git");
            assert_eq!(&argv[3..], ["rev-parse", "HEAD"]);
            Ok("0123456789abcdef0123456789abcdef01234567\n".into())
        }
        assert_eq!(
            snapshot_of(repo, head).as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        fn broken(_: &[String], _: i32) -> Result<String, String> {
            Err("git did not start".into())
        }
        assert_eq!(snapshot_of(repo, broken), None);
    }

    #[test]
    fn a_fifo_or_a_device_in_place_of_timestamp_chk_is_not_waited_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().to_path_buf();
        std::fs::create_dir_all(repo.join("metadata")).expect("metadata");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            repo.join("metadata/timestamp.chk"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink("/dev/zero", repo.join("metadata/timestamp.x")).expect("ln");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(snapshot_of(&repo, never));
        });
        // Opening a FIFO for reading waits for a writer: the heartbeat thread would hang.
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("snapshot_of did not return: it waits on the FIFO");
        assert_eq!(got, None, "neither a FIFO nor a device is a snapshot");
    }

    #[test]
    fn slow_repositories_stop_being_asked_once_the_budget_is_spent() {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn slow(argv: &[String], _: i32) -> Result<String, String> {
            CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            Ok(if argv[1] == "get_repos" {
                (0..16).map(|i| format!("r{i} ")).collect()
            } else {
                String::new()
            })
        }
        let found =
            snapshots_within("portageq", "/", slow, Duration::from_millis(100)).expect("ok");
        assert!(found.is_empty());
        let calls = CALLS.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            calls <= 4,
            "{calls} commands run; the budget allows about 3"
        );
    }

    /// Runs a command as `buildenv::run_accepting` does, without its deadline.
    fn sh(argv: &[String], also_ok: i32) -> Result<String, String> {
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| e.to_string())?;
        let ok = out.status.success() || out.status.code() == Some(also_ok);
        ok.then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .ok_or_else(|| format!("{argv:?} failed"))
    }

    #[test]
    fn a_real_git_checkout_reports_the_commit_git_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().to_string_lossy().into_owned();
        let git = |args: &[&str]| {
            let mut argv = vec!["git".to_owned(), "-C".to_owned(), repo.clone()];
            argv.extend(args.iter().map(|a| (*a).to_owned()));
            sh(&argv, 0)
        };
        if git(&["init", "-q"]).is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no git"
            );
            eprintln!("SKIPPED: no git");
            return;
        }
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ])
        .expect("commit");
        let head = git(&["rev-parse", "HEAD"]).expect("head");
        assert_eq!(snapshot_of(dir.path(), sh).as_deref(), Some(head.trim()));
    }

    #[test]
    fn every_repository_portage_knows_is_asked_for_and_odd_names_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("portageq");
        let (gentoo, local) = (dir.path().join("gentoo"), dir.path().join("local"));
        std::fs::create_dir_all(gentoo.join("metadata")).expect("gentoo");
        std::fs::create_dir_all(&local).expect("local");
        std::fs::write(
            gentoo.join("metadata/timestamp.chk"),
            "Tue, 01 Dec 2026 00:00:00 +0000\n",
        )
        .expect("chk");
        crate::test_exec::write_script(
            &fake,
            &format!(
                "#!/bin/sh\ncase \"$1 $2 $3\" in\n\
                 'get_repos /r/ ') echo 'gentoo local b@d' ;;\n\
                 'get_repo_path /r/ gentoo') echo {g} ;;\n\
                 'get_repo_path /r/ local') echo {l} ;;\n\
                 *) echo; exit 1 ;;\nesac\n",
                g = gentoo.display(),
                l = local.display()
            ),
        );
        let got = snapshots(&fake.to_string_lossy(), "/r/", sh).expect("reads");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            [(
                "SNAPSHOT.gentoo".to_owned(),
                "Tue, 01 Dec 2026 00:00:00 +0000".to_owned()
            )],
            "local has no snapshot; b@d is not a repository name"
        );
        assert!(is_repo_name("gentoo") && is_repo_name("my_overlay-2"));
        assert!(!is_repo_name("") && !is_repo_name("a.b") && !is_repo_name(&"x".repeat(56)));
    }
}
