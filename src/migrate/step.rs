//! What the flow (`flow.rs`) and the sources (`source.rs` and the kinds it picks) hand each
//! other: [`Run`], what every step reads; [`CheckpointWording`], how a source's checkpoint
//! messages read; [`CopyPlan`], what a source gives the copy to read.
//!
//! May call: `checkpoint`, `job`, `pipeline` (a reader's type), `plan`, `progress`, `stop`.
//! Nothing else of `migrate`: every other part of it names this one.

use crate::checkpoint::{Checkpoint, Tracker};
use crate::job::Job;
use crate::pipeline::ReaderFactory;
use crate::plan::MigratePlan;
use crate::progress::Progress;
use crate::stop::Stop;

/// What every step of the flow reads: the plan, the job prepared from it, the stop signal.
pub(super) struct Run<'a> {
    /// The resolved command line.
    pub plan: &'a MigratePlan,
    /// The plan's job, its source prepared (and `--keys-from`'s digest added).
    pub job: &'a Job,
    /// Raised by a signal or a failed task.
    pub stop: &'a Stop,
}

/// What the checkpoint messages say that differs between a live source and a file.
pub(super) struct CheckpointWording {
    /// Added to the "belongs to a different job" refusal.
    pub mismatch_hint: &'static str,
    /// Where a resumed copy continues, for the "resuming from" line (`", file offset N"`).
    pub position: fn(&Checkpoint) -> String,
}

impl CheckpointWording {
    /// A live source: SCAN positions are not worth printing.
    pub const LIVE: CheckpointWording = CheckpointWording {
        mismatch_hint: "",
        position: |_| String::new(),
    };
}

/// What the copy phase reads, and how it shows its progress.
pub(super) struct CopyPlan {
    /// One reader per stream still to copy.
    pub readers: Vec<ReaderFactory>,
    /// How many readers run at once.
    pub parallel: usize,
    /// Every stream of the job, with its checkpointed position.
    pub tracker: Tracker,
    /// The progress display, sized by the source's total.
    pub progress: Progress,
}
