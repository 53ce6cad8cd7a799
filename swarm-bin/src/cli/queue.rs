//! `swarm queue add|list|import`: feeding the build queue and reading it.

use super::conn::{admin_error, read_error, AdminArgs, ServerArgs};
use super::fmt::{ago, cell, duration, emit, emit_json, now_ms, plural, Align, Table};
use super::import::{self, Format};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use swarm_core::profile::DEFAULT_PROFILE;
use swarm_core::{Atom, BlockReason, PackageSpec, PortageSnapshot};
use swarm_net::client::admin::{EnqueueRequest, Package, QueuePage, QueueState};

/// Requests above this are refused by the server (its body cap is 1 MiB).
const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(clap::Args, Debug)]
pub(crate) struct QueueArgs {
    #[command(subcommand)]
    cmd: QueueCmd,
}

#[derive(clap::Subcommand, Debug)]
enum QueueCmd {
    /// Queue packages by atom (admin).
    ///
    /// A versioned atom gets a leading `=`; an atom already in the queue
    /// (queued, building or built) is not queued twice.
    Add(AddArgs),
    /// List the queue, one page at a time.
    List(ListArgs),
    /// Queue a list of packages with their dependencies (admin).
    ///
    /// Reads `emerge --pretend` output (with `--tree`, indentation gives the
    /// dependencies), a JSON list of atoms or {atom, deps, priority,
    /// estimate_s} objects, or a TOML file of [[package]] tables.
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
struct AddArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The packages, e.g. dev-libs/foo-1.2.3 or =app-misc/bar-2.0.
    #[arg(value_name = "ATOM", required = true)]
    atoms: Vec<String>,
    /// Dependencies of every package given (comma-separated atoms).
    #[arg(long, value_name = "ATOM,...", value_delimiter = ',')]
    deps: Vec<String>,
    /// Higher goes first.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    priority: i32,
    /// Expected build time in seconds, until swarm has learned its own.
    #[arg(long, value_name = "S")]
    estimate_s: Option<u64>,
    /// The Portage snapshot the list was made on (timestamp.chk's text or
    /// `2026-02-16 00:45`); drones on another one sync first.
    #[arg(long, value_name = "TIMESTAMP")]
    portage_timestamp: Option<String>,
    /// The profile the packages are built for (`swarm profile list`)
    /// [default: the default profile].
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only packages in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Skip this many packages.
    #[arg(long, value_name = "N", default_value_t = 0)]
    offset: u64,
    /// Show at most this many packages (1 to 1000: the server's largest page).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
    /// Fetch every page, not just one.
    #[arg(long)]
    all: bool,
    /// Print the server's JSON instead of a table (with --all: one JSON page per line).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StateArg {
    Queued,
    Assigned,
    Built,
    Blocked,
}

impl StateArg {
    fn word(self) -> &'static str {
        match self {
            StateArg::Queued => "queued",
            StateArg::Assigned => "assigned",
            StateArg::Built => "built",
            StateArg::Blocked => "blocked",
        }
    }
}

/// What to say instead of "building" for each drone that cannot be heard
/// (suspect, offline): see [`super::fleet::unheard`]. Empty if the fleet
/// cannot be read (the list still prints).
fn unheard_drones(client: &swarm_net::client::Client) -> BTreeMap<String, String> {
    let now = now_ms();
    client
        .nodes()
        .map(|a| {
            a.body
                .nodes
                .iter()
                .filter_map(|n| super::fleet::unheard(n, now).map(|u| (n.name.clone(), u)))
                .collect()
        })
        .unwrap_or_default()
}

impl From<StateArg> for QueueState {
    fn from(s: StateArg) -> QueueState {
        match s {
            StateArg::Queued => QueueState::Queued,
            StateArg::Assigned => QueueState::Assigned,
            StateArg::Built => QueueState::Built,
            StateArg::Blocked => QueueState::Blocked,
        }
    }
}

#[derive(clap::Args, Debug)]
struct ImportArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The list to read, or `-` for standard input (`emerge -pq --tree world | swarm queue import -`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// How to read it.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// Priority of packages the list gives none (emerge output never does).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i32>,
    /// The Portage snapshot the list was made on (timestamp.chk's text or
    /// `2026-02-16 00:45`); drones on another one sync first.
    #[arg(long, value_name = "TIMESTAMP")]
    portage_timestamp: Option<String>,
    /// The profile the packages are built for, when the list names none
    /// (`swarm profile list`) [default: the default profile].
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Print the request that would be sent, and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: QueueArgs) -> anyhow::Result<()> {
    match args.cmd {
        QueueCmd::Add(a) => add(a),
        QueueCmd::List(a) => list(a),
        QueueCmd::Import(a) => import_file(a),
    }
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let deps = args
        .deps
        .iter()
        .map(|d| Atom::parse(d).with_context(|| format!("--deps {d}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut atoms: Vec<Atom> = Vec::new();
    for a in &args.atoms {
        let atom = Atom::parse(a)?;
        if !atoms.contains(&atom) {
            atoms.push(atom);
        }
    }
    let packages = atoms
        .into_iter()
        .map(|atom| PackageSpec {
            atom,
            deps: deps.clone(),
            priority: args.priority,
            estimate_s: args.estimate_s,
            profile: None,
        })
        .collect();
    send(
        &args.admin,
        EnqueueRequest {
            packages,
            portage_timestamp: snapshot_arg(args.portage_timestamp)?,
            fresh: false,
            profile: args.profile,
        },
        args.json,
    )
}

fn import_file(args: ImportArgs) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        swarm_net::regular_file::read_text_at_most(std::io::stdin(), MAX_LIST_BYTES)
            .context("reading the list from standard input")?
    } else {
        std::fs::File::open(&args.file)
            .and_then(|f| swarm_net::regular_file::read_text_at_most(f, MAX_LIST_BYTES))
            .with_context(|| format!("cannot read {name}"))?
    };
    let mut packages = import::parse(&text, args.format, &name)?;
    if let Some(p) = args.priority {
        for spec in packages.iter_mut().filter(|s| s.priority == 0) {
            spec.priority = p;
        }
    }
    let request = EnqueueRequest {
        packages,
        portage_timestamp: snapshot_arg(args.portage_timestamp)?,
        fresh: false,
        profile: args.profile,
    };
    if args.dry_run {
        return super::fmt::emit_raw(&(serde_json::to_string_pretty(&request)? + "\n"));
    }
    send(&args.admin, request, args.json)
}

/// The most a list may hold, far more than one request can carry:
/// `/dev/zero` was read until memory ran out (h15). A pipe is fine
/// (`<(emerge -pq world)`, `-`).
const MAX_LIST_BYTES: u64 = 64 << 20;

/// `--portage-timestamp` in its normalised form, or why it names no snapshot.
fn snapshot_arg(given: Option<String>) -> anyhow::Result<Option<String>> {
    given
        .map(|t| {
            PortageSnapshot::parse(&t)
                .map(|s| s.as_str().to_owned())
                .context("--portage-timestamp")
        })
        .transpose()
}

fn send(admin: &AdminArgs, request: EnqueueRequest, json: bool) -> anyhow::Result<()> {
    let size = serde_json::to_vec(&request)?.len();
    anyhow::ensure!(
        size <= MAX_BODY_BYTES,
        "the list is {size} bytes as JSON, over the server's 1 MiB request cap: split it into \
         smaller files (keep each package with its dependencies)"
    );
    let c = admin.client()?;
    let answer = c
        .client
        .enqueue(&request)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if json {
        return emit_json(&answer.raw);
    }
    let sent = request.packages.len();
    let new = answer.body.queued;
    let already = u64::try_from(sent).unwrap_or(u64::MAX).saturating_sub(new);
    let mut line = format!(
        "queued {} of {sent} sent",
        plural(new as usize, "new package", "new packages")
    );
    if already > 0 {
        // Say where the others are: a built package is not "queued".
        let states: Vec<String> = if sent <= MAX_STATE_LOOKUPS {
            request
                .packages
                .iter()
                .filter_map(|p| c.client.explain(p.atom.as_str()).ok())
                .filter_map(|a| a.body.status.map(|s| s.status.state))
                .collect()
        } else {
            Vec::new()
        };
        line += &format!(" ({})", already_text(already, &states));
    }
    emit(&(line + "\n"))
}

/// Above this many packages, `queue add` does not look up where the ones
/// that were not new are.
const MAX_STATE_LOOKUPS: usize = 20;

/// "1 already built", "2 already in the queue (1 queued, 1 built)".
fn already_text(already: u64, states: &[String]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states {
        let word = match s.as_str() {
            "assigned" => "building",
            other => other,
        };
        *by.entry(word).or_default() += 1;
    }
    let total: usize = by.values().sum();
    if by.is_empty() || total as u64 != already {
        return format!("{already} already in the queue: queued, building or built");
    }
    let parts: Vec<String> = by.iter().map(|(w, n)| format!("{n} {w}")).collect();
    if by.len() == 1 {
        format!(
            "{} already {}",
            parts[0].split(' ').next().unwrap_or(""),
            by.keys().next().copied().unwrap_or("")
        )
    } else {
        format!("already in the queue: {}", parts.join(", "))
    }
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let state = args.state.map(QueueState::from);
    let mut offset = args.offset;
    let mut pages: Vec<QueuePage> = Vec::new();
    loop {
        let answer = client
            .queue(state, offset, args.limit)
            .map_err(read_error)?;
        if args.json {
            if args.all {
                super::fmt::emit_raw(&(serde_json::to_string(&answer.raw)? + "\n"))?;
            } else {
                emit_json(&answer.raw)?;
            }
        }
        let page = answer.body;
        let got = u64::try_from(page.items.len()).unwrap_or(0);
        let total = page.total;
        pages.push(page);
        offset += got;
        if !args.all || got == 0 || offset >= total {
            break;
        }
    }
    if args.json {
        return Ok(());
    }
    let items: Vec<&Package> = pages.iter().flat_map(|p| &p.items).collect();
    let total = pages.last().map(|p| p.total).unwrap_or(0);
    if items.is_empty() && total == 0 {
        if let Some(s) = args.state {
            return emit(&format!("no {} packages\n", s.word()));
        }
    }
    let unheard = if items.iter().any(|p| p.status.state == "assigned") {
        unheard_drones(&client)
    } else {
        BTreeMap::new()
    };
    let width = super::fmt::columns(super::fmt::Stream::Stdout);
    emit(&render(
        &items,
        args.offset,
        total,
        now_ms(),
        &unheard,
        width,
    ))
}

/// A package's state and the detail that goes with it, in words.
pub(crate) fn state_text(
    p: &Package,
    now_ms: u64,
    unheard: &BTreeMap<String, String>,
) -> (String, String) {
    let s = &p.status;
    match s.state.as_str() {
        "queued" => {
            let state = match s.retry_at.filter(|r| *r > now_ms) {
                Some(r) => format!("backoff, retry {}", ago(now_ms, r)),
                None if p.waiting_for == 1 => "waiting for 1 dep".to_owned(),
                None if p.waiting_for > 1 => format!("waiting for {} deps", p.waiting_for),
                None => "ready".to_owned(),
            };
            (state, p.last_error.clone().unwrap_or_default())
        }
        "assigned" => {
            let drone = s.drone.clone().unwrap_or_else(|| "?".to_owned());
            if let Some(why) = unheard.get(&drone) {
                return (format!("on {drone}, unheard"), why.clone());
            }
            let what = if s.started { "building" } else { "leased" };
            (format!("{what} on {drone}"), String::new())
        }
        "built" => (
            "built".to_owned(),
            s.at.map(|at| ago(now_ms, at)).unwrap_or_default(),
        ),
        "blocked" => {
            let why = s
                .reason
                .clone()
                .map(|r| match serde_json::from_value::<BlockReason>(r.clone()) {
                    Ok(reason) => reason.to_string(),
                    Err(_) => super::fmt::compact(&r),
                })
                .unwrap_or_default();
            let mut detail = why;
            if let Some(at) = s.auto_unblock_at {
                detail += &format!("; retried {}", ago(now_ms, at));
            }
            if let Some(e) = &p.last_error {
                detail += &format!("; last error: {e}");
            }
            ("blocked".to_owned(), detail)
        }
        other => (other.to_owned(), p.last_error.clone().unwrap_or_default()),
    }
}

/// The queue table and a footer saying where this page sits; pure for tests.
pub(crate) fn render(
    items: &[&Package],
    offset: u64,
    total: u64,
    now_ms: u64,
    unheard: &BTreeMap<String, String>,
    width: Option<usize>,
) -> String {
    if items.is_empty() {
        return if total == 0 {
            "the queue is empty\n".to_owned()
        } else {
            format!("no packages at offset {offset} (of {total})\n")
        };
    }
    // A profile column once a page holds a named profile's package: an atom queued for two
    // profiles is two packages, which read alike without it (h31 F5).
    let profiles = items.iter().any(|p| p.profile.is_some());
    let mut columns = vec![("ATOM", Align::Left)];
    if profiles {
        columns.push(("PROFILE", Align::Left));
    }
    columns.extend([
        ("STATE", Align::Left),
        ("PRIO", Align::Right),
        ("TRIES", Align::Right),
        ("ESTIMATE", Align::Right),
        ("DETAIL", Align::Left),
    ]);
    let mut t = Table::new(&columns);
    for p in items {
        let (state, detail) = state_text(p, now_ms, unheard);
        let mut row = vec![p.atom.clone()];
        if profiles {
            row.push(
                p.profile
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
            );
        }
        row.extend([
            state,
            p.priority.to_string(),
            p.attempts.to_string(),
            if p.estimate_ms == 0 {
                "-".to_owned()
            } else {
                duration(p.estimate_ms)
            },
            cell(&detail, 80),
        ]);
        t.row(row);
    }
    let shown = u64::try_from(items.len()).unwrap_or(0);
    let end = offset + shown;
    let mut out = t.render_within(width, Some("DETAIL"), &["PRIO", "TRIES"]);
    out += &format!("({}-{end} of {total}", offset + 1);
    if end < total {
        out += &format!("; next page: --offset {end}, or --all");
    }
    out += ")\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_that_were_not_new_are_named_by_where_they_are() {
        assert_eq!(already_text(1, &["built".into()]), "1 already built");
        assert_eq!(
            already_text(2, &["built".into(), "assigned".into()]),
            "already in the queue: 1 building, 1 built"
        );
        assert_eq!(
            already_text(3, &[]),
            "3 already in the queue: queued, building or built"
        );
    }
    use swarm_net::client::admin::PackageState;

    fn pkg(atom: &str, status: PackageState) -> Package {
        Package {
            atom: atom.into(),
            status,
            estimate_ms: 252_000,
            ..Package::default()
        }
    }

    #[test]
    fn each_state_reads_in_words() {
        let now = 1_000_000;
        let blocked = Package {
            last_error: Some("compile error\nin foo.c".into()),
            ..pkg(
                "=a/b-1",
                PackageState {
                    state: "blocked".into(),
                    reason: Some(serde_json::json!({"why": "failed_on_drones", "drones": 3})),
                    ..PackageState::default()
                },
            )
        };
        let building = pkg(
            "=a/c-1",
            PackageState {
                state: "assigned".into(),
                drone: Some("alpha".into()),
                started: true,
                ..PackageState::default()
            },
        );
        let waiting = Package {
            waiting_for: 2,
            ..pkg(
                "=a/d-1",
                PackageState {
                    state: "queued".into(),
                    ..PackageState::default()
                },
            )
        };
        let backoff = pkg(
            "=a/e-1",
            PackageState {
                state: "queued".into(),
                retry_at: Some(now + 60_000),
                ..PackageState::default()
            },
        );
        let text = render(
            &[&blocked, &building, &waiting, &backoff],
            0,
            250,
            now,
            &BTreeMap::new(),
            None,
        );
        assert_eq!(
            text,
            "ATOM    STATE                    PRIO  TRIES  ESTIMATE  DETAIL\n\
             =a/b-1  blocked                     0      0     4m12s  failed on 3 drones; last error: compile error in foo.c\n\
             =a/c-1  building on alpha           0      0     4m12s\n\
             =a/d-1  waiting for 2 deps          0      0     4m12s\n\
             =a/e-1  backoff, retry in 1m00s     0      0     4m12s\n\
             (1-4 of 250; next page: --offset 4, or --all)\n"
        );
    }

    #[test]
    fn a_page_with_a_named_profiles_package_has_a_profile_column() {
        let queued = || PackageState {
            state: "queued".into(),
            ..PackageState::default()
        };
        let fast = Package {
            profile: Some("fast".into()),
            ..pkg("=a/b-1", queued())
        };
        let default = pkg("=a/b-1", queued());
        let text = render(&[&default, &fast], 0, 2, 0, &BTreeMap::new(), None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ATOM    PROFILE  STATE"), "{text}");
        assert!(lines[1].starts_with("=a/b-1  default  ready"), "{text}");
        assert!(lines[2].starts_with("=a/b-1  fast     ready"), "{text}");
        let text = render(&[&default], 0, 1, 0, &BTreeMap::new(), None);
        assert!(!text.contains("PROFILE"), "{text}");
    }

    #[test]
    fn an_empty_queue_says_so() {
        assert_eq!(
            render(&[], 0, 0, 0, &BTreeMap::new(), None),
            "the queue is empty\n"
        );
        assert_eq!(
            render(&[], 300, 12, 0, &BTreeMap::new(), None),
            "no packages at offset 300 (of 12)\n"
        );
    }
}
