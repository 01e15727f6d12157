//! A full verification's first round: stream both sides into bucket aggregates, then re-read
//! only the buckets that differ, key by key.
//!
//! # Memory
//! - Pass 1 keeps 16384 bucket aggregates per database and side (~1.2 MB), whatever the dataset
//!   size: the equal case never holds a key.
//! - Pass 2 lists both sides again (SCAN only: keys outside the differing buckets are not read)
//!   and keeps a `key → state` map (the key plus 33 bytes) for the keys of differing buckets.
//!   If those buckets hold more than [`REREAD_BUDGET`] keys (e.g. a forgotten database, where
//!   every bucket differs), they are split into groups and each group takes its own pass, so
//!   memory stays bounded; the cost is one more SCAN of each side per group.
//! - The keys found to differ are kept (up to [`MAX_TRACKED`](super::rechecks::MAX_TRACKED)) to be re-checked by later rounds;
//!   beyond that they are counted, not tracked.
//!
//! Pass 2 also rebuilds the aggregates of the re-read buckets from the exact maps, so the counts
//! reported are free of SCAN's possible duplicates (a key listed twice while the server rehashes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::bucket::{bucket_of, DbAggregates, TtlGrid, BUCKETS};
use super::compare::compare_maps;
use super::rechecks::{Candidate, Tally};
use super::report::{BucketStats, DbCounts, Listed};
use super::side::{Entry, Side, StreamStats, Visit, Want};
use super::state::KeyState;
use crate::stop::Stop;

/// Most keys (estimated from the aggregates) re-read in one pass 2.
pub const REREAD_BUDGET: u64 = 2_000_000;

/// What the first round found.
pub struct FirstRound {
    /// Counts per database pair.
    pub dbs: Vec<DbCounts>,
    /// Keys that differ, to re-check.
    pub candidates: Vec<Candidate>,
    /// Bucket statistics.
    pub buckets: BucketStats,
    /// Keys listed by pass 1, per side.
    pub listed: Listed,
}

/// Runs pass 1 and pass 2 over every database pair.
pub async fn first_round<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    tolerance_ms: u64,
    stop: &Stop,
    tally: &mut Tally,
) -> anyhow::Result<FirstRound> {
    let grid = TtlGrid::new(tolerance_ms);
    let (mut aggs, listed) = pass_one(src, dst, pairs, grid, stop, tally).await?;

    // Differing buckets, with an estimate of their keys, grouped to fit the re-read budget.
    let mut differing: Vec<(usize, u16, u64)> = Vec::new();
    for (i, (a, b)) in aggs.iter().enumerate() {
        for bucket in a.differing(b) {
            let est = u64::from(a.get(bucket).keys.max(b.get(bucket).keys));
            differing.push((i, bucket, est));
        }
    }
    let mut stats = BucketStats {
        compared: (pairs.len() * BUCKETS) as u64,
        reread: differing.len() as u64,
        reread_passes: 0,
    };

    // Pass 2: the keys of differing buckets, exactly.
    let mut candidates = Vec::new();
    for group in groups(&differing, REREAD_BUDGET) {
        stats.reread_passes += 1;
        // Each pass lists every key again: progress counts this pass, not all passes together.
        src.progress()
            .store(0, std::sync::atomic::Ordering::Relaxed);
        dst.progress()
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let mut by_pair: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
        for &(i, bucket, _) in group {
            by_pair.entry(i).or_default().push(bucket);
        }
        for (i, buckets) in by_pair {
            let reread = Reread {
                pair: i,
                dbs: pairs[i],
                buckets: &buckets,
                tolerance_ms,
            };
            reread
                .run(src, dst, &mut aggs[i], stop, tally, &mut candidates)
                .await?;
        }
    }
    let dbs = pairs
        .iter()
        .zip(&aggs)
        .map(|(&(db, target_db), (a, b))| DbCounts {
            db,
            target_db,
            source: a.counts(),
            target: b.counts(),
        })
        .collect();
    Ok(FirstRound {
        dbs,
        candidates,
        buckets: stats,
        listed,
    })
}

/// Pass 1: the bucket aggregates of every database pair, and the keys listed on each side.
async fn pass_one<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    grid: TtlGrid,
    stop: &Stop,
    tally: &mut Tally,
) -> anyhow::Result<(Vec<(DbAggregates, DbAggregates)>, Listed)> {
    let mut aggs: Vec<(DbAggregates, DbAggregates)> = Vec::with_capacity(pairs.len());
    let mut listed = Listed::default();
    for &(db, tdb) in pairs {
        let a = DbAggregates::new(grid);
        let b = DbAggregates::new(grid);
        let ((a, sa), (b, sb)) = both(src, dst, db, tdb, Want::All, a, b, stop).await?;
        tally.stream(&sa);
        tally.stream(&sb);
        listed.source += sa.listed;
        listed.target += sb.listed;
        aggs.push((a, b));
    }
    Ok((aggs, listed))
}

/// Pass 2 of one database pair: the keys of its differing `buckets`, read on both sides.
struct Reread<'a> {
    /// Index of the pair (for the candidates).
    pair: usize,
    /// (source db, target db).
    dbs: (u32, u32),
    buckets: &'a [u16],
    tolerance_ms: u64,
}

impl Reread<'_> {
    /// Reads the buckets' keys on both sides, rebuilds their aggregates in `aggs` from the
    /// exact maps, and compares the keys (differences into `candidates`).
    async fn run<S: Side, T: Side>(
        &self,
        src: &Arc<S>,
        dst: &Arc<T>,
        aggs: &mut (DbAggregates, DbAggregates),
        stop: &Stop,
        tally: &mut Tally,
        candidates: &mut Vec<Candidate>,
    ) -> anyhow::Result<()> {
        let (db, tdb) = self.dbs;
        let want = Want::buckets(self.buckets.iter().copied());
        let (ma, mb) = (KeyMap::default(), KeyMap::default());
        let ((ma, _), (mb, _)) = both(src, dst, db, tdb, want, ma, mb, stop).await?;
        let (a, b) = aggs;
        for &bucket in self.buckets {
            a.clear(bucket);
            b.clear(bucket);
        }
        for (k, s) in &ma.0 {
            a.add(k, bucket_of(k), s);
        }
        for (k, s) in &mb.0 {
            b.add(k, bucket_of(k), s);
        }
        tally.keys_compared += ma.0.len().max(mb.0.len()) as u64;
        let now = crate::read::clock::now_ms();
        for (key, verdict, expiry) in compare_maps(ma.0, mb.0, self.tolerance_ms, now) {
            tally.judge(candidates, self.pair, key, verdict, expiry);
        }
        Ok(())
    }
}

/// Splits `items` (pair, bucket, estimated keys) into consecutive groups of at most `budget`
/// estimated keys (a single bucket over the budget forms its own group).
fn groups(items: &[(usize, u16, u64)], budget: u64) -> Vec<&[(usize, u16, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0u64;
    for (i, item) in items.iter().enumerate() {
        if i > start && sum + item.2 > budget {
            out.push(&items[start..i]);
            start = i;
            sum = 0;
        }
        sum += item.2;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

impl Visit for DbAggregates {
    fn visit(&mut self, e: Entry) {
        self.add(&e.key, e.bucket, &e.state);
    }

    fn fork(&self) -> Self {
        self.empty_like()
    }

    fn merge(&mut self, other: Self) {
        self.absorb(&other);
    }
}

/// The exact keys of some buckets. Keys are copied out of the reply buffers they arrive in, so a
/// kept key never pins a whole SCAN page in memory.
#[derive(Default)]
pub struct KeyMap(pub HashMap<Bytes, KeyState>);

impl Visit for KeyMap {
    fn visit(&mut self, e: Entry) {
        self.0.insert(Bytes::copy_from_slice(&e.key), e.state);
    }

    fn fork(&self) -> Self {
        KeyMap::default()
    }

    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// Streams `db` of the source and `tdb` of the target at the same time, each in its own task
/// (decoding is CPU work: two tasks use two cores). If one side fails, the other is stopped.
#[allow(clippy::too_many_arguments)]
pub async fn both<S: Side, T: Side, V: Visit>(
    src: &Arc<S>,
    dst: &Arc<T>,
    db: u32,
    tdb: u32,
    want: Want,
    a: V,
    b: V,
    stop: &Stop,
) -> anyhow::Result<((V, StreamStats), (V, StreamStats))> {
    let (s, st, w) = (src.clone(), stop.clone(), want.clone());
    let ta = Task(tokio::spawn(async move { s.stream(db, w, a, st).await }));
    let (t, st) = (dst.clone(), stop.clone());
    let tb = Task(tokio::spawn(
        async move { t.stream(tdb, want, b, st).await },
    ));
    tokio::try_join!(ta.join(), tb.join())
}

/// A spawned task that is aborted when dropped (when the other side failed first).
pub struct Task<T>(pub tokio::task::JoinHandle<anyhow::Result<T>>);

impl<T> Task<T> {
    /// Waits for the task's result.
    pub async fn join(mut self) -> anyhow::Result<T> {
        match (&mut self.0).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("a verification task failed: {e}")),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_respect_the_budget() {
        let items: Vec<(usize, u16, u64)> = (0..10).map(|i| (0, i, 3)).collect();
        let g = groups(&items, 7);
        assert_eq!(
            g.iter().map(|g| g.len()).collect::<Vec<_>>(),
            vec![2, 2, 2, 2, 2]
        );
        let big = [(0, 0, 100), (0, 1, 1)];
        assert_eq!(groups(&big, 7).len(), 2);
        assert!(groups(&[], 7).is_empty());
    }
}
