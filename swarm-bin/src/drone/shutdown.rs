//! SIGTERM/SIGINT handling: a small state machine, and the thread that feeds it.
//!
//! ```text
//!            signal, --on-stop finish          signal
//! Running ----------------------------> Draining -----> Returning ---signal---> Exit
//!    |                                                      ^
//!    +------------------------------------------------------+
//!            signal, --on-stop return
//! ```
//!
//! - `Running`: takes work.
//! - `Draining`: takes no work; running builds finish and are reported.
//! - `Returning`: takes no work; running builds are killed and their leases
//!   handed back (a few quick tries each, the server may be gone).
//! - `Exit`: a third signal: kill what still runs and leave now.
//!
//! The agent leaves (exit 0) once it is past `Running` and holds no job.

use super::config::OnStop;

/// Where the agent is in its shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Normal operation.
    #[default]
    Running,
    /// Finishing running builds, taking no new ones.
    Draining,
    /// Killing running builds and handing them back.
    Returning,
    /// Leaving at once.
    Exit,
}

impl Phase {
    /// The phase after one more SIGTERM/SIGINT.
    #[must_use]
    pub(crate) fn on_signal(self, on_stop: OnStop) -> Phase {
        match (self, on_stop) {
            (Phase::Running, OnStop::Finish) => Phase::Draining,
            (Phase::Running, OnStop::Return) => Phase::Returning,
            (Phase::Draining, _) => Phase::Returning,
            (Phase::Returning | Phase::Exit, _) => Phase::Exit,
        }
    }

    /// Whether the agent may ask for new work.
    #[must_use]
    pub(crate) fn takes_work(self) -> bool {
        self == Phase::Running
    }

    /// Whether running builds must be stopped and returned.
    #[must_use]
    pub(crate) fn returns_work(self) -> bool {
        matches!(self, Phase::Returning | Phase::Exit)
    }

    /// Whether the agent may leave now.
    #[must_use]
    pub(crate) fn may_exit(self, jobs_left: usize) -> bool {
        self == Phase::Exit || (self != Phase::Running && jobs_left == 0)
    }
}

/// Starts the thread that turns SIGTERM/SIGINT into `on_signal(count)` calls.
pub(crate) fn spawn_signal_thread(on_signal: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_drains_first_and_a_second_signal_returns_at_once() {
        let p = Phase::Running.on_signal(OnStop::Finish);
        assert_eq!(p, Phase::Draining);
        assert!(!p.takes_work() && !p.returns_work());
        assert!(!p.may_exit(1), "a running build is finished first");
        assert!(p.may_exit(0));
        let p = p.on_signal(OnStop::Finish);
        assert_eq!(p, Phase::Returning);
        assert!(p.returns_work());
    }

    #[test]
    fn return_returns_on_the_first_signal() {
        let p = Phase::Running.on_signal(OnStop::Return);
        assert_eq!(p, Phase::Returning);
        assert!(!p.takes_work() && p.returns_work());
        assert!(!p.may_exit(2));
        assert!(p.may_exit(0));
    }

    #[test]
    fn a_third_signal_leaves_at_once_and_stays_there() {
        for mode in [OnStop::Finish, OnStop::Return] {
            let mut p = Phase::Running;
            for _ in 0..3 {
                p = p.on_signal(mode);
            }
            if mode == OnStop::Return {
                assert_eq!(p, Phase::Exit);
            }
            p = p.on_signal(mode).on_signal(mode);
            assert_eq!(p, Phase::Exit);
            assert!(p.may_exit(5));
            assert!(!p.takes_work());
        }
    }

    #[test]
    fn running_never_exits_on_its_own() {
        assert!(Phase::Running.takes_work());
        assert!(!Phase::Running.may_exit(0));
    }
}
