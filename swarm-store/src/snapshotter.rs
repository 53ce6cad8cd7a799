//! Snapshots prepared off the writer's thread.
//!
//! Serialising a large state and proving it restores to the same digest
//! takes a few hundred milliseconds at tens of thousands of packages; done
//! inline it stalls every append behind it. The writer hands over a clone of
//! the core instead, and writes the finished snapshot in a later
//! transaction. A snapshot prepared from memory that a failed transaction
//! then rolled back would describe inputs the file does not hold, so each
//! request carries the store's generation, which a rebuild bumps, and stale
//! results are dropped.

use crate::recover::{format_digest, verify_snapshot};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use swarm_core::Swarm;

/// A snapshot ready to write.
pub(crate) struct Prepared {
    pub(crate) generation: u64,
    pub(crate) seq: u64,
    pub(crate) digest: String,
    /// The state as JSON, or why it failed to verify.
    pub(crate) state: Result<String, String>,
}

pub(crate) struct Snapshotter {
    tx: Option<Sender<(u64, u64, Box<Swarm>)>>,
    rx: Receiver<Prepared>,
    busy: bool,
    handle: Option<JoinHandle<()>>,
}

impl Snapshotter {
    pub(crate) fn start() -> std::io::Result<Snapshotter> {
        let (tx, work) = mpsc::channel::<(u64, u64, Box<Swarm>)>();
        let (done, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("swarm-snapshot".into())
            .spawn(move || {
                for (generation, seq, core) in work {
                    let digest = format_digest(core.digest());
                    let state = serde_json::to_string(core.state())
                        .map_err(|e| e.to_string())
                        .and_then(|s| verify_snapshot(&s, &digest).map(|_| s));
                    let prepared = Prepared {
                        generation,
                        seq,
                        digest,
                        state,
                    };
                    if done.send(prepared).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Snapshotter {
            tx: Some(tx),
            rx,
            busy: false,
            handle: Some(handle),
        })
    }

    /// Whether a snapshot is being prepared (one at a time).
    pub(crate) fn busy(&self) -> bool {
        self.busy
    }

    /// Hands over a copy of the core as of `seq`. False if the thread is gone.
    pub(crate) fn request(&mut self, generation: u64, seq: u64, core: &Swarm) -> bool {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((generation, seq, Box::new(core.clone()))).is_ok());
        self.busy = sent;
        sent
    }

    /// A finished snapshot, if one is ready.
    pub(crate) fn poll(&mut self) -> Option<Prepared> {
        match self.rx.try_recv() {
            Ok(p) => {
                self.busy = false;
                Some(p)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.busy = false;
                None
            }
        }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
