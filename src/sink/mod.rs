//! Sinks: where Records are written. `restore.rs` writes them to a server with `RESTORE`;
//! for a cluster target, `cluster.rs` splits each batch by slot (`slots.rs`) into one pipeline
//! per master and `route.rs` follows the cluster's redirections.
//!
//! May call: `endpoint` (connections; refusals through `ErrorKind`), `read` (clocks), `rdb`
//! (re-encoding for an older target), `bigkey` (big keys of a batch), `dead_letter`, `record`,
//! `source` (the `Batch` and its counts), `report`, `retry`, `cli` (flag enums, until the plan of
//! issue #12 item 2 replaces them).

pub mod bulk_limit;
pub mod cluster;
pub mod key_error;
mod resent;
pub mod restore;
pub mod route;
pub mod slots;

use crate::bigkey::copy;
use crate::source::{Batch, Counts};

/// One writer task's sink: a standalone server or a cluster. The pipeline holds a list of these
/// and does not care which.
pub enum Sink {
    /// One connection to a standalone server.
    Standalone(restore::Writer),
    /// One connection per master of a cluster.
    Cluster(cluster::ClusterWriter),
}

impl Sink {
    /// Writes every record of `batch`, then copies its big keys in chunks (so the batch is
    /// acknowledged only once they are in place); returns what was done.
    pub async fn write(&mut self, batch: &Batch) -> anyhow::Result<Counts> {
        let mut counts = match self {
            Sink::Standalone(w) => w.write(batch).await,
            Sink::Cluster(w) => w.write(batch).await,
        }?;
        if batch.big.is_empty() {
            return Ok(counts);
        }
        let Some(source) = &batch.big_source else {
            anyhow::bail!("internal error: big keys without their source");
        };
        let big = match self {
            Sink::Standalone(w) => {
                let target = copy::Target::Standalone(w.server());
                copy::copy_keys(&batch.big, source, target, w.options()).await
            }
            Sink::Cluster(w) => {
                let (router, opts) = w.parts();
                copy::copy_keys(&batch.big, source, copy::Target::Cluster(router), opts).await
            }
        }?;
        counts.add(&big);
        Ok(counts)
    }
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

pub use crate::read::clock::now_ms;
