//! What the migrate flow (`flow.rs`) asks of its source, answered by each kind of source:
//! a live server or cluster (`live.rs`), an RDB file (`from_file.rs`), or the keys a file lists
//! (`keys_from.rs`).
//!
//! A source comes in two states. [`Opened`]: known before the checks, which it feeds (the
//! checkpoint's wording, the gate's inputs; a file has been checked whole by then). [`Source`]:
//! ready after the gate, with its DBs, totals and clock skews; it answers the questions of the
//! copy (conflict check, readers, progress, big keys), of the steps around it (`--follow`, a
//! file's function libraries, a cluster's topology after the copy) and of the verification.
//! A question only one kind of source has an answer to is a no-op for the others.

use std::path::Path;

use anyhow::Result;

use super::flow::{CheckpointWording, Run};
use super::from_file::{FileSource, OpenedFile};
use super::keys_from::{Listed, OpenedList};
use super::live::Live;
use super::writers::Target;
use crate::check::{Gate, Gated, SideInfo};
use crate::checkpoint::{Checkpoint, Tracker};
use crate::counts::Counts;
use crate::endpoint::Server;
use crate::job::{Job, SourceSpec};
use crate::pipeline::ReaderFactory;
use crate::plan::MigratePlan;
use crate::progress::Progress;
use crate::report::MigrateReport as Report;
use crate::sink::options::Clocks;
use crate::sink::options::WriterOptions;
use crate::stop::Stop;
use crate::verify::VerifyReport;

/// A source before the checks.
pub(super) enum Opened {
    /// A live server or cluster.
    Live(Server),
    /// An RDB file, checked whole.
    File(Box<OpenedFile>),
    /// The keys of a `--keys-from` file, on the live source.
    List(Box<OpenedList>),
}

/// A source ready to be copied, after the checks.
pub(super) enum Source {
    /// A live server or cluster.
    Live(Box<Live>),
    /// An RDB file.
    File(Box<FileSource>),
    /// The keys of a `--keys-from` file.
    List(Box<Listed>),
}

/// A source ready to be copied, and the target it is copied into.
pub(super) struct Ready {
    /// The source.
    pub source: Source,
    /// The target, as the gate found it.
    pub target: Target,
}

/// What a step returns when it has nothing to return.
type Step = anyhow::Result<()>;

/// What `--follow` returns: true when it ran (and filled the report).
type Followed = anyhow::Result<bool>;

/// How big keys are copied.
type Big = crate::sink::options::BigOptions;

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

impl Opened {
    /// Opens the job's source: `--rdb` (the file is checked whole here), `--keys-from`
    /// (the list becomes part of the job's identity), or the live source. `None` when a signal
    /// interrupted the file's check (the report says so).
    pub async fn open(
        plan: &MigratePlan,
        job: &mut Job,
        stop: &Stop,
        report: &mut Report,
    ) -> anyhow::Result<Option<Opened>> {
        let server = match &job.source {
            SourceSpec::Live(s) => s.clone(),
            SourceSpec::Rdb(input) => {
                let file = OpenedFile::open(plan, job, input, stop, report).await?;
                return Ok(file.map(|f| Opened::File(Box::new(f))));
            }
        };
        report.source = server.endpoint.to_string();
        Ok(Some(match &plan.keys_from {
            Some(path) => Opened::List(Box::new(OpenedList::open(plan, job, path, server)?)),
            None => Opened::Live(server),
        }))
    }

    /// How the checkpoint's messages speak of this source.
    pub fn wording(&self) -> CheckpointWording {
        match self {
            Opened::Live(_) => CheckpointWording::LIVE,
            Opened::File(_) => super::from_file::WORDING,
            Opened::List(_) => super::keys_from::WORDING,
        }
    }

    /// What the gate checks for this source; `conflicts`: the conflict check is still to do.
    pub fn gate<'a>(&'a self, run: &Run<'a>, cp: &Checkpoint, conflicts: bool) -> Gate<'a> {
        let plan = run.plan;
        let live = Gate {
            job: run.job,
            purpose: crate::check::Purpose::Migrate,
            on_conflict: plan.on_conflict,
            conflicts,
            copied_keys: cp.totals.written,
            follow: plan
                .follow
                .follow
                .then_some(plan.follow.enable_notifications),
            insecure: run.job.insecure,
            file: None,
            skip_key_errors: plan.on_key_error == crate::policy::OnKeyError::Skip,
        };
        match self {
            Opened::Live(_) => live,
            Opened::File(f) => Gate {
                follow: None,
                insecure: (false, run.job.insecure.1),
                file: Some(&f.summary),
                ..live
            },
            // The listed keys are looked up on the target after the gate (`check_conflicts`),
            // not the whole source; the job's copied keys are not the dataset's.
            Opened::List(_) => Gate {
                conflicts: false,
                copied_keys: 0,
                ..live
            },
        }
    }

    /// The source made ready with what the gate found, and the target as the writers see it.
    pub async fn ready(self, run: &Run<'_>, gated: Gated, report: &mut Report) -> Result<Ready> {
        let (source, target) = match self {
            Opened::Live(server) => {
                let (sinfo, target) = live_sides(gated)?;
                let live = Live::ready(run, server, sinfo, &target);
                (Source::Live(Box::new(live)), target)
            }
            Opened::File(f) => {
                let (file, target) = f.ready(run, gated, report).await?;
                (Source::File(Box::new(file)), target)
            }
            Opened::List(l) => {
                let (sinfo, target) = live_sides(gated)?;
                let list = l.ready(sinfo, &target, report);
                (Source::List(Box::new(list)), target)
            }
        };
        Ok(Ready { source, target })
    }
}

/// What the gate found on a live source, and the target as the writers see it.
fn live_sides(gated: Gated) -> Result<(SideInfo, Target)> {
    let Some(sinfo) = gated.source else {
        anyhow::bail!("the source could not be examined; run `ferry check` with the same flags");
    };
    let clocks = Clocks {
        source_skew_ms: gated.source_skew_ms,
        target_skew_ms: gated.target_skew_ms,
    };
    let target = Target {
        info: gated.target,
        clocks,
        max_bulk: gated.max_bulk,
    };
    Ok((sinfo, target))
}

impl Ready {
    /// `--on-conflict fail`: refuses to start when a key to copy is on the target already. A
    /// live source's keys were looked up by the gate's conflict row.
    pub async fn check_conflicts(&self, run: &Run<'_>) -> anyhow::Result<()> {
        match &self.source {
            Source::Live(_) => Ok(()),
            Source::File(f) => f.check_conflicts(run, &self.target).await,
            Source::List(l) => l.check_conflicts(run, &self.target).await,
        }
    }

    /// What must happen after the checkpoint is saved and before any key is written.
    pub async fn before_copy(
        &mut self,
        run: &Run<'_>,
        cp_path: &Path,
        report: &mut Report,
    ) -> Step {
        match &mut self.source {
            Source::Live(l) => l.before_copy(run, cp_path).await,
            Source::File(f) => f.before_copy(run, &self.target, report).await,
            Source::List(_) => Ok(()),
        }
    }

    /// How the writers copy big keys (big-key detection on; a file's are read from the file).
    pub async fn big_keys(&mut self, run: &Run<'_>, job_id: &str) -> anyhow::Result<Option<Big>> {
        match &mut self.source {
            Source::Live(l) => l.big_keys(run, &self.target, job_id).await,
            Source::File(f) => Ok(f.big_keys(run, &self.target, job_id)),
            Source::List(l) => Ok(l.big_keys(run, &self.target, job_id)),
        }
    }

    /// The readers of what `cp` says is left, with the tracker and progress of the copy.
    pub fn copy_plan(&mut self, run: &Run<'_>, cp: &Checkpoint) -> CopyPlan {
        match &mut self.source {
            Source::Live(l) => l.copy_plan(run, cp),
            Source::File(f) => f.copy_plan(run, cp),
            Source::List(l) => l.copy_plan(run, cp),
        }
    }

    /// Notes on the counts (`totals`) the report shows.
    pub fn note_counts(&self, report: &mut Report, totals: &Counts) {
        if let Source::File(f) = &self.source {
            f.note_counts(report, totals, &self.target);
        }
    }

    /// After the copy, finished or not: a cluster source that changed meanwhile fails the job.
    pub async fn after_copy(&self, cp: &mut Checkpoint, cp_path: &Path) -> Step {
        match &self.source {
            Source::Live(l) => l.after_copy(cp, cp_path).await,
            Source::File(_) | Source::List(_) => Ok(()),
        }
    }

    /// `--follow` (returns true: it filled the report) or `--reconcile`, after the copy.
    pub async fn follow(
        &mut self,
        run: &Run<'_>,
        w: &WriterOptions,
        report: &mut Report,
    ) -> Followed {
        match &mut self.source {
            Source::Live(l) => l.follow(run, &self.target, w, report).await,
            Source::File(_) | Source::List(_) => Ok(false),
        }
    }

    /// Whether a rerun of a completed job still verifies (a list's does not: it was verified
    /// when it completed).
    pub fn rechecks_completed_job(&self) -> bool {
        !matches!(self.source, Source::List(_))
    }

    /// The verification of what was copied, against this source.
    pub async fn verify(&self, run: &Run<'_>) -> VerifyReport {
        match &self.source {
            Source::Live(l) => l.verify(run).await,
            Source::File(f) => f.verify(run).await,
            Source::List(l) => l.verify(run).await,
        }
    }

    /// Notes the report needs before its status is set.
    pub fn note_before_status(&self, plan: &MigratePlan, report: &mut Report) {
        if let Source::List(l) = &self.source {
            l.note_before_status(plan, report);
        }
    }

    /// Notes that depend on the status.
    pub fn note_after_status(&self, report: &mut Report) {
        if let Source::Live(_) = &self.source {
            super::live::note_changed_source(report);
        }
    }
}
