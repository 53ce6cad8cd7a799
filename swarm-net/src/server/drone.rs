//! The drone endpoints of V3-PROTOCOL.md, plus swarm's lease-based
//! `/started` and `/return`. Each request becomes core inputs; the reply is
//! built from the core's verdict on them (`swarm_core::Verdict`: the work given,
//! what to stop, how a report was taken), never from its outputs.

use super::artifacts::artifact_present;
use super::env_pace::Pace;
use super::front::Request;
use super::http::{header, parse_json, read_body, ApiError, Query, Reply};
use super::identity::{act_as, forbid, Caller};
use super::jobs::{Done, Plan};
use super::shared::Shared;
use super::upload_lease;
use super::{claims, gate};
use crate::wire::{
    CompleteReply, CompleteRequest, LeaseRef, LeaseRequest, RegisterReply, RegisterRequest,
    StopWork, WorkReply,
};
use serde_json::json;
use swarm_core::{
    Announce, Atom, BuildEnv, DroneName, Epoch, FailureClass, Heartbeat, Input, LeaseId, Outcome,
    RejectReason, Report, Reported, RevokeReason, SpecFacts, Verdict, Work,
};

fn missing_id() -> ApiError {
    ApiError::field(400, "id", "Missing node ID")
}

fn unknown_drone(id: &str) -> ApiError {
    ApiError::field(
        404,
        "id",
        format!("unknown drone {id:?}; register first (POST /api/v1/register)"),
    )
}

fn atom_of(text: &str, field: &str) -> Result<Atom, ApiError> {
    Atom::parse(text).map_err(|e| ApiError::field(400, field, format!("bad atom {text:?}: {e}")))
}

/// v4 drones send only a name: their id is the UUIDv5 of it in the DNS namespace.
pub(crate) fn machine_id_of(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, name.as_bytes()).to_string()
}

fn percent(v: Option<f64>) -> Option<u8> {
    v.filter(|x| x.is_finite())
        .map(|x| x.clamp(0.0, 100.0).round() as u8)
}

/// The control plane's address as this drone reached it (the `Host` header).
fn orchestrator_host(req: &Request) -> String {
    let host = header(req, "Host").unwrap_or("127.0.0.1");
    // `[::1]:8100`, `10.0.0.1:8100` or a bare name.
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
    .trim_start_matches('[')
    .trim_end_matches(']')
    .to_string()
}

pub(crate) fn register(sh: &Shared, req: &mut Request, caller: &Caller) -> Result<Reply, ApiError> {
    let orchestrator = orchestrator_host(req);
    let body = read_body(req, sh.max_body)?;
    let r: RegisterRequest = parse_json(&body)?;
    claims::check_register(&r)?;
    if r.node_type.as_deref() == Some("orchestrator") {
        return Reply::ok(&json!({
            "status": "ignored",
            "message": "orchestrators do not register with swarm; only drones do",
        }));
    }
    let name_text = match (r.name.clone().or_else(|| r.node_name.clone()), &r.id) {
        (Some(name), _) => name,
        // A heartbeat with only its id keeps the name the drone registered
        // with, as a missing field keeps its value: taken as the name, the
        // id was refused as another drone's (its own) machine id (h14).
        (None, Some(id)) => sh
            .resolve(id)
            .map_or_else(|| id.clone(), |known| known.as_str().to_string()),
        (None, None) => return Err(missing_id()),
    };
    let field = match (&r.name, &r.node_name) {
        (Some(_), _) => "name",
        (None, Some(_)) => "node_name",
        (None, None) => "id",
    };
    let name = DroneName::new(name_text.clone())
        .map_err(|e| ApiError::field(400, field, format!("bad drone name {name_text:?}: {e}")))?;
    if name.as_str().bytes().all(|b| b == b'.') {
        // `/api/v1/nodes/../pause` is `/api/v1/pause` to every URL parser.
        return Err(ApiError::field(
            400,
            field,
            format!("bad drone name {name_text:?}: dots alone cannot be named in a URL"),
        ));
    }
    act_as(sh, caller, Some(name.as_str()), "register")?;
    if let Some(enrolled) = sh.creds.enrolled_like(name.as_str()) {
        return Err(forbid(
            sh,
            caller,
            format!(
                "the name {name} differs only in letter case from the enrolled drone {enrolled}; \
                 enroll it under its own name first (`swarm node enroll {name}`)"
            ),
        ));
    }
    // `known` holds every drone the core knows (seeded at start, added on
    // registration, dropped on removal), so the gate needs no look at the
    // core: a registration must not make the writer copy a large queue
    // (`Shared::fresh`), which would hold every other drone up meanwhile.
    if !sh.known.contains(&name) {
        gate::admit_new(
            &sh.drone_limits,
            &sh.registrations,
            sh.known.len(),
            name.as_str(),
        )?;
    }
    if let Some(owner) = sh.name_is_machine_id_of(&name) {
        return Err(ApiError::field(
            409,
            field,
            format!(
                "the name {name} is the machine id of the drone {owner}, whose calls name it by \
                 that id; give this drone another name (or remove {owner}: `swarm node remove {owner}`)"
            ),
        ));
    }
    let machine_id = r.id.clone().unwrap_or_else(|| machine_id_of(name.as_str()));
    // Calls name a drone by machine id or by name: one drone's machine id
    // that is another's name would take that drone's calls over.
    if let Some(other) = sh.machine_id_names_another(&machine_id, &name) {
        return Err(ApiError::field(
            409,
            "id",
            format!(
                "machine id {machine_id:?} is the name of another drone ({other}); \
                 a drone's machine id must not be another drone's name"
            ),
        ));
    }
    // A machine id already bound to another enrolled drone is not up for grabs.
    if let Some(other) = sh.resolve(&machine_id).filter(|o| *o != name) {
        if sh.creds.is_enrolled(other.as_str()) {
            return Err(forbid(
                sh,
                caller,
                format!("machine id {machine_id:?} belongs to the enrolled drone {other}"),
            ));
        }
    }
    let address = probe_address(
        sh,
        caller,
        super::identity::effective_peer(sh, req),
        r.ip.as_deref(),
    );
    let current_task = match &r.current_task {
        Some(Some(t)) if !t.trim().is_empty() => Some(atom_of(t, "current_task")?),
        _ => None,
    };
    let caps = r.capabilities.clone().unwrap_or_default();
    let metrics = r.metrics.clone().unwrap_or_default();

    let env = match caps.env.clone() {
        Some(vars) => Some(
            BuildEnv::new(vars)
                .map_err(|e| ApiError::field(400, "capabilities.env", e.to_string()))?,
        ),
        None => None,
    };
    let env_held = env.as_ref().is_some_and(|e| !env_may_change(sh, &name, e));
    let env = env.filter(|_| !env_held);
    // What the drone said, as said: the core merges it into the spec it holds
    // (a field left out keeps its value) and decides what changed.
    let said = SpecFacts {
        machine_id: Some(machine_id.clone()),
        cores: caps.cores,
        ram_mb: caps
            .ram_gb
            .filter(|g| g.is_finite() && *g >= 0.0)
            .map(|g| (g * 1024.0).round() as u64),
        arch: caps.arch.clone(),
        kind: r.kind,
        version: r.version.clone(),
    };
    let beat = Heartbeat {
        drone: name.clone(),
        epoch: r.epoch.map(Epoch),
        health: r.health,
        mem_percent: percent(metrics.ram_percent),
        disk_percent: percent(r.disk_percent.or(metrics.disk_percent)),
        load_centi: metrics
            .load_1m
            .filter(|l| l.is_finite() && *l >= 0.0)
            .map(|l| (l * 100.0).round() as u32),
        leases: r
            .leases
            .clone()
            .map(|v| v.into_iter().map(LeaseId).collect()),
        started: r
            .started
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(LeaseId)
            .collect(),
        current_task: current_task.clone(),
        reports_task: r.current_task.is_some(),
        // A drone that sends no snapshot of its own has it in its fingerprint (`SNAPSHOT.gentoo`).
        portage_snapshot: caps
            .portage_timestamp
            .clone()
            .or_else(|| env.as_ref().and_then(BuildEnv::main_snapshot)),
        env,
    };
    let announce = Input::Announce(Announce { said, beat });
    let done = sh.submit(Plan::Inputs(vec![announce]), Some(name.clone()), false)?;
    sh.remember(&machine_id, &name, address.as_deref());
    sh.note_cpu(&name, metrics.cpu_percent);
    sh.note_task(&name, &r.current_task);
    let now = drone_now(&done)?;
    if now.known {
        sh.known.insert(&name);
    }

    let stop_work = now.stop_work().map(|r| StopWork {
        package: r.package.as_str().to_string(),
        reason: r.reason.to_string(),
        reassigned_to: reassigned(&r.reason),
    });
    let (slots, cores_per_slot) = {
        let p = sh.published();
        let slots = p.swarm.view().drone(&name).map(|d| d.slots);
        (slots, Some(p.swarm.config().cores_per_slot))
    };
    Reply::ok(&RegisterReply {
        slots,
        cores_per_slot,
        status: "registered".into(),
        orchestrator: Some(orchestrator),
        orchestrator_port: Some(sh.port),
        orchestrator_name: Some("swarm".into()),
        message: None,
        revoke: revokes(now),
        stop_work,
        paused: now.paused,
        epoch: Some(now.epoch.0),
        leases: lease_refs(now),
        max_artifact_bytes: Some(sh.max_artifact),
        farm_id: Some(sh.farm_id.clone()),
        upload_check: true,
        env_held,
    })
}

/// Whether a drone's reported environment goes into its heartbeat: yes when
/// it is the one accepted last, or the first change in a minute
/// (`env_pace`); a change sooner than that is left out, so the drone keeps
/// its environment until a later heartbeat brings the change again.
fn env_may_change(sh: &Shared, name: &DroneName, env: &BuildEnv) -> bool {
    match sh.env_pace.pace(name, env, std::time::Instant::now()) {
        Pace::Take => true,
        Pace::Hold { first } => {
            if first {
                tracing::warn!(
                    drone = %name,
                    "build environment change held back: it changed less than {} s ago (each change is logged in full); a heartbeat after that brings it",
                    super::env_pace::ENV_CHANGE_EVERY.as_secs()
                );
            }
            false
        }
    }
}

/// The address the prober may use for this drone: the address it called
/// from, or the one it claims when that is inside the operator's
/// `probe.networks` (or, for a credential-less drone, its legacy network),
/// so no caller can aim the prober at a host of its choosing.
fn probe_address(
    sh: &Shared,
    caller: &Caller,
    peer: std::net::IpAddr,
    claimed: Option<&str>,
) -> Option<String> {
    let claimed_ip = claimed.and_then(|c| c.trim().parse::<std::net::IpAddr>().ok());
    let allowed = |ip: &std::net::IpAddr| {
        sh.drone_limits
            .probe_networks
            .iter()
            .any(|n| n.contains(ip))
            || (matches!(caller, Caller::Legacy(_)) && sh.legacy_allowed(*ip))
    };
    if let Some(ip) = claimed_ip.filter(|ip| *ip != peer && !allowed(ip)) {
        sh.refusals.note(&peer.to_string(), || {
            format!(
                "drone at {peer} claimed ip {ip}, outside probe.networks: the prober uses {peer}"
            )
        });
    }
    Some(claimed_ip.filter(allowed).unwrap_or(peer).to_string())
}

/// The core's verdict on the request: what every drone reply is made from.
fn drone_now(done: &Done) -> Result<&Verdict, ApiError> {
    done.verdict
        .as_ref()
        .ok_or_else(|| ApiError::internal("the writer did not report the core's verdict"))
}

fn lease_refs(now: &Verdict) -> Vec<LeaseRef> {
    now.leases
        .iter()
        .map(|l| LeaseRef {
            lease: l.lease.0,
            package: l.package.as_str().to_string(),
        })
        .collect()
}

fn reassigned(reason: &RevokeReason) -> Option<String> {
    match reason {
        RevokeReason::ReassignedTo { drone } => Some(drone.as_str().to_string()),
        _ => None,
    }
}

/// Every package the drone must stop (those just revoked, then those still pending).
fn revokes(now: &Verdict) -> Vec<String> {
    now.revokes.iter().map(|a| a.as_str().to_string()).collect()
}

pub(crate) fn work(sh: &Shared, url: &str, caller: &Caller) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let id = q.get("id").or(q.get("node")).or(q.get("node_name"));
    if id.is_none() && !matches!(caller, Caller::Drone(_)) {
        return work_error(400, "Missing node ID");
    }
    let Some(name) = act_as(sh, caller, id, "ask for work")? else {
        return work_error(404, "unknown drone; register first");
    };
    let free_slots = match q.get("free_slots") {
        None => None,
        Some(v) => {
            let n = v.parse::<u64>().map_err(|_| {
                ApiError::field(
                    400,
                    "free_slots",
                    format!("`free_slots` must be a whole number, got {v:?}"),
                )
            })?;
            Some(claims::check_free_slots(n)?)
        }
    };
    if sh.env_pace.holding(&name) {
        return Reply::ok(&WorkReply {
            reason: Some(format!(
                "its build environment changed again within {} s of the last change; no new \
                 work until a heartbeat brings the change in",
                super::env_pace::ENV_CHANGE_EVERY.as_secs()
            )),
            farm_id: Some(sh.farm_id.clone()),
            ..WorkReply::default()
        });
    }
    let done = sh.submit(
        Plan::Inputs(vec![Input::RequestWork {
            drone: name.clone(),
            free_slots,
        }]),
        Some(name.clone()),
        false,
    )?;
    let now = drone_now(&done)?;
    if !now.known {
        return work_error(404, "unknown drone; register first");
    }
    let revoke = revokes(now);
    let reply = match &now.work {
        Some(Work::SyncPortage { expected }) => {
            return Reply::ok(&WorkReply {
                action: Some("sync_portage".into()),
                expected_timestamp: Some(expected.clone()),
                revoke,
                ..WorkReply::default()
            });
        }
        // A new lease, or (a v3 drone polling while it holds one) the one it holds.
        Some(Work::Given {
            package,
            lease,
            profile,
            ..
        }) => WorkReply {
            package: Some(package.as_str().to_string()),
            lease: Some(lease.0),
            profile: profile.clone(),
            ..WorkReply::default()
        },
        Some(Work::Nothing { reason }) => WorkReply {
            reason: Some(reason.clone()),
            ..WorkReply::default()
        },
        None => {
            return Err(ApiError::internal(
                "the core gave no verdict on the request for work",
            ))
        }
    };
    Reply::ok(&WorkReply {
        packages: lease_refs(now),
        revoke,
        farm_id: Some(sh.farm_id.clone()),
        ..reply
    })
}

fn work_error(status: u16, error: &str) -> Result<Reply, ApiError> {
    Ok(Reply::Json(
        status,
        json!({"package": null, "error": error, "field": "id"}),
    ))
}

pub(crate) fn complete(sh: &Shared, req: &mut Request, caller: &Caller) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let r: CompleteRequest = parse_json(&body)?;
    claims::check_complete(&r)?;
    upload_lease::same_farm(sh, r.farm_id.as_deref(), "farm_id")?;
    let id =
        r.id.clone()
            .or_else(|| r.node.clone())
            .or_else(|| r.node_name.clone());
    let package = r
        .package
        .clone()
        .ok_or_else(|| ApiError::field(400, "package", "Missing package"))?;
    let atom = atom_of(&package, "package")?;
    let name = identify(sh, caller, id.as_deref(), "report")?;
    let status = r.status.clone().unwrap_or_else(|| "failed".into());
    let detail = r
        .error_detail
        .clone()
        .or_else(|| r.error.clone())
        .map(|d| claims::cut(d, claims::MAX_DETAIL))
        .unwrap_or_default();
    let (outcome, recorded) = match status.as_str() {
        "success" | "ok" | "built" => {
            // The lease's own upload (any version of the package for an atom that names
            // no file, as the agent reports in `artifacts`), in the staging tree of the
            // lease's profile; another lease's file never counts. A virtual package has no
            // binary, so no lease is looked up: that reads a fresh copy of the state, which on a
            // large queue cost every report a copy of the core (173 instead of 8,000 reports a
            // second under `swarm bench http`).
            let is_virtual = atom.is_virtual();
            let bound = (!is_virtual)
                .then(|| upload_lease::report_lease(sh, &name, &atom, r.lease))
                .flatten();
            let root = bound
                .as_ref()
                .map_or_else(|| sh.staging.clone(), |b| b.root.clone());
            let under_lease = || {
                bound
                    .as_ref()
                    .is_some_and(|b| upload_lease::uploaded_under(&b.root, &atom, b.lease))
            };
            // A v3 drone (no credential, from a legacy network) rsyncs its binary in;
            // the file must pass the checks an upload passes.
            let rsynced = || {
                matches!(caller, Caller::Legacy(_))
                    .then(|| upload_lease::unclaimed_valid(&root, &atom, sh.max_artifact))
                    .flatten()
            };
            let rsync = if is_virtual || under_lease() {
                Some(Ok(()))
            } else {
                rsynced()
            };
            if let Some(Ok(())) = rsync {
                (Outcome::Success, "built")
            } else if let Some(Err(why)) = rsync {
                // Facts for the core, which decides what an undelivered build costs.
                (
                    Outcome::Undelivered {
                        detail: claims::cut(
                            format!("invalid_binary: reported built, but what staging holds for it is not a valid binary package of it: {why}"),
                            claims::MAX_DETAIL,
                        ),
                    },
                    "invalid_binary",
                )
            } else {
                (
                    Outcome::Undelivered {
                        detail: format!(
                            "missing_binary: reported built, but no {}/{}*.gpkg.tar (or .tbz2) of at least 1 KiB was uploaded under this lease into staging {}{}",
                            atom.category(),
                            atom.pf(),
                            root.display(),
                            if artifact_present(&root, &atom) { " (one from another lease is there)" } else { "" }
                        ),
                    },
                    "missing_binary",
                )
            }
        }
        "returned" => (
            Outcome::Returned {
                reason: if detail.is_empty() {
                    "returned by the drone".into()
                } else {
                    detail.clone()
                },
            },
            "returned",
        ),
        "upload_failed" => (
            Outcome::UploadFailed {
                detail: detail.clone(),
            },
            "upload_failed",
        ),
        "masked" => (Outcome::Masked, "masked"),
        other => {
            let detail = if detail.is_empty() && other != "failed" {
                claims::cut(other.to_string(), claims::MAX_DETAIL)
            } else {
                detail.clone()
            };
            // A v3 drone sends no class: the shared classifier reads it from
            // its error text (a fetch failure is the mirror's fault, not the
            // package's), else it is a build failure as v3 counted it.
            let class = r
                .failure_class
                .unwrap_or_else(|| swarm_core::failure::classify(&detail, FailureClass::Build).0);
            (Outcome::Failed { class, detail }, "failed")
        }
    };
    let duration_ms = r
        .build_duration_s
        .or(r.duration)
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| (d * 1000.0).round() as u64);
    let report = Report {
        drone: name.clone(),
        package: atom,
        lease: r.lease.map(LeaseId),
        epoch: r.epoch.map(Epoch),
    };
    let input = Input::BuildFinished {
        report: report.clone(),
        outcome,
        duration_ms,
    };
    let done = sh.submit(Plan::Inputs(vec![input]), Some(name), false)?;
    if recorded != "built" {
        discard_unbuilt(sh, &done, &report);
    }
    report_reply(sh, caller, &done, &report, recorded)
}

/// Once a build that named its lease was recorded as anything but a success, the binary its
/// upload placed leaves staging (`upload_lease::discard_ended`). A report without a lease (a
/// v3 drone's) leaves it to the next release create.
fn discard_unbuilt(sh: &Shared, done: &Done, report: &Report) {
    let recorded = done
        .verdict
        .as_ref()
        .is_some_and(|v| matches!(v.report, Some(Reported::Accepted)));
    if let (true, Some(lease)) = (recorded, report.lease) {
        upload_lease::discard_ended(&sh.staging, lease);
    }
}

/// The drone a report is from: the caller itself (a credential-less caller
/// names a drone no one has enrolled).
fn identify(
    sh: &Shared,
    caller: &Caller,
    id: Option<&str>,
    what: &str,
) -> Result<DroneName, ApiError> {
    if id.is_none() && !matches!(caller, Caller::Drone(_)) {
        return Err(missing_id());
    }
    act_as(sh, caller, id, what)?.ok_or_else(|| unknown_drone(id.unwrap_or_default()))
}

/// The v3 reply to a report: accepted, recorded, or stale with `stop_work`.
fn report_reply(
    sh: &Shared,
    caller: &Caller,
    done: &Done,
    report: &Report,
    recorded: &str,
) -> Result<Reply, ApiError> {
    let built = match &drone_now(done)?.report {
        Some(Reported::Built) => true,
        Some(Reported::Accepted) => false,
        // Sent again after a lost reply: answered as the first time, marked so the drone's log
        // can tell.
        Some(Reported::Repeated { built }) => {
            return Reply::ok(&CompleteReply {
                status: "ok".into(),
                accepted: *built,
                recorded: Some("repeated".into()),
                ..CompleteReply::default()
            })
        }
        Some(Reported::Rejected {
            reason: RejectReason::UnknownDrone { drone },
        }) => return Err(unknown_drone(drone.as_str())),
        Some(Reported::Rejected { reason }) => {
            return Err(ApiError::new(409, format!("refused: {reason:?}")))
        }
        // Naming another drone's live lease is an attempt on it, not a late report: refused
        // (and noted as a refusal) as a 409 on `lease`, which a drone reads as "this lease is
        // not mine" and stops; as a 403 it read as its own credential refused, and a drone
        // renamed on the same work dir retried its predecessor's report for ever (h36 F4).
        Some(Reported::Stale {
            holder: Some(holder),
            ..
        }) if report.lease.is_some() => {
            let why = format!(
                "{} is leased to {holder}, not to {}; nothing was recorded",
                report.package, report.drone
            );
            let refused = forbid(sh, caller, why.clone());
            // A caller without a credential naming an enrolled drone's lease is refused as
            // such; naming another credential-less drone's, the lease is simply not its own
            // (h38 F3: a renamed open drone retried it for ever too).
            return Err(match caller {
                Caller::Legacy(_) if sh.creds.is_enrolled(holder.as_str()) => refused,
                _ => ApiError::field(409, "lease", why),
            });
        }
        // A late report, or a lease-less one (v3) on a package given to another drone since:
        // the protocol's stale answer, which tells the drone to stop.
        Some(Reported::Stale { revoke, holder }) => {
            let to = reassigned(revoke).or_else(|| holder.as_ref().map(|h| h.as_str().to_string()));
            let reason = match (&to, reassigned(revoke)) {
                (Some(to), None) => format!("work reassigned to {to}"),
                _ => revoke.to_string(),
            };
            return Reply::ok(&CompleteReply {
                status: "ok".into(),
                accepted: false,
                stale: true,
                action: Some("stop_work".into()),
                reason: Some(reason),
                reassigned_to: to,
                recorded: Some("stale".into()),
            });
        }
        None => return Err(ApiError::internal("the core gave no verdict on the report")),
    };
    Reply::ok(&CompleteReply {
        status: "ok".into(),
        accepted: built,
        recorded: Some(recorded.to_string()),
        ..CompleteReply::default()
    })
}

fn lease_report(
    sh: &Shared,
    req: &mut Request,
    caller: &Caller,
) -> Result<(LeaseRequest, Report), ApiError> {
    let body = read_body(req, sh.max_body)?;
    let r: LeaseRequest = parse_json(&body)?;
    let id = r.id.clone().or_else(|| r.node_name.clone());
    let name = identify(sh, caller, id.as_deref(), "report")?;
    upload_lease::same_farm(sh, r.farm_id.as_deref(), "farm_id")?;
    let package = match (&r.package, r.lease) {
        (Some(p), _) => atom_of(p, "package")?,
        (None, Some(lease)) => sh
            .fresh()
            .swarm
            .view()
            .lease(LeaseId(lease))
            .map(|l| l.package)
            .ok_or_else(|| {
                ApiError::field(
                    404,
                    "lease",
                    format!("lease {lease} is not live; send `package` too"),
                )
            })?,
        (None, None) => return Err(ApiError::field(400, "lease", "send `lease` or `package`")),
    };
    let report = Report {
        drone: name,
        package,
        lease: r.lease.map(LeaseId),
        epoch: r.epoch.map(Epoch),
    };
    Ok((r, report))
}

pub(crate) fn started(sh: &Shared, req: &mut Request, caller: &Caller) -> Result<Reply, ApiError> {
    let (_, report) = lease_report(sh, req, caller)?;
    let done = sh.submit(
        Plan::Inputs(vec![Input::BuildStarted(report.clone())]),
        Some(report.drone.clone()),
        false,
    )?;
    match report_reply(sh, caller, &done, &report, "started")? {
        Reply::Json(200, mut v) => {
            if v.get("stale").is_none() {
                v["accepted"] = json!(true);
            }
            Ok(Reply::Json(200, v))
        }
        other => Ok(other),
    }
}

pub(crate) fn give_back(
    sh: &Shared,
    req: &mut Request,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    let (r, report) = lease_report(sh, req, caller)?;
    let input = Input::BuildFinished {
        report: report.clone(),
        outcome: Outcome::Returned {
            reason: claims::returned_reason(r.reason),
        },
        duration_ms: None,
    };
    let done = sh.submit(Plan::Inputs(vec![input]), Some(report.drone.clone()), false)?;
    discard_unbuilt(sh, &done, &report);
    report_reply(sh, caller, &done, &report, "returned")
}

/// `POST /api/v1/deregister` (`{"node_name": …, "reason": …}`): the agent
/// is stopping cleanly. The drone shows as stopped, not failing; whatever
/// it still holds goes back to the queue. Registering again undoes it.
pub(crate) fn deregister(
    sh: &Shared,
    req: &mut Request,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    let body = read_body(req, sh.max_body)?;
    let r: LeaseRequest = parse_json(&body)?;
    let id = r.id.clone().or_else(|| r.node_name.clone());
    let name = identify(sh, caller, id.as_deref(), "deregister")?;
    let input = Input::Deregister {
        drone: name.clone(),
    };
    let done = sh.submit(Plan::Inputs(vec![input]), Some(name.clone()), false)?;
    let returned = drone_now(&done)?.returned;
    tracing::info!(
        drone = %name,
        reason = claims::cut(r.reason.unwrap_or_else(|| "not given".into()), claims::MAX_TEXT),
        returned,
        "drone stopped cleanly"
    );
    Reply::ok(&json!({"status": "stopped", "drone": name, "returned": returned, "seq": done.seq}))
}
