//! Zipmaps: the hash encoding of Redis ≤ 2.4, still found in old RDB files (types 9).
//!
//! Layout: `zmlen u8 | (len key len free value padding)* | 0xFF`. A length is one byte below
//! 254, or 254 followed by a 4-byte little-endian length; `free` is one byte counting unused
//! padding bytes after the value.

use super::cursor::Cursor;
use super::error::{RdbError, Result};

fn read_len(c: &mut Cursor<'_>, first: u8) -> Result<usize> {
    match first {
        0..=253 => Ok(usize::from(first)),
        254 => Ok(c.u32_le("zipmap 5-byte length")? as usize),
        _ => Err(RdbError::corrupt(
            c.offset(),
            "zipmap",
            "unexpected end marker",
        )),
    }
}

/// Parse a zipmap into field/value pairs.
pub fn parse(blob: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let mut c = Cursor::new(blob, 0);
    let _zmlen = c.u8("zipmap length")?;
    let mut out = Vec::new();
    loop {
        let b = c.u8("zipmap entry or terminator")?;
        if b == 0xFF {
            break;
        }
        let klen = read_len(&mut c, b)?;
        let key = c.take(klen, "zipmap key")?;
        let vb = c.u8("zipmap value length")?;
        let vlen = read_len(&mut c, vb)?;
        let free = c.u8("zipmap free byte count")?;
        let value = c.take(vlen, "zipmap value")?;
        c.take(usize::from(free), "zipmap free space")?;
        out.push((key, value));
    }
    if !c.is_empty() {
        return Err(RdbError::corrupt(
            c.offset(),
            "zipmap",
            format!("{} bytes after the terminator", c.remaining()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_small() {
        let b = [2, 1, b'a', 2, 1, b'x', b'y', 0, 1, b'b', 0, 0, 0xFF];
        assert_eq!(
            parse(&b).unwrap(),
            vec![(&b"a"[..], &b"xy"[..]), (&b"b"[..], &b""[..])]
        );
        assert!(parse(&b[..5]).is_err());
    }
}
