//! HTTP for swarm: the control-plane server and the drone client. Filled in by
//! the server issue; today it only names the contract.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use swarm_core::{Input, Output};
