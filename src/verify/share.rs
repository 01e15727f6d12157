//! `verify --partition I/N`: the same share of the job as `migrate --partition I/N` copied.
//!
//! The split is computed from the source exactly as `migrate` does (`partition.rs`), and both
//! sides are then filtered by it: the share's DBs, and on every server only the keys of the
//! share, so keys of the share that are missing *or extra* on the target are found, while other
//! shares' keys are left to their own workers.

use std::collections::BTreeSet;

use crate::check;
use crate::endpoint::Server;
use crate::job::Job;
use crate::partition::{Partition, Share};

/// A share as `verify` needs it: the split, and every DB of the job on the source.
pub struct VerifyShare {
    /// The share (DBs, masters, key filter).
    pub share: Share,
    /// The job's DBs on the whole source, before the split.
    pub all_dbs: Vec<u32>,
}

/// Reads the source's layout and DBs and computes share `p` of the job.
pub async fn of_source(p: Partition, source: &Server, job: &Job) -> anyhow::Result<VerifyShare> {
    let mut conn = source.connect().await?;
    let info = check::examine(&mut conn, source, &job.source_addr_map).await?;
    let all_dbs: Vec<u32> = if job.dbs.is_empty() {
        info.keyspace.keys().copied().collect()
    } else {
        job.dbs.clone()
    };
    let share = Share::resolve(p, &info.layout, &all_dbs);
    eprintln!("ferry: partition {}", share.how);
    Ok(VerifyShare { share, all_dbs })
}

/// Keeps the DB pairs of the share. A DB that holds keys on the target only belongs to no
/// source share; share 0 checks it, so that such extra keys are still found by some worker.
pub fn restrict_pairs(v: &VerifyShare, pairs: &mut Vec<(u32, u32)>) {
    let mine: BTreeSet<u32> = v.share.dbs.iter().copied().collect();
    let known: BTreeSet<u32> = v.all_dbs.iter().copied().collect();
    pairs.retain(|(db, _)| {
        mine.contains(db) || (!known.contains(db) && v.share.partition.index == 0)
    });
}
