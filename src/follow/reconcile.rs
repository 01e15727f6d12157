//! Reconciliation: the verifier's bucket digests of both sides, and the keys of the buckets that
//! differ, which the follower then re-reads and writes (or deletes).
//!
//! This is what makes the follower correct when events are lost (or never sent): a pass compares
//! every key of both sides in constant memory per database (`verify/first_round.rs`: 16384 bucket
//! aggregates per side, then only the differing buckets read key by key), so its cost is one
//! read of each side, and its writes are only the keys that differ. Those keys are not written
//! from what the pass read: they are marked dirty, so the follower's one ordered write path
//! (`apply.rs`) re-reads and writes them like any other dirty key.

use std::sync::Arc;
use std::time::Instant;

use super::dirty::DbKey;
use crate::endpoint::Server;
use crate::job::Job;
use crate::partition::KeyShare;
use crate::stop::Stop;
use crate::throttle::{Limits, Throttles};
use crate::verify::first_round::first_round;
use crate::verify::rechecks::Tally;

/// Load limits for the follower's own reads of both sides (reconciliation, cutover
/// verification): none yet — `--max-keys-per-sec` and the like bind the copy and `ferry verify`.
pub(crate) fn unlimited() -> Arc<Throttles> {
    Arc::new(Throttles::new(Limits::default(), Stop::new()))
}

/// What one pass found.
#[derive(Debug, Clone, Default)]
pub struct PassOutcome {
    /// Keys that differed (source DB, key).
    pub differing: Vec<DbKey>,
    /// Differences beyond the tracking limit (counted, not listed: another pass is needed).
    pub untracked: u64,
    /// Buckets whose digests differed.
    pub buckets_differing: u64,
    /// Keys compared key by key.
    pub keys_compared: u64,
    /// Keys on the source (every one compared, most by bucket digests).
    pub keys_total: u64,
    /// How long the pass took.
    pub elapsed_ms: u64,
}

/// Runs one pass over the database `pairs` (source db, target db); with `share`
/// (`--partition`), over that share's keys only, listing only the masters that serve it.
pub async fn pass(
    source: Server,
    job: Job,
    pairs: Vec<(u32, u32)>,
    share: Option<Arc<KeyShare>>,
    tolerance_ms: u64,
    stop: Stop,
) -> anyhow::Result<PassOutcome> {
    let started = Instant::now();
    let (src, dst) = crate::verify::open_sides(&source, &job, unlimited(), share).await?;
    let mut tally = Tally::default();
    let first = first_round(&src, &dst, &pairs, tolerance_ms, &stop, &mut tally).await?;
    let keys_total = first.dbs.iter().map(|d| d.source.keys).sum();
    let differing = first
        .candidates
        .into_iter()
        .filter_map(|c| Some((pairs.get(c.pair)?.0, c.key)))
        .collect();
    Ok(PassOutcome {
        differing,
        untracked: tally.untracked.values().sum(),
        buckets_differing: first.buckets.reread,
        keys_compared: tally.keys_compared,
        keys_total,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
