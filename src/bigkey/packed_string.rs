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
//! back-reference to output already produced (at most 8 KiB back) — so chunks compressed one by
//! one, each referring only to its own bytes, concatenate into one valid LZF stream. A chunk LZF
//! cannot shrink is written as literal runs (1 byte more per 32). Memory is the compressed bytes
//! so far, bounded by the cap [`PackedString::new`] is given: [`PackedString::push`] refuses a
//! chunk as soon as the payload would pass it, and the caller decides what happens then (see
//! `copy.rs`: the packed prefix is restored and the rest appended, which the target accepts while
//! the string stays within its limit).
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
/// memory whole (with the defaults, ferry's memory in flight is ~30 MiB; one packed string per
/// writer at most adds this).
pub const MAX_PACKED_BYTES: usize = 32 << 20;

/// The compressed bytes of a string so far (behind room for the header), and its length.
#[derive(Debug)]
pub struct PackedString {
    /// `HEADER_ROOM` bytes, then the LZF stream.
    buf: Vec<u8>,
    /// Bytes of the string compressed so far.
    raw_len: u64,
    /// Largest payload allowed.
    cap: usize,
}

/// The chunk does not fit under the cap: nothing of it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl PackedString {
    /// An empty string whose payload must stay at most `cap` bytes.
    pub fn new(cap: usize) -> PackedString {
        let mut buf = Vec::with_capacity(HEADER_ROOM + 4096);
        buf.resize(HEADER_ROOM, 0);
        PackedString {
            buf,
            raw_len: 0,
            cap,
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

    /// Compresses `piece` (the string's next bytes) onto the end; [`Full`], with nothing added,
    /// when the payload would then pass the cap.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), Full> {
        let before = self.buf.len();
        let room = self.cap.saturating_sub(before + FOOTER_LEN);
        if piece.is_empty() {
            return Ok(());
        }
        match lzf::compress(piece) {
            Ok(c) if c.len() <= room => self.buf.extend_from_slice(&c),
            Ok(_) => return Err(Full),
            // LZF cannot shrink it (or it is 1 byte): literal runs.
            Err(_) if literal_len(piece.len()) <= room => push_literals(&mut self.buf, piece),
            Err(_) => return Err(Full),
        }
        self.raw_len += piece.len() as u64;
        Ok(())
    }

    /// The `RESTORE` payload of the string packed so far (`None` when nothing was).
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
        let mut r = crate::rdb::elements::ElementReader::new(value, t, 0, value.len() as u64)
            .unwrap();
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

    fn pack(data: &[u8], chunk: usize, cap: usize) -> (PackedString, usize) {
        let mut p = PackedString::new(cap);
        let mut taken = 0;
        for piece in data.chunks(chunk.max(1)) {
            if p.push(piece).is_err() {
                break;
            }
            taken += piece.len();
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
    fn incompressible_data_is_literal_runs_and_stops_at_the_cap() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (p, taken) = pack(&data, 10_000, 100_000);
        assert!(taken < 100_000 && taken > 80_000, "{taken}");
        let payload = p.into_payload().unwrap();
        assert!(payload.len() <= 100_000);
        assert_eq!(unpack(&payload), &data[..taken]);
    }

    #[test]
    fn one_byte_and_empty() {
        let (p, _) = pack(b"x", 1, 100);
        assert_eq!(unpack(&p.into_payload().unwrap()), b"x");
        assert!(PackedString::new(100).into_payload().is_none());
        let mut p = PackedString::new(100);
        assert_eq!(p.push(b""), Ok(()));
        assert_eq!(p.push(&[7u8; 200]), Ok(()));
        let distinct: Vec<u8> = (0..100).collect();
        assert_eq!(p.push(&distinct), Err(Full));
        assert_eq!(unpack(&p.into_payload().unwrap()), vec![7u8; 200]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any data in any chunk sizes: the concatenated pieces decode to the bytes taken, and
        /// the payload stays within the cap.
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
            cap in 40usize..50_000,
        ) {
            let (p, taken) = pack(&data, chunk, cap);
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
