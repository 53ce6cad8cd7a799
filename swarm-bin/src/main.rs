//! `swarm`: the one binary and the only composition root.
//!
//! Today it exposes the policy defaults; `serve`, `drone`, `demo`, `sim` and
//! `replay` arrive with their issues.

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
        Cmd::Demo => {
            anyhow::bail!(
                "`swarm demo` is not built yet: it needs the store, server and drone agent \
                 (issues 4-6). Today swarm is its scheduling core; run the tests with \
                 `cargo test --workspace`."
            )
        }
    }
}
