//! Listpacks: the compact encoding that replaced ziplists in Redis 7 (and holds stream entries
//! since Redis 5).
//!
//! Layout: `total bytes u32 | element count u16 (65535 = unknown) | entries | 0xFF`. Each entry
//! is `encoding+data | backlen`, where backlen is the size of `encoding+data` written in 1–5 bytes
//! so the list can be walked backwards. Encodings: 7-bit uint, 6/12/32-bit-length strings,
//! 13/16/24/32/64-bit signed integers. The parser checks the total, the count, every backlen and
//! the terminator. A small writer is included for the encoder (stream nodes, tests).

use super::cursor::Cursor;
use super::error::{RdbError, Result};
pub use super::ziplist::Elem;
use super::ziplist::{bad_encoding, check_end, count_at};

const WHAT: &str = "listpack";

/// Parse and validate a listpack blob.
pub fn parse(blob: &[u8]) -> Result<Vec<Elem<'_>>> {
    let mut c = Cursor::new(blob, 0);
    let total = c.u32_le("listpack total bytes")?;
    let count = c.u16_le("listpack element count")?;
    if total as usize != blob.len() {
        return Err(RdbError::corrupt(
            0,
            WHAT,
            format!("total bytes {total} but the blob has {} bytes", blob.len()),
        ));
    }
    let mut out = Vec::with_capacity(usize::from(count).min(blob.len()));
    loop {
        let start = c.offset();
        let enc = c.u8("listpack entry or terminator")?;
        if enc == 0xFF {
            break;
        }
        let elem = if enc & 0x80 == 0 {
            Elem::Int(i64::from(enc & 0x7F))
        } else if enc & 0xC0 == 0x80 {
            Elem::Str(c.take(usize::from(enc & 0x3F), "listpack 6-bit string")?)
        } else if enc & 0xE0 == 0xC0 {
            let b = c.u8("listpack 13-bit int")?;
            let u = (i64::from(enc & 0x1F) << 8) | i64::from(b);
            Elem::Int(if u >= 1 << 12 { u - (1 << 13) } else { u })
        } else if enc & 0xF0 == 0xE0 {
            let b = c.u8("listpack 12-bit string length")?;
            let n = (usize::from(enc & 0x0F) << 8) | usize::from(b);
            Elem::Str(c.take(n, "listpack 12-bit string")?)
        } else {
            match enc {
                0xF0 => {
                    let n = c.u32_le("listpack 32-bit string length")?;
                    Elem::Str(c.take(n as usize, "listpack 32-bit string")?)
                }
                0xF1 => Elem::Int(i64::from(c.u16_le("listpack int16")? as i16)),
                0xF2 => Elem::Int(c.i24_le("listpack int24")?),
                0xF3 => Elem::Int(i64::from(c.u32_le("listpack int32")? as i32)),
                0xF4 => Elem::Int(c.i64_le("listpack int64")?),
                _ => return Err(bad_encoding(start, WHAT, enc)),
            }
        };
        let entry_len = c.offset() - start;
        let back_at = c.offset();
        let want = backlen_bytes(entry_len);
        let got = c.take(want.len(), "listpack backlen")?;
        if got != want.as_slice() {
            return Err(RdbError::corrupt(
                back_at,
                WHAT,
                format!("backlen does not match the entry size {entry_len}"),
            ));
        }
        out.push(elem);
    }
    check_end(&c, WHAT, ("header count", 4, count), out.len())?;
    Ok(out)
}

/// The element count from the header, if present and not saturated.
pub fn header_count(blob: &[u8]) -> Option<u16> {
    count_at(blob, 4)
}

/// The backlen encoding of an entry of `len` bytes (encoding + data).
fn backlen_bytes(len: u64) -> Vec<u8> {
    let l = len;
    if l <= 127 {
        vec![l as u8]
    } else if l < 16383 {
        vec![(l >> 7) as u8, ((l & 127) | 128) as u8]
    } else if l < 2_097_151 {
        vec![
            (l >> 14) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]
    } else if l < 268_435_455 {
        vec![
            (l >> 21) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]
    } else {
        vec![
            (l >> 28) as u8,
            (((l >> 21) & 127) | 128) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]
    }
}

/// Builds a listpack.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    body: Vec<u8>,
    count: usize,
}

impl Writer {
    /// An empty listpack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of elements so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if no element was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size the finished listpack would have.
    pub fn byte_len(&self) -> usize {
        6 + self.body.len() + 1
    }

    /// Append an integer element (smallest encoding).
    pub fn push_int(&mut self, v: i64) {
        let start = self.body.len();
        if (0..=127).contains(&v) {
            self.body.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = if v < 0 { v + (1 << 13) } else { v } as u16;
            self.body.push(0xC0 | (u >> 8) as u8);
            self.body.push(u as u8);
        } else if let Ok(x) = i16::try_from(v) {
            self.body.push(0xF1);
            self.body.extend_from_slice(&x.to_le_bytes());
        } else if (-(1 << 23)..(1 << 23)).contains(&v) {
            self.body.push(0xF2);
            self.body.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            self.body.push(0xF3);
            self.body.extend_from_slice(&x.to_le_bytes());
        } else {
            self.body.push(0xF4);
            self.body.extend_from_slice(&v.to_le_bytes());
        }
        self.finish_entry(start);
    }

    /// Append a string element (always string-encoded, so bytes round-trip exactly).
    pub fn push_str(&mut self, s: &[u8]) {
        let start = self.body.len();
        let n = s.len();
        if n < 64 {
            self.body.push(0x80 | n as u8);
        } else if n < 4096 {
            self.body.push(0xE0 | (n >> 8) as u8);
            self.body.push(n as u8);
        } else {
            self.body.push(0xF0);
            self.body.extend_from_slice(&(n as u32).to_le_bytes());
        }
        self.body.extend_from_slice(s);
        self.finish_entry(start);
    }

    fn finish_entry(&mut self, start: usize) {
        let len = (self.body.len() - start) as u64;
        self.body.extend_from_slice(&backlen_bytes(len));
        self.count += 1;
    }

    /// The finished listpack bytes.
    pub fn finish(self) -> Vec<u8> {
        let total = self.byte_len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(self.count.min(usize::from(u16::MAX)) as u16).to_le_bytes());
        out.extend_from_slice(&self.body);
        out.push(0xFF);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_round_trip() {
        let ints = [
            0i64,
            127,
            128,
            -1,
            4095,
            -4096,
            4096,
            32767,
            -32768,
            1 << 20,
            -(1 << 23),
            1 << 30,
            i64::MIN,
            i64::MAX,
        ];
        let mut w = Writer::new();
        for &i in &ints {
            w.push_int(i);
        }
        let long = vec![b'z'; 5000];
        w.push_str(b"hello");
        w.push_str(&long[..200]);
        w.push_str(&long);
        let lp = w.finish();
        let parsed = parse(&lp).unwrap();
        let mut want: Vec<Elem<'_>> = ints.iter().map(|&i| Elem::Int(i)).collect();
        want.push(Elem::Str(b"hello"));
        want.push(Elem::Str(&long[..200]));
        want.push(Elem::Str(&long));
        assert_eq!(parsed, want);
    }

    #[test]
    fn corrupt_backlen() {
        let mut w = Writer::new();
        w.push_str(b"abc");
        let mut lp = w.finish();
        let n = lp.len();
        lp[n - 2] = 9;
        assert!(matches!(parse(&lp), Err(RdbError::Corrupt { .. })));
    }
}
