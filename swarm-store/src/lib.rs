//! Durable store for swarm: the input log, outbox, snapshots and read tables in
//! SQLite. Filled in by the store issue; today it only names the contract.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use swarm_core::{Envelope, Output};
