//! A big value of an `.rdb` file as Chunks, one chunk in memory at a time.
//!
//! The file reader skipped the value and noted where it is (`rdb::reader::BigValue`); the
//! writer opens the file there and reads the value element by element
//! (`rdb::elements::ElementReader`), grouping the elements into the same byte-bounded
//! [`Chunk`]s a live source's big keys are read in, so `copy.rs` writes both the same way.
//! Blocking file reads: the caller runs [`FileChunks::next`] off the async threads.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;

use super::{Chunk, Kind};
use crate::rdb::elements::{Element, ElementReader};
use crate::rdb::reader::BigValue;
use crate::rdb::types;
use crate::report::escape_key;

/// The kind of chunks a value of type byte `t` is copied in (`None`: never read by elements).
pub fn kind_of(t: u8) -> Option<Kind> {
    Some(match t {
        types::STRING => Kind::String,
        types::LIST | types::LIST_ZIPLIST | types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            Kind::List
        }
        types::SET | types::SET_INTSET | types::SET_LISTPACK => Kind::Set,
        types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => Kind::ZSet,
        types::HASH | types::HASH_ZIPMAP | types::HASH_ZIPLIST | types::HASH_LISTPACK => {
            Kind::Hash
        }
        _ => return None,
    })
}

/// One big value of a file, read in chunks of about `budget` bytes.
pub struct FileChunks {
    elements: ElementReader<BufReader<File>>,
    kind: Kind,
    budget: usize,
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
            anyhow::bail!("{what}: internal error: type {} is not read in chunks", value.type_byte);
        };
        let mut file = File::open(path).map_err(|e| anyhow::anyhow!("{what}: cannot open the file: {e}"))?;
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
            what,
        })
    }

    /// The next chunk, or `None` after the last.
    pub fn next(&mut self) -> anyhow::Result<Option<Chunk>> {
        let mut chunk = match self.kind {
            Kind::String => Chunk::String(Bytes::new()),
            Kind::List => Chunk::List(Vec::new()),
            Kind::Set => Chunk::Set(Vec::new()),
            Kind::ZSet => Chunk::ZSet(Vec::new()),
            Kind::Hash => Chunk::Hash(Vec::new()),
            Kind::Stream => anyhow::bail!("{}: internal error: a stream chunk", self.what),
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
            size += 8 + push(&mut chunk, element).ok_or_else(|| {
                anyhow::anyhow!("{}: internal error: an element of another type", self.what)
            })?;
            if matches!(chunk, Chunk::String(_)) {
                // One piece per chunk: a string piece is already sized to the budget.
                break;
            }
        }
        Ok((!is_empty(&chunk)).then_some(chunk))
    }
}

/// Adds `e` to `chunk`; its size, or `None` when it does not belong there.
fn push(chunk: &mut Chunk, e: Element) -> Option<usize> {
    let b = Bytes::from;
    Some(match (chunk, e) {
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
        _ => return None,
    })
}

fn is_empty(chunk: &Chunk) -> bool {
    match chunk {
        Chunk::String(s) => s.is_empty(),
        Chunk::List(v) | Chunk::Set(v) => v.is_empty(),
        Chunk::ZSet(v) => v.is_empty(),
        Chunk::Hash(v) => v.is_empty(),
        _ => true,
    }
}
