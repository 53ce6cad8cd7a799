//! `swarm serve`: the control plane. Wires settings, the wall clock, the
//! store-backed server, the prober and the escalator, and stops cleanly on
//! SIGTERM/SIGINT (queued inputs are committed before the store closes; a
//! second signal exits at once).

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use swarm_core::Timestamp;
use swarm_net::heal::{Escalator, ProbeTarget, Prober};
use swarm_net::server::{self, resolve_admin_token, ServerOptions, TokenSource};
use swarm_net::settings::{LoadRequest, Settings};

/// Flags of `swarm serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8100; v3's CONTROL_PLANE_PORT also works).
    /// Port 0 picks a free port; the chosen address is printed on stdout.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory for the database, the admin token and staging.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (default $SWARM_CONFIG, else /etc/swarm/swarm.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Start even though the database holds less than was acknowledged
    /// (a deleted or damaged -wal file, an emptied or replaced swarm.db, or
    /// swarm.db and its marker gone from a data dir that had state).
    /// Without it such a store is refused; with it the loss is logged and
    /// recorded as a `loss_accepted` event, and the store takes a new id: the
    /// files from before, put back later, are then refused instead of opening
    /// without what was acknowledged since. Use it only after restoring what
    /// a backup can restore.
    #[arg(long)]
    accept_loss: bool,
}

/// The wall clock in the core's unit.
pub(crate) fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let mut request = LoadRequest::from_process(args.config.clone())?;
    request.listen = args.listen;
    request.data_dir = args.data_dir.clone();
    let loaded = Settings::load(&request)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let s = loaded.settings;
    // Bind first: a start that cannot listen leaves nothing behind (no new
    // data dir, no token), and says why in words that fit the cause.
    check_listen(s.listen)?;
    // The data dir and its parents as the operator's umask makes them: a
    // web server passes through it to the default binhost path.
    let created = make_data_dir(&s.data_dir)?;
    crate::private_files::keep_from_other_users();
    // A failed first start leaves no token it generated: the next start
    // then generates (and logs) its own instead of reading a stray one.
    let token_existed = std::fs::symlink_metadata(&s.admin_token_file).is_ok();
    let started = start(&s, args.accept_loss);
    if let Err(e) = &started {
        if may_remove_after_failed_start(created, e) {
            // Nothing was served from it: a failed first start leaves no data dir.
            let _ = std::fs::remove_dir_all(&s.data_dir);
        } else if !token_existed && may_remove_after_failed_start(true, e) {
            let _ = std::fs::remove_file(&s.admin_token_file);
        }
    }
    let (running, prober, stop) = started?;
    // Until a signal, or a writer that died: a server that can record
    // nothing is better restarted by its service manager than left up.
    while !stop.load(Ordering::Relaxed) && running.thread_failure().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Read after the loop: a death at the same moment as a signal still
    // fails the exit.
    let failure = running.thread_failure();
    match &failure {
        None => tracing::info!("signal received: finishing queued requests and closing the store"),
        Some(_) => {
            tracing::error!("a thread the store needs died: closing the server to be restarted")
        }
    }
    stop.store(true, Ordering::Relaxed);
    match failure {
        None => {
            // Unbounded: queued requests are committed first. A second
            // signal exits at once (`install_signals`).
            running.shutdown();
            if let Some(p) = prober {
                let _ = p.join();
            }
            Ok(())
        }
        Some(why) => {
            // The store's threads may be held by the disk that killed one
            // of them: a close that never ends would keep the service
            // manager from restarting a server that records nothing.
            let closed = finish_within(CLOSE_AFTER_DEATH, move || {
                running.shutdown();
                if let Some(p) = prober {
                    let _ = p.join();
                }
            });
            if !closed {
                tracing::error!(
                    waited_s = CLOSE_AFTER_DEATH.as_secs(),
                    "the store did not close in time (a disk that does not answer?); exiting \
                     anyway: everything acknowledged was already durable"
                );
            }
            anyhow::bail!(
                "{why}; exiting so the service manager restarts swarm serve (a restart checks \
                 the log against what was acknowledged)"
            )
        }
    }
}

/// How long closing may take once a thread the store needs has died.
const CLOSE_AFTER_DEATH: Duration = Duration::from_secs(30);

/// Runs `close` on a thread of its own and waits for it at most `limit`:
/// whether it finished. A close that does not finish is left running; the
/// process ends without it.
fn finish_within(limit: Duration, close: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("swarm-close".into())
        .spawn(move || {
            close();
            let _ = tx.send(());
        });
    spawned.is_ok() && rx.recv_timeout(limit).is_ok()
}

/// SIGTERM and SIGINT set `stop`; a second one while the first is handled
/// exits at once with code 1, as a `kill -9` would end it (everything
/// acknowledged is durable), for a close that waits on a disk that does
/// not answer.
fn install_signals(stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // SIGHUP too: a server in a terminal that closes (an SSH session that
    // drops) otherwise dies by the default action, unlogged and without
    // closing the store.
    for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")] {
        // In this order: the first signal finds `stop` unset and only sets it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .with_context(|| format!("cannot install the {name} handler"))?;
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("cannot install the {name} handler"))?;
    }
    Ok(())
}

/// SIGXFSZ is ignored: a file-size limit (ulimit -f) must fail the write, which the store
/// reports (at open, as a refused start) and health shows, not kill the server.
fn ignore_file_size_signal() -> anyhow::Result<()> {
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .context("cannot install the SIGXFSZ handler")?;
    Ok(())
}

/// Binds `addr` once and lets go, to report a port that cannot be had
/// before anything is written. Port 0 needs no check.
fn check_listen(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(listen_error(addr, &e))),
    }
}

/// Why an address cannot be listened on, and what to do about it.
pub(crate) fn listen_error(addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied; ports below 1024 need root or \
             CAP_NET_BIND_SERVICE: use --listen with a port of 1024 or more (the default is 8100)"
        ),
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the address is in use (another `swarm serve`, or another \
             program, listens there); stop it or choose another address with --listen"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}: no network interface of this machine has that address; \
             use 127.0.0.1, 0.0.0.0 or one of this machine's addresses"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// Why the admin token file cannot be used; a permission problem says so
/// and names the data dir's owner as the fix.
fn token_file_error(file: &Path, data_dir: &Path, e: &std::io::Error) -> anyhow::Error {
    let file = file.display();
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "permission denied on the admin token file {file}: run `swarm serve` as the user \
             that owns the data directory {} (or pass another --data-dir)",
            data_dir.display()
        )
    } else {
        anyhow::anyhow!("cannot read or create the admin token file {file}: {e}")
    }
}

/// How the CLI on this host finds the token, in the words of the log line.
fn token_hint(s: &Settings) -> String {
    let dir = s.data_dir.display();
    if crate::cli::conn::token_candidates(&crate::process_env::var).contains(&s.admin_token_file) {
        "the CLI on this host finds it there".to_owned()
    } else {
        format!(
            "the CLI finds it with `--data-dir {dir}` or with SWARM_DATA_DIR={dir} in its environment"
        )
    }
}

/// Creates the data directory (and its parents): whether this process made
/// it, for only then may a failed first start remove it. Another server
/// starting on the same new directory at the same moment finds it made. A
/// symbolic link to nothing (a disk not mounted yet) is refused: a new,
/// empty store there would hide the real one.
fn make_data_dir(dir: &Path) -> anyhow::Result<bool> {
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        if meta.file_type().is_symlink() && !dir.exists() {
            let target = std::fs::read_link(dir)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            anyhow::bail!(
                "the data directory {} is a symbolic link to {target}, which does not exist (a \
                 disk not mounted yet?); mount it or mend the link: swarm does not start a new, \
                 empty store in its place",
                dir.display()
            );
        }
        return Ok(false);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create the data directory {}", dir.display()))
        }
    }
}

/// Whether a start that failed may remove the data directory: only one this
/// process made, and never while another swarm process holds its store (it
/// won a race to a new directory and is serving from it).
fn may_remove_after_failed_start(created: bool, e: &anyhow::Error) -> bool {
    let held = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<server::ServeError>(),
            Some(server::ServeError::Store {
                source: swarm_store::StoreError::Locked { .. }
                    | swarm_store::StoreError::WalHeld { .. },
                ..
            })
        )
    });
    created && !held
}

type Started = (
    server::RunningServer,
    Option<std::thread::JoinHandle<()>>,
    Arc<AtomicBool>,
);

fn start(s: &Settings, accept_loss: bool) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create the data directory {}", s.data_dir.display()))?;
    let (admin_token, source) = resolve_admin_token(s.admin_token.as_deref(), &s.admin_token_file)
        .map_err(|e| token_file_error(&s.admin_token_file, &s.data_dir, &e))?;
    let hint = token_hint(s);
    match source {
        TokenSource::Generated => tracing::info!(
            file = %s.admin_token_file.display(),
            "generated an admin token (mode 0600); {hint}"
        ),
        TokenSource::File => {
            tracing::info!(file = %s.admin_token_file.display(), "admin token read from file; {hint}")
        }
        TokenSource::Configured => tracing::info!("admin token from configuration"),
    }
    let escalator = Escalator::new(s.escalation.clone());
    let on_escalate: server::EscalateHook = Arc::new(move |drone, address, action| {
        let Some(address) = address else {
            tracing::warn!(drone = %drone, ?action, "escalation step needs a human: the drone registered no address");
            return;
        };
        let target = ProbeTarget {
            drone: drone.clone(),
            address: address.to_string(),
        };
        if let Err(e) = escalator.escalate(&target, action) {
            tracing::error!(drone = %drone, error = %e, "escalation refused");
        }
    });
    let opts = ServerOptions {
        listen: s.listen,
        db_path: s.db_path.clone(),
        staging: s.staging_path.clone(),
        store: swarm_store::StoreOptions {
            accept_loss,
            build: Some(env!("SWARM_BUILD").to_owned()),
            ..s.store_options()
        },
        admin_token,
        drone_token: s.drone_token.clone(),
        read_token: s.read_token.clone(),
        legacy_drones: s.legacy_drones.clone(),
        allowed_hosts: s.allowed_hosts.clone(),
        behind_proxy: s.tls_proxy,
        drones: s.drones.clone(),
        max_body_bytes: s.max_body_bytes,
        max_artifact_bytes: s.max_artifact_bytes,
        http: s.http.clone(),
        tls: match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some(server::TlsServer::from_pem_files(cert, key)?),
            _ => None,
        },
        clock: Arc::new(wall_clock),
        on_escalate: Some(on_escalate),
        binhost: swarm_net::binhost::BinhostOptions {
            root: s
                .binhost_path
                .clone()
                .unwrap_or_else(|| s.data_dir.join("binhost")),
            keep_last: s.release_keep,
            max_drop_permille: s.release_max_drop_percent * 10,
            header_from: s.binhost_header_from.clone(),
            ..swarm_net::binhost::BinhostOptions::under(&s.data_dir)
        },
        signatures: swarm_net::binpkg::signature::Policy {
            keyring: match &s.binpkg_keyring {
                Some(path) => Some(
                    swarm_net::binpkg::signature::Keyring::open(path)
                        .map_err(anyhow::Error::msg)?,
                ),
                None => None,
            },
            require_signed: s.require_signed,
        },
    };
    if let Some(k) = &opts.signatures.keyring {
        tracing::info!(
            keyring = %k.path().display(),
            require_signed = opts.signatures.require_signed,
            "uploads with a signature are checked with gpgv"
        );
    }
    // A header file that cannot be used would fail every release; say so now.
    let header = opts.binhost.index_header()?;
    if s.binhost_header_from.is_some() {
        tracing::info!(
            keys = header.len(),
            profile = header.get("PROFILE").map(String::as_str).unwrap_or("-"),
            "release indexes carry the reference Packages header"
        );
    }
    let binhost_root = opts.binhost.root.clone();
    // Before the store opens: its first writes (a replay's, an upgrade's copy of the store) may
    // meet a file-size limit too, which killed the server without a word (h38).
    ignore_file_size_signal()?;
    let running = server::start(opts)?;
    if let Some((dir, mode)) = swarm_net::binhost::closed_to_others(&binhost_root) {
        tracing::warn!(
            binhost = %binhost_root.display(),
            "a web server running as another user cannot read the binhost from disk: {} is \
             {mode:04o}, closed to other users; `chmod o+x {}` to serve it that way, or let \
             clients fetch it through this server's /binhost/",
            dir.display(),
            dir.display()
        );
    }
    let report = running.open_report();
    if let Some(loss) = &report.loss {
        tracing::error!(
            db = %s.db_path.display(),
            loss = %loss,
            "started with --accept-loss on a store that lost acknowledged inputs; recorded as a loss_accepted event"
        );
    } else if accept_loss {
        // Left in a service unit, it would accept the next loss without a word (h23).
        tracing::warn!(
            "--accept-loss was given, but nothing was lost: start without it from now on, or a \
             later loss is accepted without a refused start to tell you"
        );
    }
    tracing::info!(
        db = %s.db_path.display(),
        snapshot = report.snapshot_seq,
        replayed = report.replayed,
        recovered_seq = report.recovered_seq,
        "store open: state rebuilt and checked against the outbox"
    );
    let stop = Arc::new(AtomicBool::new(false));
    install_signals(&stop)?;
    let prober = if s.probe.enabled {
        let handle = running.handle();
        let submit_handle = handle.clone();
        let prober = Prober::new(
            s.probe.clone(),
            move || {
                handle
                    .probe_targets()
                    .into_iter()
                    .map(|(drone, address)| ProbeTarget { drone, address })
                    .collect()
            },
            Arc::new(move |input| {
                if let Err(e) = submit_handle.submit(input) {
                    tracing::warn!(error = %e, "probe result not recorded");
                }
            }),
        );
        Some(prober.spawn(stop.clone())?)
    } else {
        tracing::info!("prober disabled (probe.enabled = false)");
        None
    };
    // The line scripts and tests wait for: the server accepts connections now.
    let scheme = if s.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(cert) = &s.tls_cert {
        tracing::info!(cert = %cert.display(), "serving https (TLS terminated by swarm)");
    }
    println!("listening on {scheme}://{}", running.addr());
    tracing::info!(
        addr = %running.addr(),
        staging = %s.staging_path.display(),
        "swarm serve ready"
    );
    Ok((running, prober, stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn only_a_data_dir_this_start_made_is_removed_and_a_dangling_link_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let fresh = base.path().join("a/b/data");
        assert!(
            make_data_dir(&fresh).expect("made"),
            "a new directory was made here"
        );
        // A second start (or one racing the first) finds it made.
        assert!(!make_data_dir(&fresh).expect("exists"));
        // A data dir linked to a disk not mounted: refused, the link kept,
        // nothing created behind it.
        let link = base.path().join("linked");
        let disk = base.path().join("disk/swarm");
        std::os::unix::fs::symlink(&disk, &link).expect("symlink");
        let e = make_data_dir(&link).expect_err("a dangling link must be refused");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "the link was removed"
        );
        assert!(!disk.exists(), "a new store was begun behind the link");
        // Removed only if made here and not held by another server.
        let other = anyhow::anyhow!("cannot read the TLS key");
        assert!(may_remove_after_failed_start(true, &other));
        assert!(!may_remove_after_failed_start(false, &other));
        let held = anyhow::Error::new(server::ServeError::Store {
            path: fresh.join("swarm.db"),
            source: swarm_store::StoreError::Locked {
                path: fresh.join("swarm.db"),
                lock: fresh.join("swarm.db.lock"),
            },
        });
        assert!(
            !may_remove_after_failed_start(true, &held),
            "the directory another server won the race to was removed under it"
        );
    }

    #[test]
    fn a_close_that_never_ends_is_given_up_after_its_limit() {
        let started = std::time::Instant::now();
        // Stands in for a writer held by a disk that does not answer.
        let closed = finish_within(Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(20))
        });
        assert!(!closed, "a close still running was reported finished");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?} for a close limited to 200 ms",
            started.elapsed()
        );
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let closed = finish_within(Duration::from_secs(10), move || {
            flag.store(true, Ordering::SeqCst)
        });
        assert!(
            closed && ran.load(Ordering::SeqCst),
            "a quick close was not waited for"
        );
    }

    // The CLI runs as root here, so the wrong user and a low port are
    // stood in for by the errors the system gives them.

    #[test]
    fn a_low_port_without_privilege_says_permission_not_another_server() {
        let addr: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        let text = listen_error(addr, &Error::from(ErrorKind::PermissionDenied));
        assert!(text.contains("permission denied"), "{text}");
        assert!(text.contains("below 1024"), "{text}");
        assert!(!text.contains("another"), "{text}");
        let taken = listen_error(addr, &Error::from(ErrorKind::AddrInUse));
        assert!(taken.contains("in use"), "{taken}");
    }

    #[test]
    fn the_wrong_user_is_told_whose_data_dir_it_is() {
        let e = token_file_error(
            Path::new("/srv/swarm/admin.token"),
            Path::new("/srv/swarm"),
            &Error::from(ErrorKind::PermissionDenied),
        )
        .to_string();
        assert!(
            e.contains("permission denied on the admin token file /srv/swarm/admin.token"),
            "{e}"
        );
        assert!(
            e.contains("as the user that owns the data directory /srv/swarm"),
            "{e}"
        );
        assert!(!e.contains("File exists"), "{e}");
    }
}
