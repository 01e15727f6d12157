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
//! `throttle`, `stop`, `counts`, `record`, `display`. Not `sink`, `verify` or `report`: they call
//! it.

pub mod plan;
pub mod rdb_file;
pub mod rdb_input;
pub mod scan;

use crate::counts::Counts;
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
