//! The deterministic simulator: drives the real `Swarm` through virtual fleet
//! life with faults, checks the invariants after every step, and reports SLOs.
//!
//! One seed (ChaCha8) chooses everything, including which faults are on.
//! Nothing here reads a clock or does IO: the caller writes logs and prints.

mod packages;
mod report;
mod rng;
mod scenario;
mod world;

pub use report::Report;
pub use scenario::{
    At, Blip, DroneModel, Faults, PackageModel, Packages, Scenario, Window, BUILTIN,
};
pub use world::{run, SimFailure, SimOptions, SimRun};
