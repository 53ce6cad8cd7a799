//! `swarm profile create|list|show|edit|remove` and `swarm fresh --profile` against a real
//! `swarm serve` on 127.0.0.1 (issue 17): every command is a real `swarm` process finding the
//! server and its token as an operator on the server's host would; drones are spoken for over
//! the real HTTP API, and `fresh` runs a stand-in emerge that prints what it was asked for.

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::cli::{fails, json_of, ok};
use support::{swarm_bin, Server};

fn register(server: &Server, name: &str, cflags: &str) {
    let (code, v) = server.post(
        "/api/v1/register",
        &json!({"node_name": name, "capabilities": {"cores": 4, "ram_gb": 16,
                "env": {"CFLAGS": cflags, "CHOST": "x86_64-pc-linux-gnu"}}}),
    );
    assert_eq!(code, 200, "{v}");
}

fn profile<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["profiles"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no profile {name} in {list}"))
}

/// The queue: atom → profile ("default" for none).
fn queue(server: &Server) -> Vec<(String, String)> {
    let (_, v) = server.get("/api/v1/queue?limit=500");
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages in {v}"))
        .iter()
        .map(|p| {
            (
                p["atom"].as_str().unwrap_or_default().to_owned(),
                p["profile"].as_str().unwrap_or("default").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `swarm fresh --profile PROFILE` with the stand-in emerge, no snapshot, and `more`.
fn fresh_args<'a>(profile: &'a str, emerge: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "fresh",
        "--profile",
        profile,
        "--emerge",
        emerge,
        "--no-snapshot",
    ];
    v.extend_from_slice(more);
    v
}

/// A stand-in emerge: prints one `[ebuild N ]` line per atom argument (sets and options are
/// skipped), and records its arguments.
fn fake_emerge(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("emerge");
    let script = format!(
        "#!/bin/sh\necho \"$@\" > {}/emerge-args\nfor a in \"$@\"; do\n  case \"$a\" in\n    -*|@*) ;;\n    *) echo \"[ebuild  N     ] $a-1.0::gentoo  0 KiB\" ;;\n  esac\ndone\n",
        dir.display()
    );
    std::fs::write(&path, script).expect("write emerge");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn operators_create_show_edit_and_remove_profiles_and_queue_a_profiles_world() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    register(&s, "drone-o2", "-O2 -pipe");
    register(&s, "drone-o3", "-O3 -pipe");

    // Create: from a drone, from a file, from --set; each needs the admin token.
    let env_file = dir.path().join("fast.env");
    std::fs::write(
        &env_file,
        "# as emerge --info prints it\nCFLAGS=\"-O3 -pipe\"\nCHOST=\"x86_64-pc-linux-gnu\"\n",
    )
    .expect("write");
    let world_file = dir.path().join("fast.world");
    std::fs::write(
        &world_file,
        "app-misc/fast-one\n# comment\napp-misc/fast-two\n@fastset\n",
    )
    .expect("write");
    let out = ok(
        &s,
        &[
            "profile",
            "create",
            "fast",
            "--env-file",
            env_file.to_str().expect("utf8"),
            "--world-file",
            world_file.to_str().expect("utf8"),
        ],
    );
    assert!(out.contains("profile fast created"), "{out}");
    assert!(out.contains("1 of 2 drones match"), "{out}");
    ok(
        &s,
        &["profile", "create", "slow", "--from-drone", "drone-o2"],
    );
    let e = fails(&s, &["profile", "create", "fast", "--set", "CFLAGS=-O1"]);
    assert!(
        e.contains("exists already") && e.contains("swarm profile edit fast"),
        "{e}"
    );
    let e = fails(
        &s,
        &["profile", "create", "Bad/Name", "--set", "CFLAGS=-O1"],
    );
    assert!(e.contains("Bad/Name"), "{e}");
    let e = fails(&s, &["profile", "create", "nothing"]);
    assert!(e.contains("--from-drone"), "{e}");
    let e = fails(
        &s,
        &[
            "profile",
            "create",
            "x",
            "--set",
            "CFLAGS=-O1",
            "--world",
            "not an atom",
        ],
    );
    assert!(e.contains("not an atom") || e.contains("--world"), "{e}");
    let unauth = Command::new(swarm_bin())
        .args([
            "profile",
            "create",
            "x",
            "--set",
            "CFLAGS=-O1",
            "--token",
            "wrong",
        ])
        .env("SWARM_URL", &s.url)
        .output()
        .expect("run");
    assert!(!unauth.status.success());
    assert!(String::from_utf8_lossy(&unauth.stderr).contains("token"));

    // List and show.
    let list = json_of(&s, &["profile", "list", "--json"]);
    let fast = profile(&list, "fast");
    assert_eq!(fast["env"]["CFLAGS"], "-O3 -pipe", "{fast}");
    assert_eq!(fast["matching"], json!(["drone-o3"]), "{fast}");
    assert_eq!(
        fast["world"],
        json!(["app-misc/fast-one", "app-misc/fast-two", "@fastset"])
    );
    assert_eq!(fast["binhost"], "/binhost/fast/");
    assert_eq!(profile(&list, "slow")["matching"], json!(["drone-o2"]));
    assert_eq!(profile(&list, "default")["binhost"], "/binhost/");
    let text = ok(&s, &["profile", "list"]);
    assert!(
        text.contains("PROFILE") && text.contains("/binhost/fast/"),
        "{text}"
    );
    let show = ok(&s, &["profile", "show", "fast"]);
    assert!(show.contains("CFLAGS  -O3 -pipe"), "{show}");
    assert!(show.contains("matching drones: drone-o3"), "{show}");
    assert!(
        show.contains("drone-o2  environment differs in CFLAGS (-O2 -pipe vs -O3 -pipe)"),
        "{show}"
    );
    assert!(show.contains("app-misc/fast-two"), "{show}");
    let e = fails(&s, &["profile", "show", "nope"]);
    assert!(
        e.contains("no profile \"nope\"") && e.contains("fast"),
        "{e}"
    );

    // fresh --profile queues the profile's world set for it; the default profile's stay.
    ok(&s, &["queue", "add", "=dev-libs/base-1.0"]);
    let emerge = fake_emerge(dir.path());
    let emerge = emerge.to_str().expect("utf8");
    let out = ok(&s, &fresh_args("fast", emerge, &["--yes"]));
    assert!(
        out.contains("profile fast: queued 2 packages of 2"),
        "{out}"
    );
    let args = std::fs::read_to_string(dir.path().join("emerge-args")).expect("emerge ran");
    assert!(
        args.contains("app-misc/fast-one app-misc/fast-two @fastset"),
        "emerge got the world set: {args}"
    );
    assert_eq!(
        queue(&s),
        [
            ("=app-misc/fast-one-1.0".into(), "fast".into()),
            ("=app-misc/fast-two-1.0".into(), "fast".into()),
            ("=dev-libs/base-1.0".into(), "default".into()),
        ]
    );
    // Again with other targets: only fast's list is replaced.
    let out = ok(
        &s,
        &fresh_args("fast", emerge, &["--yes", "app-misc/fast-three"]),
    );
    assert!(out.contains("queued 1 package of 1"), "{out}");
    assert_eq!(
        queue(&s),
        [
            ("=app-misc/fast-three-1.0".into(), "fast".into()),
            ("=dev-libs/base-1.0".into(), "default".into()),
        ]
    );
    let e = fails(&s, &fresh_args("slow", emerge, &["--yes"]));
    assert!(e.contains("profile slow has no world set"), "{e}");
    let e = fails(&s, &fresh_args("nope", emerge, &["--yes"]));
    assert!(e.contains("no profile \"nope\""), "{e}");
    // Without --yes and without a terminal nothing happens.
    let e = fails(&s, &fresh_args("fast", emerge, &[]));
    assert!(e.contains("--yes"), "{e}");

    // An atom queued for one profile may be queued for another too: each is its own package,
    // built and staged for its own profile. A fresh list for slow may hold default's base.
    ok(&s, &["queue", "add", "=app-misc/fast-three-1.0"]);
    let out = ok(&s, &fresh_args("slow", emerge, &["--yes", "dev-libs/base"]));
    assert!(out.contains("queued 1 package of 1"), "{out}");
    assert_eq!(
        queue(&s),
        [
            ("=app-misc/fast-three-1.0".into(), "default".into()),
            ("=app-misc/fast-three-1.0".into(), "fast".into()),
            ("=dev-libs/base-1.0".into(), "default".into()),
            ("=dev-libs/base-1.0".into(), "slow".into()),
        ]
    );
    // Explain without --profile gives each profile's package its line and says how to pick.
    let out = ok(&s, &["explain", "=dev-libs/base-1.0"]);
    assert!(
        out.contains("is queued in profiles default, slow: name one with --profile"),
        "{out}"
    );
    assert!(
        out.contains("\n  default: ") && out.contains("\n  slow: "),
        "{out}"
    );
    assert!(out.contains("--profile PROFILE"), "{out}");

    // Operator actions name a package's profile with --profile (`default` for the default one).
    let e = fails(
        &s,
        &[
            "control",
            "block",
            "=app-misc/fast-three-1.0",
            "--profile",
            "slow",
        ],
    );
    assert!(e.contains("is not in the queue"), "{e}");
    let e = fails(&s, &["control", "pause", "--profile", "fast"]);
    assert!(e.contains("`pause` takes no `profile`"), "{e}");
    let e = fails(
        &s,
        &["explain", "=app-misc/fast-three-1.0", "--profile", "slow"],
    );
    assert!(e.contains("not in the queue"), "{e}");
    ok(
        &s,
        &[
            "control",
            "block",
            "=app-misc/fast-three-1.0",
            "--profile",
            "fast",
        ],
    );
    ok(
        &s,
        &[
            "control",
            "unblock",
            "=app-misc/fast-three-1.0",
            "--profile",
            "fast",
        ],
    );

    // Edit: a variable, then the world set; the matching drone follows.
    let out = ok(
        &s,
        &["profile", "edit", "fast", "--set", "CFLAGS=-O2 -pipe"],
    );
    assert!(out.contains("1 of 2 drones match"), "{out}");
    let list = json_of(&s, &["profile", "list", "--json"]);
    assert_eq!(profile(&list, "fast")["matching"], json!(["drone-o2"]));
    assert_eq!(
        profile(&list, "fast")["world"].as_array().map(Vec::len),
        Some(3),
        "an environment edit keeps the world set"
    );
    ok(
        &s,
        &[
            "profile",
            "edit",
            "fast",
            "--unset",
            "CHOST",
            "--world",
            "app-misc/solo",
        ],
    );
    let list = json_of(&s, &["profile", "list", "--json"]);
    assert_eq!(
        profile(&list, "fast")["env"],
        json!({"CFLAGS": "-O2 -pipe"})
    );
    assert_eq!(profile(&list, "fast")["world"], json!(["app-misc/solo"]));
    let e = fails(&s, &["profile", "edit", "fast"]);
    assert!(e.contains("nothing to change"), "{e}");
    let e = fails(&s, &["profile", "edit", "nope", "--set", "CFLAGS=-O1"]);
    assert!(e.contains("no profile \"nope\""), "{e}");

    // Remove: refused while its packages wait, unless forced with a reason; asks first.
    let e = fails(&s, &["profile", "remove", "fast", "--yes"]);
    assert!(
        e.contains("1 package of profile fast is queued and not built"),
        "{e}"
    );
    assert!(e.contains("--force --reason"), "{e}");
    let e = fails(&s, &["profile", "remove", "fast", "--force", "--yes"]);
    assert!(e.contains("--reason"), "{e}");
    let e = fails(
        &s,
        &[
            "profile", "remove", "fast", "--force", "--reason", "retired",
        ],
    );
    assert!(e.contains("--yes"), "no terminal, no --yes: {e}");
    assert!(
        e.contains("drops the 1 queued package of profile fast that no drone holds"),
        "{e}"
    );
    let out = json_of(
        &s,
        &[
            "profile", "remove", "fast", "--force", "--reason", "retired", "--yes", "--json",
        ],
    );
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(
        queue(&s),
        [
            ("=app-misc/fast-three-1.0".into(), "default".into()),
            ("=dev-libs/base-1.0".into(), "default".into()),
            ("=dev-libs/base-1.0".into(), "slow".into()),
        ],
        "fast's packages are gone, the default profile's copy of its atom stays"
    );
    let out = ok(
        &s,
        &[
            "profile", "remove", "slow", "--force", "--reason", "retired", "--yes",
        ],
    );
    assert!(out.contains("profile slow removed"), "{out}");
    let list = json_of(&s, &["profile", "list", "--json"]);
    assert_eq!(list["profiles"].as_array().map(Vec::len), Some(1), "{list}");
    let e = fails(&s, &["profile", "remove", "default", "--yes"]);
    assert!(e.contains("default profile cannot be removed"), "{e}");
}

#[test]
fn removing_a_profile_keeps_its_tree_and_says_so_unless_purge_deletes_it_when_nothing_builds() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    register(&s, "drone-b", "-O3");
    ok(&s, &["profile", "create", "keep", "--set", "CFLAGS=-O2"]);
    ok(&s, &["profile", "create", "gone", "--set", "CFLAGS=-O3"]);
    // Listing a profile's releases opens them: its tree and records are made on disk.
    for p in ["keep", "gone"] {
        ok(&s, &["release", "--profile", p, "list"]);
    }
    let (code, v) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/g-1.0"], "profile": "gone"}),
    );
    assert_eq!(code, 200, "{v}");
    let (_, work) = s.get("/api/v1/work?id=drone-b");
    assert_eq!(work["package"], "=dev-libs/g-1.0", "{work}");
    // Its upload is staged in the profile's own tree.
    let gpkg = dir.path().join("g-1.0.gpkg.tar");
    swarm_net::binpkg::write_gpkg(
        "dev-libs/g-1.0",
        &[("SLOT".to_owned(), "0".to_owned())].into(),
        &[("usr/share/doc/g/README", b"g\n".as_slice())],
        &gpkg,
    )
    .expect("write_gpkg");
    let lease = work["lease"].as_u64().expect("lease").to_string();
    let (code, v) = support::request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/dev-libs/g-1.0.gpkg.tar", s.url),
        Some(&std::fs::read(&gpkg).expect("read")),
        None,
        &[("X-Swarm-Lease", lease.as_str())],
    );
    assert_eq!(code, 200, "{v}");
    let gone_staging = s.data_dir.join("staging/.profiles/gone");
    assert!(gone_staging.join("dev-libs/g-1.0.gpkg.tar").is_file());

    // A plain removal keeps the tree and the records, and says where and why.
    let out = json_of(&s, &["profile", "remove", "keep", "--yes", "--json"]);
    let tree = std::path::PathBuf::from(out["kept"]["tree"].as_str().expect("tree kept"));
    let state = std::path::PathBuf::from(out["kept"]["state"].as_str().expect("state kept"));
    assert_eq!(out["kept"]["served_at"], "/binhost/keep/", "{out}");
    let note = out["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("clients may still install from /binhost/keep/"),
        "{out}"
    );
    assert!(tree.is_dir() && state.is_dir(), "{out}");
    let (gone_tree, gone_state) = (tree.with_file_name("gone"), state.with_file_name("gone"));
    assert!(gone_tree.is_dir() && gone_state.is_dir());

    // A purge waits while a package of the profile builds, with --force or without.
    let e = fails(
        &s,
        &[
            "profile", "remove", "gone", "--purge", "--force", "--reason", "retired", "--yes",
        ],
    );
    assert!(
        e.contains("1 package of profile gone is being built"),
        "{e}"
    );
    let (code, v) = s.admin_post(
        "/api/v1/control",
        &json!({"action": "remove_profile", "profile": "gone", "purge": true,
                "force": true, "reason": "retired"}),
    );
    assert_eq!((code, v["field"].as_str()), (409, Some("purge")), "{v}");
    assert!(gone_tree.is_dir(), "nothing was deleted");
    let list = json_of(&s, &["profile", "list", "--json"]);
    assert!(
        list["profiles"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "gone"),
        "the refused purge removed nothing: {list}"
    );

    // Its build goes back to the queue: --force drops it, and --purge deletes the tree.
    let (code, v) = s.admin_post("/api/v1/nodes/drone-b/remove", &json!({}));
    assert_eq!(code, 200, "{v}");
    let e = fails(&s, &["profile", "remove", "gone", "--purge", "--yes"]);
    assert!(e.contains("queued and not built"), "{e}");
    let out = ok(
        &s,
        &[
            "profile", "remove", "gone", "--purge", "--force", "--reason", "retired", "--yes",
        ],
    );
    assert!(out.contains("profile gone removed"), "{out}");
    assert!(
        out.contains(&format!("deleted: {}", gone_tree.display())),
        "{out}"
    );
    assert!(out.contains(&gone_staging.display().to_string()), "{out}");
    assert!(
        !gone_tree.exists() && !gone_state.exists() && !gone_staging.exists(),
        "{out}"
    );

    // What the earlier plain removal kept is purged later by name; then nothing is left.
    let out = ok(&s, &["profile", "remove", "keep", "--purge", "--yes"]);
    assert!(out.contains("deleted:"), "{out}");
    assert!(!tree.exists() && !state.exists(), "{out}");
    let e = fails(&s, &["profile", "remove", "keep", "--purge", "--yes"]);
    assert!(e.contains("no release records"), "{e}");
    assert!(
        tree.parent().expect("binhost root").is_dir(),
        "the binhost root itself stays"
    );
}

/// `queue import` sent no package's profile, so a list for one profile was
/// built for the default one, unsaid (h13); `queue add` had no way to name one.
#[test]
fn queue_import_and_add_queue_packages_for_the_profile_they_name() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    ok(&s, &["profile", "create", "desktop", "--set", "CFLAGS=-O2"]);
    let list = dir.path().join("list.json");
    std::fs::write(
        &list,
        r#"[{"atom": "=dev-libs/for-desktop-1", "profile": "desktop"}, "=dev-libs/plain-1"]"#,
    )
    .expect("write");
    let path = list.to_str().expect("utf8");
    let dry = ok(&s, &["queue", "import", path, "--dry-run"]);
    assert!(dry.contains("\"profile\": \"desktop\""), "{dry}");
    ok(&s, &["queue", "import", path]);
    let toml = dir.path().join("list.toml");
    std::fs::write(&toml, "[[package]]\natom = \"=dev-libs/from-toml-1\"\n").expect("write");
    ok(
        &s,
        &[
            "queue",
            "import",
            toml.to_str().expect("utf8"),
            "--profile",
            "desktop",
        ],
    );
    ok(
        &s,
        &["queue", "add", "=dev-libs/added-1", "--profile", "desktop"],
    );
    assert_eq!(
        queue(&s),
        [
            ("=dev-libs/added-1".to_owned(), "desktop".to_owned()),
            ("=dev-libs/for-desktop-1".to_owned(), "desktop".to_owned()),
            ("=dev-libs/from-toml-1".to_owned(), "desktop".to_owned()),
            ("=dev-libs/plain-1".to_owned(), "default".to_owned()),
        ]
    );
    // A profile the server does not know is refused, naming it.
    let err = fails(
        &s,
        &["queue", "add", "=dev-libs/x-1", "--profile", "nosuch"],
    );
    assert!(err.contains("nosuch"), "{err}");
}
