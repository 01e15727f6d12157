//! Live source: SCAN one DB of one server, and fetch each page's TTLs and values in one round trip.
//!
//! Per page: `SCAN cursor COUNT n`, then one pipeline `TIME, PTTL k1, DUMP k1, PTTL k2, …`. The
//! server's `TIME` taken in the same pipeline turns each relative PTTL into an absolute expiry on
//! the source's clock, so the time a record waits in ferry's queues never stretches its TTL.
//!
//! A lost connection is retried with backoff from the same cursor (SCAN cursors are stateless on
//! the server); keys of the page already handed on are not sent twice.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Batch, Position};
use crate::endpoint::{ConnError, Connection, Pipeline, Reply, Server};
use crate::record::Record;
use crate::retry::Backoff;
use crate::stop::Stop;

/// How one DB is scanned.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// `SCAN … COUNT n`.
    pub scan_count: u32,
    /// Most keys per batch.
    pub batch_keys: usize,
    /// Most payload bytes per batch (a page of big values is split into several batches).
    pub batch_bytes: usize,
    /// How long to keep retrying a lost connection.
    pub retry_for: Duration,
}

/// One stream to read: a DB of a source server, from a cursor.
pub struct ScanTask {
    /// Stream index (for batches and the checkpoint).
    pub stream: usize,
    /// The server.
    pub server: Server,
    /// The DB on it.
    pub db: u32,
    /// Cursor to start from (0, or the checkpoint's).
    pub cursor: u64,
    /// Sequence number of the first batch this run sends.
    pub first_seq: u64,
    /// For a cluster master: its node id, checked on every (re)connect. A SCAN cursor only means
    /// something on the node that issued it, so a failover ends this stream with an error
    /// instead of continuing on another node's keyspace (a rerun rescans it on the new master).
    pub node_id: Option<String>,
}

/// Reads the whole DB into `tx`, stopping early (cleanly) when `stop` is raised.
pub async fn scan_db(
    task: ScanTask,
    opts: ScanOptions,
    tx: mpsc::Sender<Batch>,
    stop: Stop,
) -> anyhow::Result<()> {
    let mut reader = Reader {
        conn: None,
        server: task.server,
        db: task.db,
        opts,
        seq: task.first_seq,
        stream: task.stream,
        avg_size: 256,
        pipeline: Pipeline::new(),
        prefetched: None,
        node_id: task.node_id,
    };
    let mut cursor = task.cursor;
    let mut backoff = Backoff::new(reader.opts.retry_for);
    loop {
        if stop.is_raised() {
            return Ok(());
        }
        let mut sent: HashSet<Bytes> = HashSet::new();
        let next = loop {
            match reader.page(cursor, &mut sent, &tx).await {
                Ok(next) => break next,
                Err(StepError::Fatal(e)) => return Err(e),
                Err(StepError::Transient(e)) => {
                    reader.conn = None;
                    backoff.wait(e).await?;
                }
            }
        };
        backoff.reset();
        // `None`: the receiver is gone because the job is stopping.
        let Some(next) = next else { return Ok(()) };
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

struct Reader {
    conn: Option<Connection>,
    server: Server,
    db: u32,
    opts: ScanOptions,
    seq: u64,
    stream: usize,
    /// Running estimate of a record's size, to size DUMP round trips by bytes.
    avg_size: usize,
    /// The DUMP round trip's command buffer, reused.
    pipeline: Pipeline,
    /// The SCAN reply for this cursor, asked for in the previous page's last DUMP round trip.
    prefetched: Option<(u64, Reply)>,
    /// Expected cluster node id (see [`ScanTask::node_id`]).
    node_id: Option<String>,
}

/// A failure inside one page: retry the page, or give up.
enum StepError {
    Transient(ConnError),
    Fatal(anyhow::Error),
}

impl From<ConnError> for StepError {
    fn from(e: ConnError) -> Self {
        if e.is_transient() {
            StepError::Transient(e)
        } else {
            StepError::Fatal(e.into())
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConnError>() {
            Ok(c) => c.into(),
            Err(e) => StepError::Fatal(e),
        }
    }
}

impl Reader {
    async fn conn(&mut self) -> Result<&mut Connection, StepError> {
        if self.conn.is_none() {
            let mut c = self.server.connect().await?;
            if let Some(want) = &self.node_id {
                let me = crate::endpoint::cluster::whoami(&mut c).await?;
                let (id, master) = (me.id, me.master);
                if &id != want || !master {
                    return Err(StepError::Fatal(anyhow::anyhow!(
                        "the source node {} is now {} {} (it was master {} when this scan started): \
                         the cluster failed over during the run. Rerun the same command: the slots of \
                         that master are scanned again on their new master",
                        self.server.endpoint,
                        if master { "master" } else { "replica" },
                        crate::endpoint::cluster::short_id(&id),
                        crate::endpoint::cluster::short_id(want)
                    )));
                }
            }
            c.select(self.db).await?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StepError::Fatal(anyhow::anyhow!("no source connection")))
    }

    /// One SCAN page: returns the next cursor, or `None` when the receiver has gone.
    async fn page(
        &mut self,
        cursor: u64,
        sent: &mut HashSet<Bytes>,
        tx: &mpsc::Sender<Batch>,
    ) -> Result<Option<u64>, StepError> {
        let reply = match self.prefetched.take() {
            Some((c, reply)) if c == cursor => reply,
            _ => {
                let count = self.opts.scan_count.to_string();
                let cur = cursor.to_string();
                self.conn()
                    .await?
                    .cmd(&[
                        b"SCAN".as_slice(),
                        cur.as_bytes(),
                        b"COUNT",
                        count.as_bytes(),
                    ])
                    .await?
            }
        };
        let (next, keys) = parse_scan(&reply)
            .with_context(|| format!("SCAN {cursor} on the source {}", self.server.endpoint))?;
        // `sent` is only filled when a page is retried after a lost connection: hashing every
        // key of every page into it would cost more than all of the RESP parsing.
        let mut keys = keys;
        if !sent.is_empty() {
            keys.retain(|k| !sent.contains(k));
        }
        let position = if next == 0 {
            Position::Done
        } else {
            Position::Cursor(next)
        };
        if keys.is_empty() {
            let batch = self.batch(Vec::new(), Some(position), 0, 0);
            return Ok(tx.send(batch).await.ok().map(|_| next));
        }
        let mut start = 0;
        while start < keys.len() {
            let chunk =
                (self.opts.batch_bytes / self.avg_size.max(1)).clamp(1, self.opts.batch_keys);
            let end = (start + chunk).min(keys.len());
            let is_last = end == keys.len();
            // The page's last round trip also asks for the next page's keys, so a page costs
            // one round trip instead of two.
            let scan_next = (is_last && next != 0).then_some(next);
            let (records, vanished) = match self.fetch(&keys[start..end], scan_next).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    // The retry of this page must not send the keys already handed on again.
                    sent.extend(keys[..start].iter().cloned());
                    return Err(e);
                }
            };
            let scanned = (end - start) as u64;
            if !records.is_empty() {
                let total: usize = records.iter().map(Record::size).sum();
                self.avg_size = (self.avg_size + total / records.len()) / 2 + 1;
            }
            let batch = self.batch(records, is_last.then_some(position), scanned, vanished);
            if tx.send(batch).await.is_err() {
                return Ok(None);
            }
            start = end;
        }
        Ok(Some(next))
    }

    fn batch(
        &mut self,
        records: Vec<Record>,
        position: Option<Position>,
        scanned: u64,
        vanished: u64,
    ) -> Batch {
        let b = Batch {
            stream: self.stream,
            seq: self.seq,
            records,
            position,
            scanned,
            vanished,
            noted: super::Counts::default(),
        };
        self.seq += 1;
        b
    }

    /// `TIME`, then `PTTL`+`DUMP` for each key, then `SCAN scan_next` if asked (its reply is
    /// kept in `prefetched`), in one round trip.
    async fn fetch(
        &mut self,
        keys: &[Bytes],
        scan_next: Option<u64>,
    ) -> Result<(Vec<Record>, u64), StepError> {
        let mut p = std::mem::take(&mut self.pipeline);
        p.clear();
        p.cmd(&[b"TIME"]);
        for k in keys {
            p.cmd(&[b"PTTL".as_slice(), k]);
            p.cmd(&[b"DUMP".as_slice(), k]);
        }
        if let Some(c) = scan_next {
            let mut count = itoa::Buffer::new();
            let mut cur = itoa::Buffer::new();
            p.cmd(&[
                b"SCAN".as_slice(),
                cur.format(c).as_bytes(),
                b"COUNT",
                count.format(self.opts.scan_count).as_bytes(),
            ]);
        }
        let db = self.db;
        let ep = self.server.endpoint.to_string();
        let replies = match self.conn().await {
            Ok(conn) => conn.run(&p).await,
            Err(e) => {
                self.pipeline = p;
                return Err(e);
            }
        };
        self.pipeline = p;
        let mut it = replies?.into_iter();
        let now_ms = it.next().as_ref().and_then(parse_time_ms).ok_or_else(|| {
            StepError::Fatal(anyhow::anyhow!(
                "the source {ep} did not answer TIME with a time"
            ))
        })?;
        let mut records = Vec::with_capacity(keys.len());
        let mut vanished = 0;
        for key in keys {
            let (Some(pttl), Some(dump)) = (it.next(), it.next()) else {
                return Err(StepError::Fatal(anyhow::anyhow!(
                    "the source {ep} sent fewer replies than commands"
                )));
            };
            for r in [&pttl, &dump] {
                if let Some(err) = r.error() {
                    return Err(StepError::Fatal(source_refused(&ep, db, key, err)));
                }
            }
            let pttl = pttl.as_int().unwrap_or(-2);
            let payload = match dump {
                Reply::Bulk(Some(b)) => b,
                _ => {
                    vanished += 1;
                    continue;
                }
            };
            let expire_at_ms = match pttl {
                -2 => {
                    vanished += 1;
                    continue;
                }
                -1 => None,
                // Other negative values do not exist; treat them as "no TTL information".
                n if n < 0 => None,
                n => Some(now_ms + n),
            };
            records.push(Record {
                db,
                key: key.clone(),
                payload,
                expire_at_ms,
            });
        }
        if let Some(c) = scan_next {
            self.prefetched = it.next().map(|reply| (c, reply));
        }
        Ok((records, vanished))
    }
}

fn source_refused(ep: &str, db: u32, key: &[u8], err: &str) -> anyhow::Error {
    let hint = if err.starts_with("NOPERM") {
        " The source's ACL user needs +scan +pttl +dump +time +select +info and ~* (all keys)."
    } else if err.starts_with("MOVED") || err.starts_with("ASK") {
        " The source cluster is being resharded: rerun the same command when it is over; the slots \
         that moved are scanned again on their new masters."
    } else {
        ""
    };
    anyhow::anyhow!(
        "the source {ep} refused to read key {} (db {db}): {err}.{hint}",
        crate::report::escape_key(key)
    )
}

/// Parses a SCAN reply into the next cursor and the keys.
pub fn parse_scan(reply: &Reply) -> anyhow::Result<(u64, Vec<Bytes>)> {
    if let Some(err) = reply.error() {
        let hint = if err.starts_with("NOPERM") {
            " (the ACL user needs +scan)"
        } else {
            ""
        };
        anyhow::bail!("the server refused SCAN: {err}{hint}");
    }
    let Reply::Array(Some(parts)) = reply else {
        anyhow::bail!("unexpected SCAN reply {reply:?}");
    };
    let [cursor, keys] = parts.as_slice() else {
        anyhow::bail!("unexpected SCAN reply shape");
    };
    let cursor = cursor
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .context("SCAN cursor is not a number")?;
    let Reply::Array(Some(keys)) = keys else {
        anyhow::bail!("unexpected SCAN key list");
    };
    let keys = keys
        .iter()
        .map(|k| match k {
            Reply::Bulk(Some(b)) => Ok(b.clone()),
            other => Err(anyhow::anyhow!("unexpected key in SCAN reply: {other:?}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((cursor, keys))
}

/// Parses a `TIME` reply (`[seconds, microseconds]`) into Unix milliseconds.
pub fn parse_time_ms(reply: &Reply) -> Option<i64> {
    let Reply::Array(Some(parts)) = reply else {
        return None;
    };
    let num = |r: &Reply| -> Option<i64> { std::str::from_utf8(r.as_bytes()?).ok()?.parse().ok() };
    let secs = num(parts.first()?)?;
    let micros = num(parts.get(1)?)?;
    Some(secs * 1000 + micros / 1000)
}
