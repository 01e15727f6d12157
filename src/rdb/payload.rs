//! DUMP payloads: the byte format `DUMP` returns and `RESTORE` accepts.
//!
//! A payload is `type byte | value bytes | RDB version (u16 LE) | CRC64 (u64 LE)`, the CRC
//! covering everything before it. The value bytes are exactly what an RDB file stores after the
//! key, which is why the file reader can turn a file record into a payload without decoding it.
//! The version tells the target which encodings it must understand; a server refuses payloads
//! newer than its own RDB version.

use bytes::{BufMut, Bytes, BytesMut};

use super::crc64;
use super::error::{RdbError, Result};
use super::types;

/// Bytes after the value: 2-byte version + 8-byte CRC.
pub const FOOTER_LEN: usize = 10;

/// Build a payload from a type byte, raw value bytes and the RDB version to put in the footer.
pub fn build(type_byte: u8, value_bytes: &[u8], rdb_version: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + value_bytes.len() + FOOTER_LEN);
    b.put_u8(type_byte);
    b.put_slice(value_bytes);
    b.put_u16_le(rdb_version);
    let crc = crc64::checksum(&b);
    b.put_u64_le(crc);
    b.freeze()
}

/// Split a payload into type byte, value bytes and footer version, verifying the CRC64 and that
/// the version is one this crate understands. A payload whose CRC is all zeros is accepted as
/// "checksum not computed", as Redis does.
pub fn split(payload: &[u8]) -> Result<(u8, &[u8], u16)> {
    if payload.len() < 1 + FOOTER_LEN {
        return Err(RdbError::Truncated {
            offset: payload.len() as u64,
            expected: format!(
                "a DUMP payload of at least {} bytes (type + footer), got {}",
                1 + FOOTER_LEN,
                payload.len()
            )
            .into(),
        });
    }
    let crc_at = payload.len() - 8;
    let ver_at = crc_at - 2;
    let (body, crc_bytes) = payload.split_at(crc_at);
    let stored = u64::from_le_bytes(crc_bytes.try_into().map_err(|_| RdbError::Truncated {
        offset: crc_at as u64,
        expected: "payload CRC64".into(),
    })?);
    if stored != 0 {
        let computed = crc64::checksum(body);
        if computed != stored {
            return Err(RdbError::CrcMismatch {
                offset: crc_at as u64,
                stored,
                computed,
            });
        }
    }
    let (rest, ver_bytes) = body.split_at(ver_at);
    let version = u16::from_le_bytes([
        ver_bytes.first().copied().unwrap_or(0),
        ver_bytes.get(1).copied().unwrap_or(0),
    ]);
    if !types::version_supported(version) {
        return Err(RdbError::UnsupportedVersion {
            offset: ver_at as u64,
            version: u32::from(version),
        });
    }
    let (type_byte, value) = rest.split_first().ok_or(RdbError::Truncated {
        offset: 0,
        expected: "payload type byte".into(),
    })?;
    Ok((*type_byte, value, version))
}

/// The RDB version in a payload's footer, without verifying anything.
pub fn footer_version(payload: &[u8]) -> Option<u16> {
    let n = payload.len();
    if n < 1 + FOOTER_LEN {
        return None;
    }
    Some(u16::from_le_bytes([
        *payload.get(n - 10)?,
        *payload.get(n - 9)?,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdb_single_key_payload() {
        // From librdb's test_rdb_to_resp.c: single_key.rdb RESTORE payload for Redis 7.2.
        let want = [
            0x00, 0xc0, 0x6f, 0x0b, 0x00, 0xa6, 0x11, 0x98, 0xb1, 0x42, 0x3e, 0x16, 0x7d,
        ];
        assert_eq!(build(0, &[0xc0, 0x6f], 11).as_ref(), &want);
        let (t, v, ver) = split(&want).unwrap();
        assert_eq!((t, v, ver), (0, &[0xc0, 0x6f][..], 11));
    }

    #[test]
    fn split_errors() {
        let mut p = build(0, b"\x01a", 9).to_vec();
        assert!(matches!(split(&p[..5]), Err(RdbError::Truncated { .. })));
        let n = p.len();
        p[1] ^= 1;
        assert!(
            matches!(split(&p), Err(RdbError::CrcMismatch { offset, .. }) if offset == (n - 8) as u64)
        );
        let p = build(0, b"\x01a", 99);
        assert!(matches!(
            split(&p),
            Err(RdbError::UnsupportedVersion { version: 99, .. })
        ));
    }
}
