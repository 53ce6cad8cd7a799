//! Freezes the JSON log format (DESIGN §2, §4): every `Input` variant in an `Envelope`, every
//! `Control` action, `Outcome` and `ProbeStatus`, and every `Output` (every `Command`, every
//! `Event`, every `RevokeReason`, `RejectReason`, `BlockReason`, `ReclaimReason` and
//! `EscalationAction`). The store writes exactly these shapes into `input_log` and `outbox`, so a
//! change here is a log migration: review the snapshot diff, never accept it blindly.
//!
//! Each value is also checked to round-trip through `serde_json`, and the `*_is_frozen` tests use
//! exhaustive `match`es, so adding a variant without a snapshot fails to compile.
//!
//! Regenerate after an intended change: `INSTA_UPDATE=always cargo test -p swarm-core --test
//! snapshots`, then review `git diff swarm-core/tests/snapshots/`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Debug;
use swarm_core::health::DroneHealth;
use swarm_core::*;

/// Snapshots `value` as JSON with sorted keys and checks it round-trips.
fn check<T>(name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let text = serde_json::to_string(value).expect("serialises");
    let back: T = serde_json::from_str(&text).expect("deserialises what it serialised");
    assert_eq!(&back, value, "{name} does not round-trip through {text}");
    let json = serde_json::to_value(value).expect("serialises to a JSON value");
    let from_json: T = serde_json::from_value(json.clone()).expect("deserialises a JSON value");
    assert_eq!(&from_json, value, "{name} does not round-trip as a value");
    // `snapshots::event::built` is stored as `snapshots__event__built.snap`.
    let file = name.trim_start_matches("snapshots::").replace("::", "__");
    insta::with_settings!({ sort_maps => true, omit_expression => true }, {
        insta::assert_json_snapshot!(file, json);
    });
}

fn build_env() -> BuildEnv {
    BuildEnv::new(
        [
            ("CFLAGS", "-O2 -pipe -march=x86-64-v3"),
            ("CHOST", "x86_64-pc-linux-gnu"),
            ("USE", "ssl X -doc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    )
    .expect("a valid environment")
}

fn atom(text: &str) -> Atom {
    Atom::parse(text).expect("a valid atom")
}

fn drone(name: &str) -> DroneName {
    DroneName::new(name).expect("a valid drone name")
}

fn alpha() -> DroneName {
    drone("drone-alpha")
}

fn icu() -> Atom {
    atom("dev-libs/icu-74.2")
}

fn envelope(input: Input) -> Envelope {
    Envelope {
        seq: Seq(42),
        at: Timestamp(1_700_000_000_000),
        input,
    }
}

fn report() -> Report {
    Report {
        drone: alpha(),
        package: icu(),
        lease: Some(LeaseId(7)),
        epoch: Some(Epoch(2)),
    }
}

fn finished_with(outcome: Outcome) -> Envelope {
    envelope(Input::BuildFinished {
        report: report(),
        outcome,
        duration_ms: Some(312_000),
    })
}

fn probe_with(status: ProbeStatus) -> Envelope {
    envelope(Input::ProbeResult {
        drone: alpha(),
        status,
    })
}

fn figures_with(reach: ProbeReach) -> Envelope {
    let seen = reach == ProbeReach::Reached;
    envelope(Input::ProbeFigures(ProbeFigures {
        drone: alpha(),
        reach,
        service_up: seen.then_some(true),
        load_centi: seen.then_some(1_520),
        cores: seen.then_some(8),
        disk_percent: seen.then_some(88),
        mem_percent: seen.then_some(41),
    }))
}

fn control_with(action: Control) -> Envelope {
    envelope(Input::Control(action))
}

fn command(c: Command) -> Output {
    Output::Command(c)
}

fn event(e: Event) -> Output {
    Output::Event(e)
}

fn revoke_with(reason: RevokeReason) -> Output {
    command(Command::Revoke {
        drone: alpha(),
        lease: Some(LeaseId(7)),
        package: Some(icu()),
        reason,
    })
}

fn rejected_with(reason: RejectReason) -> Output {
    event(Event::InputRejected { reason })
}

fn blocked_with(reason: BlockReason) -> Output {
    event(Event::Blocked {
        package: icu(),
        reason,
    })
}

fn reclaimed_with(reason: ReclaimReason) -> Output {
    event(Event::Reclaimed {
        drone: alpha(),
        package: icu(),
        lease: LeaseId(7),
        reason,
        started: true,
    })
}

fn escalate_with(action: EscalationAction) -> Output {
    command(Command::Escalate {
        drone: alpha(),
        action,
    })
}

/// One `#[test]` per sample, named after it, plus `all()` returning every sample for the
/// coverage checks.
macro_rules! frozen {
    ($ty:ty { $($(#[$attr:meta])* $name:ident => $value:expr,)* }) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                crate::check(concat!(module_path!(), "::", stringify!($name)), &$value);
            }
        )*

        #[allow(dead_code)]
        pub(crate) fn all() -> Vec<$ty> {
            vec![$($value),*]
        }
    };
}

mod input {
    use super::*;

    frozen!(Envelope {
        register => envelope(Input::Register(DroneSpec {
            name: alpha(),
            machine_id: Some("4c4c4544-0042-3510-8052-b4c04f564433".into()),
            cores: 24,
            ram_mb: 65_536,
            arch: Some("amd64".into()),
            labels: vec!["fast-disk".into(), "rack-2".into()],
            kind: DroneKind::Lxc,
            portage_snapshot: Some("Mon, 18 Nov 2024 00:45:01 +0000".into()),
            version: Some("0.1.0".into()),
            env: build_env(),
        })),
        register_v3_minimal => envelope(Input::Register(DroneSpec {
            name: drone("drone-legacy"),
            cores: 8,
            ram_mb: 16_384,
            ..DroneSpec::default()
        })),
        heartbeat => envelope(Input::Heartbeat(Heartbeat {
            drone: alpha(),
            epoch: Some(Epoch(2)),
            health: Some(DroneHealth::Degraded),
            mem_percent: Some(87),
            disk_percent: Some(41),
            load_centi: Some(2_350),
            leases: Some(vec![LeaseId(7), LeaseId(9)]),
            started: vec![LeaseId(7)],
            current_task: Some(icu()),
            reports_task: false,
            portage_snapshot: Some("Tue, 19 Nov 2024 00:45:01 +0000".into()),
            env: Some(build_env()),
        })),
        heartbeat_v3_minimal => envelope(Input::Heartbeat(Heartbeat {
            drone: drone("drone-legacy"),
            ..Heartbeat::default()
        })),
        announce => envelope(Input::Announce(Announce {
            said: SpecFacts {
                machine_id: Some("4c4c4544-0042-3510-8052-b4c04f564433".into()),
                cores: Some(24),
                ram_mb: Some(65_536),
                arch: Some("amd64".into()),
                kind: Some(DroneKind::Lxc),
                version: Some("0.1.0".into()),
            },
            beat: Heartbeat {
                drone: alpha(),
                health: Some(DroneHealth::Healthy),
                leases: Some(vec![LeaseId(7)]),
                portage_snapshot: Some("Tue, 19 Nov 2024 00:45:01 +0000".into()),
                env: Some(build_env()),
                ..Heartbeat::default()
            },
        })),
        announce_unchanged => envelope(Input::Announce(Announce {
            said: SpecFacts::default(),
            beat: Heartbeat {
                drone: drone("drone-legacy"),
                ..Heartbeat::default()
            },
        })),
        request_work => envelope(Input::RequestWork {
            drone: alpha(),
            free_slots: Some(3),
        }),
        request_work_v3 => envelope(Input::RequestWork {
            drone: drone("drone-legacy"),
            free_slots: None,
        }),
        build_started => envelope(Input::BuildStarted(report())),
        build_started_legacy => envelope(Input::BuildStarted(Report {
            drone: drone("drone-legacy"),
            package: icu(),
            lease: None,
            epoch: None,
        })),
        build_finished => finished_with(Outcome::Success),
        build_finished_legacy => envelope(Input::BuildFinished {
            report: Report {
                drone: drone("drone-legacy"),
                package: icu(),
                lease: None,
                epoch: None,
            },
            outcome: Outcome::Success,
            duration_ms: None,
        }),
        probe_result => probe_with(ProbeStatus::Unreachable),
        probe_figures => figures_with(ProbeReach::Reached),
        enqueue => envelope(Input::Enqueue(Enqueue {
            packages: vec![
                PackageSpec::new(atom("sys-devel/gcc-13.2.1_p20240113-r1")),
                PackageSpec {
                    deps: vec![atom("sys-devel/gcc-13.2.1_p20240113-r1")],
                    ..PackageSpec::new(icu())
                },
                PackageSpec {
                    deps: vec![icu(), atom("dev-lang/python:3.12")],
                    priority: 10,
                    estimate_s: Some(5_400),
                    ..PackageSpec::new(atom("dev-qt/qtwebengine-6.7.2-r1:6"))
                },
            ],
            generation: Some(Generation(3)),
            portage_snapshot: Some("Tue, 19 Nov 2024 00:45:01 +0000".into()),
        })),
        enqueue_minimal => envelope(Input::Enqueue(Enqueue {
            packages: vec![PackageSpec::new(atom("app-misc/jq"))],
            ..Enqueue::default()
        })),
        control => control_with(Control::Pause),
        release => envelope(Input::Release(ReleaseNote {
            action: "published".into(),
            release: "20261202-1130".into(),
            detail: "1,204 packages".into(),
        })),
        recovered => envelope(Input::Recovered),
        tick => envelope(Input::Tick),
        deregister => envelope(Input::Deregister { drone: alpha() }),
    });
}

mod control {
    use super::*;

    frozen!(Envelope {
        pause => control_with(Control::Pause),
        resume => control_with(Control::Resume),
        pause_drone => control_with(Control::PauseDrone { drone: alpha() }),
        resume_drone => control_with(Control::ResumeDrone { drone: alpha() }),
        drain => control_with(Control::Drain { drone: alpha() }),
        undrain => control_with(Control::Undrain { drone: alpha() }),
        unblock_one => control_with(Control::Unblock { package: Some(icu()), profile: None }),
        unblock_all => control_with(Control::Unblock { package: None, profile: None }),
        block => control_with(Control::Block { package: icu(), profile: None }),
        block_in_profile => control_with(Control::Block { package: icu(), profile: Some("server".into()) }),
        unground_one => control_with(Control::Unground { drone: Some(alpha()) }),
        unground_all => control_with(Control::Unground { drone: None }),
        reset => control_with(Control::Reset),
        rebalance => control_with(Control::Rebalance),
        clear_failures => control_with(Control::ClearFailures),
        retry_failures => control_with(Control::RetryFailures),
        retry => control_with(Control::Retry { package: icu(), profile: None }),
        fresh => control_with(Control::Fresh),
        reset_escalation => control_with(Control::ResetEscalation { drone: alpha() }),
        release_brake => control_with(Control::ReleaseBrake),
        reclaim_package => control_with(Control::Reclaim { package: Some(icu()), profile: None, drone: None }),
        reclaim_drone => control_with(Control::Reclaim { package: None, profile: None, drone: Some(alpha()) }),
        reclaim_both => control_with(Control::Reclaim { package: Some(icu()), profile: None, drone: Some(alpha()) }),
        clear_history => control_with(Control::ClearHistory),
        remove_drone => control_with(Control::RemoveDrone { drone: alpha() }),
        expect_env => control_with(Control::ExpectEnv {
            env: Some(build_env()),
            from: None,
        }),
        expect_env_from => control_with(Control::ExpectEnv {
            env: None,
            from: Some(alpha()),
        }),
        set_profile => control_with(Control::SetProfile {
            name: "desktop-amd64".into(),
            env: Some(build_env()),
            from: None,
            world: None,
        }),
        set_profile_from => control_with(Control::SetProfile {
            name: "desktop-amd64".into(),
            env: None,
            from: Some(alpha()),
            world: None,
        }),
        set_profile_world => control_with(Control::SetProfile {
            name: "desktop-amd64".into(),
            env: None,
            from: Some(alpha()),
            world: Some(vec!["app-misc/hello".into(), "@desktop".into()]),
        }),
        remove_profile => control_with(Control::RemoveProfile {
            name: "desktop-amd64".into(),
            force: false,
        }),
        remove_profile_forced => control_with(Control::RemoveProfile {
            name: "desktop-amd64".into(),
            force: true,
        }),
        fresh_profile => control_with(Control::FreshProfile { profile: "desktop-amd64".into() }),
    });
}

mod outcome {
    use super::*;

    frozen!(Envelope {
        success => finished_with(Outcome::Success),
        failed_build => finished_with(Outcome::Failed {
            class: FailureClass::Build,
            detail: "compile error in src/foo.c".into(),
        }),
        failed_infra => finished_with(Outcome::Failed {
            class: FailureClass::Infra,
            detail: "sandbox: no space left on device".into(),
        }),
        failed_oom => finished_with(Outcome::Failed {
            class: FailureClass::Oom,
            detail: "cc1plus killed by the OOM killer".into(),
        }),
        returned => finished_with(Outcome::Returned {
            reason: "agent shutting down".into(),
        }),
        upload_failed => finished_with(Outcome::UploadFailed {
            detail: "413: 3221225472 bytes, over the 2147483648 bytes the server takes".into(),
        }),
        undelivered => finished_with(Outcome::Undelivered {
            detail: "missing_binary: reported built, but no dev-libs/foo-1.0*.gpkg.tar was uploaded under this lease".into(),
        }),
        masked => finished_with(Outcome::Masked),
    });
}

mod probe {
    use super::*;

    frozen!(Envelope {
        ok => probe_with(ProbeStatus::Ok),
        unreachable => probe_with(ProbeStatus::Unreachable),
        timeout => probe_with(ProbeStatus::Timeout),
        service_down => probe_with(ProbeStatus::ServiceDown),
        overloaded => probe_with(ProbeStatus::Overloaded),
        disk_warning => probe_with(ProbeStatus::DiskWarning),
        disk_critical => probe_with(ProbeStatus::DiskCritical),
        memory_critical => probe_with(ProbeStatus::MemoryCritical),
    });
}

mod reach {
    use super::*;

    frozen!(Envelope {
        reached => figures_with(ProbeReach::Reached),
        unreachable => figures_with(ProbeReach::Unreachable),
        timeout => figures_with(ProbeReach::Timeout),
    });
}

mod command {
    use super::*;

    frozen!(Output {
        assign => command(Command::Assign {
            drone: alpha(),
            package: icu(),
            lease: LeaseId(7),
            epoch: Epoch(2),
            profile: None,
        }),
        assign_for_a_profile => command(Command::Assign {
            drone: alpha(),
            package: icu(),
            lease: LeaseId(7),
            epoch: Epoch(2),
            profile: Some("server".into()),
        }),
        revoke => revoke_with(RevokeReason::CompletedElsewhere),
        revoke_legacy_without_lease => command(Command::Revoke {
            drone: drone("drone-legacy"),
            lease: None,
            package: Some(icu()),
            reason: RevokeReason::Unknown,
        }),
        revoke_lease_only => command(Command::Revoke {
            drone: alpha(),
            lease: Some(LeaseId(3)),
            package: None,
            reason: RevokeReason::Unknown,
        }),
        escalate => escalate_with(EscalationAction::RestartService),
        sync_portage => command(Command::SyncPortage {
            drone: alpha(),
            expected: "Tue, 19 Nov 2024 00:45:01 +0000".into(),
        }),
        resend => command(Command::Resend {
            drone: drone("drone-legacy"),
            package: icu(),
            lease: LeaseId(7),
            profile: None,
        }),
    });
}

mod escalation_action {
    use super::*;

    frozen!(Output {
        restart_service => escalate_with(EscalationAction::RestartService),
        hard_restart => escalate_with(EscalationAction::HardRestart),
        reboot => escalate_with(EscalationAction::Reboot),
        manual => escalate_with(EscalationAction::Manual),
    });
}

mod event {
    use super::*;

    frozen!(Output {
        registered => event(Event::Registered { drone: alpha(), epoch: Epoch(2) }),
        went_suspect => event(Event::WentSuspect { drone: alpha() }),
        went_offline => event(Event::WentOffline { drone: alpha() }),
        came_back => event(Event::CameBack { drone: alpha() }),
        deregistered => event(Event::Deregistered { drone: alpha() }),
        removed => event(Event::Removed { drone: alpha() }),
        env_changed => event(Event::EnvChanged {
            drone: alpha(),
            matches: false,
            differences: "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)".into(),
            profile: None,
        }),
        reclaimed => reclaimed_with(ReclaimReason::Offline),
        queued => event(Event::Queued { added: 3, already: 1 }),
        started => event(Event::Started { drone: alpha(), package: icu(), lease: LeaseId(7) }),
        built => event(Event::Built {
            drone: alpha(),
            package: icu(),
            lease: LeaseId(7),
            duration_ms: 312_000,
            env: None,
        }),
        build_failed => event(Event::BuildFailed {
            drone: alpha(),
            package: icu(),
            lease: LeaseId(7),
            class: FailureClass::Build,
            attempt: 2,
            retry_at: Some(Timestamp(1_700_000_180_000)),
            detail: "compile error in src/foo.c".into(),
        }),
        build_failed_final => event(Event::BuildFailed {
            drone: alpha(),
            package: icu(),
            lease: LeaseId(7),
            class: FailureClass::Oom,
            attempt: 5,
            retry_at: None,
            detail: "cc1plus killed by the OOM killer".into(),
        }),
        blocked => blocked_with(BlockReason::FailedOnDrones { drones: 2 }),
        unblocked => event(Event::Unblocked { package: icu(), operator: true }),
        grounded => event(Event::Grounded {
            drone: alpha(),
            until: Timestamp(1_700_000_300_000),
            failures: 8,
        }),
        ungrounded => event(Event::Ungrounded { drone: alpha() }),
        upload_hold => event(Event::UploadHold {
            drone: alpha(),
            until: Timestamp(1_700_001_800_000),
        }),
        escalated => event(Event::Escalated {
            drone: alpha(),
            action: EscalationAction::HardRestart,
        }),
        input_rejected => rejected_with(RejectReason::UnknownDrone { drone: drone("drone-ghost") }),
        brake_engaged => event(Event::BrakeEngaged {
            reason: "queue looks stale: 5/5 drones failed on slot conflicts".into(),
            held: 12,
        }),
        brake_released => event(Event::BrakeReleased { operator: false }),
        paused => event(Event::Paused { drone: None }),
        paused_drone => event(Event::Paused { drone: Some(alpha()) }),
        resumed => event(Event::Resumed { drone: None }),
        resumed_drone => event(Event::Resumed { drone: Some(alpha()) }),
        control_applied => event(Event::ControlApplied {
            action: "rebalance".into(),
            summary: "reclaimed 4 not-started leases".into(),
        }),
        release => event(Event::Release {
            action: "gate_overridden".into(),
            release: "20261202-1130".into(),
            detail: "drops 3 of 1,204 packages: known breakage, fixed upstream".into(),
        }),
    });
}

mod revoke_reason {
    use super::*;

    frozen!(Output {
        reassigned_to => revoke_with(RevokeReason::ReassignedTo { drone: drone("drone-beta") }),
        completed_elsewhere => revoke_with(RevokeReason::CompletedElsewhere),
        reclaimed => revoke_with(RevokeReason::Reclaimed { reason: ReclaimReason::Rebalance }),
        unknown => revoke_with(RevokeReason::Unknown),
    });
}

mod reject_reason {
    use super::*;

    frozen!(Output {
        unknown_drone => rejected_with(RejectReason::UnknownDrone { drone: drone("drone-ghost") }),
        stale_report => rejected_with(RejectReason::StaleReport {
            drone: alpha(),
            package: icu(),
            lease: Some(LeaseId(3)),
        }),
        stale_report_legacy => rejected_with(RejectReason::StaleReport {
            drone: alpha(),
            package: icu(),
            lease: None,
        }),
        unknown_package => rejected_with(RejectReason::UnknownPackage { package: atom("app-misc/nope") }),
        stale_generation => rejected_with(RejectReason::StaleGeneration { given: 2, current: 3 }),
        bad_snapshot => rejected_with(RejectReason::BadSnapshot {
            given: "latest".into(),
            detail: "\"latest\" is not a Portage snapshot".into(),
        }),
        no_environment => rejected_with(RejectReason::NoEnvironment { drone: alpha() }),
        unknown_profile => rejected_with(RejectReason::UnknownProfile { profile: "desktop-amd64".into() }),
        profile_conflict => rejected_with(RejectReason::ProfileConflict {
            package: icu(),
            queued_for: "default".into(),
            asked_for: "desktop-amd64".into(),
        }),
        profile_building => rejected_with(RejectReason::ProfileBuilding {
            profile: "desktop-amd64".into(),
            running: vec![icu()],
        }),
        ambiguous_package => rejected_with(RejectReason::AmbiguousPackage {
            package: icu(),
            profiles: vec!["default".into(), "server".into()],
        }),
        illegal_control => rejected_with(RejectReason::IllegalControl {
            detail: "the brake is not engaged".into(),
        }),
    });
}

mod block_reason {
    use super::*;

    frozen!(Output {
        failed_on_drones => blocked_with(BlockReason::FailedOnDrones { drones: 2 }),
        attempts_exhausted => blocked_with(BlockReason::AttemptsExhausted { attempts: 5 }),
        no_eligible_drone => blocked_with(BlockReason::NoEligibleDrone),
        needs_memory => blocked_with(BlockReason::NeedsMemory { ram_mb: 65_537 }),
        undeliverable => blocked_with(BlockReason::Undeliverable { times: 5 }),
        masked => blocked_with(BlockReason::Masked),
        operator => blocked_with(BlockReason::Operator),
    });
}

mod reclaim_reason {
    use super::*;

    frozen!(Output {
        offline => reclaimed_with(ReclaimReason::Offline),
        confirmed_dead => reclaimed_with(ReclaimReason::ConfirmedDead),
        returned => reclaimed_with(ReclaimReason::Returned),
        critical => reclaimed_with(ReclaimReason::Critical),
        reregistered => reclaimed_with(ReclaimReason::Reregistered),
        grounded => reclaimed_with(ReclaimReason::Grounded),
        stolen => reclaimed_with(ReclaimReason::Stolen),
        rebalance => reclaimed_with(ReclaimReason::Rebalance),
        operator => reclaimed_with(ReclaimReason::Operator),
        fresh => reclaimed_with(ReclaimReason::Fresh),
        env_drift => reclaimed_with(ReclaimReason::EnvDrift),
    });
}

// ---------------------------------------------------------------- coverage

/// Records which variant of each enum a sample shows. The matches are exhaustive on purpose: a new
/// variant does not compile until it is named here, and then fails the coverage tests until it has
/// a snapshot.
#[derive(Default)]
struct Seen(BTreeSet<&'static str>);

impl Seen {
    fn input(&mut self, env: &Envelope) {
        let name = match &env.input {
            Input::Register(_) => "register",
            Input::Heartbeat(_) => "heartbeat",
            Input::Announce(_) => "announce",
            Input::RequestWork { .. } => "request_work",
            Input::BuildStarted(_) => "build_started",
            Input::BuildFinished { outcome, .. } => {
                self.outcome(outcome);
                "build_finished"
            }
            Input::ProbeResult { status, .. } => {
                self.probe(*status);
                "probe_result"
            }
            Input::ProbeFigures(f) => {
                self.0.insert(match f.reach {
                    ProbeReach::Reached => "reach reached",
                    ProbeReach::Unreachable => "reach unreachable",
                    ProbeReach::Timeout => "reach timeout",
                });
                "probe_figures"
            }
            Input::Enqueue(_) => "enqueue",
            Input::Control(action) => {
                self.control(action);
                "control"
            }
            Input::Release(_) => "release",
            Input::Recovered => "recovered",
            Input::Tick => "tick",
            Input::Deregister { .. } => "deregister",
        };
        self.0.insert(name);
    }

    fn control(&mut self, action: &Control) {
        self.0.insert(match action {
            Control::Pause => "control pause",
            Control::Resume => "control resume",
            Control::PauseDrone { .. } => "control pause_drone",
            Control::ResumeDrone { .. } => "control resume_drone",
            Control::Drain { .. } => "control drain",
            Control::Undrain { .. } => "control undrain",
            Control::Unblock { .. } => "control unblock",
            Control::Block { .. } => "control block",
            Control::Unground { .. } => "control unground",
            Control::Reset => "control reset",
            Control::Rebalance => "control rebalance",
            Control::ClearFailures => "control clear_failures",
            Control::RetryFailures => "control retry_failures",
            Control::Retry { .. } => "control retry",
            Control::Fresh => "control fresh",
            Control::ResetEscalation { .. } => "control reset_escalation",
            Control::ReleaseBrake => "control release_brake",
            Control::Reclaim { .. } => "control reclaim",
            Control::ClearHistory => "control clear_history",
            Control::RemoveDrone { .. } => "control remove_drone",
            Control::ExpectEnv { .. } => "control expect_env",
            Control::SetProfile { .. } => "control set_profile",
            Control::RemoveProfile { .. } => "control remove_profile",
            Control::FreshProfile { .. } => "control fresh_profile",
        });
    }

    fn outcome(&mut self, outcome: &Outcome) {
        self.0.insert(match outcome {
            Outcome::Success => "outcome success",
            Outcome::Failed { class, .. } => match class {
                FailureClass::Build => "outcome failed build",
                FailureClass::Infra => "outcome failed infra",
                FailureClass::Oom => "outcome failed oom",
            },
            Outcome::Returned { .. } => "outcome returned",
            Outcome::UploadFailed { .. } => "outcome upload_failed",
            Outcome::Undelivered { .. } => "outcome undelivered",
            Outcome::Masked => "outcome masked",
        });
    }

    fn probe(&mut self, status: ProbeStatus) {
        self.0.insert(match status {
            ProbeStatus::Ok => "probe ok",
            ProbeStatus::Unreachable => "probe unreachable",
            ProbeStatus::Timeout => "probe timeout",
            ProbeStatus::ServiceDown => "probe service_down",
            ProbeStatus::Overloaded => "probe overloaded",
            ProbeStatus::DiskWarning => "probe disk_warning",
            ProbeStatus::DiskCritical => "probe disk_critical",
            ProbeStatus::MemoryCritical => "probe memory_critical",
        });
    }

    fn output(&mut self, output: &Output) {
        match output {
            Output::Command(c) => self.command(c),
            Output::Event(e) => self.event(e),
        }
    }

    fn command(&mut self, c: &Command) {
        let name = match c {
            Command::Assign { .. } => "command assign",
            Command::Resend { .. } => "command resend",
            Command::Revoke { reason, .. } => {
                let why = match reason {
                    RevokeReason::ReassignedTo { .. } => "revoke reassigned_to",
                    RevokeReason::CompletedElsewhere => "revoke completed_elsewhere",
                    RevokeReason::Reclaimed { reason } => {
                        self.reclaim(*reason);
                        "revoke reclaimed"
                    }
                    RevokeReason::Unknown => "revoke unknown",
                };
                self.0.insert(why);
                "command revoke"
            }
            Command::Escalate { action, .. } => {
                self.escalation(*action);
                "command escalate"
            }
            Command::SyncPortage { .. } => "command sync_portage",
        };
        self.0.insert(name);
    }

    fn escalation(&mut self, action: EscalationAction) {
        self.0.insert(match action {
            EscalationAction::RestartService => "escalation restart_service",
            EscalationAction::HardRestart => "escalation hard_restart",
            EscalationAction::Reboot => "escalation reboot",
            EscalationAction::Manual => "escalation manual",
        });
    }

    fn reclaim(&mut self, reason: ReclaimReason) {
        self.0.insert(match reason {
            ReclaimReason::Offline => "reclaim offline",
            ReclaimReason::ConfirmedDead => "reclaim confirmed_dead",
            ReclaimReason::Returned => "reclaim returned",
            ReclaimReason::Critical => "reclaim critical",
            ReclaimReason::Reregistered => "reclaim reregistered",
            ReclaimReason::Grounded => "reclaim grounded",
            ReclaimReason::Stolen => "reclaim stolen",
            ReclaimReason::Rebalance => "reclaim rebalance",
            ReclaimReason::Operator => "reclaim operator",
            ReclaimReason::Fresh => "reclaim fresh",
            ReclaimReason::EnvDrift => "reclaim env_drift",
        });
    }

    fn event(&mut self, e: &Event) {
        let name = match e {
            Event::Registered { .. } => "event registered",
            Event::WentSuspect { .. } => "event went_suspect",
            Event::WentOffline { .. } => "event went_offline",
            Event::CameBack { .. } => "event came_back",
            Event::Deregistered { .. } => "event deregistered",
            Event::Removed { .. } => "event removed",
            Event::EnvChanged { .. } => "event env_changed",
            Event::Reclaimed { reason, .. } => {
                self.reclaim(*reason);
                "event reclaimed"
            }
            Event::Queued { .. } => "event queued",
            Event::Started { .. } => "event started",
            Event::Built { .. } => "event built",
            Event::BuildFailed { .. } => "event build_failed",
            Event::Blocked { reason, .. } => {
                self.0.insert(match reason {
                    BlockReason::FailedOnDrones { .. } => "block failed_on_drones",
                    BlockReason::AttemptsExhausted { .. } => "block attempts_exhausted",
                    BlockReason::NoEligibleDrone => "block no_eligible_drone",
                    BlockReason::NeedsMemory { .. } => "block needs_memory",
                    BlockReason::Masked => "block masked",
                    BlockReason::Operator => "block operator",
                    BlockReason::Undeliverable { .. } => "block undeliverable",
                });
                "event blocked"
            }
            Event::Unblocked { .. } => "event unblocked",
            Event::Grounded { .. } => "event grounded",
            Event::Ungrounded { .. } => "event ungrounded",
            Event::UploadHold { .. } => "event upload_hold",
            Event::Escalated { action, .. } => {
                self.escalation(*action);
                "event escalated"
            }
            Event::InputRejected { reason } => {
                self.0.insert(match reason {
                    RejectReason::UnknownDrone { .. } => "reject unknown_drone",
                    RejectReason::StaleReport { .. } => "reject stale_report",
                    RejectReason::UnknownPackage { .. } => "reject unknown_package",
                    RejectReason::StaleGeneration { .. } => "reject stale_generation",
                    RejectReason::BadSnapshot { .. } => "reject bad_snapshot",
                    RejectReason::IllegalControl { .. } => "reject illegal_control",
                    RejectReason::NoEnvironment { .. } => "reject no_environment",
                    RejectReason::UnknownProfile { .. } => "reject unknown_profile",
                    RejectReason::ProfileConflict { .. } => "reject profile_conflict",
                    RejectReason::AmbiguousPackage { .. } => "reject ambiguous_package",
                    RejectReason::ProfileBuilding { .. } => "reject profile_building",
                });
                "event input_rejected"
            }
            Event::BrakeEngaged { .. } => "event brake_engaged",
            Event::BrakeReleased { .. } => "event brake_released",
            Event::Paused { .. } => "event paused",
            Event::Resumed { .. } => "event resumed",
            Event::ControlApplied { .. } => "event control_applied",
            Event::Release { .. } => "event release",
        };
        self.0.insert(name);
    }

    /// The names seen with `prefix`, without it.
    fn with_prefix(&self, prefix: &str) -> BTreeSet<String> {
        self.0
            .iter()
            .filter_map(|n| n.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    }
}

fn names(list: &str) -> BTreeSet<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

fn inputs_seen() -> Seen {
    let mut seen = Seen::default();
    let samples = [
        input::all(),
        control::all(),
        outcome::all(),
        probe::all(),
        reach::all(),
    ];
    for env in samples.iter().flatten() {
        seen.input(env);
    }
    seen
}

fn outputs_seen() -> Seen {
    let mut seen = Seen::default();
    let samples = [
        command::all(),
        escalation_action::all(),
        event::all(),
        revoke_reason::all(),
        reject_reason::all(),
        block_reason::all(),
        reclaim_reason::all(),
    ];
    for output in samples.iter().flatten() {
        seen.output(output);
    }
    seen
}

#[test]
fn every_input_kind_control_action_outcome_and_probe_status_is_frozen() {
    let seen = inputs_seen();
    let kinds: BTreeSet<String> = seen
        .0
        .iter()
        .filter(|n| !n.contains(' '))
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        kinds,
        names("register heartbeat announce request_work build_started build_finished probe_result probe_figures enqueue control release recovered tick deregister")
    );
    assert_eq!(
        seen.with_prefix("control "),
        names(
            "pause resume pause_drone resume_drone drain undrain unblock block unground reset \
             rebalance clear_failures retry_failures retry fresh reset_escalation release_brake reclaim \
             clear_history remove_drone expect_env set_profile remove_profile fresh_profile"
        )
    );
    assert_eq!(
        seen.with_prefix("outcome "),
        [
            "success",
            "failed build",
            "failed infra",
            "failed oom",
            "returned",
            "upload_failed",
            "undelivered",
            "masked"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert_eq!(
        seen.with_prefix("probe "),
        names(
            "ok unreachable timeout service_down overloaded disk_warning disk_critical \
             memory_critical"
        )
    );
    assert_eq!(
        seen.with_prefix("reach "),
        names("reached unreachable timeout")
    );
}

#[test]
fn every_command_event_and_reason_is_frozen() {
    let seen = outputs_seen();
    assert_eq!(
        seen.with_prefix("command "),
        names("assign resend revoke escalate sync_portage")
    );
    assert_eq!(
        seen.with_prefix("event "),
        names(
            "registered went_suspect went_offline came_back reclaimed queued started built \
             build_failed blocked unblocked grounded ungrounded upload_hold escalated \
             input_rejected brake_engaged brake_released paused resumed control_applied release \
             deregistered removed env_changed"
        )
    );
    assert_eq!(
        seen.with_prefix("revoke "),
        names("reassigned_to completed_elsewhere reclaimed unknown")
    );
    assert_eq!(
        seen.with_prefix("reject "),
        names(
            "unknown_drone stale_report unknown_package stale_generation bad_snapshot \
             illegal_control no_environment unknown_profile profile_conflict ambiguous_package \
             profile_building"
        )
    );
    assert_eq!(
        seen.with_prefix("block "),
        names(
            "failed_on_drones attempts_exhausted no_eligible_drone needs_memory masked operator \
             undeliverable"
        )
    );
    assert_eq!(
        seen.with_prefix("reclaim "),
        names(
            "offline confirmed_dead returned critical reregistered grounded stolen rebalance \
             operator fresh env_drift"
        )
    );
    assert_eq!(
        seen.with_prefix("escalation "),
        names("restart_service hard_restart reboot manual")
    );
}

// ---------------------------------------------------------------- refusals

/// The name of the field that carries an input's kind, read from the format itself (so these
/// tests follow a rename of the tag; the snapshots above are what freeze it).
fn tag() -> String {
    let tick = serde_json::to_value(Input::Tick).expect("serialises");
    let object = tick.as_object().expect("inputs are JSON objects");
    let (key, _) = object
        .iter()
        .find(|(_, v)| v.as_str() == Some("tick"))
        .expect("the tag names the kind");
    key.clone()
}

/// An input line: `{"<tag>":"<kind>",<rest>}`.
fn line(kind: &str, rest: &str) -> String {
    let sep = if rest.is_empty() { "" } else { "," };
    format!(r#"{{"{}":"{kind}"{sep}{rest}}}"#, tag())
}

#[test]
fn an_unknown_input_kind_is_refused_naming_the_variant() {
    let err = serde_json::from_str::<Input>(&line("bogus", "")).expect_err("bogus is not an input");
    let msg = err.to_string();
    assert!(msg.contains("unknown variant `bogus`"), "{msg}");
    assert!(
        msg.contains("`request_work`"),
        "lists the known kinds: {msg}"
    );

    let envelope = format!(r#"{{"seq":1,"at":0,"input":{}}}"#, line("bogus", ""));
    let err = serde_json::from_str::<Envelope>(&envelope).expect_err("bogus is not an input");
    let msg = err.to_string();
    assert!(msg.contains("unknown variant `bogus`"), "{msg}");
}

#[test]
fn a_malformed_atom_in_an_enqueue_is_refused_with_the_atom_error() {
    let input = line(
        "enqueue",
        r#""packages":[{"atom":"dev-libs/icu-74.2"},{"atom":"not an atom"}]"#,
    );
    let envelope = format!(r#"{{"seq":1,"at":0,"input":{input}}}"#);
    let err = serde_json::from_str::<Envelope>(&envelope).expect_err("the atom is malformed");
    let expected = AtomError::BadCharacter {
        atom: "not an atom".into(),
        ch: ' ',
    }
    .to_string();
    let msg = err.to_string();
    assert!(
        msg.contains(&expected),
        "{msg:?} should contain {expected:?}"
    );

    let input = line("enqueue", r#""packages":[{"atom":"dev-libs/foo;rm"}]"#);
    let err = serde_json::from_str::<Input>(&input).expect_err("the atom is malformed");
    let expected = AtomError::BadCharacter {
        atom: "dev-libs/foo;rm".into(),
        ch: ';',
    }
    .to_string();
    let msg = err.to_string();
    assert!(
        msg.contains(&expected),
        "{msg:?} should contain {expected:?}"
    );

    let input = line(
        "enqueue",
        r#""packages":[{"atom":"dev-libs/icu","deps":[""]}]"#,
    );
    let err = serde_json::from_str::<Input>(&input).expect_err("an empty dependency is malformed");
    let msg = err.to_string();
    assert!(msg.contains(&AtomError::Empty.to_string()), "{msg}");
}

#[test]
fn atoms_are_normalised_when_the_log_is_read() {
    let input = line("enqueue", r#""packages":[{"atom":"  dev-libs/icu-74.2 "}]"#);
    let input: Input = serde_json::from_str(&input).expect("a valid enqueue");
    let Input::Enqueue(e) = input else {
        panic!("not an enqueue: {input:?}")
    };
    assert_eq!(e.packages[0].atom.as_str(), "=dev-libs/icu-74.2");
}
