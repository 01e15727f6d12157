//! How a writer writes: the options every writer of a job shares (conflict policy, DB map,
//! clocks, limits, what to do with a key the target refuses) and how big keys are copied.
//!
//! A leaf of `sink/`: the RESTORE writer (`restore.rs`), the cluster writer (`cluster.rs`) and
//! the chunked copy of big keys (`chunked.rs`) all read these, and the commands that set up
//! writers (`migrate/`, `follow/`) build them; nothing here calls back into a writer.

use std::time::Duration;

use super::key_error::KeyErrors;
use crate::bigkey::packed_string::MAX_PACKED_BYTES;
use crate::bigkey::write::TargetFeatures;
use crate::endpoint::bulk_limit::PROBE_FLOOR;
use crate::policy::OnConflict;
use crate::read::clock::now_ms;

/// How a writer writes.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Conflict policy. `fail` has already been enforced before the first write, so it writes
    /// with REPLACE (which makes retries, SCAN duplicates and resumes idempotent).
    pub on_conflict: OnConflict,
    /// Source DB → target DB.
    pub db_map: std::collections::BTreeMap<u32, u32>,
    /// Clock skews for expiry conversion.
    pub clocks: Clocks,
    /// Largest value the target accepts (`proto-max-bulk-len`), if known.
    pub max_bulk: Option<u64>,
    /// How long to retry a lost connection.
    pub retry_for: Duration,
    /// False for a cluster target, where only DB 0 exists and SELECT is refused.
    pub select_db: bool,
    /// The target's RDB version, when known: a payload it refuses as too new (a Valkey 8 or
    /// Redis 7.2+ source, RDB 11+, into Redis 7.0, RDB 10) is re-encoded for it and written
    /// again; see `restore.rs`, `reencode_refused`.
    pub target_rdb: Option<u16>,
    /// How big keys are copied (a live source with big-key detection on).
    pub big: Option<BigOptions>,
    /// `--on-key-error`: stop at a key the target refuses, or dead-letter it.
    pub key_errors: KeyErrors,
}

impl WriterOptions {
    /// The target DB that source DB `db` is written into.
    pub fn target_db(&self, db: u32) -> u32 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }
}

/// How big keys are written (set when big keys are on, for a live source and a file).
#[derive(Debug, Clone)]
pub struct BigOptions {
    /// The job's id, in temporary key names (see `write::temp_key`).
    pub job: String,
    /// Keys estimated over this many bytes are big (`--big-key-bytes`, lowered to half the
    /// target's `proto-max-bulk-len`).
    pub threshold: u64,
    /// Bytes per chunk.
    pub budget: usize,
    /// What the target supports.
    pub features: TargetFeatures,
    /// This writer's number (its own temporary keys, see `write::temp_key`).
    pub writer: usize,
    /// How many writers the job has.
    pub writers: usize,
    /// The source's load limits (`--max-keys-per-sec`, `--max-bytes-per-sec`,
    /// `--source-latency-ms`), shared with the SCAN readers: a big key counts as one key and its
    /// chunks' bytes are paid as they are read, so a big key cannot read past the caps.
    pub throttles: Option<std::sync::Arc<crate::throttle::Throttles>>,
    /// The target's `proto-max-bulk-len`, when known: no string can be longer on the target
    /// than that, except one RESTOREd compressed (see `packed_string.rs`).
    pub max_bulk: Option<u64>,
}

impl BigOptions {
    /// The largest packed string payload sent to the target: under its `proto-max-bulk-len`
    /// (under the smallest a server accepts when it is unknown), and never more than
    /// [`MAX_PACKED_BYTES`] in memory.
    pub fn packed_cap(&self) -> usize {
        let limit = self
            .max_bulk
            .map_or(PROBE_FLOOR, |m| usize::try_from(m).unwrap_or(usize::MAX));
        limit.min(MAX_PACKED_BYTES)
    }
}

/// How writers copy big keys, with the threshold over which a key is big (for every source), or
/// `None` when `--big-key-bytes 0` turned big keys off. The threshold and the chunks stay well
/// under the target's `proto-max-bulk-len` when it is known (estimates err; a DUMP may exceed
/// one).
pub fn big_settings(
    big_key_bytes: u64,
    batch_bytes: usize,
    max_bulk: Option<u64>,
    target_version: (u32, u32),
    job: &str,
) -> Option<BigOptions> {
    if big_key_bytes == 0 {
        return None;
    }
    let half_limit = max_bulk.map_or(u64::MAX, |m| (m / 2).max(1));
    let threshold = big_key_bytes.min(half_limit);
    // A limit ferry cannot read (CONFIG denied) may be as low as any server accepts: chunks stay
    // under half of the smallest, so no chunk is ever refused for its size.
    let chunk_limit = max_bulk.map_or((PROBE_FLOOR / 2) as u64, |m| (m / 2).max(1));
    let budget = (batch_bytes as u64).min(chunk_limit).clamp(1024, 64 << 20) as usize;
    Some(BigOptions {
        job: job.to_string(),
        threshold,
        budget,
        features: TargetFeatures {
            stream_v7: target_version >= (7, 0),
            create_consumer: target_version >= (6, 2),
        },
        writer: 0,
        writers: 1,
        throttles: None,
        max_bulk,
    })
}

/// Converts expiries from the source's clock to the target's, and tells which have passed.
///
/// `RESTORE … ABSTTL` takes a Unix time that the *target* compares with its own clock, while the
/// expiry was computed on the source's. Both skews are measured once at start with `TIME`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clocks {
    /// Source clock minus this machine's clock, in ms.
    pub source_skew_ms: i64,
    /// Target clock minus this machine's clock, in ms.
    pub target_skew_ms: i64,
}

impl Clocks {
    /// The same instant on the target's clock.
    pub fn to_target(&self, source_ms: i64) -> i64 {
        source_ms - self.source_skew_ms + self.target_skew_ms
    }

    /// True if an expiry (source clock) has already passed.
    pub fn has_passed(&self, source_ms: i64) -> bool {
        source_ms <= now_ms() + self.source_skew_ms
    }
}
