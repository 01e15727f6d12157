//! The canonical digest of a value: one 128-bit number that is equal for two values exactly when
//! a client could not tell them apart.
//!
//! The same logical value is serialized differently by every Redis version (a 3.2 ziplist, a 7.0
//! listpack, a hashtable past a size threshold, scores as text or as binary doubles), so bytes of
//! DUMP payloads cannot be compared across versions. Instead each payload is decoded into a
//! [`Value`] and hashed in a canonical form, with xxh3-128:
//!
//! | type    | canonical form                                                               |
//! |---------|------------------------------------------------------------------------------|
//! | string  | its bytes                                                                    |
//! | list    | elements in order (length-prefixed)                                          |
//! | set     | order-independent: wrapping sum of each member's hash, plus the count        |
//! | hash    | order-independent: sum of hash(field → value [, field expiry]), plus count   |
//! | zset    | order-independent: sum of hash(member → score as an f64), plus count         |
//! | stream  | entries in ID order with their fields in order, last ID, and the consumer    |
//! |         | groups (order-independent) with last-delivered ID, pending entries (ID,      |
//! |         | consumer, delivery count; order-independent) and consumer names              |
//! | module  | module name and its raw serialized bytes                                     |
//!
//! Scores are compared as doubles: `1`, `1.0` and `1e0` (text in old RDBs, integers in
//! listpacks, binary doubles in RDB 8+) all decode to the same `f64`, and `-0` is folded into `0`
//! because `-0.0 == 0.0`. A sum of per-element hashes (not a XOR) is used for unordered
//! collections so that a duplicated element, if a decoder ever produced one, would still change
//! the digest. Every part is length-prefixed or fixed-width, so no two different values share a
//! byte stream. The type is part of the digest (each type hashes with its own seed).
//!
//! What is deliberately left out: the key's TTL (compared separately, within a tolerance, see
//! `bucket.rs` and `compare.rs`), idle times / LFU counters, stream consumer seen-times and
//! delivery times, and the stream metadata Redis 7 added (`entries-added`, `max-deleted-entry-id`,
//! `entries-read`): a 6.2 source does not have them and a 7.0 target computes them on `RESTORE`.

use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64, Xxh3};

use crate::rdb::value::{Stream, StreamGroup, StreamId, Value};

/// A 128-bit canonical digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub u128);

impl Digest {
    /// As 16 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }
}

/// What a key holds, as far as the comparison is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// A string.
    #[default]
    String = 0,
    /// A list.
    List = 1,
    /// A set.
    Set = 2,
    /// A hash.
    Hash = 3,
    /// A sorted set.
    ZSet = 4,
    /// A stream.
    Stream = 5,
    /// A module value (opaque).
    Module = 6,
    /// A payload ferry could not decode (its digest is of the raw payload body).
    Undecodable = 7,
}

impl Kind {
    /// How many kinds exist.
    pub const COUNT: usize = 8;

    /// Every kind, in report order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::String,
        Kind::List,
        Kind::Set,
        Kind::Hash,
        Kind::ZSet,
        Kind::Stream,
        Kind::Module,
        Kind::Undecodable,
    ];

    /// The kind of a decoded value.
    pub fn of(v: &Value) -> Kind {
        match v {
            Value::String(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
            Value::Hash(_) => Kind::Hash,
            Value::ZSet(_) => Kind::ZSet,
            Value::Stream(_) => Kind::Stream,
            Value::Module { .. } => Kind::Module,
        }
    }

    /// The name `TYPE` would print (`undecodable` for payloads ferry cannot read).
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::Hash => "hash",
            Kind::ZSet => "zset",
            Kind::Stream => "stream",
            Kind::Module => "module",
            Kind::Undecodable => "undecodable",
        }
    }

    /// Index into per-kind counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Seed that separates the digests of different types.
    pub(super) fn seed(self) -> u64 {
        0x6665_7272_7900_0000 | self as u64
    }
}

/// The canonical digest of a decoded value.
pub fn digest_value(v: &Value) -> Digest {
    let kind = Kind::of(v);
    let seed = kind.seed();
    Digest(match v {
        Value::String(s) => xxh3_128_with_seed(s, seed),
        Value::List(items) => {
            // The count last, so that a list read in chunks (`chunk_digest.rs`) hashes the same
            // byte stream without knowing its length first.
            let mut h = Xxh3::with_seed(seed);
            for item in items {
                list_item(&mut h, item);
            }
            h.update(&(items.len() as u64).to_le_bytes());
            h.digest128()
        }
        Value::Set(members) => {
            let sum = members
                .iter()
                .fold(0u128, |acc, m| acc.wrapping_add(element(m)));
            finish_unordered(seed, sum, members.len())
        }
        Value::Hash(fields) => {
            let sum = fields.iter().fold(0u128, |acc, f| {
                let mut h = pair(&f.field, &f.value);
                if let Some(t) = f.expire_at_ms {
                    h = h.wrapping_add(xxh3_128_with_seed(&t.to_le_bytes(), h as u64));
                }
                acc.wrapping_add(h)
            });
            finish_unordered(seed, sum, fields.len())
        }
        Value::ZSet(members) => {
            let sum = members.iter().fold(0u128, |acc, (m, score)| {
                acc.wrapping_add(pair(m, &canonical_score(*score).to_le_bytes()))
            });
            finish_unordered(seed, sum, members.len())
        }
        Value::Stream(s) => stream_digest(s, seed),
        Value::Module { name, raw } => {
            let mut h = Xxh3::with_seed(seed);
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(raw);
            h.digest128()
        }
    })
}

/// The digest of a payload that could not be decoded: its value bytes (without the version
/// footer, which differs between servers for the same value).
pub fn digest_raw_payload(payload: &[u8]) -> Digest {
    let body = payload
        .len()
        .checked_sub(crate::rdb::payload::FOOTER_LEN)
        .map_or(payload, |end| &payload[..end]);
    Digest(xxh3_128_with_seed(body, Kind::Undecodable.seed()))
}

/// The bits of a score, with every representation of the same double made equal.
pub fn canonical_score(score: f64) -> u64 {
    if score == 0.0 {
        0 // +0 and -0
    } else if score.is_nan() {
        f64::NAN.to_bits()
    } else {
        score.to_bits()
    }
}

/// Hash of one member of an unordered collection.
pub(super) fn element(bytes: &[u8]) -> u128 {
    xxh3_128_with_seed(bytes, 0x5e7)
}

/// Hash of a (name, value) pair of an unordered collection: the value hashed with a seed derived
/// from the name, so `(a, b)` and `(b, a)` differ.
pub(super) fn pair(name: &[u8], value: &[u8]) -> u128 {
    xxh3_128_with_seed(value, xxh3_64(name))
}

pub(super) fn finish_unordered(seed: u64, sum: u128, count: usize) -> u128 {
    let mut buf = [0u8; 24];
    buf[..16].copy_from_slice(&sum.to_le_bytes());
    buf[16..].copy_from_slice(&(count as u64).to_le_bytes());
    xxh3_128_with_seed(&buf, seed)
}

pub(super) fn id_bytes(h: &mut Xxh3, id: StreamId) {
    h.update(&id.ms.to_le_bytes());
    h.update(&id.seq.to_le_bytes());
}

/// One list element: length-prefixed.
pub(super) fn list_item(h: &mut Xxh3, item: &[u8]) {
    h.update(&(item.len() as u64).to_le_bytes());
    h.update(item);
}

/// One stream entry: its ID, then its fields length-prefixed, in order.
pub(super) fn stream_entry<'a>(
    h: &mut Xxh3,
    id: StreamId,
    fields: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) {
    id_bytes(h, id);
    h.update(&(fields.len() as u64).to_le_bytes());
    for (f, v) in fields {
        list_item(h, f);
        list_item(h, v);
    }
}

/// Ends a stream's digest: `h` has its entries; then their count (last, so that entries read in
/// chunks hash the same stream), the last ID and the groups (an order-independent sum).
pub(super) fn finish_stream(
    mut h: Xxh3,
    entries: u64,
    last_id: StreamId,
    groups: u128,
    group_count: u64,
) -> u128 {
    h.update(&entries.to_le_bytes());
    id_bytes(&mut h, last_id);
    h.update(&groups.to_le_bytes());
    h.update(&group_count.to_le_bytes());
    h.digest128()
}

fn stream_digest(s: &Stream, seed: u64) -> u128 {
    let mut h = Xxh3::with_seed(seed);
    for (id, fields) in &s.entries {
        stream_entry(
            &mut h,
            *id,
            fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())),
        );
    }
    let groups = s
        .groups
        .iter()
        .fold(0u128, |acc, g| acc.wrapping_add(group_digest(g)));
    finish_stream(
        h,
        s.entries.len() as u64,
        s.last_id,
        groups,
        s.groups.len() as u64,
    )
}

/// Hash of one pending entry (order-independent within its group).
pub(super) fn pending_hash(id: StreamId, consumer: &[u8], delivery_count: u64) -> u128 {
    let mut p = Xxh3::with_seed(0x70);
    id_bytes(&mut p, id);
    p.update(&delivery_count.to_le_bytes());
    p.update(consumer);
    p.digest128()
}

/// A group's parts as the digest sees them; the sums are order-independent.
pub(super) struct GroupParts<'a> {
    pub name: &'a [u8],
    pub last_delivered: StreamId,
    pub pending_sum: u128,
    pub pending_count: u64,
    pub consumers_sum: u128,
    pub consumers_count: u64,
}

/// Hash of one group.
pub(super) fn group_hash(g: &GroupParts<'_>) -> u128 {
    let mut h = Xxh3::with_seed(0x67);
    h.update(&(g.name.len() as u64).to_le_bytes());
    h.update(g.name);
    id_bytes(&mut h, g.last_delivered);
    h.update(&g.pending_sum.to_le_bytes());
    h.update(&g.pending_count.to_le_bytes());
    h.update(&g.consumers_sum.to_le_bytes());
    h.update(&g.consumers_count.to_le_bytes());
    h.digest128()
}

fn group_digest(g: &StreamGroup) -> u128 {
    group_hash(&GroupParts {
        name: &g.name,
        last_delivered: g.last_delivered,
        pending_sum: g.pending.iter().fold(0u128, |acc, (id, consumer, count)| {
            acc.wrapping_add(pending_hash(*id, consumer, *count))
        }),
        pending_count: g.pending.len() as u64,
        consumers_sum: g
            .consumers
            .iter()
            .fold(0u128, |acc, c| acc.wrapping_add(element(c))),
        consumers_count: g.consumers.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::HashField;
    use proptest::prelude::*;

    fn bytes_vec() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..24)
    }

    fn unique(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        v.sort();
        v.dedup();
        v
    }

    /// A permutation of `0..n` from a seed (Fisher–Yates with a tiny LCG).
    fn permute<T: Clone>(items: &[T], mut seed: u64) -> Vec<T> {
        let mut out = items.to_vec();
        for i in (1..out.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            out.swap(i, j);
        }
        out
    }

    proptest! {
        #[test]
        fn sets_ignore_order(members in bytes_vec(), seed in any::<u64>()) {
            let members = unique(members);
            let a = Value::Set(members.clone());
            let b = Value::Set(permute(&members, seed));
            prop_assert_eq!(digest_value(&a), digest_value(&b));
        }

        #[test]
        fn hashes_ignore_order(fields in bytes_vec(), seed in any::<u64>()) {
            let fields: Vec<HashField> = unique(fields)
                .into_iter()
                .enumerate()
                .map(|(i, f)| HashField { value: format!("v{i}").into_bytes(), field: f, expire_at_ms: None })
                .collect();
            let a = Value::Hash(fields.clone());
            let b = Value::Hash(permute(&fields, seed));
            prop_assert_eq!(digest_value(&a), digest_value(&b));
        }

        #[test]
        fn zsets_ignore_order(members in bytes_vec(), seed in any::<u64>()) {
            let members: Vec<(Vec<u8>, f64)> = unique(members)
                .into_iter()
                .enumerate()
                .map(|(i, m)| (m, i as f64 * 0.5 - 3.0))
                .collect();
            let a = Value::ZSet(members.clone());
            let b = Value::ZSet(permute(&members, seed));
            prop_assert_eq!(digest_value(&a), digest_value(&b));
        }

        #[test]
        fn lists_keep_order(items in bytes_vec(), seed in any::<u64>()) {
            let shuffled = permute(&items, seed);
            let a = Value::List(items.clone());
            let b = Value::List(shuffled.clone());
            prop_assert_eq!(digest_value(&a) == digest_value(&b), items == shuffled);
        }

        #[test]
        fn one_changed_element_changes_the_digest(members in bytes_vec(), extra in prop::collection::vec(any::<u8>(), 0..12)) {
            let members = unique(members);
            prop_assume!(!members.contains(&extra));
            let mut more = members.clone();
            more.push(extra.clone());
            prop_assert_ne!(digest_value(&Value::Set(members.clone())), digest_value(&Value::Set(more)));
            if let Some(first) = members.first() {
                let mut changed = members.clone();
                changed[0] = extra;
                prop_assert_ne!(digest_value(&Value::Set(members.clone())), digest_value(&Value::Set(changed)));
                let mut list = members.clone();
                list[0] = [first.as_slice(), b"x"].concat();
                prop_assert_ne!(digest_value(&Value::List(members.clone())), digest_value(&Value::List(list)));
            }
        }
    }

    #[test]
    fn scores_compare_as_doubles() {
        let parse = |s: &str| crate::rdb::score::parse_score_text(s.as_bytes());
        let one = [parse("1"), parse("1.0"), parse("1e0"), Some(1.0)];
        let digests: Vec<Digest> = one
            .iter()
            .map(|s| digest_value(&Value::ZSet(vec![(b"m".to_vec(), s.unwrap_or(f64::NAN))])))
            .collect();
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
        let zero = digest_value(&Value::ZSet(vec![(b"m".to_vec(), 0.0)]));
        let neg_zero = digest_value(&Value::ZSet(vec![(b"m".to_vec(), -0.0)]));
        assert_eq!(zero, neg_zero);
        let other = digest_value(&Value::ZSet(vec![(b"m".to_vec(), 1.000_000_1)]));
        assert_ne!(digests[0], other);
    }

    #[test]
    fn types_and_pairs_are_distinguished() {
        let s = Value::Set(vec![b"a".to_vec(), b"b".to_vec()]);
        let l = Value::List(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_ne!(digest_value(&s), digest_value(&l));
        let h1 = Value::Hash(vec![HashField {
            field: b"a".to_vec(),
            value: b"b".to_vec(),
            expire_at_ms: None,
        }]);
        let h2 = Value::Hash(vec![HashField {
            field: b"b".to_vec(),
            value: b"a".to_vec(),
            expire_at_ms: None,
        }]);
        assert_ne!(digest_value(&h1), digest_value(&h2));
        let l1 = Value::List(vec![b"ab".to_vec(), b"c".to_vec()]);
        let l2 = Value::List(vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_ne!(digest_value(&l1), digest_value(&l2));
        assert_ne!(
            digest_value(&Value::String(Vec::new())),
            digest_value(&Value::List(Vec::new()))
        );
    }

    #[test]
    fn stream_groups_and_pending_count() {
        let id = |ms, seq| StreamId { ms, seq };
        let base = Stream {
            entries: vec![(id(1, 0), vec![(b"f".to_vec(), b"v".to_vec())])],
            last_id: id(1, 0),
            groups: vec![
                StreamGroup {
                    name: b"g1".to_vec(),
                    last_delivered: id(1, 0),
                    pending: vec![(id(1, 0), b"alice".to_vec(), 1)],
                    consumers: vec![b"alice".to_vec()],
                },
                StreamGroup {
                    name: b"g2".to_vec(),
                    ..StreamGroup::default()
                },
            ],
        };
        let d = |s: &Stream| digest_value(&Value::Stream(Box::new(s.clone())));
        let mut swapped = base.clone();
        swapped.groups.reverse();
        assert_eq!(d(&base), d(&swapped));
        let mut more = base.clone();
        more.groups[0].pending[0].2 = 2;
        assert_ne!(d(&base), d(&more));
        let mut last = base.clone();
        last.last_id = id(2, 0);
        assert_ne!(d(&base), d(&last));
        let mut entry = base.clone();
        entry.entries[0].1[0].1 = b"w".to_vec();
        assert_ne!(d(&base), d(&entry));
    }
}
