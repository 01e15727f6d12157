//! `ferry migrate --rdb FILE`: the copy with an RDB file as the source.
//!
//! The same target side as a live migration (the checks before writing, writers, `--on-conflict`,
//! checkpoint, verification, report); only the source differs:
//! 1. the whole file is checked before anything is written (`source/rdb_file.rs` explains why),
//!    which also gives exact key counts, the function libraries and the module data;
//! 2. decisions that cannot be undone half-way are taken up front: module data the target cannot
//!    load stops the job unless `--skip-modules`; function libraries are loaded with
//!    `FUNCTION LOAD` (or skipped with `--skip-functions`); with `--on-conflict fail` every key of
//!    the file is looked up on the target (`EXISTS`) when the target DB is not empty;
//! 3. one reader streams the file into the writers; its position in the checkpoint is a
//!    resumable reader state, so a rerun continues where the last acknowledged batch ended.
//!
//! The steps around the copy (checkpoint, gate, writers, verification, report) are the flow's
//! (`flow.rs`); this file answers what the flow asks of a file source (`source.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::flow::{CheckpointWording, Run};
use super::source::CopyPlan;
use super::writers::Target;
use crate::check::{self, Conflicts, Gated, Layout, Probe, SideInfo};
use crate::checkpoint::{Checkpoint, Tracker};
use crate::counts::Counts;
use crate::endpoint::route::Router;
use crate::endpoint::{Connection, Reply};
use crate::job::Job;
use crate::pipeline::ReaderFactory;
use crate::plan::MigratePlan;
use crate::policy::OnConflict;
use crate::progress::Progress;
use crate::report::{MigrateReport, Status};
use crate::sink::options::Clocks;
use crate::source::rdb_file::{self, FileOptions, FileSummary, FileTask, STREAM};
use crate::source::rdb_input::RdbInput;
use crate::source::{Batch, Position};
use crate::stop::Stop;

/// A file checked whole, before the checks of the target.
pub(super) struct OpenedFile {
    /// The regular file (or spool) read.
    path: PathBuf,
    /// How it is read.
    fopts: FileOptions,
    /// What the check of the whole file found.
    pub summary: FileSummary,
    /// (source DB, target DB) for each DB copied.
    pairs: Vec<(u32, u32)>,
    /// The target, as examined before the file.
    tinfo: SideInfo,
    /// A connection to the target, for the module and function checks.
    dst: Connection,
}

/// A file source ready to copy.
pub(super) struct FileSource {
    path: PathBuf,
    fopts: FileOptions,
    summary: FileSummary,
    pairs: Vec<(u32, u32)>,
    /// Function libraries to load before the copy.
    functions: FunctionPlan,
    /// Until the functions are loaded.
    dst: Option<Connection>,
}

impl OpenedFile {
    /// Examines the target, then checks the whole file of `input` (its regular file or spool)
    /// and the DBs it goes into. `None` when a signal interrupted the check (the report says so).
    pub async fn open(
        plan: &MigratePlan,
        job: &Job,
        input: &RdbInput,
        stop: &Stop,
        report: &mut MigrateReport,
    ) -> anyhow::Result<Option<OpenedFile>> {
        let path = input.path();
        report.source = format!("rdb:{}", input.name());
        let retry_for = job.retry_for();
        let (dst, tinfo) = crate::endpoint::retry::retrying(retry_for, || async {
            let mut dst = job.target.connect().await?;
            let info = check::examine(&mut dst, &job.target, &job.target_addr_map).await?;
            Ok((dst, info))
        })
        .await?;
        let target_rdb = rdb_file::target_rdb_version(&tinfo.info);
        let selected: Option<BTreeSet<u32>> =
            (!job.dbs.is_empty()).then(|| job.dbs.iter().copied().collect());
        let fopts = FileOptions {
            batch_keys: job.tuning.batch_keys,
            batch_bytes: job.tuning.batch_bytes,
            dbs: selected.clone(),
            target_rdb,
            skip_modules: plan.skip_modules,
            big_value_bytes: (job.tuning.big_key_bytes > 0).then_some(job.tuning.big_key_bytes),
        };
        let Some(summary) = examine_file(path, &fopts, stop, report).await? else {
            return Ok(None);
        };
        let mut file = OpenedFile {
            path: path.to_path_buf(),
            fopts,
            summary,
            pairs: Vec::new(),
            tinfo,
            dst,
        };
        file.plan_dbs(plan, job, selected.as_ref(), report).await?;
        Ok(Some(file))
    }

    /// The DBs to copy and where they go, refused before any write when the file lacks a
    /// selected DB or the target cannot take them.
    async fn plan_dbs(
        &mut self,
        plan: &MigratePlan,
        job: &Job,
        selected: Option<&BTreeSet<u32>>,
        report: &mut MigrateReport,
    ) -> anyhow::Result<()> {
        let (path, summary, tinfo) = (&self.path, &self.summary, &self.tinfo);
        let dbs: Vec<u32> = match selected {
            Some(s) => s.iter().copied().collect(),
            None => summary
                .dbs
                .iter()
                .filter(|(_, s)| s.keys + s.empty > 0)
                .map(|(db, _)| *db)
                .collect(),
        };
        if let Some(sel) = selected {
            let sel: Vec<u32> = sel.iter().copied().collect();
            rdb_file::check_selected_dbs(path, &sel, &summary.dbs.keys().copied().collect())?;
        }
        let total_keys = summary.keys_in(selected);
        eprintln!(
            "ferry: {}: {}, {} keys to copy (DBs {}); target {} ({})",
            path.display(),
            summary.describe(),
            total_keys,
            dbs.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            job.target.endpoint,
            tinfo.describe()
        );
        if summary.checksum.is_none() {
            report.notes.push(format!(
                "the file has no checksum (RDB {} or written with rdbchecksum no): every value was decoded \
                 to check it before writing",
                summary.header.version
            ));
        }
        let pairs: Vec<(u32, u32)> = dbs.iter().map(|&db| (db, job.target_db(db))).collect();
        check_db_plan(&pairs, tinfo, plan.on_conflict)?;
        if !tinfo.is_cluster() {
            let tdbs: Vec<u32> = pairs.iter().map(|p| p.1).collect();
            let flag = |t| crate::check::target_db_flag(&pairs, t);
            check::check_dbs_exist(&mut self.dst, &tdbs, &flag).await?;
        }
        self.pairs = pairs;
        Ok(())
    }

    /// After the gate: the decisions about module data and function libraries, taken before
    /// anything is written. The target is the one examined before the file.
    pub async fn ready(
        self,
        run: &Run<'_>,
        gated: Gated,
        report: &mut MigrateReport,
    ) -> anyhow::Result<(FileSource, Target)> {
        let OpenedFile {
            path,
            fopts,
            summary,
            pairs,
            tinfo,
            mut dst,
        } = self;
        check_modules(run.plan, &summary, &mut dst, report).await?;
        let functions = plan_functions(run.plan, &summary, &tinfo, &mut dst, report).await?;
        // The file's expiries are on the clock of the machine that wrote it; ferry can only take
        // that to be this machine's.
        let target = Target {
            info: tinfo,
            clocks: Clocks {
                source_skew_ms: 0,
                target_skew_ms: gated.target_skew_ms,
            },
            max_bulk: gated.max_bulk,
        };
        let file = FileSource {
            path,
            fopts,
            summary,
            pairs,
            functions,
            dst: Some(dst),
        };
        Ok((file, target))
    }
}

/// Checks the whole file before anything is written (`source/rdb_file.rs`); `None` when a
/// signal interrupted the check, which the report then says.
async fn examine_file(
    path: &Path,
    fopts: &FileOptions,
    stop: &Stop,
    report: &mut MigrateReport,
) -> anyhow::Result<Option<FileSummary>> {
    eprintln!(
        "ferry: checking {} before writing anything (structure, checksum, every key)",
        path.display()
    );
    let summary = {
        let (p, o, s) = (path.to_path_buf(), fopts.clone(), stop.clone());
        tokio::task::spawn_blocking(move || rdb_file::examine(&p, &o, &s))
            .await
            .map_err(|e| anyhow::anyhow!("the file check failed: {e}"))?
    };
    match summary {
        Ok(s) => Ok(Some(s)),
        Err(_) if stop.was_interrupted() => {
            report.status = Status::Interrupted;
            report.error = Some("interrupted while checking the file; nothing was written".into());
            Ok(None)
        }
        Err(e) => anyhow::bail!("{e:#}. Nothing was written to the target"),
    }
}

impl FileSource {
    /// Values over the big-key threshold (never above what the target accepts) are copied
    /// element by element from the file, as a live source's big keys are; `None` when
    /// `--big-key-bytes 0`.
    pub fn big_keys(
        &mut self,
        run: &Run<'_>,
        target: &Target,
        job_id: &str,
    ) -> Option<crate::sink::options::BigOptions> {
        let big = target.big_copy(run.job, job_id);
        self.fopts.big_value_bytes = big.as_ref().map(|b| b.threshold);
        big
    }

    /// `--on-conflict fail`: every key of the file looked up on the target (see
    /// [`check_conflicts`]).
    pub async fn check_conflicts(&self, run: &Run<'_>, target: &Target) -> anyhow::Result<()> {
        let mut probe = super::writers::probe(target, run.job.retry_for());
        check_conflicts(&self.path, &self.fopts, &self.pairs, &mut probe, run.stop).await
    }

    /// Loads the planned function libraries; the connection is not needed after that.
    pub async fn before_copy(
        &mut self,
        run: &Run<'_>,
        target: &Target,
        report: &mut MigrateReport,
    ) -> anyhow::Result<()> {
        if let Some(mut dst) = self.dst.take() {
            let retry_for = run.job.retry_for();
            load_functions(&self.functions, &target.info, &mut dst, retry_for, report).await?;
        }
        Ok(())
    }

    /// One reader streams the file from its checkpointed reader state.
    pub fn copy_plan(&self, run: &Run<'_>, cp: &Checkpoint) -> CopyPlan {
        let (path, stop) = (&self.path, run.stop);
        let resume = cp.streams.get(STREAM).copied();
        let tracker = Tracker::new(vec![(STREAM.to_string(), resume)]);
        let mut readers: Vec<ReaderFactory> = Vec::new();
        let start = match resume {
            Some(Position::Done) => None,
            Some(Position::Offset(state)) => Some(Some(state)),
            _ => Some(None),
        };
        if let Some(at) = start {
            let task = FileTask {
                stream: 0,
                path: path.to_path_buf(),
                resume: at,
            };
            let (o, s) = (self.fopts.clone(), stop.clone());
            readers.push(Box::new(move |tx| {
                Box::pin(rdb_file::read_file(task, o, tx, s))
            }));
        }
        let plan = run.plan;
        let progress = Progress::for_file(
            plan.output.progress,
            plan.output.log_every,
            self.summary.size,
        );
        CopyPlan {
            readers,
            parallel: 1,
            tracker,
            progress,
        }
    }

    /// What the counts do not say: keys re-encoded, empty or of modules.
    pub fn note_counts(&self, report: &mut MigrateReport, totals: &Counts, target: &Target) {
        if totals.reencoded > 0 {
            let target_rdb = rdb_file::target_rdb_version(&target.info.info);
            report.notes.push(format!(
                "{} keys were re-encoded: the file is RDB {} and the target ({}) loads RDB {} at most",
                totals.reencoded,
                self.summary.header.version,
                target.info.info.product(),
                target_rdb.map_or_else(|| "?".to_string(), |v| v.to_string())
            ));
        }
        if totals.empty_skipped > 0 {
            report.notes.push(format!(
                "{} keys holding an empty collection were skipped (Redis drops them when it loads a file, and RESTORE refuses them)",
                totals.empty_skipped
            ));
        }
        if totals.modules_skipped > 0 {
            report.notes.push(format!(
                "{} module keys were skipped (--skip-modules)",
                totals.modules_skipped
            ));
        }
    }

    /// The verification of the target against the file.
    pub async fn verify(&self, run: &Run<'_>) -> crate::verify::VerifyReport {
        let (path, pairs) = (&self.path, &self.pairs);
        crate::verify::file_side::after_migrate(path, run.job, pairs, run.plan, run.stop).await
    }
}

/// Checkpoint messages for a file: a changed file is a different job, and a resume says where.
pub(super) const WORDING: CheckpointWording = CheckpointWording {
    mismatch_hint:
        " If the file changed (its size and modification time are part of the job), the old \
         checkpoint does not apply to it.",
    position: |cp| match cp.streams.get(STREAM) {
        Some(Position::Offset(s)) => format!(", file offset {s}"),
        _ => String::new(),
    },
};

/// A cluster target has only DB 0; several file DBs into one target DB overwrite each other
/// unless a conflict policy says how (the same rules as `check::check_db_plan`, in the file's words).
fn check_db_plan(
    pairs: &[(u32, u32)],
    tinfo: &SideInfo,
    on_conflict: OnConflict,
) -> anyhow::Result<()> {
    if tinfo.is_cluster() {
        if let Some((s, t)) = pairs.iter().find(|(_, t)| *t != 0) {
            anyhow::bail!(
                "the target is a Redis Cluster, which has only DB 0, but DB {s} of the file would go to DB {t}. \
                 Say where each DB goes with --db-map, e.g. --db-map {s}:0 (add --on-conflict replace or skip \
                 when several DBs share DB 0), or copy one DB at a time with --db {s} --db-map {s}:0"
            );
        }
    }
    if on_conflict == OnConflict::Fail {
        if let Some((t, dbs)) = check::shared_target(pairs) {
            let list: Vec<String> = dbs.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "DBs {} of the file would all be written into target DB {t}, where keys with the same name \
                 overwrite each other. Nothing was written. Pass --on-conflict replace (the copy written last \
                 wins) or --on-conflict skip (the first one wins), or copy them one at a time with --db",
                list.join(", ")
            );
        }
    }
    Ok(())
}

/// Module data: aux data can never go through RESTORE; module keys need the module on the target.
async fn check_modules(
    plan: &MigratePlan,
    summary: &FileSummary,
    dst: &mut Connection,
    report: &mut MigrateReport,
) -> anyhow::Result<()> {
    let aux: Vec<&str> = summary.module_aux.iter().map(String::as_str).collect();
    let keys: Vec<String> = summary
        .module_keys
        .iter()
        .map(|(m, n)| format!("{m} ({n} keys)"))
        .collect();
    if plan.skip_modules {
        if !aux.is_empty() {
            report.notes.push(format!(
                "module aux data of {} was not copied (--skip-modules)",
                aux.join(", ")
            ));
        }
        return Ok(());
    }
    if !aux.is_empty() {
        anyhow::bail!(
            "the file holds global data of the module(s) {} (module aux data), which cannot be copied with \
             RESTORE. Nothing was written. Pass --skip-modules to copy the file without module data \
             (keys of module types are skipped too), and recreate the module's state on the target",
            aux.join(", ")
        );
    }
    if keys.is_empty() {
        return Ok(());
    }
    let reply = dst.cmd(&[b"MODULE".as_slice(), b"LIST"]).await?;
    let loaded = matches!(&reply, Reply::Array(Some(m)) if !m.is_empty());
    if !loaded {
        anyhow::bail!(
            "the file holds keys of module types {}, but the target {} has no modules loaded{}, so it cannot \
             load them. Nothing was written. Load the module(s) on the target, or pass --skip-modules to copy \
             everything else",
            keys.join(", "),
            dst.endpoint(),
            reply
                .error()
                .map(|e| format!(" (MODULE LIST: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Function libraries to load.
struct FunctionPlan {
    load: Vec<Library>,
}

/// One function library to load on the target.
struct Library {
    name: String,
    code: Vec<u8>,
    /// `FUNCTION LOAD REPLACE`: the target has a library of that name with other code.
    replace: bool,
}

/// Decides about the file's function libraries before anything is written: compares each with
/// the target's library of the same name (same code: nothing to do, as on a resumed run).
async fn plan_functions(
    migrate: &MigratePlan,
    summary: &FileSummary,
    tinfo: &SideInfo,
    dst: &mut Connection,
    report: &mut MigrateReport,
) -> anyhow::Result<FunctionPlan> {
    let mut plan = FunctionPlan { load: Vec::new() };
    let names: Vec<&str> = summary.functions.iter().map(|(n, _)| n.as_str()).collect();
    if names.is_empty() {
        return Ok(plan);
    }
    if migrate.skip_functions {
        report.notes.push(format!(
            "function libraries {} were not copied (--skip-functions)",
            names.join(", ")
        ));
        return Ok(plan);
    }
    if !summary.pre_ga_functions.is_empty() {
        report.notes.push(format!(
            "function libraries {} were stored by a Redis 7.0 release candidate: copied as Redis \
             7.0 loads them, with a `#!<engine> name=<library>` first line and without their \
             description",
            summary.pre_ga_functions.join(", ")
        ));
    }
    if tinfo.info.version() < (7, 0) {
        anyhow::bail!(
            "the file holds function libraries ({}) but the target ({}) has no functions (Redis 7.0+ or Valkey). \
             Nothing was written. Pass --skip-functions to copy the keys without them",
            names.join(", "),
            tinfo.info.product()
        );
    }
    let mut differ = Vec::new();
    for (name, code) in &summary.functions {
        let existing = library_code(dst, name).await?;
        match existing {
            None => plan.load.push(Library {
                name: name.clone(),
                code: code.clone(),
                replace: false,
            }),
            Some(c) if &c == code => {}
            Some(_) => match migrate.on_conflict {
                OnConflict::Fail => differ.push(name.as_str()),
                OnConflict::Replace => plan.load.push(Library {
                    name: name.clone(),
                    code: code.clone(),
                    replace: true,
                }),
                OnConflict::Skip => report.notes.push(format!(
                    "function library {name} already exists on the target with other code and was kept (--on-conflict skip)"
                )),
            },
        }
    }
    if !differ.is_empty() {
        anyhow::bail!(
            "the target already has function libraries {} with other code than the file's. Nothing was written. \
             Rerun with --on-conflict replace to overwrite them, --on-conflict skip to keep the target's, or \
             --skip-functions to leave functions alone",
            differ.join(", ")
        );
    }
    Ok(plan)
}

/// The code of library `name` on the target, if it has one.
async fn library_code(dst: &mut Connection, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let reply = dst
        .cmd(&[
            b"FUNCTION".as_slice(),
            b"LIST",
            b"LIBRARYNAME",
            name.as_bytes(),
            b"WITHCODE",
        ])
        .await?;
    if let Some(e) = reply.error() {
        anyhow::bail!("the target {} refused FUNCTION LIST: {e}", dst.endpoint());
    }
    let Reply::Array(Some(libs)) = reply else {
        return Ok(None);
    };
    for lib in libs {
        let Reply::Array(Some(fields)) = lib else {
            continue;
        };
        let field = |want: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| kv.first().and_then(Reply::as_bytes) == Some(want))
                .and_then(|kv| kv.get(1))
                .and_then(Reply::as_bytes)
                .map(<[u8]>::to_vec)
        };
        if field(b"library_name").as_deref() == Some(name.as_bytes()) {
            return Ok(field(b"library_code"));
        }
    }
    Ok(None)
}

/// `FUNCTION LOAD [REPLACE]` each planned library (on every master of a cluster).
async fn load_functions(
    plan: &FunctionPlan,
    tinfo: &SideInfo,
    dst: &mut Connection,
    retry_for: Duration,
    report: &mut MigrateReport,
) -> anyhow::Result<()> {
    if plan.load.is_empty() {
        return Ok(());
    }
    let mut router = match &tinfo.layout {
        Layout::Cluster { cluster, topology } => {
            Some(Router::new(cluster.clone(), topology, retry_for))
        }
        Layout::Standalone(_) => None,
    };
    for Library {
        name,
        code,
        replace,
    } in &plan.load
    {
        let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
        if *replace {
            args.push(b"REPLACE");
        }
        args.push(code);
        let replies: Vec<Reply> = match &mut router {
            Some(r) => r
                .on_each_master(&args)
                .await?
                .into_iter()
                .map(|(_, reply)| reply)
                .collect(),
            None => vec![dst.cmd(&args).await?],
        };
        for reply in replies {
            if let Some(e) = reply.error() {
                if e.contains("already exists") {
                    continue;
                }
                anyhow::bail!(
                    "the target refused to load function library {name}: {e}. Fix the library, or pass --skip-functions"
                );
            }
        }
    }
    let names: Vec<&str> = plan.load.iter().map(|l| l.name.as_str()).collect();
    report.notes.push(format!(
        "function libraries loaded on the target: {}",
        names.join(", ")
    ));
    Ok(())
}

/// For `--on-conflict fail`: refuses when any key of the file already exists in its target DB.
/// Free when the target DBs are empty; otherwise the file is read once more and every key looked
/// up with pipelined `EXISTS`.
async fn check_conflicts(
    path: &Path,
    fopts: &FileOptions,
    pairs: &[(u32, u32)],
    probe: &mut Probe,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut check: BTreeMap<u32, u32> = BTreeMap::new();
    for &(db, tdb) in pairs {
        if probe.dbsize(tdb).await? > 0 {
            check.insert(db, tdb);
        }
    }
    if check.is_empty() {
        return Ok(());
    }
    eprintln!(
        "ferry: the target already has keys: checking every key of the file against it (--on-conflict fail)"
    );
    let opts = FileOptions {
        dbs: Some(check.keys().copied().collect()),
        target_rdb: None,
        ..fopts.clone()
    };
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let task = FileTask {
        stream: 0,
        path: path.to_path_buf(),
        resume: None,
    };
    let reader = tokio::spawn(rdb_file::read_file(task, opts, tx, stop.clone()));
    let mut found = Conflicts::default();
    while let Some(batch) = rx.recv().await {
        let first = batch.records.first().map(|r| r.db);
        let Some(db) = first.or_else(|| batch.big.first().map(|b| b.db)) else {
            continue;
        };
        let tdb = check.get(&db).copied().unwrap_or(db);
        let records = batch.records.iter().map(|r| r.key.clone());
        let keys: Vec<Bytes> = records
            .chain(batch.big.iter().map(|b| b.key.clone()))
            .collect();
        let exists = probe.exists(tdb, &keys).await?;
        found.add(tdb, &keys, &exists);
    }
    reader
        .await
        .map_err(|e| anyhow::anyhow!("the file reader failed: {e}"))??;
    if stop.is_raised() {
        anyhow::bail!("interrupted during the conflict check; nothing was written");
    }
    found.refuse_if_any(&probe.endpoint(), "the file's keys")
}
