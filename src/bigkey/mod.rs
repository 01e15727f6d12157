//! Big keys: values too large for one `DUMP`/`RESTORE`, moved element by element.
//!
//! One `DUMP` of a 1M-field hash blocks a production source for ~0.9 s and produces a 66 MB
//! payload that a target with `proto-max-bulk-len 16mb` refuses; holding it costs memory in
//! proportion to the value. A key over `--big-key-bytes` is therefore never DUMPed: it is read in
//! byte-bounded chunks (each source command touches at most a chunk's worth of elements), the
//! chunks are written into a temporary key in the same hash slot on the target, and one
//! `MULTI / RENAME / PEXPIREAT / EXEC` makes the key appear whole or not at all.
//!
//! # Layers
//! ```text
//!  mod.rs    the shared shape: Kind, Chunk (what travels), stream metadata
//!  read.rs   source → Chunks: GETRANGE / LRANGE / SSCAN / ZSCAN / HSCAN / XRANGE + XINFO/XPENDING,
//!            each reply bounded in bytes (used by the copy and by verify, never DUMP)
//!  write.rs  Chunks → temporary key in the same slot → MULTI RENAME + expiry EXEC on the target
//!  size.rs   which keys are big: MEMORY USAGE (4.0+), else type lengths (3.2)
//!  file.rs   an `.rdb` file's big value → Chunks, read element by element from its offset
//!  packed_string.rs  a big string's chunks → one LZF-compressed RESTORE payload (a string may be
//!            longer than the target's proto-max-bulk-len, which APPEND can never build)
//! ```
//! The copy of one big key, source to target with its expiry and retries, is the writer's
//! (`sink/chunked.rs`); verify reads chunks with `read.rs` too.
//!
//! May call: `endpoint` (connections; a cluster source's routing), `read` (expiries, clocks),
//! `rdb` (a file's values, stream IDs), `display`, `retry`. Not `sink`, `source` or `verify`:
//! they call it.
//! Scores travel as `f64` parsed from the 17-significant-digit text Redis prints, which round
//! trips exactly; `±inf` included.

pub mod file;
pub mod packed_string;
pub mod read;
pub mod size;
pub mod write;

use bytes::Bytes;

pub use crate::rdb::value::StreamId;

/// The Redis type of a big key (module types are never chunked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A string, read and written by byte ranges.
    String,
    /// A list, in order.
    List,
    /// A set.
    Set,
    /// A sorted set, scores exact.
    ZSet,
    /// A hash.
    Hash,
    /// A stream: entries, then its metadata, groups and pending entries.
    Stream,
}

impl Kind {
    /// The kind for a `TYPE` reply (`None` for `none` and module types).
    pub fn from_type_name(name: &[u8]) -> Option<Kind> {
        Some(match name {
            b"string" => Kind::String,
            b"list" => Kind::List,
            b"set" => Kind::Set,
            b"zset" => Kind::ZSet,
            b"hash" => Kind::Hash,
            b"stream" => Kind::Stream,
            _ => return None,
        })
    }

    /// The name `TYPE` prints.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
        }
    }
}

/// One piece of a big value, bounded in bytes, in the order it must be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// The next bytes of a string (appended in order).
    String(Bytes),
    /// The next elements of a list (appended in order).
    List(Vec<Bytes>),
    /// Some members of a set.
    Set(Vec<Bytes>),
    /// Some members of a sorted set with their exact scores.
    ZSet(Vec<(Bytes, f64)>),
    /// Some fields of a hash.
    Hash(Vec<(Bytes, Bytes)>),
    /// The next entries of a stream, in ID order.
    StreamEntries(Vec<StreamEntry>),
    /// A stream's metadata, after all its entries.
    StreamMeta(StreamMeta),
    /// One consumer group of a stream (after the metadata), without its pending entries.
    StreamGroup(StreamGroup),
    /// Pending entries of the group named, after that group's chunk.
    StreamPending {
        /// The group these entries belong to.
        group: Bytes,
        /// The entries.
        entries: Vec<PendingEntry>,
    },
}

/// One stream entry: its ID and field/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Entry ID.
    pub id: StreamId,
    /// Field/value pairs, in order.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// What a stream knows besides its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamMeta {
    /// The last generated ID (`XSETID`).
    pub last_id: StreamId,
    /// Entries ever added (Redis 7.0+ sources; `None` on older ones).
    pub entries_added: Option<u64>,
    /// The highest deleted ID (Redis 7.0+ sources; `None` on older ones).
    pub max_deleted_id: Option<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamGroup {
    /// Group name.
    pub name: Bytes,
    /// Last delivered ID.
    pub last_delivered: StreamId,
    /// Entries read (Redis 7.0+ sources).
    pub entries_read: Option<u64>,
    /// Consumer names, including those with no pending entries.
    pub consumers: Vec<Bytes>,
    /// The consumers that have no pending entries (a target without `XGROUP CREATECONSUMER`,
    /// before 6.2, can only create consumers by claiming an entry for them).
    pub without_pending: Vec<Bytes>,
}

/// One pending entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// Entry ID.
    pub id: StreamId,
    /// Consumer that owns it.
    pub consumer: Bytes,
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
    /// Times it was delivered.
    pub delivery_count: u64,
}

impl Chunk {
    /// Bytes this chunk holds in memory (elements only), used to bound chunks and batches.
    pub fn size(&self) -> usize {
        fn pairs(v: &[(Bytes, Bytes)]) -> usize {
            v.iter().map(|(a, b)| a.len() + b.len()).sum()
        }
        match self {
            Chunk::String(b) => b.len(),
            Chunk::List(v) | Chunk::Set(v) => v.iter().map(|e| e.len()).sum(),
            Chunk::ZSet(v) => v.iter().map(|(m, _)| m.len() + 8).sum(),
            Chunk::Hash(v) => pairs(v),
            Chunk::StreamEntries(v) => v.iter().map(|e| 16 + pairs(&e.fields)).sum(),
            Chunk::StreamMeta(_) => 40,
            Chunk::StreamGroup(g) => {
                g.name.len() + 32 + g.consumers.iter().map(|c| c.len()).sum::<usize>()
            }
            Chunk::StreamPending { group, entries } => {
                group.len() + entries.iter().map(|e| 32 + e.consumer.len()).sum::<usize>()
            }
        }
    }
}

/// A key the reader found too big to DUMP, handed to a writer to copy in chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigKey {
    /// Source DB.
    pub db: u32,
    /// Key name.
    pub key: Bytes,
    /// Its type when probed.
    pub kind: Kind,
    /// Its estimated size in bytes (from the probe; for a file's value, its encoded bytes).
    pub estimate: u64,
}

/// Where a batch's big keys are read from.
#[derive(Clone)]
pub enum BigSource {
    /// The live source server (printed without credentials).
    Server(crate::endpoint::Server),
    /// A live cluster source: each key is read on the master of its slot, as this router
    /// (shared by the readers and writers of a job) knows it; a read answered MOVED or ASK
    /// refreshes it and reads the key again.
    Cluster(std::sync::Arc<tokio::sync::Mutex<crate::endpoint::route::Router>>),
    /// An `.rdb` file: `values[i]` locates the value of the batch's `big[i]`.
    File {
        /// The file.
        path: std::sync::Arc<std::path::PathBuf>,
        /// Where each value is, in the order of the batch's big keys.
        values: Vec<crate::rdb::reader::BigValue>,
    },
}

impl std::fmt::Debug for BigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BigSource::Server(s) => write!(f, "BigSource({})", s.endpoint),
            BigSource::Cluster(_) => write!(f, "BigSource(cluster)"),
            BigSource::File { path, values } => {
                write!(f, "BigSource({}, {} values)", path.display(), values.len())
            }
        }
    }
}
