//! Whose fault a failed build is: the package's (`build`), the machine's
//! (`infra`), or memory (`oom`). The class decides what the control plane
//! does: build failures block a package after two drones, infra and OOM
//! failures count against the drone, OOM teaches the package's memory need.
//!
//! - exit 0: built (the artifact check decides the rest);
//! - killed by SIGKILL, or exit 137 (a shell's way of saying its child was),
//!   with evidence of the OOM killer (the log says "out of memory"/"oom", or
//!   the kernel's `oom_kill` count rose during the build): `oom`;
//! - otherwise the log's cause by `swarm_core::failure` (one classifier for
//!   agent, server and simulator): slot conflict, unsatisfied or masked
//!   dependency, blocker and phase failures are `build`; fetch failures,
//!   sandbox violations and a full disk `infra`; gcc out of memory `oom`. The
//!   detail then starts with the cause (`slot conflict on sys-apps/systemd-utils: …`);
//! - any other signal, or a builder that does not start: `infra`, and a crash
//!   for the health monitor;
//! - stall or overall timeout, or any other non-zero exit: `build`.

use super::runner::Ended;
use swarm_core::failure::Cause;
use swarm_core::FailureClass;

/// What became of a build before its artifact was looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Exit 0: find, check and upload the artifact.
    Built,
    /// The agent stopped it (revoke, return, shutdown): not a failure.
    Stopped,
    /// A failure to report.
    Failed {
        /// Whose fault.
        class: FailureClass,
        /// For humans: what happened, with the telling log line.
        detail: String,
        /// Counts as a builder crash for the health monitor.
        crash: bool,
    },
}

/// Classifies a finished build from how it ended, the end of its log and
/// the OOM kills the kernel counted while it ran.
pub(crate) fn classify(ended: &Ended, log_tail: &str, oom_kills_during: u64) -> Verdict {
    let lower = log_tail.to_ascii_lowercase();
    let hint = telling_line(log_tail);
    let with_hint = |s: String| match &hint {
        Some(h) => format!("{s}: {h}"),
        None => s,
    };
    let failed = |class, detail, crash| Verdict::Failed {
        class,
        detail,
        crash,
    };
    // The log's cause, by the classifier the server and the simulator share:
    // its text leads the detail, so the server groups failures by it.
    let cause = swarm_core::failure::diagnose(log_tail);
    match (ended, &cause) {
        (Ended::Exited(0), _) => Verdict::Built,
        (Ended::Stopped, _) => Verdict::Stopped,
        (Ended::SpawnFailed(e), _) => failed(FailureClass::Infra, format!("builder: {e}"), true),
        (Ended::Stalled(d), _) => failed(
            FailureClass::Build,
            with_hint(format!("stalled: no output for {} s", d.as_secs())),
            false,
        ),
        (Ended::TimedOut(d), _) => failed(
            FailureClass::Build,
            with_hint(format!("timed out after {} s", d.as_secs())),
            false,
        ),
        (Ended::Exited(137) | Ended::Signaled(9), _)
            if oom_kills_during > 0 || mentions_oom(&lower) =>
        {
            failed(
                FailureClass::Oom,
                with_hint("killed by the OOM killer".to_string()),
                false,
            )
        }
        (Ended::Exited(_), Some(c)) | (Ended::Signaled(_), Some(c @ Cause::DiskFull)) => {
            failed(c.class(), with_hint(c.to_string()), false)
        }
        (Ended::Signaled(sig), _) => failed(
            FailureClass::Infra,
            with_hint(format!("builder killed by signal {sig}")),
            true,
        ),
        (Ended::Exited(code), None) => failed(
            FailureClass::Build,
            with_hint(format!("builder exited with code {code}")),
            false,
        ),
    }
}

/// Free space on the build volumes (MiB) below which a failed build is the
/// machine's fault.
pub(crate) const FULL_DISK_MIB: u64 = 16;

/// A build that failed while its volumes were full is `infra` (disk full),
/// whatever its log says: the log itself often could not be written, and a
/// package blamed for a drone's disk is blocked once two drones fill up.
/// OOM and infra verdicts stand.
pub(crate) fn on_full_disk(v: Verdict, free_mib: Option<u64>) -> Verdict {
    match (v, free_mib) {
        (
            Verdict::Failed {
                class: FailureClass::Build,
                detail,
                crash,
            },
            Some(free),
        ) if free < FULL_DISK_MIB => Verdict::Failed {
            class: FailureClass::Infra,
            detail: format!("disk full: {free} MiB free on the build volume; {detail}"),
            crash,
        },
        (v, _) => v,
    }
}

/// "out of memory", "oom-killer", "oom_kill", or "oom" as a word.
fn mentions_oom(lower: &str) -> bool {
    lower.contains("out of memory")
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "oom")
}

/// The line a human wants: Portage's ` * ERROR:` line, else the last non-empty one.
fn telling_line(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("ERROR:"))
        .or_else(|| lines.last())?;
    let mut s: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        s.push('…');
    }
    Some(s)
}

/// The last `max` bytes of a log, as text.
pub(crate) fn log_tail(path: &std::path::Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn class_of(v: &Verdict) -> Option<FailureClass> {
        match v {
            Verdict::Failed { class, .. } => Some(*class),
            _ => None,
        }
    }

    #[test]
    fn exit_zero_is_built_and_a_stop_is_no_failure() {
        assert_eq!(classify(&Ended::Exited(0), "oom", 3), Verdict::Built);
        assert_eq!(classify(&Ended::Stopped, "", 0), Verdict::Stopped);
    }

    #[test]
    fn a_nonzero_exit_is_the_packages_fault_with_the_error_line() {
        let log = ">>> Compiling\n * ERROR: dev-libs/foo-1.0::gentoo failed (compile phase):\n *   make failed\n";
        let v = classify(&Ended::Exited(1), log, 0);
        assert_eq!(
            v,
            Verdict::Failed {
                class: FailureClass::Build,
                detail: "compile phase failed: * ERROR: dev-libs/foo-1.0::gentoo failed (compile phase):".into(),
                crash: false
            }
        );
    }

    #[test]
    fn an_emerge_slot_conflict_is_reported_with_its_cause_first() {
        let v = classify(&Ended::Exited(1), swarm_core::emerge_logs::SLOT_CONFLICT, 0);
        let Verdict::Failed { class, detail, .. } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(*class, FailureClass::Build);
        assert!(
            detail.starts_with("slot conflict on sys-apps/systemd-utils: "),
            "{detail}"
        );
        // The server reads the same cause back from the detail alone.
        assert_eq!(
            swarm_core::failure::diagnose(detail).map(|c| c.to_string()),
            Some("slot conflict on sys-apps/systemd-utils".into())
        );
        let v = classify(&Ended::Exited(1), swarm_core::emerge_logs::FETCH, 0);
        assert_eq!(class_of(&v), Some(FailureClass::Infra));
    }

    #[test]
    fn a_sigkill_with_oom_evidence_is_oom() {
        let log = "Out of memory: Killed process 4242 (cc1plus)\n";
        assert_eq!(
            class_of(&classify(&Ended::Exited(137), log, 0)),
            Some(FailureClass::Oom)
        );
        assert_eq!(
            class_of(&classify(&Ended::Signaled(9), log, 0)),
            Some(FailureClass::Oom)
        );
        assert_eq!(
            class_of(&classify(&Ended::Signaled(9), "compiling\n", 1)),
            Some(FailureClass::Oom),
            "the kernel's oom_kill count rose"
        );
        assert_eq!(
            class_of(&classify(
                &Ended::Exited(1),
                "gcc: virtual memory exhausted: Cannot allocate memory",
                0
            )),
            Some(FailureClass::Oom)
        );
    }

    #[test]
    fn oom_must_be_a_word_and_an_exit_without_sigkill_is_not_oom() {
        assert_eq!(
            class_of(&classify(
                &Ended::Exited(137),
                "making room for bloom filters\n",
                0
            )),
            Some(FailureClass::Build)
        );
        assert_eq!(
            class_of(&classify(
                &Ended::Exited(1),
                "test: out of memory handling ok\n",
                0
            )),
            Some(FailureClass::Build)
        );
    }

    #[test]
    fn disk_full_and_unexpected_signals_are_infra() {
        let v = classify(&Ended::Exited(1), "write: No space left on device\n", 0);
        assert_eq!(class_of(&v), Some(FailureClass::Infra));
        let v = classify(&Ended::Signaled(11), "", 0);
        assert!(matches!(
            v,
            Verdict::Failed {
                class: FailureClass::Infra,
                crash: true,
                ..
            }
        ));
        let v = classify(&Ended::Signaled(9), "no evidence\n", 0);
        assert!(matches!(
            v,
            Verdict::Failed {
                class: FailureClass::Infra,
                crash: true,
                ..
            }
        ));
        let v = classify(&Ended::SpawnFailed("cannot start \"emerge\"".into()), "", 0);
        assert!(matches!(
            v,
            Verdict::Failed {
                class: FailureClass::Infra,
                crash: true,
                ..
            }
        ));
    }

    #[test]
    fn a_build_failure_on_a_full_disk_is_infra_and_other_verdicts_stand() {
        let build = classify(&Ended::Exited(1), "", 0);
        assert_eq!(class_of(&build), Some(FailureClass::Build));
        let full = on_full_disk(build.clone(), Some(0));
        assert_eq!(class_of(&full), Some(FailureClass::Infra));
        let Verdict::Failed { detail, .. } = &full else {
            panic!("{full:?}");
        };
        assert!(
            detail.starts_with("disk full: 0 MiB free") && detail.contains("code 1"),
            "{detail}"
        );
        assert_eq!(on_full_disk(build.clone(), Some(FULL_DISK_MIB)), build);
        assert_eq!(
            on_full_disk(build.clone(), None),
            build,
            "unknown: as it was"
        );
        let oom = classify(&Ended::Signaled(9), "Out of memory", 0);
        assert_eq!(on_full_disk(oom.clone(), Some(0)), oom);
        assert_eq!(on_full_disk(Verdict::Built, Some(0)), Verdict::Built);
    }

    #[test]
    fn timeouts_are_build_failures() {
        let v = classify(
            &Ended::Stalled(Duration::from_secs(60)),
            "waiting for lock\n",
            0,
        );
        assert!(
            matches!(v, Verdict::Failed { class: FailureClass::Build, ref detail, .. }
            if detail == "stalled: no output for 60 s: waiting for lock")
        );
        let v = classify(&Ended::TimedOut(Duration::from_secs(5)), "", 0);
        assert!(
            matches!(v, Verdict::Failed { class: FailureClass::Build, ref detail, .. }
            if detail == "timed out after 5 s")
        );
    }

    #[test]
    fn the_log_tail_is_the_end_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("l");
        std::fs::write(&p, "a".repeat(100) + "END").expect("write");
        assert_eq!(log_tail(&p, 5), "aaEND");
        assert_eq!(log_tail(&dir.path().join("none"), 5), "");
    }
}
