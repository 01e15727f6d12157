//! Finding where a value ends without decoding it.
//!
//! The migrate path copies each value's bytes verbatim into a DUMP payload, but an RDB file does
//! not store value sizes: the only way to find the end of a value is to walk its structure —
//! length-prefixed strings, element counts, stream metadata, annotated module fields. The walker
//! reads through a [`RawInput`], which records every byte it hands out, so after a walk the input
//! holds exactly the value's raw bytes. Blobs (ziplists, listpacks, ...) are copied as opaque
//! strings; only their header is peeked to recognise empty collections, which Redis refuses to
//! load and skips.

use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::length::{self, Len, ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use super::module;
use super::types::{self, Flavor};
use super::{intset, listpack, lzf, ziplist};

/// A byte source for the walker that keeps every byte it returns.
pub trait RawInput {
    /// Consume one byte.
    fn byte(&mut self, what: &'static str) -> Result<u8>;
    /// Consume `n` bytes; returns the index in [`RawInput::captured`] where they start.
    fn bytes(&mut self, n: u64, what: &'static str) -> Result<usize>;
    /// Everything consumed so far in this walk.
    fn captured(&self) -> &[u8];
    /// Offset of the next byte, in the enclosing input (for errors).
    fn offset(&self) -> u64;
    /// Fail early if `count` items of `min_size` bytes cannot fit in what is left (when known).
    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()>;
}

/// Where a walked string's data sits in the capture.
#[derive(Debug, Clone, Copy)]
pub struct StrSpan {
    /// Offset of the string header in the enclosing input.
    pub offset: u64,
    /// Index of the (possibly compressed) data in the capture.
    pub start: usize,
    /// Number of stored data bytes.
    pub len: usize,
    /// Uncompressed length if LZF-compressed.
    pub lzf_len: Option<u64>,
    /// Integer-encoded string.
    pub int: bool,
}

/// Walk a length field.
pub fn len<I: RawInput + ?Sized>(input: &mut I, what: &'static str) -> Result<Len> {
    let at = input.offset();
    let first = input.byte(what)?;
    let invalid = || {
        RdbError::corrupt(
            at,
            what,
            format!("invalid length encoding byte 0x{first:02x}"),
        )
    };
    let n = length::extra_bytes(first).ok_or_else(invalid)?;
    let start = input.bytes(n as u64, what)?;
    let extra = input.captured().get(start..start + n).unwrap_or(&[]);
    length::decode(first, extra).ok_or_else(invalid)
}

/// Walk a plain length.
pub fn plain_len<I: RawInput + ?Sized>(input: &mut I, what: &'static str) -> Result<u64> {
    let at = input.offset();
    len(input, what)?.plain(at, what)
}

/// Walk a string.
pub fn string<I: RawInput + ?Sized>(input: &mut I, what: &'static str) -> Result<StrSpan> {
    let offset = input.offset();
    // (stored bytes, LZF uncompressed length, integer-encoded)
    let (n, lzf_len, int) = match len(input, what)? {
        Len::Plain(n) => (n, None, false),
        Len::Special(ENC_INT8) => (1, None, true),
        Len::Special(ENC_INT16) => (2, None, true),
        Len::Special(ENC_INT32) => (4, None, true),
        Len::Special(ENC_LZF) => {
            let clen = plain_len(input, "LZF compressed length")?;
            let ulen = plain_len(input, "LZF uncompressed length")?;
            if ulen > clen.saturating_mul(lzf::MAX_EXPANSION) || ulen == 0 {
                return Err(RdbError::BadLzf {
                    offset,
                    reason: format!(
                        "declared uncompressed length {ulen} is impossible for {clen} compressed bytes"
                    ),
                });
            }
            (clen, Some(ulen), false)
        }
        Len::Special(other) => {
            return Err(RdbError::corrupt(
                offset,
                what,
                format!("unknown string encoding {other}"),
            ))
        }
    };
    let what = if lzf_len.is_some() {
        "LZF compressed data"
    } else {
        what
    };
    let start = input.bytes(n, what)?;
    Ok(StrSpan {
        offset,
        start,
        len: n as usize,
        lzf_len,
        int,
    })
}

#[derive(Clone, Copy)]
enum Blob {
    Ziplist,
    Listpack,
    Intset,
    Zipmap,
}

impl Blob {
    /// The blob a value of type `t` is stored as, when it is one blob string.
    fn holding(t: u8) -> Option<Blob> {
        match t {
            types::HASH_ZIPMAP => Some(Blob::Zipmap),
            types::LIST_ZIPLIST | types::ZSET_ZIPLIST | types::HASH_ZIPLIST => Some(Blob::Ziplist),
            types::SET_INTSET => Some(Blob::Intset),
            types::HASH_LISTPACK | types::ZSET_LISTPACK | types::SET_LISTPACK => {
                Some(Blob::Listpack)
            }
            _ => None,
        }
    }

    /// What the blob string is called in errors.
    fn what(self) -> &'static str {
        match self {
            Blob::Ziplist => "ziplist blob",
            Blob::Listpack => "listpack blob",
            Blob::Intset => "intset blob",
            Blob::Zipmap => "zipmap blob",
        }
    }
}

/// True if a walked blob string holds zero elements (only checked when the header is cheap to
/// reach: stored raw, or LZF-compressed and tiny).
fn blob_is_empty<I: RawInput + ?Sized>(input: &I, s: StrSpan, kind: Blob) -> bool {
    if s.int {
        return false;
    }
    let stored = input
        .captured()
        .get(s.start..s.start + s.len)
        .unwrap_or(&[]);
    let owned;
    let data: &[u8] = match s.lzf_len {
        None => stored,
        Some(u) if u <= 64 => match lzf::decompress(stored, u, 0) {
            Ok(d) => {
                owned = d;
                &owned
            }
            Err(_) => return false,
        },
        Some(_) => return false,
    };
    match kind {
        Blob::Ziplist => ziplist::header_count(data) == Some(0),
        Blob::Listpack => listpack::header_count(data) == Some(0),
        Blob::Intset => intset::header_count(data) == Some(0),
        Blob::Zipmap => data.get(1) == Some(&0xFF),
    }
}

fn n_strings<I: RawInput + ?Sized>(input: &mut I, n: u64, what: &'static str) -> Result<()> {
    for _ in 0..n {
        string(input, what)?;
    }
    Ok(())
}

fn stream_id<I: RawInput + ?Sized>(input: &mut I, what: &'static str) -> Result<()> {
    plain_len(input, what)?;
    plain_len(input, what)?;
    Ok(())
}

/// Walk one value of type `t`. Returns true if the value is an empty collection (which Redis
/// skips on load and rejects in RESTORE).
pub fn value<I: RawInput + ?Sized>(input: &mut I, t: u8, flavor: Flavor) -> Result<bool> {
    let start = input.offset();
    if let Some(kind) = Blob::holding(t) {
        let s = string(input, kind.what())?;
        return Ok(blob_is_empty(input, s, kind));
    }
    match t {
        types::STRING => {
            string(input, "string value")?;
            Ok(false)
        }
        types::LIST | types::SET => {
            let n = plain_len(input, "element count")?;
            input.check_count(n, 1, "element count")?;
            n_strings(input, n, "element")?;
            Ok(n == 0)
        }
        types::ZSET | types::ZSET_2 => zset(input, t),
        types::HASH => {
            let n = plain_len(input, "hash field count")?;
            input.check_count(n, 2, "hash field count")?;
            n_strings(input, n.saturating_mul(2), "hash field or value")?;
            Ok(n == 0)
        }
        types::MODULE_PRE_GA => Err(RdbError::Unsupported {
            offset: start,
            what: "pre-GA module value (type 6, Redis 4.0 release candidates) cannot be parsed"
                .into(),
        }),
        types::MODULE_2 => {
            plain_len(input, "module id")?;
            module_fields(input)?;
            Ok(false)
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => quicklist(input, t),
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            stream(input, t)?;
            Ok(false)
        }
        22 if flavor == Flavor::Valkey => valkey_hash_with_ttl(input),
        types::HASH_METADATA_PRE_GA | types::HASH_METADATA if flavor == Flavor::Redis => {
            redis_hash_metadata(input, t)
        }
        types::HASH_LISTPACK_EX_PRE_GA | types::HASH_LISTPACK_EX if flavor == Flavor::Redis => {
            if t == types::HASH_LISTPACK_EX {
                input.bytes(8, "hash minExpire")?;
            }
            let s = string(input, "hash listpack-ex blob")?;
            Ok(blob_is_empty(input, s, Blob::Listpack))
        }
        23 => Err(RdbError::Unsupported {
            offset: start,
            what: "Valkey path hash (type 23, RDB 81) is not supported".into(),
        }),
        other => Err(RdbError::UnknownType {
            offset: start,
            byte: other,
        }),
    }
}

/// A sorted set: members with string scores (`ZSET`) or binary doubles (`ZSET_2`).
fn zset<I: RawInput + ?Sized>(input: &mut I, t: u8) -> Result<bool> {
    let n = plain_len(input, "zset member count")?;
    input.check_count(n, 2, "zset member count")?;
    for _ in 0..n {
        string(input, "zset member")?;
        if t == types::ZSET {
            let l = input.byte("zset string score length")?;
            if l < 253 {
                input.bytes(u64::from(l), "zset string score")?;
            }
        } else {
            input.bytes(8, "zset binary score")?;
        }
    }
    Ok(n == 0)
}

/// A quicklist: ziplist nodes (`LIST_QUICKLIST`), or listpack / plain nodes (`_2`). Empty when
/// every node is an empty packed node.
fn quicklist<I: RawInput + ?Sized>(input: &mut I, t: u8) -> Result<bool> {
    let n = plain_len(input, "quicklist node count")?;
    input.check_count(n, 1, "quicklist node count")?;
    let kind = if t == types::LIST_QUICKLIST {
        Blob::Ziplist
    } else {
        Blob::Listpack
    };
    let mut all_empty = true;
    for _ in 0..n {
        let mut container = 2;
        if t == types::LIST_QUICKLIST_2 {
            let at = input.offset();
            container = plain_len(input, "quicklist node container")?;
            if container != 1 && container != 2 {
                return Err(RdbError::corrupt(
                    at,
                    "quicklist node",
                    format!("bad container {container}"),
                ));
            }
        }
        let s = string(input, "quicklist node")?;
        if container == 1 || !blob_is_empty(input, s, kind) {
            all_empty = false;
        }
    }
    Ok(all_empty)
}

/// Valkey 9's hash with an absolute expiry (8 bytes, -1 = none) after each field and value.
fn valkey_hash_with_ttl<I: RawInput + ?Sized>(input: &mut I) -> Result<bool> {
    let n = plain_len(input, "hash field count")?;
    input.check_count(n, 10, "hash field count")?;
    for _ in 0..n {
        string(input, "hash field")?;
        string(input, "hash value")?;
        input.bytes(8, "hash field expiry")?;
    }
    Ok(n == 0)
}

/// Redis 7.4+'s hash with field TTLs (`HASH_METADATA`, with its minimum expiry first).
fn redis_hash_metadata<I: RawInput + ?Sized>(input: &mut I, t: u8) -> Result<bool> {
    if t == types::HASH_METADATA {
        input.bytes(8, "hash minExpire")?;
    }
    let n = plain_len(input, "hash field count")?;
    input.check_count(n, 3, "hash field count")?;
    for _ in 0..n {
        plain_len(input, "hash field TTL")?;
        string(input, "hash field")?;
        string(input, "hash value")?;
    }
    Ok(n == 0)
}

/// Walk annotated module fields up to and including the module EOF opcode.
pub fn module_fields<I: RawInput + ?Sized>(input: &mut I) -> Result<()> {
    loop {
        let at = input.offset();
        match plain_len(input, "module value opcode")? {
            module::OPCODE_EOF => return Ok(()),
            module::OPCODE_SINT | module::OPCODE_UINT => {
                plain_len(input, "module integer")?;
            }
            module::OPCODE_FLOAT => {
                input.bytes(4, "module float")?;
            }
            module::OPCODE_DOUBLE => {
                input.bytes(8, "module double")?;
            }
            module::OPCODE_STRING => {
                string(input, "module string")?;
            }
            other => {
                return Err(RdbError::corrupt(
                    at,
                    "module value",
                    format!("unknown module opcode {other}"),
                ))
            }
        }
    }
}

fn stream<I: RawInput + ?Sized>(input: &mut I, t: u8) -> Result<()> {
    let v2 = t >= types::STREAM_LISTPACKS_2;
    let v3 = t >= types::STREAM_LISTPACKS_3;
    let nodes = plain_len(input, "stream node count")?;
    input.check_count(nodes, 2, "stream node count")?;
    for _ in 0..nodes {
        string(input, "stream node master ID")?;
        string(input, "stream node listpack")?;
    }
    plain_len(input, "stream length")?;
    stream_id(input, "stream last ID")?;
    if v2 {
        stream_id(input, "stream first ID")?;
        stream_id(input, "stream max deleted ID")?;
        plain_len(input, "stream entries added")?;
    }
    let groups = plain_len(input, "stream group count")?;
    input.check_count(groups, 4, "stream group count")?;
    for _ in 0..groups {
        stream_group(input, v2, v3)?;
    }
    Ok(())
}

/// Walk one consumer group of a stream of type 19+ (`v2`) or 21+ (`v3`).
pub fn stream_group<I: RawInput + ?Sized>(input: &mut I, v2: bool, v3: bool) -> Result<()> {
    string(input, "consumer group name")?;
    stream_id(input, "consumer group last ID")?;
    if v2 {
        plain_len(input, "consumer group entries read")?;
    }
    let pel = plain_len(input, "group PEL size")?;
    input.check_count(pel, 17, "group PEL size")?;
    for _ in 0..pel {
        input.bytes(16 + 8, "PEL entry")?;
        plain_len(input, "PEL delivery count")?;
    }
    let consumers = plain_len(input, "consumer count")?;
    input.check_count(consumers, 10, "consumer count")?;
    for _ in 0..consumers {
        string(input, "consumer name")?;
        input.bytes(if v3 { 16 } else { 8 }, "consumer seen/active time")?;
        let n = plain_len(input, "consumer PEL size")?;
        input.check_count(n, 16, "consumer PEL size")?;
        input.bytes(n.saturating_mul(16), "consumer PEL")?;
    }
    Ok(())
}

/// A [`RawInput`] over a slice (the captured bytes are the slice prefix already read): a
/// [`Cursor`] that also remembers the whole slice.
#[derive(Debug)]
pub struct SliceInput<'a> {
    buf: &'a [u8],
    cur: Cursor<'a>,
}

impl<'a> SliceInput<'a> {
    /// Walk `buf`, whose first byte sits at `base` in the enclosing input.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        SliceInput {
            buf,
            cur: Cursor::new(buf, base),
        }
    }

    /// Bytes consumed.
    pub fn pos(&self) -> usize {
        self.cur.pos()
    }
}

impl RawInput for SliceInput<'_> {
    fn byte(&mut self, what: &'static str) -> Result<u8> {
        self.cur.u8(what)
    }

    fn bytes(&mut self, n: u64, what: &'static str) -> Result<usize> {
        let start = self.cur.pos();
        self.cur.take_u64(n, what)?;
        Ok(start)
    }

    fn captured(&self) -> &[u8] {
        self.buf.get(..self.cur.pos()).unwrap_or(&[])
    }

    fn offset(&self) -> u64 {
        self.cur.offset()
    }

    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()> {
        self.cur.check_count(count, min_size, what)
    }
}

/// Walk the value bytes of type `t` in `bytes` and return how many bytes it occupies and whether
/// it is an empty collection.
pub fn value_len(t: u8, bytes: &[u8], flavor: Flavor) -> Result<(usize, bool)> {
    let mut input = SliceInput::new(bytes, 0);
    let empty = value(&mut input, t, flavor)?;
    Ok((input.pos(), empty))
}
