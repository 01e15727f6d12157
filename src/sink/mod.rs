//! Sinks: where Records are written. `restore.rs` writes them to a server with `RESTORE`;
//! for a cluster target, `cluster.rs` splits each batch by slot into one pipeline per master
//! (`endpoint/route.rs` follows the cluster's redirections); `chunked.rs` then copies the
//! batch's big keys chunk by chunk; `key_error.rs` sets a key's own refusal aside and
//! `resent.rs` tells ferry's own earlier copies from conflicts; `options.rs` holds what every
//! writer of a job shares (a leaf: the writers read it, it calls none of them).
//!
//! May call: `endpoint` (connections, cluster routing, the bulk-length probe; refusals through
//! `ErrorKind`), `read` (clocks, expiries), `rdb` (re-encoding for an older target), `bigkey`
//! (reading and writing a big key's chunks), `dead_letter`, `record`, `counts`, `source` (the
//! `Batch`), `policy`, `throttle` (a big key's reads count against the source's caps),
//! `display`. Nothing of `sink` is called by `source`, `bigkey` or
//! `endpoint`.

pub mod chunked;
pub mod cluster;
pub mod key_error;
pub mod options;
mod resent;
pub mod restore;

use crate::counts::Counts;
use crate::source::Batch;

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
                let target = chunked::Target::Standalone(w.server());
                chunked::copy_keys(&batch.big, source, target, w.options()).await
            }
            Sink::Cluster(w) => {
                let (router, opts) = w.parts();
                chunked::copy_keys(&batch.big, source, chunked::Target::Cluster(router), opts).await
            }
        }?;
        counts.add(&big);
        Ok(counts)
    }
}
