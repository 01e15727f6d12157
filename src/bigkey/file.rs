//! A big value of an `.rdb` file as Chunks, one chunk in memory at a time.
//!
//! The file reader skipped the value and noted where it is (`rdb::reader::BigValue`); the
//! writer opens the file there and reads the value element by element
//! (`rdb::elements::ElementReader`), grouping the elements into the same byte-bounded
//! [`Chunk`]s a live source's big keys are read in, so `sink/chunked.rs` writes both the same way.
//! Blocking file reads: the caller runs [`FileChunks::next_chunk`] off the async threads.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;

use super::{Chunk, Kind, PendingEntry, StreamEntry, StreamGroup, StreamMeta};
use crate::display::escape_key;
use crate::rdb::elements::{Element, ElementReader};
use crate::rdb::reader::BigValue;
use crate::rdb::types;

/// The kind of chunks a value of type byte `t` is copied in (`None`: never read by elements).
pub fn kind_of(t: u8) -> Option<Kind> {
    Some(match t {
        types::STRING => Kind::String,
        types::LIST | types::LIST_ZIPLIST | types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            Kind::List
        }
        types::SET | types::SET_INTSET | types::SET_LISTPACK => Kind::Set,
        types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => Kind::ZSet,
        types::HASH | types::HASH_ZIPMAP | types::HASH_ZIPLIST | types::HASH_LISTPACK => Kind::Hash,
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            Kind::Stream
        }
        _ => return None,
    })
}

/// One big value of a file, read in chunks of about `budget` bytes.
pub struct FileChunks {
    elements: ElementReader<BufReader<File>>,
    kind: Kind,
    budget: usize,
    /// Chunks made ahead (a stream group's chunks), handed out first.
    ready: VecDeque<Chunk>,
    /// For messages: the file and the key.
    what: String,
}

impl FileChunks {
    /// Opens `path` at `value`'s offset.
    pub fn open(path: &Path, value: &BigValue, budget: usize) -> anyhow::Result<FileChunks> {
        let what = format!(
            "--rdb {}: big key {} (db {}) at offset {}",
            path.display(),
            escape_key(&value.key),
            value.db,
            value.offset
        );
        let Some(kind) = kind_of(value.type_byte) else {
            anyhow::bail!(
                "{what}: internal error: type {} is not read in chunks",
                value.type_byte
            );
        };
        let mut file =
            File::open(path).map_err(|e| anyhow::anyhow!("{what}: cannot open the file: {e}"))?;
        file.seek(SeekFrom::Start(value.offset))
            .map_err(|e| anyhow::anyhow!("{what}: cannot seek there: {e}"))?;
        let elements = ElementReader::new(
            BufReader::with_capacity(256 * 1024, file),
            value.type_byte,
            value.offset,
            value.len,
        )
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(FileChunks {
            elements,
            kind,
            budget: budget.max(1),
            ready: VecDeque::new(),
            what,
        })
    }

    /// The next chunk, or `None` after the last.
    pub fn next_chunk(&mut self) -> anyhow::Result<Option<Chunk>> {
        if let Some(c) = self.ready.pop_front() {
            return Ok(Some(c));
        }
        let mut chunk = match self.kind {
            Kind::String => Chunk::String(Bytes::new()),
            Kind::List => Chunk::List(Vec::new()),
            Kind::Set => Chunk::Set(Vec::new()),
            Kind::ZSet => Chunk::ZSet(Vec::new()),
            Kind::Hash => Chunk::Hash(Vec::new()),
            Kind::Stream => Chunk::StreamEntries(Vec::new()),
        };
        let mut size = 0;
        while size < self.budget {
            let room = self.budget.saturating_sub(size);
            let element = self.elements.next(room).map_err(|e| {
                anyhow::anyhow!(
                    "{}: the file changed or is damaged there: {e}. Keys before it are written; \
                     copy the file again from the server and rerun",
                    self.what
                )
            })?;
            let Some(element) = element else { break };
            // Each element counts a little more than its bytes, so that a value of empty
            // members still makes chunks of a bounded number of arguments.
            match push(&mut chunk, element) {
                Ok(n) => size += 8 + n,
                Err(other) => {
                    // A stream's metadata or group: after the entries, in chunks of its own.
                    self.stream_part(other)?;
                    break;
                }
            }
            if matches!(chunk, Chunk::String(_)) {
                // One piece per chunk: a string piece is already sized to the budget.
                break;
            }
        }
        if is_empty(&chunk) {
            return Ok(self.ready.pop_front());
        }
        Ok(Some(chunk))
    }

    /// Queues the chunks of a stream's metadata or of one of its groups (its pending entries
    /// in chunks of about the budget).
    fn stream_part(&mut self, e: Element) -> anyhow::Result<()> {
        let g = match e {
            Element::StreamMeta { last_id, added } => {
                self.ready.push_back(Chunk::StreamMeta(StreamMeta {
                    last_id,
                    entries_added: added.map(|a| a.0),
                    max_deleted_id: added.map(|a| a.1),
                }));
                return Ok(());
            }
            Element::Group(g) => g,
            _ => anyhow::bail!("{}: internal error: an element of another type", self.what),
        };
        let name = Bytes::from(g.name);
        let claimed: std::collections::HashSet<&[u8]> = g
            .pending
            .iter()
            .filter_map(|p| p.consumer.as_deref())
            .collect();
        let without_pending = g
            .consumers
            .iter()
            .filter(|c| !claimed.contains(&c.name[..]))
            .map(|c| Bytes::from(c.name.clone()))
            .collect();
        self.ready.push_back(Chunk::StreamGroup(StreamGroup {
            name: name.clone(),
            last_delivered: g.last_delivered,
            entries_read: g.entries_read,
            consumers: g
                .consumers
                .into_iter()
                .map(|c| Bytes::from(c.name))
                .collect(),
            without_pending,
        }));
        let now = crate::read::clock::now_ms();
        let mut entries = Vec::new();
        let mut size = 0;
        for p in g.pending {
            let Some(consumer) = p.consumer else {
                anyhow::bail!(
                    "{}: pending entry {}-{} of group {} belongs to no consumer: the file is damaged",
                    self.what,
                    p.id.ms,
                    p.id.seq,
                    escape_key(&name)
                );
            };
            size += 32 + consumer.len();
            entries.push(PendingEntry {
                id: p.id,
                consumer: Bytes::from(consumer),
                // The file holds when it was delivered: idle since then.
                idle_ms: u64::try_from(now.saturating_sub(p.delivery_time)).unwrap_or(0),
                delivery_count: p.delivery_count,
            });
            if size >= self.budget {
                let group = name.clone();
                let entries = std::mem::take(&mut entries);
                self.ready
                    .push_back(Chunk::StreamPending { group, entries });
                size = 0;
            }
        }
        if !entries.is_empty() {
            self.ready.push_back(Chunk::StreamPending {
                group: name,
                entries,
            });
        }
        Ok(())
    }
}

/// Adds `e` to `chunk` and returns its size, or hands it back when it does not belong there.
fn push(chunk: &mut Chunk, e: Element) -> Result<usize, Element> {
    let b = Bytes::from;
    Ok(match (chunk, e) {
        (Chunk::String(s), Element::Bytes(v)) if s.is_empty() => {
            let n = v.len();
            *s = b(v);
            n
        }
        (Chunk::List(l) | Chunk::Set(l), Element::Member(m)) => {
            let n = m.len();
            l.push(b(m));
            n
        }
        (Chunk::ZSet(z), Element::Scored(m, s)) => {
            let n = m.len() + 8;
            z.push((b(m), s));
            n
        }
        (Chunk::Hash(h), Element::Field(f, v)) => {
            let n = f.len() + v.len();
            h.push((b(f), b(v)));
            n
        }
        (Chunk::StreamEntries(s), Element::Entry((id, fields))) => {
            let fields: Vec<(Bytes, Bytes)> =
                fields.into_iter().map(|(f, v)| (b(f), b(v))).collect();
            let n = 16 + fields.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>();
            s.push(StreamEntry { id, fields });
            n
        }
        (_, e) => return Err(e),
    })
}

fn is_empty(chunk: &Chunk) -> bool {
    match chunk {
        Chunk::String(s) => s.is_empty(),
        Chunk::List(v) | Chunk::Set(v) => v.is_empty(),
        Chunk::ZSet(v) => v.is_empty(),
        Chunk::Hash(v) => v.is_empty(),
        Chunk::StreamEntries(v) => v.is_empty(),
        _ => false,
    }
}
