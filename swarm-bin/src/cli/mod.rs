//! The operator commands that talk to a running `swarm serve` over HTTP,
//! through swarm-net's client.
//!
//! Every command finds the server without flags on the server's own host
//! (`--server`, else `$SWARM_URL`, else v3's `$SWARMV3_URL`, else
//! `http://127.0.0.1:8100`), and the admin token the same way (see
//! [`conn`]). Read commands print human tables and take `--json` for the
//! server's own JSON. Parsing and rendering are pure functions with unit
//! tests; the run functions only fetch and print.

pub(crate) mod bounded_run;
mod confirm;
pub(crate) mod conn;
mod control;
mod enroll;
mod events;
mod explain;
mod fleet;
pub(crate) mod fmt;
pub(crate) mod fresh;
mod history;
pub(crate) mod import;
mod logs;
mod metrics;
mod monitor;
mod node;
mod node_remove;
mod profile;
mod queue;
mod release;
mod status;
mod term;

use clap::Subcommand;

/// The HTTP commands, flattened into the top-level `swarm` command list.
#[derive(Subcommand, Debug)]
pub(crate) enum OpsCmd {
    /// Show the queue, the fleet and the brake at a glance (from a running server).
    Status(status::StatusArgs),
    /// List the drones: liveness, health, load, and what each is building.
    Fleet(fleet::FleetArgs),
    /// Queue packages, list the queue, or import an emerge --pretend / JSON / TOML list.
    Queue(queue::QueueArgs),
    /// Show finished builds, newest first, or statistics per package.
    History(history::HistoryArgs),
    /// Show recent events, or follow them as they happen.
    Events(events::EventsArgs),
    /// Explain why a package is where it is: waiting, blocked, building.
    Explain(explain::ExplainArgs),
    /// Run an operator action on the swarm, a package or a drone (admin).
    Control(control::ControlArgs),
    /// Start a new queue generation from `emerge -p --emptytree --tree @world`,
    /// with its dependency edges and Portage snapshot (admin; asks first).
    Fresh(fresh::FreshArgs),
    /// Manage one drone: pause, resume, drain, undrain, reset-escalation, remove (admin).
    ///
    /// This manages a drone from the control plane; the drone agent that
    /// runs on a build machine is `swarm drone`.
    Node(node::NodeArgs),
    /// Live terminal view: queue, fleet, running builds with elapsed time and ETA, events.
    Monitor(monitor::MonitorArgs),
    /// Print the server's Prometheus metrics.
    Metrics(metrics::MetricsArgs),
    /// Binhost releases: create, list, show, diff, publish (behind the safety
    /// gate), rollback, keep, tag, purge. Clients install from /binhost/.
    Release(release::ReleaseArgs),
    /// Profiles: the targets one fleet builds for (environment, world set, binhost path):
    /// create, list, show, edit, remove.
    Profile(profile::ProfileArgs),
    /// Show a build's log as the drone uploaded it (newest build with a log, or --build N).
    Logs(logs::LogsArgs),
}

/// Runs one HTTP command.
pub(crate) fn run(cmd: OpsCmd) -> anyhow::Result<()> {
    match cmd {
        OpsCmd::Status(a) => status::run(a),
        OpsCmd::Fleet(a) => fleet::run(a),
        OpsCmd::Queue(a) => queue::run(a),
        OpsCmd::History(a) => history::run(a),
        OpsCmd::Events(a) => events::run(a),
        OpsCmd::Explain(a) => explain::run(a),
        OpsCmd::Control(a) => control::run(a),
        OpsCmd::Fresh(a) => fresh::run(a),
        OpsCmd::Node(a) => node::run(a),
        OpsCmd::Monitor(a) => monitor::run(a),
        OpsCmd::Metrics(a) => metrics::run(a),
        OpsCmd::Release(a) => release::run(a),
        OpsCmd::Logs(a) => logs::run(a),
        OpsCmd::Profile(a) => profile::run(a),
    }
}
