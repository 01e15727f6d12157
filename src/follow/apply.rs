//! Re-reading dirty keys on the source and writing what was read to the target.
//!
//! One [`Applier`] does every write of the follower, one chunk of keys at a time: a pipeline
//! `TIME, PTTL k, DUMP k, …` on the source (parsed by the copy's own
//! [`crate::source::scan::key_record`]), then one pipeline on the target with `RESTORE … ABSTTL
//! REPLACE` for each key found, and `DEL` for each key gone (deleted, expired, evicted, renamed
//! or moved away) or whose expiry has passed. The next chunk starts only when the target has
//! acknowledged this one, so writes reach the target in the order their reads were made: an
//! older read never overwrites a newer one (see `follow/mod.rs` for the whole argument).
//!
//! A lost connection on either side is reconnected and the whole chunk read and written again:
//! the second read is the newer one, and RESTORE REPLACE and DEL are idempotent.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::dirty::DbKey;
use crate::endpoint::{ConnError, Connection, Pipeline, Reply, Server};
use crate::preflight::Layout;
use crate::record::Record;
use crate::retry::Backoff;
use crate::sink::restore::{refused, restore_ttl, WriterOptions};
use crate::sink::route::{KeyedCommands, Router};
use crate::source::scan::{key_record, parse_time_ms};

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
}

impl Applier {
    /// An applier from `source` (laid out as `layout`) into the target laid out as `target`.
    pub fn new(source: Server, layout: &Layout, target: &Layout, opts: WriterOptions) -> Applier {
        let src = match layout {
            Layout::Standalone(_) => Source::Standalone(None),
            Layout::Cluster { cluster, topology } => Source::Cluster(Box::new(Router::new(
                cluster.clone(),
                topology,
                opts.retry_for,
            ))),
        };
        let target = match target {
            Layout::Standalone(s) => Target::Standalone(s.clone(), None),
            Layout::Cluster { cluster, topology } => Target::Cluster(Box::new(Router::new(
                cluster.clone(),
                topology,
                opts.retry_for,
            ))),
        };
        Applier {
            source,
            src,
            target,
            opts,
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
                let ops = self.read(db, keys).await?;
                self.write(db, ops).await
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

    /// The target commands that make `keys` of `db` what the source holds now.
    async fn read(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<Ops> {
        let ep = self.source.endpoint.to_string();
        let (now, replies) = match &mut self.src {
            Source::Standalone(conn) => {
                if conn.is_none() {
                    *conn = Some(self.source.connect().await?);
                }
                let conn = conn
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("no source connection"))?;
                conn.select(db).await?;
                let mut p = Pipeline::new();
                p.cmd(&[b"TIME"]);
                for k in keys {
                    p.pttl_dump(k);
                }
                let mut it = conn.run(&p).await?.into_iter();
                let now = it.next().as_ref().and_then(parse_time_ms).ok_or_else(|| {
                    anyhow::anyhow!("the source {ep} did not answer TIME with a time")
                })?;
                (now, it.collect::<Vec<_>>())
            }
            Source::Cluster(router) => {
                // The masters' clocks are the seed's (measured once): this machine's clock before
                // the reads were sent, moved to the source's, is at most a round trip early, so a
                // TTL is never stretched.
                let now = crate::sink::now_ms() + self.opts.clocks.source_skew_ms;
                (now, router.run(&Reads(keys)).await?)
            }
        };
        let mut it = replies.into_iter();
        let mut ops = Vec::with_capacity(keys.len());
        for key in keys {
            let (Some(pttl), Some(dump)) = (it.next(), it.next()) else {
                anyhow::bail!("the source {ep} sent fewer replies than commands");
            };
            let op = match key_record(&ep, db, key, now, &pttl, dump)? {
                None => Op::Del(key.clone()),
                Some(rec) => match restore_ttl(&self.opts, &rec, &ep)? {
                    // Expired on the source while in flight: gone there too.
                    None => Op::Del(key.clone()),
                    Some(ttl) => Op::Restore(rec, ttl),
                },
            };
            ops.push(op);
        }
        Ok(Ops(ops))
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
        for (op, reply) in ops.0.iter().zip(replies) {
            match (op, reply) {
                (Op::Restore(rec, _), Reply::Error(err)) => {
                    return Err(refused(&ep, tdb, rec, &err))
                }
                (Op::Del(k), Reply::Error(err)) => anyhow::bail!(
                    "the target {ep} refused to delete key {} (db {tdb}): {err}. The target's ACL \
                     user needs +del for --follow",
                    crate::report::escape_key(k)
                ),
                (Op::Restore(..), _) => done.written += 1,
                (Op::Del(_), _) => done.deleted += 1,
            }
        }
        Ok(done)
    }
}

fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConnError>()
        .is_some_and(ConnError::is_transient)
}
