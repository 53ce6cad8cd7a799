//! Bounds on the numbers an enqueue carries, shared by every adapter (the
//! HTTP API, the CLI) so an absurd value is refused where it arrives, with
//! the field named in the wire's spelling.
//!
//! `Swarm::handle` does not refuse them itself: it stays total and clamps
//! (durations to [`crate::time::MAX_DURATION_MS`], sums saturating), so a log
//! written before a bound existed replays to the outputs it recorded.

use crate::input::Enqueue;
use crate::time::MAX_DURATION_MS;

/// Highest priority, and minus the lowest. Priorities order the queue; a
/// larger magnitude orders nothing better and is most likely a typo.
pub const MAX_PRIORITY: i32 = 1_000_000;
/// Longest build estimate an enqueue may give, in seconds (30 days).
pub const MAX_ESTIMATE_S: u64 = MAX_DURATION_MS / 1000;
/// Most dependencies one package may list (real ebuilds have a few hundred).
pub const MAX_DEPS: usize = 4096;
/// Most packages one enqueue may carry; a larger list goes in several.
pub const MAX_ENQUEUE: usize = 100_000;
/// Highest queue generation: the largest integer every JSON reader keeps
/// exact (2^53), far beyond one `fresh` a second for a century.
pub const MAX_GENERATION: u64 = 1 << 53;

/// A value beyond its bound: which field (`packages[3].priority`) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct OutOfBounds {
    /// The field as the HTTP API spells it.
    pub field: String,
    /// What was wrong, naming the field and the bound.
    pub detail: String,
}

fn out(field: String, detail: String) -> OutOfBounds {
    OutOfBounds { field, detail }
}

/// Checks every number of an enqueue against its bound.
pub fn check_enqueue(e: &Enqueue) -> Result<(), OutOfBounds> {
    if e.packages.len() > MAX_ENQUEUE {
        return Err(out(
            "packages".into(),
            format!(
                "`packages` lists {}; at most {MAX_ENQUEUE} are accepted in one request",
                e.packages.len()
            ),
        ));
    }
    if let Some(g) = e.generation.filter(|g| g.0 > MAX_GENERATION) {
        return Err(out(
            "generation".into(),
            format!(
                "`generation` = {} is above the largest, {MAX_GENERATION}",
                g.0
            ),
        ));
    }
    for (i, p) in e.packages.iter().enumerate() {
        if p.priority.unsigned_abs() > MAX_PRIORITY.unsigned_abs() {
            let field = format!("packages[{i}].priority");
            let detail = format!(
                "`{field}` = {} is out of range (-{MAX_PRIORITY} to {MAX_PRIORITY})",
                p.priority
            );
            return Err(out(field, detail));
        }
        if let Some(s) = p.estimate_s.filter(|s| *s > MAX_ESTIMATE_S) {
            let field = format!("packages[{i}].estimate_s");
            let detail =
                format!("`{field}` = {s} is longer than any build (at most {MAX_ESTIMATE_S} s)");
            return Err(out(field, detail));
        }
        if p.deps.len() > MAX_DEPS {
            let field = format!("packages[{i}].deps");
            let detail = format!(
                "`{field}` lists {} dependencies; at most {MAX_DEPS} are accepted",
                p.deps.len()
            );
            return Err(out(field, detail));
        }
    }
    Ok(())
}
