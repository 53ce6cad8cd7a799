//! A drone's announcement: merged into the spec the core holds, then taken as its heartbeat.
//!
//! ```text
//!   Announce ──▶ unknown drone ─────────────────▶ register (spec from what it said) ─┐
//!            └─▶ known drone ─▶ machine changed ─▶ register (what it said, merged)  ─┼─▶ heartbeat
//!                            └─▶ unchanged ─────────────────────────────────────────┘
//! ```
//! A registration here is exactly the `Register` adapters sent before `Announce` existed, so
//! either path gives the same state; the beat then merges environment and snapshot.

use super::{Out, Swarm};
use crate::input::{Announce, Input};

impl Swarm {
    pub(super) fn on_announce(&mut self, a: &Announce, out: &mut Out) {
        let registration = match self.st.drones.get(a.drone()) {
            None => Some(a.said.registration(&a.beat, true)),
            Some(d) if a.said.changes(&d.spec) => Some(a.said.registration(&a.beat, false)),
            Some(_) => None,
        };
        if let Some(spec) = registration {
            self.on_register(&spec, out);
        }
        self.on_heartbeat(&a.beat, out);
    }

    /// The smallest input that [`Swarm::handle`] treats exactly as `input`, now: an announce
    /// from a known drone loses what the drone said that the core already holds. A store logs
    /// this form, so a drone repeating its spec every beat does not repeat it in the log.
    #[must_use]
    pub fn condense(&self, input: Input) -> Input {
        match input {
            Input::Announce(mut a) => {
                if let Some(d) = self.st.drones.get(a.drone()) {
                    a.trim(&d.spec);
                }
                Input::Announce(a)
            }
            other => other,
        }
    }
}
