//! The one shape of a refused state change, for packages and drones alike: a leaf, so the
//! state files that refuse moves and the swarm that reports them do not import each other.

/// A move its diagram (in `package.rs` or `drone.rs`) does not draw. Only a bug in the core
/// asks for one: the move is refused, the state stays as it was, and `check_invariants`
/// reports it (invariant 16), so the simulator and the property tests fail on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from:?} to {to:?}")]
pub(crate) struct IllegalTransition<S: std::fmt::Debug> {
    pub(crate) from: S,
    pub(crate) to: S,
}

/// Checks of a diagram's table and its `enter`, shared by the package and drone tests.
#[cfg(test)]
pub(crate) mod check {
    use super::IllegalTransition;
    use std::fmt::Debug;

    /// Every move `legal` allows between the states in `all`, in `all`'s order.
    pub(crate) fn edges<S: Copy>(all: &[S], legal: fn(S, S) -> bool) -> Vec<(S, S)> {
        all.iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| legal(*a, *b))
            .collect()
    }

    /// Tries every move with `enter(from, to)`, which answers what the setter said and where the
    /// thing stands after: a legal move moves, any other is refused with the typed error and
    /// leaves it where it was.
    pub(crate) fn assert_enter_follows<S: Copy + Debug + PartialEq>(
        all: &[S],
        legal: fn(S, S) -> bool,
        enter: impl Fn(S, S) -> (Result<(), IllegalTransition<S>>, S),
    ) {
        for &from in all {
            for &to in all {
                let (got, now) = enter(from, to);
                if legal(from, to) {
                    assert_eq!((got, now), (Ok(()), to), "{from:?} -> {to:?}");
                } else {
                    assert_eq!(got, Err(IllegalTransition { from, to }));
                    assert_eq!(now, from, "{from:?} -> {to:?} moved it");
                }
            }
        }
    }
}
