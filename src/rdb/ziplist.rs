//! Ziplists: the compact list encoding Redis used up to 6.2 for small lists, hashes and sorted
//! sets, and inside quicklist nodes (RDB 7–9).
//!
//! Layout: `zlbytes u32 | zltail u32 | zllen u16 | entries | 0xFF`, all little-endian. Each entry
//! is `prevlen | encoding | data`: prevlen is 1 byte, or 0xFE + u32 when ≥ 254; the encoding
//! selects a 6/14/32-bit-length string or an int16/int32/int64/int24/int8 or a 4-bit immediate
//! 0..=12. Every header field is checked against the blob (zlbytes, zltail, zllen, prevlen of
//! each entry, terminator), because a corrupt ziplist is how a damaged file usually shows itself.

use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::string::itoa;

/// One ziplist / listpack element: an integer or a byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem<'a> {
    /// Integer-encoded element.
    Int(i64),
    /// String element.
    Str(&'a [u8]),
}

impl Elem<'_> {
    /// The element as Redis returns it: integers as decimal text.
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Elem::Int(i) => itoa(*i),
            Elem::Str(s) => s.to_vec(),
        }
    }

    /// The element as an integer, if it is one (or a string holding a canonical integer).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Elem::Int(i) => Some(*i),
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }
}

const WHAT: &str = "ziplist";

/// Parse and validate a ziplist blob.
pub fn parse(blob: &[u8]) -> Result<Vec<Elem<'_>>> {
    let mut c = Cursor::new(blob, 0);
    let zlbytes = c.u32_le("ziplist zlbytes")?;
    let zltail = c.u32_le("ziplist zltail")?;
    let zllen = c.u16_le("ziplist zllen")?;
    if zlbytes as usize != blob.len() {
        return Err(RdbError::corrupt(
            0,
            WHAT,
            format!("zlbytes {zlbytes} but the blob has {} bytes", blob.len()),
        ));
    }
    let mut out = Vec::with_capacity(usize::from(zllen).min(blob.len()));
    let mut prev_len: u64 = 0;
    let mut last_start: u64 = 10;
    loop {
        let start = c.offset();
        let first = c.u8("ziplist entry or terminator")?;
        if first == 0xFF {
            break;
        }
        let prevlen = if first == 0xFE {
            u64::from(c.u32_le("ziplist 5-byte prevlen")?)
        } else {
            u64::from(first)
        };
        if prevlen != prev_len {
            return Err(RdbError::corrupt(
                start,
                WHAT,
                format!("entry prevlen {prevlen} but the previous entry is {prev_len} bytes"),
            ));
        }
        let enc_at = c.offset();
        let enc = c.u8("ziplist entry encoding")?;
        let elem = match enc >> 6 {
            0 => Elem::Str(c.take(usize::from(enc & 0x3F), "ziplist string")?),
            1 => {
                let b = c.u8("ziplist 14-bit length")?;
                let n = (usize::from(enc & 0x3F) << 8) | usize::from(b);
                Elem::Str(c.take(n, "ziplist string")?)
            }
            2 => {
                if enc != 0x80 {
                    return Err(bad_encoding(enc_at, WHAT, enc));
                }
                let n = u32::from_be_bytes(c.array("ziplist 32-bit length")?);
                Elem::Str(c.take(n as usize, "ziplist string")?)
            }
            _ => match enc {
                0xC0 => Elem::Int(i64::from(c.u16_le("ziplist int16")? as i16)),
                0xD0 => Elem::Int(i64::from(c.u32_le("ziplist int32")? as i32)),
                0xE0 => Elem::Int(c.i64_le("ziplist int64")?),
                0xF0 => Elem::Int(c.i24_le("ziplist int24")?),
                0xFE => Elem::Int(i64::from(c.u8("ziplist int8")? as i8)),
                0xF1..=0xFD => Elem::Int(i64::from(enc & 0x0F) - 1),
                _ => return Err(bad_encoding(enc_at, WHAT, enc)),
            },
        };
        prev_len = c.offset() - start;
        last_start = start;
        out.push(elem);
    }
    if u64::from(zltail) != last_start {
        return Err(RdbError::corrupt(
            4,
            WHAT,
            format!("zltail {zltail} but the last entry starts at {last_start}"),
        ));
    }
    check_end(&c, WHAT, ("zllen", 8, zllen), out.len())?;
    Ok(out)
}

/// The entry count from the header, if the blob is long enough and the count is not saturated.
pub fn header_count(blob: &[u8]) -> Option<u16> {
    count_at(blob, 8)
}

/// The u16 element count at `at` of a ziplist or listpack header, unless saturated (65535:
/// too many to count, the entries must be walked).
pub(super) fn count_at(blob: &[u8], at: usize) -> Option<u16> {
    let n = u16::from_le_bytes([*blob.get(at)?, *blob.get(at + 1)?]);
    (n != u16::MAX).then_some(n)
}

/// The checks after a ziplist's or listpack's terminator: it is the last byte, and the header's
/// count (`name`, at offset `at`; 65535 means not counted) matches the `found` entries.
pub(super) fn check_end(
    c: &Cursor,
    what: &'static str,
    (name, at, count): (&str, u64, u16),
    found: usize,
) -> Result<()> {
    if !c.is_empty() {
        return Err(RdbError::corrupt(
            c.offset(),
            what,
            format!("{} bytes after the terminator", c.remaining()),
        ));
    }
    if count != u16::MAX && usize::from(count) != found {
        return Err(RdbError::corrupt(
            at,
            what,
            format!("{name} {count} but {found} entries found"),
        ));
    }
    Ok(())
}

/// The error for an entry encoding byte that is none of the format's.
pub(super) fn bad_encoding(at: u64, what: &'static str, enc: u8) -> RdbError {
    RdbError::corrupt(at, what, format!("bad encoding 0x{enc:02x}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a ziplist from string entries (test helper).
    pub fn build(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut last = 10usize;
        for e in entries {
            let start = body.len();
            last = 10 + start;
            if prev < 254 {
                body.push(prev as u8);
            } else {
                body.push(0xFE);
                body.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            assert!(e.len() < 64);
            body.push(e.len() as u8);
            body.extend_from_slice(e);
            prev = body.len() - start;
        }
        let total = 10 + body.len() + 1;
        let mut z = Vec::new();
        z.extend_from_slice(&(total as u32).to_le_bytes());
        z.extend_from_slice(&(last as u32).to_le_bytes());
        z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xFF);
        z
    }

    #[test]
    fn parse_built() {
        let z = build(&[b"a", b"bc", b""]);
        let e = parse(&z).unwrap();
        assert_eq!(e, vec![Elem::Str(b"a"), Elem::Str(b"bc"), Elem::Str(b"")]);
        let mut bad = z.clone();
        bad[8] = 5;
        assert!(parse(&bad).is_err());
        assert!(parse(&z[..z.len() - 1]).is_err());
    }

    #[test]
    fn integer_encodings() {
        // prevlen 0, int8 -1 ; prevlen 3, imm 12 ; prevlen 2, int24 -2
        let body = [0u8, 0xFE, 0xFF, 3, 0xFD, 2, 0xF0, 0xFE, 0xFF, 0xFF];
        let mut z = Vec::new();
        z.extend_from_slice(&((10 + body.len() + 1) as u32).to_le_bytes());
        z.extend_from_slice(&(15u32).to_le_bytes());
        z.extend_from_slice(&3u16.to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xFF);
        assert_eq!(
            parse(&z).unwrap(),
            vec![Elem::Int(-1), Elem::Int(12), Elem::Int(-2)]
        );
    }
}
