//! RDB strings: the length-prefixed byte strings that keys, values and blobs are stored as.
//!
//! A string is either raw (length + bytes), an integer written in 1, 2 or 4 little-endian bytes
//! (decoded to its decimal text, which is what Redis returns for it), or LZF-compressed
//! (compressed length, uncompressed length, compressed bytes). Readers return a [`RdbStr`] that
//! borrows raw bytes and owns decoded ones, and remembers where the string started and whether it
//! was compressed, so blob decoders can report errors at a meaningful offset.

use std::borrow::Cow;

use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::length::{self, Len, ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use super::lzf;

/// A string read from RDB input.
#[derive(Debug, Clone)]
pub struct RdbStr<'a> {
    /// The string's bytes (decompressed / integer text if it was encoded).
    pub bytes: Cow<'a, [u8]>,
    /// Offset of the string's length header.
    pub offset: u64,
    /// Offset of the first data byte, when the data is stored uncompressed.
    pub data_offset: u64,
    /// True if the string was LZF-compressed.
    pub compressed: bool,
}

impl RdbStr<'_> {
    /// Map an error found inside this string's bytes (with offsets relative to its first byte)
    /// into an error of the enclosing input.
    pub fn map_inner_err(&self, e: RdbError) -> RdbError {
        if !self.compressed {
            return e.rebase(self.data_offset);
        }
        let inner = e.offset().unwrap_or(0);
        RdbError::Corrupt {
            offset: self.offset,
            what: "LZF-compressed blob",
            reason: format!("at decompressed offset {inner}: {e}"),
        }
    }

    /// Take the bytes as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes.into_owned()
    }
}

/// Read one string.
pub fn read_string<'a>(cur: &mut Cursor<'a>, what: &'static str) -> Result<RdbStr<'a>> {
    let offset = cur.offset();
    match length::read_len(cur, what)? {
        Len::Plain(n) => {
            let data_offset = cur.offset();
            let b = cur.take_u64(n, what)?;
            Ok(RdbStr {
                bytes: Cow::Borrowed(b),
                offset,
                data_offset,
                compressed: false,
            })
        }
        Len::Special(enc) => {
            let bytes = match enc {
                ENC_INT8 => {
                    let v = cur.u8(what)? as i8;
                    itoa(i64::from(v))
                }
                ENC_INT16 => itoa(i64::from(cur.u16_le(what)? as i16)),
                ENC_INT32 => itoa(i64::from(cur.u32_le(what)? as i32)),
                ENC_LZF => {
                    let clen = length::read_length(cur, "LZF compressed length")?;
                    let ulen = length::read_length(cur, "LZF uncompressed length")?;
                    let data = cur.take_u64(clen, "LZF compressed data")?;
                    lzf::decompress(data, ulen, offset)?
                }
                other => {
                    return Err(RdbError::corrupt(
                        offset,
                        what,
                        format!("unknown string encoding {other}"),
                    ))
                }
            };
            Ok(RdbStr {
                bytes: Cow::Owned(bytes),
                offset,
                data_offset: cur.offset(),
                compressed: enc == ENC_LZF,
            })
        }
    }
}

/// Read one string into an owned vector.
pub fn read_bytes(cur: &mut Cursor<'_>, what: &'static str) -> Result<Vec<u8>> {
    Ok(read_string(cur, what)?.into_vec())
}

/// Append `s` as a raw (length-prefixed, uncompressed) string.
pub fn write_raw(out: &mut Vec<u8>, s: &[u8]) {
    length::write_length(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Decimal text of an integer.
pub fn itoa(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_encodings() {
        for (bytes, want) in [
            (&[0xC0, 0x80][..], "-128"),
            (&[0xC1, 0x00, 0x80][..], "-32768"),
            (&[0xC2, 0xFF, 0xFF, 0xFF, 0x7F][..], "2147483647"),
        ] {
            let mut c = Cursor::new(bytes, 0);
            assert_eq!(
                read_string(&mut c, "t").unwrap().bytes.as_ref(),
                want.as_bytes()
            );
            assert!(c.is_empty());
        }
    }

    #[test]
    fn lzf_string() {
        let data = vec![b'x'; 200];
        let comp = ::lzf::compress(&data).unwrap();
        let mut v = vec![0xC3];
        length::write_length(&mut v, comp.len() as u64);
        length::write_length(&mut v, 200);
        v.extend_from_slice(&comp);
        let mut c = Cursor::new(&v, 0);
        let s = read_string(&mut c, "t").unwrap();
        assert!(s.compressed);
        assert_eq!(s.bytes.as_ref(), &data[..]);
    }

    #[test]
    fn raw_past_end() {
        let mut c = Cursor::new(&[0x05, b'a'], 10);
        assert!(matches!(
            read_string(&mut c, "t"),
            Err(RdbError::LengthPastEnd {
                offset: 11,
                len: 5,
                ..
            })
        ));
    }
}
