//! The binhost proven with the real Portage (issue 12, "Prove it with real
//! Portage"): a real `swarm serve` and two real `swarm drone` processes whose
//! builder is the real `emerge --oneshot --buildpkg`, each in its own Portage
//! prefix (tests/portage/prefix.sh), build the fixture world; `swarm release
//! create` and `publish`; a separate client prefix with an empty PKGDIR
//! installs the world with the real `emerge --getbinpkgonly --usepkgonly`
//! from `http://127.0.0.1:PORT/binhost` (Portage checks every SIZE, MD5 and
//! SHA1); a second release is published, rolled back, and the client sees the
//! first again. Portage's own `PackageIndex` reads swarm's index, compared
//! field by field with what `emaint binhost --fix` writes for the same tree.
//!
//! Needs the Portage venv (`SWARM_PORTAGE_VENV`, made by tests/portage/venv.sh):
//! under `CI=true` a missing venv FAILS the test; elsewhere it is skipped with
//! the reason printed.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::portage::{machine_env, venv};
use support::{request, swarm_bin, Server};

/// One Portage machine: its directory and the environment that makes emerge work there.
struct Machine {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(venv: &Path, dir: &Path) -> Machine {
        let env = machine_env(dir, venv);
        Machine {
            dir: dir.to_path_buf(),
            env,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("PORTAGE_BINHOST");
        c
    }

    fn pkgdir(&self) -> PathBuf {
        self.dir.join("pkgdir")
    }

    fn installed(&self) -> Vec<String> {
        swarm_net::binpkg::installed(&self.dir.join("prefix/var/db/pkg"))
    }

    /// `emerge` as a binhost client of `url`.
    fn emerge_from(&self, url: &str, args: &[&str]) -> Output {
        self.command("emerge")
            .env("PORTAGE_BINHOST", url)
            .env("FEATURES", "-binpkg-request-signature")
            .args(["--getbinpkgonly", "--usepkgonly"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run emerge")
    }

    /// Portage's own index of `pkgdir` (`emaint binhost --fix`).
    fn emaint_fix(&self, pkgdir: &Path) {
        let fix = self
            .command("emaint")
            .args(["binhost", "--fix"])
            .env("PKGDIR", pkgdir)
            .output()
            .expect("emaint");
        ok(
            &fix,
            &format!("emaint binhost --fix in {}", pkgdir.display()),
        );
    }

    fn python(&self, venv: &Path, script: &str, args: &[&str]) -> Output {
        self.command(&venv.join("bin/python").to_string_lossy())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("run python")
    }
}

/// A real `swarm drone` whose builder is the real emerge in `machine`.
struct Drone {
    child: Child,
    log: PathBuf,
}

impl Drone {
    fn start(server: &Server, machine: &Machine, name: &str) -> Drone {
        let log = machine.dir.join("drone.log");
        let config = machine.dir.join("empty-swarm.toml");
        std::fs::write(&config, "").expect("config");
        let mut cmd = machine.command(&swarm_bin().to_string_lossy());
        cmd.args(["drone", "--server", &server.url, "--name", name])
            .args(["--machine-id", &format!("binhost-e2e-{name}")])
            // --nodeps: the queue orders dependencies; each drone builds one
            // package per lease instead of its whole dependency tree.
            .args([
                "--builder",
                "emerge --oneshot --buildpkg --usepkg=n --nodeps --quiet {atom}",
            ])
            .args(["--heartbeat-s", "1", "--poll-s", "1", "--kill-grace-s", "1"])
            .args(["--min-free-disk", "64MiB"])
            .arg("--config")
            .arg(&config)
            .arg("--work-dir")
            .arg(machine.dir.join("work"))
            .arg("--pkgdir")
            .arg(machine.pkgdir())
            .arg("--portage-timestamp-file")
            .arg(machine.dir.join("no-timestamp"))
            .env_remove("SWARM_URL")
            .env_remove("SWARM_CONFIG")
            .env("SWARM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        Drone {
            child: cmd.spawn().expect("spawn swarm drone"),
            log,
        }
    }
}

impl Drop for Drone {
    fn drop(&mut self) {
        // The agent kills its builds' process groups on TERM; KILL after a grace.
        support::terminate_child(&mut self.child, Duration::from_secs(5));
    }
}

/// The fixture world as explicit atoms with their dependency edges (what
/// `emerge -p --emptytree` orders for it).
fn world() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("=dev-libs/libfoo-1.2", vec![]),
        ("=dev-libs/libssl-3.0.1", vec![]),
        ("=dev-util/buildtool-1.0", vec![]),
        ("=dev-libs/libbar-2.1", vec!["=dev-libs/libfoo-1.2"]),
        (
            "=app-misc/hello-1.0",
            vec![
                "=dev-libs/libbar-2.1",
                "=dev-libs/libssl-3.0.1",
                "=dev-util/buildtool-1.0",
            ],
        ),
        ("=acct-group/builder-0", vec![]),
        ("=acct-user/builder-0", vec!["=acct-group/builder-0"]),
        ("=dev-lang/lang-1.0", vec![]),
        ("=dev-lang/lang-2.0", vec![]),
        ("=sys-libs/libxcrypt-4.4.36", vec![]),
        ("=virtual/libcrypt-2", vec!["=sys-libs/libxcrypt-4.4.36"]),
        (
            "=app-misc/daemon-0.9",
            vec![
                "=acct-user/builder-0",
                "=dev-lang/lang-2.0",
                "=virtual/libcrypt-2",
            ],
        ),
        (
            "=x11-libs/gtk+-3.24.43",
            vec!["=dev-libs/libfoo-1.2", "=virtual/libcrypt-2"],
        ),
        ("=dev-libs/circ-a-1.0", vec![]),
        ("=dev-libs/circ-b-1.0", vec![]),
        ("=app-misc/plugin-host-1.0", vec![]),
        ("=app-misc/plugin-1.0", vec!["=app-misc/plugin-host-1.0"]),
    ]
}

/// What the client asks for: the world file of the issue.
const TARGETS: [&str; 6] = [
    "app-misc/hello",
    "app-misc/daemon",
    "x11-libs/gtk+",
    "dev-libs/circ-a",
    "app-misc/plugin-host",
    "dev-lang/lang:1",
];

fn swarm(server: &Server, args: &[&str]) -> Output {
    Command::new(swarm_bin())
        .args(args)
        .env("SWARM_URL", &server.url)
        .env("SWARM_DATA_DIR", &server.data_dir)
        .env_remove("SWARM_ADMIN_TOKEN")
        .output()
        .expect("run swarm")
}

fn ok(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Portage's own reader on both indexes, entry by entry, key by key.
const COMPARE: &str = r#"
import sys, portage
from portage.versions import _pkg_str
bintree = portage.db[portage.root]["bintree"]
def load(path):
    idx = bintree._new_pkgindex()
    with open(path, encoding="utf-8") as f:
        idx.read(f)
    return idx
ours, theirs = load(sys.argv[1]), load(sys.argv[2])
problems = []
# Every header key but TIMESTAMP: the profile keys come from the drones' build
# environment (their portageq), VERSION, PACKAGES and CHOST from swarm.
for k in sorted((set(ours.header) | set(theirs.header)) - {"TIMESTAMP"}):
    if ours.header.get(k) != theirs.header.get(k):
        problems.append(f"header {k}: swarm {ours.header.get(k)!r} emaint {theirs.header.get(k)!r}")
if not ours.header.get("TIMESTAMP", "").isdigit():
    problems.append("header TIMESTAMP missing")
a = {d["CPV"]: d for d in ours.packages}
b = {d["CPV"]: d for d in theirs.packages}
if sorted(a) != sorted(b):
    problems.append(f"packages differ: swarm {sorted(a)} emaint {sorted(b)}")
fields = 0
for cpv in sorted(set(a) & set(b)):
    for key in sorted(set(a[cpv]) | set(b[cpv])):
        fields += 1
        if a[cpv].get(key) != b[cpv].get(key):
            problems.append(f"{cpv} {key}: swarm {a[cpv].get(key)!r} emaint {b[cpv].get(key)!r}")
print(f"compared {len(a)} packages, {fields} fields")
for p in problems:
    print("MISMATCH", p)
sys.exit(1 if problems else 0)
"#;

#[test]
fn real_portage_installs_the_world_from_a_published_release_and_follows_a_rollback() {
    let Some(venv) = venv() else { return };
    let began = Instant::now();
    // A service's `UMask=0077`: what swarm serves must still be 0644/0755.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // No reference header is configured: the index header comes from the
    // environment the drones report (portageq), recorded with each build.
    let server = Server::start(&dir.join("data"), &[]);
    let packages: Vec<Value> = world()
        .into_iter()
        .map(|(atom, deps)| json!({ "atom": atom, "deps": deps }))
        .collect();
    let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": packages }));
    assert_eq!(code, 200, "{body}");

    let machines: Vec<Machine> = ["drone-a", "drone-b"]
        .iter()
        .map(|n| Machine::new(&venv, &dir.join(n)))
        .collect();
    let drones: Vec<Drone> = machines
        .iter()
        .zip(["drone-a", "drone-b"])
        .map(|(m, n)| Drone::start(&server, m, n))
        .collect();
    let total = world().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        let (_, s) = server.get("/api/v1/status");
        let built = s["queue"]["built"]
            .as_u64()
            .or_else(|| s["counts"]["built"].as_u64());
        let blocked = s["queue"]["blocked"]
            .as_u64()
            .or_else(|| s["counts"]["blocked"].as_u64());
        if built == Some(total) {
            break;
        }
        if Instant::now() > deadline || blocked.unwrap_or(0) > 0 {
            let logs: Vec<String> = drones
                .iter()
                .map(|d| tail(&std::fs::read_to_string(&d.log).unwrap_or_default(), 30))
                .collect();
            panic!(
                "the world was not built: status {s}\n{}",
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(drones);
    eprintln!(
        "built {total} packages with 2 real-emerge drones in {:?}",
        began.elapsed()
    );

    // Release 1: the whole world. The gate passes.
    let text = ok(
        &swarm(&server, &["release", "create", "--name", "r1"]),
        "release create r1",
    );
    assert!(text.contains(&format!("{total} packages")), "{text}");
    assert!(
        text.contains(&format!(
            "that {total} of {total} packages were recorded as built with"
        )) && !text.contains("missing"),
        "the index header is not the drones' build environment:\n{text}"
    );
    ok(
        &swarm(&server, &["release", "publish", "r1"]),
        "release publish r1",
    );
    let r1_dir = server.data_dir.join("binhost/r1");
    assert_modes(&server.data_dir.join("binhost"));

    // Portage's reader agrees with emaint on the same tree, field by field.
    let client = Machine::new(&venv, &dir.join("client"));
    let reference = dir.join("emaint-tree");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&r1_dir)
        .arg(&reference)
        .status()
        .expect("cp");
    assert!(cp.success());
    std::fs::remove_file(reference.join("Packages")).expect("drop swarm's index in the copy");
    client.emaint_fix(&reference);
    let cmp = client.python(
        &venv,
        COMPARE,
        &[
            &r1_dir.join("Packages").to_string_lossy(),
            &reference.join("Packages").to_string_lossy(),
        ],
    );
    let report = ok(&cmp, "PackageIndex comparison with emaint");
    eprintln!("{}", report.trim());
    // app-misc/hello's LICENSE and RESTRICT are USE-conditional: built with
    // USE="ssl -debug", both come out reduced, as emaint writes them.
    let index = std::fs::read_to_string(r1_dir.join("Packages")).expect("r1 index");
    let hello = index
        .split("\n\n")
        .find(|b| b.contains("CPV: app-misc/hello-1.0\n"))
        .expect("hello in the index");
    for want in ["LICENSE: || ( MIT BSD ) BSD\n", "RESTRICT: test\n"] {
        assert!(hello.contains(want), "{want:?} not in\n{hello}");
    }

    // A client with an empty PKGDIR installs the world from /binhost.
    let binhost = format!("{}/binhost", server.url);
    let out = client.emerge_from(&binhost, &TARGETS);
    let text = ok(&out, "emerge --getbinpkgonly of the world");
    let installed = client.installed();
    for want in [
        "app-misc/hello-1.0",
        "app-misc/daemon-0.9",
        "x11-libs/gtk+-3.24.43",
        "dev-libs/circ-a-1.0",
        "dev-libs/circ-b-1.0",
        "app-misc/plugin-host-1.0",
        "app-misc/plugin-1.0",
        "dev-lang/lang-1.0",
        "virtual/libcrypt-2",
        "sys-libs/libxcrypt-4.4.36",
        "dev-libs/libbar-2.1",
        "dev-libs/libfoo-1.2",
    ] {
        assert!(
            installed.iter().any(|i| i == want),
            "{want} not installed; got {installed:?}\n{}",
            tail(&text, 40)
        );
    }
    assert!(
        text.contains("MD5 SHA1 size ;-)"),
        "Portage did not verify the digests:\n{}",
        tail(&text, 40)
    );

    // Release 2 lacks app-misc/plugin: the gate refuses, listing the reason;
    // --force --reason publishes it and records the override.
    let staging = server.data_dir.join("staging");
    let removed = remove_package(&staging, "app-misc", "plugin-1.0");
    assert!(removed > 0, "no app-misc/plugin-1.0 file in staging");
    ok(
        &swarm(&server, &["release", "create", "--name", "r2"]),
        "release create r2",
    );
    let refused = swarm(&server, &["release", "publish", "r2"]);
    let why = format!("{}", String::from_utf8_lossy(&refused.stderr));
    assert!(!refused.status.success(), "the gate let r2 through");
    assert!(
        why.contains("=app-misc/plugin-1.0 is in the current generation but not in the release"),
        "{why}"
    );
    // A script asking for JSON gets the gate's reasons on stdout, and the refusal (h109).
    let refused = swarm(&server, &["release", "publish", "r2", "--json"]);
    assert!(!refused.status.success(), "the gate let r2 through");
    let said: Value = serde_json::from_slice(&refused.stdout).expect("JSON on stdout");
    assert_eq!(said["published"], false, "{said}");
    assert!(
        said["gate"]["reasons"]
            .to_string()
            .contains("=app-misc/plugin-1.0"),
        "{said}"
    );
    // A client of r1 that read its index before the switch keeps finding its files.
    let (_, r1_index) = request("GET", &format!("{binhost}/Packages"), None, None);
    let r1_paths = paths_of(r1_index.as_str().unwrap_or_default());
    assert_eq!(r1_paths.len() as u64, total, "r1's published index");
    ok(
        &swarm(
            &server,
            &[
                "release",
                "publish",
                "r2",
                "--force",
                "--reason",
                "plugin is broken upstream",
            ],
        ),
        "forced publish of r2",
    );
    for p in &r1_paths {
        let (code, _) = head(&format!("{binhost}/{p}"));
        assert_eq!(code, 200, "{p} of r1 gone after r2 was published");
    }
    let (_, events) = server.get("/api/v1/events?after=0&limit=1000");
    let events = events.to_string();
    assert!(
        events.contains("gate_overridden") && events.contains("plugin is broken upstream"),
        "{events}"
    );

    // A client sees r2 (no app-misc/plugin), then r1 again after a rollback,
    // although it cached r2's index.
    let viewer = Machine::new(&venv, &dir.join("viewer"));
    let pretend = |c: &Machine| {
        c.emerge_from(
            &binhost,
            &["--pretend", "--oneshot", "=app-misc/plugin-1.0"],
        )
    };
    let r2_view = pretend(&viewer);
    assert!(
        !r2_view.status.success(),
        "r2 has no app-misc/plugin, yet emerge found it"
    );
    ok(
        &swarm(&server, &["release", "rollback"]),
        "release rollback",
    );
    let r1_again = pretend(&viewer);
    ok(
        &r1_again,
        "after the rollback, the client sees app-misc/plugin of r1 again",
    );
    let (_, list) = server.get("/api/v1/releases");
    assert_eq!(list["published"], "r1", "{list}");
    eprintln!("whole binhost e2e: {:?}", began.elapsed());
}

/// HEAD of a URL: the status.
fn head(url: &str) -> (u16, Value) {
    request("HEAD", url, None, None)
}

fn paths_of(index: &str) -> Vec<String> {
    index
        .lines()
        .filter_map(|l| l.strip_prefix("PATH: "))
        .map(str::to_string)
        .collect()
}

fn remove_package(staging: &Path, cat: &str, pf: &str) -> usize {
    let mut n = 0;
    for d in [
        staging.join(cat),
        staging
            .join(cat)
            .join(pf.rsplit_once('-').map_or(pf, |x| x.0)),
    ] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(pf) && (name.ends_with(".gpkg.tar") || name.ends_with(".tbz2")) {
                std::fs::remove_file(e.path()).expect("remove");
                n += 1;
            }
        }
    }
    n
}

/// Every directory 0755 and file 0644 in the served tree, whatever the umask.
fn assert_modes(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    let mut modes = BTreeMap::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            let m = e.metadata().expect("meta");
            let mode = m.permissions().mode() & 0o777;
            if m.is_dir() {
                assert_eq!(mode, 0o755, "{}", e.path().display());
                stack.push(e.path());
            } else {
                assert_eq!(mode, 0o644, "{}", e.path().display());
            }
            *modes.entry(mode).or_insert(0) += 1;
        }
    }
    assert!(modes.len() == 2, "{modes:?}");
}
