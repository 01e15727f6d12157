//! Intsets: sorted arrays of integers that small all-integer sets are stored as.
//!
//! Layout: `encoding u32 (2, 4 or 8 = bytes per member) | length u32 | members`, little-endian,
//! strictly ascending. Members decode to their decimal text, which is what `SMEMBERS` returns.

use super::cursor::Cursor;
use super::error::{RdbError, Result};

/// Parse and validate an intset blob.
pub fn parse(blob: &[u8]) -> Result<Vec<i64>> {
    let mut c = Cursor::new(blob, 0);
    let enc = c.u32_le("intset encoding")?;
    let len = c.u32_le("intset length")?;
    if !matches!(enc, 2 | 4 | 8) {
        return Err(RdbError::corrupt(
            0,
            "intset",
            format!("bad encoding {enc}"),
        ));
    }
    let need = u64::from(len) * u64::from(enc);
    if need != c.remaining() as u64 {
        return Err(RdbError::corrupt(
            4,
            "intset",
            format!(
                "{len} members of {enc} bytes need {need} bytes, blob has {}",
                c.remaining()
            ),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let at = c.offset();
        let v = match enc {
            2 => i64::from(c.u16_le("intset member")? as i16),
            4 => i64::from(c.u32_le("intset member")? as i32),
            _ => c.i64_le("intset member")?,
        };
        if out.last().is_some_and(|&p| p >= v) {
            return Err(RdbError::corrupt(
                at,
                "intset",
                "members not strictly ascending",
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// The member count from the header.
pub fn header_count(blob: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(blob.get(4..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_16_and_errors() {
        let mut b = vec![2, 0, 0, 0, 3, 0, 0, 0];
        for v in [-5i16, 1, 300] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(parse(&b).unwrap(), vec![-5, 1, 300]);
        assert!(parse(&b[..b.len() - 1]).is_err());
        let mut unsorted = b.clone();
        unsorted.swap(8, 10);
        unsorted.swap(9, 11);
        assert!(parse(&unsorted).is_err());
    }
}
