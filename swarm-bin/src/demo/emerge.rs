//! `swarm demo --builder emerge`: the same real swarm, building a small real
//! ebuild repository (tests/portage/repo, embedded in the binary) with the
//! real `emerge` of PyPI's Portage, then publishing a release and installing
//! it into a fresh client machine with the real `emerge --getbinpkgonly`.
//!
//! Every "machine" (each drone, the client) is an isolated Portage prefix made
//! by tests/portage/prefix.sh (also embedded), so nothing on this host is
//! touched and no root is needed. The steps are the product's: the list and
//! its dependency edges come from `emerge -p --emptytree --tree` read by
//! `swarm queue import`'s parser, the drones are real `swarm drone`s, the
//! release goes through the server's gate, and the client checks each file
//! against the server's index as Portage does.

use super::args::DemoArgs;
use super::launch::{path_arg, DroneLaunch, Started};
use super::poller::Poller;
use super::procs::Supervisor;
use super::progress::{Progress, Tick};
use crate::cli::bounded_run::{self, Ran};
use crate::cli::{fresh, import};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use swarm_net::client::admin::EnqueueRequest;
use swarm_net::client::Auth;

include!(concat!(env!("OUT_DIR"), "/fixture_repo.rs"));

/// Makes one Portage machine (tests/portage/prefix.sh).
const PREFIX_SH: &str = include_str!("../../../tests/portage/prefix.sh");
/// What the demo builds and the client installs (tests/portage/world).
const WORLD: &str = include_str!("../../../tests/portage/world");
/// The release the demo publishes.
const RELEASE: &str = "demo";
/// How long one emerge (resolving the list, or the client's install) may take.
const EMERGE_TIMEOUT: Duration = Duration::from_secs(600);

/// How to get the `portage` Python package, for the error that says it is missing.
pub(crate) const INSTALL_HINT: &str = "python3 -m venv DIR && DIR/bin/pip install portage, \
     then run swarm demo --builder emerge --portage-venv DIR (or set SWARM_PORTAGE_VENV=DIR)";

/// The Portage venv to use: `--portage-venv`, else `SWARM_PORTAGE_VENV`; it
/// must hold `bin/emerge` and a Python that imports `portage`.
pub(crate) fn find_venv(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    let venv = arg
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SWARM_PORTAGE_VENV").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty());
    let Some(venv) = venv else {
        bail!(
            "--builder emerge needs the real Portage (the `portage` Python package), and neither \
             --portage-venv nor SWARM_PORTAGE_VENV names one. Install it: {INSTALL_HINT}"
        );
    };
    let python = venv.join("bin/python");
    let emerge = venv.join("bin/emerge");
    let imports = python.is_file()
        && bounded_run::run(
            &[path_arg(&python), "-c".into(), "import portage".into()],
            Duration::from_secs(60),
            "python -c 'import portage'",
        )
        .is_ok_and(|r| r.code == Some(0));
    if !imports || !emerge.is_file() {
        bail!(
            "{} is not a venv with Portage in it ({}): install it with {INSTALL_HINT}",
            venv.display(),
            if imports {
                "no bin/emerge"
            } else {
                "its python cannot import portage"
            }
        );
    }
    venv.canonicalize()
        .with_context(|| format!("resolving {}", venv.display()))
}

/// One Portage machine: its directory and the environment that makes emerge work there.
struct Machine {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    /// Makes `dir` a Portage machine on `repo` with prefix.sh.
    fn new(script: &Path, dir: &Path, repo: &Path, venv: &Path) -> anyhow::Result<Machine> {
        let argv = [
            "env".to_owned(),
            format!("SWARM_PORTAGE_VENV={}", venv.display()),
            "bash".into(),
            path_arg(script),
            path_arg(dir),
            "--repo".into(),
            path_arg(repo),
        ];
        let ran = bounded_run::run(&argv, Duration::from_secs(60), "prefix.sh")?;
        if ran.code != Some(0) {
            bail!(
                "making the Portage machine {} failed: {}",
                dir.display(),
                ran.tail(10)
            );
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let env = ran
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').replace("$PATH", &path)))
            .collect();
        Ok(Machine {
            dir: dir.to_path_buf(),
            env,
        })
    }

    /// `env K=V… emerge ARGS…`: emerge inside this machine.
    fn emerge(
        &self,
        extra_env: &[(&str, &str)],
        args: &[String],
        what: &str,
    ) -> anyhow::Result<Ran> {
        let mut argv = vec!["env".to_owned(), "-u".into(), "PORTAGE_BINHOST".into()];
        argv.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.extend(extra_env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.push("emerge".into());
        argv.extend(args.iter().cloned());
        bounded_run::run(&argv, EMERGE_TIMEOUT, what)
    }

    /// `category/pf` of every package installed here (its `var/db/pkg`).
    fn installed(&self) -> Vec<String> {
        swarm_net::binpkg::installed(&self.dir.join("prefix/var/db/pkg"))
    }
}

/// What the emerge demo did, for the closing lines and `--json`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct EmergeSummary {
    /// Always `emerge`.
    pub(crate) builder: &'static str,
    /// The Portage venv used.
    pub(crate) portage_venv: String,
    /// Drones that built.
    pub(crate) drones: u32,
    /// Packages queued (from `emerge -p --emptytree --tree`) and dependency edges.
    pub(crate) queued: usize,
    /// Edges between them.
    pub(crate) edges: usize,
    /// Packages built, and blocked.
    pub(crate) built: u32,
    /// Blocked.
    pub(crate) blocked: u32,
    /// The published release.
    pub(crate) release: String,
    /// Where the client got it.
    pub(crate) binhost: String,
    /// The client's targets.
    pub(crate) targets: Vec<String>,
    /// What the client's `var/db/pkg` holds afterwards.
    pub(crate) installed: Vec<String>,
    /// Binary packages whose size and digests Portage checked against the index.
    pub(crate) verified: usize,
    /// The client machine's prefix.
    pub(crate) client_prefix: String,
    /// Wall time, ms.
    pub(crate) wall_ms: u64,
}

/// Writes the embedded repository and prefix.sh into `dir`.
fn unpack(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let repo = dir.join("repo");
    for (rel, bytes) in FIXTURE_REPO {
        let path = repo.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let script = dir.join("prefix.sh");
    std::fs::write(&script, PREFIX_SH).with_context(|| format!("writing {}", script.display()))?;
    Ok((repo, script))
}

/// Everything between the venv check and the summary; the caller owns the
/// directory and the children.
pub(crate) fn drive(
    args: &DemoArgs,
    venv: &Path,
    dir: &Path,
    sup: &mut Supervisor,
    stop: &AtomicBool,
    progress: &mut Progress,
) -> anyhow::Result<EmergeSummary> {
    let began = Instant::now();
    let (repo, script) = unpack(dir)?;
    let targets = fresh::world_targets(WORLD, "the demo's world")?;
    progress.note(&format!(
        "swarm demo: the fixture repository built by {} drones with the REAL emerge (Portage in {}); \
         every machine is an isolated prefix under {}",
        args.drones,
        venv.display(),
        dir.display()
    ));
    let client_machine = Machine::new(&script, &dir.join("client"), &repo, venv)?;
    let mut machines = Vec::new();
    for i in 1..=args.drones {
        let name = format!("demo-drone-{i}");
        let m = Machine::new(&script, &dir.join("drones").join(&name), &repo, venv)?;
        machines.push((name, m));
    }

    let Started {
        url,
        client,
        config,
        ..
    } = super::launch::start_server(sup, dir, progress)?;

    let log = std::env::var("SWARM_LOG").unwrap_or_else(|_| "info".into());
    for (name, m) in &machines {
        let mut env = m.env.clone();
        env.push(("SWARM_LOG".into(), log.clone()));
        let launch = DroneLaunch {
            url: &url,
            run_id: sup.run_id(),
            config: &config,
        };
        // --nodeps: the queue orders the dependencies; each lease builds one
        // package. One slot: emerges in one prefix share its lock.
        let drone_args = launch.args(
            name,
            "emerge --oneshot --buildpkg --usepkg=n --nodeps --quiet {atom}",
            1,
            &m.dir.join("work"),
            &m.dir.join("pkgdir"),
        );
        let pid = sup.start_drone(name, &drone_args, &env, &m.dir.join("drone.log"))?;
        progress.note(&format!(
            "started {name} (pid {pid}), builder: the real emerge"
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s.max(1));
    let mut poll = Poller::new(&client, stop, deadline);
    loop {
        sup.check_alive(None)?;
        let online = poll
            .nodes()?
            .iter()
            .filter(|n| n.status == "online")
            .count();
        if online >= machines.len() {
            break;
        }
        poll.pause(Some("waiting for the drones to register"))?;
    }

    // The list, as `swarm fresh` makes it: emerge's own resolution, edges included.
    let argv = fresh::emerge_argv("emerge", &targets, &[]);
    let ran = client_machine.emerge(&[], &argv[1..], "emerge --pretend --emptytree --tree")?;
    if ran.code != Some(0) {
        bail!(
            "emerge -p --emptytree --tree {} failed: {}",
            targets.join(" "),
            ran.tail(20)
        );
    }
    let packages = import::parse(&ran.stdout, import::Format::Emerge, "emerge --pretend")?;
    let queued = packages.len();
    let edges = packages.iter().map(|p| p.deps.len()).sum();
    progress.note(&format!(
        "emerge -p --emptytree --tree {} lists {queued} packages and {edges} dependency edges; queueing them",
        targets.join(" ")
    ));
    client
        .enqueue(&EnqueueRequest {
            packages,
            ..EnqueueRequest::default()
        })
        .context("queueing the fixture world")?;

    let status = loop {
        poll.check()?;
        sup.check_alive(None)?;
        let status = poll.status()?;
        let nodes = poll.nodes()?;
        for e in poll.events()? {
            if let Some(line) = super::progress::describe(&e) {
                progress.note(&line);
            }
        }
        progress.update(&Tick {
            status: &status,
            nodes: &nodes,
            killed: None,
        });
        let c = status.counts;
        if c.total > 0 && c.assigned == 0 && (c.queued == 0 || (c.ready == 0 && c.backoff == 0)) {
            break status;
        }
        poll.pause(Some("building the fixture world"))?;
    };
    let c = status.counts;
    if c.built as usize != queued {
        bail!(
            "{} of {queued} packages built ({} blocked); the drones' logs say why",
            c.built,
            c.blocked
        );
    }
    progress.note(&format!(
        "built {} packages; creating and publishing release {RELEASE}",
        c.built
    ));

    let created: Value = client
        .post_json("/api/v1/releases", &json!({ "name": RELEASE }), Auth::Admin)
        .context("creating the release")?;
    let _: Value = client
        .post_json(
            &format!("/api/v1/releases/{RELEASE}/publish"),
            &json!({ "force": false, "reason": null }),
            Auth::Admin,
        )
        .context("publishing the release")?;
    let binhost = format!("{url}/binhost");
    progress.note(&format!(
        "release {RELEASE} published ({} packages) at {binhost}; a fresh client machine installs {} \
         with emerge --getbinpkgonly --usepkgonly",
        created["release"]["packages"].as_u64().unwrap_or(0),
        targets.join(" ")
    ));

    let mut install = vec![
        "--getbinpkgonly".to_owned(),
        "--usepkgonly".into(),
        "--color=n".into(),
        "--nospinner".into(),
    ];
    install.extend(targets.iter().cloned());
    let ran = client_machine.emerge(
        &[
            ("PORTAGE_BINHOST", binhost.as_str()),
            ("FEATURES", "-binpkg-request-signature"),
        ],
        &install,
        "emerge --getbinpkgonly",
    )?;
    std::fs::write(dir.join("client-install.log"), &ran.stdout)
        .with_context(|| format!("writing {}", dir.join("client-install.log").display()))?;
    if ran.code != Some(0) {
        bail!(
            "the client's emerge --getbinpkgonly failed: {}",
            ran.tail(30)
        );
    }
    let installed = client_machine.installed();
    if installed.is_empty() {
        bail!("the client's emerge succeeded but installed nothing");
    }
    // Portage prints this for each file whose size and digests match the index.
    let verified = ran.stdout.matches("MD5 SHA1 size ;-)").count();
    Ok(EmergeSummary {
        builder: "emerge",
        portage_venv: venv.display().to_string(),
        drones: args.drones,
        queued,
        edges,
        built: c.built,
        blocked: c.blocked,
        release: RELEASE.into(),
        binhost,
        targets,
        installed,
        verified,
        client_prefix: client_machine.dir.join("prefix").display().to_string(),
        wall_ms: began.elapsed().as_millis() as u64,
    })
}

/// The closing lines: what was built and what the client installed.
pub(crate) fn render(s: &EmergeSummary) -> String {
    let mut out = format!(
        "swarm demo (real emerge): {} drones built {} of {} packages ({} dependency edges) in {:.1} s;\n\
         release {} published at {}.\n\
         The client ({}) ran emerge --getbinpkgonly {} and installed {} packages \
         (Portage checked {} files against the index):\n",
        s.drones,
        s.built,
        s.queued,
        s.edges,
        s.wall_ms as f64 / 1000.0,
        s.release,
        s.binhost,
        s.client_prefix,
        s.targets.join(" "),
        s.installed.len(),
        s.verified
    );
    for p in &s.installed {
        out.push_str("  ");
        out.push_str(p);
        out.push('\n');
    }
    out
}
