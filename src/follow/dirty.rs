//! The dirty set: (db, key) pairs whose source copy changed since they were last written to the
//! target, waiting to be re-read.
//!
//! Deduplicated (a key written a thousand times while queued is re-read once) and bounded: past
//! its budget a new key is not queued; the set reports an *overflow* instead, which the follower
//! treats like any other gap in the events (a reconciliation pass finds the keys it did not
//! queue). Memory is therefore set by the budget, never by the write rate.
//!
//! Keys are taken oldest first, so the age of the oldest queued key is the follower's lag.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

/// A (source db, key) pair.
pub type DbKey = (u32, Bytes);

/// Queued keys, oldest first, without duplicates; see the module doc.
pub struct DirtySet {
    budget: usize,
    queued: HashSet<DbKey>,
    order: VecDeque<(DbKey, i64)>,
    /// Keys refused since the last [`DirtySet::take_overflow`].
    overflow: u64,
}

impl DirtySet {
    /// An empty set holding at most `budget` keys.
    pub fn new(budget: usize) -> DirtySet {
        DirtySet {
            budget: budget.max(1),
            queued: HashSet::new(),
            order: VecDeque::new(),
            overflow: 0,
        }
    }

    /// Queues `key` of `db`, dirtied at `now_ms`. Returns false when the set is full and the key
    /// was not queued (counted as an overflow).
    pub fn mark(&mut self, db: u32, key: &[u8], now_ms: i64) -> bool {
        let k = (db, Bytes::copy_from_slice(key));
        if self.queued.contains(&k) {
            return true;
        }
        if self.queued.len() >= self.budget {
            self.overflow += 1;
            return false;
        }
        self.queued.insert(k.clone());
        self.order.push_back((k, now_ms));
        true
    }

    /// Removes and returns up to `n` keys, oldest first. A key marked again after this is queued
    /// again (and so re-read after the read that takes it now).
    pub fn take(&mut self, n: usize) -> Vec<DbKey> {
        let mut out = Vec::with_capacity(n.min(self.order.len()));
        while out.len() < n {
            let Some((k, _)) = self.order.pop_front() else {
                break;
            };
            self.queued.remove(&k);
            out.push(k);
        }
        out
    }

    /// Keys queued.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How long the oldest queued key has waited, in ms (0 when empty).
    pub fn oldest_age_ms(&self, now_ms: i64) -> i64 {
        self.order.front().map_or(0, |(_, at)| (now_ms - at).max(0))
    }

    /// Keys refused for lack of room since the last call, and resets the count.
    pub fn take_overflow(&mut self) -> u64 {
        std::mem::take(&mut self.overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_orders_and_bounds() {
        let mut d = DirtySet::new(3);
        assert!(d.mark(0, b"a", 10));
        assert!(d.mark(0, b"b", 20));
        assert!(d.mark(0, b"a", 30));
        assert!(d.mark(1, b"a", 40));
        assert_eq!(d.len(), 3);
        assert!(!d.mark(0, b"c", 50));
        assert_eq!(d.take_overflow(), 1);
        assert_eq!(d.take_overflow(), 0);
        assert_eq!(d.oldest_age_ms(110), 100);
        let first = d.take(2);
        assert_eq!(first, vec![(0, Bytes::from("a")), (0, Bytes::from("b"))]);
        // Marked again while its read is in flight: queued again, behind the others.
        assert!(d.mark(0, b"a", 60));
        assert_eq!(
            d.take(10),
            vec![(1, Bytes::from("a")), (0, Bytes::from("a"))]
        );
        assert!(d.is_empty());
        assert_eq!(d.oldest_age_ms(1000), 0);
    }
}
