//! The ledger: keys that may differ from what the last clean reconciliation pass compared.
//!
//! A reconciliation pass compares every key of both sides by bucket digests. When it finishes
//! with the events flowing without a gap from its start to its end, every key that the source
//! did not change since the pass started was compared; the keys it did change were all dirtied
//! (an event), and the ledger recorded them. So, after that pass, *the ledger holds every key
//! that may differ*, and a cutover only needs to verify those: the write pause does not grow
//! with the dataset.
//!
//! A pass opens a `next` ledger at its start; every key dirtied from then on goes to both. When
//! the pass ends cleanly, `next` becomes the ledger (keys dirtied before the pass started were
//! compared by it). Past its budget the ledger stops being a proof: [`Ledger::usable`] turns
//! false until the next clean pass, and a cutover verifies everything.

use std::collections::HashSet;

use super::dirty::DbKey;

/// Keys dirtied since the last clean pass (and since the one running started).
pub struct Ledger {
    budget: usize,
    /// Since the last clean pass; `None` before the first one, or after an overflow.
    current: Option<HashSet<DbKey>>,
    /// Since the running pass started.
    next: Option<HashSet<DbKey>>,
}

impl Ledger {
    /// An empty ledger, not usable until a clean pass ends.
    pub fn new(budget: usize) -> Ledger {
        Ledger {
            budget: budget.max(1),
            current: None,
            next: None,
        }
    }

    /// Records a dirtied key.
    pub fn note(&mut self, key: &DbKey) {
        let budget = self.budget;
        for set in [&mut self.current, &mut self.next] {
            let full = set.as_ref().is_some_and(|s| s.len() >= budget);
            if full {
                *set = None;
            } else if let Some(s) = set {
                s.insert(key.clone());
            }
        }
    }

    /// A pass starts: keys dirtied from now on are also kept for it.
    pub fn pass_started(&mut self) {
        self.next = Some(HashSet::new());
    }

    /// The pass that started last ended; `clean` when no event could have been lost meanwhile.
    pub fn pass_ended(&mut self, clean: bool) {
        let next = self.next.take();
        if clean {
            if let Some(next) = next {
                self.current = Some(next);
            }
        }
    }

    /// Events were lost: until a clean pass ends, no ledger proves anything.
    pub fn invalidate(&mut self) {
        self.current = None;
        self.next = None;
    }

    /// True when the ledger holds every key that may differ (see the module doc).
    pub fn usable(&self) -> bool {
        self.current.is_some()
    }

    /// The keys that may differ, when usable.
    pub fn keys(&self) -> Option<Vec<DbKey>> {
        self.current.as_ref().map(|s| s.iter().cloned().collect())
    }

    /// Keys in the ledger (0 when not usable).
    pub fn len(&self) -> usize {
        self.current.as_ref().map_or(0, HashSet::len)
    }

    /// True when the ledger holds no key (or is not usable).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn k(s: &str) -> DbKey {
        (0, Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn clean_pass_makes_it_usable_and_keeps_keys_dirtied_since_it_started() {
        let mut l = Ledger::new(10);
        l.note(&k("before"));
        assert!(!l.usable());
        l.pass_started();
        l.note(&k("during"));
        l.pass_ended(true);
        assert!(l.usable());
        l.note(&k("after"));
        let mut keys = l.keys().unwrap();
        keys.sort();
        assert_eq!(keys, vec![k("after"), k("during")]);
        // A pass with a gap changes nothing; an invalidation ends the proof.
        l.pass_started();
        l.pass_ended(false);
        assert_eq!(l.len(), 2);
        l.invalidate();
        assert!(!l.usable());
    }

    #[test]
    fn overflow_makes_it_unusable() {
        let mut l = Ledger::new(2);
        l.pass_started();
        l.pass_ended(true);
        l.note(&k("a"));
        l.note(&k("b"));
        assert!(l.usable());
        l.note(&k("c"));
        assert!(!l.usable());
    }
}
