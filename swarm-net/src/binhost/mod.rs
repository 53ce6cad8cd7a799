//! Binhost releases: immutable snapshots of the built set, each a complete
//! Portage binary tree, and the published one that clients install from.
//!
//! ```text
//! <binhost>/                    served under /binhost/ (or by nginx: dist/nginx/)
//!   Packages                    the published index: its PATHs point into <release>/
//!   <release>/Packages          each release's own index (PATHs relative to it)
//!   <release>/<cat>/<pn>/<pf>-<build id>.gpkg.tar   hardlinks into staging's files
//! <state>/state.json            releases, the published one, publish history, last TIMESTAMP
//! <state>/<release>.json        a release's entries (digests, who built them)
//! <state>/inspect-cache.json    what `binpkg::inspect` said per (inode, size, mtime)
//! ```
//!
//! Publishing writes the top `Packages` to a temporary file and renames it
//! into place, so a client reads either the old index or the new one, never
//! half of either; every PATH names its release, so a client still working
//! from the previous index keeps finding its files until that release is
//! purged. `TIMESTAMP` grows with every index swarm writes (Portage keeps a
//! cached index whose TIMESTAMP is not older), so a rollback is seen too.

mod error;
mod files;
pub mod header;
pub mod index;
mod recover;
mod scan;
mod state;
pub mod use_reduce;

pub use error::ReleaseError;
pub use files::closed_to_others;
pub use scan::Skipped;
pub use state::{ReleaseEntry, ReleaseInfo};

use error::io;
use files::{mkdir, set_mode, write_atomic};
use index::IndexEntry;
use serde::{Deserialize, Serialize};
use state::State;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use swarm_core::release_gate::{EntryFacts, GateVerdict};

/// Where releases live and how many are kept.
#[derive(Clone, Debug)]
pub struct BinhostOptions {
    /// The served tree: the published `Packages` and one directory per release.
    /// Must be on the filesystem of staging (releases are hardlinks).
    pub root: PathBuf,
    /// Where the release bookkeeping is kept (not served).
    pub state_dir: PathBuf,
    /// Retention: the newest this many releases are never purged.
    pub keep_last: u32,
    /// The gate refuses a publish that drops more than this share (per
    /// mille) of the published release's packages.
    pub max_drop_permille: u32,
    /// Extra `Packages` header keys (PROFILE, ACCEPT_KEYWORDS, ...).
    pub header: BTreeMap<String, String>,
    /// A Portage `Packages` file whose header is read at each create (see
    /// [`index::header_from_file`]); `header` wins over it key by key.
    pub header_from: Option<PathBuf>,
}

impl BinhostOptions {
    /// The layout under a data directory: `binhost/` and `releases/`.
    pub fn under(data_dir: &Path) -> BinhostOptions {
        BinhostOptions {
            root: data_dir.join("binhost"),
            state_dir: data_dir.join("releases"),
            keep_last: 5,
            max_drop_permille: 100,
            header: BTreeMap::new(),
            header_from: None,
        }
    }

    /// The header keys every index of a create gets: the reference file's,
    /// then `header`'s.
    pub fn index_header(&self) -> Result<BTreeMap<String, String>, ReleaseError> {
        let mut out = match &self.header_from {
            Some(path) => {
                index::header_from_file(path).map_err(|why| ReleaseError::BadHeaderFile {
                    path: path.clone(),
                    why,
                })?
            }
            None => BTreeMap::new(),
        };
        out.extend(self.header.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(out)
    }
}

/// What `create` made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Created {
    /// The new release.
    pub release: ReleaseInfo,
    /// Files in staging that are not in it, and why.
    pub skipped: Vec<Skipped>,
    /// Files whose metadata came from the inspect cache.
    pub cached: u32,
    /// What the index header was made from.
    #[serde(default)]
    pub header: header::HeaderNote,
}

/// What `publish` or `rollback` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Published {
    /// Now published.
    pub release: String,
    /// Published before, if any.
    pub previous: Option<String>,
    /// The index's new TIMESTAMP.
    pub timestamp: u64,
    /// The gate's verdict (empty reasons when it passed or was not asked).
    pub gate: GateVerdict,
    /// The operator's reason when the gate was overridden.
    pub forced: Option<String>,
}

/// Two releases compared by CPV.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Diff {
    /// Release A.
    pub a: String,
    /// Release B.
    pub b: String,
    /// In B, not in A.
    pub added: Vec<String>,
    /// In A, not in B.
    pub removed: Vec<String>,
    /// In both, different files (rebuilt).
    pub changed: Vec<String>,
    /// In both, the same file.
    pub unchanged: u32,
}

/// Everything about one release.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Detail {
    /// The summary.
    #[serde(flatten)]
    pub info: ReleaseInfo,
    /// Its packages.
    pub entries: Vec<ReleaseEntry>,
}

/// What the gate judges: the release's entries and the published release's CPVs.
pub type GateInputs = (BTreeMap<String, EntryFacts>, Option<BTreeSet<String>>);

/// Who built a package, as far as the server knows: (drone, its Portage snapshot).
pub type Provenance<'a> = dyn Fn(&str) -> (Option<String>, Option<String>) + 'a;

pub use scan::Refuse;

/// The releases of one binhost. Actions are serialised by one lock.
pub struct Releases {
    opts: BinhostOptions,
    staging: PathBuf,
    state: Mutex<State>,
    /// The release whose cut-short publish the open completed.
    completed_at_open: Option<String>,
}

impl Releases {
    /// Opens (creating directories as needed) the releases of a binhost.
    pub fn open(opts: BinhostOptions, staging: &Path) -> Result<Releases, ReleaseError> {
        mkdir(&opts.root)?;
        std::fs::create_dir_all(&opts.state_dir).map_err(io("create", &opts.state_dir))?;
        let mut state = State::load(&opts.state_dir)?;
        let completed_at_open = recover::at_open(&opts.root, &opts.state_dir, &mut state)?;
        Ok(Releases {
            opts,
            staging: staging.to_path_buf(),
            state: Mutex::new(state),
            completed_at_open,
        })
    }

    /// The release whose publish a crash cut short and this open completed: its
    /// own event was never recorded (h109), so the server records one.
    pub fn publish_completed_at_open(&self) -> Option<&str> {
        self.completed_at_open.as_deref()
    }

    /// The staging tree its releases are made from.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The served tree.
    pub fn root(&self) -> &Path {
        &self.opts.root
    }

    /// The options in force.
    pub fn options(&self) -> &BinhostOptions {
        &self.opts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every release, oldest first, and the published one.
    pub fn list(&self) -> (Vec<ReleaseInfo>, Option<String>) {
        let st = self.lock();
        (st.infos(), st.published.clone())
    }

    /// One release with its packages.
    pub fn show(&self, name: &str) -> Result<Detail, ReleaseError> {
        let st = self.lock();
        let info = st
            .info(name)
            .ok_or_else(|| ReleaseError::NotFound(name.into()))?;
        let entries = state::load_entries(&self.opts.state_dir, name)?;
        Ok(Detail { info, entries })
    }

    /// What changed from `a` to `b`.
    pub fn diff(&self, a: &str, b: &str) -> Result<Diff, ReleaseError> {
        let ea = self.show(a)?.entries;
        let eb = self.show(b)?.entries;
        let ma: BTreeMap<&str, &ReleaseEntry> = ea.iter().map(|e| (e.cpv.as_str(), e)).collect();
        let mb: BTreeMap<&str, &ReleaseEntry> = eb.iter().map(|e| (e.cpv.as_str(), e)).collect();
        let mut d = Diff {
            a: a.into(),
            b: b.into(),
            ..Diff::default()
        };
        for (cpv, e) in &mb {
            match ma.get(cpv) {
                None => d.added.push(cpv.to_string()),
                Some(old) if old.sha256 != e.sha256 => d.changed.push(cpv.to_string()),
                Some(_) => d.unchanged += 1,
            }
        }
        d.removed = ma
            .keys()
            .filter(|c| !mb.contains_key(*c))
            .map(|c| c.to_string())
            .collect();
        Ok(d)
    }

    /// Snapshots staging into a new release and writes its index.
    pub fn create(
        &self,
        name: Option<&str>,
        now_ms: u64,
        generation: u64,
        provenance: &Provenance<'_>,
        env: &header::HeaderEnv<'_>,
    ) -> Result<Created, ReleaseError> {
        self.create_taking(
            name,
            now_ms,
            generation,
            provenance,
            env,
            &|_, _, _| None,
            &|_| false,
        )
    }

    /// [`Releases::create`] of the staging packages `refuse` has nothing against: it names,
    /// per CPV, why a package is left out (built for another profile), which `skipped` says.
    /// A name it makes up is none that `reserved` says is taken elsewhere in the binhost's
    /// root (a profile's tree, made on its first release: h31 saw a default release take a
    /// profile's name, whose release then wrote over it).
    #[allow(clippy::too_many_arguments)]
    pub fn create_taking(
        &self,
        name: Option<&str>,
        now_ms: u64,
        generation: u64,
        provenance: &Provenance<'_>,
        env: &header::HeaderEnv<'_>,
        refuse: &Refuse<'_>,
        reserved: &dyn Fn(&str) -> bool,
    ) -> Result<Created, ReleaseError> {
        let mut st = self.lock();
        let name = match name {
            Some(n) => {
                check_name(n)?;
                if st.info(n).is_some() || self.opts.root.join(n).exists() {
                    return Err(ReleaseError::Exists(n.into()));
                }
                n.to_string()
            }
            None => st.fresh_name(now_ms, &self.opts.root, reserved),
        };
        recover::check_mounted(&self.opts.root, &st)?;
        let configured = self.opts.index_header()?;
        let tmp = self.opts.root.join(format!(".creating-{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("clear", &tmp))?;
        }
        mkdir(&tmp)?;
        let built = (|| {
            let snapshot = tmp.join(".snapshot");
            mkdir(&snapshot)?;
            let found = scan::scan(&self.staging, &self.opts.state_dir, &snapshot, refuse)?;
            let refused = &found.refused;
            let (header_env, source) =
                env.resolve(found.packages.iter().map(|p| p.pkg.cpv.as_str()));
            let (mut header, missing) = header_env
                .as_ref()
                .map(header::from_env)
                .unwrap_or_default();
            let note = header::HeaderNote {
                source,
                missing: missing
                    .into_iter()
                    .filter(|k| !configured.contains_key(k))
                    .collect(),
                overridden: configured.keys().cloned().collect(),
                keys: header
                    .keys()
                    .chain(configured.keys())
                    .filter(|k| {
                        k.as_str() != "CHOST" && !index::OWN_HEADER_KEYS.contains(&k.as_str())
                    })
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            };
            header.extend(configured);
            if found.packages.is_empty() {
                return Err(match refused.first() {
                    None => ReleaseError::Empty(self.staging.clone()),
                    Some(example) => ReleaseError::NoneTaken {
                        staging: self.staging.clone(),
                        skipped: refused.len(),
                        example: example.clone(),
                    },
                });
            }
            let mut index_entries = Vec::with_capacity(found.packages.len());
            let mut entries = Vec::with_capacity(found.packages.len());
            let mut dirs = BTreeSet::new();
            let mut bytes = 0u64;
            for p in &found.packages {
                let rel = scan::release_path(&p.pkg);
                if let Some(parent) = Path::new(&rel).parent() {
                    for a in parent.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                        dirs.insert(a.to_path_buf());
                    }
                    let d = tmp.join(parent);
                    if !d.exists() {
                        std::fs::create_dir_all(&d).map_err(io("create", &d))?;
                    }
                }
                let dest = tmp.join(&rel);
                set_mode(&p.path, 0o644)?;
                // The snapshot's link, the very inode inspected, moves into place.
                std::fs::rename(&p.path, &dest).map_err(io("move into place", &dest))?;
                bytes += p.pkg.size;
                let (built_by, snapshot) = provenance(&p.pkg.cpv);
                index_entries.push(IndexEntry {
                    cpv: p.pkg.cpv.clone(),
                    path: rel.clone(),
                    size: p.pkg.size,
                    mtime_s: p.mtime_s,
                    md5: p.pkg.md5.clone(),
                    sha1: p.pkg.sha1.clone(),
                    metadata: p.pkg.metadata.clone(),
                });
                entries.push(ReleaseEntry {
                    cpv: p.pkg.cpv.clone(),
                    path: rel,
                    size: p.pkg.size,
                    sha256: p.pkg.sha256.clone(),
                    build_id: p.pkg.build_id,
                    built_by,
                    portage_snapshot: snapshot,
                });
            }
            std::fs::remove_dir_all(&snapshot).map_err(io("remove", &snapshot))?;
            for d in &dirs {
                set_mode(&tmp.join(d), 0o755)?;
            }
            let timestamp = st.next_timestamp(now_ms);
            let text = index::render(&header, timestamp, &mut index_entries);
            write_atomic(&tmp.join("Packages"), text.as_bytes())?;
            entries.sort_by(|a, b| a.cpv.cmp(&b.cpv));
            state::save_entries(&self.opts.state_dir, &name, &entries)?;
            Ok::<_, ReleaseError>((timestamp, entries.len() as u32, bytes, found, note))
        })();
        let (timestamp, packages, bytes, found, note) = match built {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.opts.root.join(&name);
        std::fs::rename(&tmp, &dest).map_err(io("move into place", &dest))?;
        set_mode(&dest, 0o755)?;
        let info = ReleaseInfo {
            name: name.clone(),
            created_at_ms: now_ms,
            timestamp,
            packages,
            bytes,
            generation,
            kept: false,
            tags: Vec::new(),
            published: false,
        };
        let mut next = st.clone();
        next.releases.push(info.clone());
        if let Err(e) = next.save(&self.opts.state_dir) {
            // Unlisted, it would only block its name: gone again.
            let _ = self.remove_release_files(&name);
            return Err(e);
        }
        *st = next;
        Ok(Created {
            release: info,
            skipped: found.skipped,
            cached: found.cached,
            header: note,
        })
    }

    /// Facts the gate needs: the release's entries and the published set.
    pub fn gate_facts(&self, name: &str) -> Result<GateInputs, ReleaseError> {
        let entries = self.show(name)?.entries;
        let release = entries
            .into_iter()
            .map(|e| {
                (
                    e.cpv,
                    EntryFacts {
                        portage_snapshot: e.portage_snapshot,
                        built_by: e.built_by,
                        env: None,
                    },
                )
            })
            .collect();
        let published = match self.list().1 {
            Some(p) if p != name => {
                Some(self.show(&p)?.entries.into_iter().map(|e| e.cpv).collect())
            }
            _ => None,
        };
        Ok((release, published))
    }

    /// Publishes `name`: refuses when `verdict` has reasons unless `force`
    /// carries the operator's reason.
    pub fn publish(
        &self,
        name: &str,
        now_ms: u64,
        verdict: GateVerdict,
        force: Option<&str>,
    ) -> Result<Published, ReleaseError> {
        if force.is_some_and(|r| r.trim().is_empty()) {
            return Err(ReleaseError::ForceWithoutReason);
        }
        if !verdict.passed() && force.is_none() {
            return Err(ReleaseError::Refused {
                name: name.into(),
                verdict,
            });
        }
        let mut st = self.lock();
        if st.info(name).is_none() {
            return Err(ReleaseError::NotFound(name.into()));
        }
        let previous = st.published.clone();
        let timestamp = self.publish_as(&mut st, name, now_ms, |next| {
            next.history.push(name.to_string());
            let over = next.history.len().saturating_sub(state::MAX_HISTORY);
            next.history.drain(..over);
        })?;
        Ok(Published {
            release: name.into(),
            previous,
            timestamp,
            forced: if verdict.passed() {
                None
            } else {
                force.map(str::to_string)
            },
            gate: verdict,
        })
    }

    /// The release `rollback` would publish again, or why there is none.
    /// The dashboard names it on its "Roll back" button.
    pub fn rollback_target(&self) -> Result<String, ReleaseError> {
        Self::target(&self.lock()).map(|(_, target)| target)
    }

    /// (the published release, the one published before it that still exists).
    fn target(st: &State) -> Result<(String, String), ReleaseError> {
        let Some(current) = st.published.clone() else {
            return Err(ReleaseError::NoRollback("nothing is published".into()));
        };
        // The history without the current publication, newest last.
        let mut history = st.history.clone();
        while history.last() == Some(&current) {
            history.pop();
        }
        let Some(target) = history
            .iter()
            .rev()
            .find(|n| **n != current && st.info(n).is_some())
            .cloned()
        else {
            // A rollback takes its own step back out of the history: after one, a release
            // published later still exists, and "the only one" misled (h109).
            return Err(ReleaseError::NoRollback(format!(
                "no release published before {current} still exists; to undo a rollback, \
                 publish the later release again by name (`swarm release publish NAME`)"
            )));
        };
        Ok((current, target))
    }

    /// Publishes the release published before the current one again.
    pub fn rollback(&self, now_ms: u64) -> Result<Published, ReleaseError> {
        let mut st = self.lock();
        let (current, target) = Self::target(&st)?;
        let timestamp = self.publish_as(&mut st, &target, now_ms, |next| {
            while next.history.last().is_some_and(|n| *n != target) {
                next.history.pop();
            }
        })?;
        Ok(Published {
            release: target,
            previous: Some(current),
            timestamp,
            gate: GateVerdict::default(),
            forced: None,
        })
    }

    /// Makes `name` the published release: the new state (its history
    /// edited by `history`, the new TIMESTAMP) is saved first, then the top
    /// `Packages` is written. A crash between the two leaves `state.json`
    /// ahead of the index, and `open` writes the index it names; a save that
    /// fails changes nothing. (The other order let a crash serve one release
    /// while the state named another, whose purge then deleted the served
    /// files.)
    fn publish_as(
        &self,
        st: &mut State,
        name: &str,
        now_ms: u64,
        history: impl FnOnce(&mut State),
    ) -> Result<u64, ReleaseError> {
        recover::check_mounted(&self.opts.root, st)?;
        // Read before anything is saved: a release whose index is gone is refused as it was.
        let src = self.opts.root.join(name).join("Packages");
        let text = std::fs::read_to_string(&src).map_err(io("read", &src))?;
        let mut next = st.clone();
        history(&mut next);
        let timestamp = next.next_timestamp(now_ms);
        next.published = Some(name.to_string());
        next.published_timestamp = Some(timestamp);
        next.save(&self.opts.state_dir)?;
        if let Err(e) = recover::write_top_index(&self.opts.root, name, &text, timestamp) {
            // An index that went out stands (only its mtime failed). One
            // that did not: the running state stays what is served, and is
            // saved back; should that fail too, state.json names the new
            // release until the next save, and a start in between serves it.
            if recover::serves(&self.opts.root, name, &text, timestamp) {
                *st = next;
            } else if let Err(again) = st.save(&self.opts.state_dir) {
                tracing::warn!(release = name, error = %again, "the publish failed and state.json could not be put back: it names the new release until the next release action saves it");
            }
            return Err(e);
        }
        *st = next;
        Ok(timestamp)
    }

    /// Keeps a release from retention (or lets it go again).
    pub fn keep(&self, name: &str, keep: bool) -> Result<ReleaseInfo, ReleaseError> {
        let mut st = self.lock();
        let r = st
            .get_mut(name)
            .ok_or_else(|| ReleaseError::NotFound(name.into()))?;
        r.kept = keep;
        st.save(&self.opts.state_dir)?;
        st.info(name)
            .ok_or_else(|| ReleaseError::NotFound(name.into()))
    }

    /// Tags a release (tagged releases are kept), or removes the tag.
    pub fn tag(&self, name: &str, tag: &str, remove: bool) -> Result<ReleaseInfo, ReleaseError> {
        if check_name(tag).is_err() {
            return Err(ReleaseError::BadTag(tag.into()));
        }
        let mut st = self.lock();
        let r = st
            .get_mut(name)
            .ok_or_else(|| ReleaseError::NotFound(name.into()))?;
        r.tags.retain(|t| t != tag);
        if !remove {
            r.tags.push(tag.to_string());
            r.tags.sort();
        }
        st.save(&self.opts.state_dir)?;
        st.info(name)
            .ok_or_else(|| ReleaseError::NotFound(name.into()))
    }

    /// Removes every release retention does not protect: the published one,
    /// the kept and tagged ones, and the newest `keep_last` always stay.
    pub fn purge(&self, dry_run: bool) -> Result<Vec<String>, ReleaseError> {
        let mut st = self.lock();
        recover::check_mounted(&self.opts.root, &st)?;
        // Whatever the state says, never the release clients are served.
        let served = recover::served_release(&self.opts.root);
        let n = st.releases.len();
        let keep_from = n.saturating_sub(self.opts.keep_last as usize);
        let doomed: Vec<String> = st
            .releases
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i < keep_from
                    && !r.kept
                    && r.tags.is_empty()
                    && st.published.as_deref() != Some(r.name.as_str())
                    && served.as_deref() != Some(r.name.as_str())
            })
            .map(|(_, r)| r.name.clone())
            .collect();
        if dry_run {
            return Ok(doomed);
        }
        // The state first: a crash after it leaves directories no release
        // names, which `open` removes; the other order left a release listed
        // (and publishable) whose files were gone.
        let mut next = st.clone();
        next.releases.retain(|r| !doomed.contains(&r.name));
        next.history.retain(|h| !doomed.contains(h));
        next.save(&self.opts.state_dir)?;
        *st = next;
        for name in &doomed {
            self.remove_release_files(name)?;
        }
        Ok(doomed)
    }

    /// Removes a release's directory (moved aside first, so the served tree
    /// never shows half of it) and its entries.
    fn remove_release_files(&self, name: &str) -> Result<(), ReleaseError> {
        let dir = self.opts.root.join(name);
        let gone = self.opts.root.join(format!(".purging-{name}"));
        if gone.exists() {
            std::fs::remove_dir_all(&gone).map_err(io("remove", &gone))?;
        }
        if dir.exists() {
            std::fs::rename(&dir, &gone).map_err(io("move aside", &dir))?;
            std::fs::remove_dir_all(&gone).map_err(io("remove", &gone))?;
        }
        state::remove_entries(&self.opts.state_dir, name)
    }
}

/// Release names and tags: directory-safe, bounded.
pub fn check_name(n: &str) -> Result<(), ReleaseError> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && !n.starts_with('.')
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !n.eq_ignore_ascii_case("packages")
        && !["diff", "rollback", "purge"].contains(&n)
        // A release's entries are `<state_dir>/<name>.json`, beside the bookkeeping's own
        // files: a release named `state` wrote over the state, and purging it deleted it (h109).
        && !state::BOOKKEEPING.contains(&n)
        && !n.starts_with("Packages");
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::BadName(n.into()))
    }
}
