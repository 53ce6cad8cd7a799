//! The read tables (`packages`, `drones`, `leases`, `builds`, `events`), kept
//! current in the same transaction as the input that changed them.
//!
//! The store never interprets inputs: after `handle`, the core says which packages,
//! drones and leases the input touched (`Swarm::touched`, deadlines that lapsed
//! included), and only those rows are read from its `view()` and written where they
//! differ from an in-memory mirror of the tables; after an operator action that
//! reaches everything, every row is compared. So an input costs in proportion to
//! what it changed, never to the size of the queue. Rows are updated in place
//! (`ON CONFLICT DO UPDATE`), not deleted and inserted again as `INSERT OR
//! REPLACE` would: the row keeps its rowid and page, and only the indexes whose
//! columns changed are written. `check` recomputes everything from the view, for
//! tests and `swarm doctor`.

mod history;
mod rows;

pub(crate) use history::{Applied, OutputJson};

use crate::error::StoreError;
use rows::{key_of, DroneRow, LeaseRow, PackageRow, PkgKey};
use rusqlite::{params, Connection};
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::{DroneView, Input, LeaseView, PackageView, Touched, View};

/// The in-memory mirror of the current-state tables.
#[derive(Default)]
pub(crate) struct ReadTables {
    packages: BTreeMap<PkgKey, PackageRow>,
    drones: BTreeMap<String, DroneRow>,
    leases: BTreeMap<u64, LeaseRow>,
    /// Environment digests already in `environments`: a heartbeat does not write one again.
    envs_written: BTreeSet<String>,
    /// Each drone's current environment digest: kept when unused ones are pruned.
    drone_envs: BTreeMap<String, String>,
    /// Environments written since unused ones were last pruned.
    envs_since_prune: usize,
}

/// New environments written between two prunes of the unused ones. A drone
/// whose environment changes on every heartbeat (each up to the claims'
/// bound, about 1.5 MiB) then leaves at most this many behind at once.
const ENV_PRUNE_EVERY: usize = 16;

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
            if let Some(digest) = d.env.digest() {
                t.drone_envs.insert(d.name.to_string(), digest);
            }
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

    /// Deletes the environments no build names and no drone has now: only
    /// a release gate reads them, through the builds made in them. Without
    /// this, a drone whose environment changes on every heartbeat grows the
    /// database without bound.
    fn prune_envs(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.envs_since_prune = 0;
        let unused: Vec<String> = conn
            .prepare_cached(
                "SELECT digest FROM environments WHERE digest NOT IN
                   (SELECT env_digest FROM builds WHERE env_digest IS NOT NULL)",
            )?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let current: BTreeSet<&String> = self.drone_envs.values().collect();
        for digest in unused.iter().filter(|d| !current.contains(d)) {
            conn.prepare_cached("DELETE FROM environments WHERE digest = ?1")?
                .execute([digest])?;
            self.envs_written.remove(digest);
        }
        Ok(())
    }

    fn set_package(&mut self, key: PkgKey, row: Option<PackageRow>) {
        match row {
            Some(row) => self.packages.insert(key, row),
            None => self.packages.remove(&key),
        };
    }

    fn set_drone(&mut self, name: String, row: Option<DroneRow>) {
        match row {
            Some(row) => self.drones.insert(name, row),
            None => self.drones.remove(&name),
        };
    }

    /// Writes everything one input changed: the history it made, and the rows the core says
    /// it touched (all of them after a broad operator action).
    pub(crate) fn apply(
        &mut self,
        conn: &Connection,
        view: View<'_>,
        touched: &Touched,
        a: &Applied<'_>,
    ) -> Result<(), StoreError> {
        history::write_history(conn, a)?;
        if touched.everything() {
            return self.sync_all(conn, view, a);
        }
        for p in view.touched_packages() {
            self.sync_package(conn, key_of(&p), Some(&p), a.seq)?;
        }
        for name in touched.drones() {
            self.sync_drone(conn, name.to_string(), view.drone(name).as_ref(), a.seq)?;
        }
        for id in touched.leases() {
            self.sync_lease(conn, id.0, view.lease(id).as_ref(), a)?;
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
        let digest = new.and_then(|d| d.env.digest());
        match &digest {
            Some(d) => self.drone_envs.insert(name.clone(), d.clone()),
            None => self.drone_envs.remove(&name),
        };
        if let Some(digest) = digest {
            if !self.envs_written.contains(&digest) {
                let env = new.map(|d| serde_json::to_string(&d.env)).transpose()?;
                conn.prepare_cached(
                    "INSERT INTO environments (digest, env, first_seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (digest) DO NOTHING",
                )?
                .execute(params![digest, env, seq as i64])?;
                self.envs_written.insert(digest);
                self.envs_since_prune += 1;
                if self.envs_since_prune >= ENV_PRUNE_EVERY {
                    self.prune_envs(conn)?;
                }
            }
        }
        let new = new.map(DroneRow::from_view);
        if self.drones.get(&name) == new.as_ref() {
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
                        Input::BuildFinished { outcome, .. } => history::tag_outcome(outcome),
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
