//! The SLO report: what a run achieved, as numbers an operator can compare.

use super::packages::{critical_path_ms, TruePackage};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Counters gathered while a run goes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) scenario: String,
    pub(crate) seed: u64,
    pub(crate) invariant_violations: u64,
    pub(crate) enqueued_at: u64,
    pub(crate) makespan_ms: u64,
    pub(crate) lower_bound_ms: u64,
    pub(crate) path_bound_ms: u64,
    pub(crate) work_bound_ms: u64,
    pub(crate) liveness_bound_ms: u64,
    pub(crate) assigns: u64,
    pub(crate) reclaims_online: u64,
    pub(crate) false_reclaims: u64,
    pub(crate) false_escalations: u64,
    pub(crate) duplicate_builds: u64,
    pub(crate) reclaims_by_reason: BTreeMap<String, u64>,
    pub(crate) escalations_by_level: BTreeMap<String, u64>,
    pub(crate) brake_engagements: u64,
    pub(crate) brake_reason: Option<String>,
    pub(crate) stale_rejected: u64,
    pub(crate) grounded_max_pct: u64,
    pub(crate) built: u64,
    pub(crate) blocked: u64,
    pub(crate) failed: u64,
    pub(crate) death_to_reclaim_ms: Vec<u64>,
    pub(crate) busy_slot_ms: u64,
    pub(crate) demand_slot_ms: u64,
}

impl Stats {
    /// `fleet`: (slots, speed percent) per drone.
    pub(crate) fn new(pkgs: &[TruePackage], fleet: &[(u32, u32)]) -> Stats {
        let fastest = fleet
            .iter()
            .map(|f| u64::from(f.1))
            .max()
            .unwrap_or(100)
            .max(1);
        let capacity: u64 = fleet
            .iter()
            .map(|f| u64::from(f.0) * u64::from(f.1))
            .sum::<u64>()
            .max(1);
        let total: u64 = pkgs.iter().map(|p| p.duration_ms).sum();
        let (path_bound_ms, work_bound_ms) = (
            critical_path_ms(pkgs) * 100 / fastest,
            total * 100 / capacity,
        );
        let lower_bound_ms = path_bound_ms.max(work_bound_ms);
        Stats {
            lower_bound_ms,
            path_bound_ms,
            work_bound_ms,
            liveness_bound_ms: 3 * lower_bound_ms + 4 * 3_600_000,
            ..Stats::default()
        }
    }

    pub(crate) fn report(&self) -> Report {
        let hours = (self.makespan_ms as f64 / 3_600_000.0).max(1.0 / 60.0);
        let pct = |num: u64, den: u64| {
            if den == 0 {
                0.0
            } else {
                round2(100.0 * num as f64 / den as f64)
            }
        };
        let mean_death = (!self.death_to_reclaim_ms.is_empty()).then(|| {
            self.death_to_reclaim_ms.iter().sum::<u64>()
                / self.death_to_reclaim_ms.len() as u64
                / 1000
        });
        Report {
            scenario: self.scenario.clone(),
            seed: self.seed,
            invariant_violations: self.invariant_violations,
            built: self.built,
            blocked: self.blocked,
            failed: self.failed,
            makespan_s: self.makespan_ms / 1000,
            lower_bound_s: self.lower_bound_ms / 1000,
            critical_path_bound_s: self.path_bound_ms / 1000,
            work_bound_s: self.work_bound_ms / 1000,
            makespan_ratio: if self.lower_bound_ms == 0 {
                0.0
            } else {
                round2(self.makespan_ms as f64 / self.lower_bound_ms as f64)
            },
            churn_per_hour_pct: if self.assigns == 0 {
                0.0
            } else {
                round2(100.0 * self.reclaims_online as f64 / self.assigns as f64 / hours)
            },
            busy_ratio_pct: pct(self.busy_slot_ms, self.demand_slot_ms),
            reclaims: self.reclaims_by_reason.values().sum(),
            reclaims_by_reason: self.reclaims_by_reason.clone(),
            false_reclaims: self.false_reclaims,
            mean_death_to_reclaim_s: mean_death,
            escalations: self.escalations_by_level.values().sum(),
            escalations_by_level: self.escalations_by_level.clone(),
            false_escalations: self.false_escalations,
            brake_engagements: self.brake_engagements,
            brake_reason: self.brake_reason.clone(),
            grounded_max_pct: self.grounded_max_pct,
            stale_rejected: self.stale_rejected,
            duplicate_builds: self.duplicate_builds,
            delegated: self.assigns,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The SLOs of one run. The JSON keys are a stable interface for scripts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Invariant or oracle violations (0 or 1: a run stops at the first).
    pub invariant_violations: u64,
    /// Packages built.
    pub built: u64,
    /// Packages blocked at the end.
    pub blocked: u64,
    /// Failed build attempts.
    pub failed: u64,
    /// From enqueue to the last package done.
    pub makespan_s: u64,
    /// max(critical path / fastest speed, total work / total speed).
    pub lower_bound_s: u64,
    /// Critical path at the fastest drone's speed.
    pub critical_path_bound_s: u64,
    /// All work spread perfectly over all slots.
    pub work_bound_s: u64,
    /// makespan / lower bound.
    pub makespan_ratio: f64,
    /// Reclaims of reachable drones' work per delegated package per hour, percent.
    pub churn_per_hour_pct: f64,
    /// Busy slots against runnable demand, percent.
    pub busy_ratio_pct: f64,
    /// All reclaims.
    pub reclaims: u64,
    /// Reclaims by reason.
    pub reclaims_by_reason: BTreeMap<String, u64>,
    /// Offline/dead reclaims of drones that were alive and reachable.
    pub false_reclaims: u64,
    /// Mean time from a real death to its reclaim.
    pub mean_death_to_reclaim_s: Option<u64>,
    /// All escalations.
    pub escalations: u64,
    /// Escalations by ladder level.
    pub escalations_by_level: BTreeMap<String, u64>,
    /// Escalations of drones that were alive, reachable and not hung.
    pub false_escalations: u64,
    /// Times the disruption brake engaged.
    pub brake_engagements: u64,
    /// Why it first engaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brake_reason: Option<String>,
    /// Largest share of active drones grounded at once, percent.
    pub grounded_max_pct: u64,
    /// Stale reports rejected (fencing at work).
    pub stale_rejected: u64,
    /// Times two drones really built the same package at once.
    pub duplicate_builds: u64,
    /// Leases issued.
    pub delegated: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |s: u64| format!("{}h{:02}m", s / 3600, (s % 3600) / 60);
        writeln!(f, "scenario {} (seed {})", self.scenario, self.seed)?;
        writeln!(f, "  invariant violations  {}", self.invariant_violations)?;
        writeln!(
            f,
            "  built / blocked       {} / {}  ({} failed attempts, {} leases)",
            self.built, self.blocked, self.failed, self.delegated
        )?;
        writeln!(
            f,
            "  makespan              {}  (lower bound {}, ratio {:.2})",
            hm(self.makespan_s),
            hm(self.lower_bound_s),
            self.makespan_ratio
        )?;
        writeln!(f, "  busy vs runnable      {:.1} %", self.busy_ratio_pct)?;
        writeln!(
            f,
            "  churn                 {:.2} % of delegated packages per hour",
            self.churn_per_hour_pct
        )?;
        let reasons: Vec<String> = self
            .reclaims_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "  reclaims              {}  [{}]",
            self.reclaims,
            reasons.join(", ")
        )?;
        let mttr = self
            .mean_death_to_reclaim_s
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "-".into());
        writeln!(
            f,
            "  false reclaims        {}  (mean death→reclaim {mttr})",
            self.false_reclaims
        )?;
        let levels: Vec<String> = self
            .escalations_by_level
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            f,
            "  escalations           {}  [{}], false {}",
            self.escalations,
            levels.join(", "),
            self.false_escalations
        )?;
        writeln!(
            f,
            "  brake engagements     {}  (grounded at most {} % of the fleet)",
            self.brake_engagements, self.grounded_max_pct
        )?;
        if let Some(r) = &self.brake_reason {
            writeln!(f, "  brake reason          {r}")?;
        }
        write!(
            f,
            "  stale reports / dups  {} rejected / {} duplicate builds",
            self.stale_rejected, self.duplicate_builds
        )
    }
}
