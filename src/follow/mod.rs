//! Following a live source after the copy (`ferry migrate --follow`), until `ferry cutover`.
//!
//! May call: `read` (re-reading dirty keys like the copy does), `endpoint`, `sink` (writing
//! them), `verify` (reconciliation and cutover re-checks), `check`, `checkpoint`, `job`,
//! `partition`, `record`, `report`, `retry`, `stop`, `throttle`, `cli`.
//!
//! # The flow
//! ```text
//!  setup.rs      notifications checked (every master), subscriptions, watchers, heartbeat file
//!  events.rs     PSUBSCRIBE __keyevent@*__:* on the source, BEFORE the first SCAN
//!                  │ every event: (db, key) ─► state.rs: dirty set (dirty.rs, bounded, deduplicated)
//!                  │                                      + ledger (ledger.rs: keys that may differ)
//!                  │ connection lost/killed, dirty set full ─► gap
//!  watch.rs      INFO commandstats/keyspace every second: FLUSHDB/FLUSHALL/SWAPDB or a key count
//!                  that moved more than the events explain ─► gap
//!  migrate.rs    the copy, as without --follow (dirty keys only pile up meanwhile)
//!  mod.rs        then, until a cutover request: take dirty keys ─► apply.rs: TIME+PTTL+DUMP on
//!                  the source ─► RESTORE … ABSTTL REPLACE, or DEL, on the target (in order)
//!  reconcile.rs  after the copy, after every gap, and every --reconcile-every: bucket digests of
//!                  both sides (verify/first_round.rs) ─► the keys of differing buckets are marked dirty
//!  cutover.rs    `ferry cutover` ─► quiet (or CLIENT PAUSE) ─► drain ─► verify the ledger's keys
//!                  (or everything after a gap) ─► GO / NO-GO, exit 0 / 1
//! ```
//! A cluster source has one subscription and one keyspace watcher per master (events are local
//! to a node); keys are re-read on the master owning their slot; a change of masters makes the
//! follower fall back to reconciliation passes (see `Follower::check_topology`).
//!
//! With `--partition I/N` a worker follows its share only: it subscribes to its share's servers
//! (`Context::layout`), ignores events of keys of other shares (`state.rs`), and its passes and
//! cutover compare its share only (listing only the masters serving it). `ferry cutover` names
//! every worker's checkpoint and is GO only when each worker is (`cutover.rs`).
//!
//! Without usable notifications (off, or `CONFIG` blocked so nobody can tell) the same loop runs
//! with reconciliation passes alone, one every `--reconcile-every` seconds (5 by default), and a
//! cutover always verifies everything.
//!
//! # Why an older read never overwrites a newer one, and a deleted key never comes back
//! 1. One task writes to the target: the applier takes a chunk of dirty keys, reads them on the
//!    source, writes what it read, and only then takes the next chunk. So the target receives a
//!    key's reads in the order they were made; the last write of a key is its latest read.
//! 2. A key is removed from the dirty set when its chunk is taken. An event that arrives after
//!    that queues it again, so it is read again *after* the read in flight (and written after it).
//! 3. An event is published when its write executes, so an event received before a key was taken
//!    belongs to a write that executed before the read was sent: the read sees that write or a
//!    later one.
//! 4. So every source write W of key K is followed by a read of K that executes after W and whose
//!    result is written after every earlier read of K. A `DEL` racing a read in flight queues K
//!    again; the next read finds K gone and deletes it on the target last: it never comes back.
//! 5. The copy's own writes all land before the first follow write (dirty keys are only applied
//!    once the copy is finished), so they are "earlier reads" too.
//!
//! What 1–5 cannot see (lost events, FLUSHDB) is a gap, and a gap is followed by a reconciliation
//! pass that compares everything and marks what differs dirty: correctness never rests on pub/sub.

pub mod apply;
pub mod cutover;
pub mod dirty;
pub mod events;
pub mod ledger;
pub mod reconcile;
pub mod setup;
pub mod state;
pub mod watch;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use apply::{Applied, Applier};
use dirty::DbKey;
use events::Subscription;
use reconcile::PassOutcome;
use setup::source_masters;
pub use setup::{prepare, Setup};
use state::Shared;

use crate::check::notify::Notify;
use crate::check::{Layout, SideInfo};
use crate::endpoint::cluster::{Addr, Cluster, Topology};
use crate::endpoint::Server;
use crate::job::Job;
use crate::partition::KeyShare;
use crate::plan::MigratePlan;
use crate::read::clock::now_ms;
use crate::read::refusal::Resharding;
use crate::report::{MigrateReport, Status};
use crate::sink::options::WriterOptions;
use crate::stop::Stop;
use crate::throttle::{Limits, Throttles};

/// Load limits for the follower's own reads of both sides (reconciliation, cutover
/// verification): none yet — `--max-keys-per-sec` and the like bind the copy and `ferry verify`.
pub(crate) fn unlimited() -> Arc<Throttles> {
    Arc::new(Throttles::new(Limits::default(), Stop::new()))
}

/// The follower compares TTLs at most this far apart as equal (less when --ttl-tolerance says
/// so). A looser tolerance would let a reconciliation pass keep a target TTL up to a second off
/// after an `EXPIRE` it found no event for; this one still absorbs the few ms by which `TIME +
/// PTTL` differs between two reads of the same expiry.
const FOLLOW_TTL_TOLERANCE_MS: u64 = 250;

/// Keys applied per turn of the follow loop.
const TURN: usize = 4 * apply::CHUNK;

/// Seconds between reconciliation passes without usable events.
const PASS_EVERY_WITHOUT_EVENTS: u64 = 5;

/// Seconds between safety-net passes with usable events.
const PASS_EVERY_WITH_EVENTS: u64 = 300;

/// Counters of the follow, for the log lines and the report's `follow` section.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// "events" or "reconciliation passes only".
    pub mode: String,
    /// What the source's notify-keyspace-events allowed.
    pub notifications: String,
    /// Keys written and deleted on the target by the follower.
    pub applied: Applied,
    /// Reconciliation passes finished.
    pub passes: u64,
    /// Keys found different by those passes (then re-copied or deleted).
    pub pass_differences: u64,
    /// Duration of the last pass, ms.
    pub last_pass_ms: u64,
    /// Events received (of this worker's share, with `--partition`).
    pub events: u64,
    /// `--partition`: events received for keys of other shares, left to their workers.
    pub other_shares_events: u64,
    /// Moments events may have been lost.
    pub gaps: u64,
    /// Why (the first few).
    pub gap_reasons: Vec<String>,
    /// Most keys dirty at once.
    pub max_dirty: u64,
    /// Oldest dirty key's age at the worst moment seen, ms.
    pub max_lag_ms: u64,
    /// How long the follow ran, ms.
    pub follow_ms: u64,
}

impl Stats {
    fn note_pass(&mut self, o: &PassOutcome) {
        self.passes += 1;
        self.pass_differences += o.differing.len() as u64 + o.untracked;
        self.last_pass_ms = o.elapsed_ms;
    }
}

/// The reconciliation pass running, if any.
#[derive(Default)]
struct PassSlot {
    /// The pass, and the gap count when it started.
    task: Option<(tokio::task::JoinHandle<anyhow::Result<PassOutcome>>, u64)>,
    /// The gap count when the last pass started (`None`: none yet, so one starts at once).
    gaps_at_start: Option<u64>,
    /// When the last pass ended.
    last: Option<Instant>,
}

impl PassSlot {
    /// Stops the running pass (a cutover decides on its own); the next one starts at once.
    fn cancel(&mut self, shared: &Shared) {
        if let Some((h, _)) = self.task.take() {
            h.abort();
            shared.marks().ledger.pass_ended(false);
            self.gaps_at_start = None;
        }
    }
}

/// The follower's working state.
pub(crate) struct Follower {
    shared: Arc<Shared>,
    subs: Vec<Arc<Subscription>>,
    reliable: bool,
    applier: Applier,
    source: Server,
    /// The servers that take writes (every master of a cluster), at start.
    masters: Vec<Server>,
    source_version: (u32, u32),
    job: Job,
    pairs: Vec<(u32, u32)>,
    /// `--partition`: the keys this worker follows, reconciles and verifies.
    share: Option<Arc<KeyShare>>,
    tolerance_ms: u64,
    rounds: u32,
    round_pause: Duration,
    stop: Stop,
    stats: Stats,
}

/// Everything the follow loop needs from `ferry migrate`.
pub struct Context<'a> {
    /// The resolved command line.
    pub plan: &'a MigratePlan,
    /// The job.
    pub job: &'a Job,
    /// The (standalone) source.
    pub source: &'a Server,
    /// What the checks found on the source.
    pub sinfo: &'a SideInfo,
    /// The source as this worker reads it (`--partition`: its share's masters only).
    pub layout: &'a Layout,
    /// `--partition`: the keys of this worker's share (`None`: every key of `pairs`).
    pub share: Option<Arc<KeyShare>>,
    /// The target's layout.
    pub target: &'a Layout,
    /// How the copy wrote (clocks, DB map, sizes).
    pub writer: WriterOptions,
    /// (source db, target db) pairs followed.
    pub pairs: Vec<(u32, u32)>,
}

/// Follows until a cutover request is answered with a verdict (or a stop or an error); fills
/// the report's status, `follow` and `cutover`.
pub async fn run(setup: Setup, ctx: Context<'_>, stop: Stop, report: &mut MigrateReport) {
    let mut f = Follower {
        shared: setup.shared.clone(),
        subs: setup.subs.clone(),
        reliable: setup.reliable,
        applier: Applier::new(
            ctx.source.clone(),
            &ctx.sinfo.layout,
            ctx.target,
            ctx.writer.clone(),
        ),
        source: ctx.source.clone(),
        masters: source_masters(ctx.source, ctx.layout),
        source_version: ctx.sinfo.info.version(),
        job: ctx.job.clone(),
        pairs: ctx.pairs.clone(),
        share: ctx.share.clone(),
        tolerance_ms: ctx
            .plan
            .verify
            .ttl_tolerance_ms
            .min(FOLLOW_TTL_TOLERANCE_MS),
        rounds: ctx.plan.verify.rounds.max(1),
        round_pause: ctx.plan.verify.round_pause,
        stop: stop.clone(),
        stats: Stats {
            mode: if setup.reliable {
                "events"
            } else {
                "reconciliation passes only"
            }
            .into(),
            notifications: match &setup.notify {
                Notify::On => "on".to_string(),
                Notify::Off(flags) => format!("off or incomplete ({flags:?})"),
                Notify::Unknown(why) => format!("unknown ({why})"),
            },
            ..Stats::default()
        },
    };
    let every = ctx.plan.follow.reconcile_every;
    let log_every = ctx.plan.output.log_every.max(Duration::from_secs(1));
    let topology = match &ctx.sinfo.layout {
        Layout::Cluster { cluster, topology } => Some((cluster, topology)),
        Layout::Standalone(_) => None,
    };
    let result = f.follow(&setup, every, topology, log_every, report).await;
    f.stats.events = f.shared.events.load(Ordering::Relaxed);
    f.stats.other_shares_events = f.shared.other_shares.load(Ordering::Relaxed);
    f.stats.gaps = f.shared.gap_count();
    f.stats.gap_reasons = f
        .shared
        .gap_reasons
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    f.stats.follow_ms = setup.started.elapsed().as_millis() as u64;
    report.follow = serde_json::to_value(&f.stats).ok();
    if let Err(e) = result {
        report.status = if stop.was_interrupted() {
            Status::Interrupted
        } else {
            Status::Error
        };
        report.error = Some(format!(
            "{e:#}; rerun the same command to reconcile and follow on"
        ));
    }
}

impl Follower {
    async fn follow(
        &mut self,
        setup: &Setup,
        every: Option<Duration>,
        topology: Option<(&Cluster, &Topology)>,
        log_every: Duration,
        report: &mut MigrateReport,
    ) -> anyhow::Result<()> {
        eprintln!(
            "ferry: following the source ({}); run `ferry cutover --checkpoint {}` when ready",
            self.stats.mode,
            setup.cp_path.display()
        );
        let mut passes = PassSlot::default();
        let mut last_log = Instant::now();
        let mut last_poll = Instant::now();
        let mut last_topology = Instant::now();
        let mut events_at_log = 0u64;
        loop {
            if self.stop.is_raised() {
                anyhow::bail!("stopped while following");
            }
            self.run_passes(&mut passes, every).await?;
            if last_poll.elapsed() >= Duration::from_millis(200) {
                last_poll = Instant::now();
                if let (Some((cluster, before)), true) = (topology, self.reliable) {
                    if last_topology.elapsed() >= Duration::from_secs(2) {
                        last_topology = Instant::now();
                        self.check_topology(cluster, before).await;
                    }
                }
                if let Some(req) = cutover::take_request(&setup.cp_path, setup.started_ms) {
                    passes.cancel(&self.shared);
                    if self.on_request(&req, setup, report).await {
                        return Ok(());
                    }
                }
            }
            let keys = self.take_dirty();
            if keys.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                self.apply(&keys).await?;
            }
            if last_log.elapsed() >= log_every {
                let events = self.shared.events.load(Ordering::Relaxed);
                let rate = (events - events_at_log) as f64 / last_log.elapsed().as_secs_f64();
                events_at_log = events;
                last_log = Instant::now();
                self.log_lag(rate, passes.task.is_some());
            }
        }
    }

    /// Handles a finished pass, and starts one when due: after every gap (and at the start),
    /// and every `--reconcile-every` seconds.
    async fn run_passes(
        &mut self,
        passes: &mut PassSlot,
        every: Option<Duration>,
    ) -> anyhow::Result<()> {
        if passes.task.as_ref().is_some_and(|(h, _)| h.is_finished()) {
            if let Some((h, gaps_at_start)) = passes.task.take() {
                let outcome = h
                    .await
                    .map_err(|e| anyhow::anyhow!("a reconciliation pass failed: {e}"))?;
                match outcome {
                    Ok(outcome) => self.pass_done(&outcome, gaps_at_start),
                    // A source cluster being resharded moved a key under the pass: it proved
                    // nothing, and the next one (after --reconcile-every) reads the new layout.
                    Err(e) if e.chain().any(|c| c.is::<Resharding>()) => {
                        tracing::warn!(
                            "a reconciliation pass stopped: {e:#}; the next one reads the new layout"
                        );
                        self.shared.marks().ledger.pass_ended(false);
                    }
                    Err(e) => return Err(e),
                }
                passes.last = Some(Instant::now());
            }
        }
        let gaps = self.shared.gap_count();
        let every = every.unwrap_or(Duration::from_secs(if self.reliable {
            PASS_EVERY_WITH_EVENTS
        } else {
            PASS_EVERY_WITHOUT_EVENTS
        }));
        let due =
            passes.gaps_at_start != Some(gaps) || passes.last.is_some_and(|t| t.elapsed() >= every);
        if passes.task.is_none() && due {
            self.shared.marks().ledger.pass_started();
            passes.gaps_at_start = Some(gaps);
            let task = tokio::spawn(reconcile::pass(
                self.source.clone(),
                self.job.clone(),
                self.pairs.clone(),
                self.share.clone(),
                self.tolerance_ms,
                self.stop.clone(),
            ));
            passes.task = Some((task, gaps));
        }
        Ok(())
    }

    /// Answers a cutover request; true when the follow is over (GO, NO-GO or error).
    async fn on_request(
        &mut self,
        req: &cutover::Request,
        setup: &Setup,
        report: &mut MigrateReport,
    ) -> bool {
        eprintln!("ferry: cutover requested");
        let v = self.cutover(req).await;
        cutover::print_verdict(&v);
        cutover::answer(&setup.cp_path, &v);
        if v.still_following {
            return false;
        }
        report.status = match v.code {
            0 => Status::Ok,
            1 => Status::Mismatch,
            _ => Status::Error,
        };
        if v.code == 2 {
            report.error = v.lines.first().cloned();
        }
        report.cutover = serde_json::to_value(&v).ok();
        true
    }

    /// The lag line of the log.
    fn log_lag(&self, rate: f64, pass_running: bool) {
        let (dirty, oldest) = {
            let m = self.shared.marks();
            (m.dirty.len(), m.dirty.oldest_age_ms(now_ms()))
        };
        tracing::info!(
            "follow: {dirty} keys dirty (oldest {oldest} ms), {rate:.0} events/s, {} written, {} deleted, \
             {} reconciliation passes ({} differences fixed){}, {} gaps",
            self.stats.applied.written,
            self.stats.applied.deleted,
            self.stats.passes,
            self.stats.pass_differences,
            if pass_running { ", one running" } else { "" },
            self.shared.gap_count()
        );
    }

    /// A pass ended: promote the ledger if no gap happened meanwhile, and queue what differed.
    fn pass_done(&mut self, outcome: &PassOutcome, gaps_at_start: u64) {
        let clean =
            self.reliable && self.shared.gap_count() == gaps_at_start && outcome.untracked == 0;
        self.shared.marks().ledger.pass_ended(clean);
        self.stats.note_pass(outcome);
        let now = now_ms();
        for (db, key) in &outcome.differing {
            self.shared.mark(*db, key, now);
        }
        if outcome.untracked > 0 {
            self.shared.gap(format!(
                "a reconciliation pass found {} more differences than it tracks",
                outcome.untracked
            ));
        }
        tracing::info!(
            "follow: reconciliation pass {} done in {} ms: {} keys, {} buckets differed, {} keys to re-copy or delete",
            self.stats.passes,
            outcome.elapsed_ms,
            outcome.keys_total,
            outcome.buckets_differing,
            outcome.differing.len()
        );
    }

    /// Takes up to a turn's worth of dirty keys, noting the lag (the oldest one's age).
    fn take_dirty(&mut self) -> Vec<DbKey> {
        let mut m = self.shared.marks();
        let lag = m.dirty.oldest_age_ms(now_ms()).max(0) as u64;
        self.stats.max_dirty = self.stats.max_dirty.max(m.dirty.len() as u64);
        self.stats.max_lag_ms = self.stats.max_lag_ms.max(lag);
        m.dirty.take(TURN)
    }

    /// Re-reads and writes `keys`, updating the counters.
    async fn apply(&mut self, keys: &[DbKey]) -> anyhow::Result<()> {
        let done = self.applier.apply(keys).await?;
        self.stats.applied.add(done);
        Ok(())
    }

    /// Waits for every event published so far, on every master (false when one cannot be
    /// waited for).
    async fn barrier(&self) -> bool {
        for sub in &self.subs {
            if !sub.barrier(Duration::from_secs(30)).await {
                return false;
            }
        }
        true
    }

    /// Barrier, then applies dirty keys until none is left; returns the keys applied.
    async fn drain(&mut self) -> anyhow::Result<Vec<DbKey>> {
        if !self.barrier().await && self.reliable {
            anyhow::bail!(
                "the subscription to the source's events is down: cannot drain; retry the cutover"
            );
        }
        let mut all = Vec::new();
        loop {
            let keys = self.take_dirty();
            if keys.is_empty() {
                return Ok(all);
            }
            self.apply(&keys).await?;
            all.extend(keys);
        }
    }

    /// A cluster source whose *masters* changed (a failover, a node added) publishes events on
    /// nodes this follower has not subscribed to: from then on it follows by reconciliation
    /// passes alone, and a cutover verifies everything; a rerun subscribes to the new masters.
    /// Slots moving between the same masters need nothing: the move itself publishes events on
    /// both nodes (`del` where MIGRATE removed a key, `restore` where it arrived), and reads
    /// follow MOVED/ASK.
    async fn check_topology(&mut self, cluster: &Cluster, before: &Topology) {
        let known: Vec<Addr> = before.masters.iter().map(|m| m.addr.clone()).collect();
        let now = match cluster.discover(&known).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("follow: cannot read the source cluster's topology: {e:#}");
                return;
            }
        };
        let ids = |t: &Topology| {
            let mut v: Vec<String> = t
                .masters
                .iter()
                .map(|m| format!("{} {}", m.id, m.addr))
                .collect();
            v.sort();
            v
        };
        if ids(&now) != ids(before) {
            self.reliable = false;
            self.stats.mode =
                "reconciliation passes only (the source cluster's masters changed)".into();
            self.shared.gap(
                "the source cluster's masters changed: events of new masters are not received; following \
                 by reconciliation passes alone from now on (rerun the same command to subscribe to the new masters)"
                    .into(),
            );
        }
    }

    /// `CLIENT PAUSE ms WRITE` on the source, every master of a cluster (6.2+).
    async fn pause_source(&mut self, secs: u64) -> anyhow::Result<()> {
        if self.source_version < (6, 2) {
            anyhow::bail!(
                "--pause-source needs Redis 6.2+ on the source (CLIENT PAUSE … WRITE); before 6.2 a pause stops reads \
                 too, so nothing could be verified. Stop the application's writes and run ferry cutover without it"
            );
        }
        let ms = (secs * 1000).to_string();
        for m in &self.masters {
            let mut c = m.connect().await?;
            let reply = c
                .cmd(&[b"CLIENT".as_slice(), b"PAUSE", ms.as_bytes(), b"WRITE"])
                .await?;
            if let Some(e) = reply.error() {
                anyhow::bail!(
                    "the source {} refused CLIENT PAUSE: {e} (the ACL user needs +client|pause, or stop the \
                     application's writes and run ferry cutover without --pause-source)",
                    m.endpoint
                );
            }
        }
        eprintln!("ferry: cutover: the source's writes are paused for at most {secs} s");
        Ok(())
    }

    /// `CLIENT UNPAUSE` (best effort: the pause ends by itself anyway).
    async fn unpause_source(&mut self) {
        for m in &self.masters {
            if let Ok(mut c) = m.connect().await {
                let _ = c.cmd(&[b"CLIENT".as_slice(), b"UNPAUSE"]).await;
            }
        }
    }
}
/// `ferry migrate --reconcile`: one reconciliation pass, and the keys it found re-copied or
/// deleted; returns a line for the report's notes.
pub async fn reconcile_once(ctx: Context<'_>, stop: &Stop) -> anyhow::Result<String> {
    let tolerance = ctx
        .plan
        .verify
        .ttl_tolerance_ms
        .min(FOLLOW_TTL_TOLERANCE_MS);
    eprintln!("ferry: --reconcile: comparing both sides by bucket digests");
    let outcome = reconcile::pass(
        ctx.source.clone(),
        ctx.job.clone(),
        ctx.pairs.clone(),
        ctx.share.clone(),
        tolerance,
        stop.clone(),
    )
    .await?;
    let mut applier = Applier::new(
        ctx.source.clone(),
        &ctx.sinfo.layout,
        ctx.target,
        ctx.writer.clone(),
    );
    let done = applier.apply(&outcome.differing).await?;
    let line = format!(
        "--reconcile: {} keys compared, {} differed: {} re-copied, {} deleted on the target{}",
        outcome.keys_total,
        outcome.differing.len(),
        done.written,
        done.deleted,
        if outcome.untracked > 0 {
            format!(
                "; {} more differences than one pass tracks: rerun with --reconcile",
                outcome.untracked
            )
        } else {
            String::new()
        }
    );
    eprintln!("ferry: {line}");
    Ok(line)
}
