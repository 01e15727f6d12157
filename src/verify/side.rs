//! One side of a verification — the source or the target — as the comparison sees it:
//! something that can list its keys with their canonical states, and read given keys again.
//!
//! The comparison (`first_round.rs`, `rechecks.rs`, `sample.rs`, `listed.rs`) only needs a
//! [`Side`]: a stream of `(db, key, payload, expiry)` turned into [`Entry`]s (by
//! [`KeyState::from_payload`]) for a [`Visit`]or, and a way to re-read a few keys by name. A live
//! side (`live_side.rs`: a server or a cluster) and a file side (`file_side.rs`: an RDB file) are
//! the two kinds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use super::bucket::BUCKETS;
use super::state::KeyState;
use crate::stop::Stop;

/// How many undecodable keys a side names in the report.
const UNDECODABLE_EXAMPLES: usize = 10;

/// One key listed by a side.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key (may borrow a larger reply buffer: copy it to keep it).
    pub key: Bytes,
    /// Its bucket.
    pub bucket: u16,
    /// Its canonical state.
    pub state: KeyState,
}

/// Receives the entries of a stream (and is handed back when the stream ends). A stream may
/// read with several connections at once, each folding into its own [`Visit::fork`]; the forks
/// are [`Visit::merge`]d at the end, so what a visitor collects must not depend on order.
pub trait Visit: Send + 'static {
    /// One key read.
    fn visit(&mut self, entry: Entry);

    /// An empty visitor of the same kind.
    fn fork(&self) -> Self;

    /// Adds what `other` collected.
    fn merge(&mut self, other: Self);
}

/// Which keys a stream must read (the others are only listed).
#[derive(Debug, Clone)]
pub enum Want {
    /// Every key.
    All,
    /// Keys in the buckets set to `true` (16384 entries).
    Buckets(Arc<Vec<bool>>),
}

impl Want {
    /// True if keys of `bucket` are read.
    pub fn wants(&self, bucket: u16) -> bool {
        match self {
            Want::All => true,
            Want::Buckets(set) => set.get(usize::from(bucket)).copied().unwrap_or(false),
        }
    }

    /// A set of buckets.
    pub fn buckets(buckets: impl IntoIterator<Item = u16>) -> Want {
        let mut set = vec![false; BUCKETS];
        for b in buckets {
            if let Some(slot) = set.get_mut(usize::from(b)) {
                *slot = true;
            }
        }
        Want::Buckets(Arc::new(set))
    }
}

/// What a stream saw besides its entries.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Keys listed.
    pub listed: u64,
    /// Keys read (PTTL + DUMP).
    pub read: u64,
    /// Keys read in chunks (over `--big-key-bytes`), never DUMPed.
    pub big: u64,
    /// Keys listed but gone when read (deleted or expired in between).
    pub vanished: u64,
    /// Keys whose payload could not be decoded.
    pub undecodable: u64,
    /// The first few of those, with the reason.
    pub undecodable_examples: Vec<String>,
}

impl StreamStats {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: StreamStats) {
        self.listed += other.listed;
        self.read += other.read;
        self.big += other.big;
        self.vanished += other.vanished;
        self.undecodable += other.undecodable;
        for e in other.undecodable_examples {
            if self.undecodable_examples.len() < UNDECODABLE_EXAMPLES {
                self.undecodable_examples.push(e);
            }
        }
    }

    /// Counts an undecodable key, naming the first few.
    pub fn note_undecodable(&mut self, side: &str, db: u32, key: &[u8], err: &str) {
        self.undecodable += 1;
        if self.undecodable_examples.len() < UNDECODABLE_EXAMPLES {
            self.undecodable_examples.push(format!(
                "{side} db {db} key {}: {err}",
                crate::display::escape_key(key)
            ));
        }
    }
}

/// A side of the comparison.
pub trait Side: Send + Sync + 'static {
    /// `source` or `target`.
    fn side_name(&self) -> &'static str;

    /// The endpoint (or file), for messages, without password.
    fn name(&self) -> String;

    /// "Redis 6.2.14", when known.
    fn product(&self) -> Option<String>;

    /// Keys listed so far by all streams of this side (for progress).
    fn progress(&self) -> Arc<AtomicU64>;

    /// Per database: (keys, keys with a TTL), as the side reports them without scanning.
    fn keyspace(&self) -> impl Future<Output = anyhow::Result<BTreeMap<u32, (u64, u64)>>> + Send;

    /// Lists every key of `db`, reads those `want` selects, and hands each to `visitor`.
    /// Returns the visitor (holding whatever it collected) and the stream's statistics.
    fn stream<V: Visit>(
        &self,
        db: u32,
        want: Want,
        visitor: V,
        stop: Stop,
    ) -> impl Future<Output = anyhow::Result<(V, StreamStats)>> + Send;

    /// Reads `keys` of `db` again: the state of each, `None` when absent.
    fn fetch(
        &self,
        db: u32,
        keys: &[Bytes],
    ) -> impl Future<Output = anyhow::Result<(Vec<Option<KeyState>>, StreamStats)>> + Send;

    /// About `n` distinct random keys of `db` (every key when the database has at most `n`).
    fn random_keys(
        &self,
        db: u32,
        n: u64,
    ) -> impl Future<Output = anyhow::Result<Vec<Bytes>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn want_buckets() {
        let w = Want::buckets([3, 16383]);
        assert!(w.wants(3) && w.wants(16383) && !w.wants(4));
        assert!(Want::All.wants(7));
    }
}
