//! Keys already on the target against `--on-conflict fail`: free when the target DBs are empty
//! (the usual case), else every source key is looked up with pipelined `EXISTS` before the first
//! write, so that a refusal leaves the target untouched.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use crate::endpoint::retry::Link;
use crate::endpoint::route::{KeyedCommands, Router};
use crate::endpoint::{Pipeline, Server};
use crate::read::scan::parse_scan;
use crate::report::escape_key;

/// How many conflicting keys an error names.
const NAMED_CONFLICTS: usize = 5;

/// The target as the `--on-conflict fail` check sees it: where to ask whether keys exist.
// One per run: the size of a variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Probe {
    /// A standalone target.
    Standalone(Link),
    /// A cluster target: `EXISTS` routed by slot.
    Cluster(Router),
}

impl Probe {
    /// The target, for messages.
    pub(crate) fn endpoint(&self) -> String {
        match self {
            Probe::Standalone(c) => c.endpoint(),
            Probe::Cluster(r) => format!("cluster {}", r.cluster().seed().endpoint),
        }
    }

    /// Keys in `db` (summed over the masters of a cluster).
    pub(crate) async fn dbsize(&mut self, db: u32) -> anyhow::Result<u64> {
        match self {
            Probe::Standalone(c) => {
                c.select(db);
                Ok(c.cmd(&[b"DBSIZE".as_slice()]).await?.as_int().unwrap_or(0) as u64)
            }
            Probe::Cluster(r) => Ok(r
                .on_each_master(&[b"DBSIZE".as_slice()])
                .await?
                .iter()
                .map(|(_, reply)| reply.as_int().unwrap_or(0) as u64)
                .sum()),
        }
    }

    /// Whether each of `keys` exists in `db`.
    pub(crate) async fn exists(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<Vec<bool>> {
        let replies = match self {
            Probe::Standalone(c) => {
                c.select(db);
                let mut p = Pipeline::new();
                for k in keys {
                    p.cmd(&[b"EXISTS".as_slice(), k]);
                }
                c.run(&p).await?
            }
            Probe::Cluster(r) => r.run(&Exists(keys)).await?,
        };
        Ok(replies.iter().map(|r| r.as_int() == Some(1)).collect())
    }
}

/// `EXISTS key` for each key, routable through a cluster.
pub(crate) struct Exists<'a>(pub(crate) &'a [Bytes]);

impl KeyedCommands for Exists<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.0[i]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        p.cmd(&[b"EXISTS".as_slice(), &self.0[i]]);
    }
}

/// For `--on-conflict fail`: refuses when any source key already exists in its target DB.
///
/// Free when the target DBs are empty (the usual case). Otherwise every key of every source
/// server (the standalone server, or each master of a cluster) is checked with pipelined
/// `EXISTS` (routed by slot on a cluster target), before anything is written. A lost
/// connection on either side is retried for `retry_for` (SCAN cursors survive a reconnect).
pub async fn check_conflicts(
    sources: &[Server],
    target: &mut Probe,
    dbs: &[(u32, u32)],
    scan_count: u32,
    retry_for: Duration,
    share: Option<&crate::partition::KeyShare>,
) -> anyhow::Result<()> {
    let mut found = Conflicts::default();
    for &(db, tdb) in dbs {
        if target.dbsize(tdb).await? == 0 {
            continue;
        }
        for source in sources {
            let mut conn = Link::new(source.clone(), retry_for);
            conn.select(db);
            let count = scan_count.to_string();
            let mut cursor = 0u64;
            loop {
                let reply = conn
                    .cmd(&[
                        b"SCAN".as_slice(),
                        cursor.to_string().as_bytes(),
                        b"COUNT",
                        count.as_bytes(),
                    ])
                    .await?;
                let (next, mut keys) = parse_scan(reply)
                    .with_context(|| format!("SCAN on the source {}", source.endpoint))?;
                // `--partition`: other workers' keys are theirs to check (and to write).
                if let Some(share) = share {
                    keys.retain(|k| share.contains(k));
                }
                if !keys.is_empty() {
                    let exists = target.exists(tdb, &keys).await?;
                    found.add(tdb, &keys, &exists);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    found.refuse_if_any(&target.endpoint(), "the source's keys")
}

/// What a conflict check found: how many source keys exist on the target, and the first few.
#[derive(Debug, Default)]
pub(crate) struct Conflicts {
    total: u64,
    named: Vec<(u32, Bytes)>,
}

impl Conflicts {
    /// Records the keys of `keys` (in target DB `tdb`) that `exists` says are on the target.
    pub(crate) fn add(&mut self, tdb: u32, keys: &[Bytes], exists: &[bool]) {
        for (k, _) in keys.iter().zip(exists).filter(|(_, &e)| e) {
            self.total += 1;
            if self.named.len() < NAMED_CONFLICTS {
                self.named.push((tdb, k.clone()));
            }
        }
    }

    /// Refuses to start, naming a few keys, when any were found; `whose` says whose keys they
    /// are ("the source's keys", "the file's keys").
    pub(crate) fn refuse_if_any(&self, target: &str, whose: &str) -> anyhow::Result<()> {
        if self.total == 0 {
            return Ok(());
        }
        let named: Vec<String> = self
            .named
            .iter()
            .map(|(db, k)| format!("{} (db {db})", escape_key(k)))
            .collect();
        anyhow::bail!(
            "the target {target} already holds {} of {whose}, e.g. {}. Nothing was written. \
             Rerun with --on-conflict replace to overwrite them, --on-conflict skip to keep the target's copies, \
             or empty the target first",
            self.total,
            named.join(", ")
        )
    }
}
