//! `swarm`: the one binary and the only composition root.
//!
//! `sim` and `replay` drive the pure core; `export` and `sql` read a store;
//! `serve`, `drone` and `demo` arrive with their issues.

mod bench_cmd;
mod bench_conn;
mod bench_cpu;
mod bench_import;
mod bench_phases;
mod bench_release;
mod bench_scratch;
mod bench_soak;
mod bench_stall;
mod child_env;
mod cli;
mod config_cmd;
mod demo;
mod drone;
mod export_cmd;
mod logging;
mod preflight;
mod private_files;
mod process_env;
mod replay_cmd;
mod serve_cmd;
mod sim_cmd;
mod sql_cmd;
#[cfg(test)]
mod test_exec;

use anyhow::Context;
use clap::{Parser, Subcommand};
use swarm_core::Config;

/// swarm: a control plane for a fleet of build machines ("drones").
#[derive(Parser)]
#[command(name = "swarm", version = env!("SWARM_BUILD"), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane: the HTTP API drones and operators talk to.
    ///
    /// Listens on 127.0.0.1:8100 unless told otherwise, keeps its state in
    /// SQLite under the data dir, and generates an admin token (0600) there on
    /// first start. Existing Build Swarm v3 drones can point at it unchanged.
    /// SIGTERM/SIGINT/SIGHUP: commit what is queued, close the store, exit
    /// 0; a second signal exits at once (1). A dead writer or fsync thread makes
    /// it exit with an error (closing waits 30 s at most), for its service
    /// manager to restart it.
    Serve(serve_cmd::ServeArgs),
    /// Measure: HTTP cycles per second with simulated drones over loopback.
    Bench(bench_cmd::BenchArgs),
    /// Run the drone agent on a build machine: register, heartbeat, build, upload, report.
    ///
    /// Runs each build in its own process group with the log to a file, and
    /// acts on revokes, pauses and its own health. SIGTERM/SIGINT/SIGHUP: take no
    /// more work, then finish (--on-stop finish) or return (--on-stop return)
    /// the running builds and exit 0; a second signal returns the running
    /// builds at once. Finished builds are delivered first, through both.
    /// A third leaves at once: a finished build still waiting for the server
    /// stays spooled for the next start, and the server is not told the
    /// drone stopped, which would give back the build's lease.
    Drone(Box<drone::DroneArgs>),
    /// The operator commands that talk to the server over HTTP (status, queue, ...).
    #[command(flatten)]
    Ops(cli::OpsCmd),
    /// Inspect the configuration: policy defaults, and the server's settings (check, show).
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Run a real local swarm in one command: a server, drones and a Gentoo world sample.
    ///
    /// Starts `swarm serve` and N `swarm drone`s on this machine with a STAND-IN
    /// builder (it sleeps and writes small fake packages; nothing is compiled),
    /// kills one drone halfway to show its work being reclaimed, and ends with a
    /// summary read from the server. All its processes are stopped at exit.
    Demo(demo::DemoArgs),
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
    /// runaway queries, and the answer is capped at --max-rows. Without --db or
    /// --data-dir the query goes to the server (--server/$SWARM_URL, admin token).
    Sql(sql_cmd::SqlArgs),
    /// Write the STAND-IN builder's package: a valid gpkg holding one text file.
    #[command(name = "standin-gpkg", hide = true)]
    StandinGpkg(drone::StandinGpkgArgs),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every scheduling-policy default, what it does and when to change it (docs/DESIGN.md §3).
    ///
    /// The output is a commented `[policy]` table: paste the lines you change
    /// into swarm.toml (or set SWARM_POLICY_<KEY>). docs/DESIGN.md §3 "Policy"
    /// explains how the settings work together.
    Defaults {
        /// Print JSON: {key: value} (the same keys as the [policy] table).
        #[arg(long)]
        json: bool,
    },
    /// Load the server configuration as `swarm serve` would and report the first problem.
    ///
    /// Reads the file (--config, else /etc/swarm/swarm.toml if it exists) and
    /// the environment; prints "ok: <file or defaults>" or the error, naming the
    /// key and where its value came from, and exits non-zero.
    Check(config_cmd::CheckArgs),
    /// Print every effective server setting and where its value came from.
    Show(config_cmd::ShowArgs),
}

fn main() -> std::process::ExitCode {
    let cli = parse_args();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let width = cli::fmt::columns(cli::fmt::Stream::Stderr);
            eprint!("{}", cli::fmt::fit(&error_report(&e), width));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, with `--help` and usage errors fitted as the rest of
/// the human output is ([`cli::fmt::columns`]): to the terminal, else to
/// `$COLUMNS`; a pipe gets whole lines.
fn parse_args() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    // 0: clap does not wrap.
    let width = cli::fmt::columns(cli::fmt::Stream::Stdout).unwrap_or(0);
    let matches = Cli::command().term_width(width).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// An error as an operator reads it: the message and its causes, one per
/// line, and never a backtrace (even with RUST_BACKTRACE set: these are
/// answers to bad input or an absent server, not bugs; panics keep theirs).
fn error_report(e: &anyhow::Error) -> String {
    let mut text = format!("error: {e}\n");
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        // A context line that already quotes its cause says it once.
        if !text.trim_end().ends_with(cause.as_str()) {
            text.push_str(&format!("  because: {cause}\n"));
        }
    }
    text
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Config {
            action: ConfigCmd::Defaults { json },
        } => {
            let config = Config::default();
            config.validate().context("built-in defaults are invalid")?;
            let value = serde_json::to_value(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", config_cmd::defaults_text(&value));
            }
            Ok(())
        }
        Cmd::Config {
            action: ConfigCmd::Check(args),
        } => config_cmd::check(args),
        Cmd::Config {
            action: ConfigCmd::Show(args),
        } => config_cmd::show(args),
        Cmd::Serve(args) => serve_cmd::run(args),
        Cmd::Bench(args) => bench_cmd::run(args),
        Cmd::Drone(args) => drone::run(*args),
        Cmd::Sim(args) => sim_cmd::run(args),
        Cmd::Replay(args) => replay_cmd::run(args),
        Cmd::Export(args) => export_cmd::run(args),
        Cmd::Sql(args) => sql_cmd::run(args),
        Cmd::Ops(cmd) => cli::run(cmd),
        Cmd::Demo(args) => demo::run(args),
        Cmd::StandinGpkg(args) => args.run(),
    }
}
