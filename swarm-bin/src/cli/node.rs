//! `swarm node pause|resume|drain|undrain|reset-escalation|remove <name>`: one
//! drone's switches, through `POST /api/v1/nodes/<name>/<action>`. (The drone
//! agent itself is `swarm drone`.)

use super::conn::{admin_error, AdminArgs};
use super::control::render_events;
use super::fmt::{emit, emit_json};
use swarm_net::client::admin::NodeAction;

#[derive(clap::Args, Debug)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    action: NodeCmd,
}

#[derive(clap::Subcommand, Debug)]
enum NodeCmd {
    /// Give the drone no new work; its running builds go on.
    Pause(Target),
    /// Undo pause.
    Resume(Target),
    /// Let the drone finish what it has and take nothing new (before maintenance).
    Drain(Target),
    /// Undo drain.
    Undrain(Target),
    /// Put the drone's self-healing escalation ladder back at the bottom.
    #[command(alias = "reset_escalation")]
    ResetEscalation(Target),
    /// Retire the drone: its work is requeued, it leaves the fleet, its history stays.
    ///
    /// Asks on a terminal; pass --yes in scripts. A drone that registers
    /// again later comes back as new.
    Remove(super::node_remove::RemoveArgs),
}

#[derive(clap::Args, Debug)]
struct Target {
    #[command(flatten)]
    admin: AdminArgs,
    /// The drone's name, as `swarm fleet` lists it.
    #[arg(value_name = "NAME")]
    name: String,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    let (action, target, done) = match args.action {
        NodeCmd::Pause(t) => (NodeAction::Pause, t, "paused"),
        NodeCmd::Resume(t) => (NodeAction::Resume, t, "resumed"),
        NodeCmd::Drain(t) => (NodeAction::Drain, t, "draining"),
        NodeCmd::Undrain(t) => (NodeAction::Undrain, t, "undrained"),
        NodeCmd::ResetEscalation(t) => (NodeAction::ResetEscalation, t, "escalation reset"),
        NodeCmd::Remove(a) => return super::node_remove::run(a),
    };
    anyhow::ensure!(
        !target.name.trim().is_empty() && !target.name.contains('/'),
        "{:?} is not a drone name",
        target.name
    );
    let c = target.admin.client()?;
    let answer = c
        .client
        .node_action(&target.name, action)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if target.json {
        return emit_json(&answer.raw);
    }
    emit(&format!(
        "drone {}: {done}\n{}",
        target.name,
        render_events(&answer.body.events)
    ))
}
