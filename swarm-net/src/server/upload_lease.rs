//! Artifact uploads bound to a live lease: an upload names its lease (and
//! the drone's epoch) in `X-Swarm-Lease` / `X-Swarm-Epoch`; it is accepted
//! only when that lease is live, held by the caller and for the package the
//! path names; a file accepted under one lease is never replaced under
//! another; and a reported success counts only if the artifact came under
//! the report's lease. Which lease each staged file came under is kept in
//! `.leases/<category>/<file>` of the profile's staging tree (outside the
//! package directories; `staged_path::staging_of`).

use super::front::Request;
use super::http::{header, ApiError};
use super::identity::{forbid, Caller};
use super::shared::Shared;
use super::staged_path::staging_of;
use std::path::{Path, PathBuf};
use swarm_core::{Atom, DroneName, LeaseId, LeaseView};

/// What an upload is bound to: its lease, and the staging tree of the lease's
/// profile, where the file goes (`staged_path::staging_of`).
pub(crate) struct Bound {
    pub(crate) lease: LeaseId,
    pub(crate) root: PathBuf,
    /// What the lease is for (its slot is judged once the file is read: [`slot_fits`]).
    pub(crate) package: Atom,
}

/// Checks an upload before its body is read; the lease it is bound to. The URL
/// names only the atom (the v3 wire): the lease, named or the caller's own of
/// that atom (a drone holds at most one lease of an atom), says the profile.
pub(crate) fn bind(
    sh: &Shared,
    req: &Request<'_>,
    caller: &Caller,
    atom: &Atom,
) -> Result<Bound, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        header(req, name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    ApiError::field(
                        400,
                        name,
                        format!("{name} must be a whole number, got {v:?}"),
                    )
                })
            })
            .transpose()
    };
    same_farm(sh, header(req, "X-Swarm-Farm"), "X-Swarm-Farm")?;
    let lease = number("X-Swarm-Lease")?;
    let epoch = number("X-Swarm-Epoch")?;
    let published = sh.fresh();
    let view = published.swarm.view();
    let live = match lease {
        Some(l) => {
            let live = view.lease(LeaseId(l)).ok_or_else(|| {
                ApiError::field(
                    409,
                    "X-Swarm-Lease",
                    format!("lease {l} is not live: the package was reclaimed or already reported; nothing was stored"),
                )
            })?;
            if !covers(&live.package, atom) {
                return Err(ApiError::field(
                    400,
                    "X-Swarm-Lease",
                    format!("lease {l} is for {}, not for {atom}", live.package),
                ));
            }
            live
        }
        // An upload that does not name the lease: the caller's lease of the package (its
        // holder is checked against the caller below).
        None => unnamed_lease(sh, &view, caller, atom)?,
    };
    check_holder(sh, caller, &live.drone, atom, lease.map(LeaseId))?;
    if let (Some(e), Some(d)) = (epoch, view.drone(&live.drone)) {
        if d.epoch.0 != e {
            return Err(ApiError::field(
                409,
                "X-Swarm-Epoch",
                format!(
                    "epoch {e} is stale: drone {} is at epoch {}",
                    live.drone, d.epoch.0
                ),
            ));
        }
    }
    Ok(Bound {
        lease: live.lease,
        root: staging_of(&sh.staging, live.profile.as_deref()),
        package: live.package,
    })
}

/// Refuses an upload, report, start, return or build log for another farm's
/// lease (`field` names where the caller said which farm gave it): its
/// lease number means nothing here, and may be a lease this farm gave for
/// something else.
pub(crate) fn same_farm(sh: &Shared, said: Option<&str>, field: &str) -> Result<(), ApiError> {
    match said.map(str::trim) {
        Some(farm) if farm != sh.farm_id => Err(ApiError::field(
            409,
            field,
            format!(
                "this call is for a lease of farm {farm:?}, and this server is farm {:?}; nothing was recorded",
                sh.farm_id
            ),
        )),
        _ => Ok(()),
    }
}

/// The lease an upload naming none is for: the one live lease whose package the file is a
/// build of ([`covers`]) among the caller's own (an enrolled drone) or those of drones without
/// a credential (a credential-less caller, which cannot say which of them it is). Refused when there is none, or several (the same
/// package as `=cat/foo-1.0` in one profile and `cat/foo` in another, or in two profiles):
/// then only the lease can say, and guessing would stage one profile's build as another's.
fn unnamed_lease(
    sh: &Shared,
    view: &swarm_core::View<'_>,
    caller: &Caller,
    atom: &Atom,
) -> Result<LeaseView, ApiError> {
    let mut candidates: Vec<LeaseView> = match caller {
        Caller::Drone(me) => view.leases_of(me),
        Caller::Legacy(_) => view.leases(),
    }
    .into_iter()
    .filter(|l| covers(&l.package, atom))
    .collect();
    // A credential-less caller may upload only for a drone without a credential: those leases
    // are the candidates, unless there are none (then the holder check refuses, 403).
    let enrolled = |l: &LeaseView| sh.creds.is_enrolled(l.drone.as_str());
    if matches!(caller, Caller::Legacy(_)) && candidates.iter().any(|l| !enrolled(l)) {
        candidates.retain(|l| !enrolled(l));
    }
    let why = match candidates.as_slice() {
        [one] => return Ok(one.clone()),
        [] => String::new(),
        several => format!(
            ": {} live leases are for a package it is a build of ({})",
            several.len(),
            several
                .iter()
                .map(|l| format!(
                    "lease {} for {} of profile {} on {}",
                    l.lease,
                    l.package,
                    l.profile.as_deref().unwrap_or("default"),
                    l.drone
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(ApiError::field(
        400,
        "X-Swarm-Lease",
        format!("an upload must name the live lease it belongs to (X-Swarm-Lease) for {atom}{why}; nothing was stored"),
    ))
}

/// Whether a file of `file` (a versioned package) is a build of what the
/// lease names: a version of the same package its operator admits, as
/// Portage matches it (`=cat/foo-1.0-r0` takes `foo-1.0`, which emerge
/// builds for it; `>=cat/foo-1` not `foo-0.9`; `cat/foo:2` and `foo` any
/// version, as emerge resolved it), a gpkg build id allowed
/// (`foo-1.0-3.gpkg.tar` for `=cat/foo-1.0`). The slot is judged once the
/// file is read ([`slot_fits`]); one version per lease by
/// `lease_files::one_version`.
pub(crate) fn covers(leased: &Atom, file: &Atom) -> bool {
    leased.admits(file)
}

/// Refuses a package whose SLOT (and sub-slot) is not the one the lease
/// asks for (`cat/foo:2` built as SLOT 3). A slot operator alone (`:=`,
/// `:*`) asks for none.
pub(crate) fn slot_fits(leased: &Atom, slot: &str, sub_slot: Option<&str>) -> Result<(), ApiError> {
    if leased.admits_slot(slot, sub_slot) {
        return Ok(());
    }
    let got = match sub_slot {
        Some(sub) => format!("{slot}/{sub}"),
        None => slot.to_owned(),
    };
    Err(ApiError::field(
        422,
        "artifact",
        format!("the lease is for {leased}, and this package is SLOT {got}; nothing was stored"),
    ))
}

/// Refuses an upload by a caller other than the lease's holder. A drone's upload naming the
/// lease gets a 409 on `X-Swarm-Lease`, which a drone reads as "this lease is not mine any more" and
/// stops: as a 403 it read as its own credential refused, and a drone renamed on the same work
/// dir retried its predecessor's build for ever, holding its slot (h36 F4).
fn check_holder(
    sh: &Shared,
    caller: &Caller,
    holder: &DroneName,
    atom: &Atom,
    named: Option<LeaseId>,
) -> Result<(), ApiError> {
    let mine = match caller {
        Caller::Drone(me) => me == holder,
        Caller::Legacy(_) => !sh.creds.is_enrolled(holder.as_str()),
    };
    if mine {
        return Ok(());
    }
    let why =
        format!("{atom} is leased to {holder}: only its holder may upload it; nothing was stored");
    let refused = forbid(sh, caller, why.clone());
    // A caller without a credential of its own is simply refused.
    match named.filter(|_| matches!(caller, Caller::Drone(_))) {
        Some(lease) => Err(ApiError::field(
            409,
            "X-Swarm-Lease",
            format!("lease {lease}: {why}"),
        )),
        None => Err(refused),
    }
}

/// Checks an upload's lease once more when its body is in, before the file goes in place: it
/// may have been reclaimed while the body streamed (returned, revoked, its drone gone, its
/// profile removed), and the package leased again to a drone that has uploaded its own build
/// since. A lease that is gone stores nothing, so the new lease's file is never replaced and a
/// purged tree is not refilled. Called before [`super::staged_path::PLACING`] is taken: a
/// fresh view may wait for the writer, and that lock is held by every upload's last step.
pub(crate) fn still_live(
    sh: &Shared,
    category: &str,
    file: &str,
    lease: LeaseId,
) -> Result<(), ApiError> {
    if sh.fresh().swarm.view().lease(lease).is_none() {
        return Err(ApiError::field(
            409,
            "X-Swarm-Lease",
            format!("lease {lease} was reclaimed while {category}/{file} was being uploaded; nothing was stored"),
        ));
    }
    Ok(())
}

/// The lease a staged file was stored under, when the file is there and an upload put it there.
fn staged_lease(staging: &Path, category: &str, file: &str) -> Option<u64> {
    super::file_leases::current(staging, category, file)
        .ok()
        .flatten()
}

/// The lease a staged file came under when that lease has ended: read with
/// a fresh view, so before [`super::staged_path::PLACING`] is taken.
pub(crate) fn ended_lease(sh: &Shared, staging: &Path, category: &str, file: &str) -> Option<u64> {
    staged_lease(staging, category, file)
        .filter(|l| sh.fresh().swarm.view().lease(LeaseId(*l)).is_none())
}

/// Refuses to replace a staged file that came under another lease still
/// live (two leases covering one file). A file whose lease has ended
/// (`ended`, from [`ended_lease`]) is replaced: its build was never counted
/// (its drone died, or was reclaimed, between the upload and the report),
/// or it was counted and the package is being built again; refusing it
/// made every later build of the package fail its upload, and each failure
/// counted against the drone that made it. A file staged since `ended` was
/// read (another upload, under a lease live a moment ago) is never replaced.
pub(crate) fn may_replace(
    staging: &Path,
    category: &str,
    file: &str,
    lease: LeaseId,
    ended: Option<u64>,
) -> Result<(), ApiError> {
    match staged_lease(staging, category, file) {
        Some(l) if l != lease.0 && Some(l) != ended => Err(ApiError::new(
            409,
            format!(
                "{category}/{file} was already accepted under lease {l}, which is still live; \
                 it is not replaced under lease {lease}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Records the lease a file is stored under, durably, under `PLACING` and before the
/// rename that puts it in place (`placed`: the temporary file's metadata, which the rename
/// keeps; `sha256`: its digest): a placed file always has its record (`file_leases`).
pub(crate) fn record(
    staging: &Path,
    farm: &str,
    category: &str,
    file: &str,
    lease: LeaseId,
    sha256: &str,
    placed: &std::fs::Metadata,
) -> Result<(), ApiError> {
    let io = |e: std::io::Error| {
        ApiError::new(
            507,
            format!("cannot record the lease of {category}/{file}: {e}"),
        )
    };
    super::file_leases::append(staging, farm, category, file, lease.0, sha256, placed)
        .map_err(io)?;
    super::lease_files::record(staging, category, file, lease).map_err(io)
}

/// Removes `category/file` from `staging` if the file the upload under `lease` placed is
/// still what it holds: checked under `PLACING`, so a newer upload placing its file is never
/// the one removed, nor a file put there outside the upload path. Its record stays: a
/// create running meanwhile may have linked the file and judges it by that record (start
/// removes the records of files gone). True if it was removed.
pub(crate) fn discard_if_still(staging: &Path, rel: &str, lease: LeaseId) -> std::io::Result<bool> {
    let Some((category, file)) = rel.split_once('/') else {
        return Ok(false);
    };
    let _placing = super::staged_path::PLACING
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if super::file_leases::current(staging, category, file)? != Some(lease.0) {
        return Ok(false);
    }
    std::fs::remove_file(staging.join(category).join(file))?;
    Ok(true)
}

/// Removes the binary the upload under `lease` placed, in whichever staging tree it is, once
/// the lease's build was recorded as anything but a success: no release takes it
/// ([`swarm_core::release_gate::uploaded_binary`]), and until the next release create removed
/// it, it sat in a tree a web server may publish (h112 L6). Only the upload's own file goes
/// ([`discard_if_still`]). The files it removed, as `category/file`.
pub(crate) fn discard_ended(staging: &Path, lease: LeaseId) -> Vec<String> {
    let mut removed = Vec::new();
    for tree in super::staged_path::all_staging_trees(staging) {
        for rel in super::lease_files::stored_by(&tree, lease) {
            match discard_if_still(&tree, &rel, lease) {
                Ok(true) => {
                    tracing::info!(file = %rel, tree = %tree.display(), lease = lease.0, "removed from staging: its build was recorded as not a success, and no release takes it");
                    removed.push(rel);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(file = %rel, error = %e, "cannot remove from staging the binary of a build that did not succeed; releases still leave it out")
                }
            }
        }
    }
    removed
}

/// Every file in `staging` an upload stored under a lease, as its path in
/// staging (`category/file`) and the lease; files a v3 drone copied in have none.
/// Records that cannot be read are an error, not "no lease" (h112 L2): their files
/// would be released unchecked.
pub(crate) fn stored_under_leases(staging: &Path) -> std::io::Result<Vec<(String, LeaseId)>> {
    let mut out = Vec::new();
    for (category, name) in super::file_leases::recorded(staging)? {
        if let Some(lease) = super::file_leases::current(staging, &category, &name)? {
            out.push((format!("{category}/{name}"), LeaseId(lease)));
        }
    }
    Ok(out)
}

/// Whether an artifact of `atom` (a file [`covers`] accepts) was uploaded
/// under `lease` and is still in staging.
pub(crate) fn uploaded_under(staging: &Path, atom: &Atom, lease: LeaseId) -> bool {
    let root = super::lease_files::records_dir(staging);
    let categories: Vec<String> = if atom.category().is_empty() {
        std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![atom.category().to_string()]
    };
    categories.iter().any(|category| {
        let Ok(entries) = std::fs::read_dir(root.join(category)) else {
            return false;
        };
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            super::staged_path::parse_artifact_path(&format!("{category}/{name}"))
                .is_ok_and(|p| covers(atom, &p.atom))
                && super::file_leases::current(staging, category, &name)
                    .is_ok_and(|l| l == Some(lease.0))
        })
    })
}

/// The lease a report's success must have its artifact under, and the staging
/// tree of its profile: the lease it names, else the one the drone holds for the
/// package (at most one, invariant 14). A named lease that is not live stays
/// named (the core refuses the report as stale) with the default tree.
pub(crate) fn report_lease(
    sh: &Shared,
    drone: &DroneName,
    atom: &Atom,
    named: Option<u64>,
) -> Option<Bound> {
    let published = sh.fresh();
    let view = published.swarm.view();
    let live = match named {
        Some(l) => view.lease(LeaseId(l)),
        None => view
            .leases_of(drone)
            .into_iter()
            .find(|l| l.package == *atom),
    };
    let lease = named.map(LeaseId).or(live.as_ref().map(|l| l.lease))?;
    let profile = live.and_then(|l| l.profile);
    Some(Bound {
        lease,
        root: staging_of(&sh.staging, profile.as_deref()),
        package: atom.clone(),
    })
}

/// Most unclaimed files of one package inspected for a report.
const MAX_UNCLAIMED: usize = 8;

/// The files of `atom` in staging that no upload claimed: the ones a v3 drone
/// rsynced in (`<cat>/<pf>*` or `<cat>/<pn>/<pf>*`), judged as an upload is
/// judged ([`crate::binpkg::inspect`], and the package inside must be `atom`).
/// `None`: there is no such file; `Some(Ok)`: one is a valid build of `atom`;
/// `Some(Err)`: none is, and why each is not. Only a credential-less drone
/// from a legacy network may count on such a file. A file over `max_bytes`
/// (the upload limit, `max_artifact_bytes`) is refused unread: hashing one
/// of any size would hold the drone's request for as long as it takes.
pub(crate) fn unclaimed_valid(
    staging: &Path,
    atom: &Atom,
    max_bytes: u64,
) -> Option<Result<(), String>> {
    let category = atom.category();
    if category.is_empty() {
        return None;
    }
    let dirs = [
        staging.join(category),
        staging.join(category).join(atom.pn()),
    ];
    let mut problems = Vec::new();
    for (in_category, dir) in dirs.iter().enumerate().map(|(i, d)| (i == 0, d)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let ours = super::staged_path::parse_artifact_path(&format!("{category}/{name}"))
                .is_ok_and(|p| covers(atom, &p.atom));
            let Some(meta) = e.metadata().ok().filter(|m| m.is_file()) else {
                continue;
            };
            if !ours {
                continue;
            }
            if problems.len() >= MAX_UNCLAIMED {
                break;
            }
            if meta.len() > max_bytes {
                problems.push(format!(
                    "{name}: {} bytes, over the upload limit of {max_bytes} (max_artifact_bytes)",
                    meta.len()
                ));
                continue;
            }
            // Placed by an upload: the record names this very file (`file_leases`). Uploads
            // go to `<cat>/<file>` only; a file that cannot be judged counts as claimed.
            let claimed = in_category
                && super::file_leases::current(staging, category, &name)
                    .map_or(true, |l| l.is_some());
            if claimed {
                continue;
            }
            match crate::binpkg::inspect(&e.path()) {
                Ok(pkg)
                    if Atom::parse(&format!("={}", pkg.cpv)).is_ok_and(|a| covers(atom, &a)) =>
                {
                    // Held to the lease's slot as an upload is (h18).
                    match slot_fits(atom, pkg.slot(), pkg.sub_slot()) {
                        Ok(()) => return Some(Ok(())),
                        Err(e) => problems.push(format!("{name}: {}", e.body.error)),
                    }
                }
                Ok(pkg) => problems.push(format!("{name} holds {}, not {atom}", pkg.cpv)),
                Err(why) => problems.push(format!("{name}: {why}")),
            }
        }
    }
    (!problems.is_empty()).then(|| Err(problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::{covers, discard_ended, record, slot_fits, uploaded_under};
    use swarm_core::{Atom, LeaseId};

    #[test]
    fn an_uploaded_package_under_a_kib_counts_as_uploaded() {
        // A minimal tbz2 (a virtual or config-only package) validates at
        // 600 bytes; v3's 1 KiB floor is for files no upload checked (h19).
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("acct-user")).expect("dir");
        std::fs::write(root.join("acct-user/tiny-1.tbz2"), vec![1u8; 600]).expect("file");
        let file = root.join("acct-user/tiny-1.tbz2");
        let meta = std::fs::metadata(&file).expect("stat");
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(std::fs::read(&file).expect("read")))
        };
        record(
            root,
            "farm-a",
            "acct-user",
            "tiny-1.tbz2",
            LeaseId(3),
            &sha,
            &meta,
        )
        .expect("recorded");
        let atom = Atom::parse("=acct-user/tiny-1").expect("atom");
        assert!(uploaded_under(root, &atom, LeaseId(3)));
        assert!(!uploaded_under(root, &atom, LeaseId(4)), "another lease");
    }

    /// Stages `body` at `app-misc/<file>` as an upload under `lease` does.
    fn stage_under(root: &std::path::Path, file: &str, body: &[u8], lease: u64) {
        use sha2::Digest;
        std::fs::create_dir_all(root.join("app-misc")).expect("dir");
        let tmp = root.join("app-misc/.tmp");
        std::fs::write(&tmp, body).expect("write");
        let sha = hex::encode(sha2::Sha256::digest(body));
        let meta = std::fs::metadata(&tmp).expect("stat");
        record(
            root,
            "farm-a",
            "app-misc",
            file,
            LeaseId(lease),
            &sha,
            &meta,
        )
        .expect("record");
        std::fs::rename(&tmp, root.join("app-misc").join(file)).expect("rename");
    }

    /// Every name a failed build's lease stored goes, and no other lease's file (h114 F4).
    #[test]
    fn a_failed_leases_every_name_leaves_staging() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        stage_under(root, "foo-1.gpkg.tar", b"first name", 7);
        stage_under(root, "foo-1-2.gpkg.tar", b"second name", 7);
        stage_under(root, "bar-1.gpkg.tar", b"another lease", 8);
        let mut removed = discard_ended(root, LeaseId(7));
        removed.sort();
        assert_eq!(
            removed,
            ["app-misc/foo-1-2.gpkg.tar", "app-misc/foo-1.gpkg.tar"]
        );
        assert!(root.join("app-misc/bar-1.gpkg.tar").is_file());
        assert!(discard_ended(root, LeaseId(7)).is_empty());
    }

    fn atom(text: &str) -> Atom {
        Atom::parse(text).expect("atom")
    }

    #[test]
    fn a_file_is_covered_only_by_a_lease_whose_operator_admits_its_version() {
        let file = |t: &str| atom(&format!("={t}"));
        assert!(covers(&atom(">=app-misc/foo-5"), &file("app-misc/foo-5.1")));
        assert!(!covers(&atom(">=app-misc/foo-5"), &file("app-misc/foo-1")));
        assert!(covers(&atom("<app-misc/foo-5"), &file("app-misc/foo-1")));
        assert!(covers(
            &atom("~app-misc/foo-1.2"),
            &file("app-misc/foo-1.2-r3")
        ));
        assert!(covers(
            &atom("=app-misc/foo-1.2*"),
            &file("app-misc/foo-1.2.7")
        ));
        assert!(!covers(&atom("=app-misc/foo-1*"), &file("app-misc/foo-10")));
        assert!(covers(&atom("app-misc/foo:2"), &file("app-misc/foo-99")));
        assert!(covers(&atom("foo"), &file("sys-apps/foo-1")));
        assert!(!covers(&atom("app-misc/foo"), &file("sys-apps/foo-1")));
        // An exact lease: its own file, with or without a build id.
        assert!(covers(
            &atom("=app-misc/foo-1.0"),
            &file("app-misc/foo-1.0-3")
        ));
        // Equal as Portage compares versions: what emerge builds for the atom (h18).
        assert!(covers(
            &atom("=app-misc/foo-1.0-r0"),
            &file("app-misc/foo-1.0")
        ));
        assert!(covers(&atom("=app-misc/foo-01"), &file("app-misc/foo-1")));
        assert!(!covers(
            &atom("=app-misc/foo-1.0"),
            &file("app-misc/foo-1.0-r1")
        ));
    }

    #[test]
    fn a_package_of_another_slot_than_the_lease_asks_for_is_refused() {
        assert!(slot_fits(&atom("app-misc/foo"), "3", None).is_ok());
        assert!(slot_fits(&atom("app-misc/foo:2"), "2", Some("5")).is_ok());
        assert!(slot_fits(&atom("app-misc/foo:2="), "2", None).is_ok());
        assert!(slot_fits(&atom("app-misc/foo:="), "7", None).is_ok());
        assert!(slot_fits(&atom("app-misc/foo:*"), "7", None).is_ok());
        assert!(slot_fits(&atom("app-misc/foo:2::gentoo"), "2", None).is_ok());
        let err = slot_fits(&atom("app-misc/foo:2"), "3", None).expect_err("slot 3");
        assert_eq!(err.status, 422);
        assert!(err.body.error.contains("SLOT 3"), "{}", err.body.error);
        assert!(slot_fits(&atom("app-misc/foo:2/5"), "2", Some("6")).is_err());
        assert!(slot_fits(&atom("app-misc/foo:2/5"), "2", Some("5")).is_ok());
    }
}
