//! The read tables (`packages`, `drones`, `leases`, `builds`, `events`), kept
//! current in the same transaction as the input that changed them.
//!
//! The store never interprets inputs: after `handle`, it asks the core's `view()`
//! for the rows the input and its outputs name (any `drone`, `package` or
//! `lease` field, found generically in their JSON), and writes only rows that
//! differ from an in-memory mirror of the tables. Two things change without
//! naming themselves, and are covered explicitly: deadlines that lapse (a
//! package's retry backoff, a drone's grounding), tracked by time here; and
//! broad operator actions (`Control`, `Recovered`), after which every row is
//! compared. An `Enqueue` touches the rows of its own packages (and, when
//! it names a new Portage snapshot, every drone's), never the rest of the
//! queue, so a batch costs in proportion to its size. Rows are updated in
//! place (`ON CONFLICT DO UPDATE`), not deleted and inserted again as
//! `INSERT OR REPLACE` would: the row keeps its rowid and page, and only
//! the indexes whose columns changed are written. `check` recomputes
//! everything from the view, for tests and `swarm doctor`.

use crate::error::StoreError;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::{
    Atom, DroneName, DroneView, Input, LeaseId, LeaseView, Output, PackageStatus, PackageView,
    Timestamp, View,
};

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
type PkgKey = (String, String);

fn key_of(p: &PackageView) -> PkgKey {
    (
        p.atom.to_string(),
        p.profile
            .clone()
            .unwrap_or_else(|| swarm_core::profile::DEFAULT_PROFILE.to_owned()),
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PackageRow {
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
    fn from_view(p: &PackageView) -> PackageRow {
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

    fn deadline(&self) -> Option<u64> {
        self.retry_at_ms
            .or(self.auto_unblock_at_ms)
            .map(|t| t as u64)
    }

    fn write(&self, conn: &Connection, key: &PkgKey, seq: u64) -> Result<(), StoreError> {
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

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(PkgKey, PackageRow)> {
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
struct DroneRow {
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
    fn from_view(d: &DroneView) -> DroneRow {
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

    fn deadline(&self) -> Option<u64> {
        self.grounded_until_ms.map(|t| t as u64)
    }

    fn write(&self, conn: &Connection, name: &str, seq: u64) -> Result<(), StoreError> {
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

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, DroneRow)> {
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
struct LeaseRow {
    package: String,
    drone: String,
    issued_at_ms: i64,
    started_at_ms: Option<i64>,
    profile: String,
}

impl LeaseRow {
    fn from_view(l: &LeaseView) -> LeaseRow {
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

    fn write(&self, conn: &Connection, lease: u64) -> Result<(), StoreError> {
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

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, LeaseRow)> {
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

/// What one input may have changed.
#[derive(Default)]
struct Touched {
    packages: BTreeSet<String>,
    drones: BTreeSet<String>,
    leases: BTreeSet<u64>,
    all: bool,
}

impl Touched {
    /// Every `drone`, `package` and `lease` field anywhere in a JSON value.
    fn scan(&mut self, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("drone", serde_json::Value::String(s)) => {
                            self.drones.insert(s.clone());
                        }
                        ("package" | "atom" | "current_task", serde_json::Value::String(s)) => {
                            self.packages.insert(s.clone());
                        }
                        ("lease", serde_json::Value::Number(n)) => {
                            if let Some(n) = n.as_u64() {
                                self.leases.insert(n);
                            }
                        }
                        ("leases" | "started", serde_json::Value::Array(ids)) => {
                            self.leases.extend(ids.iter().filter_map(|i| i.as_u64()));
                        }
                        ("name", serde_json::Value::String(s)) => {
                            self.drones.insert(s.clone());
                        }
                        _ => self.scan(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| self.scan(i)),
            _ => {}
        }
    }
}

/// An output, serialised once for the outbox, the events table and the scan.
pub(crate) struct OutputJson {
    pub(crate) value: serde_json::Value,
    pub(crate) text: String,
}

impl OutputJson {
    pub(crate) fn new(output: &Output) -> Result<OutputJson, StoreError> {
        let value = serde_json::to_value(output)?;
        let text = serde_json::to_string(&value)?;
        Ok(OutputJson { value, text })
    }
}

/// The in-memory mirror of the current-state tables.
#[derive(Default)]
pub(crate) struct ReadTables {
    packages: BTreeMap<PkgKey, PackageRow>,
    drones: BTreeMap<String, DroneRow>,
    leases: BTreeMap<u64, LeaseRow>,
    package_deadlines: BTreeSet<(u64, PkgKey)>,
    drone_deadlines: BTreeSet<(u64, String)>,
    /// Environment digests already in `environments`: a heartbeat does not write one again.
    envs_written: BTreeSet<String>,
}

/// Context of one applied input.
pub(crate) struct Applied<'a> {
    pub(crate) seq: u64,
    pub(crate) at: Timestamp,
    pub(crate) input: &'a Input,
    pub(crate) input_json: &'a serde_json::Value,
    pub(crate) outputs: &'a [OutputJson],
}

impl ReadTables {
    /// The mirror of a state the tables already hold (after a rollback).
    pub(crate) fn from_view(view: View<'_>) -> ReadTables {
        let mut t = ReadTables::default();
        for p in view.queue() {
            let row = PackageRow::from_view(&p);
            t.set_package(key_of(&p), Some(row));
        }
        for d in view.drones() {
            let row = DroneRow::from_view(&d);
            t.set_drone(d.name.to_string(), Some(row));
        }
        for l in view.leases() {
            t.leases.insert(l.lease.0, LeaseRow::from_view(&l));
        }
        t
    }

    /// Rewrites the current-state tables from the view (on open: heals anything).
    pub(crate) fn rewrite(
        conn: &Connection,
        view: View<'_>,
        seq: u64,
    ) -> Result<ReadTables, StoreError> {
        conn.execute_batch("DELETE FROM packages; DELETE FROM drones; DELETE FROM leases;")?;
        let t = ReadTables::from_view(view);
        for (key, row) in &t.packages {
            row.write(conn, key, seq)?;
        }
        for (name, row) in &t.drones {
            row.write(conn, name, seq)?;
        }
        for (id, row) in &t.leases {
            row.write(conn, *id)?;
        }
        Ok(t)
    }

    fn set_package(&mut self, key: PkgKey, row: Option<PackageRow>) {
        if let Some(old) = self.packages.get(&key).and_then(PackageRow::deadline) {
            self.package_deadlines.remove(&(old, key.clone()));
        }
        match row {
            Some(row) => {
                if let Some(at) = row.deadline() {
                    self.package_deadlines.insert((at, key.clone()));
                }
                self.packages.insert(key, row);
            }
            None => {
                self.packages.remove(&key);
            }
        }
    }

    fn set_drone(&mut self, name: String, row: Option<DroneRow>) {
        if let Some(old) = self.drones.get(&name).and_then(DroneRow::deadline) {
            self.drone_deadlines.remove(&(old, name.clone()));
        }
        match row {
            Some(row) => {
                if let Some(at) = row.deadline() {
                    self.drone_deadlines.insert((at, name.clone()));
                }
                self.drones.insert(name, row);
            }
            None => {
                self.drones.remove(&name);
            }
        }
    }

    /// Writes everything one input changed.
    pub(crate) fn apply(
        &mut self,
        conn: &Connection,
        view: View<'_>,
        a: &Applied<'_>,
    ) -> Result<(), StoreError> {
        let mut touched = Touched::default();
        touched.scan(a.input_json);
        for o in a.outputs {
            touched.scan(&o.value);
        }
        touched.all = matches!(a.input, Input::Control(_) | Input::Recovered);
        if let Input::Enqueue(e) = a.input {
            touched
                .packages
                .extend(e.packages.iter().map(|p| p.atom.to_string()));
            // Only a push naming a Portage snapshot may change every drone's
            // row; a plain push (each part of a big import) touches none.
            if e.portage_snapshot.is_some() {
                touched
                    .drones
                    .extend(view.drones().into_iter().map(|d| d.name.to_string()));
            }
        }
        let now = view.now().0;
        while let Some((at, (atom, _))) = self.package_deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.package_deadlines.pop_first();
            touched.packages.insert(atom);
        }
        while let Some((at, name)) = self.drone_deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.drone_deadlines.pop_first();
            touched.drones.insert(name);
        }
        self.write_history(conn, a)?;
        if touched.all {
            self.sync_all(conn, view, a)?;
        } else {
            self.sync_touched(conn, view, a, touched)?;
        }
        Ok(())
    }

    fn sync_touched(
        &mut self,
        conn: &Connection,
        view: View<'_>,
        a: &Applied<'_>,
        mut t: Touched,
    ) -> Result<(), StoreError> {
        for atom in &t.packages {
            // Every profile's package of the atom, and every row the mirror has of it.
            let parsed = Atom::parse(atom).ok();
            let name = parsed
                .as_ref()
                .map_or_else(|| atom.clone(), |a| a.to_string());
            let new: BTreeMap<PkgKey, PackageView> = parsed
                .map(|a| view.packages_of(&a))
                .unwrap_or_default()
                .into_iter()
                .map(|p| (key_of(&p), p))
                .collect();
            let held: Vec<PkgKey> = self
                .packages
                .range((name.clone(), String::new())..)
                .take_while(|(k, _)| k.0 == name)
                .map(|(k, row)| {
                    t.leases.extend(row.lease.map(|l| l as u64));
                    k.clone()
                })
                .collect();
            for key in held.into_iter().filter(|k| !new.contains_key(k)) {
                self.sync_package(conn, key, None, a.seq)?;
            }
            for (key, p) in &new {
                self.sync_package(conn, key.clone(), Some(p), a.seq)?;
            }
        }
        for name in &t.drones {
            let new = DroneName::new(name.as_str())
                .ok()
                .and_then(|n| view.drone(&n));
            if let Some(d) = &new {
                t.leases.extend(d.leases.iter().map(|l| l.lease.0));
            }
            t.leases.extend(
                self.leases
                    .iter()
                    .filter(|(_, l)| &l.drone == name)
                    .map(|(id, _)| *id),
            );
            self.sync_drone(conn, name.clone(), new.as_ref(), a.seq)?;
        }
        for id in &t.leases {
            let new = view.lease(LeaseId(*id));
            self.sync_lease(conn, *id, new.as_ref(), a)?;
        }
        // Safety net, O(1): a lease that changed without naming itself.
        if self.leases.len() != view.lease_count() as usize {
            self.sync_all_leases(conn, view, a)?;
        }
        Ok(())
    }

    fn sync_all(
        &mut self,
        conn: &Connection,
        view: View<'_>,
        a: &Applied<'_>,
    ) -> Result<(), StoreError> {
        let mut seen = BTreeSet::new();
        for p in view.queue() {
            let key = key_of(&p);
            seen.insert(key.clone());
            self.sync_package(conn, key, Some(&p), a.seq)?;
        }
        let gone: Vec<PkgKey> = self
            .packages
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.sync_package(conn, key, None, a.seq)?;
        }
        let mut seen = BTreeSet::new();
        for d in view.drones() {
            let key = d.name.to_string();
            seen.insert(key.clone());
            self.sync_drone(conn, key, Some(&d), a.seq)?;
        }
        let gone: Vec<String> = self
            .drones
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.sync_drone(conn, key, None, a.seq)?;
        }
        self.sync_all_leases(conn, view, a)
    }

    fn sync_all_leases(
        &mut self,
        conn: &Connection,
        view: View<'_>,
        a: &Applied<'_>,
    ) -> Result<(), StoreError> {
        let live = view.leases();
        let ids: BTreeSet<u64> = live.iter().map(|l| l.lease.0).collect();
        for l in &live {
            self.sync_lease(conn, l.lease.0, Some(l), a)?;
        }
        let gone: Vec<u64> = self
            .leases
            .keys()
            .filter(|k| !ids.contains(*k))
            .copied()
            .collect();
        for id in gone {
            self.sync_lease(conn, id, None, a)?;
        }
        Ok(())
    }

    fn sync_package(
        &mut self,
        conn: &Connection,
        key: PkgKey,
        new: Option<&PackageView>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let new = new.map(PackageRow::from_view);
        if self.packages.get(&key) == new.as_ref() {
            // Re-arm a deadline popped for a row that did not change.
            if let Some(row) = new {
                self.set_package(key, Some(row));
            }
            return Ok(());
        }
        match &new {
            Some(row) => row.write(conn, &key, seq)?,
            None => {
                conn.prepare_cached("DELETE FROM packages WHERE atom = ?1 AND profile = ?2")?
                    .execute([&key.0, &key.1])?;
            }
        }
        self.set_package(key, new);
        Ok(())
    }

    fn sync_drone(
        &mut self,
        conn: &Connection,
        name: String,
        new: Option<&DroneView>,
        seq: u64,
    ) -> Result<(), StoreError> {
        if let Some(digest) = new.and_then(|d| d.env.digest()) {
            if !self.envs_written.contains(&digest) {
                let env = new.map(|d| serde_json::to_string(&d.env)).transpose()?;
                conn.prepare_cached(
                    "INSERT INTO environments (digest, env, first_seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (digest) DO NOTHING",
                )?
                .execute(params![digest, env, seq as i64])?;
                self.envs_written.insert(digest);
            }
        }
        let new = new.map(DroneRow::from_view);
        if self.drones.get(&name) == new.as_ref() {
            if let Some(row) = new {
                self.set_drone(name, Some(row));
            }
            return Ok(());
        }
        match &new {
            Some(row) => row.write(conn, &name, seq)?,
            None => {
                conn.prepare_cached("DELETE FROM drones WHERE name = ?1")?
                    .execute([&name])?;
            }
        }
        self.set_drone(name, new);
        Ok(())
    }

    fn sync_lease(
        &mut self,
        conn: &Connection,
        id: u64,
        new: Option<&LeaseView>,
        a: &Applied<'_>,
    ) -> Result<(), StoreError> {
        let new = new.map(LeaseRow::from_view);
        if self.leases.get(&id) == new.as_ref() {
            return Ok(());
        }
        match new {
            Some(row) => {
                row.write(conn, id)?;
                self.leases.insert(id, row);
            }
            None => {
                if self.leases.remove(&id).is_some() {
                    conn.prepare_cached("DELETE FROM leases WHERE lease = ?1")?
                        .execute([id as i64])?;
                    // An attempt that ended without an event of its own.
                    let outcome = match a.input {
                        Input::BuildFinished { outcome, .. } => tag_outcome(outcome),
                        _ => "ended".to_owned(),
                    };
                    conn.prepare_cached(
                        "UPDATE builds SET finished_at = ?2, outcome = ?3
                         WHERE lease = ?1 AND finished_at IS NULL",
                    )?
                    .execute(params![id as i64, a.at.0 as i64, outcome])?;
                }
            }
        }
        Ok(())
    }

    /// `builds` and `events`: history rows, appended, never rewritten from the view.
    fn write_history(&self, conn: &Connection, a: &Applied<'_>) -> Result<(), StoreError> {
        let at = a.at.0 as i64;
        let seq = a.seq as i64;
        for o in a.outputs {
            let body = &o.value["body"];
            let str_field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let lease = body.get("lease").and_then(|v| v.as_u64()).map(|l| l as i64);
            match o.value["type"].as_str() {
                Some("command") if body["command"] == "assign" => {
                    conn.prepare_cached(
                        "INSERT INTO builds (lease, package, drone, epoch, created_at, seq, profile)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (lease) DO NOTHING",
                    )?
                    .execute(params![
                        lease,
                        str_field("package"),
                        str_field("drone"),
                        body["epoch"].as_i64(),
                        at,
                        seq,
                        str_field("profile")
                            .unwrap_or_else(|| swarm_core::profile::DEFAULT_PROFILE.to_owned())
                    ])?;
                }
                Some("event") => {
                    let kind = body["event"].as_str().unwrap_or("unknown");
                    conn.prepare_cached(
                        "INSERT INTO events (seq, at_ms, kind, drone, package, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        seq,
                        at,
                        kind,
                        str_field("drone"),
                        str_field("package"),
                        body.to_string()
                    ])?;
                    let Some(lease) = lease else { continue };
                    match kind {
                        "started" => {
                            conn.prepare_cached(
                                "UPDATE builds SET started_at = ?2 WHERE lease = ?1",
                            )?
                            .execute(params![lease, at])?;
                        }
                        "built" => {
                            conn.prepare_cached(
                                "UPDATE builds SET finished_at = ?2, outcome = 'success',
                                    duration_ms = ?3, env_digest = ?4
                                 WHERE lease = ?1 AND finished_at IS NULL",
                            )?
                            .execute(params![
                                lease,
                                at,
                                body["duration_ms"].as_i64(),
                                str_field("env")
                            ])?;
                        }
                        "build_failed" => {
                            conn.prepare_cached(
                                "UPDATE builds SET finished_at = ?2, outcome = 'failed',
                                    class = ?3, detail = ?4
                                 WHERE lease = ?1 AND finished_at IS NULL",
                            )?
                            .execute(params![
                                lease,
                                at,
                                str_field("class"),
                                str_field("detail")
                            ])?;
                        }
                        "reclaimed" => {
                            conn.prepare_cached(
                                "UPDATE builds SET finished_at = ?2, outcome = 'reclaimed',
                                    detail = ?3
                                 WHERE lease = ?1 AND finished_at IS NULL",
                            )?
                            .execute(params![
                                lease,
                                at,
                                str_field("reason")
                            ])?;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn tag_outcome(outcome: &swarm_core::Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "ended".to_owned())
}

/// Compares the current-state tables with the view; names the first difference.
pub(crate) fn check(conn: &Connection, view: View<'_>) -> Result<(), String> {
    let want = ReadTables::from_view(view);
    let sql = |e: rusqlite::Error| e.to_string();
    let mut stmt = conn
        .prepare(
            "SELECT atom, status, lease, drone, started, retry_at_ms, built_at_ms, block_reason,
                auto_unblock_at_ms, priority, attempts, generation, last_error, profile
             FROM packages",
        )
        .map_err(sql)?;
    let got: BTreeMap<PkgKey, PackageRow> = stmt
        .query_map([], PackageRow::read)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    diff("packages", &want.packages, &got)?;
    let mut stmt = conn
        .prepare(
            "SELECT name, machine_id, epoch, status, health, kind, cores, ram_mb, slots,
                last_heartbeat_ms, paused, drained, grounded_until_ms, consecutive_failures,
                escalation_steps, builds_ok, builds_failed, mem_percent, disk_percent, load_centi,
                portage_snapshot, version FROM drones",
        )
        .map_err(sql)?;
    let got: BTreeMap<String, DroneRow> = stmt
        .query_map([], DroneRow::read)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    diff("drones", &want.drones, &got)?;
    let mut stmt = conn
        .prepare("SELECT lease, package, drone, issued_at_ms, started_at_ms, profile FROM leases")
        .map_err(sql)?;
    let got: BTreeMap<u64, LeaseRow> = stmt
        .query_map([], LeaseRow::read)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    diff("leases", &want.leases, &got)
}

fn diff<K: Ord + std::fmt::Debug, R: PartialEq + std::fmt::Debug>(
    table: &str,
    want: &BTreeMap<K, R>,
    got: &BTreeMap<K, R>,
) -> Result<(), String> {
    for (k, w) in want {
        match got.get(k) {
            None => return Err(format!("{table}: row {k:?} is missing")),
            Some(g) if g != w => {
                return Err(format!("{table}: row {k:?} is {g:?}, the core says {w:?}"))
            }
            Some(_) => {}
        }
    }
    if let Some(k) = got.keys().find(|k| !want.contains_key(*k)) {
        return Err(format!("{table}: row {k:?} is not in the core"));
    }
    Ok(())
}
