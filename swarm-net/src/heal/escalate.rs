//! The escalator: performs the core's `Escalate { drone, action }` commands by
//! running the operator's template for that ladder step, in the background,
//! with a timeout, and logs what it ran and how it ended.

use super::run::{self, Ended};
use super::target::{check_target, HealError, ProbeTarget};
use crate::settings::EscalationSettings;
use std::thread::JoinHandle;
use std::time::Duration;
use swarm_core::EscalationAction;

/// The `{action}` value and log name of a ladder step (as in the API: `restart_service`, ...).
pub fn action_name(action: EscalationAction) -> &'static str {
    match action {
        EscalationAction::RestartService => "restart_service",
        EscalationAction::HardRestart => "hard_restart",
        EscalationAction::Reboot => "reboot",
        EscalationAction::Manual => "manual",
    }
}

/// What `escalate` started.
#[derive(Debug)]
pub enum Escalation {
    /// No template for this step: it was logged as needing a human.
    NeedsHuman,
    /// The command runs on this thread; join it for the outcome (the server
    /// need not: the outcome is logged).
    Running(JoinHandle<EscalationOutcome>),
}

/// How an escalation command ended. The core does not wait for it: whether
/// the drone came back is judged by its next heartbeats and probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EscalationOutcome {
    /// Exit status 0.
    Succeeded {
        /// What ran.
        argv: Vec<String>,
    },
    /// Non-zero exit, or killed by a signal (`exit_code` `None`).
    Failed {
        /// What ran.
        argv: Vec<String>,
        /// The exit code.
        exit_code: Option<i32>,
        /// The start of its stderr.
        stderr: String,
    },
    /// It overran `escalation.timeout_s` and was killed.
    TimedOut {
        /// What ran.
        argv: Vec<String>,
    },
    /// It could not be started.
    SpawnFailed {
        /// What was to run.
        argv: Vec<String>,
        /// The OS error.
        error: String,
    },
}

/// Runs escalation templates. Cheap to share: `escalate` takes `&self`.
#[derive(Clone, Debug)]
pub struct Escalator {
    settings: EscalationSettings,
}

impl Escalator {
    /// An escalator for the configured templates.
    pub fn new(settings: EscalationSettings) -> Escalator {
        Escalator { settings }
    }

    /// Starts the command for `action` on `target`, after checking the
    /// target's values (see [`check_target`]); an unsafe value is refused and
    /// nothing runs. Without a template for that step, logs that a human must
    /// act and returns [`Escalation::NeedsHuman`].
    pub fn escalate(
        &self,
        target: &ProbeTarget,
        action: EscalationAction,
    ) -> Result<Escalation, HealError> {
        check_target(target)?;
        let name = action_name(action);
        let Some(template) = self.settings.template(action) else {
            tracing::warn!(
                drone = %target.drone,
                address = %target.address,
                action = name,
                "escalation step needs a human: no escalation.{name} command is configured"
            );
            return Ok(Escalation::NeedsHuman);
        };
        let argv = template.render(&[
            ("drone", target.drone.as_str()),
            ("address", &target.address),
            ("action", name),
        ]);
        let timeout = Duration::from_secs(self.settings.timeout_s.max(1));
        let drone = target.drone.clone();
        tracing::info!(drone = %drone, action = name, argv = ?argv, "running escalation command");
        let handle = std::thread::Builder::new()
            .name(format!("swarm-escalate-{name}"))
            .spawn(move || {
                let result = run::run(&argv, timeout, None);
                let outcome = match result.ended {
                    Ended::Exited(Some(0)) => EscalationOutcome::Succeeded { argv },
                    Ended::Exited(exit_code) => EscalationOutcome::Failed {
                        argv,
                        exit_code,
                        stderr: result.stderr.trim().chars().take(500).collect(),
                    },
                    Ended::TimedOut | Ended::Stopped => EscalationOutcome::TimedOut { argv },
                    Ended::SpawnFailed(e) => EscalationOutcome::SpawnFailed {
                        argv,
                        error: e.to_string(),
                    },
                };
                let elapsed_ms = result.elapsed.as_millis() as u64;
                match &outcome {
                    EscalationOutcome::Succeeded { .. } => {
                        tracing::info!(drone = %drone, action = name, elapsed_ms, "escalation command succeeded")
                    }
                    other => tracing::warn!(
                        drone = %drone,
                        action = name,
                        elapsed_ms,
                        outcome = ?other,
                        "escalation command failed; the ladder moves on if the drone stays down"
                    ),
                }
                outcome
            })
            .map_err(|source| HealError::Thread {
                what: "escalation command",
                source,
            })?;
        Ok(Escalation::Running(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::{CommandTemplate, ESCALATION_PLACEHOLDERS};
    use std::time::Instant;
    use swarm_core::DroneName;

    fn template(text: &str) -> Option<CommandTemplate> {
        Some(CommandTemplate::parse(text, ESCALATION_PLACEHOLDERS).expect("the template parses"))
    }

    fn target(name: &str, address: &str) -> ProbeTarget {
        ProbeTarget {
            drone: DroneName::new(name).expect("a valid name"),
            address: address.to_owned(),
        }
    }

    fn join(escalation: Result<Escalation, HealError>) -> EscalationOutcome {
        match escalation.expect("the escalation starts") {
            Escalation::Running(handle) => handle.join().expect("the escalation thread ends"),
            Escalation::NeedsHuman => panic!("a template was configured"),
        }
    }

    #[test]
    fn runs_the_step_template_with_substituted_argv() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("argv");
        let script = dir.path().join("esc.sh");
        std::fs::write(
            &script,
            "for a in \"$@\"; do echo \"$a\"; done > \"$LOG_TO\"\n",
        )
        .expect("the stub is written");
        let text = format!(
            "env LOG_TO={} sh {} {{action}} 'root@{{address}}' 'rc-service swarm-drone-{{drone}} restart'",
            log.display(),
            script.display()
        );
        let escalator = Escalator::new(EscalationSettings {
            hard_restart: template(&text),
            ..EscalationSettings::default()
        });
        let outcome = join(escalator.escalate(
            &target("drone-a", "10.0.0.5"),
            EscalationAction::HardRestart,
        ));
        assert!(
            matches!(outcome, EscalationOutcome::Succeeded { .. }),
            "{outcome:?}"
        );
        let argv = std::fs::read_to_string(&log).expect("the stub ran");
        assert_eq!(
            argv,
            "hard_restart\nroot@10.0.0.5\nrc-service swarm-drone-drone-a restart\n"
        );
    }

    #[test]
    fn a_missing_template_needs_a_human() {
        let escalator = Escalator::new(EscalationSettings::default());
        let got = escalator.escalate(&target("d1", "10.0.0.5"), EscalationAction::Reboot);
        assert!(matches!(got, Ok(Escalation::NeedsHuman)), "{got:?}");
    }

    #[test]
    fn unsafe_values_are_refused_before_anything_runs() {
        let escalator = Escalator::new(EscalationSettings {
            restart_service: template("touch /nonexistent/{drone}"),
            ..EscalationSettings::default()
        });
        let got = escalator.escalate(&target("d1", "$(reboot)"), EscalationAction::RestartService);
        assert!(matches!(got, Err(HealError::BadAddress { .. })), "{got:?}");
        let got = escalator.escalate(&target("d;1", "10.0.0.5"), EscalationAction::RestartService);
        assert!(matches!(got, Err(HealError::BadDrone { .. })), "{got:?}");
    }

    #[test]
    fn an_overrunning_command_is_killed_at_the_timeout() {
        let escalator = Escalator::new(EscalationSettings {
            reboot: template("sh -c 'exec sleep 5'"),
            timeout_s: 1,
            ..EscalationSettings::default()
        });
        let started = Instant::now();
        let outcome = join(escalator.escalate(&target("d1", "10.0.0.5"), EscalationAction::Reboot));
        assert!(
            matches!(outcome, EscalationOutcome::TimedOut { .. }),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_failing_command_reports_its_exit_code() {
        let escalator = Escalator::new(EscalationSettings {
            manual: template("sh -c 'echo paging failed >&2; exit 4'"),
            ..EscalationSettings::default()
        });
        let outcome = join(escalator.escalate(&target("d1", "10.0.0.5"), EscalationAction::Manual));
        assert_eq!(
            outcome,
            EscalationOutcome::Failed {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo paging failed >&2; exit 4".into()
                ],
                exit_code: Some(4),
                stderr: "paging failed".into(),
            }
        );
    }
}
