//! One key on its way from the source to the target.
//!
//! Every source (a live SCAN, an RDB file) produces `Record`s and every sink consumes them, so this
//! is the single shape a key has while it travels. The payload is kept in DUMP format so the
//! target can load it with one `RESTORE`, without ferry decoding the value on the hot path.

use bytes::Bytes;

/// A key, its value as a DUMP payload, and its absolute expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Logical database number on the source (the target DB is chosen by the job's DB map).
    pub db: u32,
    /// Key name, any bytes.
    pub key: Bytes,
    /// DUMP-format payload: type byte, value bytes, 2-byte LE RDB version, 8-byte LE CRC64.
    pub payload: Bytes,
    /// Absolute expiry in Unix milliseconds, measured on the source's clock; `None` = no TTL.
    pub expire_at_ms: Option<i64>,
}

impl Record {
    /// Bytes this record occupies in flight (key + payload), used for progress and batching.
    pub fn size(&self) -> usize {
        self.key.len() + self.payload.len()
    }

    /// The RDB version written in the payload footer, if the payload is long enough to have one.
    pub fn payload_rdb_version(&self) -> Option<u16> {
        let p = &self.payload;
        (p.len() >= 10).then(|| u16::from_le_bytes([p[p.len() - 10], p[p.len() - 9]]))
    }
}
