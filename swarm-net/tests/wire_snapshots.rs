//! The JSON bodies v3 drones and tools read, frozen: a change to a reply
//! shape must show up as a reviewed snapshot diff.

use swarm_net::wire::{
    ArtifactReply, CompleteReply, CompleteRequest, ErrorBody, LeaseRef, LeaseRequest,
    RegisterReply, RegisterRequest, StopWork, WorkReply,
};

fn leases() -> Vec<LeaseRef> {
    vec![LeaseRef {
        lease: 7,
        package: "=dev-libs/foo-1.0".into(),
    }]
}

#[test]
fn register_replies() {
    let plain = RegisterReply {
        status: "registered".into(),
        orchestrator: Some("127.0.0.1".into()),
        orchestrator_port: Some(8100),
        orchestrator_name: Some("swarm".into()),
        message: None,
        revoke: Vec::new(),
        stop_work: None,
        paused: false,
        epoch: Some(1),
        leases: Vec::new(),
        slots: None,
        cores_per_slot: None,
        max_artifact_bytes: None,
        farm_id: None,
        upload_check: false,
        env_held: false,
    };
    insta::assert_json_snapshot!("register_reply_plain", plain);
    let slots = RegisterReply {
        slots: Some(1),
        cores_per_slot: Some(4),
        max_artifact_bytes: Some(2 << 30),
        farm_id: Some("0f6b2c1e9a7d4e3b".into()),
        upload_check: true,
        env_held: true,
        ..plain.clone()
    };
    insta::assert_json_snapshot!("register_reply_slots", slots);
    let busy = RegisterReply {
        revoke: vec!["=dev-libs/bar-2.0".into()],
        stop_work: Some(StopWork {
            package: "=dev-libs/bar-2.0".into(),
            reason: "work reassigned to drone-beta".into(),
            reassigned_to: Some("drone-beta".into()),
        }),
        paused: true,
        leases: leases(),
        ..plain
    };
    insta::assert_json_snapshot!("register_reply_revoke_paused", busy);
}

#[test]
fn work_replies() {
    insta::assert_json_snapshot!(
        "work_reply_nothing",
        WorkReply {
            reason: Some("paused by an operator".into()),
            ..WorkReply::default()
        }
    );
    insta::assert_json_snapshot!(
        "work_reply_package",
        WorkReply {
            package: Some("=dev-libs/foo-1.0".into()),
            lease: Some(7),
            packages: leases(),
            ..WorkReply::default()
        }
    );
    insta::assert_json_snapshot!(
        "work_reply_sync",
        WorkReply {
            action: Some("sync_portage".into()),
            expected_timestamp: Some("2026-02-17 00:00".into()),
            revoke: vec!["=dev-libs/old-1".into()],
            ..WorkReply::default()
        }
    );
}

#[test]
fn complete_replies() {
    insta::assert_json_snapshot!(
        "complete_reply_accepted",
        CompleteReply {
            status: "ok".into(),
            accepted: true,
            recorded: Some("built".into()),
            ..CompleteReply::default()
        }
    );
    insta::assert_json_snapshot!(
        "complete_reply_stale",
        CompleteReply {
            status: "ok".into(),
            accepted: false,
            stale: true,
            action: Some("stop_work".into()),
            reason: Some("work reassigned to drone-beta".into()),
            reassigned_to: Some("drone-beta".into()),
            recorded: Some("stale".into()),
        }
    );
}

#[test]
fn requests_and_errors() {
    let agent_heartbeat = RegisterRequest {
        node_name: Some("drone-alpha".into()),
        id: Some("0123456789abcdef".into()),
        epoch: Some(3),
        leases: Some(vec![7, 9]),
        started: Some(vec![7]),
        current_task: Some(Some("=dev-libs/foo-1.0".into())),
        ..RegisterRequest::default()
    };
    insta::assert_json_snapshot!("register_request_agent", agent_heartbeat);
    insta::assert_json_snapshot!(
        "complete_request_agent",
        CompleteRequest {
            id: Some("0123456789abcdef".into()),
            package: Some("=dev-libs/foo-1.0".into()),
            status: Some("success".into()),
            build_duration_s: Some(42.5),
            lease: Some(7),
            epoch: Some(3),
            sha256: Some("ab".repeat(32)),
            ..CompleteRequest::default()
        }
    );
    insta::assert_json_snapshot!(
        "lease_request_return",
        LeaseRequest {
            node_name: Some("drone-alpha".into()),
            lease: Some(7),
            package: Some("=dev-libs/foo-1.0".into()),
            epoch: Some(3),
            reason: Some("shutting down (--on-stop return)".into()),
            ..LeaseRequest::default()
        }
    );
    insta::assert_json_snapshot!(
        "error_body",
        ErrorBody {
            error: "Missing package".into(),
            field: Some("package".into()),
        }
    );
    insta::assert_json_snapshot!(
        "artifact_reply",
        ArtifactReply {
            status: "stored".into(),
            path: "dev-libs/foo-1.0.gpkg.tar".into(),
            size: 4096,
            sha256: "cd".repeat(32),
        }
    );
}
