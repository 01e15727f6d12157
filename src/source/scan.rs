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
        let count = self.opts.scan_count.to_string();
        let cur = cursor.to_string();
        let reply = self
            .conn()
            .await?
            .cmd(&[
                b"SCAN".as_slice(),
                cur.as_bytes(),
                b"COUNT",
                count.as_bytes(),
            ])
            .await?;
        let (next, keys) = parse_scan(&reply)
            .with_context(|| format!("SCAN {cursor} on the source {}", self.server.endpoint))?;
        let keys: Vec<Bytes> = keys.into_iter().filter(|k| !sent.contains(k)).collect();
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
            let (records, vanished) = self.fetch(&keys[start..end]).await?;
            let is_last = end == keys.len();
            let scanned = (end - start) as u64;
            if !records.is_empty() {
                let total: usize = records.iter().map(Record::size).sum();
                self.avg_size = (self.avg_size + total / records.len()) / 2 + 1;
            }
            let batch = self.batch(records, is_last.then_some(position), scanned, vanished);
            if tx.send(batch).await.is_err() {
                return Ok(None);
            }
            sent.extend(keys[start..end].iter().cloned());
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
        };
        self.seq += 1;
        b
    }

    /// `TIME`, then `PTTL`+`DUMP` for each key, in one round trip.
    async fn fetch(&mut self, keys: &[Bytes]) -> Result<(Vec<Record>, u64), StepError> {
        let mut p = Pipeline::new();
        p.cmd(&[b"TIME"]);
        for k in keys {
            p.cmd(&[b"PTTL".as_slice(), k]);
            p.cmd(&[b"DUMP".as_slice(), k]);
        }
        let db = self.db;
        let ep = self.server.endpoint.to_string();
        let replies = self.conn().await?.run(&p).await?;
        let mut it = replies.into_iter();
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
        Ok((records, vanished))
    }
}

fn source_refused(ep: &str, db: u32, key: &[u8], err: &str) -> anyhow::Error {
    let hint = if err.starts_with("NOPERM") {
        " The source's ACL user needs +scan +pttl +dump +time +select +info and ~* (all keys)."
    } else {
        ""
    };
    anyhow::anyhow!(
        "the source {ep} refused to read key {} (db {db}): {err}.{hint}",
        crate::report::escape_key(key)
    )
}

fn parse_scan(reply: &Reply) -> anyhow::Result<(u64, Vec<Bytes>)> {
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
