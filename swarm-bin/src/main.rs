//! `swarm`: the one binary and the only composition root.
//!
//! `sim` and `replay` drive the pure core; `export` and `sql` read a store;
//! `serve`, `drone` and `demo` arrive with their issues.

mod export_cmd;
mod replay_cmd;
mod sim_cmd;
mod sql_cmd;

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
    /// Write a store's input log as an envelope log (JSON lines) for `swarm replay`.
    ///
    /// Reads the store read-only: it takes no lock and appends nothing, so it
    /// works while the server runs.
    Export(export_cmd::ExportArgs),
    /// Run a read-only SQL query on a store (tables: packages, drones, leases, builds, events).
    ///
    /// The query runs on a separate read-only connection with SQLite's own
    /// guards: writes, ATTACH and PRAGMA writes are refused, a time budget stops
    /// runaway queries, and the answer is capped at --max-rows.
    Sql(sql_cmd::SqlArgs),
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
        Cmd::Export(args) => export_cmd::run(args),
        Cmd::Sql(args) => sql_cmd::run(args),
        Cmd::Demo => {
            anyhow::bail!(
                "`swarm demo` is not built yet: it needs the store, server and drone agent \
                 (issues 4-6). Today swarm is its scheduling core; run the tests with \
                 `cargo test --workspace`."
            )
        }
    }
}
