//! LZF decompression with the checks RDB input needs.
//!
//! An RDB LZF string declares both its compressed and its uncompressed length. The declared
//! uncompressed length comes from the input, so it is checked against what LZF can physically
//! produce from the compressed bytes *before* the output buffer is allocated (LZF expands at most
//! 88 times: a 3-byte back reference yields 264 bytes), and the result must have exactly the
//! declared length.

use super::error::{RdbError, Result};

/// Largest output LZF can produce per input byte.
pub const MAX_EXPANSION: u64 = 88;

/// Decompress `compressed`, which must expand to exactly `declared_len` bytes. `offset` is where
/// the compressed string starts, for errors.
pub fn decompress(compressed: &[u8], declared_len: u64, offset: u64) -> Result<Vec<u8>> {
    let bound = (compressed.len() as u64).saturating_mul(MAX_EXPANSION);
    if declared_len > bound {
        return Err(RdbError::BadLzf {
            offset,
            reason: format!(
                "declared uncompressed length {declared_len} is impossible for {} compressed bytes",
                compressed.len()
            ),
        });
    }
    if declared_len == 0 {
        return Err(RdbError::BadLzf {
            offset,
            reason: "declared uncompressed length is 0".into(),
        });
    }
    let want = usize::try_from(declared_len).map_err(|_| RdbError::BadLzf {
        offset,
        reason: format!("declared uncompressed length {declared_len} does not fit in memory"),
    })?;
    let out = lzf::decompress(compressed, want).map_err(|e| RdbError::BadLzf {
        offset,
        reason: e.to_string(),
    })?;
    if out.len() != want {
        return Err(RdbError::BadLzf {
            offset,
            reason: format!("decompressed to {} bytes, declared {want}", out.len()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let data = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let c = lzf::compress(data).unwrap();
        assert_eq!(decompress(&c, data.len() as u64, 0).unwrap(), data);
        assert!(matches!(
            decompress(&c, data.len() as u64 + 1, 7),
            Err(RdbError::BadLzf { offset: 7, .. })
        ));
        assert!(decompress(&c, data.len() as u64 - 1, 0).is_err());
        assert!(decompress(&c, u64::MAX, 0).is_err());
        assert!(decompress(&[0xFF, 0xFF], 100, 0).is_err());
        assert!(decompress(&[], 1, 0).is_err());
    }
}
