//! `swarm replay`: re-run an envelope log through the core with every check.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use swarm_core::{Config, Envelope, Event, Monitor, Output, Swarm};

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// The envelope log: JSON lines, one `Envelope` each (from `swarm sim` or `swarm export`).
    file: PathBuf,
    /// Also replay under this policy (TOML) and report where its decisions diverge.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policy the log was recorded under (TOML; default: the built-in defaults).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// After replaying, explain every package that is not built, and show the fleet.
    #[arg(long)]
    explain: bool,
}

#[derive(Default, serde::Serialize)]
struct Figures {
    inputs: u64,
    rejected: u64,
    assigns: u64,
    built: u64,
    build_failures: u64,
    blocked: u64,
    reclaims_by_reason: BTreeMap<String, u64>,
    escalations_by_level: BTreeMap<String, u64>,
    brake_engagements: u64,
    invariant_violations: u64,
    digest: String,
    first_violation: Option<String>,
}

/// The longest line an envelope log may hold: the server's largest body
/// (64 MiB) as one input, with room for its envelope. A file with no line
/// breaks (`/dev/zero`, a binary given by mistake) ends there, not in
/// memory exhaustion.
const MAX_ENVELOPE_BYTES: u64 = 80 << 20;

fn read_log(path: &PathBuf) -> anyhow::Result<Vec<Envelope>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    for i in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_ENVELOPE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {} line {i}", path.display()))?;
        if read == 0 {
            break;
        }
        if read as u64 > MAX_ENVELOPE_BYTES {
            bail!(
                "{} line {i} is longer than {} MiB: not an envelope log",
                path.display(),
                MAX_ENVELOPE_BYTES >> 20
            );
        }
        let text = std::str::from_utf8(&line)
            .with_context(|| format!("{} line {i}: not UTF-8", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let env: Envelope = serde_json::from_str(text)
            .with_context(|| format!("{} line {i}: not an envelope", path.display()))?;
        out.push(env);
    }
    Ok(out)
}

fn explain(swarm: &Swarm) {
    let v = swarm.view();
    println!("fleet:");
    for d in v.drones() {
        let why = d.no_work.as_deref().unwrap_or("takes work");
        println!(
            "  {:20} {:?} {:?} leases {} ({why})",
            d.name.as_str(),
            d.status,
            d.health,
            d.leases.len()
        );
    }
    let brake = v.brake();
    if brake.engaged {
        println!(
            "brake engaged: {} ({} packages held)",
            brake.reason,
            brake.held.len()
        );
    }
    println!("unfinished packages:");
    for p in v
        .queue()
        .filter(|p| !matches!(p.status, swarm_core::PackageStatus::Built { .. }))
    {
        println!("  {:40} {}", p.atom.as_str(), v.explain(&p.atom));
    }
}

fn replay(log: &[Envelope], config: Config) -> anyhow::Result<(Figures, Vec<Vec<Output>>, Swarm)> {
    let mut swarm = Swarm::new(config.clone())?;
    let mut monitor = Monitor::new(config);
    let mut f = Figures::default();
    let mut outputs = Vec::with_capacity(log.len());
    for env in log {
        let out = swarm.handle(env);
        f.inputs += 1;
        let check = swarm
            .check_invariants()
            .and_then(|_| monitor.check_step(env, &out, &swarm));
        if let Err(v) = check {
            f.invariant_violations += 1;
            f.first_violation
                .get_or_insert_with(|| format!("seq {}: {v}", env.seq));
        }
        for o in &out {
            match o {
                Output::Command(swarm_core::Command::Assign { .. }) => f.assigns += 1,
                Output::Event(Event::InputRejected { .. }) => f.rejected += 1,
                Output::Event(Event::Built { .. }) => f.built += 1,
                Output::Event(Event::BuildFailed { .. }) => f.build_failures += 1,
                Output::Event(Event::Blocked { .. }) => f.blocked += 1,
                Output::Event(Event::BrakeEngaged { .. }) => f.brake_engagements += 1,
                Output::Event(Event::Reclaimed { reason, .. }) => {
                    *f.reclaims_by_reason
                        .entry(format!("{reason:?}"))
                        .or_default() += 1
                }
                Output::Event(Event::Escalated { action, .. }) => {
                    *f.escalations_by_level
                        .entry(format!("{action:?}"))
                        .or_default() += 1
                }
                _ => {}
            }
        }
        outputs.push(out);
    }
    swarm
        .check_invariants_deep()
        .map_err(|v| anyhow::anyhow!("final state: {v}"))?;
    f.digest = format!("{:016x}", swarm.digest());
    Ok((f, outputs, swarm))
}

pub(crate) fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let log = read_log(&args.file)?;
    if log.is_empty() {
        bail!("{} holds no envelopes", args.file.display());
    }
    let base = crate::sim_cmd::load_config(args.base.as_deref())?;
    let (figures, outputs, swarm) = replay(&log, base)?;
    if args.explain {
        explain(&swarm);
    }
    let mut diverged = None;
    if let Some(path) = &args.config {
        let other = crate::sim_cmd::load_config(Some(path))?;
        let (other_figures, other_outputs, _) = replay(&log, other)?;
        let first = outputs.iter().zip(&other_outputs).position(|(a, b)| a != b);
        let count = outputs
            .iter()
            .zip(&other_outputs)
            .filter(|(a, b)| a != b)
            .count();
        diverged = Some((first.map(|i| log[i].seq.0), count, other_figures));
    }
    if args.json {
        let mut v = serde_json::to_value(&figures)?;
        if let (Some(map), Some((first, count, other))) = (v.as_object_mut(), &diverged) {
            map.insert("diverged_at_seq".into(), (*first).into());
            map.insert("diverged_steps".into(), (*count as u64).into());
            map.insert("other".into(), serde_json::to_value(other)?);
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "replayed {} inputs from {}",
            figures.inputs,
            args.file.display()
        );
        println!("  digest {}", figures.digest);
        println!(
            "  assigned {}, built {}, failed {}, blocked {}",
            figures.assigns, figures.built, figures.build_failures, figures.blocked
        );
        println!("  reclaims {:?}", figures.reclaims_by_reason);
        println!(
            "  escalations {:?}, brake engagements {}",
            figures.escalations_by_level, figures.brake_engagements
        );
        println!(
            "  rejected inputs {}, invariant violations {}",
            figures.rejected, figures.invariant_violations
        );
        if let Some((first, count, other)) = &diverged {
            match first {
                Some(seq) => println!("  under the other policy: {count} steps decide differently, first at seq {seq}; digest {}", other.digest),
                None => println!("  under the other policy: identical decisions"),
            }
        }
    }
    if let Some(v) = figures.first_violation {
        bail!("invariant violated during replay at {v}");
    }
    Ok(())
}
