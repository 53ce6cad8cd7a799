//! CPU accounting for `swarm bench http`: the process's user and system
//! CPU over the measured window, and how it splits over the server's
//! threads (front door, writer, the rest) and the load generator.
//!
//! Wall-clock cycles/s depend on what else the machine runs; CPU-seconds
//! per cycle do not (much), so a change can be judged on a busy machine.
//! Read from `/proc/self/stat` and `/proc/self/task/*/stat`, whose times
//! are in USER_HZ (100 per second on every Linux ABI swarm targets).

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

/// The thread group a thread name belongs to.
fn group_of(comm: &str) -> &'static str {
    match comm {
        c if c.starts_with("swarm-writer") => "writer",
        c if c.starts_with("swarm-http") => "front",
        c if c.starts_with("bench-drone") => "loadgen",
        c if c.starts_with("bench-") => "bench_other",
        _ => "other",
    }
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
            let Some((u, k)) = std::fs::read_to_string(p.join("stat"))
                .ok()
                .as_deref()
                .and_then(times)
            else {
                continue;
            };
            *s.groups.entry(group_of(comm.trim())).or_default() += (u + k) as f64 / USER_HZ;
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
        for (g, v) in &self.groups {
            groups.insert((*g).to_string(), serde_json::json!(us(*v)));
        }
        serde_json::json!({
            "total": us(self.total()),
            "user": us(self.user),
            "sys": us(self.sys),
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
    }

    #[test]
    fn threads_fall_into_their_groups() {
        assert_eq!(group_of("swarm-writer"), "writer");
        assert_eq!(group_of("swarm-http"), "front");
        assert_eq!(group_of("swarm-http-over"), "front");
        assert_eq!(group_of("bench-drone"), "loadgen");
        assert_eq!(group_of("bench-stall"), "bench_other");
        assert_eq!(group_of("swarm-snapshot"), "other");
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
