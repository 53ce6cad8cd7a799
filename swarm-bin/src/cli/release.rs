//! `swarm release create|list|show|diff|publish|rollback|keep|tag|purge`:
//! binhost releases on a running server (`/api/v1/releases`). Reads are
//! open; every action needs the admin token and is recorded as an event.

use super::conn::{admin_error, read_error, AdminArgs, ServerArgs};
use super::fmt::{ago, emit, emit_json, now_ms, plural, Align, Table};
use serde_json::{json, Value};
use swarm_net::client::admin::encode;
use swarm_net::client::Auth;

#[derive(clap::Args, Debug)]
pub(crate) struct ReleaseArgs {
    /// Act on this profile's releases, published at /binhost/PROFILE/ (`swarm profile list`);
    /// its releases take only builds whose recorded environment the profile admits, and its
    /// gate judges them by the profile's packages and environment [default: the default
    /// profile, /binhost/].
    #[arg(long, global = true, value_name = "PROFILE")]
    profile: Option<String>,
    #[command(subcommand)]
    cmd: ReleaseCmd,
}

/// `path` with `?profile=P` (or `&profile=P`) when a profile is named.
fn at(path: &str, profile: Option<&str>) -> String {
    match profile {
        None => path.to_owned(),
        Some(p) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}profile={}", encode(p))
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum ReleaseCmd {
    /// Snapshot the built set in staging (hardlinks, no copies) into a new
    /// release with its own Packages index. Not published until `publish`.
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// Name it (letters, digits, `.`, `_`, `-`) [default: the UTC time, YYYYMMDD-HHMMSS].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// List the releases, oldest first, with the published one marked.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Show one release: its packages, and with --gate whether it may be published.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// The release.
        name: String,
        /// Also ask the safety gate what it would say to publishing it now.
        #[arg(long)]
        gate: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// What changed from release A to release B: added, removed, rebuilt.
    Diff {
        #[command(flatten)]
        server: ServerArgs,
        /// The older release.
        a: String,
        /// The newer release.
        b: String,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Make a release the one clients install from (atomic). The safety gate
    /// refuses, listing every reason, when the release misses packages of the
    /// current generation or their dependencies, was built against another
    /// Portage snapshot, or drops too much of the published release.
    Publish {
        #[command(flatten)]
        admin: AdminArgs,
        /// The release.
        name: String,
        /// Publish although the gate refuses (needs --reason; recorded as an event).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the override is safe.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Publish the previously published release again.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Protect a release from `purge` (or, with --undo, stop protecting it).
    Keep {
        #[command(flatten)]
        admin: AdminArgs,
        /// The release.
        name: String,
        /// Let retention remove it again.
        #[arg(long)]
        undo: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Tag a release (tagged releases are kept), or remove a tag.
    Tag {
        #[command(flatten)]
        admin: AdminArgs,
        /// The release.
        name: String,
        /// The tag.
        tag: String,
        /// Remove the tag instead.
        #[arg(long)]
        remove: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
    /// Remove releases retention does not protect, without asking (--dry-run first to
    /// see). The published release, the kept and tagged ones and the newest
    /// `release_keep` (5 by default; `swarm release list` says how many) always stay.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Print the server's JSON reply.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: ReleaseArgs) -> anyhow::Result<()> {
    let profile = args.profile.as_deref();
    match args.cmd {
        ReleaseCmd::Create {
            mut admin,
            name,
            json,
        } => {
            // Inspecting a large staging takes a while on the server.
            admin.server.timeout_s = admin.server.timeout_s.max(600);
            let body = json!({ "name": name });
            let v = post(&admin, &at("/api/v1/releases", profile), &body)?;
            out(json, &v, render_created)
        }
        ReleaseCmd::List { server, json } => {
            let v: Value = server
                .client()?
                .get_json(&at("/api/v1/releases", profile), Auth::None)
                .map_err(read_error)?;
            out(json, &v, |v| render_list(v, now_ms()))
        }
        ReleaseCmd::Show {
            server,
            name,
            gate,
            json,
        } => {
            let c = server.client()?;
            let mut v: Value = c
                .get_json(
                    &at(&format!("/api/v1/releases/{}", encode(&name)), profile),
                    Auth::None,
                )
                .map_err(read_error)?;
            if gate {
                let g: Value = c
                    .get_json(
                        &at(&format!("/api/v1/releases/{}/gate", encode(&name)), profile),
                        Auth::None,
                    )
                    .map_err(read_error)?;
                v["gate"] = g;
            }
            out(json, &v, render_show)
        }
        ReleaseCmd::Diff { server, a, b, json } => {
            let v: Value = server
                .client()?
                .get_json(
                    &at(
                        &format!("/api/v1/releases/diff?a={}&b={}", encode(&a), encode(&b)),
                        profile,
                    ),
                    Auth::None,
                )
                .map_err(read_error)?;
            out(json, &v, render_diff)
        }
        ReleaseCmd::Publish {
            admin,
            name,
            force,
            reason,
            json,
        } => {
            let body = json!({ "force": force, "reason": reason });
            let path = format!("/api/v1/releases/{}/publish", encode(&name));
            let v = match post(&admin, &at(&path, profile), &body) {
                Ok(v) => v,
                // A script asked for JSON: it gets the gate's reasons on stdout too (h109), and
                // the refusal still fails the command.
                Err(e) if json && refused_by_gate(&e) => {
                    let gate = format!("/api/v1/releases/{}/gate", encode(&name));
                    let g: Value = admin
                        .server
                        .client()?
                        .get_json(&at(&gate, profile), Auth::None)
                        .map_err(read_error)?;
                    emit_json(&json!({ "published": false, "error": e.to_string(), "gate": g }))?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            out(json, &v, render_published)
        }
        ReleaseCmd::Rollback { admin, json } => {
            let v = post(
                &admin,
                &at("/api/v1/releases/rollback", profile),
                &json!({}),
            )?;
            out(json, &v, render_published)
        }
        ReleaseCmd::Keep {
            admin,
            name,
            undo,
            json,
        } => {
            let v = post(
                &admin,
                &at(&format!("/api/v1/releases/{}/keep", encode(&name)), profile),
                &json!({ "keep": !undo }),
            )?;
            out(json, &v, |v| {
                format!(
                    "release {}: {}\n",
                    s(&v["name"]),
                    if undo { "no longer kept" } else { "kept" }
                )
            })
        }
        ReleaseCmd::Tag {
            admin,
            name,
            tag,
            remove,
            json,
        } => {
            let v = post(
                &admin,
                &at(&format!("/api/v1/releases/{}/tag", encode(&name)), profile),
                &json!({ "tag": tag, "remove": remove }),
            )?;
            out(json, &v, |v| {
                format!("release {}: tags {}\n", s(&v["name"]), list_of(&v["tags"]))
            })
        }
        ReleaseCmd::Purge {
            admin,
            dry_run,
            json,
        } => {
            let v = post(
                &admin,
                &at("/api/v1/releases/purge", profile),
                &json!({ "dry_run": dry_run }),
            )?;
            out(json, &v, |v| {
                let names = list_of(&v["purged"]);
                match (dry_run, names.as_str()) {
                    (_, "-") => "nothing to purge\n".to_string(),
                    (true, n) => format!("would purge: {n}\n"),
                    (false, n) => format!("purged: {n}\n"),
                }
            })
        }
    }
}

fn post(admin: &AdminArgs, path: &str, body: &Value) -> anyhow::Result<Value> {
    let c = admin.client()?;
    c.client
        .post_json(path, body, Auth::Admin)
        .map_err(|e| admin_error(e, &c.token_source))
}

/// Whether a publish was refused by the safety gate (409), not by anything else.
fn refused_by_gate(e: &anyhow::Error) -> bool {
    e.downcast_ref::<swarm_net::client::ClientError>()
        .and_then(|c| c.status())
        == Some(409)
}

fn out(json: bool, v: &Value, render: impl Fn(&Value) -> String) -> anyhow::Result<()> {
    if json {
        emit_json(v)
    } else {
        emit(&render(v))
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

fn list_of(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render_created(v: &Value) -> String {
    let r = &v["release"];
    let mut out = format!(
        "created release {}: {} packages, {} (TIMESTAMP {}); not published yet: swarm release publish {}\n",
        s(&r["name"]),
        r["packages"].as_u64().unwrap_or(0),
        mib(r["bytes"].as_u64().unwrap_or(0)),
        r["timestamp"].as_u64().unwrap_or(0),
        s(&r["name"]),
    );
    if let Ok(note) =
        serde_json::from_value::<swarm_net::binhost::header::HeaderNote>(v["header"].clone())
    {
        if !note.source.is_empty() {
            out += &format!("{}\n", note.describe());
        }
    }
    if let Some(sk) = v["skipped"].as_array().filter(|a| !a.is_empty()) {
        out += &format!("{} staging file(s) left out:\n", sk.len());
        for x in sk.iter().take(20) {
            out += &format!("  {}: {}\n", s(&x["path"]), s(&x["reason"]));
        }
    }
    out
}

fn render_list(v: &Value, now: u64) -> String {
    let mut t = Table::new(&[
        ("", Align::Left),
        ("RELEASE", Align::Left),
        ("CREATED", Align::Left),
        ("PACKAGES", Align::Right),
        ("SIZE", Align::Right),
        ("GEN", Align::Right),
        ("KEPT", Align::Left),
        ("TAGS", Align::Left),
    ]);
    for r in v["releases"].as_array().into_iter().flatten() {
        t.row(vec![
            if r["published"].as_bool() == Some(true) {
                "*".into()
            } else {
                String::new()
            },
            s(&r["name"]),
            ago(now, r["created_at_ms"].as_u64().unwrap_or(0)),
            r["packages"].as_u64().unwrap_or(0).to_string(),
            mib(r["bytes"].as_u64().unwrap_or(0)),
            r["generation"].as_u64().unwrap_or(0).to_string(),
            if r["kept"].as_bool() == Some(true) {
                "yes".into()
            } else {
                String::new()
            },
            list_of(&r["tags"]).replace('-', ""),
        ]);
    }
    if t.is_empty() {
        return "no releases yet: swarm release create\n".into();
    }
    let published = v["published"].as_str().unwrap_or("none");
    let kept = v["keep_last"]
        .as_u64()
        .map(|n| {
            format!("purge keeps the published, kept and tagged releases and the newest {n}\n")
        })
        .unwrap_or_default();
    format!(
        "{}published: {published} (served under {})\n{kept}",
        t.render(),
        v["binhost"].as_str().unwrap_or("/binhost/")
    )
}

fn render_show(v: &Value) -> String {
    let mut out = format!(
        "release {}{}: {} packages, {}, generation {}, TIMESTAMP {}\n",
        s(&v["name"]),
        if v["published"].as_bool() == Some(true) {
            " (published)"
        } else {
            ""
        },
        v["packages"].as_u64().unwrap_or(0),
        mib(v["bytes"].as_u64().unwrap_or(0)),
        v["generation"].as_u64().unwrap_or(0),
        v["timestamp"].as_u64().unwrap_or(0),
    );
    let mut t = Table::new(&[
        ("PACKAGE", Align::Left),
        ("SIZE", Align::Right),
        ("BUILT BY", Align::Left),
        ("SNAPSHOT", Align::Left),
    ]);
    for e in v["entries"].as_array().into_iter().flatten() {
        t.row(vec![
            s(&e["cpv"]),
            e["size"].as_u64().unwrap_or(0).to_string(),
            e["built_by"].as_str().unwrap_or("-").to_string(),
            e["portage_snapshot"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    out += &t.render();
    if let Some(g) = v.get("gate") {
        if g["passed"].as_bool() == Some(true) {
            out += "gate: would publish\n";
        } else {
            out += "gate: would refuse:\n";
            for r in g["reasons"].as_array().into_iter().flatten() {
                out += &format!("  - {}\n", s(r));
            }
        }
        for n in g["verdict"]["notes"].as_array().into_iter().flatten() {
            out += &format!("  note: {}\n", s(n));
        }
    }
    out
}

fn render_diff(v: &Value) -> String {
    let mut out = format!("{} → {}\n", s(&v["a"]), s(&v["b"]));
    for (label, key) in [("+", "added"), ("-", "removed"), ("~", "changed")] {
        for c in v[key].as_array().into_iter().flatten() {
            out += &format!("{label} {}\n", s(c));
        }
    }
    out += &format!(
        "{} added, {} removed, {} rebuilt, {} unchanged\n",
        v["added"].as_array().map_or(0, Vec::len),
        v["removed"].as_array().map_or(0, Vec::len),
        v["changed"].as_array().map_or(0, Vec::len),
        v["unchanged"].as_u64().unwrap_or(0)
    );
    out
}

fn render_published(v: &Value) -> String {
    let mut out = format!(
        "published {} (TIMESTAMP {}){}\n",
        s(&v["release"]),
        v["timestamp"].as_u64().unwrap_or(0),
        v["previous"]
            .as_str()
            .map(|p| format!(", replacing {p}"))
            .unwrap_or_default()
    );
    if let Some(reason) = v["forced"].as_str() {
        out += &format!("the safety gate was overridden ({reason}); it said:\n");
        for r in v["gate"]["reasons"].as_array().into_iter().flatten() {
            out += &format!("  - {}\n", compact_reason(r));
        }
    }
    let kept: Vec<&str> = v["rebuilds_clients_keep"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !kept.is_empty() {
        out += &format!(
            "warning: {} rebuilt at the same version in {}: clients that fetched those builds keep them \
             (Portage prefers the newest build in its PKGDIR over the index's), so this rollback does not \
             reach them; bump the revision, or have those clients remove them (eclean-pkg):\n",
            plural(kept.len(), "package was", "packages were"),
            s(&v["previous"])
        );
        for cpv in kept {
            out += &format!("  {cpv}\n");
        }
    }
    out
}

fn compact_reason(r: &Value) -> String {
    match r["rule"].as_str() {
        Some("missing") => format!(
            "{} is not in the release ({})",
            s(&r["package"]),
            s(&r["state"])
        ),
        Some("missing_dependency") => format!("{} needs {}", s(&r["package"]), s(&r["dependency"])),
        Some("snapshot") => format!(
            "{} built against {} (expected {})",
            s(&r["package"]),
            s(&r["built_with"]),
            s(&r["expected"])
        ),
        Some("drops") => format!(
            "drops {} of {} published packages",
            r["dropped"], r["published"]
        ),
        _ => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_marks_the_published_release() {
        let v = json!({
            "published": "r2",
            "keep_last": 5,
            "releases": [
                {"name": "r1", "created_at_ms": 1_000, "packages": 3, "bytes": 3_145_728, "generation": 1, "kept": true, "tags": ["stable"], "published": false},
                {"name": "r2", "created_at_ms": 61_000, "packages": 4, "bytes": 0, "generation": 2, "kept": false, "tags": [], "published": true}
            ]
        });
        let text = render_list(&v, 121_000);
        assert!(text.contains("*  r2"), "{text}");
        assert!(text.contains("r1       2m00s ago"), "{text}");
        assert!(text.contains("3.0 MiB"), "{text}");
        assert!(text.contains("stable"), "{text}");
        assert!(
            text.ends_with(
                "published: r2 (served under /binhost/)\npurge keeps the published, kept and \
                 tagged releases and the newest 5\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_forced_publish_repeats_what_the_gate_said() {
        let v = json!({
            "release": "r3", "previous": "r2", "timestamp": 7, "forced": "hotfix",
            "gate": {"reasons": [{"rule": "missing", "package": "=a/b-1", "state": "blocked"}], "notes": []}
        });
        let text = render_published(&v);
        assert!(text.contains("replacing r2"), "{text}");
        assert!(text.contains("overridden (hotfix)"), "{text}");
        assert!(
            text.contains("=a/b-1 is not in the release (blocked)"),
            "{text}"
        );
    }

    #[test]
    fn a_rollback_warns_of_the_rebuilds_it_cannot_take_back() {
        let v = json!({
            "release": "good", "previous": "bad", "timestamp": 9, "forced": null,
            "gate": {"reasons": [], "notes": []},
            "rebuilds_clients_keep": ["app-misc/x-1"]
        });
        let text = render_published(&v);
        assert!(
            text.contains("warning: 1 package was rebuilt at the same version in bad"),
            "{text}"
        );
        assert!(text.contains("eclean-pkg"), "{text}");
        assert!(text.ends_with("  app-misc/x-1\n"), "{text}");
        let v = json!({"release": "good", "previous": "bad", "timestamp": 9, "rebuilds_clients_keep": []});
        assert!(!render_published(&v).contains("warning"));
    }
}
