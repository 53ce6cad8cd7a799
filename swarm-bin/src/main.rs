//! `swarm`: the one binary and the only composition root.
//!
//! `sim` and `replay` drive the pure core; `serve`, `drone` and `demo` arrive
//! with their issues.

mod replay_cmd;
mod sim_cmd;

use anyhow::Context;
use clap::{Parser, Subcommand};
use swarm_core::Config;

/// swarm: a control plane for a fleet of build machines ("drones").
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inspect the scheduling policy configuration.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Run a real local swarm (server and drones). Not built yet: see README.
    Demo,
    /// Simulate a fleet through the real scheduling core: faults, invariants, SLOs.
    ///
    /// One seed chooses everything. Each run is done twice and the digests are
    /// compared. A failing run prints SWARM_SIM_SEED=<n>, writes its envelope log
    /// (replay it with `swarm replay`) and exits non-zero.
    Sim(sim_cmd::SimArgs),
    /// Re-run an envelope log through the core with every invariant check.
    Replay(replay_cmd::ReplayArgs),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every policy default of DESIGN §3, validated.
    Defaults {
        /// Print JSON instead of TOML-like `key = value` lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Config {
            action: ConfigCmd::Defaults { json },
        } => {
            let config = Config::default();
            config.validate().context("built-in defaults are invalid")?;
            let value = serde_json::to_value(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if let Some(map) = value.as_object() {
                for (key, v) in map {
                    println!("{key} = {v}");
                }
            }
            Ok(())
        }
        Cmd::Sim(args) => sim_cmd::run(args),
        Cmd::Replay(args) => replay_cmd::run(args),
        Cmd::Demo => {
            anyhow::bail!(
                "`swarm demo` is not built yet: it needs the store, server and drone agent \
                 (issues 4-6). Today swarm is its scheduling core; run the tests with \
                 `cargo test --workspace`."
            )
        }
    }
}
