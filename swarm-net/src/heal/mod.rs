//! The self-healing executor: the IO half of DESIGN §3 "Self-healing".
//!
//! The core decides; this module only looks and acts. [`Prober`] runs the
//! probe command against every drone on an interval, in parallel with a
//! bounded pool and a per-probe timeout, and turns each answer into an
//! `Input::ProbeFigures`: what it saw, which the core judges. [`Escalator`] runs the operator's command for an
//! `Escalate` command the core emitted. Both fill command templates with two
//! values only — the drone's name and its registration address — and check
//! both before use, because they come from the network. Nothing runs through
//! a local shell.

mod escalate;
mod probe;
pub(crate) mod run;
mod target;
mod template;

pub use escalate::{action_name, Escalation, EscalationOutcome, Escalator};
pub use probe::{parse_figures, read_probe, Prober, Submit};
pub use target::{check_target, HealError, ProbeTarget};
pub use template::{CommandTemplate, TemplateError, ESCALATION_PLACEHOLDERS, PROBE_PLACEHOLDERS};
