//! The prober: every `interval_s`, probe every drone at once (up to
//! `parallel` at a time), each with its own timeout, and hand each result to
//! the core as it arrives, so a dead drone never delays news about the others.

use super::run::{self, Ended};
use super::target::{check_target, ProbeTarget};
use crate::settings::ProbeSettings;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use swarm_core::{DroneName, Input, ProbeFigures, ProbeReach};

/// Where probe results go: the server passes a closure that appends the input
/// to the store, the tests one that collects them.
pub type Submit = Arc<dyn Fn(Input) + Send + Sync>;

/// The figures a probe of `drone` printed as `key=value` lines (`service=up`,
/// `load=1.5`, `cores=8`, `disk_percent=40`, `mem_percent=50`), as a reached
/// probe's. Unknown keys and unparsable values are ignored, so a custom probe
/// may print more. What they mean is the core's to judge (`Config`'s
/// `probe_*` thresholds); the load is read in hundredths, as the core judges it.
pub fn parse_figures(drone: &DroneName, stdout: &str) -> ProbeFigures {
    let mut f = not_reached(drone, ProbeReach::Reached);
    for line in stdout.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let percent = || value.trim_end_matches('%').trim().parse::<u32>().ok();
        match key.trim() {
            "service" => {
                f.service_up = match value.to_ascii_lowercase().as_str() {
                    "up" | "running" | "ok" | "started" => Some(true),
                    "down" | "stopped" | "dead" | "crashed" => Some(false),
                    _ => f.service_up,
                }
            }
            "load" => {
                f.load_centi = value
                    .parse::<f64>()
                    .ok()
                    .filter(|l| l.is_finite() && *l >= 0.0)
                    // `as` saturates: an absurd load reads as the largest one.
                    .map(|l| (l * 100.0).round() as u32)
                    .or(f.load_centi)
            }
            "cores" => f.cores = value.parse().ok().filter(|c| *c > 0).or(f.cores),
            "disk_percent" => f.disk_percent = percent().or(f.disk_percent),
            "mem_percent" => f.mem_percent = percent().or(f.mem_percent),
            _ => {}
        }
    }
    f
}

/// A probe of `drone` with no figures: one that did not get to look, or
/// (`Reached`) one that printed nothing we understand.
fn not_reached(drone: &DroneName, reach: ProbeReach) -> ProbeFigures {
    ProbeFigures {
        drone: drone.clone(),
        reach,
        ..ProbeFigures::default()
    }
}

/// What a probe command that ran to its end (`code` is `None` when a signal
/// killed it) saw of `drone`. It reads, it does not judge:
///
/// - exit 255 is ssh's own failure: `unreachable`, or `timeout` when ssh says
///   the connection timed out;
/// - otherwise the figures on stdout, whatever the exit code;
/// - exit 0 with no figures is a drone reached with nothing to say (a custom
///   probe may be a bare health check);
/// - a failure with no figures is `unreachable`: we could not look. The core
///   treats that as a probe-path failure, which a fresh heartbeat overrides, so
///   a broken probe command never restarts a healthy drone.
pub fn read_probe(
    drone: &DroneName,
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> ProbeFigures {
    if code == Some(255) {
        let lower = stderr.to_ascii_lowercase();
        let reach = if lower.contains("timed out") {
            ProbeReach::Timeout
        } else {
            ProbeReach::Unreachable
        };
        return not_reached(drone, reach);
    }
    let figures = parse_figures(drone, stdout);
    if code != Some(0) && figures == not_reached(drone, ProbeReach::Reached) {
        not_reached(drone, ProbeReach::Unreachable)
    } else {
        figures
    }
}

/// Probes the fleet on an interval. See the module docs.
pub struct Prober {
    settings: ProbeSettings,
    targets: Box<dyn Fn() -> Vec<ProbeTarget> + Send + Sync>,
    submit: Submit,
}

impl Prober {
    /// `targets` is asked for the current fleet at the start of every round
    /// (the server answers from its published view); `submit` receives one
    /// `Input::ProbeFigures` per probed drone.
    pub fn new(
        settings: ProbeSettings,
        targets: impl Fn() -> Vec<ProbeTarget> + Send + Sync + 'static,
        submit: Submit,
    ) -> Prober {
        Prober {
            settings,
            targets: Box::new(targets),
            submit,
        }
    }

    /// Probes one drone and returns what it saw, without submitting. `None`
    /// when the target's values are unsafe to put into a command (logged), or
    /// when `stop` was raised mid-probe.
    pub fn probe_one(
        &self,
        target: &ProbeTarget,
        stop: Option<&AtomicBool>,
    ) -> Option<ProbeFigures> {
        if let Err(e) = check_target(target) {
            tracing::error!(error = %e, "not probing drone");
            return None;
        }
        let argv = self.settings.command.render(&[
            ("drone", target.drone.as_str()),
            ("address", &target.address),
        ]);
        let timeout = Duration::from_secs(self.settings.timeout_s.max(1));
        let result = run::run(&argv, timeout, stop);
        let figures = match result.ended {
            Ended::Exited(code) => read_probe(&target.drone, code, &result.stdout, &result.stderr),
            Ended::TimedOut => not_reached(&target.drone, ProbeReach::Timeout),
            Ended::Stopped => return None,
            Ended::SpawnFailed(e) => {
                tracing::error!(
                    drone = %target.drone,
                    command = %self.settings.command,
                    error = %e,
                    "cannot run the probe command; fix probe.command"
                );
                not_reached(&target.drone, ProbeReach::Unreachable)
            }
        };
        let stderr = result.stderr.trim();
        let elapsed_ms = result.elapsed.as_millis() as u64;
        if figures.reach == ProbeReach::Reached {
            tracing::debug!(drone = %target.drone, elapsed_ms, figures = ?figures, "probe reached the drone");
        } else {
            tracing::info!(
                drone = %target.drone,
                address = %target.address,
                reach = ?figures.reach,
                elapsed_ms,
                stderr = %stderr.chars().take(300).collect::<String>(),
                "probe could not reach the drone"
            );
        }
        Some(figures)
    }

    /// One round: every current target, `parallel` at a time, each result
    /// submitted as soon as it is known. Returns the results in completion
    /// order. Takes about `ceil(targets / parallel) × timeout` at worst.
    pub fn probe_round(&self, stop: &AtomicBool) -> Vec<ProbeFigures> {
        let targets = (self.targets)();
        if targets.is_empty() {
            return Vec::new();
        }
        let workers = self.settings.parallel.clamp(1, targets.len());
        let queue = Mutex::new(targets.into_iter());
        let results = Mutex::new(Vec::new());
        let work = || loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
            let Some(target) = next else { return };
            let Some(figures) = self.probe_one(&target, Some(stop)) else {
                continue;
            };
            let input = Input::ProbeFigures(figures.clone());
            let submit = &self.submit;
            if catch_unwind(AssertUnwindSafe(|| submit(input))).is_err() {
                tracing::error!(drone = %target.drone, "submitting a probe result panicked; result dropped");
            }
            results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(figures);
        };
        std::thread::scope(|scope| {
            let mut started = 0;
            for i in 0..workers {
                let spawned = std::thread::Builder::new()
                    .name(format!("swarm-probe-{i}"))
                    .spawn_scoped(scope, work);
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a probe thread; probing with fewer")
                    }
                }
            }
            if started == 0 {
                work();
            }
        });
        results.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// Probes every `interval_s` (the first round at once) until `stop` is
    /// raised; returns within a fraction of a second of that. Returns at once
    /// when `probe.enabled` is false.
    pub fn run(&self, stop: &AtomicBool) {
        if !self.settings.enabled {
            tracing::info!("self-healing probes are off (probe.enabled = false)");
            return;
        }
        let interval = Duration::from_secs(self.settings.interval_s.max(1));
        tracing::info!(
            interval_s = self.settings.interval_s,
            timeout_s = self.settings.timeout_s,
            parallel = self.settings.parallel,
            "self-healing prober started"
        );
        while !stop.load(Ordering::Relaxed) {
            let round = Instant::now();
            let results = self.probe_round(stop);
            tracing::debug!(
                probed = results.len(),
                elapsed_ms = round.elapsed().as_millis() as u64,
                "probe round done"
            );
            sleep_until(round + interval, stop);
        }
    }

    /// Runs [`Prober::run`] on its own thread.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, super::target::HealError> {
        std::thread::Builder::new()
            .name("swarm-prober".into())
            .spawn(move || self.run(&stop))
            .map_err(|source| super::target::HealError::Thread {
                what: "prober",
                source,
            })
    }
}

/// Sleeps in short slices so a raised `stop` is seen within 50 ms.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::{CommandTemplate, PROBE_PLACEHOLDERS};
    use std::path::Path;
    use swarm_core::{judge_probe, Config, ProbeStatus};

    const STUB: &str = r#"#!/bin/sh
# $1 = drone, $2 = address
case "$1" in
  ok) printf 'service=up\nload=1.5\ncores=8\ndisk_percent=40\nmem_percent=50\n' ;;
  busy) printf 'service=up\nload=17.2\ncores=8\n' ;;
  down) printf 'service=down\nload=0.1\ncores=8\n'; exit 1 ;;
  full) printf 'service=up\ndisk_percent=96%%\n' ;;
  filling) printf 'service=up\ndisk_percent=88\n' ;;
  oom) printf 'service=up\nmem_percent=97\n' ;;
  gone) echo 'ssh: connect to host 10.0.0.9 port 22: Connection refused' >&2; exit 255 ;;
  slow*) echo $$ > "$(dirname "$0")/$1.pid"; exec sleep 5 ;;
  nap*) sleep 0.6; echo service=up ;;
  *) exit 3 ;;
esac
"#;

    fn stub_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("probe.sh"), STUB).expect("the stub script is written");
        dir
    }

    fn settings(dir: &Path, timeout_s: u64, parallel: usize) -> ProbeSettings {
        let text = format!("sh {}/probe.sh {{drone}} {{address}}", dir.display());
        ProbeSettings {
            enabled: true,
            command: CommandTemplate::parse(&text, PROBE_PLACEHOLDERS)
                .expect("the stub template parses"),
            interval_s: 1,
            timeout_s,
            parallel,
        }
    }

    fn targets(names: &[&str]) -> Vec<ProbeTarget> {
        names
            .iter()
            .map(|n| ProbeTarget {
                drone: DroneName::new(*n).expect("a valid name"),
                address: "127.0.0.1".into(),
            })
            .collect()
    }

    type Collected = Arc<Mutex<Vec<(String, ProbeStatus, Instant)>>>;

    /// What the core makes of figures under the default thresholds.
    fn verdict(f: &ProbeFigures) -> ProbeStatus {
        judge_probe(&Config::default(), f)
    }

    fn drone(name: &str) -> DroneName {
        DroneName::new(name).expect("a valid name")
    }

    fn read(code: Option<i32>, stdout: &str, stderr: &str) -> ProbeFigures {
        read_probe(&drone("d"), code, stdout, stderr)
    }

    fn collector() -> (Submit, Collected) {
        let seen: Collected = Arc::default();
        let sink = Arc::clone(&seen);
        let submit: Submit = Arc::new(move |input| {
            if let Input::ProbeFigures(f) = input {
                sink.lock().unwrap_or_else(PoisonError::into_inner).push((
                    f.drone.to_string(),
                    verdict(&f),
                    Instant::now(),
                ));
            }
        });
        (submit, seen)
    }

    fn snapshot(seen: &Collected) -> Vec<(String, ProbeStatus, Instant)> {
        seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    #[test]
    fn parses_the_figures_the_core_judges() {
        let figures = parse_figures(
            &drone("d"),
            "service=up\nload=1.5\ncores=8\ndisk_percent=40%\nmem_percent=50\nnoise\n",
        );
        assert_eq!(
            figures,
            ProbeFigures {
                drone: drone("d"),
                reach: ProbeReach::Reached,
                service_up: Some(true),
                load_centi: Some(150),
                cores: Some(8),
                disk_percent: Some(40),
                mem_percent: Some(50),
            }
        );
        assert_eq!(verdict(&figures), ProbeStatus::Ok);
        // The verdicts the prober gave itself before the core judged figures.
        let cases = [
            ("service=down\nmem_percent=99", ProbeStatus::ServiceDown),
            (
                "mem_percent=95\ndisk_percent=99",
                ProbeStatus::MemoryCritical,
            ),
            (
                "disk_percent=95\nload=100\ncores=1",
                ProbeStatus::DiskCritical,
            ),
            (
                "load=16.1\ncores=8\ndisk_percent=90",
                ProbeStatus::Overloaded,
            ),
            ("load=16.0\ncores=8", ProbeStatus::Ok),
            ("load=16.004\ncores=8", ProbeStatus::Ok),
            ("load=16.006\ncores=8", ProbeStatus::Overloaded),
            ("disk_percent=85", ProbeStatus::DiskWarning),
            ("load=abc\ncores=8", ProbeStatus::Ok),
            ("load=1e30\ncores=8", ProbeStatus::Overloaded),
        ];
        for (stdout, want) in cases {
            assert_eq!(verdict(&read(Some(0), stdout, "")), want, "{stdout}");
        }
        assert_eq!(
            parse_figures(&drone("d"), "load=1e30").load_centi,
            Some(u32::MAX)
        );
    }

    #[test]
    fn reads_ssh_failures_and_bare_exit_codes_as_reach() {
        let reach = |code, stdout, stderr| read(code, stdout, stderr).reach;
        assert_eq!(
            reach(Some(255), "service=up", "Connection refused"),
            ProbeReach::Unreachable
        );
        assert_eq!(
            reach(
                Some(255),
                "",
                "ssh: connect to host x port 22: Connection timed out"
            ),
            ProbeReach::Timeout
        );
        assert_eq!(
            read(Some(0), "", ""),
            ProbeFigures {
                drone: drone("d"),
                ..ProbeFigures::default()
            }
        );
        assert_eq!(reach(Some(3), "", "oops"), ProbeReach::Unreachable);
        let down = read(Some(1), "service=down\n", "");
        assert_eq!(
            (down.reach, down.service_up),
            (ProbeReach::Reached, Some(false))
        );
        assert_eq!(reach(None, "", ""), ProbeReach::Unreachable);
    }

    #[test]
    fn probes_stub_drones_and_submits_one_result_each() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 3, 8);
        let (submit, seen) = collector();
        let names = [
            "ok", "busy", "down", "full", "filling", "oom", "gone", "weird",
        ];
        let fleet = targets(&names);
        let prober = Prober::new(settings, move || fleet.clone(), submit);
        let stop = AtomicBool::new(false);
        let mut results: Vec<(String, ProbeStatus)> = prober
            .probe_round(&stop)
            .into_iter()
            .map(|f| (f.drone.to_string(), verdict(&f)))
            .collect();
        results.sort();
        let mut want = vec![
            ("ok".to_owned(), ProbeStatus::Ok),
            ("busy".to_owned(), ProbeStatus::Overloaded),
            ("down".to_owned(), ProbeStatus::ServiceDown),
            ("full".to_owned(), ProbeStatus::DiskCritical),
            ("filling".to_owned(), ProbeStatus::DiskWarning),
            ("oom".to_owned(), ProbeStatus::MemoryCritical),
            ("gone".to_owned(), ProbeStatus::Unreachable),
            ("weird".to_owned(), ProbeStatus::Unreachable),
        ];
        want.sort();
        assert_eq!(results, want);
        assert_eq!(snapshot(&seen).len(), names.len());
    }

    #[test]
    fn a_hanging_drone_delays_neither_the_others_nor_the_round() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 1, 8);
        let (submit, seen) = collector();
        let fleet = targets(&["slow", "ok", "down", "busy"]);
        let prober = Prober::new(settings, move || fleet.clone(), submit);
        let started = Instant::now();
        let results = prober.probe_round(&AtomicBool::new(false));
        let wall = started.elapsed();
        assert_eq!(results.len(), 4);
        assert!(wall < Duration::from_millis(2500), "round took {wall:?}");
        let seen = snapshot(&seen);
        let (last, status, _) = &seen[seen.len() - 1];
        assert_eq!((last.as_str(), *status), ("slow", ProbeStatus::Timeout));
        for (drone, _, at) in &seen[..3] {
            let after = at.duration_since(started);
            assert!(
                after < Duration::from_millis(800),
                "{drone} reported after {after:?}"
            );
        }
    }

    #[test]
    fn the_timeout_kills_the_probe_process() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 1, 1);
        let (submit, _) = collector();
        let prober = Prober::new(settings, Vec::new, submit);
        let target = targets(&["slow-kill"]);
        let started = Instant::now();
        let reach = prober.probe_one(&target[0], None).map(|f| f.reach);
        assert_eq!(reach, Some(ProbeReach::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        let pid = std::fs::read_to_string(dir.path().join("slow-kill.pid")).unwrap_or_default();
        let pid = pid.trim();
        assert!(!pid.is_empty(), "the stub did not start");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "probe process {pid} still exists"
        );
    }

    #[test]
    fn the_pool_is_bounded_by_parallel() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 3, 2);
        let (submit, _) = collector();
        let fleet = targets(&["nap1", "nap2", "nap3", "nap4"]);
        let prober = Prober::new(settings, move || fleet.clone(), submit);
        let started = Instant::now();
        let results = prober.probe_round(&AtomicBool::new(false));
        let wall = started.elapsed();
        assert_eq!(results.len(), 4);
        // Four 0.6 s probes, two at a time: two waves (1.2 s), not one (0.6 s) and not four (2.4 s).
        assert!(wall >= Duration::from_millis(1150), "round took {wall:?}");
        assert!(wall < Duration::from_millis(2200), "round took {wall:?}");
    }

    #[test]
    fn run_probes_on_its_interval_and_stops_promptly() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 1, 4);
        let (submit, seen) = collector();
        let fleet = targets(&["ok"]);
        let prober = Prober::new(settings, move || fleet.clone(), submit);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = prober
            .spawn(Arc::clone(&stop))
            .expect("the prober thread starts");
        std::thread::sleep(Duration::from_millis(1300));
        stop.store(true, Ordering::Relaxed);
        let stopping = Instant::now();
        assert!(handle.join().is_ok());
        assert!(stopping.elapsed() < Duration::from_millis(500));
        let rounds = snapshot(&seen).len();
        assert_eq!(
            rounds, 2,
            "one round at start and one after the 1 s interval"
        );
    }

    #[test]
    fn unsafe_targets_are_not_probed() {
        let dir = stub_dir();
        let settings = settings(dir.path(), 1, 1);
        let (submit, seen) = collector();
        let fleet = vec![ProbeTarget {
            drone: DroneName::new("ok").expect("a valid name"),
            address: "-oProxyCommand=touch /tmp/x".into(),
        }];
        let prober = Prober::new(settings, move || fleet.clone(), submit);
        assert!(prober.probe_round(&AtomicBool::new(false)).is_empty());
        assert!(snapshot(&seen).is_empty());
    }
}
