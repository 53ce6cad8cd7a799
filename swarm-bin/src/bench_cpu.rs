//! CPU accounting for `swarm bench http`: the process's user and system
//! CPU over the measured window, and how it splits over the server's
//! threads (front door, writer, the rest) and the load generator.
//!
//! Wall-clock cycles/s depend on what else the machine runs; CPU-seconds
//! per cycle do not (much), so a change can be judged on a busy machine.
//! The process's user/system split is read from `/proc/self/stat` (in
//! USER_HZ, 100 per second on every Linux ABI swarm targets); each thread's
//! time from `/proc/self/task/*/schedstat` (nanoseconds: a thread's ticks
//! are truncated to 10 ms, which over 250 short-lived-busy threads loses
//! seconds), else from its `stat`.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ).
const USER_HZ: f64 = 100.0;

/// CPU seconds at one instant: the whole process, and per thread group.
#[derive(Clone, Debug, Default)]
pub(crate) struct CpuSample {
    user: f64,
    sys: f64,
    groups: BTreeMap<&'static str, f64>,
}

/// CPU used between two samples.
#[derive(Debug)]
pub(crate) struct CpuUse {
    /// User CPU seconds of the process.
    pub(crate) user: f64,
    /// System CPU seconds of the process.
    pub(crate) sys: f64,
    /// CPU seconds per thread group (threads alive at the end).
    pub(crate) groups: BTreeMap<&'static str, f64>,
}

/// The thread group a thread name belongs to. Groups starting with
/// `bench` are the load generator; the rest is the server.
fn group_of(comm: &str) -> &'static str {
    match comm {
        c if c.starts_with("swarm-writer") => "writer",
        c if c.starts_with("swarm-http") => "front",
        c if c.starts_with("swarm-fsync") => "fsync",
        // Thread names are cut to 15 bytes: "swarm-checkpoint" reads "swarm-checkpoin".
        c if c.starts_with("swarm-checkpoin") => "checkpoint",
        c if c.starts_with("swarm-snapshot") => "snapshot",
        c if c.starts_with("bench-drone") => "bench_drones",
        c if c.starts_with("bench-") => "bench_other",
        _ => "other",
    }
}

/// Whether a thread group is the load generator's (else the server's).
fn is_client(group: &str) -> bool {
    group.starts_with("bench")
}

/// (utime, stime) in ticks from a stat line; the name may hold spaces, so
/// fields are counted after its closing parenthesis.
fn times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Nanoseconds on a CPU: the first field of a `schedstat` line.
fn on_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

impl CpuSample {
    /// Reads the process's CPU times now (zeros where /proc is missing).
    pub(crate) fn now() -> CpuSample {
        let mut s = CpuSample::default();
        if let Some((u, k)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(times)
        {
            s.user = u as f64 / USER_HZ;
            s.sys = k as f64 / USER_HZ;
        }
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return s;
        };
        for t in tasks.flatten() {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let on_cpu = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .as_deref()
                .and_then(on_cpu_ns)
                .map(|ns| ns as f64 / 1e9)
                .or_else(|| {
                    std::fs::read_to_string(p.join("stat"))
                        .ok()
                        .as_deref()
                        .and_then(times)
                        .map(|(u, k)| (u + k) as f64 / USER_HZ)
                });
            let Some(on_cpu) = on_cpu else {
                continue;
            };
            *s.groups.entry(group_of(comm.trim())).or_default() += on_cpu;
        }
        s
    }

    /// What was used from `self` until `later`.
    pub(crate) fn until(&self, later: &CpuSample) -> CpuUse {
        let groups = later
            .groups
            .iter()
            .map(|(g, v)| {
                (
                    *g,
                    (v - self.groups.get(g).copied().unwrap_or(0.0)).max(0.0),
                )
            })
            .collect();
        CpuUse {
            user: later.user - self.user,
            sys: later.sys - self.sys,
            groups,
        }
    }
}

impl CpuUse {
    /// User + system seconds.
    pub(crate) fn total(&self) -> f64 {
        self.user + self.sys
    }

    /// Microseconds of CPU per unit of work (`per` units), overall and per group.
    pub(crate) fn per(&self, per: u64) -> serde_json::Value {
        let us = |s: f64| {
            if per == 0 {
                0.0
            } else {
                (s * 1e6 / per as f64 * 10.0).round() / 10.0
            }
        };
        let mut groups = serde_json::Map::new();
        let (mut server, mut client) = (0.0, 0.0);
        for (g, v) in &self.groups {
            groups.insert((*g).to_string(), serde_json::json!(us(*v)));
            if is_client(g) {
                client += v;
            } else {
                server += v;
            }
        }
        serde_json::json!({
            "total": us(self.total()),
            "user": us(self.user),
            "sys": us(self.sys),
            "server": us(server),
            "client": us(client),
            "by_thread": groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_name() {
        let line = "123 (swarm http) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0";
        assert_eq!(times(line), Some((250, 75)));
        assert_eq!(times("garbage"), None);
        assert_eq!(on_cpu_ns("138458828 7925080 67\n"), Some(138_458_828));
        assert_eq!(on_cpu_ns(""), None);
    }

    #[test]
    fn threads_fall_into_their_groups() {
        assert_eq!(group_of("swarm-writer"), "writer");
        assert_eq!(group_of("swarm-http"), "front");
        assert_eq!(group_of("swarm-http-over"), "front");
        assert_eq!(group_of("swarm-fsync"), "fsync");
        assert_eq!(group_of("swarm-checkpoin"), "checkpoint");
        assert_eq!(group_of("swarm-snapshot"), "snapshot");
        assert_eq!(group_of("swarm-accept"), "other");
        assert_eq!(group_of("bench-drone"), "bench_drones");
        assert_eq!(group_of("bench-stall"), "bench_other");
        assert!(is_client("bench_drones") && is_client("bench_other"));
        assert!(!is_client("writer") && !is_client("other"));
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let a = CpuSample::now();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let used = a.until(&CpuSample::now());
        assert!(x > 0);
        assert!(used.total() > 0.0, "{used:?}");
    }
}
