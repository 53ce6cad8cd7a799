//! The world's event queue: a min-heap on (virtual time, scheduling order). Two events at the
//! same time pop in the order they were scheduled, so a seed replays exactly; a heap pops them
//! as a sorted map would, at a fraction of a sorted map's cost per step.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Events by when they happen.
#[derive(Debug)]
pub(super) struct Queue<E> {
    heap: BinaryHeap<Pending<E>>,
    scheduled: u64,
}

#[derive(Debug)]
struct Pending<E> {
    at: u64,
    seq: u64,
    ev: E,
}

impl<E> Pending<E> {
    fn key(&self) -> (u64, u64) {
        (self.at, self.seq)
    }
}

impl<E> PartialEq for Pending<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Pending<E> {}

impl<E> PartialOrd for Pending<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Pending<E> {
    /// Reversed: `BinaryHeap` pops its greatest, the queue its earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl<E> Queue<E> {
    pub(super) fn new() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            scheduled: 0,
        }
    }

    /// Schedules `ev` at `at`, after every event already scheduled for then.
    pub(super) fn push(&mut self, at: u64, ev: E) {
        self.scheduled += 1;
        let seq = self.scheduled;
        self.heap.push(Pending { at, seq, ev });
    }

    /// The earliest event and its time.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|p| (p.at, p.ev))
    }

    /// Cancels every event `keep` refuses.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&E) -> bool) {
        self.heap.retain(|p| keep(&p.ev));
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn events_pop_by_time_then_in_the_order_they_were_scheduled() {
        let mut q = Queue::new();
        for (at, ev) in [(5, 'a'), (1, 'b'), (5, 'c'), (3, 'd'), (1, 'e'), (5, 'f')] {
            q.push(at, ev);
        }
        q.retain(|ev| *ev != 'd');
        q.push(1, 'g');
        let order: Vec<(u64, char)> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [(1, 'b'), (1, 'e'), (1, 'g'), (5, 'a'), (5, 'c'), (5, 'f')]
        );
    }
}
