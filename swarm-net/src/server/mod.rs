//! The control-plane server: connection threads (the front door) turn
//! requests into core inputs, one writer thread owns the store and
//! group-commits them, and readers are served from a published copy of the
//! core.
//!
//! ```text
//! drones/CLI ──HTTP──▶ front door (a thread per open connection, bounded) ──jobs──▶ writer ──▶ Store (SQLite WAL)
//!                         │  ▲                          │
//!                         │  └──── replies ─────────────┘
//!                         └──▶ published view (Arc, swapped by the writer)
//! ```
//! Files: `front/` the HTTP/1.x front door (limits, timeouts) · `http.rs` plumbing · `auth.rs` tokens · `drone.rs` the v3 drone
//! endpoints · `read.rs` read endpoints and metrics · `admin.rs` queue,
//! control, SQL · `artifacts.rs` binary packages · `writer.rs` the single
//! writer · `shared.rs` what workers share · `metrics.rs` counters ·
//! `dashboard/` the browser dashboard, its event stream and time series ·
//! `logs.rs` build logs.

mod admin;
mod artifacts;
mod auth;
mod binhost;
mod bulk_nice;
mod by_cpv;
mod claims;
mod creds;
mod dashboard;
mod drone;
mod enroll;
mod env_pace;
mod file_leases;
mod front;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod http;
mod identity;
mod in_flight;
mod jobs;
mod lanes;
mod lease_files;
mod log_store;
mod logs;
mod metrics;
mod private_files;
mod profile_purge;
mod ratelog;
mod read;
mod rejects;
mod release_uploads;
mod releases;
mod shared;
mod staged_path;
mod staging_health;
mod syncer;
mod upload_lease;
mod v3;
mod writer;

pub use auth::{resolve_admin_token, TokenSource};
pub use creds::{credentials_path, enrolled_count, CREDENTIALS_FILE};
pub use front::{HttpLimits, TlsServer, TlsSetupError};
pub use gate::DroneLimits;
pub use shared::{Clock, EscalateHook};

use front::{Method, Request, Response};
use http::{ApiError, Reply};
use shared::{Published, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use swarm_core::DroneName;
use swarm_store::{Store, StoreOptions};

/// Everything the server needs, resolved by the caller (`swarm serve`).
pub struct ServerOptions {
    /// Where to listen. Port 0 picks a free port (see [`RunningServer::addr`]).
    pub listen: SocketAddr,
    /// The SQLite database.
    pub db_path: PathBuf,
    /// Where binary packages land.
    pub staging: PathBuf,
    /// How the store is opened (policy, durability, snapshots).
    pub store: StoreOptions,
    /// The admin token in force (see [`resolve_admin_token`]).
    pub admin_token: String,
    /// A token shared by all credential-less drones (v3 style); enrolled
    /// drones use their own (`swarm node enroll`).
    pub drone_token: Option<String>,
    /// When set, reads of the API and `/metrics` need it or the admin token
    /// (`auth::require_reader`); `None`: reads are open, as in v3.
    pub read_token: Option<String>,
    /// Networks credential-less (v3) drones may call from (loopback by default).
    pub legacy_drones: Vec<ipnet::IpNet>,
    /// Names a browser may reach the server under besides its addresses, `localhost` and this
    /// machine's name (`allowed_hosts`; see [`crate::host_names`]).
    pub allowed_hosts: Vec<String>,
    /// A reverse proxy on this host passes the callers on (`tls_proxy`):
    /// a loopback request's `X-Forwarded-For` names its caller. Off, the
    /// header is ignored: believed, any local process could claim any
    /// address, a `legacy_drones` one among them.
    pub behind_proxy: bool,
    /// Caps on the fleet (`max_drones`, new registrations per minute) and
    /// the networks a drone's claimed address may be probed in.
    pub drones: DroneLimits,
    /// Cap on JSON request bodies.
    pub max_body_bytes: u64,
    /// Cap on one artifact upload.
    pub max_artifact_bytes: u64,
    /// Bounds of the front door: connections, timeouts, header sizes.
    pub http: HttpLimits,
    /// Serve https with this certificate (`tls_cert`/`tls_key`); `None`: plain http.
    pub tls: Option<TlsServer>,
    /// The wall clock.
    pub clock: Clock,
    /// Runs escalation steps; `None` only logs them.
    pub on_escalate: Option<EscalateHook>,
    /// Binhost releases and the served tree.
    pub binhost: crate::binhost::BinhostOptions,
    /// Signature checks on uploads (`binpkg_keyring`, `require_signed`).
    pub signatures: crate::binpkg::signature::Policy,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store would not open.
    #[error("cannot open the store {path}")]
    Store {
        /// The database path.
        path: PathBuf,
        /// Why.
        source: swarm_store::StoreError,
    },
    /// The address would not bind.
    #[error("cannot listen on {addr}: {cause} (choose another address with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: String,
    },
    /// The drone credentials file would not load.
    #[error("cannot read the drone credentials {path}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The binhost tree or its bookkeeping could not be opened.
    #[error("cannot open the binhost releases: {0}")]
    Binhost(#[from] crate::binhost::ReleaseError),
    /// Staging could not be created.
    #[error("cannot create the staging directory {path}")]
    Staging {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A server that is accepting requests.
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    front: front::FrontDoor,
    writer: Option<JoinHandle<()>>,
    open_report: swarm_store::OpenReport,
}

impl RunningServer {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Why a thread the store needs (the writer, the fsync thread) died, if
    /// one did: the server then records nothing until a restart, so its
    /// owner should stop it and start again (`swarm serve` exits with an
    /// error, for its service manager).
    pub fn thread_failure(&self) -> Option<String> {
        self.shared.metrics.lost_thread().map(str::to_owned)
    }

    /// The counters and histograms of `/metrics`, without the gauges read
    /// from the core's view: these need no copy of the core, so a benchmark
    /// can read them between its windows without adding to what it measures.
    pub fn activity_metrics(&self) -> String {
        let mut out = String::new();
        self.shared.metrics.render(&mut out);
        out
    }

    /// What opening the store found.
    pub fn open_report(&self) -> &swarm_store::OpenReport {
        &self.open_report
    }

    /// Current probe targets: every drone not offline with a known address.
    pub fn probe_targets(&self) -> Vec<(DroneName, String)> {
        probe_targets(&self.shared)
    }

    /// A handle that can read probe targets and submit inputs from other threads.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting, lets the writer finish what was queued (unless it
    /// died: `thread_failure`), closes the store.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Event streams first: each holds its connection until told, and
        // the front door waits for its connections (up to its drain bound).
        self.shared.dashboard.feed.close();
        self.front.stop();
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What other threads (the prober) may do with a running server.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Every drone not offline with a known address.
    pub fn probe_targets(&self) -> Vec<(DroneName, String)> {
        probe_targets(&self.shared)
    }

    /// Appends an input (a probe result) through the writer.
    pub fn submit(&self, input: swarm_core::Input) -> Result<(), String> {
        self.shared
            .submit(jobs::Plan::Inputs(vec![input]), None, false)
            .map(|_| ())
            .map_err(|e| e.body.error)
    }
}

fn probe_targets(sh: &Shared) -> Vec<(DroneName, String)> {
    let p = sh.published();
    p.swarm
        .view()
        .drones()
        .into_iter()
        .filter(|d| {
            !matches!(
                d.status,
                swarm_core::DroneStatus::Offline | swarm_core::DroneStatus::Stopped
            )
        })
        .filter_map(|d| sh.address_of(&d.name).map(|a| (d.name, a)))
        .collect()
}

/// Opens the store, binds, and starts the writer and the workers.
pub fn start(opts: ServerOptions) -> Result<RunningServer, ServeError> {
    // Read before anything below creates a file: what an earlier run left.
    let evidence = state_evidence(&opts);
    // Named by their owners, not spelt here again (h12: names matched by
    // prefix closed an operator's files).
    private_files::close_to_others(
        swarm_store::store_files(&opts.db_path)
            .into_iter()
            .chain(evidence.iter().cloned()),
    );
    // Made here: 0755 whatever the umask, as a web server publishes what is
    // staged. One that exists (maybe a symlink to the operator's binhost
    // tree, group-writable or setgid on purpose) keeps the operator's mode.
    let made = !opts.staging.is_dir();
    std::fs::create_dir_all(&opts.staging)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            if !made {
                return Ok(());
            }
            std::fs::set_permissions(&opts.staging, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|source| ServeError::Staging {
            path: opts.staging.clone(),
            source,
        })?;
    let mut store_opts = opts.store.clone();
    store_opts.state_evidence.extend(evidence);
    // Not private, so not among the files closed above: a web server may publish the staging
    // trees, and closing their records warned of an older swarm's doing (h42 F5). Only trees
    // in the data dir (where releases are kept): a staging volume of its own may outlive the
    // farm, and a new farm on it was refused as a loss (h43 F2).
    let data_dir = opts.binhost.state_dir.parent();
    store_opts.state_evidence.extend(
        staged_path::all_staging_trees(&opts.staging)
            .iter()
            .filter(|tree| data_dir.is_some_and(|d| tree.starts_with(d)))
            .map(|tree| lease_files::records_dir(tree)),
    );
    store_opts.open_at = Some((opts.clock)());
    // Drones must not wait while a large state is serialised and verified.
    store_opts.background_snapshots = true;
    store_opts.background_checkpoints = true;
    // The writer applies the next batch while the last one is fsynced; the
    // fsync thread answers (writer.rs, syncer.rs).
    store_opts.defer_sync = true;
    let store = Store::open(&opts.db_path, store_opts).map_err(|source| ServeError::Store {
        path: opts.db_path.clone(),
        source,
    })?;
    // After the store's lock: a second server refused on a running data dir
    // must not take the first one's uploads in flight for leftovers, nor
    // put its releases "right" (`binhost::recover`) from a state it read
    // before the first one changed it.
    let releases = crate::binhost::Releases::open(opts.binhost.clone(), &opts.staging)?;
    let (files, bytes) = artifacts::remove_stale_uploads(&opts.staging);
    if files > 0 {
        tracing::info!(
            files,
            bytes,
            staging = %opts.staging.display(),
            "removed upload temp files an earlier run left behind"
        );
    }
    for tree in staged_path::all_staging_trees(&opts.staging) {
        match file_leases::claim_for_farm(&tree, store.store_id()) {
            Ok(None) => {}
            Ok(Some(aside)) => tracing::warn!(
                staging = %tree.display(),
                aside = %aside.display(),
                "this staging tree held the lease records of another farm (its lease numbers \
                 are not this farm's): set aside; its files count as no upload's"
            ),
            Err(e) => tracing::warn!(
                staging = %tree.display(),
                error = %e,
                "cannot check whose lease records this staging tree holds"
            ),
        }
    }
    let upgraded: usize = staged_path::all_staging_trees(&opts.staging)
        .iter()
        .map(|tree| file_leases::upgrade(tree))
        .sum();
    if upgraded > 0 {
        tracing::info!(
            records = upgraded,
            "lease records of an earlier version given their files' digests"
        );
    }
    if let Ok(swarm) = store.swarm() {
        let view = swarm.view();
        let gone: usize = staged_path::all_staging_trees(&opts.staging)
            .iter()
            .map(|tree| lease_files::tidy(tree, |lease| view.lease(lease).is_some()))
            .sum();
        if gone > 0 {
            tracing::info!(
                files = gone,
                "removed the lease records of ended leases and half-written ones"
            );
        }
    }
    let open_report = store.open_report().clone();
    let creds =
        creds::Credentials::open(&opts.db_path).map_err(|source| ServeError::Credentials {
            path: creds::credentials_path(&opts.db_path),
            source,
        })?;
    let listener =
        front::bind(opts.listen, opts.http.listen_backlog()).map_err(|e| ServeError::Bind {
            addr: opts.listen,
            cause: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: opts.listen,
        cause: e.to_string(),
    })?;
    let swarm = store.swarm().map_err(|source| ServeError::Store {
        path: opts.db_path.clone(),
        source,
    })?;
    let mut ids = shared::MachineIds::default();
    let mut known = Vec::new();
    for d in swarm.view().drones() {
        known.push(d.name.clone());
        match &d.machine_id {
            Some(m) => ids.bind(m, &d.name),
            None => ids.know(&d.name),
        }
    }
    let published = Arc::new(Published {
        swarm: swarm.clone(),
        seq: store.last_seq().0,
    });
    let (tx, rx) = mpsc::sync_channel(8192);
    // Readers of the history database: a few connections, shared.
    let history_n = 4;
    let shared = Arc::new(Shared {
        clock: opts.clock.clone(),
        stop: AtomicBool::new(false),
        queued: AtomicUsize::new(0),
        committed: std::sync::atomic::AtomicU64::new(store.last_seq().0),
        forced_publish: Mutex::new(Instant::now()),
        publish_cost_us: std::sync::atomic::AtomicU64::new(0),
        jobs: tx,
        published: RwLock::new(published),
        ids: RwLock::new(ids),
        addresses: RwLock::new(BTreeMap::new()),
        cpu_percent: RwLock::new(BTreeMap::new()),
        said_idle: RwLock::new(Default::default()),
        known: gate::KnownDrones::new(known),
        metrics: Arc::new(metrics::Metrics::default()),
        history: (0..history_n).map(|_| Mutex::new(None)).collect(),
        db_path: opts.db_path.clone(),
        staging: opts.staging.clone(),
        releases,
        profile_releases: Mutex::new(BTreeMap::new()),
        admin_token: opts.admin_token.clone(),
        drone_token: opts.drone_token.clone(),
        read_token: opts.read_token.clone(),
        max_body: opts.max_body_bytes,
        max_artifact: opts.max_artifact_bytes,
        farm_id: store.store_id().to_owned(),
        signatures: opts.signatures.clone(),
        started: Instant::now(),
        build: opts
            .store
            .build
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        on_escalate: opts.on_escalate.clone(),
        port: addr.port(),
        history_next: AtomicUsize::new(0),
        creds,
        legacy_drones: opts.legacy_drones.clone(),
        allowed_hosts: crate::host_names::AllowedHosts::new(
            &opts.allowed_hosts,
            crate::host_names::machine_name().as_deref(),
        ),
        behind_proxy: opts.behind_proxy,
        registrations: gate::RegistrationGate::new(opts.drones.registrations_per_minute),
        drone_limits: opts.drones.clone(),
        refusals: ratelog::RefusalLog::default(),
        sql_running: AtomicBool::new(false),
        store_fault: RwLock::new(None),
        id_file_fault: RwLock::new(None),
        staging_health: Default::default(),
        dashboard: dashboard::kept::Dashboard::new(&opts.db_path, (opts.clock)().0),
        logs: open_logs(&opts.db_path),
        env_pace: env_pace::EnvPace::default(),
    });
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("swarm-writer".into())
            .spawn(move || {
                let mut store = store;
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    writer::run(&mut store, shared.clone(), &rx)
                }));
                if let Err(panic) = run {
                    // Recorded before the store is dropped: that waits for
                    // its snapshot and checkpoint threads, maybe long.
                    shared.metrics.thread_panicked("writer", panic.as_ref());
                }
            })
            .map_err(|e| ServeError::Bind {
                addr,
                cause: format!("cannot start the writer thread: {e}"),
            })?
    };
    {
        let shared = shared.clone();
        // Stops by itself within a second of `stop` (it checks the flag).
        std::thread::Builder::new()
            .name("swarm-dashboard".into())
            .spawn(move || dashboard::run(&shared))
            .map_err(|e| ServeError::Bind {
                addr,
                cause: format!("cannot start the dashboard thread: {e}"),
            })?;
    }
    releases::note_completed_at_open(&shared, &shared.releases, None);
    let handler: front::Handler = {
        let shared = shared.clone();
        Arc::new(move |req: &mut Request<'_>| serve_one(&shared, req))
    };
    let front = front::start(
        listener,
        opts.http.clone(),
        opts.tls.clone(),
        handler,
        always_open,
        shared.metrics.front.clone(),
    )
    .map_err(|e| ServeError::Bind {
        addr,
        cause: format!("cannot start the HTTP acceptor: {e}"),
    })?;
    Ok(RunningServer {
        addr,
        shared,
        front,
        writer: Some(writer),
        open_report,
    })
}

/// The server's own private files that only a run with a store writes: build
/// logs, drone credentials, the dashboard's time series, binhost releases.
/// Should the database and its marker be gone while these hold something, the
/// store refuses to start empty (`StoreOptions::state_evidence`); so it does
/// for every staging tree's records of what leases stored (added in `start`).
/// A database on a volume of its own that did not mount takes the first three
/// with it; releases and staging stay in the data dir (h41 F3: a farm that had
/// stored uploads but no release started empty).
fn state_evidence(opts: &ServerOptions) -> Vec<PathBuf> {
    vec![
        opts.db_path.with_file_name("logs"),
        creds::credentials_path(&opts.db_path),
        opts.db_path.with_file_name("timeseries.jsonl"),
        opts.binhost.state_dir.clone(),
    ]
}

/// Build logs live in `logs/` beside the database.
fn open_logs(db_path: &std::path::Path) -> Option<log_store::LogStore> {
    let dir = db_path.with_file_name("logs");
    match log_store::LogStore::open(&dir) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot open the build-log directory; log uploads will be refused");
            None
        }
    }
}

/// Answered even when every connection slot is taken, so monitoring can
/// tell a busy server from a dead one.
fn always_open(path: &str) -> bool {
    matches!(path, "/api/v1/health" | "/health")
}

fn serve_one(sh: &Shared, req: &mut Request<'_>) -> Response {
    let began = Instant::now();
    let peer = req.remote_addr();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let method = match req.method() {
        Method::Head if head_is_a_get(&path) => Method::Get,
        m => m.clone(),
    };
    if http::several_hosts(req) {
        sh.metrics.request("bad_request", 400, began.elapsed());
        let e = ApiError::field(
            400,
            "Host",
            "a request names its host once; this one has several Host headers",
        );
        return http::into_response(Reply::from(e));
    }
    if let Some(why) = http::rebinding_refusal(req, &sh.allowed_hosts) {
        sh.metrics.request("unknown_host", 403, began.elapsed());
        return http::into_response(Reply::from(ApiError::field(403, "Host", why)));
    }
    if is_guarded_read(&method, &path) {
        if let Err(e) = auth::require_reader(req, sh.read_token.as_deref(), &sh.admin_token) {
            sh.metrics
                .request("read_refused", e.status, began.elapsed());
            return http::into_response(Reply::from(e));
        }
    }
    let refusal = http::cross_site_refusal(
        http::header(req, "Origin"),
        http::header(req, "Host"),
        http::header(req, "Sec-Fetch-Site"),
    );
    // The event stream keeps its connection (its own thread, in front/);
    // another site's page does not get one either.
    if method == Method::Get && path == "/api/v1/events/stream" {
        if let Some(why) = &refusal {
            sh.metrics.request("cross_site", 403, began.elapsed());
            return http::into_response(Reply::from(ApiError::new(403, why.clone())));
        }
        let from = identity::effective_peer(sh, req);
        let resp = dashboard::stream::open(&sh.dashboard.feed, req, &url, from);
        sh.metrics
            .request("events_stream", resp.status, began.elapsed());
        return resp;
    }
    if method == Method::Get {
        if let Some(resp) = dashboard::assets::serve(req, &path) {
            sh.metrics
                .request("dashboard", resp.status, began.elapsed());
            return resp;
        }
    }
    let (route, result) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match refusal {
            // Before routing, so no handler reads the body or acts on it.
            Some(why) => ("cross_site", Err(ApiError::new(403, why))),
            None => route(sh, req, &method, &path, &url),
        }
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%method, %path, "handler panicked; answered 500, server keeps serving");
        (
            "panic",
            Err(ApiError::new(
                500,
                "internal error: the handler panicked; this is a bug",
            )),
        )
    });
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                if let Some(n) = FAILED_REQUESTS.note(Instant::now()) {
                    tracing::error!(%peer, %method, %path, status = e.status, error = %e.body.error, failed_requests = n, "request failed (logged at most every 10 s while failures go on)");
                }
            } else {
                tracing::debug!(%peer, %method, %path, status = e.status, error = %e.body.error, "request refused");
            }
            Reply::from(e)
        }
    };
    let status = reply.status();
    if matches!(status, 401 | 403) && DRONE_ROUTES.contains(&route) {
        if let Some(n) = rejects::drone_rejects().note(Instant::now()) {
            let why = match &reply {
                Reply::Json(_, v) => v["error"].as_str().unwrap_or("").to_owned(),
                _ => String::new(),
            };
            tracing::warn!(
                %method, %path, from = %peer, status, refused = n,
                "refused a drone: {why} (a drone with a missing or wrong drone token; \
                 logged at most once a minute)"
            );
        }
    }
    sh.metrics.request(route, status, began.elapsed());
    http::into_response(reply)
}

type Routed = (&'static str, Result<Reply, ApiError>);

/// The reads a `read_token` guards: the API's and the metrics. Not health
/// (monitoring asks it bare), not `/binhost/` (Portage clients), not the
/// dashboard's own files (the page asks for the token), and not the
/// drones' calls (their own credentials).
fn is_guarded_read(method: &Method, path: &str) -> bool {
    // Judged on the path `route` serves: `/metrics/` was served unguarded.
    let path = routed_path(path);
    matches!(method, Method::Get | Method::Head)
        && (matches!(path, "/metrics" | "/api/v1/metrics")
            || (path.starts_with("/api/v1/")
                && !matches!(path, "/api/v1/health" | "/api/v1/work" | "/api/v1/poll")))
}

/// Whether HEAD is answered as the GET would be, less the body (the front
/// door drops it): monitoring and `curl -I` ask health and the reads that
/// way, and got 405. Not where a GET does more than read: `/work` leases a
/// job, the event stream stays open, a SQL query runs; `/binhost` answers
/// HEAD itself.
fn head_is_a_get(path: &str) -> bool {
    let p = routed_path(path);
    let acts = matches!(p, "/api/v1/work" | "/api/v1/poll" | "/api/v1/events/stream")
        || p.starts_with("/api/v1/sql/");
    let answers_itself = p == "/binhost" || p.starts_with("/binhost/");
    !(acts || answers_itself)
}

/// Requests answered 5xx, logged while they go on: a store that cannot write answers
/// every retry 503.
static FAILED_REQUESTS: swarm_store::repeat_log::RepeatLog =
    swarm_store::repeat_log::RepeatLog::new(std::time::Duration::from_secs(10));

/// Routes that take the drone token: refusals there are logged.
const DRONE_ROUTES: [&str; 7] = [
    "register",
    "work",
    "complete",
    "started",
    "return",
    "deregister",
    "artifacts",
];

/// The path a request is routed by: trailing slashes do not count.
fn routed_path(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
}

fn route(sh: &Shared, req: &mut Request<'_>, method: &Method, path: &str, url: &str) -> Routed {
    let p = routed_path(path);
    macro_rules! drone_ep {
        ($name:literal, |$caller:ident| $body:expr) => {
            (
                $name,
                identity::drone_caller(sh, req).and_then(|$caller| $body),
            )
        };
    }
    macro_rules! admin_ep {
        ($name:literal, $body:expr) => {
            (
                $name,
                auth::require_admin(req, &sh.admin_token).and_then(|_| $body),
            )
        };
    }
    if path == "/binhost" || path.starts_with("/binhost/") {
        let rest = http::decode_path(
            path.strip_prefix("/binhost")
                .unwrap_or_default()
                .trim_start_matches('/'),
        );
        return match method {
            Method::Get | Method::Head => ("binhost", binhost::get(sh.releases.root(), req, &rest)),
            _ => (
                "method",
                Err(ApiError::new(
                    405,
                    format!("{method} is not allowed on /binhost: it is read-only"),
                )),
            ),
        };
    }
    // `/api/v1/releasesr1` is no release route (it was served as `r1`).
    if let Some(rest) = p
        .strip_prefix("/api/v1/releases")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return release_route(sh, req, method, rest, url);
    }
    match (method, p) {
        (Method::Post, "/api/v1/register") => {
            drone_ep!("register", |c| drone::register(sh, req, &c))
        }
        (Method::Get, "/api/v1/work") | (Method::Get, "/api/v1/poll") => {
            drone_ep!("work", |c| drone::work(sh, url, &c))
        }
        (Method::Post, "/api/v1/complete") | (Method::Post, "/api/v1/report") => {
            drone_ep!("complete", |c| drone::complete(sh, req, &c))
        }
        (Method::Post, "/api/v1/started") => drone_ep!("started", |c| drone::started(sh, req, &c)),
        (Method::Post, "/api/v1/return") => {
            drone_ep!("return", |c| drone::give_back(sh, req, &c))
        }
        (Method::Post, "/api/v1/deregister") => {
            drone_ep!("deregister", |c| drone::deregister(sh, req, &c))
        }
        (Method::Put, a) if a.starts_with("/api/v1/artifacts/") => {
            let rest = http::decode_path(a.strip_prefix("/api/v1/artifacts/").unwrap_or_default());
            drone_ep!("artifacts", |c| artifacts::put(sh, req, &rest, &c))
        }
        (Method::Get, "/api/v1/health") | (Method::Get, "/health") => ("health", read::health(sh)),
        (Method::Get, "/api/v1/status") => ("status", read::status(sh)),
        (Method::Get, "/api/v1/nodes") => ("nodes", read::nodes(sh, url)),
        (Method::Get, n) if n.starts_with("/api/v1/nodes/") => {
            match n.strip_prefix("/api/v1/nodes/").unwrap_or_default() {
                name if !name.is_empty() && !name.contains('/') => {
                    ("node", read::node(sh, &http::decode_path(name)))
                }
                _ => ("not_found", Err(not_found(method, p))),
            }
        }
        (Method::Get, "/api/v1/profiles") => ("profiles", read::profiles(sh)),
        (Method::Get, "/api/v1/queue") => ("queue", read::queue(sh, url)),
        (Method::Get, "/api/v1/history") => ("history", read::history(sh, url)),
        (Method::Get, "/api/v1/events") => ("events", read::events(sh, url)),
        (Method::Get, "/api/v1/events/history") => {
            ("events_history", read::events_history(sh, url))
        }
        (Method::Get, "/api/v1/build-stats/by-package") => {
            ("build_stats", read::build_stats(sh, url))
        }
        (Method::Get, "/api/v1/explain") => ("explain", read::explain(sh, url)),
        (Method::Get, "/api/v1/timeseries") => (
            "timeseries",
            dashboard::series::endpoint(&sh.dashboard.series, url),
        ),
        (Method::Get, "/api/v1/logs") => ("logs", logs::list(sh, url)),
        (Method::Get, l) if l.starts_with("/api/v1/logs/") => (
            "log",
            logs::get(sh, l.strip_prefix("/api/v1/logs/").unwrap_or_default()),
        ),
        (Method::Put, l) if l.starts_with("/api/v1/logs/") => {
            let rest = l.strip_prefix("/api/v1/logs/").unwrap_or_default();
            drone_ep!("log_put", |c| logs::put(sh, req, rest, url, &c))
        }
        (Method::Get, "/metrics") | (Method::Get, "/api/v1/metrics") => {
            ("metrics", read::metrics(sh))
        }
        (Method::Post, "/api/v1/queue") => admin_ep!("queue_add", admin::queue(sh, req)),
        (Method::Post, "/api/v1/control") => admin_ep!("control", admin::control(sh, req)),
        (Method::Post, n) if enroll::is_credential_path(n) => {
            admin_ep!("credentials", enroll::credentials(sh, n))
        }
        (Method::Post, n) if n.starts_with("/api/v1/nodes/") => {
            let rest = n.strip_prefix("/api/v1/nodes/").unwrap_or_default();
            match rest.split_once('/') {
                Some((name, action)) if !action.contains('/') => {
                    let name = http::decode_path(name);
                    admin_ep!("node_action", admin::node_action(sh, &name, action))
                }
                _ => ("not_found", Err(not_found(method, p))),
            }
        }
        (Method::Get, s) if s.starts_with("/api/v1/sql/") => {
            let what = s.strip_prefix("/api/v1/sql/").unwrap_or_default();
            admin_ep!("sql", admin::sql(sh, what, url))
        }
        (_, known) if KNOWN.contains(&known) => (
            "method",
            Err(ApiError::new(
                405,
                format!("{method} is not allowed on {known}"),
            )),
        ),
        _ => ("not_found", Err(not_found(method, p))),
    }
}

fn release_route(
    sh: &Shared,
    req: &mut Request<'_>,
    method: &Method,
    rest: &str,
    url: &str,
) -> Routed {
    macro_rules! admin_ep {
        ($body:expr) => {
            (
                "releases_admin",
                auth::require_admin(req, &sh.admin_token).and_then(|_| $body),
            )
        };
    }
    let parts: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(http::decode_path)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (Method::Get, []) => ("releases", releases::list(sh, url)),
        (Method::Get, ["diff"]) => ("releases", releases::diff(sh, url)),
        (Method::Get, [name]) => ("releases", releases::show(sh, url, name)),
        (Method::Get, [name, "gate"]) => ("releases", releases::gate(sh, url, name)),
        (Method::Post, []) => admin_ep!(releases::create(sh, req, url)),
        (Method::Post, ["rollback"]) => admin_ep!(releases::rollback(sh, url)),
        (Method::Post, ["purge"]) => admin_ep!(releases::purge(sh, req, url)),
        (Method::Post, [name, "publish"]) => admin_ep!(releases::publish(sh, req, url, name)),
        (Method::Post, [name, "keep"]) => admin_ep!(releases::keep(sh, req, url, name)),
        (Method::Post, [name, "tag"]) => admin_ep!(releases::tag(sh, req, url, name)),
        (Method::Get, _) | (Method::Post, _) => (
            "not_found",
            Err(ApiError::new(
                404,
                format!("no endpoint {method} /api/v1/releases{rest}"),
            )),
        ),
        _ => (
            "method",
            Err(ApiError::new(
                405,
                format!("{method} is not allowed on /api/v1/releases{rest}"),
            )),
        ),
    }
}

const KNOWN: [&str; 22] = [
    "/api/v1/timeseries",
    "/api/v1/logs",
    "/api/v1/events/stream",
    "/api/v1/register",
    "/api/v1/deregister",
    "/api/v1/work",
    "/api/v1/poll",
    "/api/v1/complete",
    "/api/v1/report",
    "/api/v1/started",
    "/api/v1/return",
    "/api/v1/health",
    "/api/v1/status",
    "/api/v1/nodes",
    "/api/v1/queue",
    "/api/v1/history",
    "/api/v1/events",
    "/api/v1/events/history",
    "/api/v1/build-stats/by-package",
    "/api/v1/explain",
    "/api/v1/control",
    "/metrics",
];

fn not_found(method: &Method, path: &str) -> ApiError {
    ApiError::new(404, format!("no endpoint {method} {path}"))
}
