//! Fuzzing entry points. The cargo-fuzz targets in `fuzz/` are one call into this module, and
//! `cargo test` runs the committed corpus (`fuzz/corpus/handle/`) through it, so a crash the fuzzer
//! once found stays fixed.
//!
//! [`run_bytes`] reads its input as a compact stream of operations, not JSON: each operation picks
//! an input kind, a drone among a few names, a package among a few atoms, a time step and the
//! input's details, one byte at a time. Reports and heartbeats mostly name leases the swarm really
//! handed out (remembered from its `Assign` commands), so the fuzzer reaches the interesting paths
//! (fencing, starts, completions, stealing) instead of bouncing off `InputRejected`.
//!
//! After every step the run checks [`Swarm::check_invariants_deep`] and a [`Monitor`]; at the end it
//! replays the envelopes into a fresh swarm (same outputs, same digest: determinism) and restores
//! the final state from its snapshot (same digest). Any failure panics with the step and input.
//!
//! Pure like the rest of the crate: no IO, no clock.

use crate::health::DroneHealth;
use crate::{
    Atom, Command, Config, Control, DroneKind, DroneName, DroneSpec, Enqueue, Envelope, Epoch,
    FailureClass, Generation, Heartbeat, Input, LeaseId, Monitor, Outcome, Output, PackageSpec,
    ProbeStatus, Report, Seq, Swarm, Timestamp,
};

/// At most this many operations per run, so a long input cannot time the fuzzer out.
pub const MAX_STEPS: usize = 2_000;

/// Separates independent runs inside one input, each on a fresh swarm, so that one corpus file
/// can carry many short scenarios.
pub const RESTART: &[u8] = b"--restart--";

/// Where virtual time starts (2023-11-14, in epoch milliseconds).
const START_MS: u64 = 1_700_000_000_000;

/// A few drones; the last one is a sweeper (works on blocked packages only).
const DRONES: [&str; 5] = ["drone-a", "drone-b", "drone-c", "drone-d", "sweeper-1"];

/// A few packages: versioned, unversioned, slotted, a virtual.
const ATOMS: [&str; 8] = [
    "dev-libs/icu-74.2",
    "sys-devel/gcc-13.2.1_p20240113-r1",
    "dev-qt/qtwebengine-6.7.2-r1:6",
    "dev-lang/python:3.12",
    "app-misc/jq",
    "virtual/libc-1",
    "dev-libs/openssl-3.1.4",
    "media-libs/mesa-24.0.1",
];

/// Time steps in ms: nothing, a little, and both sides of the default config's edges
/// (heartbeat grace 90 s, confirmed dead 120 s, failure window 180 s, offline 15 min, ...).
const ADVANCE_MS: [u64; 16] = [
    0, 1, 1_000, 10_000, 30_000, 60_000, 89_999, 90_001, 120_001, 180_001, 300_001, 600_001,
    899_999, 900_001, 3_600_001, 86_400_001,
];

const MACHINE_IDS: [Option<&str>; 3] = [None, Some("machine-1"), Some("machine-2")];
const SNAPSHOTS: [Option<&str>; 3] = [None, Some("2024-11-18"), Some("2024-11-19")];
/// Build environments drones report and operators expect: none, or CFLAGS one of two ways.
const CFLAGS: [Option<&str>; 3] = [None, Some("-O2 -pipe"), Some("-O3 -pipe")];
const CORES: [u32; 8] = [0, 1, 2, 4, 8, 16, 32, 64];
const RAM_MB: [u64; 6] = [0, 1_024, 4_096, 16_384, 65_536, 262_144];
const KINDS: [DroneKind; 4] = [
    DroneKind::Lxc,
    DroneKind::Qemu,
    DroneKind::BareMetal,
    DroneKind::Unknown,
];
const HEALTH: [Option<DroneHealth>; 5] = [
    None,
    Some(DroneHealth::Healthy),
    Some(DroneHealth::Degraded),
    Some(DroneHealth::Critical),
    Some(DroneHealth::Recovering),
];
const PROBES: [ProbeStatus; 8] = [
    ProbeStatus::Ok,
    ProbeStatus::Unreachable,
    ProbeStatus::Timeout,
    ProbeStatus::ServiceDown,
    ProbeStatus::Overloaded,
    ProbeStatus::DiskWarning,
    ProbeStatus::DiskCritical,
    ProbeStatus::MemoryCritical,
];

/// How many leases handed out are remembered for reports (old ones make stale reports).
const REMEMBERED_LEASES: usize = 16;

/// Runs a byte-encoded operation stream through a `Swarm` with the default config, checking
/// every invariant after every step. Panics on the first violation.
pub fn run_bytes(data: &[u8]) {
    for run in runs(data) {
        drive(run, true).finish();
    }
}

/// What `run_bytes` feeds the swarm for `data` and what came back, one log per run, without the
/// checks: for turning a crashing input into a readable sequence of inputs.
pub fn trace_bytes(data: &[u8]) -> Vec<Vec<(Envelope, Vec<Output>)>> {
    runs(data).map(|run| drive(run, false).log).collect()
}

/// `data` split at every [`RESTART`].
fn runs(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match data.windows(RESTART.len()).position(|w| w == RESTART) {
            Some(i) => {
                let run = &data[..i];
                data = &data[i + RESTART.len()..];
                Some(run)
            }
            None => {
                done = true;
                Some(data)
            }
        }
    })
}

fn drive(data: &[u8], check: bool) -> Run {
    let mut run = Run::new(check);
    let mut ops = Ops { data };
    while run.steps < MAX_STEPS {
        let Some((at, input)) = ops.next(&run) else {
            break;
        };
        run.step(at, input);
    }
    run
}

/// Treats `data` as JSON lines, one `Envelope` each (the store's log format), skips lines that
/// are not UTF-8 or that `parse` refuses, and runs the rest with the same checks as
/// [`run_bytes`]. The parser comes from the caller because the core has no JSON dependency:
/// pass `|line| serde_json::from_str(line).ok()`.
pub fn run_json_lines(data: &[u8], parse: impl Fn(&str) -> Option<Envelope>) {
    let envelopes = data
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(parse)
        .take(MAX_STEPS);
    run_envelopes(envelopes);
}

/// Runs envelopes as given (sequence numbers and times included) with every check.
pub fn run_envelopes(envelopes: impl IntoIterator<Item = Envelope>) {
    let mut run = Run::new(true);
    for env in envelopes {
        run.handle(env);
    }
    run.finish();
}

/// A checked run: the swarm, a monitor, and what the swarm handed out so far.
struct Run {
    swarm: Swarm,
    monitor: Monitor,
    check: bool,
    steps: usize,
    now_ms: u64,
    /// Leases from `Assign` commands, newest last: (drone, package, lease, epoch).
    leases: Vec<(DroneName, Atom, LeaseId, Epoch)>,
    log: Vec<(Envelope, Vec<Output>)>,
}

impl Run {
    fn new(check: bool) -> Run {
        let config = Config::default();
        let swarm = Swarm::new(config.clone())
            .unwrap_or_else(|e| panic!("the default config is invalid: {e}"));
        Run {
            swarm,
            monitor: Monitor::new(config),
            check,
            steps: 0,
            now_ms: START_MS,
            leases: Vec::new(),
            log: Vec::new(),
        }
    }

    fn step(&mut self, at_ms: u64, input: Input) {
        self.now_ms = self.now_ms.max(at_ms);
        let env = Envelope {
            seq: Seq(self.steps as u64 + 1),
            at: Timestamp(at_ms),
            input,
        };
        self.handle(env);
    }

    fn handle(&mut self, env: Envelope) {
        self.steps += 1;
        let out = self.swarm.handle(&env);
        if self.check {
            let step = self.steps;
            if let Err(v) = self.swarm.check_invariants_deep() {
                panic!("step {step}: {v}\n  input: {env:?}\n  outputs: {out:?}");
            }
            if let Err(v) = self.monitor.check_step(&env, &out, &self.swarm) {
                panic!("step {step}: monitor: {v}\n  input: {env:?}\n  outputs: {out:?}");
            }
        }
        for o in &out {
            if let Output::Command(Command::Assign {
                drone,
                package,
                lease,
                epoch,
                ..
            }) = o
            {
                if self.leases.len() == REMEMBERED_LEASES {
                    self.leases.remove(0);
                }
                self.leases
                    .push((drone.clone(), package.clone(), *lease, *epoch));
            }
        }
        self.log.push((env, out));
    }

    /// Determinism (replaying the log gives the same outputs and digest) and snapshot/restore.
    fn finish(self) {
        if !self.check {
            return;
        }
        let mut again = Swarm::new(Config::default())
            .unwrap_or_else(|e| panic!("the default config is invalid: {e}"));
        for (i, (env, out)) in self.log.iter().enumerate() {
            let replayed = again.handle(env);
            if &replayed != out {
                panic!(
                    "step {}: replay differs (invariant 12)\n  input: {env:?}\n  first run: \
                     {out:?}\n  replay: {replayed:?}",
                    i + 1
                );
            }
        }
        if again.digest() != self.swarm.digest() {
            panic!("replay gives another digest (invariant 12)");
        }
        let restored = Swarm::restore(self.swarm.state().clone())
            .unwrap_or_else(|e| panic!("the final state does not restore: {e}"));
        if restored.digest() != self.swarm.digest() {
            panic!("restore gives another digest");
        }
        if restored.poll_timeout() != self.swarm.poll_timeout() {
            panic!(
                "restore gives another next deadline: {:?} instead of {:?}",
                restored.poll_timeout(),
                self.swarm.poll_timeout()
            );
        }
    }
}

/// The operation decoder. Running out of bytes mid-operation reads zeros, so every prefix of an
/// input is itself a valid input.
struct Ops<'a> {
    data: &'a [u8],
}

impl Ops<'_> {
    /// The next byte, left unread.
    fn peek(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    fn drone(&mut self) -> DroneName {
        let name = self.pick(&DRONES);
        DroneName::new(name).unwrap_or_else(|e| panic!("fuzz drone name {name:?}: {e}"))
    }

    fn atom(&mut self) -> Atom {
        let text = self.pick(&ATOMS);
        Atom::parse(text).unwrap_or_else(|e| panic!("fuzz atom {text:?}: {e}"))
    }

    fn text(&mut self, from: &[Option<&str>]) -> Option<String> {
        self.pick(from).map(str::to_owned)
    }

    /// An environment chosen by bits of a byte already read, so that adding environments did
    /// not change what the committed corpus means.
    fn env(bits: u8) -> Option<crate::buildenv::BuildEnv> {
        let cflags = CFLAGS[usize::from(bits) % CFLAGS.len()]?.to_owned();
        let vars = [
            ("CFLAGS".to_owned(), cflags),
            ("CHOST".to_owned(), "x86_64-pc-linux-gnu".to_owned()),
        ];
        crate::buildenv::BuildEnv::new(vars.into_iter().collect()).ok()
    }

    /// The next operation: when it happens and what it is. `None` when the input is used up.
    fn next(&mut self, run: &Run) -> Option<(u64, Input)> {
        let kind = *self.data.first()?;
        self.data = &self.data[1..];
        let step = self.byte();
        let advance = ADVANCE_MS[usize::from(step & 0x0f)];
        // A high nibble of 0xf sends the clock backwards: the core must never un-do a deadline.
        let at = if step >> 4 == 0x0f {
            run.now_ms.saturating_sub(advance)
        } else {
            run.now_ms.saturating_add(advance)
        };
        let input = match kind % 16 {
            0 | 1 => self.register(),
            2..=4 => self.heartbeat(run),
            5..=7 => Input::RequestWork {
                drone: self.drone(),
                free_slots: match self.byte() % 7 {
                    // A v3 drone's poll.
                    6 => None,
                    n => Some(u32::from(n)),
                },
            },
            8 => Input::BuildStarted(self.report(run)),
            9 | 10 => self.build_finished(run),
            11 => Input::ProbeResult {
                drone: self.drone(),
                status: self.pick(&PROBES),
            },
            12 => self.enqueue(),
            13 => Input::Control(self.control()),
            14 => Input::Recovered,
            _ => Input::Tick,
        };
        Some((at, input))
    }

    fn register(&mut self) -> Input {
        let name_bits = self.peek() / DRONES.len() as u8;
        Input::Register(DroneSpec {
            name: self.drone(),
            machine_id: self.text(&MACHINE_IDS),
            cores: self.pick(&CORES),
            ram_mb: self.pick(&RAM_MB),
            kind: self.pick(&KINDS),
            portage_snapshot: self.text(&SNAPSHOTS),
            env: Self::env(name_bits).unwrap_or_default(),
            ..DroneSpec::default()
        })
    }

    fn heartbeat(&mut self, run: &Run) -> Input {
        let drone = self.drone();
        let shape = self.byte();
        let started_mask = self.byte();
        // The leases this drone was handed (as the agent would report them), plus, now and then,
        // one that is not its own.
        let mut own: Vec<LeaseId> = run
            .leases
            .iter()
            .filter(|l| l.0 == drone)
            .map(|l| l.2)
            .collect();
        if shape & 0x04 != 0 {
            own.push(LeaseId(u64::from(self.byte() % 24)));
        }
        let started = own
            .iter()
            .enumerate()
            .filter(|(i, _)| started_mask & (1 << (i % 8)) != 0)
            .map(|(_, l)| *l)
            .collect();
        let current_task = (shape & 0x08 != 0).then(|| self.atom());
        let epoch = (shape & 0x10 != 0).then(|| Epoch(u64::from(self.byte() % 3)));
        Input::Heartbeat(Heartbeat {
            drone,
            epoch,
            health: self.pick(&HEALTH),
            mem_percent: (shape & 0x20 != 0).then(|| self.byte() % 101),
            disk_percent: (shape & 0x40 != 0).then(|| self.byte() % 101),
            load_centi: None,
            leases: (shape & 0x01 != 0).then_some(own),
            started,
            reports_task: current_task.is_some() || shape & 0x02 != 0,
            current_task,
            portage_snapshot: if shape & 0x80 != 0 {
                self.text(&SNAPSHOTS)
            } else {
                None
            },
            env: if started_mask & 0x80 != 0 {
                Self::env(started_mask >> 5)
            } else {
                None
            },
        })
    }

    /// Mostly a real lease (sometimes with its lease id or epoch dropped or wrong), otherwise an
    /// arbitrary drone, package and lease: a stale or foreign report.
    fn report(&mut self, run: &Run) -> Report {
        let which = self.byte();
        let twist = self.byte();
        match run.leases.len() {
            n if n > 0 && which < 200 => {
                // Newest first: the lease most likely still live.
                let (drone, package, lease, epoch) =
                    run.leases[n - 1 - usize::from(which) % n].clone();
                Report {
                    drone,
                    package,
                    lease: (twist & 0x01 == 0).then_some(lease),
                    epoch: match twist >> 1 & 0x03 {
                        0 | 1 => None,
                        2 => Some(epoch),
                        _ => Some(Epoch(epoch.0 + 1)),
                    },
                }
            }
            _ => Report {
                drone: self.drone(),
                package: self.atom(),
                lease: (twist & 0x01 == 0).then(|| LeaseId(u64::from(twist >> 1) % 24)),
                epoch: None,
            },
        }
    }

    fn build_finished(&mut self, run: &Run) -> Input {
        let report = self.report(run);
        let outcome = match self.byte() % 11 {
            0..=2 => Outcome::Success,
            3 => Outcome::Failed {
                class: FailureClass::Build,
                detail: "compile error".to_owned(),
            },
            4 => Outcome::Failed {
                class: FailureClass::Infra,
                detail: "no space left on device".to_owned(),
            },
            5 => Outcome::Failed {
                class: FailureClass::Oom,
                detail: "oom-killed".to_owned(),
            },
            6 => Outcome::Returned {
                reason: "shutting down".to_owned(),
            },
            7 => Outcome::UploadFailed {
                detail: String::new(),
            },
            8 => Outcome::Masked,
            9 => Outcome::Undelivered {
                detail: "missing_binary".to_owned(),
            },
            _ => Outcome::Success,
        };
        let duration = self.byte();
        Input::BuildFinished {
            report,
            outcome,
            duration_ms: (duration != 0).then(|| u64::from(duration) * 10_000),
        }
    }

    fn enqueue(&mut self) -> Input {
        let chosen = self.byte();
        let mut packages = Vec::new();
        for (i, text) in ATOMS.iter().enumerate() {
            if chosen & (1 << i) == 0 {
                continue;
            }
            let deps_mask = self.byte() & self.byte();
            let deps = ATOMS
                .iter()
                .enumerate()
                .filter(|(j, _)| deps_mask & (1 << j) != 0)
                .filter_map(|(_, d)| Atom::parse(d).ok())
                .collect();
            let priority = i32::from(self.byte() % 3) - 1;
            if let Ok(atom) = Atom::parse(text) {
                packages.push(PackageSpec {
                    deps,
                    priority,
                    ..PackageSpec::new(atom)
                });
            }
        }
        let generation = match self.byte() % 4 {
            0 | 1 => None,
            g => Some(Generation(u64::from(g) - 2)),
        };
        Input::Enqueue(Enqueue {
            packages,
            generation,
            portage_snapshot: self.text(&SNAPSHOTS),
        })
    }

    fn control(&mut self) -> Control {
        let b = self.byte();
        match b % 19 {
            0 => Control::Pause,
            1 => Control::Resume,
            2 => Control::PauseDrone {
                drone: self.drone(),
            },
            3 => Control::ResumeDrone {
                drone: self.drone(),
            },
            4 => Control::Drain {
                drone: self.drone(),
            },
            5 => Control::Undrain {
                drone: self.drone(),
            },
            6 => Control::Unblock {
                package: Some(self.atom()),
                profile: None,
            },
            7 => Control::Unblock {
                package: None,
                profile: None,
            },
            8 => Control::Block {
                package: self.atom(),
                profile: None,
            },
            9 => Control::Unground {
                drone: (self.byte() & 1 == 0).then(|| self.drone()),
            },
            10 => Control::Reset,
            11 => Control::Rebalance,
            12 => Control::ClearFailures,
            13 => Control::RetryFailures,
            14 => Control::Fresh,
            15 => Control::ResetEscalation {
                drone: self.drone(),
            },
            16 => Control::ReleaseBrake,
            17 => {
                let which = self.byte();
                Control::Reclaim {
                    package: (which & 1 != 0).then(|| self.atom()),
                    profile: None,
                    drone: (which & 2 != 0).then(|| self.drone()),
                }
            }
            // The upper half of the last slot (clear_history before environments existed).
            _ if b >= 0x80 => Control::ExpectEnv {
                env: Self::env(b >> 5),
                from: (b & 0x20 != 0).then(|| {
                    let name = DRONES[usize::from(b >> 2) % DRONES.len()];
                    DroneName::new(name).unwrap_or_else(|e| panic!("fuzz drone name {name:?}: {e}"))
                }),
            },
            _ => Control::ClearHistory,
        }
    }
}

#[cfg(test)]
mod tests;
