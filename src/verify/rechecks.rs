//! Later rounds: a live source keeps changing, so a key found different is read again on both
//! sides, `--round-pause` later, up to `--rounds` comparisons in all, and reported only if it
//! still differs in the last one.
//!
//! A write that reached the source after the copy read it (and that the application will make
//! again on the new cluster after cutover, or that a second `ferry migrate --on-conflict replace`
//! copies) shows up in round 1; a key that was merely being written at the moment of the first
//! comparison settles in a later round and is counted as `settled_on_recheck`, not as a loss. A
//! key present on one side only because its TTL ran out between the two reads is counted as
//! `expired_during_verify`. Re-checks read keys by name (pipelined `TIME`/`PTTL`/`DUMP`, a few
//! hundred per round trip), never the whole dataset again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::compare::{compare, latest_expiry, Verdict};
use super::report::DiffKind;
use super::side::{Side, StreamStats};
use crate::stop::Stop;

/// Most differing keys tracked for re-checks (beyond them, differences are counted only).
pub const MAX_TRACKED: usize = 1_000_000;

/// A key that differed at its last comparison.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of its database pair.
    pub pair: usize,
    /// The key.
    pub key: Bytes,
    /// How it differed.
    pub kind: DiffKind,
    /// Details.
    pub detail: String,
    /// The latest expiry either side showed (to tell an expiry from a deletion later).
    pub expiry: Option<i64>,
}

/// Counters shared by every stage of a verification.
#[derive(Debug, Default)]
pub struct Tally {
    /// Keys compared key by key.
    pub keys_compared: u64,
    /// Keys gone from one side because their TTL ran out.
    pub expired: u64,
    /// Keys that differed and then agreed.
    pub settled: u64,
    /// Undecodable payloads seen.
    pub undecodable: u64,
    /// Some of them, named.
    pub undecodable_examples: Vec<String>,
    /// Big keys read in chunks.
    pub big: u64,
    /// Differences beyond [`MAX_TRACKED`], per kind: counted, never re-checked.
    pub untracked: BTreeMap<DiffKind, u64>,
}

impl Tally {
    /// Adds what a stream saw.
    pub fn stream(&mut self, s: &StreamStats) {
        self.undecodable += s.undecodable;
        self.big += s.big;
        for e in &s.undecodable_examples {
            if self.undecodable_examples.len() < 10 {
                self.undecodable_examples.push(e.clone());
            }
        }
    }

    /// Counts a first comparison's `verdict` on `key` of pair `pair`: an expired key, or a
    /// difference kept for re-checks (see [`Tally::track`]).
    pub fn judge(
        &mut self,
        candidates: &mut Vec<Candidate>,
        pair: usize,
        key: Bytes,
        verdict: Verdict,
        expiry: Option<i64>,
    ) {
        match verdict {
            Verdict::Same => {}
            Verdict::Expired => self.expired += 1,
            Verdict::Differs(kind, detail) => self.track(
                candidates,
                Candidate {
                    pair,
                    key,
                    kind,
                    detail,
                    expiry,
                },
            ),
        }
    }

    /// Keeps `c` for re-checks, or counts it when too many are kept already.
    pub fn track(&mut self, candidates: &mut Vec<Candidate>, c: Candidate) {
        if candidates.len() < MAX_TRACKED {
            candidates.push(c);
        } else {
            *self.untracked.entry(c.kind).or_default() += 1;
        }
    }
}

/// Re-checks `candidates` in rounds 2..=`rounds`; returns those that still differ and the
/// number of rounds run (counting the first).
#[allow(clippy::too_many_arguments)]
pub async fn recheck<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    mut candidates: Vec<Candidate>,
    rounds: u32,
    pause: Duration,
    tolerance_ms: u64,
    stop: &Stop,
    tally: &mut Tally,
) -> anyhow::Result<(Vec<Candidate>, u32)> {
    let mut run = 1;
    while run < rounds && !candidates.is_empty() {
        if stop.is_raised() {
            anyhow::bail!("stopped during the re-checks");
        }
        tracing::info!(
            "verify: round {}: re-checking {} keys that differed",
            run + 1,
            candidates.len()
        );
        pause_for(pause, stop).await;
        run += 1;
        candidates = recheck_once(src, dst, pairs, candidates, tolerance_ms, tally).await?;
    }
    Ok((candidates, run))
}

async fn pause_for(pause: Duration, stop: &Stop) {
    let until = tokio::time::Instant::now() + pause;
    while tokio::time::Instant::now() < until && !stop.is_raised() {
        let left = until - tokio::time::Instant::now();
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// One re-check of every candidate.
pub async fn recheck_once<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    candidates: Vec<Candidate>,
    tolerance_ms: u64,
    tally: &mut Tally,
) -> anyhow::Result<Vec<Candidate>> {
    let mut by_pair: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
    for c in candidates {
        by_pair.entry(c.pair).or_default().push(c);
    }
    let mut still = Vec::new();
    for (i, group) in by_pair {
        let Some(&(db, tdb)) = pairs.get(i) else {
            continue;
        };
        for chunk in group.chunks(10_000) {
            let keys: Vec<Bytes> = chunk.iter().map(|c| c.key.clone()).collect();
            let (a, b) = tokio::try_join!(src.fetch(db, &keys), dst.fetch(tdb, &keys))?;
            let now = crate::read::clock::now_ms();
            for ((c, sa), sb) in chunk.iter().zip(&a.0).zip(&b.0) {
                match compare(sa.as_ref(), sb.as_ref(), tolerance_ms, now) {
                    // Gone from both sides after its TTL ran out: it expired, nobody deleted it.
                    Verdict::Same
                        if sa.is_none() && sb.is_none() && c.expiry.is_some_and(|e| e <= now) =>
                    {
                        tally.expired += 1
                    }
                    Verdict::Same => tally.settled += 1,
                    Verdict::Expired => tally.expired += 1,
                    Verdict::Differs(kind, detail) => still.push(Candidate {
                        pair: c.pair,
                        key: c.key.clone(),
                        kind,
                        detail,
                        expiry: latest_expiry(sa.as_ref(), sb.as_ref()).max(c.expiry),
                    }),
                }
            }
        }
    }
    Ok(still)
}
