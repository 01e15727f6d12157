//! `--sample N`: a quick check of about N random keys per database and side, for datasets too
//! large to read in full before a deadline.
//!
//! Keys are drawn with `RANDOMKEY` on *both* sides — source keys find `missing`, `type`, `value`
//! and `ttl` differences, target keys find `extra` ones — and each drawn key is read on both
//! sides and compared exactly like a full run's re-read keys (then re-checked in later rounds).
//! A database with at most N keys is read whole (via SCAN), so small databases get an exact
//! answer. Key and TTL counts come from `INFO keyspace` (exact and free); per-type counts are of
//! the sampled keys only. The report says `"mode": "sample"` and the summary says SAMPLE ONLY:
//! keys outside the sample were not checked, and equality of a sample is evidence, not proof.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::compare::{compare, latest_expiry};
use super::rechecks::{Candidate, Tally};
use super::report::{DbCounts, SampleInfo, SideCounts};
use super::side::Side;
use super::state::KeyState;
use crate::stop::Stop;

/// What a sample found.
pub struct SampleRound {
    /// Counts per database pair (keys and TTLs exact; types of the sample).
    pub dbs: Vec<DbCounts>,
    /// Keys that differ, to re-check.
    pub candidates: Vec<Candidate>,
    /// What was sampled.
    pub info: SampleInfo,
}

/// Samples about `n` keys per database and side, and compares them.
pub async fn sample_round<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    n: u64,
    tolerance_ms: u64,
    stop: &Stop,
    tally: &mut Tally,
) -> anyhow::Result<SampleRound> {
    let (ks, kt) = tokio::try_join!(src.keyspace(), dst.keyspace())?;
    let mut dbs = Vec::new();
    let mut candidates = Vec::new();
    let mut info = SampleInfo {
        requested_per_db: n,
        keys_checked: 0,
    };
    for (i, &(db, tdb)) in pairs.iter().enumerate() {
        if stop.is_raised() {
            anyhow::bail!("stopped while sampling");
        }
        let (a, b) = tokio::try_join!(src.random_keys(db, n), dst.random_keys(tdb, n))?;
        let mut seen: HashSet<Bytes> = HashSet::with_capacity(a.len() + b.len());
        let keys: Vec<Bytes> = a
            .into_iter()
            .chain(b)
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let (sa, sb) = tokio::try_join!(src.fetch(db, &keys), dst.fetch(tdb, &keys))?;
        tally.stream(&sa.1);
        tally.stream(&sb.1);
        let now = crate::read::clock::now_ms();
        for ((key, x), y) in keys.iter().zip(&sa.0).zip(&sb.0) {
            let verdict = compare(x.as_ref(), y.as_ref(), tolerance_ms, now);
            let expiry = latest_expiry(x.as_ref(), y.as_ref());
            tally.judge(&mut candidates, i, key.clone(), verdict, expiry);
        }
        info.keys_checked += keys.len() as u64;
        tally.keys_compared += keys.len() as u64;
        dbs.push(DbCounts {
            db,
            target_db: tdb,
            source: counts(ks.get(&db).copied(), &sa.0),
            target: counts(kt.get(&tdb).copied(), &sb.0),
        });
    }
    Ok(SampleRound {
        dbs,
        candidates,
        info,
    })
}

/// Exact key/TTL counts from the keyspace, per-type counts from the sampled states.
fn counts(keyspace: Option<(u64, u64)>, sampled: &[Option<KeyState>]) -> SideCounts {
    let (keys, with_ttl) = keyspace.unwrap_or((0, 0));
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for s in sampled.iter().flatten() {
        *types.entry(s.kind.name().to_string()).or_default() += 1;
    }
    SideCounts {
        keys,
        with_ttl,
        types,
    }
}
