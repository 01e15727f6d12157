//! The biggest keys, sampled, against the target's `proto-max-bulk-len`.
//!
//! A `RESTORE` whose payload is longer than the target's `proto-max-bulk-len` is refused, and
//! the job stops at that key. Measuring every key would be a full pass over production, so
//! ferry samples keys with `RANDOMKEY` (read-only, O(1)) and sizes them with `MEMORY USAGE`
//! (4.0+; older servers: `STRLEN`, strings only). A sample can miss the one huge key: the row
//! says how many keys it saw. The same sample gives the ACL checks real key names, so key
//! patterns (`~prefix:*`) are checked against keys that exist.

use bytes::Bytes;

use super::connect::Probed;
use super::row::Check;
use crate::endpoint::{ConnError, Connection, Pipeline, Reply};
use crate::job::Job;
use crate::report::{escape_key, human_bytes};

/// Keys asked for per source server (spread over its DBs).
const SAMPLE_KEYS: usize = 100;

/// The smallest `proto-max-bulk-len` a server accepts: values below it always fit.
const MIN_BULK_LEN: u64 = 1 << 20;

/// Keys seen by `RANDOMKEY`.
#[derive(Default)]
pub(crate) struct Sample {
    /// (source node index, DB, key).
    pub keys: Vec<(usize, u32, Bytes)>,
}

impl Sample {
    /// A key of node `node` and its DB, if one was seen.
    pub fn key_of(&self, node: usize) -> Option<(u32, &Bytes)> {
        self.keys
            .iter()
            .find(|(n, _, _)| *n == node)
            .map(|k| (k.1, &k.2))
    }

    /// Any key seen.
    pub fn any(&self) -> Option<&Bytes> {
        self.keys.first().map(|k| &k.2)
    }
}

/// Samples up to [`SAMPLE_KEYS`] distinct keys per source server with pipelined `RANDOMKEY`.
/// Refusals (NOPERM) leave the sample empty; the ACL checks report them.
pub(crate) async fn sample(src: &mut Probed, job: &Job) -> Sample {
    let mut out = Sample::default();
    let cluster = src.side.is_cluster();
    for (i, node) in src.nodes.iter_mut().enumerate() {
        let dbs: Vec<u32> = if cluster {
            vec![0]
        } else if job.dbs.is_empty() {
            node.info.keyspace.keys().copied().collect()
        } else {
            job.dbs.clone()
        };
        let per_db = (SAMPLE_KEYS / dbs.len().max(1)).max(1);
        for db in dbs {
            if !cluster && node.conn.select(db).await.is_err() {
                continue;
            }
            let mut p = Pipeline::new();
            for _ in 0..per_db {
                p.cmd(&[b"RANDOMKEY".as_slice()]);
            }
            let Ok(replies) = node.conn.run(&p).await else {
                continue;
            };
            let mut keys: Vec<Bytes> = replies
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(k)) => Some(k),
                    _ => None,
                })
                .collect();
            keys.sort_unstable();
            keys.dedup();
            out.keys.extend(keys.into_iter().map(|k| (i, db, k)));
        }
    }
    out
}

/// The biggest sampled key against the target's `proto-max-bulk-len`; returns that limit
/// (`None` when unknown), which the writers enforce key by key. A value over the limit is
/// `tolerated` with big keys copied in pieces (`--big-key-bytes` > 0: only a *string* that long
/// cannot be stored at all) or with `--on-key-error skip` (it is set aside): a warning then.
pub(crate) async fn bulk_len(
    src: &mut Probed,
    sample: &Sample,
    dst: &mut Probed,
    tolerated: bool,
    out: &mut Vec<Check>,
) -> Option<u64> {
    let name = "target: proto-max-bulk-len";
    let node = dst.nodes.first_mut()?;
    // A connection lost here leaves the limit unknown, which the rows below say.
    let limit = max_bulk_len(&mut node.conn).await.ok().flatten();
    let Some((size, db, key, exact)) = biggest(src, sample).await else {
        let detail = match limit {
            Some(l) => format!(
                "{} on the target; no key sampled on the source (empty?)",
                human_bytes(l)
            ),
            None => "no key sampled on the source (empty?)".into(),
        };
        out.push(Check::ok(name, detail));
        return limit;
    };
    let how = if exact {
        "MEMORY USAGE"
    } else {
        "STRLEN, strings only"
    };
    let seen = format!(
        "biggest of {} sampled keys: {} (db {db}), ~{} ({how})",
        sample.keys.len(),
        escape_key(&key),
        human_bytes(size)
    );
    let raise = "raise it on the target (CONFIG SET proto-max-bulk-len, above the biggest value), or leave the big keys out";
    out.push(match limit {
        Some(l) if size > l && tolerated => Check::warn(name, format!("{seen}, over the target's {}: copied in chunks (--big-key-bytes) or set aside (--on-key-error skip); a string that long cannot be stored on the target at all", human_bytes(l)), "raise proto-max-bulk-len on the target above your biggest string, or copy the rest with --on-key-error skip"),
        Some(l) if size > l => Check::fail(name, format!("{seen}, over the target's {}: its RESTORE would be refused", human_bytes(l)), raise),
        Some(l) if size > l / 10 * 8 => Check::warn(name, format!("{seen}, close to the target's {}", human_bytes(l)), raise),
        Some(l) => Check::ok(name, format!("{seen}, under the target's {}", human_bytes(l))),
        None if size < MIN_BULK_LEN => Check::ok(name, format!("{seen}; the target's limit is unknown (CONFIG GET refused) but is at least 1 MB")),
        None => Check::warn(
            name,
            format!("{seen}; the target's limit is unknown (CONFIG GET refused)"),
            "make sure the target's proto-max-bulk-len (default 512 MB) is above your biggest values",
        ),
    });
    limit
}

/// The biggest sampled key: (bytes, DB, key, measured with MEMORY USAGE).
async fn biggest(src: &mut Probed, sample: &Sample) -> Option<(u64, u32, Bytes, bool)> {
    let cluster = src.side.is_cluster();
    let mut best: Option<(u64, u32, Bytes, bool)> = None;
    for (i, node) in src.nodes.iter_mut().enumerate() {
        let exact = node.info.version() >= (4, 0);
        let mut by_db: std::collections::BTreeMap<u32, Vec<&Bytes>> = Default::default();
        for (n, db, k) in &sample.keys {
            if *n == i {
                by_db.entry(*db).or_default().push(k);
            }
        }
        for (db, keys) in by_db {
            if !cluster && node.conn.select(db).await.is_err() {
                continue;
            }
            let mut p = Pipeline::new();
            for k in &keys {
                if exact {
                    p.cmd(&[b"MEMORY".as_slice(), b"USAGE", k]);
                } else {
                    p.cmd(&[b"STRLEN".as_slice(), k]);
                }
            }
            let Ok(replies) = node.conn.run(&p).await else {
                continue;
            };
            for (k, r) in keys.iter().zip(replies) {
                let Some(n) = r.as_int().and_then(|n| u64::try_from(n).ok()) else {
                    continue;
                };
                if best.as_ref().is_none_or(|b| n > b.0) {
                    best = Some((n, db, (*k).clone(), exact));
                }
            }
        }
    }
    best
}

/// The target's `proto-max-bulk-len`, when CONFIG is allowed (managed services often block it:
/// then `None`). A lost connection is an error, for the caller to retry.
pub async fn max_bulk_len(conn: &mut Connection) -> Result<Option<u64>, ConnError> {
    let reply = conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", b"proto-max-bulk-len"])
        .await?;
    Ok(match reply {
        Reply::Array(Some(items)) => items
            .get(1)
            .and_then(Reply::to_text)
            .and_then(|t| t.parse().ok()),
        _ => None,
    })
}
