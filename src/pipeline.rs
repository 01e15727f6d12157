//! Wiring of the copy: source readers → bounded queue → parallel writers → acknowledgements.
//!
//! ```text
//!  reader per stream ──► bounded mpsc<Batch> ──► writer 1..N (RESTORE, standalone or cluster) ──► acks ──► Tracker ──► checkpoint
//! ```
//! The queue holds at most `writers × 2` batches, so memory in flight is bounded by batch size,
//! never by dataset size. A stop (signal or error) makes readers stop after the batch in hand; the
//! writers drain the queue; every batch handed out is acknowledged or reported failed before the
//! final checkpoint is written. After a signal the writers get [`DRAIN_GRACE`] to finish the
//! batches in hand; then (a server that stopped answering) every task is abandoned, and the
//! checkpoint records only what was acknowledged — an abandoned batch is written again by the
//! rerun.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::checkpoint::{Checkpoint, Tracker};
use crate::progress::Progress;
use crate::sink::Sink;
use crate::source::{Batch, Counts, Position};
use crate::stop::{Stop, DRAIN_GRACE};

/// A reader: fills the queue with the batches of one stream.
pub type ReaderTask = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Builds a reader for a stream given the queue to fill.
pub type ReaderFactory = Box<dyn FnOnce(mpsc::Sender<Batch>) -> ReaderTask + Send>;

/// What the copy phase produced.
pub struct CopyResult {
    /// Counts of every batch acknowledged during this run.
    pub this_run: Counts,
    /// The first error, if any task failed.
    pub error: Option<anyhow::Error>,
}

/// Where and how often the checkpoint is saved while copying.
pub struct CheckpointSink<'a> {
    /// The checkpoint being kept up to date.
    pub checkpoint: &'a mut Checkpoint,
    /// Its file.
    pub path: &'a std::path::Path,
    /// Totals carried over from earlier runs.
    pub base: Counts,
}

/// Runs readers and writers to completion (or until stopped) and keeps the checkpoint.
pub async fn copy(
    readers: Vec<ReaderFactory>,
    parallel_readers: usize,
    writers: Vec<Sink>,
    mut tracker: Tracker,
    cp: CheckpointSink<'_>,
    progress: &mut Progress,
    stop: Stop,
) -> CopyResult {
    let (tx, rx) = mpsc::channel::<Batch>(writers.len() * 2);
    let rx = Arc::new(Mutex::new(rx));
    let (ack_tx, mut ack_rx) =
        mpsc::unbounded_channel::<anyhow::Result<(usize, u64, Option<Position>, Counts)>>();

    let mut tasks = Vec::with_capacity(writers.len() + 1);
    for mut writer in writers {
        let rx = rx.clone();
        let ack_tx = ack_tx.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let batch = { rx.lock().await.recv().await };
                let Some(batch) = batch else { break };
                match writer.write(&batch).await {
                    Ok(mut counts) => {
                        counts.add(&batch.noted);
                        if ack_tx
                            .send(Ok((batch.stream, batch.seq, batch.position, counts)))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        stop.raise();
                        let _ = ack_tx.send(Err(e));
                        break;
                    }
                }
            }
        }));
    }
    drop(rx);
    drop(ack_tx);

    let reader_stop = stop.clone();
    // Dropping the supervisor's `JoinSet` (when it is aborted) aborts the readers too.
    let readers_done = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(parallel_readers.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for make in readers {
            let tx = tx.clone();
            let permits = permits.clone();
            let stop = reader_stop.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if stop.is_raised() {
                    return Ok(());
                }
                let result = make(tx).await;
                if result.is_err() {
                    stop.raise();
                }
                result
            });
        }
        drop(tx);
        let mut first_err = None;
        while let Some(joined) = set.join_next().await {
            let result =
                joined.unwrap_or_else(|e| Err(anyhow::anyhow!("a reader task failed: {e}")));
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        first_err
    });

    let CheckpointSink {
        checkpoint,
        path,
        base,
    } = cp;
    let mut this_run = Counts::default();
    let mut error: Option<anyhow::Error> = None;
    // Saving is cheap (one small file, fsync), so save often: a job killed soon after start
    // still resumes from recent progress.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut dirty = false;
    let abandon = async {
        stop.interrupted().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::pin!(abandon);
    let mut abandoned = false;
    loop {
        tokio::select! {
            () = &mut abandon => {
                abandoned = true;
                break;
            }
            ack = ack_rx.recv() => match ack {
                None => break,
                Some(Ok((stream, seq, position, counts))) => {
                    tracker.ack(stream, seq, position, counts);
                    this_run.add(&counts);
                    let mut shown = base;
                    shown.add(&this_run);
                    progress.update(&shown);
                    dirty = true;
                }
                Some(Err(e)) => { error.get_or_insert(e); }
            },
            _ = tick.tick() => {
                // Progress lines (and the throttle state they show) keep coming while no
                // batch is acknowledged, e.g. while the source is slow.
                let mut shown = base;
                shown.add(&this_run);
                progress.update(&shown);
                if dirty {
                    if let Err(e) = save(checkpoint, path, &tracker, base) {
                        error.get_or_insert(e);
                        stop.raise();
                    }
                    dirty = false;
                }
            }
        }
    }
    if abandoned {
        // Interrupted while a server does not answer: stop waiting for it. Acknowledgements
        // that arrived meanwhile still count; nothing else is recorded.
        readers_done.abort();
        for t in &tasks {
            t.abort();
        }
        while let Ok(ack) = ack_rx.try_recv() {
            if let Ok((stream, seq, position, counts)) = ack {
                tracker.ack(stream, seq, position, counts);
                this_run.add(&counts);
            }
        }
        tracing::warn!(
            "stopped without waiting for the batches still in flight (not acknowledged within {} ms); \
             they are not in the checkpoint, so the rerun writes them again",
            DRAIN_GRACE.as_millis()
        );
    } else {
        match readers_done.await {
            Ok(Some(e)) => {
                error.get_or_insert(e);
            }
            Ok(None) => {}
            Err(e) => {
                error.get_or_insert(anyhow::anyhow!("the reader supervisor failed: {e}"));
            }
        }
    }
    checkpoint.completed = error.is_none() && !stop.is_raised() && tracker.all_done();
    if let Err(e) = save(checkpoint, path, &tracker, base) {
        error.get_or_insert(e);
    }
    CopyResult { this_run, error }
}

fn save(
    cp: &mut Checkpoint,
    path: &std::path::Path,
    tracker: &Tracker,
    base: Counts,
) -> anyhow::Result<()> {
    for (name, pos) in tracker.positions() {
        cp.streams.insert(name, pos);
    }
    let mut totals = base;
    totals.add(&tracker.committed());
    cp.totals = totals;
    cp.save(path)
}
