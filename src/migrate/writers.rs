//! The target side of a migration, the same for every source: what the gate learned of the
//! target, how the writers write (`--on-conflict`, `--db-map`, clocks, `--on-key-error`) and the
//! writers themselves.

use std::sync::Arc;

use crate::check::{Layout, Probe, SideInfo};
use crate::endpoint::route::Router;
use crate::job::Job;
use crate::plan::MigratePlan;
use crate::policy::OnKeyError;
use crate::report::MigrateReport;
use crate::sink::cluster::ClusterWriter;
use crate::sink::key_error::KeyErrors;
use crate::sink::options::Clocks;
use crate::sink::options::WriterOptions;
use crate::sink::restore::Writer;
use crate::sink::Sink;

/// The target as the run writes to it, once the gate has passed.
pub(super) struct Target {
    /// What the checks found on the target (layout, version, INFO).
    pub info: SideInfo,
    /// Clock skews of the source (0 for a file) and the target, for expiries.
    pub clocks: Clocks,
    /// The target's `proto-max-bulk-len`, when CONFIG GET is allowed.
    pub max_bulk: Option<u64>,
}

impl Target {
    /// How the writers copy big keys into this target (every source's threshold and chunk
    /// size), or `None` when `--big-key-bytes 0`.
    pub fn big_copy(&self, job: &Job, job_id: &str) -> Option<crate::sink::options::BigOptions> {
        crate::sink::options::big_settings(
            job.tuning.big_key_bytes,
            job.tuning.batch_bytes,
            self.max_bulk,
            self.info.info.version(),
            job_id,
        )
    }
}

/// `n` writers for the target: one connection each to a standalone server, or one per master of
/// a cluster.
pub(super) fn writers(layout: &Layout, n: usize, opts: &WriterOptions) -> Vec<Sink> {
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
pub(super) fn key_errors(
    plan: &MigratePlan,
    cp_path: &std::path::Path,
    report: &mut MigrateReport,
) -> anyhow::Result<KeyErrors> {
    if plan.on_key_error == OnKeyError::Stop {
        if let Some(p) = &plan.dead_letter {
            anyhow::bail!(
                "--dead-letter {} is only used with --on-key-error skip; add that flag, or leave --dead-letter out",
                p.display()
            );
        }
        return Ok(KeyErrors::Stop);
    }
    let path = plan
        .dead_letter
        .clone()
        .unwrap_or_else(|| crate::dead_letter::default_path(cp_path));
    let letters = crate::dead_letter::DeadLetters::prepare(&path, !report.resumed)?;
    report.dead_letter = Some(path.display().to_string());
    eprintln!(
        "ferry: keys the target refuses for a reason of their own go to the dead-letter file {}",
        path.display()
    );
    Ok(KeyErrors::new(plan.on_key_error, Some(Arc::new(letters))))
}

/// How the writers write into `target` (big keys are the source's to add).
pub(super) fn writer_options(
    plan: &MigratePlan,
    job: &Job,
    target: &Target,
    key_errors: KeyErrors,
) -> WriterOptions {
    WriterOptions {
        on_conflict: plan.on_conflict,
        db_map: job.db_map.clone(),
        clocks: target.clocks,
        max_bulk: target.max_bulk,
        retry_for: job.retry_for(),
        select_db: !target.info.is_cluster(),
        target_rdb: crate::source::rdb_file::target_rdb_version(&target.info.info),
        big: None,
        key_errors,
    }
}

/// Looks keys up on the target for a conflict check (through the router on a cluster).
pub(super) fn probe(target: &Target, retry_for: std::time::Duration) -> Probe {
    match &target.info.layout {
        Layout::Standalone(server) => {
            Probe::Standalone(crate::endpoint::retry::Link::new(server.clone(), retry_for))
        }
        Layout::Cluster { cluster, topology } => {
            Probe::Cluster(Router::new(cluster.clone(), topology, retry_for))
        }
    }
}
