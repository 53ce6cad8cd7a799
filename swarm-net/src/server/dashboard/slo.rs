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
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The build-environment families, while some profile expects an environment: drift per drone
/// (no profile admits it), which profiles each drone matches, and per profile the online drones
/// that serve it and its packages not built. At most `max_drones` × ([`MAX_PROFILES`] + 1)
/// series.
///
/// [`MAX_PROFILES`]: swarm_core::profile::MAX_PROFILES
fn profile_families(out: &mut String, view: &View<'_>, drones: &[swarm_core::DroneView]) {
    let profiles: Vec<swarm_core::ProfileView> = view
        .profiles()
        .into_iter()
        .filter(|p| p.name != swarm_core::profile::DEFAULT_PROFILE || !p.env.is_empty())
        .collect();
    if profiles.is_empty() {
        return;
    }
    let drone_label = |d: &swarm_core::DroneView| format!("drone=\"{}\"", label(d.name.as_str()));
    let drift: Vec<(String, u64)> = drones
        .iter()
        .map(|d| (drone_label(d), u64::from(d.serves.is_empty())))
        .collect();
    gauge(
        out,
        "swarm_drone_env_drift",
        "Per drone: 1 when no profile admits its build environment (it gets no work); only while some profile expects an environment.",
        &drift,
    );
    let mut matches = Vec::with_capacity(drones.len() * profiles.len());
    for d in drones {
        for p in &profiles {
            matches.push((
                format!("{},profile=\"{}\"", drone_label(d), label(&p.name)),
                u64::from(d.serves.contains(&p.name)),
            ));
        }
    }
    gauge(
        out,
        "swarm_drone_env_matches",
        "Per drone and profile: 1 when the profile admits the drone's build environment (it may build the profile's packages).",
        &matches,
    );
    let profile_label = |p: &swarm_core::ProfileView| format!("profile=\"{}\"", label(&p.name));
    let serving: Vec<(String, u64)> = profiles
        .iter()
        .map(|p| {
            let online = drones
                .iter()
                .filter(|d| {
                    d.status == swarm_core::DroneStatus::Online && d.serves.contains(&p.name)
                })
                .count();
            (profile_label(p), online as u64)
        })
        .collect();
    gauge(
        out,
        "swarm_profile_matching_drones",
        "Per profile: online drones whose build environment it admits.",
        &serving,
    );
    let unbuilt: Vec<(String, u64)> = profiles
        .iter()
        .map(|p| (profile_label(p), u64::from(p.unbuilt)))
        .collect();
    gauge(
        out,
        "swarm_profile_unbuilt_packages",
        "Per profile: its packages in the queue not built yet.",
        &unbuilt,
    );
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
    profile_families(out, view, &drones);
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
