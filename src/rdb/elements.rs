//! One big value of an `.rdb` file as a stream of elements, never held whole.
//!
//! The file reader (see [`reader`](super::reader)) does not build a DUMP payload for a value over
//! the big-value threshold: it only notes where the value starts and skips it. The copy then
//! opens the file at that offset and reads the value here, one element at a time: a string in
//! pieces of at most `max` bytes (LZF-compressed ones decompressed as they are read: an LZF
//! back-reference reaches at most 8 KiB back, so that much output is all the history kept), the
//! elements of plain lists, sets, sorted sets and hashes one by one, quicklist nodes one node at
//! a time. A value stored as one packed blob (a listpack hash, an intset, a ziplist zset…) is
//! bounded by the server's `*-max-*-entries` settings: that blob is read and decoded whole, then
//! handed out element by element.
//!
//! A stream is read one node (a listpack of at most `stream-node-max-bytes`) at a time, then its
//! metadata, then one consumer group at a time (a group's pending entries are held together:
//! their owners are only known from the consumers stored after them).
//!
//! Strings, lengths, scores, blobs and stream nodes and groups are read with the walker and
//! decoded with the same decoders the whole-value path uses ([`walk`](super::walk),
//! [`string`](super::string), [`score`](super::score), [`decode`](super::decode),
//! [`stream`](super::stream)); only the outer loops are streaming. Hashes with field expiries
//! and module values are not streamed (see [`streamable`]).

use std::collections::VecDeque;
use std::io::Read;

use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::length::{Len, ENC_LZF};
use super::stream::{self as stream_data, GroupData};
use super::types::{self, Flavor};
use super::value::{StreamEntry, StreamId, Value};
use super::walk::{self, RawInput};
use super::{decode, score, string};

/// Longest distance an LZF back-reference reaches (13 bits of offset, plus one).
const LZF_WINDOW: usize = 8192;

/// True when a value of type `t` can be read element by element (types 0–20 mean the same in
/// Redis and Valkey files).
pub fn streamable(t: u8) -> bool {
    matches!(
        t,
        types::STRING
            | types::LIST
            | types::SET
            | types::ZSET
            | types::ZSET_2
            | types::HASH
            | types::HASH_ZIPMAP
            | types::LIST_ZIPLIST
            | types::SET_INTSET
            | types::ZSET_ZIPLIST
            | types::HASH_ZIPLIST
            | types::LIST_QUICKLIST
            | types::HASH_LISTPACK
            | types::ZSET_LISTPACK
            | types::LIST_QUICKLIST_2
            | types::SET_LISTPACK
            | types::STREAM_LISTPACKS
            | types::STREAM_LISTPACKS_2
            | types::STREAM_LISTPACKS_3
    )
}

/// One piece of a value, in the order the value holds them.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// The next bytes of a string.
    Bytes(Vec<u8>),
    /// A list element or a set member.
    Member(Vec<u8>),
    /// A sorted set member and its score.
    Scored(Vec<u8>, f64),
    /// A hash field and its value.
    Field(Vec<u8>, Vec<u8>),
    /// A stream entry.
    Entry(StreamEntry),
    /// A stream's metadata, after its entries.
    StreamMeta {
        /// The last generated ID.
        last_id: StreamId,
        /// Entries ever added and the highest deleted ID (stream type 19+).
        added: Option<(u64, StreamId)>,
    },
    /// One consumer group of a stream, after the metadata.
    Group(GroupData),
}

/// A [`RawInput`] over the file from the value's offset: captures only the current element.
struct Input<R> {
    inner: R,
    offset: u64,
    /// Offset where the value ends: no length may claim more than is left of it.
    end: u64,
    out: Vec<u8>,
}

impl<R: Read> Input<R> {
    fn left(&self) -> u64 {
        self.end.saturating_sub(self.offset)
    }

    /// Reads exactly `n` bytes into `out` (appending).
    fn read_into(&mut self, n: u64, what: &'static str) -> Result<()> {
        if n > self.left() {
            return Err(RdbError::LengthPastEnd {
                offset: self.offset,
                len: n,
                remaining: self.left(),
                what,
            });
        }
        let old = self.out.len();
        // `n` is at most what is left of the value, which is in the file: it fits.
        self.out.resize(old + n as usize, 0);
        let dst = self.out.get_mut(old..).unwrap_or(&mut []);
        if let Err(e) = self.inner.read_exact(dst) {
            self.out.truncate(old);
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                RdbError::Truncated {
                    offset: self.offset,
                    expected: what.into(),
                }
            } else {
                RdbError::Io {
                    offset: self.offset,
                    source: e,
                }
            });
        }
        self.offset += n;
        Ok(())
    }

    /// Starts capturing a new element.
    fn clear(&mut self) {
        self.out.clear();
        if self.out.capacity() > 1 << 20 {
            self.out.shrink_to(1 << 16);
        }
    }
}

impl<R: Read> RawInput for Input<R> {
    fn byte(&mut self, what: &'static str) -> Result<u8> {
        self.read_into(1, what)?;
        self.out
            .last()
            .copied()
            .ok_or_else(|| RdbError::corrupt(self.offset, what, "no byte read"))
    }

    fn bytes(&mut self, n: u64, what: &'static str) -> Result<usize> {
        let start = self.out.len();
        self.read_into(n, what)?;
        Ok(start)
    }

    fn captured(&self) -> &[u8] {
        &self.out
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()> {
        if count.saturating_mul(min_size) > self.left() {
            return Err(RdbError::LengthPastEnd {
                offset: self.offset,
                len: count,
                remaining: self.left(),
                what,
            });
        }
        Ok(())
    }
}

/// Where the reader is in the value.
enum State {
    /// Nothing read yet.
    Start,
    /// A raw string: bytes left.
    Raw(u64),
    /// An LZF-compressed string.
    Lzf(Lzf),
    /// A plain list or set: elements left.
    Members(u64),
    /// A sorted set: members left, binary scores or text.
    ZSet(u64, bool),
    /// A plain hash: fields left.
    Hash(u64),
    /// A quicklist: nodes left, version 2 (listpack or plain nodes) or 1 (ziplists).
    Quicklist(u64, bool),
    /// A stream's nodes: nodes left (the metadata follows).
    StreamNodes(u64),
    /// A stream's consumer groups: groups left.
    StreamGroups(u64),
    /// Everything was read (what is left is in `pending`).
    Done,
}

/// Reads one value element by element; see the module docs.
pub struct ElementReader<R> {
    input: Input<R>,
    t: u8,
    state: State,
    /// Elements decoded from a blob, handed out before anything else is read.
    pending: VecDeque<Element>,
}

impl<R: Read> ElementReader<R> {
    /// A reader of the value of type `t` whose `len` encoded bytes start at file offset
    /// `offset`; `inner` must be positioned there. `t` must be [`streamable`].
    pub fn new(inner: R, t: u8, offset: u64, len: u64) -> Result<Self> {
        if !streamable(t) {
            return Err(RdbError::Unsupported {
                offset,
                what: format!(
                    "a {} value cannot be read element by element",
                    types::type_name(t, Flavor::Redis)
                ),
            });
        }
        Ok(ElementReader {
            input: Input {
                inner,
                offset,
                end: offset.saturating_add(len),
                out: Vec::new(),
            },
            t,
            state: State::Start,
            pending: VecDeque::new(),
        })
    }

    /// The next element (a string piece of at most `max` bytes, give or take one LZF
    /// back-reference), or `None` after the last; the value must then have been read exactly.
    pub fn next(&mut self, max: usize) -> Result<Option<Element>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            let e = match &mut self.state {
                State::Start => {
                    self.start()?;
                    continue;
                }
                State::Raw(0) | State::Members(0) | State::ZSet(0, _) | State::Hash(0) => {
                    self.state = State::Done;
                    continue;
                }
                State::Quicklist(0, _) | State::StreamGroups(0) => {
                    self.state = State::Done;
                    continue;
                }
                State::StreamNodes(0) => {
                    let (meta, groups) = self.stream_meta()?;
                    self.state = State::StreamGroups(groups);
                    meta
                }
                State::StreamNodes(left) => {
                    *left -= 1;
                    self.stream_node()?;
                    continue;
                }
                State::StreamGroups(left) => {
                    *left -= 1;
                    Element::Group(self.stream_group()?)
                }
                State::Raw(left) => {
                    let n = (*left).min(max.max(1) as u64);
                    *left -= n;
                    self.input.clear();
                    self.input.read_into(n, "string value")?;
                    Element::Bytes(std::mem::take(&mut self.input.out))
                }
                State::Lzf(z) => match z.next(&mut self.input, max.max(1))? {
                    Some(b) => Element::Bytes(b),
                    None => {
                        self.state = State::Done;
                        continue;
                    }
                },
                State::Members(left) => {
                    *left -= 1;
                    Element::Member(self.string("list element or set member")?)
                }
                State::ZSet(left, binary) => {
                    *left -= 1;
                    let binary = *binary;
                    let member = self.string("zset member")?;
                    Element::Scored(member, self.score(binary)?)
                }
                State::Hash(left) => {
                    *left -= 1;
                    let field = self.string("hash field")?;
                    Element::Field(field, self.string("hash value")?)
                }
                State::Quicklist(left, v2) => {
                    *left -= 1;
                    let v2 = *v2;
                    self.quicklist_node(v2)?;
                    continue;
                }
                State::Done => {
                    if self.input.left() != 0 {
                        return Err(RdbError::corrupt(
                            self.input.offset,
                            "value",
                            format!("{} bytes left after the last element", self.input.left()),
                        ));
                    }
                    return Ok(None);
                }
            };
            return Ok(Some(e));
        }
    }

    /// Reads the value's header: its element count, or a whole blob.
    fn start(&mut self) -> Result<()> {
        let what = "element count";
        self.state = match self.t {
            types::STRING => self.string_header()?,
            types::LIST | types::SET => State::Members(self.count(what, 1)?),
            types::ZSET => State::ZSet(self.count("zset member count", 2)?, false),
            types::ZSET_2 => State::ZSet(self.count("zset member count", 9)?, true),
            types::HASH => State::Hash(self.count("hash field count", 2)?),
            types::LIST_QUICKLIST => {
                State::Quicklist(self.count("quicklist node count", 1)?, false)
            }
            types::LIST_QUICKLIST_2 => {
                State::Quicklist(self.count("quicklist node count", 2)?, true)
            }
            types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
                State::StreamNodes(self.count("stream node count", 2)?)
            }
            t => {
                self.whole_blob(t)?;
                State::Done
            }
        };
        Ok(())
    }

    fn count(&mut self, what: &'static str, min_size: u64) -> Result<u64> {
        self.input.clear();
        let n = walk::plain_len(&mut self.input, what)?;
        self.input.check_count(n, min_size, what)?;
        Ok(n)
    }

    /// A top-level string: raw (read in pieces), LZF (decompressed in pieces) or an integer.
    fn string_header(&mut self) -> Result<State> {
        self.input.clear();
        let base = self.input.offset;
        Ok(match walk::len(&mut self.input, "string value")? {
            Len::Plain(n) => State::Raw(n),
            Len::Special(ENC_LZF) => {
                let clen = walk::plain_len(&mut self.input, "LZF compressed length")?;
                let ulen = walk::plain_len(&mut self.input, "LZF uncompressed length")?;
                Lzf::new(base, clen, ulen).map(State::Lzf)?
            }
            Len::Special(enc) => {
                // An integer (1, 2 or 4 bytes): decoded as every string is.
                let n = match enc {
                    0 => 1,
                    1 => 2,
                    _ => 4,
                };
                self.input.bytes(n, "integer string")?;
                let mut cur = Cursor::new(&self.input.out, base);
                self.pending.push_back(Element::Bytes(string::read_bytes(
                    &mut cur,
                    "string value",
                )?));
                State::Done
            }
        })
    }

    /// One string element, decoded as the whole-value path does.
    fn string(&mut self, what: &'static str) -> Result<Vec<u8>> {
        self.input.clear();
        let base = self.input.offset;
        walk::string(&mut self.input, what)?;
        string::read_bytes(&mut Cursor::new(&self.input.out, base), what)
    }

    /// A score: 8-byte binary double, or length-prefixed text (253-255: nan, ±inf).
    fn score(&mut self, binary: bool) -> Result<f64> {
        self.input.clear();
        let base = self.input.offset;
        if binary {
            self.input.bytes(8, "zset binary score")?;
            return score::read_binary_double(
                &mut Cursor::new(&self.input.out, base),
                "zset binary score",
            );
        }
        let l = self.input.byte("zset string score length")?;
        if l < 253 {
            self.input.bytes(u64::from(l), "zset string score")?;
        }
        score::read_string_score(&mut Cursor::new(&self.input.out, base))
    }

    /// One quicklist node: a plain element, or a packed node whose elements go to `pending`.
    fn quicklist_node(&mut self, v2: bool) -> Result<()> {
        let mut container = 2;
        if v2 {
            self.input.clear();
            let at = self.input.offset;
            container = walk::plain_len(&mut self.input, "quicklist node container")?;
            if container != 1 && container != 2 {
                return Err(RdbError::corrupt(
                    at,
                    "quicklist node",
                    format!("bad container {container}"),
                ));
            }
        }
        self.input.clear();
        let base = self.input.offset;
        walk::string(&mut self.input, "quicklist node")?;
        let s = string::read_string(&mut Cursor::new(&self.input.out, base), "quicklist node")?;
        if container == 1 {
            self.pending
                .push_back(Element::Member(s.bytes.into_owned()));
            return Ok(());
        }
        for e in decode::blob_elems(&s, v2)? {
            self.pending.push_back(Element::Member(e.to_vec()));
        }
        Ok(())
    }

    /// One stream node: its entries go to `pending`.
    fn stream_node(&mut self) -> Result<()> {
        let what = "stream node master ID";
        let master = self.string(what)?;
        let at = self.input.offset;
        let master = stream_data::id_from_raw(&master, at, what)?;
        self.input.clear();
        let base = self.input.offset;
        walk::string(&mut self.input, "stream node listpack")?;
        let cur = &mut Cursor::new(&self.input.out, base);
        let lp = string::read_string(cur, "stream node listpack")?;
        let mut entries = Vec::new();
        stream_data::decode_node(master, &lp.bytes, &mut entries)
            .map_err(|e| lp.map_inner_err(e))?;
        self.pending.extend(entries.into_iter().map(Element::Entry));
        Ok(())
    }

    fn stream_id(&mut self, what: &'static str) -> Result<StreamId> {
        Ok(StreamId {
            ms: walk::plain_len(&mut self.input, what)?,
            seq: walk::plain_len(&mut self.input, what)?,
        })
    }

    /// The metadata after a stream's nodes, and how many groups follow.
    fn stream_meta(&mut self) -> Result<(Element, u64)> {
        self.input.clear();
        walk::plain_len(&mut self.input, "stream length")?;
        let last_id = self.stream_id("stream last ID")?;
        let added = if self.t >= types::STREAM_LISTPACKS_2 {
            self.stream_id("stream first ID")?;
            let max_deleted = self.stream_id("stream max deleted ID")?;
            let added = walk::plain_len(&mut self.input, "stream entries added")?;
            Some((added, max_deleted))
        } else {
            None
        };
        let groups = self.count("stream group count", 4)?;
        Ok((Element::StreamMeta { last_id, added }, groups))
    }

    /// One consumer group, whole.
    fn stream_group(&mut self) -> Result<GroupData> {
        let (v2, v3) = (
            self.t >= types::STREAM_LISTPACKS_2,
            self.t >= types::STREAM_LISTPACKS_3,
        );
        self.input.clear();
        let base = self.input.offset;
        walk::stream_group(&mut self.input, v2, v3)?;
        let g = stream_data::decode_group(&mut Cursor::new(&self.input.out, base), v2, v3)?;
        self.input.clear();
        Ok(g)
    }

    /// A value stored as one blob: read and decoded whole (bounded by the server's
    /// `*-max-*-entries` settings), handed out element by element.
    fn whole_blob(&mut self, t: u8) -> Result<()> {
        self.input.clear();
        let base = self.input.offset;
        walk::value(&mut self.input, t, Flavor::Redis)?;
        let value = decode::decode_value_with(t, &self.input.out, Flavor::Redis)
            .map_err(|e| e.rebase(base))?;
        self.input.clear();
        let pending = &mut self.pending;
        match value {
            Value::String(b) => pending.push_back(Element::Bytes(b)),
            Value::List(v) | Value::Set(v) => pending.extend(v.into_iter().map(Element::Member)),
            Value::ZSet(v) => pending.extend(v.into_iter().map(|(m, s)| Element::Scored(m, s))),
            Value::Hash(v) => {
                pending.extend(v.into_iter().map(|f| Element::Field(f.field, f.value)))
            }
            Value::Stream(_) | Value::Module { .. } => {
                return Err(RdbError::Unsupported {
                    offset: base,
                    what: "a stream or module value cannot be read element by element".into(),
                })
            }
        }
        Ok(())
    }
}

/// An LZF-compressed string decompressed as it is read, keeping the last [`LZF_WINDOW`] bytes
/// of output for back-references.
struct Lzf {
    /// Offset of the string (for errors).
    at: u64,
    /// Compressed bytes left to read.
    in_left: u64,
    /// Uncompressed bytes left to produce.
    out_left: u64,
    /// The last output bytes (at most [`LZF_WINDOW`]).
    history: Vec<u8>,
}

impl Lzf {
    fn new(at: u64, clen: u64, ulen: u64) -> Result<Lzf> {
        if ulen == 0 || ulen > clen.saturating_mul(super::lzf::MAX_EXPANSION) {
            return Err(RdbError::BadLzf {
                offset: at,
                reason: format!(
                    "declared uncompressed length {ulen} is impossible for {clen} compressed bytes"
                ),
            });
        }
        Ok(Lzf {
            at,
            in_left: clen,
            out_left: ulen,
            history: Vec::new(),
        })
    }

    fn bad(&self, reason: impl Into<String>) -> RdbError {
        RdbError::BadLzf {
            offset: self.at,
            reason: reason.into(),
        }
    }

    fn byte<R: Read>(&mut self, input: &mut Input<R>) -> Result<u8> {
        if self.in_left == 0 {
            return Err(self.bad("compressed data ends inside an instruction"));
        }
        self.in_left -= 1;
        input.clear();
        input.byte("LZF compressed data")
    }

    /// Up to about `max` more bytes of the string; `None` once it is whole.
    fn next<R: Read>(&mut self, input: &mut Input<R>, max: usize) -> Result<Option<Vec<u8>>> {
        if self.out_left == 0 {
            if self.in_left != 0 {
                return Err(self.bad(format!(
                    "{} compressed bytes left after the declared length",
                    self.in_left
                )));
            }
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.history);
        let start = buf.len();
        while buf.len() - start < max && self.out_left > 0 {
            let before = buf.len();
            let ctrl = self.byte(input)?;
            if ctrl < 32 {
                let n = u64::from(ctrl) + 1;
                if n > self.in_left {
                    return Err(self.bad("a literal run goes past the compressed data"));
                }
                self.in_left -= n;
                input.clear();
                input.read_into(n, "LZF compressed data")?;
                buf.extend_from_slice(&input.out);
            } else {
                let mut len = usize::from(ctrl >> 5);
                if len == 7 {
                    len += usize::from(self.byte(input)?);
                }
                len += 2;
                let back = (usize::from(ctrl & 0x1f) << 8) + usize::from(self.byte(input)?) + 1;
                if back > buf.len() {
                    return Err(self.bad("a back-reference points before the start of the data"));
                }
                for _ in 0..len {
                    let b = buf.get(buf.len() - back).copied().unwrap_or(0);
                    buf.push(b);
                }
            }
            let made = (buf.len() - before) as u64;
            if made > self.out_left {
                return Err(self.bad("decompresses to more than the declared length"));
            }
            self.out_left -= made;
        }
        let piece = buf.get(start..).unwrap_or(&[]).to_vec();
        buf.drain(..buf.len().saturating_sub(LZF_WINDOW));
        self.history = buf;
        Ok(Some(piece))
    }
}

/// Reads every element of a value and drops it: checks a value that is never held whole (the
/// file check of a file without a checksum).
pub fn check<R: Read>(inner: R, t: u8, offset: u64, len: u64) -> Result<()> {
    let mut r = ElementReader::new(inner, t, offset, len)?;
    while r.next(1 << 20)?.is_some() {}
    Ok(())
}

#[cfg(test)]
/// The value the elements make up, to compare with the whole-value decoder's (tests).
pub(crate) fn assemble(t: u8, elems: Vec<Element>) -> Value {
    use super::value::HashField;
    let mut s = Vec::new();
    let (mut members, mut scored, mut fields) = (Vec::new(), Vec::new(), Vec::new());
    let mut st = stream_data::StreamData::default();
    for e in elems {
        match e {
            Element::Entry(e) => st.entries.push(e),
            Element::StreamMeta { last_id, .. } => st.last_id = last_id,
            Element::Group(g) => st.groups.push(g),
            Element::Bytes(b) => s.extend_from_slice(&b),
            Element::Member(m) => members.push(m),
            Element::Scored(m, sc) => scored.push((m, sc)),
            Element::Field(f, v) => fields.push(HashField {
                field: f,
                value: v,
                expire_at_ms: None,
            }),
        }
    }
    match t {
        types::STRING => Value::String(s),
        types::LIST | types::LIST_ZIPLIST | types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            Value::List(members)
        }
        types::SET | types::SET_INTSET | types::SET_LISTPACK => Value::Set(members),
        types::ZSET | types::ZSET_2 | types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
            Value::ZSet(scored)
        }
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(st.into()))
        }
        _ => Value::Hash(fields),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::encode::encode_value;
    use crate::rdb::value::HashField;

    /// All elements of `raw` (a value of type `t`), with strings in pieces of `max`.
    fn read_all(t: u8, raw: &[u8], max: usize) -> Result<Vec<Element>> {
        let mut r = ElementReader::new(raw, t, 100, raw.len() as u64)?;
        let mut out = Vec::new();
        while let Some(e) = r.next(max)? {
            out.push(e);
        }
        Ok(out)
    }

    /// Payload (type byte + raw value) of `v` as RDB `version` encodes it.
    fn encoded(v: &Value, version: u16) -> (u8, Vec<u8>) {
        let p = encode_value(v, version).unwrap();
        let (t, raw, _) = crate::rdb::payload::split(&p).unwrap();
        (t, raw.to_vec())
    }

    fn same(t: u8, raw: &[u8], max: usize) {
        let whole = decode::decode_value(t, raw).unwrap();
        let streamed = assemble(t, read_all(t, raw, max).unwrap());
        assert_eq!(streamed, whole, "type {t}");
    }

    #[test]
    fn strings_raw_lzf_and_integers() {
        // A string LZF compresses well, with back-references across many pieces.
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {} {}\n", i % 977, i / 5000).into_bytes())
            .collect();
        let c = ::lzf::compress(&text).unwrap();
        let mut raw = vec![0xC3];
        crate::rdb::length::write_length(&mut raw, c.len() as u64);
        crate::rdb::length::write_length(&mut raw, text.len() as u64);
        raw.extend_from_slice(&c);
        for max in [1, 4096, 100_000] {
            let e = read_all(types::STRING, &raw, max).unwrap();
            assert!(e.len() > 1 || max > text.len());
            assert_eq!(assemble(types::STRING, e), Value::String(text.clone()));
        }
        same(types::STRING, &raw, 777);
        let mut plain = Vec::new();
        string::write_raw(&mut plain, &text);
        same(types::STRING, &plain, 65_536);
        same(types::STRING, &[0xC0, 0x80], 10);
        same(types::STRING, &[0xC2, 0xFF, 0xFF, 0xFF, 0x7F], 10);
        // Damaged compressed data is an error, never a panic.
        let mut bad = raw.clone();
        let n = bad.len();
        bad[n - 40..].fill(0xFF);
        assert!(read_all(types::STRING, &bad, 4096).is_err());
        assert!(read_all(types::STRING, &raw[..raw.len() - 3], 4096).is_err());
    }

    #[test]
    fn collections_of_every_encoding() {
        let list: Vec<Vec<u8>> = (0..3000).map(|i| format!("e{i}").into_bytes()).collect();
        let ints: Vec<Vec<u8>> = (0..600)
            .map(|i| format!("{}", i * 7 - 99).into_bytes())
            .collect();
        let zset: Vec<(Vec<u8>, f64)> = (0..2000)
            .map(|i| {
                let s = match i {
                    0 => f64::INFINITY,
                    1 => f64::NEG_INFINITY,
                    2 => 0.1,
                    _ => i as f64 * 1.000_000_000_000_000_2 + 1.0 / 3.0,
                };
                (format!("m{i}").into_bytes(), s)
            })
            .collect();
        let hash: Vec<HashField> = (0..2000)
            .map(|i| HashField {
                field: format!("f{i}").into_bytes(),
                value: "v".repeat(i % 50).into_bytes(),
                expire_at_ms: None,
            })
            .collect();
        let small_hash = hash[..5].to_vec();
        let values = [
            Value::List(list.clone()),
            Value::List(list[..4].to_vec()),
            Value::Set(list.clone()),
            Value::Set(ints.clone()),
            Value::Set(list[..3].to_vec()),
            Value::ZSet(zset.clone()),
            Value::ZSet(zset[..4].to_vec()),
            Value::Hash(hash),
            Value::Hash(small_hash),
        ];
        for version in [7, 9, 10, 11] {
            for v in &values {
                let (t, raw) = encoded(v, version);
                assert!(streamable(t), "type {t}");
                same(t, &raw, 1024);
            }
        }
    }

    /// Every streamable value of every real file in `tests/data/rdb`, read element by element
    /// from its place in the file, equals the whole-value decoder's reading of it.
    #[test]
    fn corpus_files_element_by_element() {
        use crate::rdb::reader::{Item, RdbReader, ReaderOptions};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rdb");
        let mut files = Vec::new();
        let mut todo = vec![dir];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else if p.extension().is_some_and(|x| x == "rdb") {
                    files.push(p);
                }
            }
        }
        let (mut checked, mut types_seen) = (0, std::collections::BTreeSet::new());
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let items = |big: Option<u64>| -> Vec<Item> {
                let opts = ReaderOptions {
                    known_size: Some(bytes.len() as u64),
                    big_value_bytes: big,
                    ..ReaderOptions::default()
                };
                let Ok(r) = RdbReader::with_options(&bytes[..], opts) else {
                    return Vec::new();
                };
                r.map_while(|i| i.ok()).collect()
            };
            let (whole, big) = (items(None), items(Some(0)));
            assert_eq!(whole.len(), big.len(), "{}", path.display());
            for (w, b) in whole.iter().zip(&big) {
                let (Item::Record(rec), Item::BigValue(v)) = (w, b) else {
                    continue;
                };
                let Ok(want) = decode::decode_payload(&rec.record.payload) else {
                    continue;
                };
                let at = v.offset as usize;
                let raw = &bytes[at..at + v.len as usize];
                for max in [3, 1 << 20] {
                    let mut r = ElementReader::new(raw, v.type_byte, v.offset, v.len).unwrap();
                    let mut elems = Vec::new();
                    while let Some(e) = r.next(max).unwrap() {
                        elems.push(e);
                    }
                    let got = assemble(v.type_byte, elems);
                    assert_eq!(got, want, "{} key {:?}", path.display(), rec.record.key);
                }
                types_seen.insert(v.type_byte);
                checked += 1;
            }
        }
        eprintln!("{checked} values of types {types_seen:?} read element by element");
        // Plain, ziplist, intset, listpack and quicklist encodings all occur in the corpus.
        for t in [0, 2, 4, 5, 11, 12, 13, 14, 15, 16, 17, 18, 19] {
            assert!(
                types_seen.contains(&t),
                "no value of type {t} in the corpus"
            );
        }
    }

    #[test]
    fn plain_encodings_and_damage() {
        // Text scores (type 3), a plain hash (4) and a plain list (1), as old servers wrote them.
        let mut z = Vec::new();
        crate::rdb::length::write_length(&mut z, 3);
        for (m, s) in [("a", f64::INFINITY), ("b", 0.1), ("c", -2.5e300)] {
            string::write_raw(&mut z, m.as_bytes());
            score::write_string_score(&mut z, s);
        }
        same(types::ZSET, &z, 10);
        let mut h = Vec::new();
        crate::rdb::length::write_length(&mut h, 2);
        for s in ["f1", "v1", "f2", "v2"] {
            string::write_raw(&mut h, s.as_bytes());
        }
        same(types::HASH, &h, 10);
        let mut l = h.clone();
        l[0] = 4;
        same(types::LIST, &l, 10);
        // A count larger than the value, or bytes left after it: errors.
        let mut big = vec![0x40, 0xFF];
        big.extend_from_slice(&h[1..]);
        assert!(read_all(types::HASH, &big, 10).is_err());
        let mut extra = h.clone();
        extra.push(0);
        assert!(read_all(types::HASH, &extra, 10).is_err());
        assert!(ElementReader::new(&h[..], types::MODULE_2, 0, 1).is_err());
    }
}
