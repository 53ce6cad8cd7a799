//! The writer's commit order: drone inputs ahead of bulk work.
//!
//! A big enqueue holds the writer for its plan and its read-table rows, so
//! the server posts it as parts (`Plan::Parts`) and the writer commits each
//! round as the drone inputs waiting plus the next part of the bulk job in
//! progress: a heartbeat waits for one part, not a whole post. Operator
//! inputs (controls, pushes, releases) keep their order among themselves:
//! one waiting behind a bulk job is committed after its last part, so no
//! control lands between two parts of a post. Jobs waiting together were
//! sent concurrently, so no order between a drone's input and an operator's
//! was promised; one client's jobs stay in order (it waits for each reply).

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;

/// Which lane a job waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Drone inputs: committed in the next round, whatever else waits.
    Drone,
    /// Operator inputs: in order with bulk jobs.
    Ordered,
    /// A bulk job: its parts go one per round.
    Bulk,
}

/// Waiting jobs.
pub(crate) struct Lanes<T> {
    drone: Vec<T>,
    ordered: VecDeque<(T, bool)>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            drone: Vec::new(),
            ordered: VecDeque::new(),
        }
    }
}

impl<T> Lanes<T> {
    /// Adds jobs in arrival order.
    pub(crate) fn add(&mut self, jobs: Vec<T>, lane: impl Fn(&T) -> Lane) {
        for job in jobs {
            match lane(&job) {
                Lane::Drone => self.drone.push(job),
                Lane::Ordered => self.ordered.push_back((job, false)),
                Lane::Bulk => self.ordered.push_back((job, true)),
            }
        }
    }

    /// The jobs of the next group commit: every drone job, and, unless a
    /// bulk job is in progress, the operator jobs ahead of the next bulk job.
    pub(crate) fn group(&mut self, bulk_in_progress: bool) -> Vec<T> {
        let mut group = std::mem::take(&mut self.drone);
        if !bulk_in_progress {
            while self.ordered.front().is_some_and(|(_, bulk)| !bulk) {
                if let Some((job, _)) = self.ordered.pop_front() {
                    group.push(job);
                }
            }
        }
        group
    }

    /// The next bulk job, when it is at the head of the ordered lane.
    pub(crate) fn next_bulk(&mut self) -> Option<T> {
        match self.ordered.front() {
            Some((_, true)) => self.ordered.pop_front().map(|(job, _)| job),
            _ => None,
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.drone.is_empty() && self.ordered.is_empty()
    }
}

/// Whether this round commits the bulk job's next part. Jobs that waited
/// behind a part go in a round of their own: a heartbeat then waits for the
/// part being committed, not for it and a second one sharing its own
/// commit. Parts and waiting jobs alternate, so a steady stream of
/// heartbeats cannot starve the bulk job.
pub(crate) fn carry_part(bulk_in_progress: bool, part_last: bool, jobs_waiting: bool) -> bool {
    bulk_in_progress && !(part_last && jobs_waiting)
}

/// Parts of a bulk job one commit takes at most, the first included: a
/// commit stays about as long as sixteen parts (a few milliseconds), which
/// bounds its size, not anyone's wait (see `PartFeed`).
pub(crate) const MAX_PARTS_PER_COMMIT: usize = 16;

/// Feeds one commit the parts of a bulk job after its first, while the
/// commit holds no other job and no other job has arrived: parts that
/// share a commit write their pages once (the last page of the log, the
/// index pages their rows land on) instead of once a part. A job that
/// arrives ends the run at the next part and is kept for the next round,
/// so it waits for one part. A job already in the commit gets no run at
/// all: it is answered after the commit, so every part fed to it would be
/// its wait (with a run of sixteen, a heartbeat's commit took 2 to 5 ms
/// instead of a fraction of one).
pub(crate) struct PartFeed<'a, P, T> {
    parts: &'a VecDeque<P>,
    taken: usize,
    /// Parts this commit may hold, the first included.
    cap: usize,
    rx: &'a Receiver<T>,
    arrived: &'a mut Vec<T>,
}

impl<'a, P, T> PartFeed<'a, P, T> {
    /// A feed for a commit that already holds the first of `parts`, and,
    /// when `with_jobs`, other jobs that wait for it.
    pub(crate) fn new(
        parts: &'a VecDeque<P>,
        with_jobs: bool,
        rx: &'a Receiver<T>,
        arrived: &'a mut Vec<T>,
    ) -> PartFeed<'a, P, T> {
        PartFeed {
            parts,
            taken: 1.min(parts.len()),
            cap: if with_jobs { 1 } else { MAX_PARTS_PER_COMMIT },
            rx,
            arrived,
        }
    }

    /// The next part for the same commit, if it should take one.
    pub(crate) fn next_part(&mut self) -> Option<&'a P> {
        if self.taken >= self.cap || self.taken >= self.parts.len() {
            return None;
        }
        // A run of parts keeps this thread on its CPU for milliseconds. A
        // connection thread woken onto the same CPU (a drone's request
        // arriving, a reply) would wait for the scheduler to preempt the
        // writer, in a trace up to 3 ms: yield a part at a time, and a
        // request it brings ends the run below.
        std::thread::yield_now();
        if let Ok(job) = self.rx.try_recv() {
            self.arrived.push(job);
            return None;
        }
        let part = self.parts.get(self.taken)?;
        self.taken += 1;
        Some(part)
    }

    /// Parts in the commit, the first included.
    pub(crate) fn taken(&self) -> usize {
        self.taken
    }
}

#[cfg(test)]
mod tests {
    use super::{carry_part, Lane, Lanes, PartFeed, MAX_PARTS_PER_COMMIT};
    use std::collections::VecDeque;

    #[test]
    fn parts_share_a_commit_until_a_job_arrives_or_the_cap() {
        let parts: VecDeque<usize> = (0..40).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut arrived = Vec::new();
        // Nobody waits: parts go in up to the cap.
        let mut feed = PartFeed::new(&parts, false, &rx, &mut arrived);
        let mut took = vec![0];
        took.extend(std::iter::from_fn(|| feed.next_part().copied()));
        assert_eq!(took, (0..MAX_PARTS_PER_COMMIT).collect::<Vec<_>>());
        assert_eq!(feed.taken(), MAX_PARTS_PER_COMMIT);
        // A job arrives after the third part: the run ends there, the job is kept.
        let mut feed = PartFeed::new(&parts, false, &rx, &mut arrived);
        assert_eq!(feed.next_part(), Some(&1));
        assert_eq!(feed.next_part(), Some(&2));
        tx.send("heartbeat").expect("send");
        assert_eq!(feed.next_part(), None);
        assert_eq!(feed.taken(), 3);
        assert_eq!(arrived, vec!["heartbeat"]);
        // No parts: nothing taken, nothing fed.
        let none: VecDeque<usize> = VecDeque::new();
        let mut rest = Vec::new();
        let mut feed = PartFeed::new(&none, false, &rx, &mut rest);
        assert_eq!((feed.next_part(), feed.taken()), (None, 0));
        // A commit that holds other jobs (a heartbeat) takes the first part
        // only, though nobody else arrives: they are answered after it.
        let mut feed = PartFeed::new(&parts, true, &rx, &mut rest);
        assert_eq!((feed.next_part(), feed.taken()), (None, 1));
    }

    #[test]
    fn jobs_that_waited_behind_a_part_go_alone_and_parts_still_progress() {
        // A heartbeat waits in every round; a bulk job of 5 parts is in progress.
        let (mut parts, mut part_last, mut rounds) = (5, false, 0);
        while parts > 0 {
            let carry = carry_part(true, part_last, true);
            if part_last {
                assert!(
                    !carry,
                    "round {rounds}: a waiting job shared a commit with a second part in a row"
                );
            }
            if carry {
                parts -= 1;
            }
            part_last = carry;
            rounds += 1;
            assert!(
                rounds <= 10,
                "the bulk job starved: {parts} parts left after {rounds} rounds"
            );
        }
        // Nothing waiting: parts go back to back; no bulk job: no part.
        assert!(carry_part(true, true, false));
        assert!(!carry_part(false, false, true));
    }

    fn lane(job: &&str) -> Lane {
        match job.as_bytes()[0] {
            b'd' => Lane::Drone,
            b'o' => Lane::Ordered,
            _ => Lane::Bulk,
        }
    }

    #[test]
    fn drone_jobs_go_first_and_operator_jobs_keep_their_place_behind_bulk_ones() {
        let mut lanes = Lanes::default();
        lanes.add(vec!["o1", "b1", "d1", "o2", "d2"], lane);
        // Round 1: drone jobs and the control ahead of the bulk job.
        assert_eq!(lanes.group(false), vec!["d1", "d2", "o1"]);
        assert_eq!(lanes.next_bulk(), Some("b1"));
        // While b1's parts go, only drone jobs join them: o2 waits.
        lanes.add(vec!["d3", "b2"], lane);
        assert_eq!(lanes.group(true), vec!["d3"]);
        assert_eq!(lanes.group(true), Vec::<&str>::new());
        // b1 done: o2 before b2, as they arrived.
        assert_eq!(lanes.group(false), vec!["o2"]);
        assert_eq!(lanes.next_bulk(), Some("b2"));
        assert!(lanes.is_empty());
        assert_eq!(lanes.next_bulk(), None);
    }
}
