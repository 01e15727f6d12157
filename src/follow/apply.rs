//! Re-reading dirty keys on the source and writing what was read to the target.
//!
//! One [`Applier`] does every write of the follower, one chunk of keys at a time: a pipeline
//! `TIME, PTTL k…, TIME, DUMP k…` on the source (read by the same
//! [`crate::read::expiry::read_keys`] as verification), then one pipeline on the target with `RESTORE … ABSTTL
//! REPLACE` for each key found, and `DEL` for each key gone (deleted, expired, evicted, renamed
//! or moved away) or whose expiry has passed. The next chunk starts only when the target has
//! acknowledged this one, so writes reach the target in the order their reads were made: an
//! older read never overwrites a newer one (see `follow/mod.rs` for the whole argument).
//!
//! A lost connection on either side is reconnected and the whole chunk read and written again:
//! the second read is the newer one, and RESTORE REPLACE and DEL are idempotent.
//!
//! Big keys (`--big-key-bytes` not 0): the keys of a chunk are sized first
//! (`verify::big::classify`, the probe the copy uses; on a cluster, each on the master of its
//! slot), and a big one is never DUMPed — a hash updated all the time would otherwise block the
//! source for a whole DUMP at every change. It is copied again in chunks (`sink::chunked`, a
//! cluster's read on the master of its slot, renamed in place over the old copy), after the
//! chunk's small keys; one that is gone by then is deleted on the target.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::dirty::DbKey;
use crate::bigkey::{BigKey, BigSource};
use crate::check::{Exists, Layout};
use crate::endpoint::retry::Backoff;
use crate::endpoint::route::{KeyedCommands, Router};
use crate::endpoint::{ConnError, Connection, Pipeline, Reply, Server};
use crate::read::expiry::{self, Bracket, Expiries, KeyRead, ReadKeysError, Ttl};
use crate::read::refusal::{Who, COPY_RIGHTS};
use crate::record::Record;
use crate::sink::key_error::Quarantine;
use crate::sink::options::WriterOptions;
use crate::sink::restore::{judge, restore_ttl};
use crate::verify::big::Detector;

/// Keys per source round trip.
pub const CHUNK: usize = 500;

/// What applying some keys did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Applied {
    /// Keys written with RESTORE.
    pub written: u64,
    /// Keys deleted on the target (gone on the source, or expired).
    pub deleted: u64,
}

impl Applied {
    /// Adds `o`.
    pub fn add(&mut self, o: Applied) {
        self.written += o.written;
        self.deleted += o.deleted;
    }
}

/// One target command.
enum Op {
    Restore(Record, i64),
    Del(Bytes),
}

struct Ops(Vec<Op>);

impl KeyedCommands for Ops {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        match &self.0[i] {
            Op::Restore(r, _) => &r.key,
            Op::Del(k) => k,
        }
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        match &self.0[i] {
            Op::Restore(r, ttl) => {
                let mut buf = itoa::Buffer::new();
                p.restore(&r.key, buf.format(*ttl).as_bytes(), &r.payload, true);
            }
            Op::Del(k) => {
                p.cmd(&[b"DEL".as_slice(), k]);
            }
        }
    }
}

// One per follower: the size of a variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Target {
    Standalone(Server, Option<Connection>),
    Cluster(Box<Router>),
}

/// Where keys are read: one server, or the masters of a cluster through a [`Router`] (which
/// follows MOVED/ASK, so a resharding source is read where each key is now).
enum Source {
    Standalone(Option<Connection>),
    Cluster(Box<Router>),
}

/// `PTTL k, DUMP k` for each key, routable (both commands of a key go to its master).
struct Reads<'a>(&'a [Bytes]);

impl KeyedCommands for Reads<'_> {
    fn count(&self) -> usize {
        2 * self.0.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.0[i / 2]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        let cmd: &[u8] = if i % 2 == 0 { b"PTTL" } else { b"DUMP" };
        p.cmd(&[cmd, &self.0[i / 2]]);
    }
}

/// Reads dirty keys on the source and writes them to the target; see the module doc.
pub struct Applier {
    source: Server,
    src: Source,
    target: Target,
    opts: WriterOptions,
    /// Which dirty keys are big (`None`: detection off).
    big: Option<Detector>,
    /// Where big keys are read: the server, or a cluster's masters (a router of their own).
    big_source: BigSource,
}

impl Applier {
    /// An applier from `source` (laid out as `layout`) into the target laid out as `target`.
    pub fn new(source: Server, layout: &Layout, target: &Layout, opts: WriterOptions) -> Applier {
        let (src, big_source) = match layout {
            Layout::Standalone(_) => (Source::Standalone(None), BigSource::Server(source.clone())),
            Layout::Cluster { cluster, topology } => {
                let router = || Router::new(cluster.clone(), topology, opts.retry_for);
                (
                    Source::Cluster(Box::new(router())),
                    BigSource::Cluster(Arc::new(tokio::sync::Mutex::new(router()))),
                )
            }
        };
        let target = match target {
            Layout::Standalone(s) => Target::Standalone(s.clone(), None),
            Layout::Cluster { cluster, topology } => Target::Cluster(Box::new(Router::new(
                cluster.clone(),
                topology,
                opts.retry_for,
            ))),
        };
        let big = opts
            .big
            .as_ref()
            .map(|b| Detector::new(b.threshold, b.budget));
        Applier {
            source,
            src,
            target,
            opts,
            big,
            big_source,
        }
    }

    /// Re-reads `keys` (any DBs, each at most once) and writes them, chunk by chunk, in order.
    pub async fn apply(&mut self, keys: &[DbKey]) -> anyhow::Result<Applied> {
        let mut by_db: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
        for (db, k) in keys {
            by_db.entry(*db).or_default().push(k.clone());
        }
        let mut done = Applied::default();
        for (db, keys) in by_db {
            for chunk in keys.chunks(CHUNK) {
                done.add(self.apply_chunk(db, chunk).await?);
            }
        }
        Ok(done)
    }

    async fn apply_chunk(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<Applied> {
        let mut backoff = Backoff::new(self.opts.retry_for);
        loop {
            let attempt = async {
                let (ops, big) = self.read(db, keys).await?;
                let mut done = self.write(db, ops).await?;
                if !big.is_empty() {
                    done.add(self.copy_big(db, &big).await?);
                }
                Ok::<_, anyhow::Error>(done)
            }
            .await;
            match attempt {
                Ok(done) => return Ok(done),
                Err(e) if is_transient(&e) => {
                    if let Source::Standalone(c) = &mut self.src {
                        *c = None;
                    }
                    if let Target::Standalone(_, c) = &mut self.target {
                        *c = None;
                    }
                    backoff.wait(e).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The target commands that make the small keys of `keys` (`db`) what the source holds
    /// now, and the big ones, to copy in chunks.
    async fn read(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<(Ops, Vec<BigKey>)> {
        let ep = self.source.endpoint.to_string();
        let mut bigs = Vec::new();
        let (keys, reads) = match &mut self.src {
            Source::Standalone(conn) => {
                if conn.is_none() {
                    *conn = Some(self.source.connect().await?);
                }
                let conn = conn
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("no source connection"))?;
                conn.select(db).await?;
                let small = match &mut self.big {
                    Some(detector) => {
                        let (small, big) = detector.split(conn, db, keys).await?;
                        bigs = big;
                        small
                    }
                    None => keys.to_vec(),
                };
                let reads = expiry::read_keys(conn, &small)
                    .await
                    .map_err(|e| read_error(&ep, db, &small, e))?
                    .each;
                (small, reads)
            }
            Source::Cluster(router) => {
                let small = match &mut self.big {
                    Some(detector) => {
                        let (small, big) = detector.split_routed(router, db, keys).await?;
                        bigs = big;
                        small
                    }
                    None => keys.to_vec(),
                };
                let skew_ms = self.opts.clocks.source_skew_ms;
                let reads = read_routed(router, &ep, db, &small, skew_ms).await?;
                (small, reads)
            }
        };
        let mut ops = Vec::with_capacity(keys.len());
        for (key, read) in keys.iter().zip(reads) {
            let op = match read {
                None => Op::Del(key.clone()),
                Some(KeyRead {
                    payload,
                    expire_at_ms,
                }) => {
                    let rec = Record {
                        db,
                        key: key.clone(),
                        payload,
                        expire_at_ms,
                    };
                    match restore_ttl(&self.opts, &rec, &ep)? {
                        // Expired on the source while in flight: gone there too.
                        None => Op::Del(key.clone()),
                        Some(ttl) => Op::Restore(rec, ttl),
                    }
                }
            };
            ops.push(op);
        }
        Ok((Ops(ops), bigs))
    }

    /// Copies big keys of `db` again in chunks (each renamed in place over the target's copy);
    /// those gone from the source by then are deleted on the target.
    async fn copy_big(&mut self, db: u32, bigs: &[BigKey]) -> anyhow::Result<Applied> {
        // The target holds ferry's earlier copy: always replaced.
        let mut opts = self.opts.clone();
        opts.on_conflict = crate::policy::OnConflict::Replace;
        let target = match &mut self.target {
            Target::Standalone(server, _) => crate::sink::chunked::Target::Standalone(server),
            Target::Cluster(router) => crate::sink::chunked::Target::Cluster(router),
        };
        let counts = crate::sink::chunked::copy_keys(bigs, &self.big_source, target, &opts).await?;
        let mut done = Applied {
            written: counts.written,
            deleted: 0,
        };
        let keys: Vec<Bytes> = bigs.iter().map(|b| b.key.clone()).collect();
        let exists = match &mut self.src {
            Source::Standalone(Some(conn)) => {
                let mut p = Pipeline::new();
                for k in &keys {
                    p.cmd(&[b"EXISTS".as_slice(), k]);
                }
                conn.run(&p).await?
            }
            Source::Standalone(None) => return Ok(done),
            Source::Cluster(router) => router.run(&Exists(&keys)).await?,
        };
        let gone: Vec<Op> = keys
            .into_iter()
            .zip(exists)
            .filter(|(_, r)| matches!(r, Reply::Int(0)))
            .map(|(k, _)| Op::Del(k))
            .collect();
        if !gone.is_empty() {
            done.add(self.write(db, Ops(gone)).await?);
        }
        Ok(done)
    }

    async fn write(&mut self, db: u32, ops: Ops) -> anyhow::Result<Applied> {
        let tdb = self.opts.db_map.get(&db).copied().unwrap_or(db);
        let (replies, ep) = match &mut self.target {
            Target::Standalone(server, conn) => {
                if conn.is_none() {
                    *conn = Some(server.connect().await?);
                }
                let c = conn
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("no target connection"))?;
                c.select(tdb).await?;
                let mut p = Pipeline::new();
                for i in 0..ops.count() {
                    ops.encode(i, &mut p);
                }
                (c.run(&p).await?, server.endpoint.to_string())
            }
            Target::Cluster(router) => {
                let ep = router.cluster().seed().endpoint.to_string();
                (router.run(&ops).await?, ep)
            }
        };
        let mut done = Applied::default();
        // `--on-key-error skip`: a key the target refuses for a reason of its own goes to the
        // dead-letter file here too (`sink/key_error.rs`); anything else stops the follower.
        let mut q = Quarantine::new(self.opts.key_errors.clone());
        for (op, reply) in ops.0.iter().zip(replies) {
            match (op, reply) {
                (Op::Restore(rec, _), Reply::Error(err)) => judge(&mut q, &ep, tdb, rec, &err)?,
                (Op::Del(k), Reply::Error(err)) => anyhow::bail!(
                    "the target {ep} refused to delete key {} (db {tdb}): {err}. The target's ACL \
                     user needs +del for --follow",
                    crate::report::escape_key(k)
                ),
                (Op::Restore(..), _) => done.written += 1,
                (Op::Del(_), _) => done.deleted += 1,
            }
        }
        q.flush(&mut crate::counts::Counts::default())?;
        Ok(done)
    }
}

fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConnError>()
        .is_some_and(ConnError::is_transient)
}

/// The message for a failed [`expiry::read_keys`] of `keys`.
pub(crate) fn read_error(ep: &str, db: u32, keys: &[Bytes], e: ReadKeysError) -> anyhow::Error {
    source_reader(ep).read_error(db, keys, e)
}

/// The source's reader, for messages.
fn source_reader(ep: &str) -> Who<'_> {
    Who {
        side: "source",
        ep,
        rights: COPY_RIGHTS,
    }
}

/// Reads `keys` of a cluster source through `router` (each on the master of its slot). The
/// masters' `TIME`s cannot share one pipeline, so the bracket is this machine's clock, moved
/// to the source's by its measured skew, before sending and after the last reply; a wide one
/// (a stalled master) is read again, as `read/expiry.rs` does for one server.
pub(crate) async fn read_routed(
    router: &mut Router,
    ep: &str,
    db: u32,
    keys: &[Bytes],
    skew_ms: i64,
) -> anyhow::Result<Vec<Option<KeyRead>>> {
    let mut tries = 0;
    loop {
        tries += 1;
        let first_ms = crate::read::clock::now_ms() + skew_ms;
        let replies = router.run(&Reads(keys)).await?;
        let bracket = Bracket {
            first_ms,
            last_ms: crate::read::clock::now_ms() + skew_ms,
        };
        if bracket.width_ms() > expiry::NARROW_MS && tries <= expiry::REREADS {
            continue;
        }
        let mut it = replies.into_iter();
        let (mut ttls, mut dumps) = (Vec::with_capacity(keys.len()), Vec::new());
        for key in keys {
            let (Some(pttl), Some(dump)) = (it.next(), it.next()) else {
                anyhow::bail!("the source {ep} sent fewer replies than commands");
            };
            for r in [&pttl, &dump] {
                if let Some(err) = r.error() {
                    return Err(source_reader(ep).refused(db, key, err));
                }
            }
            ttls.push(Ttl::from_reply(&pttl));
            dumps.push(dump);
        }
        return Ok(expiry::pair(dumps, Expiries::new(&bracket, &ttls).each));
    }
}
