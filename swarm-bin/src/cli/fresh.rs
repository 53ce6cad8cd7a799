//! `swarm fresh`: one command for "rebuild the world from today's tree".
//!
//! It runs the real `emerge --pretend --emptytree --tree` (or reads its output),
//! reads the dependency edges from the tree, finds the Portage snapshot the
//! list was computed on (the repository's `metadata/timestamp.chk`), and sends
//! it all as one `POST /api/v1/queue` with `fresh: true`: the server starts a
//! new queue generation and queues the list in the same commit, and every
//! drone on another snapshot is told to sync to this one.

use super::bounded_run::{self, Ran};
use super::confirm::confirm;
use super::conn::{admin_error, AdminArgs};
use super::fmt::{emit, emit_json, plural};
use super::import::{self, Format};
use anyhow::Context;
use serde_json::json;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_core::{Atom, PackageSpec, PortageSnapshot};
use swarm_net::client::admin::EnqueueRequest;

/// The longest world file or emerge output read.
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// How long `portageq` may take to name the repository.
const PORTAGEQ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm fresh                                   # emerge -p --emptytree --tree @world, asks first
  swarm fresh --yes @world -- --with-bdeps=y    # extra emerge arguments after --
  swarm fresh --world /var/lib/portage/world --json --yes
  swarm fresh --profile desktop --yes           # the profile's world set; other profiles' lists stay
  emerge -p --emptytree --tree @world | swarm fresh --input - --portage-timestamp \"$(cat /var/db/repos/gentoo/metadata/timestamp.chk)\" --yes")]
pub(crate) struct FreshArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// What to rebuild, as emerge takes it: sets and atoms [default: @world].
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
    /// Rebuild the atoms listed in FILE (a world file: one atom or @set per line, `#` comments).
    #[arg(long, value_name = "FILE", conflicts_with = "targets")]
    world: Option<PathBuf>,
    /// Read `emerge -p --emptytree --tree` output from FILE (`-`: standard
    /// input) instead of running emerge here.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["targets", "world", "emerge_args"])]
    input: Option<PathBuf>,
    /// The emerge program to run.
    #[arg(long, value_name = "PROGRAM", default_value = "emerge")]
    emerge: String,
    /// Give up on emerge (and portageq) after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 1800)]
    emerge_timeout_s: u64,
    /// The Portage snapshot the list was made on (timestamp.chk's text, or
    /// `2026-02-16 00:45`) instead of reading the repository's timestamp.chk.
    #[arg(long, value_name = "TIMESTAMP")]
    portage_timestamp: Option<String>,
    /// Read the snapshot from this timestamp.chk instead of the repository's.
    #[arg(long, value_name = "FILE", conflicts_with = "portage_timestamp")]
    timestamp_file: Option<PathBuf>,
    /// The repository whose metadata/timestamp.chk names the snapshot (found with portageq).
    #[arg(long, value_name = "NAME", default_value = "gentoo")]
    repo: String,
    /// Queue without a Portage snapshot: drones are not asked to sync.
    #[arg(long, conflicts_with_all = ["portage_timestamp", "timestamp_file"])]
    no_snapshot: bool,
    /// Queue the list even though emerge exited with an error after printing
    /// it (a blocker or a slot conflict it could not solve).
    #[arg(long)]
    allow_emerge_errors: bool,
    /// Print what would be queued and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start the new generation without asking (needed when there is no terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Replace only this profile's list (its world set when no TARGET, --world or --input is
    /// given): its packages that are not being built leave the queue, the new list is queued
    /// for it, other profiles' packages and the generation stay. Run it where Portage is
    /// configured like the profile (or pass --emerge), since emerge computes the list.
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// More emerge arguments, after `--`.
    #[arg(last = true, value_name = "EMERGE_ARGS")]
    emerge_args: Vec<String>,
}

/// Where the list came from, for messages.
struct Listing {
    /// The emerge command line, or the input file.
    source: String,
    text: String,
}

/// What `--profile` names: its world set and how many packages it has queued.
struct ProfileFacts {
    world: Vec<String>,
    packages: u64,
}

fn profile_facts(args: &FreshArgs, name: &str) -> anyhow::Result<ProfileFacts> {
    anyhow::ensure!(
        name != swarm_core::profile::DEFAULT_PROFILE,
        "the default profile's list is the whole generation: run `swarm fresh` without --profile"
    );
    let c = args.admin.client()?;
    let all = c.client.profiles().map_err(super::conn::read_error)?;
    let list = all.body["profiles"].as_array().cloned().unwrap_or_default();
    let Some(p) = list.iter().find(|p| p["name"] == name) else {
        anyhow::bail!(
            "no profile {name:?}: create it first (`swarm profile create {name} ...`); nothing was changed"
        );
    };
    Ok(ProfileFacts {
        world: p["world"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        packages: p["packages"].as_u64().unwrap_or_default(),
    })
}

pub(crate) fn run(args: FreshArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.emerge_timeout_s.max(1));
    let profile = match &args.profile {
        Some(name) => Some((name.clone(), profile_facts(&args, name)?)),
        None => None,
    };
    let targets = match &profile {
        Some((name, facts))
            if args.targets.is_empty() && args.world.is_none() && args.input.is_none() =>
        {
            anyhow::ensure!(
                !facts.world.is_empty(),
                "profile {name} has no world set: name the targets, or write one down with                  `swarm profile edit {name} --world-file FILE`; nothing was changed"
            );
            facts.world.clone()
        }
        _ => args.targets.clone(),
    };
    let listing = match &args.input {
        Some(file) => Listing {
            source: file.display().to_string(),
            text: read_bounded(file)?,
        },
        None => run_emerge(&args, &targets, timeout)?,
    };
    let mut packages =
        import::parse(&listing.text, Format::Emerge, &listing.source).with_context(|| {
            format!(
                "reading the output of {} (nothing was changed)",
                listing.source
            )
        })?;
    anyhow::ensure!(
        !packages.is_empty(),
        "{} lists no package to build: nothing to start a generation with (nothing was changed)",
        listing.source
    );
    let (snapshot, snapshot_from) = snapshot(&args, timeout)?;
    let edges: usize = packages.iter().map(|p| p.deps.len()).sum();
    if let Some((name, _)) = &profile {
        for p in &mut packages {
            p.profile = Some(name.clone());
        }
    }
    let request = EnqueueRequest {
        packages,
        portage_timestamp: snapshot.as_ref().map(|s| s.as_str().to_owned()),
        fresh: true,
        profile: profile.as_ref().map(|(n, _)| n.clone()),
    };
    let summary = json!({
        "profile": request.profile,
        "source": listing.source,
        "packages": request.packages.len(),
        "edges": edges,
        "portage_snapshot": request.portage_timestamp,
        "portage_snapshot_from": snapshot_from,
    });
    if args.dry_run {
        if args.json {
            let mut v = summary;
            v["dry_run"] = json!(true);
            v["request"] = serde_json::to_value(&request)?;
            return emit_json(&v);
        }
        return emit(
            &(describe(
                &request.packages,
                edges,
                &request.portage_timestamp,
                &snapshot_from,
            ) + "\ndry run: nothing was sent\n"),
        );
    }
    let c = args.admin.client()?;
    let synced = request
        .portage_timestamp
        .as_ref()
        .map(|s| format!(" (Portage snapshot {s}: drones on another one sync first)"))
        .unwrap_or_default();
    let what = match &profile {
        Some((name, facts)) => format!(
            "`fresh --profile {name}` replaces profile {name}'s list: it drops its {} that are \
             not being built, revokes its not-started work, and queues {} from {} for it{synced}; \
             other profiles' packages stay.",
            plural(facts.packages as usize, "queued package", "queued packages"),
            plural(request.packages.len(), "package", "packages"),
            listing.source,
        ),
        None => format!(
            "`fresh` starts a new queue generation: it drops {}, revokes not-started work, \
             and queues {} from {}{synced}.",
            super::control::fresh_drops(&c),
            plural(request.packages.len(), "package", "packages"),
            listing.source,
        ),
    };
    confirm(&what, args.yes)?;
    let answer = c
        .client
        .enqueue(&request)
        .map_err(|e| admin_error(e, &c.token_source))?;
    let reply = &answer.body;
    if args.json {
        let mut v = summary;
        v["server"] = answer.raw.clone();
        return emit_json(&v);
    }
    let head = match &profile {
        Some((name, _)) => format!("profile {name}"),
        None => format!("generation {}", reply.generation.unwrap_or_default()),
    };
    let mut text = format!(
        "{head}: queued {} of {} ({} from the tree)\n",
        plural(reply.queued as usize, "package", "packages"),
        request.packages.len(),
        plural(edges, "dependency edge", "dependency edges"),
    );
    if let Some(f) = &reply.fresh {
        text += &format!("  {f}\n");
    }
    text += &match &reply.portage_snapshot {
        Some(s) => format!(
            "  Portage snapshot {s} ({snapshot_from}): drones on another one are told to sync\n"
        ),
        None => "  no Portage snapshot: drones are not synced\n".to_owned(),
    };
    emit(&text)
}

fn describe(
    packages: &[PackageSpec],
    edges: usize,
    snapshot: &Option<String>,
    from: &str,
) -> String {
    let mut s = format!(
        "would queue {} with {} as a new generation\n",
        plural(packages.len(), "package", "packages"),
        plural(edges, "dependency edge", "dependency edges"),
    );
    s += &match snapshot {
        Some(t) => format!("  Portage snapshot {t} ({from})\n"),
        None => "  no Portage snapshot\n".to_owned(),
    };
    for p in packages.iter().take(20) {
        s += &format!("  {}\n", p.atom);
    }
    if packages.len() > 20 {
        s += &format!("  ... and {} more\n", packages.len() - 20);
    }
    s
}

pub(crate) fn read_bounded(file: &Path) -> anyhow::Result<String> {
    let name = file.display().to_string();
    let mut text = String::new();
    let read = if name == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("cannot open {name}"))?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
    };
    read.with_context(|| format!("cannot read {name}"))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_INPUT_BYTES,
        "{name} is over {} MiB: not an emerge listing or a world file",
        MAX_INPUT_BYTES >> 20
    );
    Ok(text)
}

/// Targets from a world file: one atom or `@set` per line; `#` starts a comment.
pub(crate) fn world_targets(text: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or_default().trim();
        if t.is_empty() {
            continue;
        }
        if let Some(set) = t.strip_prefix('@') {
            anyhow::ensure!(
                !set.is_empty()
                    && set
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b)),
                "{name}:{}: {t:?} is not a set name",
                i + 1
            );
        } else {
            Atom::parse(t).with_context(|| format!("{name}:{}", i + 1))?;
        }
        out.push(t.to_owned());
    }
    anyhow::ensure!(!out.is_empty(), "{name} names no package or set");
    Ok(out)
}

/// The emerge command line: pretend, empty tree, tree view, no colour or spinner.
pub(crate) fn emerge_argv(emerge: &str, targets: &[String], extra: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        emerge,
        "--pretend",
        "--emptytree",
        "--tree",
        "--color=n",
        "--nospinner",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if targets.is_empty() {
        argv.push("@world".to_owned());
    } else {
        argv.extend(targets.iter().cloned());
    }
    argv.extend(extra.iter().cloned());
    argv
}

fn run_emerge(args: &FreshArgs, targets: &[String], timeout: Duration) -> anyhow::Result<Listing> {
    let targets = match &args.world {
        Some(file) => world_targets(&read_bounded(file)?, &file.display().to_string())?,
        None => targets.to_vec(),
    };
    let argv = emerge_argv(&args.emerge, &targets, &args.emerge_args);
    let shown = shell_words::join(&argv);
    let ran = bounded_run::run(&argv, timeout, &format!("`{shown}`")).map_err(|e| {
        e.context(
            "run `swarm fresh` where Portage is installed, or pipe emerge's output in: \
                   `emerge -p --emptytree --tree @world | swarm fresh --input -`",
        )
    })?;
    check_emerge(&ran, &shown, args.allow_emerge_errors)?;
    Ok(Listing {
        source: format!("`{shown}`"),
        text: ran.stdout,
    })
}

/// Refuses a failed or cut emerge run, with what emerge said.
fn check_emerge(ran: &Ran, shown: &str, allow_errors: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !ran.truncated,
        "`{shown}` printed over {} MiB; nothing was queued",
        bounded_run::MAX_OUTPUT_BYTES >> 20
    );
    if ran.code == Some(0) {
        return Ok(());
    }
    let listed = import::parse(&ran.stdout, Format::Emerge, "emerge").is_ok_and(|p| !p.is_empty());
    if listed && allow_errors {
        tracing::warn!(code = ?ran.code, "emerge reported an error after its list; queueing the list anyway (--allow-emerge-errors)");
        return Ok(());
    }
    let hint = if listed {
        "emerge printed a list but reported a problem with it; fix it, or pass \
         --allow-emerge-errors to queue the list anyway"
    } else {
        "emerge could not compute the list"
    };
    anyhow::bail!(
        "`{shown}` failed (exit {}); nothing was changed. {hint}. emerge said:\n{}",
        ran.code.map_or("by a signal".to_owned(), |c| c.to_string()),
        ran.tail(25)
    )
}

/// The snapshot to stamp and where it came from.
fn snapshot(
    args: &FreshArgs,
    timeout: Duration,
) -> anyhow::Result<(Option<PortageSnapshot>, String)> {
    if args.no_snapshot {
        return Ok((None, "--no-snapshot".to_owned()));
    }
    if let Some(t) = &args.portage_timestamp {
        let s = PortageSnapshot::parse(t).context("--portage-timestamp")?;
        return Ok((Some(s), "--portage-timestamp".to_owned()));
    }
    let file = match &args.timestamp_file {
        Some(f) => f.clone(),
        None => repo_timestamp_file(&args.emerge, &args.repo, timeout.min(PORTAGEQ_TIMEOUT))
            .context(
                "cannot find the Portage snapshot to stamp; pass --portage-timestamp or \
                 --timestamp-file, or --no-snapshot to queue without syncing drones",
            )?,
    };
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read the Portage snapshot from {} (pass --portage-timestamp, or \
             --no-snapshot to queue without syncing drones)",
            file.display()
        )
    })?;
    let s = PortageSnapshot::parse(&text).with_context(|| format!("{}", file.display()))?;
    Ok((Some(s), file.display().to_string()))
}

/// `<repo>/metadata/timestamp.chk`, the repository found with portageq (next
/// to `emerge` when that is a path).
fn repo_timestamp_file(emerge: &str, repo: &str, timeout: Duration) -> anyhow::Result<PathBuf> {
    let portageq = match Path::new(emerge).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("portageq").display().to_string(),
        _ => "portageq".to_owned(),
    };
    let ask = |args: &[&str]| -> anyhow::Result<String> {
        let mut argv = vec![portageq.clone()];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let ran = bounded_run::run(&argv, timeout, &format!("`{}`", shell_words::join(&argv)))?;
        anyhow::ensure!(
            ran.code == Some(0) && !ran.stdout.trim().is_empty(),
            "`{}` failed: {}",
            shell_words::join(&argv),
            ran.tail(5)
        );
        Ok(ran.stdout.trim().to_owned())
    };
    let eroot = ask(&["envvar", "EROOT"])?;
    let path = ask(&["get_repo_path", &eroot, repo])?;
    Ok(Path::new(&path).join("metadata/timestamp.chk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emerge_is_asked_for_the_whole_tree_of_the_targets() {
        assert_eq!(
            emerge_argv("emerge", &[], &[]).join(" "),
            "emerge --pretend --emptytree --tree --color=n --nospinner @world"
        );
        assert_eq!(
            emerge_argv("/x/emerge", &["@system".into()], &["--with-bdeps=y".into()]).join(" "),
            "/x/emerge --pretend --emptytree --tree --color=n --nospinner @system --with-bdeps=y"
        );
    }

    #[test]
    fn a_world_file_gives_its_atoms_and_sets_and_names_a_bad_line() {
        let t = world_targets(
            "app-misc/hello\n# note\n\n@selected  # sets too\ndev-lang/lang:1\n",
            "w",
        )
        .expect("parses");
        assert_eq!(t, ["app-misc/hello", "@selected", "dev-lang/lang:1"]);
        let e = world_targets("app-misc/hello\n!!gui-wm/sway\n", "w").expect_err("blocker");
        assert!(format!("{e:#}").starts_with("w:2"), "{e:#}");
        assert!(world_targets("# nothing\n", "w").is_err());
    }

    fn ran(code: i32, stdout: &str, stderr: &str) -> Ran {
        Ran {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
            truncated: false,
        }
    }

    #[test]
    fn a_failed_emerge_is_refused_with_what_it_said() {
        let list = "[ebuild  N     ] app-misc/hello-1.0\n";
        check_emerge(&ran(0, list, ""), "emerge", false).expect("ok");
        let e = check_emerge(
            &ran(1, "", "emerge: there are no ebuilds to satisfy \"x/y\".\n"),
            "emerge",
            false,
        )
        .expect_err("fails");
        assert!(e.to_string().contains("no ebuilds to satisfy"), "{e}");
        assert!(e.to_string().contains("nothing was changed"), "{e}");
        let e = check_emerge(
            &ran(
                1,
                list,
                "!!! Multiple package instances within a single package slot\n",
            ),
            "emerge",
            false,
        )
        .expect_err("slot conflict");
        assert!(e.to_string().contains("--allow-emerge-errors"), "{e}");
        check_emerge(&ran(1, list, "!!! blocker"), "emerge", true).expect("allowed");
        check_emerge(&ran(1, "", "nothing"), "emerge", true).expect_err("no list: still refused");
    }
}
