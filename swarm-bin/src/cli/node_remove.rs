//! `swarm node remove NAME`: retire a drone. Its leases go back to the
//! queue, it leaves `swarm fleet`, and its build history stays. A drone
//! that registers again later comes back as new: removal forgets state, a
//! credential is what lets an agent in, so `--revoke` ends that first (an
//! agent still running would otherwise be back at its next heartbeat).
//! Destructive, so it asks on a terminal and needs `--yes` otherwise.

use super::confirm::confirm;
use super::conn::{admin_error, read_error, AdminArgs};
use super::control::render_events;
use super::fmt::{emit, emit_json, plural};
use swarm_net::client::admin::NodeAction;
use swarm_net::client::ClientError;

/// `swarm node remove`.
#[derive(clap::Args, Debug)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The drone's name, as `swarm fleet` lists it.
    #[arg(value_name = "NAME")]
    name: String,
    /// Also revoke its enrolled credential (`swarm node revoke`), first, so an agent still
    /// running cannot register again. Without it, only the state goes.
    #[arg(long)]
    revoke: bool,
    /// Do it without asking (needed when there is no terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the server's JSON reply.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: RemoveArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.name.trim().is_empty() && !args.name.contains('/'),
        "{:?} is not a drone name",
        args.name
    );
    let c = args.admin.client()?;
    let nodes = c.client.nodes().map_err(read_error)?;
    let Some(drone) = nodes.body.nodes.iter().find(|d| d.name == args.name) else {
        anyhow::bail!("no drone named {:?} (`swarm fleet` lists them)", args.name);
    };
    let held = drone.leases.len();
    let what = format!(
        "`node remove` retires drone {} ({}, holding {}): its work goes back to the queue; its build history stays{}.",
        args.name,
        drone.status,
        plural(held, "lease", "leases"),
        if args.revoke {
            "; its credential is revoked"
        } else {
            ""
        }
    );
    confirm(&what, args.yes)?;
    let credential = if args.revoke {
        match c.client.revoke_credential(&args.name) {
            Ok(_) => "its credential is revoked: its agent is refused from now on\n",
            // Nothing enrolled: it came in with the shared drone token (or
            // as a legacy drone), which names no one and stays.
            Err(ClientError::Server { status: 404, .. }) => {
                "it had no credential of its own: an agent with the shared drone token can still register\n"
            }
            Err(e) => return Err(admin_error(e, &c.token_source)),
        }
    } else {
        "an agent still running registers again at its next heartbeat; `--revoke` keeps it out\n"
    };
    let answer = c
        .client
        .node_action(&args.name, NodeAction::Remove)
        .map_err(|e| admin_error(e, &c.token_source))?;
    if args.json {
        return emit_json(&answer.raw);
    }
    emit(&format!(
        "drone {}: removed; {credential}{}",
        args.name,
        render_events(&answer.body.events)
    ))
}
