//! SIGTERM/SIGINT handling: the thread that feeds the shutdown phase, a small state machine that
//! lives with the agent's other decisions in `swarm_core::agent`.
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

pub(crate) use swarm_core::agent::Phase;

/// Starts the thread that turns SIGTERM/SIGINT/SIGHUP into `on_signal(count)`
/// calls. SIGHUP counts as a stop: an agent in a terminal that closes would
/// otherwise die by the default action, unlogged, its builds orphaned.
pub(crate) fn spawn_signal_thread(on_signal: impl Fn(i32) + Send + 'static) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    Ok(())
}
