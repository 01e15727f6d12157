//! `ferry migrate`: preflight, checkpoint decision, copy, verification, report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, Tracker};
use crate::cli::MigrateArgs;
use crate::endpoint::Server;
use crate::job::{Job, SourceSpec};
use crate::pipeline::{self, CheckpointSink, ReaderFactory};
use crate::preflight;
use crate::progress::Progress;
use crate::report::{human_bytes, KeyCounts, MigrateReport, Status};
use crate::sink::restore::{Writer, WriterOptions};
use crate::sink::Clocks;
use crate::source::scan::{self, ScanOptions, ScanTask};
use crate::source::{Counts, Position};
use crate::stop::Stop;

/// Runs `ferry migrate` and returns its report (never panics on bad input; errors land in it).
pub async fn run(args: &MigrateArgs, stop: Stop) -> MigrateReport {
    let started = Instant::now();
    let mut report = MigrateReport {
        status: Status::Error,
        source: args
            .endpoints
            .source
            .as_deref()
            .map(crate::endpoint::url::redact)
            .unwrap_or_else(|| {
                args.endpoints
                    .rdb
                    .as_ref()
                    .map(|p| format!("rdb:{}", p.display()))
                    .unwrap_or_default()
            }),
        target: crate::endpoint::url::redact(&args.endpoints.target),
        resumed: false,
        keys: KeyCounts::default(),
        bytes: 0,
        elapsed_ms: 0,
        checkpoint: None,
        error: None,
        verify: None,
    };
    if let Err(e) = run_inner(args, stop, &mut report).await {
        report.status = Status::Error;
        report.error = Some(format!("{e:#}"));
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

async fn run_inner(
    args: &MigrateArgs,
    stop: Stop,
    report: &mut MigrateReport,
) -> anyhow::Result<()> {
    let job = Job::resolve(&args.endpoints, &args.selection, &args.tuning)?;
    report.target = job.target.endpoint.to_string();
    let source = match &job.source {
        SourceSpec::Live(s) => s.clone(),
        SourceSpec::Rdb(path) => anyhow::bail!(
            "--rdb {}: reading RDB files is not available in this build yet",
            path.display()
        ),
    };
    report.source = source.endpoint.to_string();

    let mut src = source.connect().await?;
    let sinfo = preflight::inspect(&mut src, &source).await?;
    let mut dst = job.target.connect().await?;
    let tinfo = preflight::inspect(&mut dst, &job.target).await?;
    tracing::info!(
        "source {} ({}), target {} ({})",
        source.endpoint,
        sinfo.product(),
        job.target.endpoint,
        tinfo.product()
    );
    let dbs: Vec<u32> = if job.dbs.is_empty() {
        sinfo.keyspace.keys().copied().collect()
    } else {
        job.dbs.clone()
    };
    let total_keys: u64 = dbs.iter().filter_map(|db| sinfo.keyspace.get(db)).sum();
    let clocks = Clocks {
        source_skew_ms: preflight::clock_skew(&mut src).await?,
        target_skew_ms: preflight::clock_skew(&mut dst).await?,
    };
    let max_bulk = preflight::max_bulk_len(&mut dst).await;

    // Checkpoint: resume the same job, refuse another job's, start fresh on request.
    let job_id = job.fingerprint(args.on_conflict);
    let cp_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("ferry-{job_id}.checkpoint.json")));
    report.checkpoint = Some(cp_path.display().to_string());
    let mut cp = match if args.fresh { None } else { Checkpoint::load(&cp_path)? } {
        Some(cp) if cp.job_id != job_id => anyhow::bail!(
            "the checkpoint {} belongs to a different job ({}); this command is {}. \
             Use --checkpoint to pick another file, or --fresh to start this job over and overwrite it",
            cp_path.display(),
            cp.job,
            job.identity(args.on_conflict)
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
                    "ferry: resuming from checkpoint {} ({} keys already copied)",
                    cp_path.display(),
                    cp.totals.written
                );
            }
            cp
        }
        None => {
            eprintln!("ferry: checkpoint: {} (rerun the same command to resume)", cp_path.display());
            Checkpoint::new(job_id, job.identity(args.on_conflict))
        }
    };
    let db_pairs: Vec<(u32, u32)> = dbs.iter().map(|&db| (db, job.target_db(db))).collect();
    if args.on_conflict == crate::cli::OnConflict::Fail && !cp.conflict_check_passed {
        preflight::check_conflicts(&source, &mut dst, &db_pairs, job.tuning.scan_count).await?;
        cp.conflict_check_passed = true;
    }
    cp.save(&cp_path)?;
    drop(src);
    drop(dst);

    let base = cp.totals;
    let mut this_run = Counts::default();
    if !cp.completed {
        let streams: Vec<(String, u32)> = dbs
            .iter()
            .map(|&db| {
                (
                    format!("{}:{}/db{db}", source.endpoint.host, source.endpoint.port),
                    db,
                )
            })
            .collect();
        let tracker = Tracker::new(
            streams
                .iter()
                .map(|(name, _)| (name.clone(), cp.streams.get(name).copied()))
                .collect(),
        );
        let readers = scan_readers(&source, &job, &streams, &cp, &stop);
        let writers = (0..job.tuning.writers)
            .map(|_| {
                Writer::new(
                    job.target.clone(),
                    WriterOptions {
                        on_conflict: args.on_conflict,
                        db_map: job.db_map.clone(),
                        clocks,
                        max_bulk,
                        retry_for: Duration::from_secs(job.tuning.retry_for),
                        select_db: true,
                    },
                )
            })
            .collect();
        let mut progress = Progress::new(
            args.output.progress,
            Duration::from_secs(args.output.log_every),
            total_keys,
        );
        let result = pipeline::copy(
            readers,
            2,
            writers,
            tracker,
            CheckpointSink {
                checkpoint: &mut cp,
                path: &cp_path,
                base,
            },
            &mut progress,
            stop.clone(),
        )
        .await;
        progress.finish();
        this_run = result.this_run;
        let mut totals = base;
        totals.add(&this_run);
        report.keys = KeyCounts::from_counts(&totals, this_run.written);
        report.bytes = totals.bytes;
        if let Some(e) = result.error {
            return Err(e.context(format!(
                "the copy stopped after {} keys; the checkpoint {} is saved — fix the cause and rerun the same command to resume",
                totals.written,
                cp_path.display()
            )));
        }
        if stop.was_interrupted() {
            report.status = Status::Interrupted;
            report.error = Some(format!(
                "interrupted after {} keys; the checkpoint {} is saved: rerun the same command to resume",
                totals.written,
                cp_path.display()
            ));
            return Ok(());
        }
    } else {
        report.keys = KeyCounts::from_counts(&base, 0);
        report.bytes = base.bytes;
    }
    report.status = Status::Ok;
    let _ = this_run;
    Ok(())
}

/// One reader per stream still to do, starting at its checkpointed cursor.
fn scan_readers(
    source: &Server,
    job: &Job,
    streams: &[(String, u32)],
    cp: &Checkpoint,
    stop: &Stop,
) -> Vec<ReaderFactory> {
    let opts = ScanOptions {
        scan_count: job.tuning.scan_count,
        batch_keys: job.tuning.batch_keys,
        batch_bytes: job.tuning.batch_bytes,
        retry_for: Duration::from_secs(job.tuning.retry_for),
    };
    streams
        .iter()
        .enumerate()
        .filter_map(|(i, (name, db))| {
            let cursor = match cp.streams.get(name) {
                Some(Position::Done) => return None,
                Some(Position::Cursor(c)) => *c,
                _ => 0,
            };
            let task = ScanTask {
                stream: i,
                server: source.clone(),
                db: *db,
                cursor,
                first_seq: 0,
            };
            let opts = opts.clone();
            let stop = stop.clone();
            let make: ReaderFactory =
                Box::new(move |tx| Box::pin(scan::scan_db(task, opts, tx, stop)));
            Some(make)
        })
        .collect()
}

/// Prints the human summary of a migrate run on stderr.
pub fn print_summary(r: &MigrateReport) {
    let secs = r.elapsed_ms as f64 / 1000.0;
    let rate = if secs > 0.0 {
        r.keys.written_this_run as f64 / secs
    } else {
        0.0
    };
    match r.status {
        Status::Ok | Status::Mismatch => eprintln!(
            "ferry: copied {} keys ({}) from {} to {} in {secs:.1}s ({rate:.0} keys/s this run)",
            r.keys.written,
            human_bytes(r.bytes),
            r.source,
            r.target
        ),
        Status::Interrupted => eprintln!("ferry: interrupted."),
        Status::Error => {}
    }
    if r.keys.scanned > 0 || r.status != Status::Error {
        eprintln!(
        "ferry: keys: scanned {}, written {} ({} this run), expired before copy {}, vanished {}, conflicts kept {}",
        r.keys.scanned, r.keys.written, r.keys.written_this_run, r.keys.expired_skipped, r.keys.vanished, r.keys.conflicts
    );
    }
    if let Some(e) = &r.error {
        eprintln!("ferry: error: {e}");
    }
}
