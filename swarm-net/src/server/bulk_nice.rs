//! A connection that posts a big import gives the CPU to the drones first.
//!
//! On a small control-plane host (two CPUs), a big import keeps one CPU
//! busy parsing posts and the writer the other, and a drone's heartbeat
//! waits for a CPU at each of its hand-offs. The writer cannot yield its
//! priority (every heartbeat waits for it), but the thread that reads and
//! parses an import can: its connection thread lowers its own priority
//! (nice + `BULK_NICE`) for the rest of that connection, which only an
//! operator's tool holds. The kernel does not let an unprivileged thread
//! raise its priority again, and one connection has one thread, so the
//! change ends with the connection.

use std::cell::Cell;

/// How much lower than the server a bulk connection runs.
const BULK_NICE: i32 = 10;

/// A body at least this big is a bulk import.
pub(crate) const BULK_BYTES: usize = 16 * 1024;

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// Lowers this thread's priority once; a failure (a server already at the
/// lowest priority) leaves it as it was.
pub(crate) fn yield_to_drones() {
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), (now + BULK_NICE).min(19)) {
        tracing::debug!(error = %e, "cannot lower a bulk connection's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[test]
    fn a_bulk_connection_runs_lower_once_and_other_threads_do_not() {
        let before = nice();
        let lowered = std::thread::spawn(move || {
            yield_to_drones();
            let once = nice();
            yield_to_drones();
            (once, nice())
        })
        .join()
        .expect("thread");
        let want = (before + BULK_NICE).min(19);
        assert_eq!(lowered, (want, want), "lowered by {BULK_NICE}, once");
        assert_eq!(
            nice(),
            before,
            "the thread that did not post stays as it was"
        );
    }
}
