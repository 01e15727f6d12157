//! RDB length encoding: the variable-size integer in front of every string and count.
//!
//! The top two bits of the first byte select the form: `00` 6-bit length, `01` 14-bit
//! big-endian length, `10` followed by `000000` a 32-bit and `000001` a 64-bit big-endian
//! length, and `11` a *special encoding* whose low six bits say how the string that follows is
//! stored (8/16/32-bit little-endian integer, or LZF). Lengths are also how counts, stream IDs and
//! most metadata numbers are written.

use super::cursor::Cursor;
use super::error::{RdbError, Result};

/// `11xxxxxx` special encoding: 8-bit signed integer string.
pub const ENC_INT8: u8 = 0;
/// `11xxxxxx` special encoding: 16-bit signed integer string.
pub const ENC_INT16: u8 = 1;
/// `11xxxxxx` special encoding: 32-bit signed integer string.
pub const ENC_INT32: u8 = 2;
/// `11xxxxxx` special encoding: LZF-compressed string.
pub const ENC_LZF: u8 = 3;

/// A decoded length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    /// A plain length or number.
    Plain(u64),
    /// A special string encoding (one of the `ENC_*` constants).
    Special(u8),
}

impl Len {
    /// The plain length; a special encoding (read at `at`) where a length must be is corruption.
    pub fn plain(self, at: u64, what: &'static str) -> Result<u64> {
        match self {
            Len::Plain(n) => Ok(n),
            Len::Special(e) => Err(RdbError::corrupt(
                at,
                what,
                format!("expected a plain length, found special encoding {e}"),
            )),
        }
    }
}

/// How many more bytes follow a length field whose first byte is `first`, or `None` if the
/// first byte is invalid (`10` prefix other than 0x80/0x81).
pub fn extra_bytes(first: u8) -> Option<usize> {
    match first >> 6 {
        0 | 3 => Some(0),
        1 => Some(1),
        _ => match first {
            0x80 => Some(4),
            0x81 => Some(8),
            _ => None,
        },
    }
}

/// Decode a length from its first byte and the `extra_bytes(first)` bytes after it.
pub fn decode(first: u8, extra: &[u8]) -> Option<Len> {
    match first >> 6 {
        0 => Some(Len::Plain(u64::from(first & 0x3F))),
        3 => Some(Len::Special(first & 0x3F)),
        1 => {
            let b = *extra.first()?;
            Some(Len::Plain((u64::from(first & 0x3F) << 8) | u64::from(b)))
        }
        _ => match (first, extra.len()) {
            (0x80, 4) => {
                let a: [u8; 4] = extra.try_into().ok()?;
                Some(Len::Plain(u64::from(u32::from_be_bytes(a))))
            }
            (0x81, 8) => {
                let a: [u8; 8] = extra.try_into().ok()?;
                Some(Len::Plain(u64::from_be_bytes(a)))
            }
            _ => None,
        },
    }
}

/// Read a length field (plain or special).
pub fn read_len(cur: &mut Cursor<'_>, what: &'static str) -> Result<Len> {
    let at = cur.offset();
    let first = cur.u8(what)?;
    let n = extra_bytes(first).ok_or_else(|| {
        RdbError::corrupt(
            at,
            what,
            format!("invalid length encoding byte 0x{first:02x}"),
        )
    })?;
    let extra = cur.take(n, what)?;
    decode(first, extra).ok_or_else(|| {
        RdbError::corrupt(
            at,
            what,
            format!("invalid length encoding byte 0x{first:02x}"),
        )
    })
}

/// Read a plain length (a special encoding here is corruption).
pub fn read_length(cur: &mut Cursor<'_>, what: &'static str) -> Result<u64> {
    let at = cur.offset();
    read_len(cur, what)?.plain(at, what)
}

/// Append the shortest encoding of `n` as a length field.
pub fn write_length(out: &mut Vec<u8>, n: u64) {
    if n < (1 << 6) {
        out.push(n as u8);
    } else if n < (1 << 14) {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if let Ok(n32) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n32.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_widths() {
        for n in [
            0u64,
            1,
            63,
            64,
            16383,
            16384,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            u64::MAX,
        ] {
            let mut v = Vec::new();
            write_length(&mut v, n);
            let mut c = Cursor::new(&v, 0);
            assert_eq!(read_length(&mut c, "t").unwrap(), n);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn special_and_invalid() {
        let mut c = Cursor::new(&[0xC3], 0);
        assert_eq!(read_len(&mut c, "t").unwrap(), Len::Special(ENC_LZF));
        let mut c = Cursor::new(&[0x82], 0);
        assert!(matches!(
            read_len(&mut c, "t"),
            Err(RdbError::Corrupt { offset: 0, .. })
        ));
        let mut c = Cursor::new(&[0x80, 1], 5);
        assert!(matches!(
            read_len(&mut c, "t"),
            Err(RdbError::LengthPastEnd { offset: 6, .. })
        ));
    }
}
