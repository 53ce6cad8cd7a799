//! The flags of `swarm demo`.

use super::world::Sample;
use std::path::PathBuf;

/// `swarm demo`: a real local swarm in one command.
///
/// Starts a real `swarm serve` and N real `swarm drone`s on this machine,
/// with a STAND-IN builder that only sleeps and writes small gpkg-shaped
/// files (nothing is compiled), queues a sample of a Gentoo world, kills one
/// drone halfway to show its work being reclaimed, and prints a summary whose
/// every number comes from the server.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Drones to start.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub(super) drones: u32,
    /// Build slots per drone.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub(super) slots: u32,
    /// The package set to queue: a ≈150-package Gentoo world, or 12 packages for CI.
    #[arg(long, value_enum, default_value_t = Sample::WorldSample)]
    pub(super) packages: Sample,
    /// Build seconds per demo second: at 720 a one-hour build sleeps 5 s.
    #[arg(long, default_value_t = 720.0)]
    pub(super) speed: f64,
    /// Keep the data dir (database, artifacts, logs) instead of removing it at exit.
    #[arg(long)]
    pub(super) keep: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// Do not kill a drone halfway.
    #[arg(long)]
    pub(super) no_kill: bool,
    /// What builds: the bundled STAND-IN (sleeps and writes small valid
    /// gpkgs), or the real `emerge` of Portage on a small real ebuild
    /// repository, ending with a release installed by a client machine.
    #[arg(long, value_enum, default_value_t = Builder::Standin)]
    pub(super) builder: Builder,
    /// The venv holding the real Portage for `--builder emerge` [default:
    /// $SWARM_PORTAGE_VENV]. Make one with
    /// `python3 -m venv DIR && DIR/bin/pip install portage`.
    #[arg(long, value_name = "DIR")]
    pub(super) portage_venv: Option<PathBuf>,
    /// Give up (and clean up) after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub(super) timeout_s: u64,
}

/// What the demo's drones build with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Builder {
    /// The bundled stand-in: no compiler, no Portage, valid gpkgs.
    Standin,
    /// The real emerge (needs the `portage` Python package).
    Emerge,
}
