//! `swarm profile create|list|show|edit|remove`: the targets one fleet builds for (issue 17).
//!
//! A profile names the build environment its binaries must be built in (written down, or a
//! reference drone's), its world set (what `swarm fresh --profile P` queues) and the binhost
//! path its releases are published at (`/binhost/<profile>/`). A package queued for a profile
//! goes only to a drone whose environment that profile admits. Reads are open; create, edit
//! and remove need the admin token.

use super::confirm::confirm;
use super::conn::{admin_error, read_error, AdminArgs, ServerArgs};
use super::control::render_events;
use super::fmt::{emit, emit_json, plural, Align, Table};
use anyhow::Context;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use swarm_core::buildenv::SNAPSHOT_PREFIX;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm profile create desktop --from-drone drone-tarn --world-file desktop.world
  swarm profile create server --env-file server.env      # VAR=VALUE lines, as `emerge --info` prints them
  swarm profile create minimal --set CHOST=x86_64-pc-linux-gnu --set 'CFLAGS=-O2 -pipe' --world app-misc/hello
  swarm profile show desktop                             # its environment, world, drones and how the others differ
  swarm profile edit desktop --set 'CFLAGS=-O3 -pipe' --unset LDFLAGS
  swarm profile edit desktop --snapshot 'gentoo=Tue, 01 Dec 2026 00:45:01 +0000'   # or --unset SNAPSHOT.gentoo
  swarm fresh --profile desktop --yes                    # queue the profile's world set
  swarm profile remove desktop --force --reason 'target retired' --yes")]
pub(crate) struct ProfileArgs {
    #[command(subcommand)]
    cmd: ProfileCmd,
}

/// Where a profile's environment comes from, and changes to it.
#[derive(clap::Args, Debug, Default)]
struct EnvArgs {
    /// Take the environment a drone reports now (it must be registered and report one).
    #[arg(long, value_name = "DRONE", conflicts_with = "env_file")]
    from_drone: Option<String>,
    /// Read VAR=VALUE lines from FILE (`#` comments; values may be quoted, as in
    /// `emerge --info`); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Set one variable (repeatable), after the file or drone's values.
    #[arg(long = "set", value_name = "VAR=VALUE", conflicts_with = "from_drone")]
    set: Vec<String>,
    /// Expect this Portage snapshot of repository REPO (repeatable): `timestamp.chk`'s text or
    /// a git commit, as drones report it under `SNAPSHOT.REPO` (`swarm fleet --json` shows it).
    #[arg(long, value_name = "REPO=VALUE", conflicts_with = "from_drone")]
    snapshot: Vec<String>,
}

impl EnvArgs {
    /// Whether any source of an environment was given.
    fn given(&self) -> bool {
        self.from_drone.is_some()
            || self.env_file.is_some()
            || !self.set.is_empty()
            || !self.snapshot.is_empty()
    }
}

/// The world set: what `swarm fresh --profile P` queues.
#[derive(clap::Args, Debug, Default)]
struct WorldArgs {
    /// The world set from FILE: one atom or @set per line, `#` comments (a Portage world file).
    #[arg(long, value_name = "FILE", conflicts_with = "world")]
    world_file: Option<PathBuf>,
    /// The world set's targets (repeatable): atoms or @sets.
    #[arg(long, value_name = "TARGET", num_args = 1..)]
    world: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
enum ProfileCmd {
    /// Create a profile: its expected environment (from a drone, a file or --set) and world set.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// The profile's name: 1 to 64 of a-z 0-9 . _ - (it becomes /binhost/NAME/).
        name: String,
        #[command(flatten)]
        env: EnvArgs,
        #[command(flatten)]
        world: WorldArgs,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// List the profiles: how many variables each expects, its matching drones and packages.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile: its environment, world set, binhost path, the drones it admits and
    /// what differs on the others.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// The profile (`default` is the one `expect_env` sets).
        name: String,
        /// Print the profile as the server's JSON shapes it.
        #[arg(long)]
        json: bool,
    },
    /// Change a profile: its environment (replace it from a drone or a file, or change single
    /// variables) and its world set. Not-started work on drones it no longer admits goes back.
    Edit {
        #[command(flatten)]
        admin: AdminArgs,
        /// The profile.
        name: String,
        #[command(flatten)]
        env: EnvArgs,
        /// Stop expecting this variable (repeatable).
        #[arg(long, value_name = "VAR")]
        unset: Vec<String>,
        #[command(flatten)]
        world: WorldArgs,
        /// Forget the world set.
        #[arg(long, conflicts_with_all = ["world", "world_file"])]
        clear_world: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile. Refused while packages of it are queued and not built, unless
    /// --force --reason drops them, and while a build of it runs (wait, or reclaim it). Its published tree
    /// (<binhost>/NAME/, where clients may still point) and release records stay on disk
    /// unless --purge deletes them. Asks first.
    Remove {
        #[command(flatten)]
        admin: AdminArgs,
        /// The profile.
        name: String,
        /// Drop the profile's queued packages first (needs --reason; recorded in the log).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the queued packages may go.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Also delete the profile's published tree (/binhost/NAME/: clients pointing there
        /// get nothing any more) and its release records. Refused while any of its packages
        /// is building, or queued without --force.
        #[arg(long)]
        purge: bool,
        /// Do it without asking (needed when there is no terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: ProfileArgs) -> anyhow::Result<()> {
    match args.cmd {
        ProfileCmd::List { server, json } => {
            let profiles = server.client()?.profiles().map_err(read_error)?;
            if json {
                return emit_json(&profiles.raw);
            }
            emit(&render_list(&profiles.body))
        }
        ProfileCmd::Show { server, name, json } => {
            let profiles = server.client()?.profiles().map_err(read_error)?;
            let p = find(&profiles.body, &name)?;
            if json {
                return emit_json(p);
            }
            emit(&render_show(p))
        }
        ProfileCmd::Create {
            admin,
            name,
            env,
            world,
            json,
        } => {
            let c = admin.client()?;
            let profiles = c.client.profiles().map_err(read_error)?;
            anyhow::ensure!(
                find(&profiles.body, &name).is_err(),
                "profile {name} exists already; change it with `swarm profile edit {name}`"
            );
            anyhow::ensure!(
                env.given(),
                "say what {name} expects: --from-drone DRONE, --env-file FILE or --set VAR=VALUE"
            );
            let mut body = json!({"action": "set_profile", "profile": name});
            match &env.from_drone {
                Some(d) => body["drone"] = json!(d),
                None => body["env"] = json!(env_of(&env, BTreeMap::new(), &[])?),
            }
            if let Some(w) = world_of(&world)? {
                body["world"] = json!(w);
            }
            send(&c, &body, json, &format!("profile {name} created"))
        }
        ProfileCmd::Edit {
            admin,
            name,
            env,
            unset,
            world,
            clear_world,
            json,
        } => {
            let c = admin.client()?;
            let profiles = c.client.profiles().map_err(read_error)?;
            anyhow::ensure!(
                name != "default",
                "the default profile's environment is set with `swarm control expect-env`"
            );
            let current = find(&profiles.body, &name)?;
            let mut body = json!({"action": "set_profile", "profile": name});
            let changes_env = env.given() || !unset.is_empty();
            match &env.from_drone {
                Some(d) => body["drone"] = json!(d),
                None => {
                    let before = current_env(current);
                    body["env"] = json!(env_of(&env, before, &unset)?);
                }
            }
            let new_world = if clear_world {
                Some(Vec::new())
            } else {
                world_of(&world)?
            };
            anyhow::ensure!(
                changes_env || new_world.is_some(),
                "nothing to change: give --from-drone, --env-file, --set, --unset, --world, \
                 --world-file or --clear-world"
            );
            if let Some(w) = new_world {
                body["world"] = json!(w);
            }
            send(&c, &body, json, &format!("profile {name} changed"))
        }
        ProfileCmd::Remove {
            admin,
            name,
            force,
            reason,
            purge,
            yes,
            json,
        } => {
            let c = admin.client()?;
            let profiles = c.client.profiles().map_err(read_error)?;
            anyhow::ensure!(
                name != "default",
                "the default profile cannot be removed (`swarm control expect-env` with no \
                 environment stops expecting one)"
            );
            if purge && find(&profiles.body, &name).is_err() {
                // Removed before: what it left on disk can still be purged.
                confirm(
                    &format!(
                        "`profile remove --purge` DELETES what the removed profile {name} left \
                         on disk: its published tree (/binhost/{name}/) and release records. \
                         This cannot be undone."
                    ),
                    yes,
                )?;
                let body = json!({"action": "remove_profile", "profile": name, "purge": true});
                return send_removal(&c, &body, json, &name);
            }
            let p = find(&profiles.body, &name)?;
            if purge {
                let building = p["states"]["building"].as_u64().unwrap_or_default();
                anyhow::ensure!(
                    building == 0,
                    "{} of profile {name} {} being built; nothing was changed. --purge deletes \
                     its published tree, so it waits until no build of it runs",
                    plural(building as usize, "package", "packages"),
                    if building == 1 { "is" } else { "are" }
                );
            }
            let unbuilt = p["unbuilt"].as_u64().unwrap_or_default() as usize;
            anyhow::ensure!(
                unbuilt == 0 || force,
                "{} of profile {name} {} queued and not built; nothing was changed. \
                 `swarm profile remove {name} --force --reason TEXT` drops them first \
                 (once no build of it runs)",
                plural(unbuilt, "package", "packages"),
                if unbuilt == 1 { "is" } else { "are" }
            );
            let binhost = p["binhost"].as_str().unwrap_or("/binhost/NAME/");
            let assigned = p["states"]["building"].as_u64().unwrap_or_default() as usize;
            let first = if unbuilt > 0 {
                // A build that has started keeps the profile: the server refuses the removal
                // and drops nothing (h32: this prompt counted it among those dropped).
                let running = if assigned > 0 {
                    format!(
                        " (the server refuses, dropping nothing, if one of the {} assigned to a \
                         drone has started building)",
                        plural(assigned, "package", "packages")
                    )
                } else {
                    String::new()
                };
                format!(
                    "`profile remove` drops the {} of profile {name} that no drone holds, \
                     then removes the profile{running}",
                    plural(
                        unbuilt.saturating_sub(assigned),
                        "queued package",
                        "queued packages"
                    )
                )
            } else {
                format!("`profile remove` removes profile {name}")
            };
            let then = if purge {
                format!(
                    ", then DELETES its published tree (clients pointing at {binhost} get \
                     nothing any more) and its release records. This cannot be undone."
                )
            } else {
                format!(
                    "; its published tree (served at {binhost}, where clients may still point) \
                     and its release records stay on disk (--purge deletes them)."
                )
            };
            confirm(&format!("{first}{then}"), yes)?;
            let mut body = json!({"action": "remove_profile", "profile": name});
            if force {
                body["force"] = json!(true);
                body["reason"] = json!(reason);
            }
            if purge {
                body["purge"] = json!(true);
            }
            send_removal(&c, &body, json, &name)
        }
    }
}

/// Sends one control body and prints the reply: JSON, or `done` and the events.
fn send(c: &super::conn::AdminClient, body: &Value, json: bool, done: &str) -> anyhow::Result<()> {
    send_then(c, body, json, done, |_| String::new())
}

/// Sends `remove_profile` and says what happened on disk: what was deleted, or what stays
/// and why.
fn send_removal(
    c: &super::conn::AdminClient,
    body: &Value,
    json: bool,
    name: &str,
) -> anyhow::Result<()> {
    send_then(c, body, json, &format!("profile {name} removed"), disk_note)
}

/// [`send`], with `more` lines made from the raw answer after the events.
fn send_then(
    c: &super::conn::AdminClient,
    body: &Value,
    json: bool,
    done: &str,
    more: impl FnOnce(&Value) -> String,
) -> anyhow::Result<()> {
    let answer = c
        .client
        .control_json(body)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if json {
        return emit_json(&answer.raw);
    }
    let events = render_events(&answer.body.events);
    emit(&format!("{done}\n{events}{}", more(&answer.raw)))
}

/// What a `remove_profile` answer says about the profile's directories, in lines.
fn disk_note(raw: &Value) -> String {
    let paths = |v: &Value| -> Vec<String> {
        ["tree", "state", "staging"]
            .iter()
            .filter_map(|k| v[*k].as_str().map(str::to_owned))
            .collect()
    };
    if raw["purged"].is_object() {
        let gone = paths(&raw["purged"]);
        return if gone.is_empty() {
            "nothing was on disk to purge\n".to_owned()
        } else {
            format!("deleted: {}\n", gone.join(", "))
        };
    }
    let kept = paths(&raw["kept"]);
    if kept.is_empty() {
        return String::new();
    }
    let name = raw["profile"].as_str().unwrap_or("NAME");
    format!(
        "kept on disk: {}\n  clients may still install from {}; \
         `swarm profile remove {name} --purge` deletes them\n",
        kept.join(", "),
        raw["kept"]["served_at"]
            .as_str()
            .unwrap_or("its binhost path")
    )
}

/// One profile of `GET /api/v1/profiles`, or an error naming the ones there are.
fn find<'a>(profiles: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    let all = profiles["profiles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    all.iter().find(|p| p["name"] == name).ok_or_else(|| {
        let names: Vec<&str> = all.iter().filter_map(|p| p["name"].as_str()).collect();
        anyhow::anyhow!("no profile {name:?} (there are: {})", names.join(", "))
    })
}

fn current_env(p: &Value) -> BTreeMap<String, String> {
    p["env"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The environment to send: `base`, replaced by the file's when one is given, then `--set`
/// values, then `--unset` names removed.
fn env_of(
    args: &EnvArgs,
    base: BTreeMap<String, String>,
    unset: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = match &args.env_file {
        Some(f) => parse_env(&super::fresh::read_bounded(f)?, &f.display().to_string())?,
        None => base,
    };
    for s in &args.set {
        let (k, v) = assignment(s).with_context(|| format!("--set {s:?}"))?;
        env.insert(k, v);
    }
    for s in &args.snapshot {
        let (repo, v) = assignment(s).with_context(|| format!("--snapshot {s:?}"))?;
        env.insert(format!("{SNAPSHOT_PREFIX}{repo}"), v);
    }
    for k in unset {
        anyhow::ensure!(
            env.remove(k).is_some(),
            "--unset {k}: the profile does not expect {k}"
        );
    }
    anyhow::ensure!(
        !env.is_empty(),
        "the profile would expect no variable at all; remove it instead"
    );
    Ok(env)
}

/// `VAR=VALUE` with an optional pair of quotes around the value.
fn assignment(line: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = line
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("not VAR=VALUE"))?;
    let k = k.trim().strip_prefix("export ").unwrap_or(k.trim()).trim();
    anyhow::ensure!(
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        "{k:?} is not a variable name"
    );
    let v = v.trim();
    let v = ['"', '\'']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
        .unwrap_or(v);
    Ok((k.to_owned(), v.to_owned()))
}

/// An environment file: VAR=VALUE lines; blank lines and `#` comments skipped.
fn parse_env(text: &str, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (k, v) = assignment(t).with_context(|| format!("{name}:{}", i + 1))?;
        env.insert(k, v);
    }
    anyhow::ensure!(!env.is_empty(), "{name} sets no variable");
    Ok(env)
}

fn world_of(args: &WorldArgs) -> anyhow::Result<Option<Vec<String>>> {
    if let Some(f) = &args.world_file {
        let name = f.display().to_string();
        return super::fresh::world_targets(&super::fresh::read_bounded(f)?, &name).map(Some);
    }
    if args.world.is_empty() {
        return Ok(None);
    }
    super::fresh::world_targets(&args.world.join("\n"), "--world").map(Some)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn render_list(profiles: &Value) -> String {
    let mut t = Table::new(&[
        ("PROFILE", Align::Left),
        ("VARS", Align::Right),
        ("DRONES", Align::Right),
        ("PACKAGES", Align::Right),
        ("UNBUILT", Align::Right),
        ("WORLD", Align::Right),
        ("BINHOST", Align::Left),
    ]);
    for p in profiles["profiles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let vars = p["env"].as_object().map_or(0, serde_json::Map::len);
        t.row(vec![
            p["name"].as_str().unwrap_or("?").to_owned(),
            if vars == 0 {
                "any".into()
            } else {
                vars.to_string()
            },
            names(&p["matching"]).len().to_string(),
            p["packages"].as_u64().unwrap_or_default().to_string(),
            p["unbuilt"].as_u64().unwrap_or_default().to_string(),
            names(&p["world"]).len().to_string(),
            p["binhost"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    t.render() + &notes(profiles)
}

/// What the table cannot say: built packages no release of their profile takes.
fn notes(profiles: &Value) -> String {
    profiles["profiles"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["note"].as_str())
        .map(|n| format!("note: {n}\n"))
        .collect()
}

fn render_show(p: &Value) -> String {
    let name = p["name"].as_str().unwrap_or("?");
    let mut s = format!("profile {name}\n");
    s += &format!("  binhost   {}\n", p["binhost"].as_str().unwrap_or("-"));
    s += &format!(
        "  packages  {} queued, {} not built\n",
        p["packages"].as_u64().unwrap_or_default(),
        p["unbuilt"].as_u64().unwrap_or_default()
    );
    if let Some(note) = p["note"].as_str() {
        s += &format!("  note      {note}\n");
    }
    let env = current_env(p);
    if env.is_empty() {
        s += "environment: none expected (any drone builds its packages)\n";
    } else {
        s += "environment:\n";
        let width = env.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &env {
            s += &format!("  {k:<width$}  {v}\n");
        }
    }
    let world = names(&p["world"]);
    if world.is_empty() {
        s += "world set: none written down (`swarm profile edit NAME --world-file FILE`)\n";
    } else {
        s += &format!(
            "world set ({}):\n",
            plural(world.len(), "target", "targets")
        );
        for w in &world {
            s += &format!("  {w}\n");
        }
    }
    let matching = names(&p["matching"]);
    if matching.is_empty() {
        s += "matching drones: none; its packages wait\n";
    } else {
        s += &format!("matching drones: {}\n", matching.join(", "));
    }
    if let Some(others) = p["differing"].as_object().filter(|m| !m.is_empty()) {
        s += "other drones:\n";
        let width = others.keys().map(String::len).max().unwrap_or(0);
        for (d, why) in others {
            s += &format!("  {d:<width$}  {}\n", why.as_str().unwrap_or("?"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({"profiles": [
            {"name": "default", "env": {}, "matching": ["drone-a", "drone-b"], "unbuilt": 0,
             "packages": 3, "differing": {}, "world": [], "binhost": "/binhost/"},
            {"name": "desktop", "env": {"CFLAGS": "-O2 -pipe", "CHOST": "x86_64-pc-linux-gnu"},
             "matching": ["drone-a"], "unbuilt": 2, "packages": 5,
             "differing": {"drone-b": "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)"},
             "world": ["app-misc/hello", "@desktop"], "binhost": "/binhost/desktop/",
             "built_in_another_env": 1,
             "note": "1 built package(s) no release of profile desktop takes (e.g. =app-misc/hello-1: built in an environment profile desktop does not admit: CFLAGS (-O3 vs -O2)); `swarm fresh --profile desktop` builds them again"}
        ]})
    }

    #[test]
    fn list_and_show_name_what_a_profile_expects_and_who_differs() {
        let v = sample();
        insta::assert_snapshot!("profile_list", render_list(&v));
        insta::assert_snapshot!(
            "profile_show",
            render_show(find(&v, "desktop").expect("desktop"))
        );
        let e = find(&v, "nope").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "no profile \"nope\" (there are: default, desktop)"
        );
    }

    #[test]
    fn an_env_file_reads_like_emerge_info_and_names_a_bad_line() {
        let env = parse_env(
            "# from emerge --info\nCFLAGS=\"-O2 -pipe\"\nCHOST='x86_64-pc-linux-gnu'\n\nexport USE=a b\n",
            "f",
        )
        .expect("parses");
        assert_eq!(env["CFLAGS"], "-O2 -pipe");
        assert_eq!(env["CHOST"], "x86_64-pc-linux-gnu");
        assert_eq!(env["USE"], "a b");
        let e = parse_env("CFLAGS=-O2\nno equals here\n", "f").expect_err("bad line");
        assert!(format!("{e:#}").starts_with("f:2"), "{e:#}");
        assert!(parse_env("# nothing\n", "f").is_err());
        assert!(assignment("BAD NAME=x").is_err());
    }

    #[test]
    fn edits_apply_over_the_current_environment() {
        let base: BTreeMap<String, String> = [("CFLAGS", "-O2"), ("LDFLAGS", "-Wl,-O1")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args = EnvArgs {
            set: vec!["CFLAGS=-O3".into(), "USE=x".into()],
            snapshot: vec!["gentoo='Tue, 01 Dec 2026 00:45:01 +0000'".into()],
            ..EnvArgs::default()
        };
        let env = env_of(&args, base.clone(), &["LDFLAGS".into()]).expect("edits");
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [
                ("CFLAGS".into(), "-O3".into()),
                (
                    "SNAPSHOT.gentoo".into(),
                    "Tue, 01 Dec 2026 00:45:01 +0000".into()
                ),
                ("USE".into(), "x".into())
            ]
        );
        let bad = EnvArgs {
            snapshot: vec!["no equals".into()],
            ..EnvArgs::default()
        };
        let e = env_of(&bad, base.clone(), &[]).expect_err("not REPO=VALUE");
        assert!(format!("{e:#}").contains("--snapshot"), "{e:#}");
        let e = env_of(&EnvArgs::default(), base.clone(), &["NOPE".into()]).expect_err("unknown");
        assert!(e.to_string().contains("does not expect NOPE"), "{e}");
        let all: Vec<String> = base.keys().cloned().collect();
        assert!(
            env_of(&EnvArgs::default(), base, &all).is_err(),
            "an empty profile"
        );
    }
}
