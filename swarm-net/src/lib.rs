//! HTTP for swarm: the control-plane server, the self-healing executor and
//! the ureq client the CLI and the drone agent use.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binhost;
pub mod binpkg;
pub mod client;
pub mod heal;
pub mod host_names;
#[cfg(test)]
mod mutate;
pub mod regular_file;
pub mod server;
pub mod settings;
pub mod wire;

pub use swarm_core::{Input, Output};
