//! Buckets: per-(database, hash slot) aggregates that let each side be streamed on its own and
//! compared in constant memory.
//!
//! A key's bucket is its Redis Cluster hash slot (CRC16/XMODEM of the key, or of its `{hash tag}`,
//! mod 16384), so a bucket means the same thing on a standalone server and on a cluster, where it
//! is also the unit a node can list (`CLUSTER GETKEYSINSLOT`). Each bucket keeps:
//!
//! - the number of keys, the number with a TTL, and the number of each kind (the counts of the
//!   report are sums of these);
//! - two order-independent sums of a per-key hash of (key, kind, value digest, expiry cell).
//!
//! Two buckets are *equal* when their counts agree and either sum agrees. A 128-bit sum of
//! xxh3 hashes (collisions ~2⁻¹²⁸) is order-independent, so SCAN order does not matter.
//!
//! # Why two sums: TTLs within a tolerance
//! An expiry is read as `TIME + PTTL` on each side, so the same key's expiry differs by a few ms
//! between sides, and a hash of the exact expiry would almost never agree. Expiries are therefore
//! cut into cells of `Q = --ttl-tolerance` ms, on two grids offset by `Q/2`:
//! `a = ⌊e/Q⌋` and `b = ⌊(e + Q/2)/Q⌋`. Two expiries more than `Q` apart always fall in different
//! cells on *both* grids, so a real TTL difference always makes both sums differ: no difference
//! beyond the tolerance can hide. Two expiries a few ms apart share a cell on at least one grid
//! (a near-boundary pair straddles one grid only), so a bucket holding one such pair still
//! compares equal. Only a bucket where some key straddles grid `a` and another key grid `b` is
//! flagged needlessly; that costs a key-by-key re-read of the bucket (exact comparison, within
//! the tolerance), never a false report.

use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

use super::digest::Kind;
use super::report::SideCounts;
use super::state::KeyState;
use crate::endpoint::slot::key_slot;

/// Buckets per database: the 16384 hash slots of Redis Cluster.
pub const BUCKETS: usize = 16384;

/// The bucket (hash slot) of `key`.
pub fn bucket_of(key: &[u8]) -> u16 {
    key_slot(key)
}

/// Cuts expiries into cells on the two grids described in the module doc.
#[derive(Debug, Clone, Copy)]
pub struct TtlGrid {
    q: i64,
}

/// The cell of "no TTL" on both grids.
const NO_TTL: i64 = i64::MIN;

impl TtlGrid {
    /// Grids of `tolerance_ms`-wide cells (at least 1 ms).
    pub fn new(tolerance_ms: u64) -> TtlGrid {
        TtlGrid {
            q: i64::try_from(tolerance_ms).unwrap_or(i64::MAX).max(1),
        }
    }

    /// The cells of `expire_at_ms` on grid a and grid b.
    pub fn cells(&self, expire_at_ms: Option<i64>) -> (i64, i64) {
        match expire_at_ms {
            None => (NO_TTL, NO_TTL),
            Some(e) => (
                e.div_euclid(self.q),
                e.saturating_add(self.q / 2).div_euclid(self.q),
            ),
        }
    }
}

/// The aggregate of one bucket on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketAgg {
    /// Keys in the bucket.
    pub keys: u32,
    /// Keys with a TTL.
    pub with_ttl: u32,
    /// Keys of each [`Kind`].
    pub kinds: [u32; Kind::COUNT],
    /// Sum of per-key hashes with the expiry on grid a.
    pub sum_a: u128,
    /// Sum of per-key hashes with the expiry on grid b.
    pub sum_b: u128,
}

impl BucketAgg {
    /// True when the two aggregates say the buckets hold the same keys (see the module doc).
    pub fn same_as(&self, other: &BucketAgg) -> bool {
        self.keys == other.keys
            && self.kinds == other.kinds
            && self.with_ttl == other.with_ttl
            && (self.sum_a == other.sum_a || self.sum_b == other.sum_b)
    }
}

/// The 16384 bucket aggregates of one database on one side.
#[derive(Debug, Clone)]
pub struct DbAggregates {
    grid: TtlGrid,
    buckets: Vec<BucketAgg>,
}

impl DbAggregates {
    /// Empty aggregates with expiry cells of `grid`.
    pub fn new(grid: TtlGrid) -> DbAggregates {
        DbAggregates {
            grid,
            buckets: vec![BucketAgg::default(); BUCKETS],
        }
    }

    /// Adds one key.
    pub fn add(&mut self, key: &[u8], bucket: u16, state: &KeyState) {
        let base = key_hash(key, state);
        let (a, b) = self.grid.cells(state.expire_at_ms);
        let Some(agg) = self.buckets.get_mut(usize::from(bucket)) else {
            return;
        };
        agg.keys += 1;
        agg.with_ttl += u32::from(state.expire_at_ms.is_some());
        agg.kinds[state.kind.index()] += 1;
        agg.sum_a = agg.sum_a.wrapping_add(with_cell(base, a));
        agg.sum_b = agg.sum_b.wrapping_add(with_cell(base, b));
    }

    /// Empty aggregates with the same TTL grid.
    pub fn empty_like(&self) -> DbAggregates {
        DbAggregates::new(self.grid)
    }

    /// Adds every bucket of `other` (aggregates of disjoint key sets add up exactly).
    pub fn absorb(&mut self, other: &DbAggregates) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.keys += b.keys;
            a.with_ttl += b.with_ttl;
            for (x, y) in a.kinds.iter_mut().zip(b.kinds) {
                *x += y;
            }
            a.sum_a = a.sum_a.wrapping_add(b.sum_a);
            a.sum_b = a.sum_b.wrapping_add(b.sum_b);
        }
    }

    /// Forgets what was added to `bucket` (before it is rebuilt from an exact key-by-key read).
    pub fn clear(&mut self, bucket: u16) {
        if let Some(agg) = self.buckets.get_mut(usize::from(bucket)) {
            *agg = BucketAgg::default();
        }
    }

    /// The aggregate of `bucket`.
    pub fn get(&self, bucket: u16) -> BucketAgg {
        self.buckets
            .get(usize::from(bucket))
            .copied()
            .unwrap_or_default()
    }

    /// Buckets whose aggregates differ from `other`'s, in order.
    pub fn differing(&self, other: &DbAggregates) -> Vec<u16> {
        self.buckets
            .iter()
            .zip(&other.buckets)
            .enumerate()
            .filter(|(_, (a, b))| !a.same_as(b))
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// Counts over every bucket.
    pub fn counts(&self) -> SideCounts {
        let mut c = SideCounts::default();
        let mut kinds = [0u64; Kind::COUNT];
        for agg in &self.buckets {
            c.keys += u64::from(agg.keys);
            c.with_ttl += u64::from(agg.with_ttl);
            for (total, n) in kinds.iter_mut().zip(agg.kinds) {
                *total += u64::from(n);
            }
        }
        for kind in Kind::ALL {
            let n = kinds[kind.index()];
            if n > 0 {
                c.types.insert(kind.name().to_string(), n);
            }
        }
        c
    }
}

/// Hash of a key and its state, without the expiry.
fn key_hash(key: &[u8], state: &KeyState) -> u128 {
    let mut buf = [0u8; 25];
    buf[0] = state.kind as u8;
    buf[1..17].copy_from_slice(&state.digest.to_bytes());
    buf[17..].copy_from_slice(&(key.len() as u64).to_le_bytes());
    xxh3_128_with_seed(&buf, xxh3_128(key) as u64)
}

/// `base` combined with an expiry cell.
fn with_cell(base: u128, cell: i64) -> u128 {
    xxh3_128_with_seed(&base.to_le_bytes(), cell as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::digest::Digest;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(bucket_of(b"foo"), 12182);
        assert_eq!(bucket_of(b"bar"), 5061);
        assert_eq!(bucket_of(b"{user1000}.following"), bucket_of(b"user1000"));
        assert_eq!(bucket_of(b"foo{}{bar}"), bucket_of(b"foo{}{bar}"));
        assert_ne!(bucket_of(b"foo{}{bar}"), bucket_of(b"bar"));
        assert_eq!(bucket_of(b"foo{{bar}}zap"), bucket_of(b"{bar"));
    }

    fn state(e: Option<i64>) -> KeyState {
        KeyState {
            kind: Kind::String,
            digest: Digest(42),
            expire_at_ms: e,
        }
    }

    fn one(grid: TtlGrid, keys: &[(&[u8], Option<i64>)]) -> BucketAgg {
        let mut agg = DbAggregates::new(grid);
        for (k, e) in keys {
            agg.add(k, 0, &state(*e));
        }
        agg.get(0)
    }

    #[test]
    fn expiries_within_tolerance_usually_agree_and_beyond_never() {
        let grid = TtlGrid::new(1000);
        let base = 1_700_000_000_000i64;
        for offset in 0..2000 {
            let e = base + offset;
            // 5 ms of drift: equal on at least one grid.
            assert!(one(grid, &[(b"k", Some(e))]).same_as(&one(grid, &[(b"k", Some(e + 5))])));
            // More than the tolerance: never equal.
            assert!(!one(grid, &[(b"k", Some(e))]).same_as(&one(grid, &[(b"k", Some(e + 1001))])));
            assert!(!one(grid, &[(b"k", Some(e))]).same_as(&one(grid, &[(b"k", None)])));
        }
    }

    #[test]
    fn order_does_not_matter_and_keys_do() {
        let grid = TtlGrid::new(1000);
        let a = one(grid, &[(b"x", None), (b"y", Some(5000))]);
        let b = one(grid, &[(b"y", Some(5000)), (b"x", None)]);
        assert!(a.same_as(&b));
        let c = one(grid, &[(b"x", None), (b"z", Some(5000))]);
        assert!(!a.same_as(&c));
        let d = one(grid, &[(b"x", None)]);
        assert!(!a.same_as(&d));
    }
}
