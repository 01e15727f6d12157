//! Sources: where Records come from. A live server read with SCAN (`scan.rs`) or an RDB file
//! (`rdb_file.rs`).
//!
//! Every source cuts its keys into [`Batch`]es. A batch belongs to one *stream* (one source node
//! and DB, or one file) and carries a sequence number; the last batch of a SCAN page also carries
//! the position reached (the next cursor). The checkpoint only ever stores a position whose batch,
//! and every batch before it, the target has acknowledged.
//!
//! May call: `read` (how a live server is read: TIME/PTTL/DUMP, SCAN, refusals), `endpoint`,
//! `rdb` (the file), `bigkey` (which keys are too big to DUMP), `partition` (a worker's share),
//! `throttle`, `retry`, `record`, `display`. Not `sink`, `verify` or `report`: they call it.

pub mod plan;
pub mod rdb_file;
pub mod rdb_input;
pub mod scan;

use crate::record::Record;

/// Where a stream has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Keys up to this SCAN cursor are done (the next SCAN call starts from it).
    Cursor(u64),
    /// Records of an RDB file before this point are done: the byte offset of the next item, with
    /// what the file reader needs to continue there (header, current DB, running CRC64; see
    /// [`crate::rdb::reader::ResumeState`], which prints as its offset).
    Offset(crate::rdb::reader::ResumeState),
    /// The whole stream is done.
    Done,
}

/// A group of records sent to the target together.
#[derive(Debug)]
pub struct Batch {
    /// Index of the stream (source node + DB) this batch comes from.
    pub stream: usize,
    /// Sequence number within the stream, from 0 without gaps.
    pub seq: u64,
    /// The keys to write.
    pub records: Vec<Record>,
    /// Set on the last batch of a page: the stream position once this batch is acknowledged.
    pub position: Option<Position>,
    /// Keys the source listed for this batch (written + vanished + expired).
    pub scanned: u64,
    /// Keys listed by SCAN that were gone (deleted or expired) by the time of DUMP.
    pub vanished: u64,
    /// What the reader itself decided about this batch's keys (keys it skipped, payloads it
    /// re-encoded, file bytes it consumed, how exact its expiries are); added to the writer's
    /// counts when the batch is acknowledged.
    pub noted: Counts,
    /// Keys too big to DUMP, copied in chunks by the writer before it acknowledges the batch
    /// (only ever on the last batch of a SCAN page, so the position moves after them).
    pub big: Vec<crate::bigkey::BigKey>,
    /// The source server to read `big` from.
    pub big_source: Option<crate::bigkey::BigSource>,
}

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
