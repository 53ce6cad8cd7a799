//! The rows of the current-state tables as the mirror holds them: built from the core's
//! view, written with an upsert, read back for `check`.

use crate::error::StoreError;
use rusqlite::{params, Connection};
use serde::Serialize;
use swarm_core::{DroneView, LeaseView, PackageStatus, PackageView, Timestamp};

/// The serde name of a unit-like enum value (`"online"`, `"bare-metal"`).
fn tag<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("unserialisable: {e}"),
    }
}

fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.0 as i64)
}

/// A package's row key: (atom, profile), the profile `default` for the default one. A package
/// is (profile, atom): the same atom may be queued once per profile.
pub(super) type PkgKey = (String, String);

pub(super) fn key_of(p: &PackageView) -> PkgKey {
    (
        p.atom.to_string(),
        p.profile
            .clone()
            .unwrap_or_else(|| swarm_core::profile::DEFAULT_PROFILE.to_owned()),
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PackageRow {
    status: String,
    lease: Option<i64>,
    drone: Option<String>,
    started: Option<bool>,
    retry_at_ms: Option<i64>,
    built_at_ms: Option<i64>,
    block_reason: Option<String>,
    auto_unblock_at_ms: Option<i64>,
    priority: i64,
    attempts: i64,
    generation: i64,
    last_error: Option<String>,
}

impl PackageRow {
    pub(super) fn from_view(p: &PackageView) -> PackageRow {
        let mut row = PackageRow {
            status: String::new(),
            lease: None,
            drone: None,
            started: None,
            retry_at_ms: None,
            built_at_ms: None,
            block_reason: None,
            auto_unblock_at_ms: None,
            priority: i64::from(p.priority),
            attempts: i64::from(p.attempts),
            generation: p.generation as i64,
            last_error: p.last_error.clone(),
        };
        match &p.status {
            PackageStatus::Queued { retry_at } => {
                row.status = "queued".into();
                row.retry_at_ms = opt_ms(*retry_at);
            }
            PackageStatus::Assigned {
                lease,
                drone,
                started,
            } => {
                row.status = "assigned".into();
                row.lease = Some(lease.0 as i64);
                row.drone = Some(drone.to_string());
                row.started = Some(*started);
            }
            PackageStatus::Built { at } => {
                row.status = "built".into();
                row.built_at_ms = Some(at.0 as i64);
            }
            PackageStatus::Blocked {
                reason,
                auto_unblock_at,
            } => {
                row.status = "blocked".into();
                row.block_reason = Some(reason.to_string());
                row.auto_unblock_at_ms = opt_ms(*auto_unblock_at);
            }
        }
        row
    }

    pub(super) fn write(
        &self,
        conn: &Connection,
        key: &PkgKey,
        seq: u64,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO packages (atom, status, lease, drone, started, retry_at_ms,
                built_at_ms, block_reason, auto_unblock_at_ms, priority, attempts, generation,
                last_error, updated_seq, profile)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (profile, atom) DO UPDATE SET status = excluded.status, lease = excluded.lease,
                drone = excluded.drone, started = excluded.started,
                retry_at_ms = excluded.retry_at_ms, built_at_ms = excluded.built_at_ms,
                block_reason = excluded.block_reason,
                auto_unblock_at_ms = excluded.auto_unblock_at_ms, priority = excluded.priority,
                attempts = excluded.attempts, generation = excluded.generation,
                last_error = excluded.last_error, updated_seq = excluded.updated_seq",
        )?
        .execute(params![
            key.0,
            self.status,
            self.lease,
            self.drone,
            self.started,
            self.retry_at_ms,
            self.built_at_ms,
            self.block_reason,
            self.auto_unblock_at_ms,
            self.priority,
            self.attempts,
            self.generation,
            self.last_error,
            seq as i64,
            key.1
        ])?;
        Ok(())
    }

    pub(super) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(PkgKey, PackageRow)> {
        Ok((
            (r.get(0)?, r.get(13)?),
            PackageRow {
                status: r.get(1)?,
                lease: r.get(2)?,
                drone: r.get(3)?,
                started: r.get(4)?,
                retry_at_ms: r.get(5)?,
                built_at_ms: r.get(6)?,
                block_reason: r.get(7)?,
                auto_unblock_at_ms: r.get(8)?,
                priority: r.get(9)?,
                attempts: r.get(10)?,
                generation: r.get(11)?,
                last_error: r.get(12)?,
            },
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DroneRow {
    machine_id: Option<String>,
    epoch: i64,
    status: String,
    health: String,
    kind: String,
    cores: i64,
    ram_mb: i64,
    slots: i64,
    last_heartbeat_ms: i64,
    paused: bool,
    drained: bool,
    grounded_until_ms: Option<i64>,
    consecutive_failures: i64,
    escalation_steps: i64,
    builds_ok: i64,
    builds_failed: i64,
    mem_percent: Option<i64>,
    disk_percent: Option<i64>,
    load_centi: Option<i64>,
    portage_snapshot: Option<String>,
    version: Option<String>,
}

impl DroneRow {
    pub(super) fn from_view(d: &DroneView) -> DroneRow {
        DroneRow {
            machine_id: d.machine_id.clone(),
            epoch: d.epoch.0 as i64,
            status: tag(&d.status),
            health: tag(&d.health),
            kind: tag(&d.kind),
            cores: i64::from(d.cores),
            ram_mb: d.ram_mb as i64,
            slots: i64::from(d.slots),
            last_heartbeat_ms: d.last_heartbeat.0 as i64,
            paused: d.paused,
            drained: d.drained,
            grounded_until_ms: opt_ms(d.grounded_until),
            consecutive_failures: i64::from(d.consecutive_failures),
            escalation_steps: i64::from(d.escalation_steps),
            builds_ok: d.builds_ok as i64,
            builds_failed: d.builds_failed as i64,
            mem_percent: d.mem_percent.map(i64::from),
            disk_percent: d.disk_percent.map(i64::from),
            load_centi: d.load_centi.map(i64::from),
            portage_snapshot: d.portage_snapshot.clone(),
            version: d.version.clone(),
        }
    }

    pub(super) fn write(&self, conn: &Connection, name: &str, seq: u64) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO drones (name, machine_id, epoch, status, health, kind, cores,
                ram_mb, slots, last_heartbeat_ms, paused, drained, grounded_until_ms,
                consecutive_failures, escalation_steps, builds_ok, builds_failed, mem_percent,
                disk_percent, load_centi, portage_snapshot, version, updated_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23)
             ON CONFLICT (name) DO UPDATE SET machine_id = excluded.machine_id,
                epoch = excluded.epoch, status = excluded.status, health = excluded.health,
                kind = excluded.kind, cores = excluded.cores, ram_mb = excluded.ram_mb,
                slots = excluded.slots, last_heartbeat_ms = excluded.last_heartbeat_ms,
                paused = excluded.paused, drained = excluded.drained,
                grounded_until_ms = excluded.grounded_until_ms,
                consecutive_failures = excluded.consecutive_failures,
                escalation_steps = excluded.escalation_steps, builds_ok = excluded.builds_ok,
                builds_failed = excluded.builds_failed, mem_percent = excluded.mem_percent,
                disk_percent = excluded.disk_percent, load_centi = excluded.load_centi,
                portage_snapshot = excluded.portage_snapshot, version = excluded.version,
                updated_seq = excluded.updated_seq",
        )?
        .execute(params![
            name,
            self.machine_id,
            self.epoch,
            self.status,
            self.health,
            self.kind,
            self.cores,
            self.ram_mb,
            self.slots,
            self.last_heartbeat_ms,
            self.paused,
            self.drained,
            self.grounded_until_ms,
            self.consecutive_failures,
            self.escalation_steps,
            self.builds_ok,
            self.builds_failed,
            self.mem_percent,
            self.disk_percent,
            self.load_centi,
            self.portage_snapshot,
            self.version,
            seq as i64
        ])?;
        Ok(())
    }

    pub(super) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, DroneRow)> {
        Ok((
            r.get(0)?,
            DroneRow {
                machine_id: r.get(1)?,
                epoch: r.get(2)?,
                status: r.get(3)?,
                health: r.get(4)?,
                kind: r.get(5)?,
                cores: r.get(6)?,
                ram_mb: r.get(7)?,
                slots: r.get(8)?,
                last_heartbeat_ms: r.get(9)?,
                paused: r.get(10)?,
                drained: r.get(11)?,
                grounded_until_ms: r.get(12)?,
                consecutive_failures: r.get(13)?,
                escalation_steps: r.get(14)?,
                builds_ok: r.get(15)?,
                builds_failed: r.get(16)?,
                mem_percent: r.get(17)?,
                disk_percent: r.get(18)?,
                load_centi: r.get(19)?,
                portage_snapshot: r.get(20)?,
                version: r.get(21)?,
            },
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LeaseRow {
    package: String,
    drone: String,
    issued_at_ms: i64,
    started_at_ms: Option<i64>,
    profile: String,
}

impl LeaseRow {
    pub(super) fn from_view(l: &LeaseView) -> LeaseRow {
        LeaseRow {
            package: l.package.to_string(),
            drone: l.drone.to_string(),
            issued_at_ms: l.issued_at.0 as i64,
            started_at_ms: opt_ms(l.started_at),
            profile: l
                .profile
                .clone()
                .unwrap_or_else(|| swarm_core::profile::DEFAULT_PROFILE.to_owned()),
        }
    }

    pub(super) fn write(&self, conn: &Connection, lease: u64) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO leases (lease, package, drone, issued_at_ms, started_at_ms,
                profile)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            lease as i64,
            self.package,
            self.drone,
            self.issued_at_ms,
            self.started_at_ms,
            self.profile
        ])?;
        Ok(())
    }

    pub(super) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, LeaseRow)> {
        Ok((
            r.get::<_, i64>(0)? as u64,
            LeaseRow {
                package: r.get(1)?,
                drone: r.get(2)?,
                issued_at_ms: r.get(3)?,
                started_at_ms: r.get(4)?,
                profile: r.get(5)?,
            },
        ))
    }
}
