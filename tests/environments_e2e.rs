//! Build environments end to end (issue 17): two real `swarm drone`s, each in its own real
//! Portage prefix whose make.conf differs only in CFLAGS, report what the real `portageq`
//! resolves; once the operator expects the environment of one, only that one builds, and the
//! other is told exactly what differs. Both prefixes have a compiler and a libc installed by the
//! real emerge, which the fingerprint names as `portageq best_version` resolves them; every build
//! is stamped with its drone's environment digest, and `swarm fleet` marks the drifting drone.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use support::drone::Drone;
use support::portage::{copy_fixture_repo, machine_env_with, venv};
use support::{swarm_bin, Server};

/// The fixture repository plus a stand-in compiler and libc, so `best_version` has them to find.
fn repo_with_toolchain(dest: &Path) {
    copy_fixture_repo(dest);
    for (cat, pn, pv) in [
        ("sys-devel", "gcc", "14.2.1_p20241116"),
        ("sys-libs", "glibc", "2.40-r5"),
    ] {
        let dir = dest.join(cat).join(pn);
        std::fs::create_dir_all(&dir).expect("ebuild dir");
        std::fs::write(
            dir.join(format!("{pn}-{pv}.ebuild")),
            "EAPI=8\nDESCRIPTION=\"stand-in toolchain\"\nHOMEPAGE=\"https://gentoo.org\"\n\
             LICENSE=\"GPL-3\"\nSLOT=\"0\"\nKEYWORDS=\"amd64\"\nS=${WORKDIR}\n",
        )
        .expect("ebuild");
    }
    let categories = dest.join("profiles/categories");
    let mut text = std::fs::read_to_string(&categories).expect("categories");
    for cat in ["sys-devel", "sys-libs"] {
        if !text.lines().any(|l| l == cat) {
            text.push_str(cat);
            text.push('\n');
        }
    }
    std::fs::write(&categories, text).expect("categories");
}

/// Installs the toolchain into a machine with the real emerge.
fn install_toolchain(env: &[(String, String)]) {
    let out = Command::new("emerge")
        .args(["--oneshot", "--quiet", "sys-devel/gcc", "sys-libs/glibc"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("emerge runs");
    assert!(
        out.status.success(),
        "emerge the toolchain: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One field of every successful build in a `/api/v1/history` reply.
fn successful<'a, T: FromIterator<&'a str>>(history: &'a Value, field: &str) -> T {
    history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["outcome"] == "success")
        .filter_map(|b| b[field].as_str())
        .collect()
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A temp dir with the fixture repository and its toolchain, for machines made on it.
struct Machines {
    dir: tempfile::TempDir,
    venv: std::path::PathBuf,
    repo: String,
}

impl Machines {
    /// `None` where the Portage venv is missing (`venv()` fails instead under CI).
    fn new() -> Option<Machines> {
        let venv = venv()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        repo_with_toolchain(&repo);
        let repo = repo.to_string_lossy().into_owned();
        Some(Machines { dir, venv, repo })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A Portage prefix `name` whose make.conf sets `cflags`, with the toolchain installed.
    fn machine(&self, name: &str, cflags: &str) -> Vec<(String, String)> {
        let env = machine_env_with(
            &self.path().join(name),
            &self.venv,
            &[
                "--repo",
                &self.repo,
                "--make-conf-extra",
                &format!("CFLAGS=\"{cflags}\""),
            ],
        );
        install_toolchain(&env);
        env
    }
}

#[test]
fn only_the_drone_whose_portage_environment_is_expected_builds_and_the_other_hears_why() {
    let Some(m) = Machines::new() else {
        return;
    };
    let dir = &m.dir;
    let machine = |name: &str, cflags: &str| m.machine(name, cflags);
    let (o2, o3) = (machine("m-o2", "-O2 -pipe"), machine("m-o3", "-O3 -pipe"));
    let server = Server::start(&dir.path().join("server"), &[]);
    let _a = Drone::start(&server, dir.path(), "drone-o2", &[], &refs(&o2));
    let _b = Drone::start(&server, dir.path(), "drone-o3", &[], &refs(&o3));
    server.wait_for(60, "both drones to report their environment", |_| {
        ["drone-o2", "drone-o3"]
            .iter()
            .all(|n| server.node(n)["env"]["CFLAGS"].is_string())
    });
    let a = server.node("drone-o2");
    assert_eq!(a["env"]["CFLAGS"], "-O2 -pipe", "{a}");
    assert_eq!(a["env"]["ARCH"], "amd64", "{a}");
    assert_eq!(a["env"]["PROFILE"], "default/linux/amd64", "{a}");
    assert_eq!(a["env"]["GCC"], "sys-devel/gcc-14.2.1_p20241116", "{a}");
    assert_eq!(a["env"]["LIBC"], "sys-libs/glibc-2.40-r5", "{a}");
    assert_eq!(server.node("drone-o3")["env"]["CFLAGS"], "-O3 -pipe");

    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "drone": "drone-o2"}),
    );
    assert_eq!(code, 200, "{v}");
    let atoms: Vec<String> = (0..6).map(|i| format!("=dev-libs/env{i}-1.0")).collect();
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
    server.wait_for(90, "all six built", |s| s["counts"]["built"] == 6);

    let (_, history) = server.get("/api/v1/history?limit=100");
    let builders: Vec<&str> = successful(&history, "drone");
    assert_eq!(builders.len(), 6, "{history}");
    assert!(builders.iter().all(|d| *d == "drone-o2"), "{builders:?}");
    // Every build is stamped with the environment it was built in: drone-o2's, one digest.
    let digests: std::collections::BTreeSet<&str> = successful(&history, "env_digest");
    assert_eq!(digests.len(), 1, "{history}");
    assert!(digests.iter().all(|d| d.len() == 16), "{digests:?}");
    let b = server.node("drone-o3");
    assert_eq!(
        b["no_work"], "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)",
        "{b}"
    );
    assert_eq!(b["env_differences"][0]["key"], "CFLAGS", "{b}");
    let out = Command::new(swarm_bin())
        .arg("fleet")
        .env("SWARM_URL", &server.url)
        .output()
        .expect("swarm fleet");
    let fleet = String::from_utf8_lossy(&out.stdout);
    assert!(
        fleet.contains("ENV DRIFT: CFLAGS (-O3 -pipe vs -O2 -pipe)"),
        "{fleet}"
    );

    // Expect drone-o3's environment instead: a release of what drone-o2 built is refused, and
    // the gate says which packages and what differs, from the environment recorded per build.
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "drone": "drone-o3"}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.admin_post("/api/v1/releases", &json!({ "name": "r1" }));
    assert_eq!(code, 201, "{v}");
    let (code, gate) = server.get("/api/v1/releases/r1/gate");
    assert_eq!(code, 200, "{gate}");
    assert_eq!(gate["passed"], false, "{gate}");
    let refused: Vec<&str> = gate["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(refused.len(), 6, "{gate}");
    assert!(
        refused.iter().all(|r| r.ends_with(
            "was built on drone-o2 in another environment: \
             environment differs in CFLAGS (-O2 -pipe vs -O3 -pipe)"
        )),
        "{refused:?}"
    );

    // A malformed environment written down is refused with the field named.
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "env": {"C FLAGS": "-O2"}}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("env"), "{v}");
}

/// A drone whose make.conf changes between two builds (h31): the agent read its environment
/// every ten minutes, so the next build ran in the new one under the old one's stamp, and a
/// release of the profile that expects the old one shipped it. Now the environment is read and
/// sent before each build starts, and the drift takes the package back before it is built.
#[test]
fn a_make_conf_changed_between_builds_is_seen_before_the_next_build() {
    let Some(m) = Machines::new() else {
        return;
    };
    let dir = &m.dir;
    let env = m.machine("m", "-O2 -pipe");
    let machine = dir.path().join("m");
    let server = Server::start(&dir.path().join("server"), &[]);
    let _d = Drone::start(&server, dir.path(), "drone-m", &[], &refs(&env));
    server.wait_for(60, "the drone's environment", |_| {
        server.node("drone-m")["env"]["CFLAGS"] == "-O2 -pipe"
    });
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "drone": "drone-m"}),
    );
    assert_eq!(code, 200, "{v}");
    let queue = |atom: &str| {
        let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
        assert_eq!(code, 200, "{v}");
    };
    queue("=dev-libs/env0-1.0");
    server.wait_for(60, "the first build", |s| s["counts"]["built"] == 1);

    let make_conf = machine.join("prefix/etc/portage/make.conf");
    let text = std::fs::read_to_string(&make_conf).expect("make.conf");
    assert!(text.contains("CFLAGS=\"-O2 -pipe\""), "{text}");
    std::fs::write(&make_conf, text.replace("-O2 -pipe", "-O3 -pipe")).expect("make.conf");
    queue("=dev-libs/env1-1.0");
    server.wait_for(60, "the drone to report its new environment", |_| {
        server.node("drone-m")["env"]["CFLAGS"] == "-O3 -pipe"
    });
    let node = server.node("drone-m");
    assert_eq!(
        node["no_work"], "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)",
        "{node}"
    );
    // Long enough for a build the old agent would have finished a few times over.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (_, status) = server.get("/api/v1/status");
    assert_eq!(
        status["counts"]["built"], 1,
        "built in the new environment: {status}"
    );
    let (_, history) = server.get("/api/v1/history?limit=100");
    let built: Vec<&str> = successful(&history, "package");
    assert_eq!(built, ["=dev-libs/env0-1.0"], "{history}");
}
