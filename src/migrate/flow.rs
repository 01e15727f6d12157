//! The one `ferry migrate` flow, whatever the source (`source.rs` says what differs).
//!
//! Each step is written once, in this order:
//! 1. resolve the job and open the source (a file is checked whole here, before any write);
//! 2. the checkpoint, opened before the checks: a resumed run's target holds ferry's own keys,
//!    which the conflict check must not count (its checkpoint says whether the check passed);
//! 3. the gate (`check::gate`): every check `ferry check` shows, before the first write,
//!    retried within `--retry-for`;
//! 4. the source made ready (DBs, `--partition` share, totals, clock skews);
//! 5. the conflict check (`--on-conflict fail`, skipped when the checkpoint says it passed),
//!    then the checkpoint saved;
//! 6. what comes before the copy (`--follow` subscribes, a file's function libraries load),
//!    the writers' options (`--on-key-error`, big keys);
//! 7. the copy (`pipeline.rs`), unless the checkpoint says the job completed;
//! 8. `--follow` or `--reconcile`, else the verification, then the status and the report.

use std::path::PathBuf;

use super::source::{Opened, Ready};
use super::writers::{key_errors, writer_options, writers};
use crate::checkpoint::Checkpoint;
use crate::counts::Counts;
use crate::job::Job;
use crate::pipeline::{self, CheckpointSink};
use crate::plan::MigratePlan;
use crate::policy::OnConflict;
use crate::report::{KeyCounts, MigrateReport, Status};
use crate::sink::options::WriterOptions;
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

/// Runs the migration, filling `report`; see the module docs for the steps.
pub(super) async fn run(
    plan: &MigratePlan,
    stop: Stop,
    report: &mut MigrateReport,
) -> anyhow::Result<()> {
    let mut job = plan.job.clone();
    report.target = job.target.endpoint.to_string();
    super::set_phase("preflight");
    job.refuse_live_only(&plan.limits, "migrate")?;
    report.partition = job.partition.map(|p| job.share_of("migrate", p));
    job.prepare_source(&stop).await?;
    let Some(opened) = Opened::open(plan, &mut job, &stop, report).await? else {
        // Interrupted while the file was checked: nothing was written.
        return Ok(());
    };
    let run = Run {
        plan,
        job: &job,
        stop: &stop,
    };
    let (mut cp, cp_path) = open_checkpoint(plan, &job, report, &opened.wording())?;
    let mut ready = gate(&run, opened, &cp, report).await?;
    if needs_conflict_check(plan, &cp) {
        ready.check_conflicts(&run).await?;
        cp.conflict_check_passed = true;
    }
    cp.save(&cp_path)?;
    ready.before_copy(&run, &cp_path, report).await?;
    let key_errors = key_errors(plan, &cp_path, report)?;
    let mut writer_opts = writer_options(plan, &job, &ready.target, key_errors);
    writer_opts.big = ready.big_keys(&run, &cp.job_id).await?;
    let already_done = cp.completed;
    if already_done {
        fill_counts(report, &cp.totals, 0);
        ready.note_counts(report, &cp.totals);
    } else {
        let to = Copy {
            writer: &writer_opts,
            cp: &mut cp,
            cp_path: &cp_path,
        };
        if !copy(&run, &mut ready, to, report).await? {
            return Ok(());
        }
    }
    if ready.follow(&run, &writer_opts, report).await? {
        return Ok(());
    }
    finish(&run, &ready, already_done, report).await;
    Ok(())
}

/// `--on-conflict fail` and the checkpoint does not say the conflict check passed.
fn needs_conflict_check(plan: &MigratePlan, cp: &Checkpoint) -> bool {
    plan.on_conflict == OnConflict::Fail && !cp.conflict_check_passed
}

/// The checks before the first write (their warnings go to the report's notes), then the
/// source made ready with what they found.
async fn gate(
    run: &Run<'_>,
    opened: Opened,
    cp: &Checkpoint,
    report: &mut MigrateReport,
) -> anyhow::Result<Ready> {
    let conflicts = needs_conflict_check(run.plan, cp);
    let gated = crate::check::gate(opened.gate(run, cp, conflicts)).await?;
    report.notes.extend(gated.warnings.iter().cloned());
    opened.ready(run, gated, report).await
}

/// What the copy writes into and keeps up to date.
struct Copy<'a> {
    writer: &'a WriterOptions,
    cp: &'a mut Checkpoint,
    cp_path: &'a std::path::Path,
}

/// The copy of what the checkpoint says is left. Returns `Ok(true)` when it finished (see
/// [`copy_finished`]).
async fn copy(
    run: &Run<'_>,
    ready: &mut Ready,
    to: Copy<'_>,
    report: &mut MigrateReport,
) -> anyhow::Result<bool> {
    let Copy {
        writer,
        cp,
        cp_path,
    } = to;
    let base = cp.totals;
    let plan = ready.copy_plan(run, cp);
    let writers = writers(&ready.target.info.layout, run.job.tuning.writers, writer);
    let mut progress = plan.progress;
    super::set_phase("copy");
    let result = pipeline::copy(
        plan.readers,
        plan.parallel,
        writers,
        plan.tracker,
        CheckpointSink {
            checkpoint: cp,
            path: cp_path,
            base,
        },
        &mut progress,
        run.stop.clone(),
    )
    .await;
    progress.finish();
    let mut totals = base;
    totals.add(&result.this_run);
    fill_counts(report, &totals, result.this_run.written);
    ready.note_counts(report, &totals);
    ready.after_copy(cp, cp_path).await?;
    copy_finished(report, result.error, run.stop, totals.written, cp_path)
}

/// The report's key counts: `totals` over every run of the job, `written_this_run` of this one.
fn fill_counts(report: &mut MigrateReport, totals: &Counts, written_this_run: u64) {
    report.keys = KeyCounts::from_counts(totals, written_this_run);
    report.bytes = totals.bytes;
    report.expiry_uncertainty_ms = totals.expiry_uncertainty_ms;
}

/// The verification (unless `--no-verify`, or the source does not recheck a job that had
/// completed already), then the status and the source's closing notes.
async fn finish(run: &Run<'_>, ready: &Ready, already_done: bool, report: &mut MigrateReport) {
    let closing = !already_done || ready.rechecks_completed_job();
    let verified = if run.plan.no_verify || !closing {
        None
    } else {
        super::set_phase("verify");
        Some(ready.verify(run).await)
    };
    if closing {
        ready.note_before_status(run.plan, report);
    }
    finish_with(report, verified);
    ready.note_after_status(report);
    super::set_phase("done");
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

/// Loads the job's checkpoint to resume it, refuses another job's, or starts a new one (always
/// with `--fresh`). Returns it with its path, which the report records.
fn open_checkpoint(
    plan: &MigratePlan,
    job: &Job,
    report: &mut MigrateReport,
    wording: &CheckpointWording,
) -> anyhow::Result<(Checkpoint, PathBuf)> {
    let job_id = job.fingerprint(plan.on_conflict);
    let cp_path = plan
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("ferry-{job_id}.checkpoint.json")));
    report.checkpoint = Some(cp_path.display().to_string());
    let cp = match if plan.fresh { None } else { Checkpoint::load(&cp_path)? } {
        Some(cp) if cp.job_id != job_id => anyhow::bail!(
            "the checkpoint {} belongs to a different job ({}); this command is {}.{} \
             Use --checkpoint to pick another file, or --fresh to start this job over and overwrite it",
            cp_path.display(),
            cp.job,
            job.identity(plan.on_conflict),
            wording.mismatch_hint
        ),
        Some(cp) => {
            report.resumed = true;
            if cp.completed {
                eprintln!(
                    "ferry: the checkpoint {} says this job already completed; nothing to copy (use --fresh to copy again)",
                    cp_path.display()
                );
            } else {
                eprintln!(
                    "ferry: resuming from checkpoint {} ({} keys already copied{})",
                    cp_path.display(),
                    cp.totals.written,
                    (wording.position)(&cp)
                );
            }
            cp
        }
        None => {
            eprintln!(
                "ferry: checkpoint: {} (rerun the same command to resume)",
                cp_path.display()
            );
            Checkpoint::new(job_id, job.identity(plan.on_conflict))
        }
    };
    Ok((cp, cp_path))
}

/// After the copy phase: a failed copy becomes the error, an interrupted one the report's
/// status. Returns `Ok(true)` when the copy finished and the job goes on to verification.
fn copy_finished(
    report: &mut MigrateReport,
    error: Option<anyhow::Error>,
    stop: &Stop,
    written: u64,
    cp_path: &std::path::Path,
) -> anyhow::Result<bool> {
    if let Some(e) = error {
        return Err(e.context(format!(
            "the copy stopped after {written} keys; the checkpoint {} is saved — fix the cause and rerun the same command to resume",
            cp_path.display()
        )));
    }
    if stop.was_interrupted() {
        report.status = Status::Interrupted;
        report.error = Some(format!(
            "interrupted after {written} keys; the checkpoint {} is saved: rerun the same command to resume",
            cp_path.display()
        ));
        return Ok(false);
    }
    Ok(true)
}

/// Sets the final status: the verification's when it ran and did not pass, `ok` otherwise;
/// `mismatch` (exit 1) when keys were dead-lettered, which are missing on the target.
fn finish_with(report: &mut MigrateReport, verified: Option<crate::verify::VerifyReport>) {
    report.status = Status::Ok;
    if let Some(v) = verified {
        report.verify = Some(v.to_json());
        if v.status != Status::Ok {
            report.status = v.status;
            report.error = v.error;
        }
    }
    let n = report.keys.dead_lettered;
    if n > 0 {
        let file = report
            .dead_letter
            .as_deref()
            .unwrap_or("the dead-letter file");
        let note = format!(
            "{n} keys were refused by the target and written to {file} instead (not copied): the target lacks them, \
             so verification reports them missing. Fix the cause given in each line's \"reason\" (an ACL key pattern, \
             proto-max-bulk-len, a module), then copy just those keys with the same command plus --keys-from {file}"
        );
        report.notes.push(note.clone());
        if report.status == Status::Ok {
            report.status = Status::Mismatch;
            report.error = Some(note);
        }
    }
}
