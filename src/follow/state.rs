//! What the subscription, the keyspace watcher and the follower share: the dirty set, the ledger,
//! the gap counter and event statistics.
//!
//! Everything that may have missed a source change calls [`Shared::gap`]: the gap counter is how
//! the follower knows that a reconciliation pass is due and that no ledger proves anything until
//! it ends. The locks are plain mutexes held for a few instructions (one runtime thread).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::dirty::{DbKey, DirtySet};
use super::ledger::Ledger;
use crate::partition::KeyShare;
use crate::read::clock::now_ms;

/// How many gap reasons the report keeps.
const GAP_REASONS: usize = 20;

/// The dirty set and the ledger, changed together.
pub struct Marks {
    /// Keys to re-read.
    pub dirty: DirtySet,
    /// Keys that may differ since the last clean pass.
    pub ledger: Ledger,
}

/// State shared by the follower's tasks.
pub struct Shared {
    /// Dirty set and ledger.
    pub marks: Mutex<Marks>,
    /// Source DBs followed (events of other DBs are ignored).
    pub dbs: Vec<u32>,
    /// `--partition`: the keys of this worker's share (events of other keys are ignored: another
    /// worker follows them).
    pub share: Option<Arc<KeyShare>>,
    /// Events ignored because their key belongs to another worker's share.
    pub other_shares: AtomicU64,
    /// Moments events may have been lost, counted.
    pub gaps: AtomicU64,
    /// Why (the first few), for the report.
    pub gap_reasons: Mutex<Vec<String>>,
    /// Events received.
    pub events: AtomicU64,
    /// Events received per source DB (for the keyspace watcher's count check).
    pub events_by_db: Mutex<BTreeMap<u32, u64>>,
    /// Unix ms of the last event received (0: none yet).
    pub last_event_ms: AtomicI64,
}

impl Shared {
    /// Empty state: `budget` keys at most in the dirty set and in the ledger.
    pub fn new(dbs: Vec<u32>, share: Option<Arc<KeyShare>>, budget: usize) -> Shared {
        Shared {
            marks: Mutex::new(Marks {
                dirty: DirtySet::new(budget),
                ledger: Ledger::new(budget),
            }),
            dbs,
            share,
            other_shares: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            gap_reasons: Mutex::new(Vec::new()),
            events: AtomicU64::new(0),
            events_by_db: Mutex::new(BTreeMap::new()),
            last_event_ms: AtomicI64::new(0),
        }
    }

    /// The dirty set and ledger (a poisoned lock only means a panic elsewhere: use the data).
    pub fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A source event for `key` of `db`.
    pub fn event(&self, db: u32, key: &[u8]) {
        if !self.dbs.contains(&db) {
            return;
        }
        // Counted for the keyspace watcher whatever the share: the key counts it compares
        // include every share's keys.
        *self
            .events_by_db
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(db)
            .or_default() += 1;
        if self.share.as_ref().is_some_and(|s| !s.contains(key)) {
            self.other_shares.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = now_ms();
        self.events.fetch_add(1, Ordering::Relaxed);
        self.last_event_ms.store(now, Ordering::Relaxed);
        self.mark(db, key, now);
    }

    /// Queues `key` of `db` for a re-read (an event, or a reconciliation pass's finding).
    pub fn mark(&self, db: u32, key: &[u8], now: i64) {
        let overflow = {
            let mut m = self.marks();
            let queued = m.dirty.mark(db, key, now);
            if queued {
                let k: DbKey = (db, bytes::Bytes::copy_from_slice(key));
                m.ledger.note(&k);
            }
            !queued
        };
        if overflow {
            self.gap(format!(
                "the dirty set is full (--dirty-budget keys): db {db} is reconciled instead"
            ));
        }
    }

    /// Source changes may have been missed: a reconciliation pass is due.
    pub fn gap(&self, reason: String) {
        self.gaps.fetch_add(1, Ordering::SeqCst);
        self.marks().ledger.invalidate();
        let mut reasons = self.gap_reasons.lock().unwrap_or_else(|e| e.into_inner());
        // An overflow repeats for every key refused: report it once.
        if reasons.last() == Some(&reason) {
            return;
        }
        tracing::warn!("follow: {reason}; a reconciliation pass will find what was missed");
        if reasons.len() < GAP_REASONS {
            reasons.push(reason);
        }
    }

    /// The gap counter now.
    pub fn gap_count(&self) -> u64 {
        self.gaps.load(Ordering::SeqCst)
    }

    /// Events received per DB so far.
    pub fn events_of(&self, db: u32) -> u64 {
        self.events_by_db
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&db)
            .copied()
            .unwrap_or(0)
    }
}
