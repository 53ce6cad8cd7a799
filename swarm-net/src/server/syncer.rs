//! The fsync thread of the writer's group commit. The store commits with
//! the fsync deferred (`StoreOptions::defer_sync`); the writer hands each
//! committed batch's replies here and goes on with the next batch, and this
//! thread fsyncs the WAL and only then answers. Batches that arrive while
//! an fsync runs share the next one. Nothing is answered before the fsync
//! that covers it returns: the replies are what acknowledge. The
//! acknowledgement marker moves with the fsync, before the replies
//! (`WalSync::sync_acknowledging`), on this thread or on the writer's: a
//! reply is never received while the marker says less.
//!
//! While this thread is idle (everything handed over is fsynced) the
//! writer fsyncs a batch itself (`Syncer::idle`) when a bulk job is in
//! progress or no other job waits: the hand-over is a thread wake-up, and
//! while an import kept the writer's CPU busy that wake-up waited up to
//! milliseconds for the other CPU, on every heartbeat. When drone jobs
//! wait and no bulk job runs, the hand-over keeps the pipeline: the writer
//! commits the next batch while this one syncs (fsyncing in the writer
//! then cost 5-10 % of `swarm bench http`'s requests a second).

use super::http::ApiError;
use super::jobs::Replies;
use super::metrics::Metrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use swarm_store::WalSync;

/// A committed batch: its last seq and its replies.
type Batch = (u64, Replies);

/// The running fsync thread.
pub(crate) struct Syncer {
    tx: Option<Sender<Batch>>,
    handle: Option<JoinHandle<()>>,
    synced: Arc<AtomicU64>,
    /// Batches handed over whose fsync has not returned yet.
    pending: Arc<AtomicU64>,
}

impl Syncer {
    pub(crate) fn start(sync: WalSync, metrics: Arc<Metrics>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel();
        let synced = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        let counts = Counts {
            synced: synced.clone(),
            pending: pending.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("swarm-fsync".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&sync, &metrics, &rx, &counts)
                }));
                if let Err(panic) = run {
                    metrics.thread_panicked("fsync", panic.as_ref());
                }
            })?;
        Ok(Syncer {
            tx: Some(tx),
            handle: Some(handle),
            synced,
            pending,
        })
    }

    /// Hands over a committed batch; gives the replies back if the thread is gone.
    pub(crate) fn hand_over(&self, seq: u64, replies: Replies) -> Result<(), Replies> {
        let Some(tx) = &self.tx else {
            return Err(replies);
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        tx.send((seq, replies)).map_err(|e| {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            e.0 .1
        })
    }

    /// Whether every batch handed over has been fsynced: an fsync the
    /// writer starts now waits for none of this thread's.
    pub(crate) fn idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// Records an fsync the writer made itself (`synced`).
    pub(crate) fn note_synced(&self, seq: u64) {
        self.synced.fetch_max(seq, Ordering::SeqCst);
    }

    /// The last seq known durable (and in the marker): the writer's
    /// `Store::acknowledge` with it nudges the checkpointer.
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// Answers everything handed over (after a last fsync) and stops.
    pub(crate) fn finish(mut self) -> u64 {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.synced()
    }
}

/// What the thread shares with its handle.
struct Counts {
    synced: Arc<AtomicU64>,
    pending: Arc<AtomicU64>,
}

fn run(sync: &WalSync, metrics: &Metrics, rx: &Receiver<Batch>, counts: &Counts) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let last = batches.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        // Then the marker, before any reply.
        let result = metrics.fsync(sync, last);
        counts
            .pending
            .fetch_sub(batches.len() as u64, Ordering::SeqCst);
        match result {
            Ok(()) => {
                counts.synced.fetch_max(last, Ordering::SeqCst);
                for (_, replies) in batches {
                    for (tx, reply) in replies {
                        let _ = tx.send(reply);
                    }
                }
            }
            Err(e) => {
                let replies = batches.into_iter().flat_map(|(_, r)| r).collect();
                for (tx, reply) in not_durable(metrics, sync, last, &e, replies) {
                    let _ = tx.send(reply);
                }
            }
        }
    }
}

/// The answers to requests whose fsync failed: each an error (they may or
/// may not be recorded), never a success. Not retried: after a failed
/// fdatasync Linux may drop the dirty pages and report nothing to the next
/// one, so a retry that works proves nothing about these commits.
pub(crate) fn not_durable(
    metrics: &Metrics,
    sync: &WalSync,
    through_seq: u64,
    e: &std::io::Error,
    replies: Replies,
) -> Replies {
    metrics.store_error();
    tracing::error!(error = %e, wal = %sync.path().display(), through_seq, "fsync of the WAL failed; the requests it covered are answered with an error and may or may not be recorded");
    replies
        .into_iter()
        .map(|(tx, _)| {
            let err = ApiError::new(
                503,
                format!("the store could not make this request durable ({e}); it may or may not have been recorded; retry"),
            );
            (tx, Err(err))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::jobs::Done;
    use super::super::metrics::Metrics;
    use super::Syncer;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;
    use swarm_store::{Store, StoreOptions};

    /// Hands over a batch of one reply for `seq`, and gives its receiving end.
    fn hand_over_one(
        syncer: &Syncer,
        seq: u64,
    ) -> mpsc::Receiver<Result<Done, super::super::http::ApiError>> {
        let (tx, rx) = mpsc::sync_channel(1);
        let done = Done {
            seq,
            outputs: Vec::new(),
            verdict: None,
        };
        assert!(syncer.hand_over(seq, vec![(tx, Ok(done))]).is_ok());
        rx
    }

    #[test]
    fn idle_once_everything_handed_over_is_fsynced_and_the_writers_fsyncs_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = StoreOptions {
            defer_sync: true,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path().join("swarm.db"), opts).expect("open");
        let sync = store.wal_sync().expect("deferred fsync");
        let syncer = Syncer::start(sync, Arc::new(Metrics::default())).expect("start");
        assert!(syncer.idle(), "nothing handed over yet");
        let rx = hand_over_one(&syncer, 7);
        let reply = rx.recv_timeout(Duration::from_secs(10)).expect("answered");
        assert!(reply.is_ok(), "the fsync worked");
        // Answered only after its fsync returned: the thread is idle again.
        assert!(syncer.idle(), "an answered batch still counted as pending");
        assert_eq!(syncer.synced(), 7);
        // The writer's own fsyncs move the marker, never back.
        syncer.note_synced(9);
        syncer.note_synced(8);
        assert_eq!(syncer.finish(), 9);
    }

    #[test]
    fn a_panic_of_the_fsync_thread_is_recorded_and_its_batch_answered_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let faults = Arc::new(swarm_store::SyncFaults::default());
        let opts = StoreOptions {
            defer_sync: true,
            fault_sync: Some(faults.clone()),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path().join("swarm.db"), opts).expect("open");
        let metrics = Arc::new(Metrics::default());
        let syncer =
            Syncer::start(store.wal_sync().expect("sync"), metrics.clone()).expect("start");
        faults
            .fsync_panic
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let rx = hand_over_one(&syncer, 3);
        // Never acknowledged: its reply channel is dropped as the thread unwinds.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.lost_thread().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let why = metrics.lost_thread().unwrap_or_default();
        assert!(
            why.contains("the fsync thread panicked") && why.contains("SyncFaults::fsync_panic"),
            "{why:?}"
        );
        // Later batches are given back, for the writer to answer with an error.
        let (tx, _rx) = mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut back = false;
        while !back && std::time::Instant::now() < deadline {
            back = syncer
                .hand_over(
                    4,
                    vec![(tx.clone(), Err(super::super::http::ApiError::new(503, "x")))],
                )
                .is_err();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(back, "a dead thread took a batch");
    }
}
