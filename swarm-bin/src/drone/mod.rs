//! `swarm drone`: the agent that runs on each build machine (DESIGN §6,
//! V3-PROTOCOL.md, issue 6 §1).
//!
//! It registers, heartbeats from its own thread, asks for work when a slot
//! is free, runs the builder in its own process group with the log to a
//! file, uploads the artifact with its sha256 and reports with the lease. It
//! acts on what the server says (revoke, stop_work, stale, paused,
//! sync_portage) and on its own health (Degraded: no new work; Critical:
//! return everything). SIGTERM/SIGINT drains or returns, then exits 0.
//!
//! | module | job |
//! |---|---|
//! | `config` | flags > env > `[drone]` of swarm.toml > defaults |
//! | `buildenv` | the build environment as `portageq` resolves it |
//! | `facts` | /proc, statvfs, machine kind, Portage timestamp |
//! | `state` | what the threads share, and the decisions on it |
//! | `shared` | what every thread holds: settings, client, the locked state |
//! | `agent` | threads and the main loop (work, sync, orphans, shutdown) |
//! | `heartbeat` | the heartbeat thread and health sampling |
//! | `job` | one build: run, classify, find what it wrote, hand it to the spool |
//! | `outcome` | a builder's success on disk the moment it exits, spooled by the next agent if this one dies first |
//! | `spool` | finished builds on disk, uploaded and reported until answered, across restarts |
//! | `leftovers` | killing builds a dead agent left running |
//! | `logs` | the compressed tail of a build log (the spool sends it), rotating the local ones |
//! | `runner` | process group, log file, stall and overall timeouts, TERM/grace/KILL |
//! | `template` | `{atom}`, `{category}`, `{pn}`, `{pf}` substitution, no shell |
//! | `artifact` | finding `<pf>.gpkg.tar`/`.tbz2` in PKGDIR, sha256 |
//! | `classify` | build / oom / infra |
//! | `shutdown` | the signal state machine |
//! | `backoff` | exponential backoff with jitter |
//! | `standin` | the bundled STAND-IN builder (`--builder standin`) and its gpkg writer |

mod agent;
mod artifact;
mod backoff;
mod buildenv;
mod classify;
mod collect;
mod config;
mod facts;
mod heartbeat;
mod homecoming;
mod job;
mod leftovers;
mod logs;
mod outcome;
mod pkg_settings;
mod runner;
mod shared;
mod shutdown;
mod snapshot;
mod spool;
mod standin;
mod state;
mod template;
mod token_file;
mod work_lock;

pub(crate) use config::DroneArgs;
pub(crate) use standin::StandinGpkgArgs;

/// Runs `swarm drone` until SIGTERM/SIGINT; exits 0 after a clean shutdown.
pub(crate) fn run(args: DroneArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let cfg = args.resolve()?;
    let agent = std::sync::Arc::new(shared::Agent::new(cfg)?);
    agent::run(agent)
}
