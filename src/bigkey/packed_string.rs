//! A big string as one LZF-compressed `RESTORE` payload, built by ferry from the string's
//! chunks (the source is never asked to `DUMP` it).
//!
//! A server refuses to make a string longer than its `proto-max-bulk-len` with SET, APPEND or
//! SETRANGE (`checkStringLength`), so a 40 MB string can never be built in a 16 MB target piece
//! by piece. `RESTORE` checks that limit only against its payload argument, not the value it
//! decodes: a payload holding the string LZF-compressed (RDB string encoding `0xC3`, compressed
//! length, original length, the LZF bytes) creates a string as long as it says, as long as the
//! *compressed* form fits. Real strings (JSON, text, serialized objects) often compress several
//! times; and one RESTORE is also faster than thousands of APPENDs.
//!
//! LZF is a stream of self-contained tokens — a literal run (`000LLLLL` + 1–32 bytes) or a
//! back-reference to output already produced (at most 8 KiB back) — so blocks compressed one by
//! one, each referring only to its own bytes, concatenate into one valid LZF stream (checked
//! against real servers by `tests/bigkey_strings.rs`). The chunks are gathered into [`BLOCK`]s
//! first; a block LZF cannot shrink is written as literal runs (1 byte more per 32). Memory is
//! the compressed bytes so far plus one block, bounded by the cap [`PackedString::new`] is given:
//! a block that would pass it is not packed ([`Full`]), and the caller decides what happens then
//! (see `sink/chunked.rs`: the packed prefix is restored and the rest appended, which the target accepts
//! while the string stays within its limit).
//!
//! The payload's footer says RDB [`PAYLOAD_RDB_VERSION`]: an LZF string is the same in every RDB
//! version, and every server ferry writes to (Redis 2.8+, Valkey 9's refusal of Redis' 12–79
//! range included) accepts a version that old.

use bytes::{BufMut, Bytes};

use crate::rdb::crc64::Crc64;
use crate::rdb::length::{write_length, ENC_LZF};
use crate::rdb::payload::FOOTER_LEN;
use crate::rdb::types;

/// The RDB version written in the payload's footer (Redis 2.6/2.8's): see the module doc.
pub const PAYLOAD_RDB_VERSION: u16 = 6;

/// Room kept in front of the compressed bytes for the header: the type byte, `0xC3` and two
/// lengths of at most 9 bytes each.
const HEADER_ROOM: usize = 1 + 1 + 9 + 9;

/// Most bytes in one LZF literal run.
const MAX_LITERAL: usize = 32;

/// A packed payload bigger than this is never built, whatever the target accepts: it is held in
/// memory whole, and copied once more into the RESTORE command (with the defaults, ferry's
/// memory in flight is ~30 MiB; one packed string per writer at most adds twice this). 16 MiB
/// holds the 40 MB strings (0.5 MB, and 10.6 MB for one of English-like words) and the
/// common 16mb limit; past it, the packed prefix is RESTOREd and the rest APPENDed.
pub const MAX_PACKED_BYTES: usize = 16 << 20;

/// Bytes compressed at a time: the chunks are gathered into blocks this big first, since LZF
/// finds repeats only within what it is given (8 KiB back at most) and a small chunk (a small
/// `--batch-bytes`) would restart it too often — 16 KiB pieces of a 1.7 KiB pattern packed
/// eight times worse than whole blocks.
pub const BLOCK: usize = 1 << 20;

/// The compressed bytes of a string so far (behind room for the header), its length, and the
/// bytes not compressed yet.
#[derive(Debug)]
pub struct PackedString {
    /// `HEADER_ROOM` bytes, then the LZF stream.
    buf: Vec<u8>,
    /// Bytes of the string compressed so far.
    raw_len: u64,
    /// The string's next bytes, compressed once they make a [`BLOCK`].
    pending: Vec<u8>,
    /// Largest payload allowed.
    cap: usize,
    /// Bytes compressed at a time ([`BLOCK`]).
    block: usize,
}

/// The pending bytes do not fit under the cap compressed: they stay pending
/// ([`PackedString::take_pending`]), for the caller to write another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl PackedString {
    /// An empty string whose payload must stay at most `cap` bytes.
    pub fn new(cap: usize) -> PackedString {
        PackedString::with_block(cap, BLOCK)
    }

    /// The same, compressing `block` bytes at a time (tests: many blocks of little data).
    fn with_block(cap: usize, block: usize) -> PackedString {
        PackedString {
            buf: vec![0; HEADER_ROOM],
            raw_len: 0,
            pending: Vec::new(),
            cap,
            block: block.max(1),
        }
    }

    /// Bytes of the string packed so far.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Compressed bytes so far (the payload is at most 30 bytes more).
    pub fn packed_len(&self) -> usize {
        self.buf.len() - HEADER_ROOM
    }

    /// Adds the string's next bytes, compressing a block once there is one; [`Full`] when that
    /// block would pass the cap (nothing of it is packed then).
    pub fn push(&mut self, piece: &[u8]) -> Result<(), Full> {
        self.pending.extend_from_slice(piece);
        if self.pending.len() < self.block {
            return Ok(());
        }
        self.finish()
    }

    /// Compresses the pending bytes; [`Full`] when they would pass the cap.
    pub fn finish(&mut self) -> Result<(), Full> {
        let block = std::mem::take(&mut self.pending);
        let packed = self.compress(&block);
        if packed.is_err() {
            self.pending = block;
        }
        packed
    }

    /// The bytes not packed (after [`Full`]): the string goes on with them.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Compresses `block` onto the end; [`Full`], with nothing added, when the payload would
    /// then pass the cap.
    fn compress(&mut self, block: &[u8]) -> Result<(), Full> {
        let room = self.cap.saturating_sub(self.buf.len() + FOOTER_LEN);
        if block.is_empty() {
            return Ok(());
        }
        match lzf::compress(block) {
            Ok(c) if c.len() <= room => {
                self.grow_for(c.len());
                self.buf.extend_from_slice(&c);
            }
            Ok(_) => return Err(Full),
            // LZF cannot shrink it (random bytes, data compressed already): packing gains
            // nothing and would hold up to the cap in memory, so the string goes on by APPENDs,
            // which hold one chunk. Measured (tests/rdb_bigkeys.rs, 6.2 file with a random 3 MB
            // string): packed as literals, `--rdb` peaked at 38 MiB; not packed, 29 MiB. A
            // block of 1 byte is the one exception (`lzf` refuses it).
            Err(_) if block.len() == 1 && literal_len(1) <= room => {
                self.grow_for(literal_len(1));
                push_literals(&mut self.buf, block);
            }
            Err(_) => return Err(Full),
        }
        self.raw_len += block.len() as u64;
        Ok(())
    }

    /// Makes room for `extra` more bytes and the footer, doubling as a `Vec` does but never past
    /// the cap (a packed string near the cap must not take twice its size).
    fn grow_for(&mut self, extra: usize) {
        let need = self.buf.len() + extra + FOOTER_LEN;
        if need > self.buf.capacity() {
            let want = need.max(self.buf.capacity() * 2).min(self.cap.max(need));
            self.buf.reserve_exact(want - self.buf.len());
        }
    }

    /// The `RESTORE` payload of the string packed so far (`None` when nothing was); pending
    /// bytes are not in it ([`PackedString::finish`] first).
    pub fn into_payload(self) -> Option<Bytes> {
        if self.raw_len == 0 {
            return None;
        }
        let mut header = vec![types::STRING, 0xC0 | ENC_LZF];
        write_length(&mut header, self.packed_len() as u64);
        write_length(&mut header, self.raw_len);
        let start = HEADER_ROOM.checked_sub(header.len())?;
        let mut buf = self.buf;
        buf.get_mut(start..HEADER_ROOM)?.copy_from_slice(&header);
        buf.put_u16_le(PAYLOAD_RDB_VERSION);
        let mut crc = Crc64::new();
        crc.update(buf.get(start..)?);
        buf.put_u64_le(crc.state());
        Some(Bytes::from(buf).slice(start..))
    }
}

/// Bytes `n` bytes take as LZF literal runs.
fn literal_len(n: usize) -> usize {
    n + n.div_ceil(MAX_LITERAL)
}

/// Appends `piece` to `out` as LZF literal runs.
fn push_literals(out: &mut Vec<u8>, piece: &[u8]) {
    for run in piece.chunks(MAX_LITERAL) {
        // A run of n bytes is announced as n - 1 (1..=32 → 0..=31).
        out.push((run.len() - 1) as u8);
        out.extend_from_slice(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::Value;
    use proptest::prelude::*;

    /// The string back through ferry's own payload decoder (the `lzf` crate's decompressor) and
    /// its streaming element reader (ferry's own LZF decoder, as `--rdb` reads big strings).
    fn unpack(payload: &[u8]) -> Vec<u8> {
        let whole = match crate::rdb::decode_payload(payload).unwrap() {
            Value::String(s) => s,
            other => panic!("not a string: {other:?}"),
        };
        let (t, value, version) = crate::rdb::payload::split(payload).unwrap();
        assert_eq!((t, version), (types::STRING, PAYLOAD_RDB_VERSION));
        let mut r =
            crate::rdb::elements::ElementReader::new(value, t, 0, value.len() as u64).unwrap();
        let mut streamed = Vec::new();
        while let Some(e) = r.next(1000).unwrap() {
            match e {
                crate::rdb::elements::Element::Bytes(b) => streamed.extend_from_slice(&b),
                other => panic!("not string bytes: {other:?}"),
            }
        }
        assert_eq!(streamed, whole);
        whole
    }

    /// Packs `data` in pieces of `chunk` bytes as `sink/chunked.rs` does; the packer and how many bytes
    /// it holds packed (the rest would be appended).
    fn pack(data: &[u8], chunk: usize, cap: usize) -> (PackedString, usize) {
        pack_blocks(data, chunk, BLOCK, cap)
    }

    /// [`pack`] compressing `block` bytes at a time.
    fn pack_blocks(data: &[u8], chunk: usize, block: usize, cap: usize) -> (PackedString, usize) {
        let mut p = PackedString::with_block(cap, block);
        let mut full = false;
        for piece in data.chunks(chunk.max(1)) {
            if p.push(piece).is_err() {
                full = true;
                break;
            }
        }
        if !full && p.finish().is_err() {
            full = true;
        }
        let taken = p.raw_len() as usize;
        let pending = p.take_pending();
        if full {
            assert!(!pending.is_empty());
            assert_eq!(&data[taken..taken + pending.len()], &pending[..]);
        } else {
            assert!(pending.is_empty());
            assert_eq!(taken, data.len());
        }
        (p, taken)
    }

    #[test]
    fn compressible_data_packs_small_and_round_trips() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (p, taken) = pack(&data, 65_536, 16 << 20);
        assert_eq!(taken, data.len());
        assert!(p.packed_len() < data.len() / 20, "{}", p.packed_len());
        assert_eq!(unpack(&p.into_payload().unwrap()), data);
    }

    #[test]
    fn small_chunks_compress_as_well_as_blocks() {
        // The bytes of tests/bigkeys.rs: a 1.7 KiB period.
        let data: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 251 % 7) as u8)
            .collect();
        let (small, _) = pack(&data, 16_384, 16 << 20);
        let (whole, _) = pack(&data, 4 << 20, 16 << 20);
        assert!(small.packed_len() <= whole.packed_len() + whole.packed_len() / 10);
        assert!(
            small.packed_len() < data.len() / 15,
            "{}",
            small.packed_len()
        );
        assert_eq!(unpack(&small.into_payload().unwrap()), data);
    }

    #[test]
    fn incompressible_data_is_not_packed() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Random bytes do not shrink: nothing is packed, even under the cap (the string goes
        // on by APPENDs, holding one chunk instead of up to the cap).
        let (p, taken) = pack(&data, 10_000, 100_000);
        assert_eq!(taken, 0);
        assert!(p.into_payload().is_none());
        let (p, taken) = pack(&data[..90_000], 10_000, 1_000_000);
        assert_eq!(taken, 0);
        assert!(p.into_payload().is_none());
        // After a compressible start, the first block that does not shrink stops the packing:
        // what was packed stays a valid payload.
        let mut mixed = vec![b'a'; 20_000];
        mixed.extend_from_slice(&data[..20_000]);
        let (p, taken) = pack_blocks(&mixed, 10_000, 10_000, 1_000_000);
        assert_eq!(taken, 20_000);
        assert_eq!(unpack(&p.into_payload().unwrap()), &mixed[..taken]);
    }

    #[test]
    fn one_byte_and_empty() {
        let (p, _) = pack(b"x", 1, 100);
        assert_eq!(unpack(&p.into_payload().unwrap()), b"x");
        assert!(PackedString::new(100).into_payload().is_none());
        let mut p = PackedString::new(100);
        assert_eq!(p.push(b""), Ok(()));
        assert_eq!(p.push(&[7u8; 200]), Ok(()));
        assert_eq!(p.finish(), Ok(()));
        let distinct: Vec<u8> = (0..100).collect();
        assert_eq!(p.push(&distinct), Ok(()));
        assert_eq!(p.finish(), Err(Full));
        assert_eq!(p.take_pending(), distinct);
        assert_eq!(unpack(&p.into_payload().unwrap()), vec![7u8; 200]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any data in any chunk and block sizes: the blocks compressed one by one decode as
        /// one LZF string to the bytes packed, the rest is pending in order, and the payload
        /// stays within the cap.
        #[test]
        fn pieces_concatenate_into_one_lzf_string(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..5000),
                proptest::collection::vec(0u8..3, 1..20_000),
                (1usize..300, 1usize..40_000).prop_map(|(period, n)| {
                    (0..n).map(|i| (i % period) as u8).collect::<Vec<u8>>()
                }),
            ],
            chunk in 1usize..9000,
            block in 1usize..12_000,
            cap in 40usize..50_000,
        ) {
            let (p, taken) = pack_blocks(&data, chunk, block, cap);
            match p.into_payload() {
                None => prop_assert_eq!(taken, 0),
                Some(payload) => {
                    prop_assert!(payload.len() <= cap);
                    prop_assert_eq!(unpack(&payload), &data[..taken]);
                }
            }
        }
    }
}
