//! The hash slot of a key: which of a cluster's 16384 slots it lives in. Redis's own function:
//! CRC16/XMODEM of the key, or of its hash tag (the part between the first `{` and the next `}`,
//! when not empty), modulo 16384. The copy routes writes by it (`endpoint/slot_map.rs`), verification
//! buckets keys by it (`verify/bucket.rs`), `--partition` splits jobs by it.

use crc::{Crc, CRC_16_XMODEM};

use super::cluster::SLOTS;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

/// The part of `key` that is hashed: the hash tag when there is a non-empty one, else the key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
        // The CRC16/XMODEM check value (below 16384, so the modulo keeps it).
        assert_eq!(key_slot(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // Rules from the cluster specification: an empty tag hashes the whole key; the tag
        // ends at the first `}` after the first `{`.
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            CRC16.checksum(b"foo{}{bar}") % SLOTS
        );
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }
}
