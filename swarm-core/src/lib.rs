//! The deterministic scheduling core of swarm, a control plane for build farms.
//!
//! This crate contains no networking code and never reads a clock, a file or an
//! environment variable: every input, including time, arrives in an
//! [`Envelope`], and every decision leaves as an [`Output`]. The same envelopes
//! always give the same outputs and the same [`Swarm::digest`], which is what
//! makes the store's crash recovery, the simulator and `swarm replay` possible.
//!
//! # The contract
//! - [`Swarm::handle`] is the only mutator. It is total: bad input becomes
//!   [`Event::InputRejected`], never a panic.
//! - [`Swarm::poll_timeout`] says when the next deadline falls; send
//!   [`Input::Tick`] then. Deadlines are stored as data, so a late Tick delays an
//!   action but never skips it.
//! - [`Swarm::view`] answers read-only questions, including [`View::explain`].
//! - [`Swarm::check_invariants`] and [`Monitor`] check DESIGN §8 after every step.
//! - [`Swarm::state`] serialises; [`Swarm::restore`] gives back the same digest.
//!
//! # A run loop
//! ```
//! use swarm_core::*;
//!
//! let mut swarm = Swarm::new(Config::default()).expect("defaults are valid");
//! let mut seq = 0;
//! let mut step = |swarm: &mut Swarm, at_ms: u64, input: Input| {
//!     seq += 1;
//!     swarm.handle(&Envelope { seq: Seq(seq), at: Timestamp(at_ms), input })
//! };
//! let drone = DroneName::new("drone-alpha").unwrap();
//! let atom = Atom::parse("dev-libs/icu-74.2").unwrap();
//! step(&mut swarm, 0, Input::Register(DroneSpec {
//!     name: drone.clone(), cores: 8, ram_mb: 16_384, ..DroneSpec::default()
//! }));
//! step(&mut swarm, 10, Input::Enqueue(Enqueue {
//!     packages: vec![PackageSpec::new(atom.clone())], ..Enqueue::default()
//! }));
//! let out = step(&mut swarm, 20, Input::RequestWork { drone: drone.clone(), free_slots: Some(1) });
//! let Some(Output::Command(Command::Assign { lease, .. })) = out.first() else { panic!("{out:?}") };
//! let report = Report { drone, package: atom.clone(), lease: Some(*lease), epoch: None };
//! step(&mut swarm, 60_000, Input::BuildFinished {
//!     report, outcome: Outcome::Success, duration_ms: None,
//! });
//! assert_eq!(swarm.view().counts().built, 1);
//! assert_eq!(swarm.view().explain(&atom), "built");
//! swarm.check_invariants().expect("invariants hold");
//! // The next deadline: re-planning the critical path with the duration just
//! // learned, one `replan_interval` after the last plan.
//! assert_eq!(swarm.poll_timeout(), Some(Timestamp(60_010)));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod agent;
mod atom;
pub mod bounds;
pub mod buildenv;
mod config;
mod digest;
#[doc(hidden)]
pub mod emerge_logs;
mod enqueue_parts;
pub use enqueue_parts::{PACKAGE_WEIGHT, PART_WEIGHT};
pub mod failure;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod id;
mod index;
mod input;
mod invariants;
mod output;
mod policy;
mod portage;
pub mod profile;
pub mod release_gate;
pub mod serving;
pub mod sim;
mod stable_hash;
mod state;
mod swarm;
pub mod time;
mod touched;
mod verdict;
mod view;
mod violation;

pub use atom::{Atom, AtomError, AtomRefusal};
pub use buildenv::{BuildEnv, EnvDiff, EnvError};
pub use config::{Config, ConfigError, Ordering, MAX_CONFIG_COUNT, MAX_CONFIG_MS, MAX_SLOT_COUNT};
pub use health::{BuildTiming, DroneHealth, HealthMonitor, HealthSample, HealthThresholds};
pub use id::{is_hidden, DroneName, Epoch, Generation, LeaseId, NameError, Seq};
pub use input::{
    Announce, Control, DroneKind, DroneSpec, Enqueue, Envelope, FailureClass, Heartbeat, Input,
    Outcome, PackageSpec, ProbeFigures, ProbeReach, ProbeStatus, ReleaseNote, Report, SpecFacts,
};
pub use invariants::Monitor;
pub use output::{
    BlockReason, Command, EscalationAction, Event, Output, ReclaimReason, RejectReason,
    RevokeReason,
};
pub use policy::probe::judge_probe;
pub use portage::{PortageSnapshot, SnapshotError, SYNC_RETRY_MS};
pub use state::{SwarmState, REVOKE_REPEAT_MS};
pub use swarm::{RestoreError, Swarm};
pub use time::Timestamp;
pub use touched::Touched;
pub use verdict::{Reported, Revoked, Verdict, Work};
pub use view::{
    BrakeView, Counts, DroneStatus, DroneView, LeaseView, PackageStatus, PackageView,
    ProfileStates, ProfileView, View,
};
pub use violation::Violation;

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
