//! Logging drones the server turns away (wrong or missing drone token),
//! rate-limited: the first refusal is logged at once, later ones at most
//! once a minute with how many were refused meanwhile, so a misconfigured
//! drone retrying every second is seen without flooding the log.

use std::time::Duration;
use swarm_store::repeat_log::RepeatLog;

/// How often refusals are logged while they go on.
const EVERY: Duration = Duration::from_secs(60);

/// The process-wide limiter for refused drone requests.
pub(crate) fn drone_rejects() -> &'static RepeatLog {
    static LOG: RepeatLog = RepeatLog::new(EVERY);
    &LOG
}
