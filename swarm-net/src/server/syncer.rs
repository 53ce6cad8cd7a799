//! The fsync thread of the writer's group commit. The store commits with
//! the fsync deferred (`StoreOptions::defer_sync`); the writer hands each
//! committed batch's replies here and goes on with the next batch, and this
//! thread fsyncs the WAL and only then answers. Batches that arrive while
//! an fsync runs share the next one. Nothing is answered before the fsync
//! that covers it returns: the replies are what acknowledge.

use super::http::ApiError;
use super::jobs::Replies;
use super::shared::Shared;
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
}

impl Syncer {
    pub(crate) fn start(sync: WalSync, shared: Arc<Shared>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel();
        let synced = Arc::new(AtomicU64::new(0));
        let done = synced.clone();
        let handle = std::thread::Builder::new()
            .name("swarm-fsync".into())
            .spawn(move || run(&sync, &shared, &rx, &done))?;
        Ok(Syncer {
            tx: Some(tx),
            handle: Some(handle),
            synced,
        })
    }

    /// Hands over a committed batch; gives the replies back if the thread is gone.
    pub(crate) fn hand_over(&self, seq: u64, replies: Replies) -> Result<(), Replies> {
        match &self.tx {
            Some(tx) => tx.send((seq, replies)).map_err(|e| e.0 .1),
            None => Err(replies),
        }
    }

    /// The last seq known durable.
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

fn run(sync: &WalSync, shared: &Shared, rx: &Receiver<Batch>, synced: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let last = batches.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        match sync.sync() {
            Ok(()) => {
                shared.metrics.fsynced();
                synced.fetch_max(last, Ordering::SeqCst);
                for (_, replies) in batches {
                    for (tx, reply) in replies {
                        let _ = tx.send(reply);
                    }
                }
            }
            Err(e) => {
                shared.metrics.store_error();
                tracing::error!(error = %e, wal = %sync.path().display(), through_seq = last, "fsync of the WAL failed; the requests it covered are answered with an error and may or may not be recorded");
                for (_, replies) in batches {
                    for (tx, _) in replies {
                        let _ = tx.send(Err(ApiError::new(
                            503,
                            format!("the store could not make this request durable ({e}); it may or may not have been recorded; retry"),
                        )));
                    }
                }
            }
        }
    }
}
