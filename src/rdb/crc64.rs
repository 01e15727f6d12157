//! CRC64 as Redis computes it (Jones polynomial, reflected, `CRC_64_REDIS` in the `crc` crate).
//!
//! It guards both DUMP payloads (last 8 bytes, little-endian, over everything before them) and
//! whole RDB files (8 bytes after the EOF opcode, over everything before them; all zeros means
//! "not computed"). The slice-by-16 table is used because the file reader runs every byte of a
//! multi-gigabyte file through it. A running checksum can be saved and resumed ([`Crc64::state`],
//! [`Crc64::resume`]), which is what lets a reader restart mid-file and still verify the trailer.

use crc::{Crc, Digest, Table, CRC_64_REDIS};

static CRC: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// CRC64 of `bytes`.
pub fn checksum(bytes: &[u8]) -> u64 {
    CRC.checksum(bytes)
}

/// An incremental CRC64.
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest<'static, u64, Table<16>>,
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:#018x})", self.state())
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    /// A fresh checksum (of zero bytes).
    pub fn new() -> Self {
        Crc64 {
            digest: CRC.digest(),
        }
    }

    /// Continue a checksum whose value so far was `state` (as returned by [`Crc64::state`]).
    pub fn resume(state: u64) -> Self {
        // CRC_64_REDIS is reflected in and out with xorout 0, so the finalized value equals the
        // internal register; `digest_with_initial` reflects its argument, so undo that.
        Crc64 {
            digest: CRC.digest_with_initial(state.reverse_bits()),
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The checksum of everything fed so far.
    pub fn state(&self) -> u64 {
        self.digest.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // The check value from Redis' crc64.c test: crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
        assert_eq!(checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn resume_matches_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 17, 500, 1000] {
            let mut a = Crc64::new();
            a.update(&data[..split]);
            let mut b = Crc64::resume(a.state());
            b.update(&data[split..]);
            assert_eq!(b.state(), checksum(&data));
        }
    }
}
