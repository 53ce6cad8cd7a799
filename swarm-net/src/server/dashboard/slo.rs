//! `/metrics` families for the hardening plan's SLOs, read from the view at
//! scrape time: the age of work assigned but not started (fleet histogram
//! and oldest per drone), heartbeat age per drone, busy cores, reclaim churn
//! open event streams, and build-environment drift per drone. `dist/prometheus/alerts.yml` alerts on them.

use super::super::metrics::gauge;
use super::series::busy_cores;
use std::fmt::Write;
use swarm_core::View;

/// Buckets of the not-started age histogram, seconds.
const AGE_BUCKETS_S: [u64; 8] = [30, 60, 120, 300, 600, 900, 1800, 3600];

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the SLO families.
pub(crate) fn render(out: &mut String, view: &View<'_>, reclaims_last_hour: u64, streams: usize) {
    let now = view.now().0;
    let ages: Vec<u64> = view
        .leases()
        .iter()
        .filter(|l| l.started_at.is_none())
        .map(|l| now.saturating_sub(l.issued_at.0) / 1000)
        .collect();
    let name = "swarm_delegated_not_started_age_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Leases assigned to a drone but not started, by age (a snapshot of the current leases at scrape time)."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for b in AGE_BUCKETS_S {
        let c = ages.iter().filter(|a| **a <= b).count();
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", ages.len());
    let _ = writeln!(out, "{name}_sum {}", ages.iter().sum::<u64>());
    let _ = writeln!(out, "{name}_count {}", ages.len());

    let drones = view.drones();
    let oldest: Vec<(String, u64)> = drones
        .iter()
        .map(|d| {
            let age = d
                .leases
                .iter()
                .filter(|l| l.started_at.is_none())
                .map(|l| now.saturating_sub(l.issued_at.0) / 1000)
                .max()
                .unwrap_or(0);
            (format!("drone=\"{}\"", label(d.name.as_str())), age)
        })
        .collect();
    gauge(
        out,
        "swarm_drone_not_started_age_seconds",
        "Per drone: age of its oldest lease that has not started (0: none waiting).",
        &oldest,
    );
    let queued: Vec<(String, u64)> = drones
        .iter()
        .map(|d| {
            let n = d.leases.iter().filter(|l| l.started_at.is_none()).count() as u64;
            (format!("drone=\"{}\"", label(d.name.as_str())), n)
        })
        .collect();
    gauge(
        out,
        "swarm_drone_not_started_leases",
        "Per drone: leases assigned and not started.",
        &queued,
    );
    let beats: Vec<(String, u64)> = drones
        .iter()
        .map(|d| {
            (
                format!("drone=\"{}\"", label(d.name.as_str())),
                now.saturating_sub(d.last_heartbeat.0) / 1000,
            )
        })
        .collect();
    gauge(
        out,
        "swarm_drone_heartbeat_age_seconds",
        "Per drone: seconds since its last heartbeat.",
        &beats,
    );
    if !view.expected_env().is_empty() {
        let drift: Vec<(String, u64)> = drones
            .iter()
            .map(|d| {
                (
                    format!("drone=\"{}\"", label(d.name.as_str())),
                    u64::from(!d.env_differences.is_empty()),
                )
            })
            .collect();
        gauge(
            out,
            "swarm_drone_env_drift",
            "Per drone: 1 when its build environment differs from the expected one (it gets no work); only while an environment is expected.",
            &drift,
        );
    }
    let (total, busy) = busy_cores(view);
    gauge(
        out,
        "swarm_cores",
        "Cores of online drones, and those running a build.",
        &[
            ("state=\"total\"".into(), u64::from(total)),
            ("state=\"busy\"".into(), u64::from(busy)),
        ],
    );
    gauge(
        out,
        "swarm_reclaims_last_hour",
        "Leases taken back in the last 60 minutes (churn), from the dashboard's time series.",
        &[(String::new(), reclaims_last_hour)],
    );
    gauge(
        out,
        "swarm_event_streams",
        "Dashboard event streams open.",
        &[(String::new(), streams as u64)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }
}
