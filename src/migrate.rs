//! `ferry migrate`: checkpoint decision, the checks before writing (`check::gate`), copy,
//! verification, report.
//! `from_file.rs` is the same with an RDB file (`--rdb`) as the source.

mod from_file;
mod keys_from;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::{self, Gate, Layout, Purpose, SideInfo};
use crate::checkpoint::{Checkpoint, Tracker};
use crate::cli::{MigrateArgs, OnKeyError};
use crate::endpoint::cluster::{self, Addr, Cluster, Topology};
use crate::job::{Job, SourceSpec};
use crate::partition::{self, KeyShare};
use crate::pipeline::{self, CheckpointSink, ReaderFactory};
use crate::progress::Progress;
use crate::report::{human_bytes, KeyCounts, MigrateReport, Status};
use crate::sink::cluster::ClusterWriter;
use crate::sink::key_error::KeyErrors;
use crate::sink::restore::{Writer, WriterOptions};
use crate::sink::route::Router;
use crate::sink::{Clocks, Sink};
use crate::source::plan::{self, StreamPlan};
use crate::source::scan::{self, ScanOptions, ScanTask};
use crate::source::Position;
use crate::stop::Stop;
use crate::throttle::Throttles;

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
        expiry_uncertainty_ms: 0,
        elapsed_ms: 0,
        checkpoint: None,
        dead_letter: None,
        error: None,
        verify: None,
        notes: Vec::new(),
        peak_rss_bytes: None,
        follow: None,
        cutover: None,
        partition: None,
    };
    // After a signal, a phase stuck on a server that does not answer is abandoned (the copy
    // saves its checkpoint first, see `pipeline.rs`).
    match stop
        .clone()
        .or_abandon(run_inner(args, stop.clone(), &mut report))
        .await
    {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            report.status = if stop.was_interrupted() {
                Status::Interrupted
            } else {
                Status::Error
            };
            report.error = Some(format!("{e:#}"));
        }
        None => interrupted(&mut report),
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.peak_rss_bytes = crate::report::peak_rss_bytes();
    report
}

/// The report of a run abandoned after a signal while a server did not answer.
fn interrupted(report: &mut MigrateReport) {
    report.status = Status::Interrupted;
    report.error = Some(match &report.checkpoint {
        Some(cp) => format!(
            "interrupted while waiting for a server; the checkpoint {cp} holds every acknowledged batch: \
             rerun the same command to resume"
        ),
        None => "interrupted before the copy started; nothing was written".to_string(),
    });
}

/// How a live run starts: the job's own checkpoint, or a `--keys-from` list (its own job).
enum Start {
    /// The whole job (or its share), from its checkpoint.
    Job(Box<Checkpoint>, PathBuf),
    /// Just the listed keys.
    List(keys_from::KeyList),
}

async fn run_inner(
    args: &MigrateArgs,
    stop: Stop,
    report: &mut MigrateReport,
) -> anyhow::Result<()> {
    let mut job = Job::resolve(&args.endpoints, &args.selection, &args.tuning)?;
    report.target = job.target.endpoint.to_string();
    set_phase("preflight");
    job.refuse_live_only(&args.limits.limits(), "migrate")?;
    report.partition = job
        .partition
        .map(|p| partition::share_of("migrate", &job, p));
    job.prepare_source(&stop).await?;
    let source = match &job.source {
        SourceSpec::Live(s) => s.clone(),
        SourceSpec::Rdb(input) => return from_file::run(args, &job, input, stop, report).await,
    };
    report.source = source.endpoint.to_string();

    // The checkpoint first: a resumed run's target holds ferry's own keys, which the conflict
    // check must not count (its checkpoint says the check passed when the run started).
    // `--keys-from` is a job of its own (the list is part of its identity) with its own
    // checkpoint and a conflict check of the listed keys only (`keys_from.rs`).
    let start = match &args.keys_from {
        Some(path) => {
            let list = keys_from::KeyList::read(path, &job.dbs)?;
            job.keys_from = Some(keys_from::digest(&list));
            Start::List(list)
        }
        None => {
            let (cp, cp_path) = open_checkpoint(args, &job, report, &CheckpointWording::LIVE)?;
            Start::Job(Box::new(cp), cp_path)
        }
    };
    let (check_conflicts, copied_keys) = match &start {
        Start::Job(cp, _) => (
            args.on_conflict == crate::cli::OnConflict::Fail && !cp.conflict_check_passed,
            cp.totals.written,
        ),
        Start::List(_) => (false, 0),
    };
    let gated = check::gate(Gate {
        job: &job,
        purpose: Purpose::Migrate,
        on_conflict: args.on_conflict,
        conflicts: check_conflicts,
        copied_keys,
        follow: args
            .follow
            .follow
            .then_some(args.follow.enable_notifications),
        insecure: (
            args.endpoints.source_insecure,
            args.endpoints.target_insecure,
        ),
        file: None,
        skip_key_errors: args.on_key_error == crate::cli::OnKeyError::Skip,
    })
    .await?;
    report.notes.extend(gated.warnings.iter().cloned());
    let Some(sinfo) = gated.source else {
        anyhow::bail!("the source could not be examined; run `ferry check` with the same flags");
    };
    let tinfo = gated.target;
    tracing::info!(
        "source {} ({}), target {} ({})",
        source.endpoint,
        sinfo.describe(),
        job.target.endpoint,
        tinfo.describe()
    );
    let dbs: Vec<u32> = if job.dbs.is_empty() {
        sinfo.keyspace.keys().copied().collect()
    } else {
        job.dbs.clone()
    };
    let share = job
        .partition
        .map(|p| partition::Share::resolve(p, &sinfo.layout, &dbs));
    // The source as this worker sees it: the share's masters only (see `partition.rs`).
    let layout = share
        .as_ref()
        .map_or_else(|| sinfo.layout.clone(), |s| s.layout(&sinfo.layout));
    let dbs = share.as_ref().map_or(dbs, |s| s.dbs.clone());
    if let Some(s) = &share {
        eprintln!("ferry: partition {}", s.how);
    }
    let db_pairs: Vec<(u32, u32)> = dbs.iter().map(|&db| (db, job.target_db(db))).collect();
    let mut total_keys: u64 = dbs.iter().filter_map(|db| sinfo.keyspace.get(db)).sum();
    if let Some(s) = &share {
        total_keys = s.estimate(total_keys, &sinfo.layout);
    }
    let clocks = Clocks {
        source_skew_ms: gated.source_skew_ms,
        target_skew_ms: gated.target_skew_ms,
    };
    let max_bulk = gated.max_bulk;
    let (mut cp, cp_path) = match start {
        Start::Job(cp, cp_path) => (*cp, cp_path),
        Start::List(list) => {
            let ready = keys_from::Ready {
                source: &source,
                sinfo: &sinfo,
                tinfo: &tinfo,
                clocks,
                max_bulk,
            };
            return keys_from::run(args, &job, list, ready, stop, report).await;
        }
    };
    if check_conflicts {
        cp.conflict_check_passed = true;
    }
    cp.save(&cp_path)?;

    // --follow subscribes to the source's events before the first SCAN.
    let share_keys = share.as_ref().and_then(|s| s.keys.clone());
    let follow = match args.follow.follow {
        true => Some(
            crate::follow::prepare(
                args,
                &source,
                &sinfo,
                &layout,
                &dbs,
                share_keys.clone(),
                &cp_path,
            )
            .await?,
        ),
        false => None,
    };
    let target_rdb = crate::source::rdb_file::target_rdb_version(&tinfo.info);
    let key_errors = key_errors(args, &cp_path, report)?;
    let mut writer_opts =
        writer_options(args, &job, &tinfo, clocks, max_bulk, target_rdb, key_errors);
    let probe = crate::retry::retrying(job.retry_for(), || async {
        let mut src = source.connect().await?;
        let version = sinfo.info.version();
        Ok(crate::bigkey::size::Probe::choose(&mut src, version).await?)
    })
    .await?;
    let big = crate::bigkey::settings(
        job.tuning.big_key_bytes,
        job.tuning.batch_bytes,
        max_bulk,
        probe,
        tinfo.info.version(),
        &cp.job_id,
    );
    let big_probe = big.as_ref().map(|b| b.0);
    writer_opts.big = big.map(|b| b.1);
    let base = cp.totals;
    if !cp.completed {
        let plans = match &layout {
            Layout::Standalone(server) => plan::standalone(server, &dbs, &cp.streams),
            Layout::Cluster { cluster, topology } => {
                let (plans, notes) = plan::cluster(cluster, topology, &cp.streams);
                for note in notes {
                    eprintln!("ferry: {note}");
                }
                plans
            }
        };
        let tracker = Tracker::new(plans.iter().map(|p| (p.name.clone(), p.resume)).collect());
        let parallel_readers = match &layout {
            Layout::Standalone(_) => 2,
            Layout::Cluster { topology, .. } => topology.masters.len().max(2),
        };
        // Cluster masters read in this run (checked for failovers after the copy).
        let scanned: Vec<String> = plans
            .iter()
            .filter(|p| !p.is_done())
            .filter_map(|p| p.node_id.clone())
            .collect();
        let throttles = Arc::new(Throttles::new(args.limits.limits(), stop.clone()));
        let filter = share.as_ref().and_then(|s| s.read_filter.clone());
        let readers = scan_readers(&job, plans, filter, big_probe, &throttles, &stop);
        let writers = writers(&tinfo.layout, job.tuning.writers, &writer_opts);
        let mut progress = Progress::new(
            args.output.progress,
            Duration::from_secs(args.output.log_every),
            total_keys,
        )
        .with_throttles(throttles);
        set_phase("copy");
        let result = pipeline::copy(
            readers,
            parallel_readers,
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
        let mut totals = base;
        totals.add(&result.this_run);
        report.keys = KeyCounts::from_counts(&totals, result.this_run.written);
        report.bytes = totals.bytes;
        report.expiry_uncertainty_ms = totals.expiry_uncertainty_ms;
        if let Layout::Cluster { cluster, topology } = &layout {
            source_topology_check(cluster, topology, &scanned, &mut cp, &cp_path).await?;
        }
        if !copy_finished(report, result.error, &stop, totals.written, &cp_path)? {
            return Ok(());
        }
    } else {
        report.keys = KeyCounts::from_counts(&base, 0);
        report.bytes = base.bytes;
        report.expiry_uncertainty_ms = base.expiry_uncertainty_ms;
    }
    let follow_ctx = || crate::follow::Context {
        args,
        job: &job,
        source: &source,
        sinfo: &sinfo,
        layout: &layout,
        share: share_keys.clone(),
        target: &tinfo.layout,
        writer: writer_opts.clone(),
        pairs: db_pairs.clone(),
    };
    if let Some(setup) = follow {
        crate::follow::run(setup, follow_ctx(), stop, report).await;
        return Ok(());
    }
    if args.follow.reconcile {
        let ctx = follow_ctx();
        let line = crate::follow::reconcile_once(ctx, &stop).await?;
        report.notes.push(line);
    }
    let verified = if args.no_verify {
        None
    } else {
        set_phase("verify");
        Some(crate::verify::after_migrate(&source, &job, &db_pairs, share_keys, args, &stop).await)
    };
    finish_with(report, verified);
    let n = report
        .verify
        .as_ref()
        .map_or(0, |v| v["totals"]["differences"].as_u64().unwrap_or(0));
    // Dead-lettered keys are missing on the target by design; finish_with says so.
    if report.status == Status::Mismatch && n > report.keys.dead_lettered {
        report.notes.push(format!(
            "{n} keys differ although every key was copied: the source most likely changed during the run (it is \
             live and took writes). To copy while the application writes, use --follow and then ferry cutover \
             (docs/cutover.md); to bring this target up to date now, rerun the same command with --reconcile"
        ));
    }
    set_phase("done");
    Ok(())
}

/// Tells the metrics (when served) which phase the job is in.
pub(crate) fn set_phase(phase: &str) {
    if let Some(m) = crate::metrics::get() {
        m.set_phase(phase);
    }
}

/// The flag that sends keys into target DB `t`, for messages: `--db-map S:T` or `--db T`.
pub(crate) fn target_db_flag(pairs: &[(u32, u32)], t: u32) -> String {
    match pairs.iter().find(|p| p.1 == t) {
        Some(&(s, t)) if s != t => format!("--db-map {s}:{t}"),
        _ => format!("--db {t}"),
    }
}

/// After the copy phase: a failed copy becomes the error, an interrupted one the report's
/// status. Returns `Ok(true)` when the copy finished and the job goes on to verification.
/// `n` writers for the target: one connection each to a standalone server, or one per master of
/// a cluster.
pub(crate) fn writers(layout: &Layout, n: usize, opts: &WriterOptions) -> Vec<Sink> {
    (0..n)
        .map(|i| {
            let mut opts = opts.clone();
            if let Some(big) = &mut opts.big {
                (big.writer, big.writers) = (i, n);
            }
            match layout {
                Layout::Standalone(server) => Sink::Standalone(Writer::new(server.clone(), opts)),
                Layout::Cluster { cluster, topology } => Sink::Cluster(ClusterWriter::new(
                    Router::new(cluster.clone(), topology, opts.retry_for),
                    opts,
                )),
            }
        })
        .collect()
}

/// What the writers do with a key the target refuses (`--on-key-error`): with `skip`, the
/// dead-letter file (`--dead-letter`, or beside the checkpoint `cp_path`) is checked writable
/// now, and emptied when this run starts a new job (not when it resumes one).
pub(crate) fn key_errors(
    args: &MigrateArgs,
    cp_path: &std::path::Path,
    report: &mut MigrateReport,
) -> anyhow::Result<KeyErrors> {
    if args.on_key_error == OnKeyError::Stop {
        if let Some(p) = &args.dead_letter {
            anyhow::bail!(
                "--dead-letter {} is only used with --on-key-error skip; add that flag, or leave --dead-letter out",
                p.display()
            );
        }
        return Ok(KeyErrors::Stop);
    }
    let path = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| crate::dead_letter::default_path(cp_path));
    let letters = crate::dead_letter::DeadLetters::prepare(&path, !report.resumed)?;
    report.dead_letter = Some(path.display().to_string());
    eprintln!(
        "ferry: keys the target refuses for a reason of their own go to the dead-letter file {}",
        path.display()
    );
    Ok(KeyErrors::new(args.on_key_error, Some(Arc::new(letters))))
}

/// How the writers write, for a live source or a file.
pub(crate) fn writer_options(
    args: &MigrateArgs,
    job: &Job,
    tinfo: &SideInfo,
    clocks: Clocks,
    max_bulk: Option<u64>,
    target_rdb: Option<u16>,
    key_errors: KeyErrors,
) -> WriterOptions {
    WriterOptions {
        on_conflict: args.on_conflict,
        db_map: job.db_map.clone(),
        clocks,
        max_bulk,
        retry_for: job.retry_for(),
        select_db: !tinfo.is_cluster(),
        target_rdb,
        big: None,
        key_errors,
    }
}

/// What the checkpoint messages say that differs between a live source and a file.
pub(crate) struct CheckpointWording {
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
pub(crate) fn open_checkpoint(
    args: &MigrateArgs,
    job: &Job,
    report: &mut MigrateReport,
    wording: &CheckpointWording,
) -> anyhow::Result<(Checkpoint, PathBuf)> {
    let job_id = job.fingerprint(args.on_conflict);
    let cp_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("ferry-{job_id}.checkpoint.json")));
    report.checkpoint = Some(cp_path.display().to_string());
    let cp = match if args.fresh { None } else { Checkpoint::load(&cp_path)? } {
        Some(cp) if cp.job_id != job_id => anyhow::bail!(
            "the checkpoint {} belongs to a different job ({}); this command is {}.{} \
             Use --checkpoint to pick another file, or --fresh to start this job over and overwrite it",
            cp_path.display(),
            cp.job,
            job.identity(args.on_conflict),
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
            Checkpoint::new(job_id, job.identity(args.on_conflict))
        }
    };
    Ok((cp, cp_path))
}

pub(crate) fn copy_finished(
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
pub(crate) fn finish_with(
    report: &mut MigrateReport,
    verified: Option<crate::verify::VerifyReport>,
) {
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

/// After copying from a cluster: if the source's slots moved meanwhile, keys may have moved from
/// a master not yet scanned to one already scanned; if a master read in this run (`scanned`) was
/// replaced, its cursor may have continued on another node. Forgets those masters' streams (so a
/// rerun scans their slots again on their current masters) and fails. See `source/plan.rs`.
async fn source_topology_check(
    cluster: &Cluster,
    before: &Topology,
    scanned: &[String],
    cp: &mut Checkpoint,
    cp_path: &std::path::Path,
) -> anyhow::Result<()> {
    let known: Vec<Addr> = before.masters.iter().map(|m| m.addr.clone()).collect();
    let after = match cluster.discover(&known).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("could not re-read the source cluster's topology after the copy: {e:#}");
            return Ok(());
        }
    };
    let mut moved = plan::changed_during_run(before, &after, scanned);
    // A slot still half migrated leaves the same slot sets: ask each master of the start.
    for m in &before.masters {
        if moved.iter().any(|x| x.id == m.id) {
            continue;
        }
        let migrating = async {
            let mut c = cluster.server(&m.addr).connect().await?;
            anyhow::Ok(cluster::whoami(&mut c).await?.migrating)
        }
        .await;
        match migrating {
            Ok(true) => moved.push(m),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "could not ask source master {} for open slots: {e:#}",
                m.addr
            ),
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = moved
        .iter()
        .map(|m| format!("{} slots {}", m.short_id(), m.slots_text()))
        .collect();
    for m in &moved {
        cp.streams.remove(&plan::cluster_stream_name(m));
    }
    cp.completed = false;
    cp.save(cp_path)?;
    anyhow::bail!(
        "the source cluster changed during the copy (slots resharded or still migrating, or a master failed \
         over: master {}), so keys of those slots may have been missed. Rerun the same command once the cluster \
         is stable: those slots are scanned again on the masters that serve them then (keys already copied are \
         rewritten with the same values)",
        names.join(", ")
    )
}

/// One reader per stream still to do, starting at its checkpointed cursor. Stream indexes are
/// positions in `plans` (the tracker's order).
fn scan_readers(
    job: &Job,
    plans: Vec<StreamPlan>,
    filter: Option<Arc<KeyShare>>,
    big: Option<scan::BigProbe>,
    throttles: &Throttles,
    stop: &Stop,
) -> Vec<ReaderFactory> {
    let opts = ScanOptions {
        scan_count: job.tuning.scan_count,
        batch_keys: job.tuning.batch_keys,
        batch_bytes: job.tuning.batch_bytes,
        retry_for: job.retry_for(),
        big,
    };
    plans
        .into_iter()
        .enumerate()
        .filter_map(|(i, plan)| {
            let cursor = match plan.resume {
                Some(Position::Done) => return None,
                Some(Position::Cursor(c)) => c,
                _ => 0,
            };
            let task = ScanTask {
                throttle: throttles.for_server(&plan.server),
                stream: i,
                server: plan.server,
                db: plan.db,
                cursor,
                first_seq: 0,
                node_id: plan.node_id,
                filter: filter.clone(),
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
        if r.keys.dead_lettered > 0 {
            eprintln!(
                "ferry: keys: {} refused by the target and dead-lettered (not copied)",
                r.keys.dead_lettered
            );
        }
        if r.keys.reencoded > 0 {
            eprintln!(
                "ferry: keys: {} re-encoded for the target's older RDB version",
                r.keys.reencoded
            );
        }
    }
    for note in &r.notes {
        eprintln!("ferry: note: {note}");
    }
    if let Some(e) = &r.error {
        eprintln!("ferry: error: {e}");
    }
}
