//! What `swarm serve` keeps from the other users of its host: the store
//! (queue, drones, history), the build logs, the releases' records and the
//! time series. What it publishes (staging, the binhost trees) is given its
//! modes explicitly and stays readable to a web server; what an older
//! swarm left open is closed at start (`server::start`).

/// Adds the world's bits to the umask. Started by hand under the usual 022,
/// the store, its WAL and the build logs were world-readable, so any local
/// user read what `read_token` guards (h10). The group's bits are left as
/// the operator set them (the units' `UMask=0077` is unchanged).
pub(crate) fn keep_from_other_users() {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o077));
    rustix::process::umask(old | Mode::from_raw_mode(0o007));
}
