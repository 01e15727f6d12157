//! A live source (a server or a cluster) for the migrate flow: SCAN + PTTL + DUMP streams
//! (`source/scan.rs`), one per DB or per cluster master, checkpointed by cursor.
//!
//! What only a live source has: `--partition` (this worker's share of the masters or keys,
//! `partition.rs`), big keys probed by size and copied in chunks (`bigkey/`), `--follow`
//! (subscribed before the first SCAN, run after the copy, `follow/`) and `--reconcile`, and a
//! cluster whose topology must not have changed under the copy.

use std::sync::Arc;

use super::flow::Run;
use super::source::CopyPlan;
use super::writers::Target;
use crate::check::{Layout, SideInfo};
use crate::checkpoint::{Checkpoint, Tracker};
use crate::endpoint::cluster::{self, Addr, Cluster, Topology};
use crate::endpoint::Server;
use crate::job::Job;
use crate::partition::{KeyShare, Share};
use crate::pipeline::ReaderFactory;
use crate::progress::Progress;
use crate::report::{MigrateReport, Status};
use crate::sink::options::WriterOptions;
use crate::source::plan::{self, StreamPlan};
use crate::source::scan::{self, ScanOptions, ScanTask};
use crate::source::Position;
use crate::stop::Stop;
use crate::throttle::Throttles;

/// A live source, ready to copy.
pub(super) struct Live {
    server: Server,
    /// What the checks found on the source.
    sinfo: SideInfo,
    /// The source as this worker reads it: the share's masters only (see `partition.rs`).
    layout: Layout,
    /// The source DBs copied (this worker's share of them).
    dbs: Vec<u32>,
    /// (source DB, target DB) for each of `dbs`.
    pairs: Vec<(u32, u32)>,
    /// `--partition`: the share of this worker.
    share: Option<Share>,
    /// Keys to copy, estimated from INFO keyspace (for the progress display).
    total_keys: u64,
    /// `--follow`: the subscription made before the first SCAN.
    follow: Option<crate::follow::Setup>,
    /// Big-key detection, when on.
    big_probe: Option<scan::BigProbe>,
    /// The source's load limits, shared by the SCAN readers and the big-key copies.
    throttles: Option<Arc<Throttles>>,
    /// Cluster masters read in this run (checked for failovers after the copy).
    scanned: Vec<String>,
}

impl Live {
    /// The source's DBs, share and totals from what the gate found on it (`sinfo`).
    pub fn ready(run: &Run<'_>, server: Server, sinfo: SideInfo, target: &Target) -> Live {
        let job = run.job;
        tracing::info!(
            "source {} ({}), target {} ({})",
            server.endpoint,
            sinfo.describe(),
            job.target.endpoint,
            target.info.describe()
        );
        let dbs: Vec<u32> = if job.dbs.is_empty() {
            sinfo.keyspace.keys().copied().collect()
        } else {
            job.dbs.clone()
        };
        let share = job
            .partition
            .map(|p| crate::partition::Share::resolve(p, &sinfo.layout, &dbs));
        let layout = share
            .as_ref()
            .map_or_else(|| sinfo.layout.clone(), |s| s.layout(&sinfo.layout));
        let dbs = share.as_ref().map_or(dbs, |s| s.dbs.clone());
        if let Some(s) = &share {
            eprintln!("ferry: partition {}", s.how);
        }
        let pairs = dbs.iter().map(|&db| (db, job.target_db(db))).collect();
        let mut total_keys: u64 = dbs.iter().filter_map(|db| sinfo.keyspace.get(db)).sum();
        if let Some(s) = &share {
            total_keys = s.estimate(total_keys, &sinfo.layout);
        }
        Live {
            server,
            sinfo,
            layout,
            dbs,
            pairs,
            share,
            total_keys,
            follow: None,
            big_probe: None,
            throttles: None,
            scanned: Vec::new(),
        }
    }

    /// `--partition`: the keys of this worker's share (`None`: every key of its DBs).
    fn share_keys(&self) -> Option<Arc<KeyShare>> {
        self.share.as_ref().and_then(|s| s.keys.clone())
    }

    /// `--follow` subscribes to the source's events before the first SCAN.
    pub async fn before_copy(
        &mut self,
        run: &Run<'_>,
        cp_path: &std::path::Path,
    ) -> anyhow::Result<()> {
        if !run.plan.follow.follow {
            return Ok(());
        }
        let setup = crate::follow::prepare(
            run.plan,
            &self.server,
            &self.sinfo,
            &self.layout,
            &self.dbs,
            self.share_keys(),
            cp_path,
        )
        .await?;
        self.follow = Some(setup);
        Ok(())
    }

    /// Big-key detection: how the readers probe sizes (kept) and how the writers copy big keys
    /// (returned); `None` when `--big-key-bytes 0`.
    pub async fn big_keys(
        &mut self,
        run: &Run<'_>,
        target: &Target,
        job_id: &str,
    ) -> anyhow::Result<Option<crate::sink::options::BigOptions>> {
        let job = run.job;
        let Some(mut big) = target.big_copy(job, job_id) else {
            return Ok(None);
        };
        let probe = crate::endpoint::retry::retrying(job.retry_for(), || async {
            let mut src = self.server.connect().await?;
            let version = self.sinfo.info.version();
            Ok(crate::bigkey::size::Probe::choose(&mut src, version).await?)
        })
        .await?;
        self.big_probe = Some(scan::BigProbe {
            probe,
            threshold: big.threshold,
        });
        big.throttles = Some(self.throttles(run));
        Ok(Some(big))
    }

    /// The job's throttles (made on first use): one budget per source server for its SCAN
    /// readers and the big keys copied from it.
    fn throttles(&mut self, run: &Run<'_>) -> Arc<Throttles> {
        let (limits, stop) = (run.plan.limits, run.stop.clone());
        self.throttles
            .get_or_insert_with(|| Arc::new(Throttles::new(limits, stop)))
            .clone()
    }

    /// One SCAN stream per DB (or per cluster master), from its checkpointed cursor.
    pub fn copy_plan(&mut self, run: &Run<'_>, cp: &Checkpoint) -> CopyPlan {
        let job = run.job;
        let plans = match &self.layout {
            Layout::Standalone(server) => plan::standalone(server, &self.dbs, &cp.streams),
            Layout::Cluster { cluster, topology } => {
                let (plans, notes) = plan::cluster(cluster, topology, &cp.streams);
                for note in notes {
                    eprintln!("ferry: {note}");
                }
                plans
            }
        };
        let tracker = Tracker::new(plans.iter().map(|p| (p.name.clone(), p.resume)).collect());
        let parallel = match &self.layout {
            Layout::Standalone(_) => 2,
            Layout::Cluster { topology, .. } => topology.masters.len().max(2),
        };
        self.scanned = plans
            .iter()
            .filter(|p| !p.is_done())
            .filter_map(|p| p.node_id.clone())
            .collect();
        let throttles = self.throttles(run);
        let filter = self.share.as_ref().and_then(|s| s.read_filter.clone());
        let readers = scan_readers(job, plans, filter, self.big_probe, &throttles, run.stop);
        let progress = Progress::new(
            run.plan.output.progress,
            run.plan.output.log_every,
            self.total_keys,
        )
        .with_throttles(throttles);
        CopyPlan {
            readers,
            parallel,
            tracker,
            progress,
        }
    }

    /// A cluster source must not have changed its slots under the copy.
    pub async fn after_copy(
        &self,
        cp: &mut Checkpoint,
        cp_path: &std::path::Path,
    ) -> anyhow::Result<()> {
        match &self.layout {
            Layout::Cluster { cluster, topology } => {
                source_topology_check(cluster, topology, &self.scanned, cp, cp_path).await
            }
            Layout::Standalone(_) => Ok(()),
        }
    }

    /// `--follow` (true: it ran and filled the report), or one `--reconcile` pass.
    pub async fn follow(
        &mut self,
        run: &Run<'_>,
        target: &Target,
        writer: &WriterOptions,
        report: &mut MigrateReport,
    ) -> anyhow::Result<bool> {
        let ctx = crate::follow::Context {
            plan: run.plan,
            job: run.job,
            source: &self.server,
            sinfo: &self.sinfo,
            layout: &self.layout,
            share: self.share_keys(),
            target: &target.info.layout,
            writer: writer.clone(),
            pairs: self.pairs.clone(),
        };
        if let Some(setup) = self.follow.take() {
            crate::follow::run(setup, ctx, run.stop.clone(), report).await;
            return Ok(true);
        }
        if run.plan.follow.reconcile {
            let line = crate::follow::reconcile_once(ctx, run.stop).await?;
            report.notes.push(line);
        }
        Ok(false)
    }

    /// The verification of the copied DBs (of this worker's share).
    pub async fn verify(&self, run: &Run<'_>) -> crate::verify::VerifyReport {
        let (job, plan, stop) = (run.job, run.plan, run.stop);
        let share = self.share_keys();
        crate::verify::after_migrate(&self.server, job, &self.pairs, share, plan, stop).await
    }
}

/// After the verification: keys that differ although every key was copied mean the live source
/// took writes during the run; says what to do about it.
pub(super) fn note_changed_source(report: &mut MigrateReport) {
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
