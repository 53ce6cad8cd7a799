//! The single writer: owns the `Store`, group-commits whatever the HTTP
//! workers queued, fires `Tick`s, and publishes the view readers use.
//!
//! Ticks come from this loop rather than a separate timer thread: the writer
//! already waits on its queue, so it waits at most until `poll_timeout()` (and
//! never more than a second), and a tick costs no channel hop. A `Tick` is
//! logged only when a deadline is due: an idle server logs nothing.
//!
//! Drone inputs first: a big push comes as parts (`Plan::Parts`), and each
//! group commit holds the drone inputs waiting plus the next part of a bulk
//! job, so a heartbeat waits for one part, not for a whole post (see
//! `lanes`). While the commit holds nothing else and nothing else waits, it
//! goes on taking parts (up to `lanes::MAX_PARTS_PER_COMMIT`): they then
//! share one commit and write their pages once; the first job to arrive
//! ends the run at the next part, and a commit that holds a drone's input
//! takes one part at most. A bulk job is answered once its last part is
//! durable; should a part fail, it is answered with an error saying how
//! many parts were recorded (a retry queues the rest: packages already
//! queued are counted, not queued twice).
//!
//! Store health: each step of the writer (a round, the marker after an
//! fsync, a probe, an idle copy) is watched while it runs
//! (`Metrics::writer_step`), so a writer the disk holds shows in health
//! before the step ends, if ever. After every write the writer publishes
//! whether the store can write (`Shared::store_fault`). While it cannot, it
//! probes the store every second without logging an input, so health turns
//! back by itself
//! when space returns; while idle and healthy it probes every
//! `IDLE_PROBE_EVERY`, so a disk that filled without traffic is noticed.

use super::http::ApiError;
use super::jobs::{Done, Job, Plan, Replies};
use super::lanes::{self, Lane, Lanes, PartFeed};
use super::shared::{Published, Shared};
use super::syncer::{self, Syncer};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_core::{Command, Input, Output, Swarm, Timestamp, Verdict};
use swarm_store::Store;

/// Failed group commits, logged while they go on (see `swarm_store::repeat_log`).
static COMMIT_FAILURES: swarm_store::repeat_log::RepeatLog =
    swarm_store::repeat_log::RepeatLog::new(std::time::Duration::from_secs(10));

/// Inputs per group commit, at most.
const MAX_BATCH: usize = 1024;
/// While idle, the writer refreshes the published view this often at most;
/// readers that need fresher state ask for it (see `Shared::fresh`).
const PUBLISH_IDLE_EVERY: Duration = Duration::from_secs(1);
/// While idle and healthy, the store's writability is checked this often.
const IDLE_PROBE_EVERY: Duration = Duration::from_secs(10);
/// While the store cannot write, it is probed this often.
const FAULT_PROBE_EVERY: Duration = Duration::from_secs(1);

/// The writer loop's bookkeeping between commits.
struct Pace {
    last_publish: Instant,
    last_write: Instant,
    dirty: bool,
}

/// Which lane a job waits in: drone inputs first.
fn lane(job: &Job) -> Lane {
    match &job.plan {
        Plan::Parts(_) => Lane::Bulk,
        Plan::Inputs(list) if list.iter().any(|i| matches!(i, Input::Enqueue(_))) => Lane::Bulk,
        Plan::Inputs(list) => {
            let drone = list.iter().all(|i| {
                matches!(
                    i,
                    Input::Register(_)
                        | Input::Heartbeat(_)
                        | Input::Announce(_)
                        | Input::RequestWork { .. }
                        | Input::BuildStarted(_)
                        | Input::BuildFinished { .. }
                        | Input::Deregister { .. }
                        | Input::ProbeResult { .. }
                        | Input::ProbeFigures(_)
                        | Input::Tick
                )
            });
            if drone {
                Lane::Drone
            } else {
                Lane::Ordered
            }
        }
    }
}

/// A bulk job part-way through its parts.
struct Bulk {
    job: Job,
    parts: std::collections::VecDeque<Vec<Input>>,
    total: usize,
    seq: u64,
    outputs: Vec<Output>,
    /// Parts committed so far.
    recorded: usize,
    /// A part failed: answered with an error, the rest is not tried.
    failed: bool,
}

impl Bulk {
    fn new(mut job: Job) -> Bulk {
        let parts: std::collections::VecDeque<Vec<Input>> =
            match std::mem::replace(&mut job.plan, Plan::Inputs(Vec::new())) {
                Plan::Parts(parts) => parts.into(),
                Plan::Inputs(list) => [list].into(),
            };
        Bulk {
            job,
            total: parts.len(),
            parts,
            seq: 0,
            outputs: Vec::new(),
            recorded: 0,
            failed: false,
        }
    }
}

pub(crate) fn run(store: &mut Store, shared: Arc<Shared>, rx: &Receiver<Job>) {
    let mut pace = Pace {
        last_publish: Instant::now(),
        last_write: Instant::now(),
        dirty: false,
    };
    let durable = Durable::new(store, &shared);
    loop {
        {
            let _step = shared.metrics.writer_step("acknowledge");
            durable.acknowledge(store);
        }
        note_id_file(store, &shared);
        let now = (shared.clock)();
        let due = store
            .swarm()
            .ok()
            .and_then(|s| s.poll_timeout())
            .unwrap_or(Timestamp(u64::MAX));
        let wait_ms = due.0.saturating_sub(now.0).min(1_000);
        let stopping = shared.stop.load(Ordering::SeqCst);
        let faulted = store.write_error().is_some();
        let wait = if stopping {
            Duration::from_millis(10)
        } else if faulted {
            // A due tick would fail again at once: no busy loop meanwhile.
            Duration::from_millis(wait_ms.max(200))
        } else {
            Duration::from_millis(wait_ms.max(1))
        };
        let mut jobs = Vec::new();
        match rx.recv_timeout(wait) {
            Ok(job) => {
                jobs.push(job);
                drain(rx, &mut jobs);
            }
            Err(RecvTimeoutError::Timeout) => {
                if stopping {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = (shared.clock)();
        let tick = now.0 >= due.0 && (!faulted || pace.last_write.elapsed() >= FAULT_PROBE_EVERY);
        if jobs.is_empty() && !tick {
            let _step = shared.metrics.writer_step("idle");
            let every = if faulted {
                FAULT_PROBE_EVERY
            } else {
                IDLE_PROBE_EVERY
            };
            if pace.last_write.elapsed() >= every {
                let _ = store.probe_write(now);
                pace.last_write = Instant::now();
                note_store_health(store, &shared);
            }
            if pace.dirty && idle_publish_due(store, &shared, pace.last_publish) {
                publish(store, &shared);
                pace.last_publish = Instant::now();
                pace.dirty = false;
            }
            continue;
        }
        let mut lanes = Lanes::default();
        lanes.add(jobs, lane);
        let mut tick = tick;
        let mut bulk: Option<Bulk> = None;
        let mut part_last = false;
        loop {
            let group = lanes.group(bulk.is_some());
            if bulk.is_none() {
                bulk = lanes.next_bulk().map(Bulk::new);
            }
            if group.is_empty() && bulk.is_none() && !tick {
                break;
            }
            let carry_part = lanes::carry_part(bulk.is_some(), part_last, !group.is_empty());
            // What arrives during the commit joins the next round (and ends
            // the commit's run of parts: see `commit`).
            let mut more = Vec::new();
            let step = shared.metrics.writer_step("round");
            round(
                store,
                &shared,
                &mut pace,
                &durable,
                group,
                Carry {
                    bulk: &mut bulk,
                    parts: carry_part,
                    rx,
                    arrived: &mut more,
                },
                tick,
                now,
            );
            drop(step);
            part_last = carry_part;
            tick = false;
            if bulk.is_some() {
                // The replies just sent woke connection threads, maybe onto
                // this CPU: let them run before the next part (see
                // `PartFeed::next_part`).
                std::thread::yield_now();
            }
            drain(rx, &mut more);
            lanes.add(more, lane);
            if bulk.is_none() && lanes.is_empty() {
                break;
            }
        }
    }
    if pace.dirty {
        publish(store, &shared);
    }
    durable.finish(store);
    match store.snapshot_on_close() {
        Ok(Some(seq)) => tracing::info!(
            seq = seq.0,
            "wrote a snapshot: the next start replays nothing"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "no snapshot on close; the next start replays the log since the last one")
        }
    }
    tracing::info!(
        seq = store.last_seq().0,
        "writer stopped; store closed cleanly"
    );
}

/// The bulk job in progress as a round sees it.
struct Carry<'a> {
    bulk: &'a mut Option<Bulk>,
    /// Whether this round commits parts of it (`lanes::carry_part`).
    parts: bool,
    /// Jobs that arrive while the parts are applied end the run of parts
    /// and are kept here for the next round.
    rx: &'a Receiver<Job>,
    arrived: &'a mut Vec<Job>,
}

/// One group commit (the jobs, then, when `carry.parts`, the bulk job's
/// next parts), then the view (when asked or due) and the replies.
#[allow(clippy::too_many_arguments)]
fn round(
    store: &mut Store,
    shared: &Shared,
    pace: &mut Pace,
    durable: &Durable,
    jobs: Vec<Job>,
    carry: Carry<'_>,
    tick: bool,
    now: Timestamp,
) {
    let mut publish_now = jobs.iter().any(|j| j.publish_now);
    let before = store.last_seq().0;
    let Carry {
        bulk,
        parts,
        rx,
        arrived,
    } = carry;
    let part = bulk
        .as_mut()
        .filter(|_| parts)
        .map(|bulk| Parts { bulk, rx, arrived });
    if let Some(b) = part.as_ref().filter(|p| p.bulk.recorded == 0) {
        // The commit of its first part starts now: its wait ends here.
        let waited = b.bulk.job.queued_at.elapsed();
        shared
            .metrics
            .writer_waits(std::iter::once(("bulk", waited)));
    }
    let mut replies = commit(store, shared, jobs, part, tick, now);
    let written = Some(store.last_seq().0).filter(|seq| *seq > before);
    if let Some(b) = bulk.take_if(|b| b.parts.is_empty() || b.failed) {
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        publish_now |= b.job.publish_now;
        let reply = if b.failed {
            let recorded = b.recorded;
            Err(ApiError::new(
                503,
                format!(
                    "the store could not record part {} of {} of this request; {recorded} parts \
                     were recorded; retry (packages already queued are counted, not queued twice)",
                    recorded + 1,
                    b.total
                ),
            ))
        } else {
            // A bulk job is no drone's request.
            Ok(Done {
                seq: b.seq,
                outputs: b.outputs,
                verdict: None,
            })
        };
        replies.push((b.job.tx, reply));
    }
    pace.last_write = Instant::now();
    note_store_health(store, shared);
    shared.committed.store(store.last_seq().0, Ordering::SeqCst);
    pace.dirty = true;
    // Idle refreshes only while the state is small: cloning a large core
    // is what `Shared::fresh` does on demand instead.
    if publish_now || idle_publish_due(store, shared, pace.last_publish) {
        // Before the replies: whoever asked reads the new view next.
        publish(store, shared);
        pace.last_publish = Instant::now();
        pace.dirty = false;
    }
    // The writer fsyncs itself while a bulk job keeps it busy or nothing
    // else waits; otherwise the fsync thread keeps the pipeline.
    let inline = bulk.is_some() || rx_is_idle(shared);
    durable.answer(shared, written, replies, inline);
}

/// Publishes whether the store can write, logging each change once.
fn note_store_health(store: &Store, shared: &Shared) {
    let now = store.write_error().map(str::to_owned);
    let Ok(mut slot) = shared.store_fault.write() else {
        return;
    };
    if *slot != now {
        match &now {
            Some(why) => {
                tracing::error!(reason = %why, "the store cannot write: health is 503 until a write works again")
            }
            None => tracing::info!("the store writes again: health is 200"),
        }
        *slot = now;
    }
}

/// Publishes whether the store-id file records how far the store came: acknowledging is what
/// records it (once per `reached_every`), so this follows each acknowledgement. The store logs
/// the changes itself.
fn note_id_file(store: &Store, shared: &Shared) {
    let now = store.id_file_error();
    let differs = shared
        .id_file_fault
        .read()
        .is_ok_and(|slot| slot.as_deref() != now);
    if differs {
        if let Ok(mut slot) = shared.id_file_fault.write() {
            *slot = now.map(str::to_owned);
        }
    }
}

fn drain(rx: &Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

fn rx_is_idle(shared: &Shared) -> bool {
    shared.queued.load(Ordering::Relaxed) == 0
}

/// Idle refreshes only while the state is small: cloning a large core is
/// what `Shared::fresh` does on demand instead.
fn idle_publish_due(store: &Store, shared: &Shared, last_publish: Instant) -> bool {
    rx_is_idle(shared)
        && last_publish.elapsed() >= PUBLISH_IDLE_EVERY
        && store
            .swarm()
            .is_ok_and(|s| s.view().package_count() <= 5_000)
}

/// Replaces the readers' copy. The copy shares packages and the atom and
/// key tables with the core (see `swarm_core::Swarm::unshared`), so it
/// costs the writer mostly pointers; what it cost is kept for
/// `Shared::fresh`.
fn publish(store: &Store, shared: &Shared) {
    if let Ok(swarm) = store.swarm() {
        let started = Instant::now();
        let p = Arc::new(Published {
            swarm: swarm.clone(),
            seq: store.last_seq().0,
        });
        let old = shared
            .published
            .write()
            .ok()
            .map(|mut slot| std::mem::replace(&mut *slot, p));
        // Outside the lock: readers wait for no drop.
        drop(old);
        let cost = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        shared.publish_cost_us.store(cost, Ordering::Relaxed);
        shared.metrics.published();
    }
}

/// How committed batches become durable before they are answered: by the
/// store itself (each commit fsyncs), or by the fsync thread when the
/// store defers it (`StoreOptions::defer_sync`), or here, inline, if that
/// thread could not start.
enum Durable {
    ByCommit,
    /// The fsync thread, and the writer's own handle for batches committed
    /// while that thread is idle (see `syncer`).
    Thread(Syncer, Option<swarm_store::WalSync>),
    /// The handle, and the last seq it made durable.
    Inline(swarm_store::WalSync, std::cell::Cell<u64>),
}

impl Durable {
    fn new(store: &Store, shared: &Arc<Shared>) -> Durable {
        let Some(sync) = store.wal_sync() else {
            return Durable::ByCommit;
        };
        match Syncer::start(sync, shared.metrics.clone()) {
            Ok(s) => Durable::Thread(s, store.wal_sync()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the fsync thread; the writer fsyncs each batch itself");
                match store.wal_sync() {
                    Some(sync) => Durable::Inline(sync, std::cell::Cell::new(0)),
                    None => Durable::ByCommit,
                }
            }
        }
    }

    /// Answers a batch: at once if it failed (nothing was recorded) or is
    /// durable already, else after the fsync that covers it (made here
    /// when `inline` and the fsync thread is idle; see `syncer`). A batch
    /// that answers nobody (a part of a bulk job but its last, a tick) is
    /// not fsynced by itself: the next fsync covers it, before anyone is
    /// told of it. Otherwise a big import fsyncs after every part, keeping
    /// the disk busy, and every heartbeat committed meanwhile waits for the
    /// fsync in flight before its own.
    fn answer(&self, shared: &Shared, committed: Option<u64>, replies: Replies, inline: bool) {
        if replies.is_empty() {
            return;
        }
        let undelivered = match (self, committed) {
            // No wake-up to wait for.
            (Durable::Thread(s, Some(own)), Some(seq)) if inline && s.idle() => {
                match shared.metrics.fsync(own, seq) {
                    Ok(()) => {
                        s.note_synced(seq);
                        replies
                    }
                    Err(e) => syncer::not_durable(&shared.metrics, own, seq, &e, replies),
                }
            }
            (Durable::Thread(s, _), Some(seq)) => match s.hand_over(seq, replies) {
                Ok(()) => return,
                Err(back) => {
                    // Whatever stopped it, nothing is acknowledged any more.
                    shared
                        .metrics
                        .thread_lost("the fsync thread has stopped".into());
                    back.into_iter()
                        .map(|(tx, _)| (tx, Err(ApiError::new(503, "the fsync thread has stopped; the request may or may not have been recorded; retry"))))
                        .collect()
                }
            },
            (Durable::Inline(sync, synced), Some(seq)) => match shared.metrics.fsync(sync, seq) {
                Ok(()) => {
                    synced.set(seq);
                    replies
                }
                Err(e) => syncer::not_durable(&shared.metrics, sync, seq, &e, replies),
            },
            _ => replies,
        };
        for (tx, reply) in undelivered {
            let _ = tx.send(reply);
        }
    }

    /// Tells the store what is durable, so its checkpointer may copy it.
    /// The marker is there already: each fsync moved it before its replies
    /// (`WalSync::sync_acknowledging`), so this writes none of it.
    fn acknowledge(&self, store: &mut Store) {
        let seq = match self {
            Durable::ByCommit => return,
            Durable::Thread(s, _) => s.synced(),
            Durable::Inline(_, synced) => synced.get(),
        };
        if seq > 0 {
            let _ = store.acknowledge(swarm_core::Seq(seq));
        }
    }

    fn finish(self, store: &mut Store) {
        match self {
            Durable::ByCommit => {}
            Durable::Thread(s, _) => {
                let _ = store.acknowledge(swarm_core::Seq(s.finish()));
            }
            Durable::Inline(_, synced) => {
                let _ = store.acknowledge(swarm_core::Seq(synced.get()));
            }
        }
    }
}

/// The bulk job whose parts a commit carries.
struct Parts<'a> {
    bulk: &'a mut Bulk,
    rx: &'a Receiver<Job>,
    arrived: &'a mut Vec<Job>,
}

fn commit(
    store: &mut Store,
    shared: &Shared,
    jobs: Vec<Job>,
    parts: Option<Parts<'_>>,
    tick: bool,
    now: Timestamp,
) -> Replies {
    // Flatten every job's plan into inputs, remembering which belong to whom.
    let mut inputs: Vec<(Timestamp, Input)> = Vec::new();
    if tick {
        inputs.push((now, Input::Tick));
    }
    let mut spans = Vec::with_capacity(jobs.len());
    // The inputs whose verdict a job answers with (a drone's request).
    let mut wanted = vec![false; inputs.len()];
    for job in &jobs {
        let start = inputs.len();
        match &job.plan {
            Plan::Inputs(list) => inputs.extend(list.iter().cloned().map(|i| (now, i))),
            // Only `Bulk` holds parts.
            Plan::Parts(_) => {}
        }
        wanted.resize(inputs.len(), job.drone.is_some());
        spans.push(start..inputs.len());
    }
    shared.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
    shared.metrics.writer_waits(jobs.iter().map(|job| {
        let lane = if job.drone.is_some() {
            "drone"
        } else {
            "other"
        };
        (lane, job.queued_at.elapsed())
    }));
    let part_start = inputs.len();
    let (bulk, rx, arrived) = match parts {
        Some(Parts { bulk, rx, arrived }) => (Some(bulk), Some(rx), Some(arrived)),
        None => (None, None, None),
    };
    // The bulk job's first part, then more while nobody else waits
    // (`lanes::PartFeed`, `Store::append_batch_then`).
    if let Some(part) = bulk.as_ref().and_then(|b| b.parts.front()) {
        inputs.extend(part.iter().cloned().map(|i| (now, i)));
    }
    let mut feed = match (bulk.as_ref(), rx, arrived) {
        (Some(b), Some(rx), Some(arrived)) => {
            Some(PartFeed::new(&b.parts, !jobs.is_empty(), rx, arrived))
        }
        _ => None,
    };
    let mut count = inputs.len();
    let mut at = 0;
    let note = |swarm: &Swarm| {
        let verdict = wanted
            .get(at)
            .copied()
            .unwrap_or(false)
            .then(|| swarm.verdict())
            .flatten();
        at += 1;
        verdict
    };
    let result = if inputs.is_empty() {
        Ok(Vec::new())
    } else {
        store.append_batch_noting(
            inputs,
            || {
                let part = feed.as_mut()?.next_part()?;
                count += part.len();
                Some(part.iter().cloned().map(|i| (now, i)).collect())
            },
            note,
        )
    };
    let taken = feed.map_or(0, |f| f.taken());
    match result {
        Err(e) => {
            shared.metrics.store_error();
            // Once per interval while it lasts: clients retrying into a full disk wrote
            // thousands of these a second (h23).
            if let Some(n) = COMMIT_FAILURES.note(std::time::Instant::now()) {
                tracing::error!(error = %e, inputs = count, failed_commits = n, "group commit failed; every input in it is answered with an error and none was recorded (logged at most every 10 s while it lasts)");
            }
            if let Some(b) = bulk {
                // Answered by `round`: how many parts went in before.
                b.failed = true;
            }
            jobs.into_iter()
                .map(|job| {
                    let err = ApiError::new(
                        503,
                        format!("the store could not record this request: {e}; retry"),
                    );
                    (job.tx, Err(err))
                })
                .collect()
        }
        Ok(done) => {
            if let Some(n) = COMMIT_FAILURES.clear() {
                tracing::info!(failed_commits_not_logged = n, "group commits succeed again");
            }
            shared.metrics.batch(count);
            let all: Vec<&Output> = done.iter().flat_map(|(_, o, _)| o.iter()).collect();
            side_effects(shared, &all);
            if let Some(b) = bulk {
                b.parts.drain(..taken.min(b.parts.len()));
                b.recorded += taken;
                for (s, outs, _) in done.get(part_start..).unwrap_or(&[]) {
                    b.seq = s.0;
                    b.outputs.extend(outs.iter().cloned());
                }
            }
            let mut done = done;
            let mut replies = Vec::with_capacity(jobs.len());
            for (job, span) in jobs.into_iter().zip(spans) {
                let mut outputs = Vec::new();
                let mut seq = 0;
                let mut verdict: Option<Verdict> = None;
                for (s, outs, v) in done.get_mut(span).unwrap_or(&mut []) {
                    seq = s.0;
                    outputs.extend(outs.iter().cloned());
                    verdict = match (verdict, v.take()) {
                        (Some(a), Some(b)) => Some(a.then(b)),
                        (a, b) => b.or(a),
                    };
                }
                replies.push((
                    job.tx,
                    Ok(Done {
                        seq,
                        outputs,
                        verdict,
                    }),
                ));
            }
            replies
        }
    }
}

/// What the outputs ask of the world: escalations to run, counters to bump. Revokes are
/// repeated from the core's own record of them (`View::pending_revokes`).
fn side_effects(shared: &Shared, outputs: &[&Output]) {
    let owned: Vec<Output> = outputs.iter().map(|o| (*o).clone()).collect();
    shared.metrics.outputs(&owned);
    for o in outputs {
        match o {
            Output::Command(Command::Escalate { drone, action }) => {
                tracing::warn!(drone = %drone, ?action, "escalation step");
                if let Some(hook) = &shared.on_escalate {
                    let address = shared.address_of(drone);
                    hook(drone, address.as_deref(), *action);
                }
            }
            Output::Event(swarm_core::Event::Removed { drone }) => shared.known.remove(drone),
            Output::Event(e) => tracing::debug!(event = ?e, "event"),
            _ => {}
        }
    }
}
