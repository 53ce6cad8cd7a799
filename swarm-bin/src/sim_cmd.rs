//! `swarm sim`: run built-in or operator-described scenarios through the real core.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use swarm_core::sim::{self, Scenario, SimOptions, SimRun};
use swarm_core::Config;

/// Which policy to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Preset {
    /// swarm's policy (the defaults, or --config).
    Swarm,
    /// Build Swarm v3's observable policy: FIFO, 60 s offline timeout, no brake,
    /// flat 5-minute grounding, packages blocked after 5 failures, no dependencies.
    V3,
}

#[derive(clap::Args)]
pub(crate) struct SimArgs {
    /// A built-in scenario (see --list).
    #[arg(long, short, conflicts_with = "file")]
    scenario: Option<String>,
    /// A scenario file (TOML or JSON) describing your own fleet and faults.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// The seed; one seed chooses everything, faults included.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this many consecutive seeds, each twice to prove determinism.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Policy preset.
    #[arg(long, value_enum, default_value_t = Preset::Swarm)]
    preset: Preset,
    /// Run both swarm and v3 on the same seed and show them side by side.
    #[arg(long, conflicts_with = "preset")]
    compare: bool,
    /// Policy overrides (TOML with any `Config` field), applied to the swarm preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where a failing run's envelope log is written.
    #[arg(long, default_value = ".")]
    log_dir: PathBuf,
    /// Write every run's envelope log here (JSON lines), not only failing ones.
    #[arg(long)]
    write_log: Option<PathBuf>,
    /// Print JSON (one report per line) instead of text.
    #[arg(long)]
    json: bool,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Seeds simulated at once (default: one per CPU). Reports still print in seed order.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
}

/// One seed under one preset, run twice: the first run's result and the mean wall time.
struct Outcome {
    run: SimRun,
    wall_ms: u128,
    deterministic: bool,
}

pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: Config =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    config
        .validate()
        .with_context(|| format!("invalid policy in {}", path.display()))?;
    Ok(config)
}

fn load_scenario(args: &SimArgs) -> anyhow::Result<Scenario> {
    if let Some(path) = &args.file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        let scenario: Scenario = if is_json {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        return Ok(scenario);
    }
    let name = args.scenario.as_deref().unwrap_or("world-rebuild");
    Scenario::builtin(name).with_context(|| {
        format!(
            "unknown scenario {name:?}; built-in scenarios: {}",
            sim::BUILTIN.join(", ")
        )
    })
}

pub(crate) fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.list {
        let mut list = Vec::new();
        let mut text = String::new();
        for name in sim::BUILTIN {
            let s = Scenario::builtin(name).context("built-in scenario")?;
            if args.json {
                list.push(serde_json::json!({"name": name, "description": s.description}));
            } else {
                // Two spaces: a wrapped description stays in its column.
                text.push_str(&format!("{name:15}  {}\n", s.description));
            }
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        return crate::cli::fmt::emit(&text);
    }
    let scenario = load_scenario(&args)?;
    let swarm_config = load_config(args.config.as_deref())?;
    let presets: Vec<(&str, Config)> = match (args.compare, args.preset) {
        (true, _) => vec![("swarm", swarm_config), ("v3", Config::v3())],
        (false, Preset::Swarm) => vec![("swarm", swarm_config)],
        (false, Preset::V3) => vec![("v3", Config::v3())],
    };
    let first_seed = args.seed;
    let count = args.runs.max(1);
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let jobs = jobs
        .min(usize::try_from(count).unwrap_or(usize::MAX))
        .max(1);
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<(u64, anyhow::Result<Vec<Outcome>>)>();
    let mut failures = 0;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, scenario, presets, args) = (&next, &scenario, &presets, &args);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let seed = first_seed.saturating_add(i);
                let res = presets
                    .iter()
                    .map(|(_, config)| run_seed(scenario, config, seed, args.write_log.is_some()))
                    .collect();
                if tx.send((i, res)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        // Results arrive in any order; they are printed in seed order as soon as they can be.
        let mut waiting = BTreeMap::new();
        let mut printed = 0u64;
        for (i, res) in rx {
            waiting.insert(i, res);
            while let Some(res) = waiting.remove(&printed) {
                let seed = first_seed.saturating_add(printed);
                printed += 1;
                let outcomes = match res {
                    Ok(o) => o,
                    Err(e) => {
                        // Stop the workers: nothing after a broken scenario is worth running.
                        next.store(count, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                let mut reports = Vec::new();
                for ((preset, config), mut o) in presets.iter().zip(outcomes) {
                    if !o.deterministic || o.run.failure.is_some() {
                        failures += 1;
                        if o.run.log.is_empty() {
                            // Runs keep no log unless asked: the same seed again, with its log.
                            let opts = SimOptions {
                                seed,
                                config: config.clone(),
                                keep_log: true,
                            };
                            o.run = sim::run(&scenario, &opts).map_err(anyhow::Error::msg)?;
                        }
                        report_failure(&args, &scenario, preset, seed, &o.run, o.deterministic)?;
                    }
                    if let Some(path) = &args.write_log {
                        let path = if args.runs > 1 || presets.len() > 1 {
                            path.with_file_name(format!(
                                "{}-{preset}-{seed}.jsonl",
                                path.file_stem().and_then(|s| s.to_str()).unwrap_or("sim")
                            ))
                        } else {
                            path.clone()
                        };
                        write_log(&path, &o.run)?;
                    }
                    reports.push((preset, o.run, o.wall_ms));
                }
                print_reports(&args, &reports)?;
            }
        }
        Ok(())
    })?;
    if failures > 0 {
        bail!("{failures} failing run(s); each printed SWARM_SIM_SEED and wrote its envelope log");
    }
    Ok(())
}

/// Runs one seed twice and compares the two runs, so nondeterminism is caught as a failure.
fn run_seed(
    scenario: &Scenario,
    config: &Config,
    seed: u64,
    keep_log: bool,
) -> anyhow::Result<Outcome> {
    let opts = SimOptions {
        seed,
        config: config.clone(),
        keep_log,
    };
    let started = std::time::Instant::now();
    let first = sim::run(scenario, &opts).map_err(anyhow::Error::msg)?;
    let second = sim::run(scenario, &opts).map_err(anyhow::Error::msg)?;
    Ok(Outcome {
        wall_ms: started.elapsed().as_millis() / 2,
        deterministic: first.digest == second.digest && first.report == second.report,
        run: first,
    })
}

fn report_failure(
    args: &SimArgs,
    scenario: &Scenario,
    preset: &str,
    seed: u64,
    run: &SimRun,
    deterministic: bool,
) -> anyhow::Result<()> {
    let path = args
        .log_dir
        .join(format!("swarm-sim-{}-{preset}-{seed}.jsonl", scenario.name));
    write_log(&path, run)?;
    let why = match (&run.failure, deterministic) {
        (Some(f), _) => format!("at seq {}: {}", f.seq, f.reason),
        (None, false) => "two runs of the same seed diverged (nondeterminism)".to_owned(),
        (None, true) => "unknown".to_owned(),
    };
    eprintln!("SWARM_SIM_SEED={seed}");
    eprintln!("scenario {} ({preset}) failed {why}", scenario.name);
    eprintln!(
        "envelope log: {} (replay it: swarm replay {})",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Writes the envelope log in the store's JSON-lines format: one `Envelope` per line.
pub(crate) fn write_log(path: &Path, run: &SimRun) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for env in &run.log {
        serde_json::to_writer(&mut w, env)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

fn print_reports(args: &SimArgs, reports: &[(&&str, SimRun, u128)]) -> anyhow::Result<()> {
    for (preset, run, wall_ms) in reports {
        if args.json {
            let mut v = serde_json::to_value(&run.report)?;
            if let Some(map) = v.as_object_mut() {
                map.insert("preset".into(), (**preset).into());
                map.insert("wall_ms".into(), (*wall_ms as u64).into());
                map.insert("digest".into(), format!("{:016x}", run.digest).into());
                map.insert(
                    "failure".into(),
                    run.failure.as_ref().map(|f| f.reason.clone()).into(),
                );
            }
            println!("{}", serde_json::to_string(&v)?);
        } else {
            println!("[{preset}] {}", run.report);
            println!("  digest {:016x}, simulated in {wall_ms} ms", run.digest);
            if let Some(f) = &run.failure {
                println!("  FAILED at seq {}: {}", f.seq, f.reason);
            }
        }
    }
    Ok(())
}
