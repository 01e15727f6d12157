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
use crate::counts::Counts;
use crate::progress::Progress;
use crate::sink::Sink;
use crate::source::{Batch, Position};
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

/// One batch acknowledged by a writer: its stream, sequence number, the position after it,
/// and what was done.
struct Ack {
    stream: usize,
    seq: u64,
    position: Option<Position>,
    counts: Counts,
}

/// What writers send back: an acknowledgement, or the error that stopped one.
type AckSender = mpsc::UnboundedSender<anyhow::Result<Ack>>;

/// Runs readers and writers to completion (or until stopped) and keeps the checkpoint.
pub async fn copy(
    readers: Vec<ReaderFactory>,
    parallel_readers: usize,
    writers: Vec<Sink>,
    tracker: Tracker,
    cp: CheckpointSink<'_>,
    progress: &mut Progress,
    stop: Stop,
) -> CopyResult {
    let (tx, rx) = mpsc::channel::<Batch>(writers.len() * 2);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<anyhow::Result<Ack>>();
    let tasks = spawn_writers(writers, rx, ack_tx, &stop);
    let readers_done = spawn_readers(readers, parallel_readers, tx, stop.clone());
    let CheckpointSink {
        checkpoint,
        path,
        base,
    } = cp;
    let mut acks = Acks {
        rx: ack_rx,
        tracker,
        base,
        this_run: Counts::default(),
        error: None,
    };
    let abandoned = acks.collect(checkpoint, path, progress, &stop).await;
    if abandoned {
        // Interrupted while a server does not answer: stop waiting for it. Acknowledgements
        // that arrived meanwhile still count; nothing else is recorded.
        readers_done.abort();
        for t in &tasks {
            t.abort();
        }
        acks.take_arrived();
        tracing::warn!(
            "stopped without waiting for the batches still in flight (not acknowledged within {} ms); \
             they are not in the checkpoint, so the rerun writes them again",
            DRAIN_GRACE.as_millis()
        );
    } else {
        match readers_done.await {
            Ok(Some(e)) => acks.fail(e),
            Ok(None) => {}
            Err(e) => acks.fail(anyhow::anyhow!("the reader supervisor failed: {e}")),
        }
    }
    let Acks {
        tracker,
        this_run,
        mut error,
        ..
    } = acks;
    checkpoint.completed = error.is_none() && !stop.is_raised() && tracker.all_done();
    if let Err(e) = save(checkpoint, path, &tracker, base) {
        error.get_or_insert(e);
    }
    CopyResult { this_run, error }
}

/// One task per writer: takes batches off the queue, writes them, acknowledges each. A failed
/// write raises `stop` (the readers stop after the batch in hand) and ends that writer.
fn spawn_writers(
    writers: Vec<Sink>,
    rx: mpsc::Receiver<Batch>,
    ack_tx: AckSender,
    stop: &Stop,
) -> Vec<tokio::task::JoinHandle<()>> {
    let rx = Arc::new(Mutex::new(rx));
    let mut tasks = Vec::with_capacity(writers.len());
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
                        let ack = Ack {
                            stream: batch.stream,
                            seq: batch.seq,
                            position: batch.position,
                            counts,
                        };
                        if ack_tx.send(Ok(ack)).is_err() {
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
    tasks
}

/// The readers, at most `parallel` at once, under one supervisor task that returns the first
/// error. Dropping the supervisor's `JoinSet` (when it is aborted) aborts the readers too.
fn spawn_readers(
    readers: Vec<ReaderFactory>,
    parallel: usize,
    tx: mpsc::Sender<Batch>,
    stop: Stop,
) -> tokio::task::JoinHandle<Option<anyhow::Error>> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(parallel.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for make in readers {
            let tx = tx.clone();
            let permits = permits.clone();
            let stop = stop.clone();
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
    })
}

/// The acknowledgements of this run, folded into the tracker as they arrive.
struct Acks {
    rx: mpsc::UnboundedReceiver<anyhow::Result<Ack>>,
    tracker: Tracker,
    /// Totals carried over from earlier runs.
    base: Counts,
    /// Counts of every batch acknowledged during this run.
    this_run: Counts,
    /// The first error of any task.
    error: Option<anyhow::Error>,
}

impl Acks {
    /// Takes acknowledgements until every writer is done, saving the checkpoint and showing
    /// progress as they come. Returns true when the copy was abandoned: interrupted, and the
    /// writers did not finish within [`DRAIN_GRACE`].
    async fn collect(
        &mut self,
        checkpoint: &mut Checkpoint,
        path: &std::path::Path,
        progress: &mut Progress,
        stop: &Stop,
    ) -> bool {
        // Saving is cheap (one small file, fsync), so save often: a job killed soon after start
        // still resumes from recent progress.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut dirty = false;
        let abandon = async {
            stop.interrupted().await;
            tokio::time::sleep(DRAIN_GRACE).await;
        };
        tokio::pin!(abandon);
        loop {
            tokio::select! {
                () = &mut abandon => return true,
                ack = self.rx.recv() => match ack {
                    None => return false,
                    Some(Ok(ack)) => {
                        self.take(ack);
                        progress.update(&self.shown());
                        dirty = true;
                    }
                    Some(Err(e)) => self.fail(e),
                },
                _ = tick.tick() => {
                    // Progress lines (and the throttle state they show) keep coming while no
                    // batch is acknowledged, e.g. while the source is slow.
                    progress.update(&self.shown());
                    if dirty {
                        if let Err(e) = save(checkpoint, path, &self.tracker, self.base) {
                            self.fail(e);
                            stop.raise();
                        }
                        dirty = false;
                    }
                }
            }
        }
    }

    /// Records one acknowledged batch.
    fn take(&mut self, ack: Ack) {
        self.tracker
            .ack(ack.stream, ack.seq, ack.position, ack.counts);
        self.this_run.add(&ack.counts);
    }

    /// Records the acknowledgements that arrived before the copy was abandoned.
    fn take_arrived(&mut self) {
        while let Ok(ack) = self.rx.try_recv() {
            if let Ok(ack) = ack {
                self.take(ack);
            }
        }
    }

    /// Keeps the first error.
    fn fail(&mut self, e: anyhow::Error) {
        self.error.get_or_insert(e);
    }

    /// Totals of every run so far, for the progress display.
    fn shown(&self) -> Counts {
        let mut shown = self.base;
        shown.add(&self.this_run);
        shown
    }
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
