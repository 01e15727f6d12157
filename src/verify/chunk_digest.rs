//! The canonical digest of a big key folded from its chunks, one at a time.
//!
//! A key over `--big-key-bytes` is never DUMPed by verification: it is read with the big-key
//! reader (`bigkey/read.rs`) and its digest built here, chunk by chunk, so memory stays bounded
//! by one chunk. The result equals [`digest_value`](super::digest::digest_value) of the same
//! value, so a key read in chunks on one side and DUMPed on the other compares equal when it is:
//! ordered types hash the same byte stream (their counts come last, see `digest.rs`), unordered
//! ones sum the same per-element hashes in whatever order `SCAN` returns them.
//!
//! Not seen by chunked reads: hash field expiries (Redis 7.4+ `HPEXPIRE`), which `HSCAN` does
//! not return; a hash with field TTLs read in chunks digests as if it had none.

use xxhash_rust::xxh3::Xxh3;

use super::digest::{
    canonical_score, element, finish_stream, finish_unordered, group_hash, list_item, pair,
    pending_hash, stream_entry, Digest, GroupParts, Kind,
};
use crate::bigkey::{self, Chunk, StreamId};

/// A stream's group being folded: its parts, sums still open.
struct OpenGroup {
    name: bytes::Bytes,
    last_delivered: StreamId,
    pending_sum: u128,
    pending_count: u64,
    consumers_sum: u128,
    consumers_count: u64,
}

impl OpenGroup {
    fn hash(&self) -> u128 {
        group_hash(&GroupParts {
            name: &self.name,
            last_delivered: self.last_delivered,
            pending_sum: self.pending_sum,
            pending_count: self.pending_count,
            consumers_sum: self.consumers_sum,
            consumers_count: self.consumers_count,
        })
    }
}

/// The running state of one key's digest.
enum Acc {
    /// A string, list or stream's entries: the hashed byte stream so far.
    Ordered(Box<Xxh3>),
    /// A set, hash or zset: the sum of element hashes so far.
    Unordered(u128),
}

/// Folds a big key's chunks into its canonical digest.
pub struct ChunkDigest {
    kind: Kind,
    acc: Acc,
    /// Elements folded (list items, members, fields, stream entries).
    count: u64,
    /// Streams: the last ID, the groups folded and the one open.
    last_id: StreamId,
    groups_sum: u128,
    groups_count: u64,
    group: Option<OpenGroup>,
}

impl ChunkDigest {
    /// An empty digest of a key of this kind.
    pub fn new(kind: bigkey::Kind) -> ChunkDigest {
        let kind = match kind {
            bigkey::Kind::String => Kind::String,
            bigkey::Kind::List => Kind::List,
            bigkey::Kind::Set => Kind::Set,
            bigkey::Kind::ZSet => Kind::ZSet,
            bigkey::Kind::Hash => Kind::Hash,
            bigkey::Kind::Stream => Kind::Stream,
        };
        let acc = match kind {
            Kind::Set | Kind::Hash | Kind::ZSet => Acc::Unordered(0),
            _ => Acc::Ordered(Box::new(Xxh3::with_seed(kind.seed()))),
        };
        ChunkDigest {
            kind,
            acc,
            count: 0,
            last_id: StreamId::default(),
            groups_sum: 0,
            groups_count: 0,
            group: None,
        }
    }

    /// The kind, as verification names it.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Folds the next chunk in (chunks of another type than the key's are ignored: the reader
    /// never yields them).
    pub fn add(&mut self, chunk: &Chunk) {
        match (&mut self.acc, chunk) {
            (Acc::Ordered(h), Chunk::String(b)) => h.update(b),
            (Acc::Ordered(h), Chunk::List(items)) => {
                for i in items {
                    list_item(h, i);
                }
                self.count += items.len() as u64;
            }
            (Acc::Ordered(h), Chunk::StreamEntries(entries)) => {
                for e in entries {
                    let fields = e.fields.iter().map(|(f, v)| (&f[..], &v[..]));
                    stream_entry(h, e.id, fields);
                }
                self.count += entries.len() as u64;
            }
            (Acc::Unordered(sum), Chunk::Set(members)) => {
                for m in members {
                    *sum = sum.wrapping_add(element(m));
                }
                self.count += members.len() as u64;
            }
            (Acc::Unordered(sum), Chunk::Hash(fields)) => {
                for (f, v) in fields {
                    *sum = sum.wrapping_add(pair(f, v));
                }
                self.count += fields.len() as u64;
            }
            (Acc::Unordered(sum), Chunk::ZSet(members)) => {
                for (m, score) in members {
                    *sum = sum.wrapping_add(pair(m, &canonical_score(*score).to_le_bytes()));
                }
                self.count += members.len() as u64;
            }
            (_, Chunk::StreamMeta(meta)) => self.last_id = meta.last_id,
            (_, Chunk::StreamGroup(g)) => {
                self.close_group();
                self.group = Some(OpenGroup {
                    name: g.name.clone(),
                    last_delivered: g.last_delivered,
                    pending_sum: 0,
                    pending_count: 0,
                    consumers_sum: g
                        .consumers
                        .iter()
                        .fold(0u128, |acc, c| acc.wrapping_add(element(c))),
                    consumers_count: g.consumers.len() as u64,
                });
            }
            (_, Chunk::StreamPending { entries, .. }) => {
                if let Some(g) = &mut self.group {
                    for e in entries {
                        let h = pending_hash(e.id, &e.consumer, e.delivery_count);
                        g.pending_sum = g.pending_sum.wrapping_add(h);
                    }
                    g.pending_count += entries.len() as u64;
                }
            }
            _ => {}
        }
    }

    fn close_group(&mut self) {
        if let Some(g) = self.group.take() {
            self.groups_sum = self.groups_sum.wrapping_add(g.hash());
            self.groups_count += 1;
        }
    }

    /// The digest of everything folded in.
    pub fn finish(mut self) -> Digest {
        self.close_group();
        let seed = self.kind.seed();
        Digest(match self.acc {
            Acc::Ordered(h) => match self.kind {
                Kind::String => h.digest128(),
                Kind::Stream => finish_stream(
                    *h,
                    self.count,
                    self.last_id,
                    self.groups_sum,
                    self.groups_count,
                ),
                _ => {
                    let mut h = *h;
                    h.update(&self.count.to_le_bytes());
                    h.digest128()
                }
            },
            Acc::Unordered(sum) => finish_unordered(seed, sum, self.count as usize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bigkey::{PendingEntry, StreamEntry, StreamGroup, StreamMeta};
    use crate::rdb::value::{self, HashField, Value};
    use crate::verify::digest::digest_value;
    use bytes::Bytes;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    /// Folds `chunks` and checks the result against the DUMP path's digest of `v`.
    fn same(kind: bigkey::Kind, chunks: &[Chunk], v: &Value) {
        let mut d = ChunkDigest::new(kind);
        for c in chunks {
            d.add(c);
        }
        assert_eq!(d.finish(), digest_value(v), "{kind:?}");
    }

    #[test]
    fn chunks_digest_as_the_whole_value() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let parts: Vec<Chunk> = big.chunks(7_777).map(|c| Chunk::String(b(c))).collect();
        same(bigkey::Kind::String, &parts, &Value::String(big));

        let items: Vec<Vec<u8>> = (0..1000).map(|i| format!("i{i}").into_bytes()).collect();
        let chunks: Vec<Chunk> = items
            .chunks(33)
            .map(|c| Chunk::List(c.iter().map(|i| b(i)).collect()))
            .collect();
        same(bigkey::Kind::List, &chunks, &Value::List(items.clone()));

        // Unordered: chunks in another order than the value lists them.
        let mut rev = items.clone();
        rev.reverse();
        let chunks: Vec<Chunk> = rev
            .chunks(50)
            .map(|c| Chunk::Set(c.iter().map(|i| b(i)).collect()))
            .collect();
        same(bigkey::Kind::Set, &chunks, &Value::Set(items.clone()));

        let fields: Vec<HashField> = items
            .iter()
            .map(|i| HashField {
                field: i.clone(),
                value: [i.as_slice(), b"v"].concat(),
                expire_at_ms: None,
            })
            .collect();
        let chunks: Vec<Chunk> = fields
            .chunks(64)
            .rev()
            .map(|c| Chunk::Hash(c.iter().map(|f| (b(&f.field), b(&f.value))).collect()))
            .collect();
        same(bigkey::Kind::Hash, &chunks, &Value::Hash(fields));

        let members: Vec<(Vec<u8>, f64)> = items
            .iter()
            .enumerate()
            .map(|(n, i)| (i.clone(), [f64::INFINITY, -0.0, 0.1, n as f64 / 3.0][n % 4]))
            .collect();
        let chunks: Vec<Chunk> = members
            .chunks(10)
            .map(|c| {
                Chunk::ZSet(
                    c.iter()
                        .map(|(m, s)| (b(m), if *s == 0.0 { 0.0 } else { *s }))
                        .collect(),
                )
            })
            .collect();
        same(bigkey::Kind::ZSet, &chunks, &Value::ZSet(members));
    }

    #[test]
    fn stream_chunks_digest_as_the_whole_stream() {
        let id = |ms, seq| StreamId { ms, seq };
        let entries: Vec<value::StreamEntry> = (0..100)
            .map(|i| {
                (
                    id(i, 1),
                    vec![(b"f".to_vec(), format!("v{i}").into_bytes())],
                )
            })
            .collect();
        let groups = vec![
            value::StreamGroup {
                name: b"g1".to_vec(),
                last_delivered: id(50, 1),
                pending: vec![
                    (id(3, 1), b"alice".to_vec(), 2),
                    (id(4, 1), b"bob".to_vec(), 1),
                ],
                consumers: vec![b"alice".to_vec(), b"bob".to_vec(), b"idle".to_vec()],
            },
            value::StreamGroup {
                name: b"g2".to_vec(),
                last_delivered: id(0, 0),
                pending: vec![],
                consumers: vec![],
            },
        ];
        let whole = Value::Stream(Box::new(value::Stream {
            entries: entries.clone(),
            last_id: id(200, 0),
            groups: groups.clone(),
        }));
        let mut chunks: Vec<Chunk> = entries
            .chunks(7)
            .map(|c| {
                Chunk::StreamEntries(
                    c.iter()
                        .map(|(i, f)| StreamEntry {
                            id: *i,
                            fields: f.iter().map(|(a, v)| (b(a), b(v))).collect(),
                        })
                        .collect(),
                )
            })
            .collect();
        chunks.push(Chunk::StreamMeta(StreamMeta {
            last_id: id(200, 0),
            entries_added: Some(100),
            max_deleted_id: None,
        }));
        // Groups in the other order; pending entries in two pages.
        for g in groups.iter().rev() {
            chunks.push(Chunk::StreamGroup(StreamGroup {
                name: b(&g.name),
                last_delivered: g.last_delivered,
                entries_read: None,
                consumers: g.consumers.iter().map(|c| b(c)).collect(),
                without_pending: Vec::new(),
            }));
            for page in g.pending.chunks(1) {
                chunks.push(Chunk::StreamPending {
                    group: b(&g.name),
                    entries: page
                        .iter()
                        .map(|(i, c, n)| PendingEntry {
                            id: *i,
                            consumer: b(c),
                            idle_ms: 5,
                            delivery_count: *n,
                        })
                        .collect(),
                });
            }
        }
        same(bigkey::Kind::Stream, &chunks, &whole);
        // One delivery count more: another digest.
        if let Some(Chunk::StreamPending { entries, .. }) = chunks.last_mut() {
            entries[0].delivery_count += 1;
        }
        let mut d = ChunkDigest::new(bigkey::Kind::Stream);
        chunks.iter().for_each(|c| d.add(c));
        assert_ne!(d.finish(), digest_value(&whole));
    }
}
