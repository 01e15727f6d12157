//! The verification of `migrate --keys-from`: only the listed keys, read by name on both sides
//! and compared exactly like a full run's re-read keys (then re-checked in later rounds).
//!
//! Reading a few keys by name is cheap, while a full verification reads both whole datasets;
//! the keys outside the list were verified (or not) by the job that dead-lettered these. The
//! report says `"mode": "listed"`; its counts are of the listed keys only.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::compare::{compare, latest_expiry};
use super::rechecks::{Candidate, Tally};
use super::report::{DbCounts, SideCounts};
use super::side::Side;
use super::state::KeyState;
use crate::stop::Stop;

/// Keys per read on each side.
const CHUNK: usize = 500;

/// Listed keys by source DB.
pub type KeyLists = BTreeMap<u32, Vec<Bytes>>;

/// Reads every listed key of each pair on both sides and compares them.
pub async fn listed_round<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    lists: &KeyLists,
    tolerance_ms: u64,
    stop: &Stop,
    tally: &mut Tally,
) -> anyhow::Result<(Vec<DbCounts>, Vec<Candidate>)> {
    let mut dbs = Vec::new();
    let mut candidates = Vec::new();
    for (i, &(db, tdb)) in pairs.iter().enumerate() {
        let (mut a, mut b) = (SideCounts::default(), SideCounts::default());
        for keys in lists.get(&db).map_or(&[][..], Vec::as_slice).chunks(CHUNK) {
            if stop.is_raised() {
                anyhow::bail!("stopped while verifying the listed keys");
            }
            let (sa, sb) = tokio::try_join!(src.fetch(db, keys), dst.fetch(tdb, keys))?;
            tally.stream(&sa.1);
            tally.stream(&sb.1);
            count(&mut a, &sa.0);
            count(&mut b, &sb.0);
            let now = crate::read::clock::now_ms();
            for ((key, x), y) in keys.iter().zip(&sa.0).zip(&sb.0) {
                let verdict = compare(x.as_ref(), y.as_ref(), tolerance_ms, now);
                let expiry = latest_expiry(x.as_ref(), y.as_ref());
                tally.judge(&mut candidates, i, key.clone(), verdict, expiry);
            }
            tally.keys_compared += keys.len() as u64;
        }
        dbs.push(DbCounts {
            db,
            target_db: tdb,
            source: a,
            target: b,
        });
    }
    Ok((dbs, candidates))
}

/// Adds the keys present in `states` to `c`.
fn count(c: &mut SideCounts, states: &[Option<KeyState>]) {
    for s in states.iter().flatten() {
        c.keys += 1;
        c.with_ttl += u64::from(s.expire_at_ms.is_some());
        *c.types.entry(s.kind.name().to_string()).or_default() += 1;
    }
}
