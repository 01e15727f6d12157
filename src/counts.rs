//! What a job did to its keys, counted: per stream, per writer, for the whole job.
//!
//! Readers note what they skipped, writers what they wrote, the checkpoint stores the sums and
//! the report prints them. A leaf: it calls no other part of ferry, so every part that counts can
//! name it without depending on the others.

/// Counts of one stream, or of the whole job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Keys listed by the source.
    pub scanned: u64,
    /// Keys written to the target.
    pub written: u64,
    /// Keys whose TTL ran out before they could be written (never written).
    pub expired_skipped: u64,
    /// Keys that disappeared between SCAN and DUMP.
    pub vanished: u64,
    /// Keys already on the target (kept with `--on-conflict skip`).
    pub conflicts: u64,
    /// Key and payload bytes written.
    pub bytes: u64,
    /// RDB file source: keys whose payload was re-encoded for an older target RDB version.
    #[serde(default)]
    pub reencoded: u64,
    /// RDB file source: keys holding an empty collection, skipped (Redis skips them on load).
    #[serde(default)]
    pub empty_skipped: u64,
    /// RDB file source: module keys skipped with `--skip-modules`.
    #[serde(default)]
    pub modules_skipped: u64,
    /// RDB file source: bytes of the file consumed (the progress of a file).
    #[serde(default)]
    pub file_bytes: u64,
    /// `--on-key-error skip`: keys the target refused for a reason of their own, written to the
    /// dead-letter file (never written to the target).
    #[serde(default)]
    pub dead_lettered: u64,
    /// Live source: the most any written expiry may be off from the source's, in ms (the
    /// worst, not a sum; see `read/expiry.rs`).
    #[serde(default)]
    pub expiry_uncertainty_ms: u64,
    /// Keys written in chunks (over `--big-key-bytes`); also counted in `written`.
    #[serde(default)]
    pub big_keys: u64,
}

impl Counts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.written += other.written;
        self.expired_skipped += other.expired_skipped;
        self.vanished += other.vanished;
        self.conflicts += other.conflicts;
        self.bytes += other.bytes;
        self.reencoded += other.reencoded;
        self.empty_skipped += other.empty_skipped;
        self.modules_skipped += other.modules_skipped;
        self.file_bytes += other.file_bytes;
        self.big_keys += other.big_keys;
        self.dead_lettered += other.dead_lettered;
        self.expiry_uncertainty_ms = self.expiry_uncertainty_ms.max(other.expiry_uncertainty_ms);
    }
}
