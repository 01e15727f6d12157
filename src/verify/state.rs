//! One key as verification sees it: its kind, the canonical digest of its value, and its
//! absolute expiry — 33 bytes, whatever the size of the value.
//!
//! Both sides turn what they read (a DUMP payload and an expiry, from a live server or, later, an
//! RDB file) into a [`KeyState`] with [`KeyState::from_payload`], so everything after this point
//! compares small fixed-size states and never holds a value.

use super::digest::{digest_raw_payload, digest_value, Digest, Kind};

/// The canonical state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// What the key holds.
    pub kind: Kind,
    /// Canonical digest of the value (see `digest.rs`).
    pub digest: Digest,
    /// Absolute expiry in Unix ms on *this machine's* clock (each side's clock skew removed);
    /// `None` for a key without TTL.
    pub expire_at_ms: Option<i64>,
}

impl KeyState {
    /// Decodes a DUMP payload (any RDB version) into its state. A payload that cannot be decoded
    /// is kept as [`Kind::Undecodable`] with a digest of its raw bytes, and the reason returned,
    /// so it is reported rather than silently skipped.
    pub fn from_payload(payload: &[u8], expire_at_ms: Option<i64>) -> (KeyState, Option<String>) {
        match crate::rdb::decode_payload(payload) {
            Ok(value) => (
                KeyState {
                    kind: Kind::of(&value),
                    digest: digest_value(&value),
                    expire_at_ms,
                },
                None,
            ),
            Err(e) => (
                KeyState {
                    kind: Kind::Undecodable,
                    digest: digest_raw_payload(payload),
                    expire_at_ms,
                },
                Some(e.to_string()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::Value;

    #[test]
    fn payloads_of_different_versions_agree() {
        let v = Value::Set(vec![b"1".to_vec(), b"2".to_vec(), b"x".to_vec()]);
        let old = crate::rdb::encode::encode_value(&v, 7).expect("encode rdb 7");
        let new = crate::rdb::encode::encode_value(&v, 11).expect("encode rdb 11");
        let (a, ea) = KeyState::from_payload(&old, Some(5));
        let (b, eb) = KeyState::from_payload(&new, Some(5));
        assert!(ea.is_none() && eb.is_none());
        assert_eq!(a, b);
        assert_eq!(a.kind, Kind::Set);
    }

    #[test]
    fn scores_one_and_one_point_zero_agree_across_encodings() {
        use crate::rdb::payload::build;
        use crate::rdb::types::{ZSET, ZSET_2};
        // RDB < 8 text scores "1" and "1.0", and an RDB 9 binary double 1.0.
        let text_1 = build(ZSET, b"\x01\x01m\x011", 7);
        let text_1_0 = build(ZSET, b"\x01\x01m\x031.0", 7);
        let mut bin = b"\x01\x01m".to_vec();
        bin.extend_from_slice(&1.0f64.to_le_bytes());
        let binary = build(ZSET_2, &bin, 9);
        let listpack =
            crate::rdb::encode::encode_value(&Value::ZSet(vec![(b"m".to_vec(), 1.0)]), 11)
                .expect("encode rdb 11");
        let states: Vec<KeyState> = [&text_1, &text_1_0, &binary, &listpack]
            .iter()
            .map(|p| {
                let (s, err) = KeyState::from_payload(p, None);
                assert!(err.is_none(), "{err:?}");
                s
            })
            .collect();
        assert!(states.windows(2).all(|w| w[0] == w[1]), "{states:?}");
        let other = build(ZSET, b"\x01\x01m\x031.5", 7);
        assert_ne!(KeyState::from_payload(&other, None).0, states[0]);
    }

    #[test]
    fn garbage_is_undecodable_not_an_error() {
        let (s, err) = KeyState::from_payload(b"\x00\x03abc\x09\x00bad-crc!", None);
        assert_eq!(s.kind, Kind::Undecodable);
        assert!(err.is_some());
    }
}
