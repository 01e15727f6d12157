//! The RESTORE writer: one connection to the target that writes whole batches in one round trip.
//!
//! Each record becomes `RESTORE key ttl payload ABSTTL [REPLACE]`. Several writers run in
//! parallel, each with its own connection, so the target always has batches to chew on. A lost
//! connection is reconnected and the whole batch sent again; that is safe because every write
//! is idempotent (REPLACE of our own value, or a BUSYKEY skip). Replies that no retry can fix
//! (out of memory, read-only replica, ACL, a payload the target cannot load) stop the job with a
//! message that says what to do — except, with `--on-key-error skip`, a refusal that is one
//! key's own fault (`key_error.rs`): that key goes to the dead-letter file and the batch goes on.

use std::time::Duration;

use crate::counts::Counts;
use crate::display::{escape_key, human_bytes};
use crate::endpoint::retry::Backoff;
use crate::endpoint::{ConnError, Connection, ErrorKind, Pipeline, Reply, Server};
use crate::policy::OnConflict;
use crate::record::Record;
use crate::source::Batch;

use super::key_error::{key_fault, Cause, Quarantine};
use super::options::WriterOptions;
use crate::endpoint::bulk_limit;

/// How long a target takes per RESTORE, from the batches written so far: a writer sleeps
/// through most of a batch's expected time before reading its replies.
///
/// Why: the target answers a batch in bursts, one per pass of its event loop (~100 RESTOREs,
/// a ~500-byte TLS record), and each burst woke ferry: ~3,500 of a live copy's ~5,400
/// wake-ups per 1M keys after the reader's were cut (see `endpoint/conn.rs`, `LowWater`).
/// Sleeping through [`Pace::SHARE`] of the expected time leaves the other writers' batches
/// to keep the target busy, and the replies are read in a few large reads. A sleep after
/// which every reply was already there says only that the batch took less: the estimate is
/// lowered, so the sleep never grows to the whole batch (the target would wait for ferry).
#[derive(Debug, Default)]
struct Pace {
    /// Nanoseconds per RESTORE of the last batches (0: none measured yet).
    per_key_ns: u64,
}

impl Pace {
    /// The part of a batch's expected time slept through.
    const SHARE: f64 = 0.6;

    /// Replies read within this after the sleep were all there already: slept too long.
    const OVERSLEPT: Duration = Duration::from_micros(500);

    /// The longest sleep, whatever the estimate (a stalled batch is not a measure).
    const MAX: Duration = Duration::from_millis(200);

    /// How long to sleep before reading the replies of `n` RESTOREs.
    fn quiet_for(&self, n: usize) -> Duration {
        let ns = self.per_key_ns as f64 * n as f64 * Self::SHARE;
        Duration::from_nanos(ns as u64).min(Self::MAX)
    }

    /// Notes that `n` RESTOREs took `took` from sending to their last reply, of which `read`
    /// after the sleep.
    fn note(&mut self, n: usize, took: Duration, read: Duration) {
        if n < 100 {
            return; // too small to say anything
        }
        if read < Self::OVERSLEPT {
            self.per_key_ns -= self.per_key_ns / 4;
            return;
        }
        let now = (took.as_nanos() / n as u128).min(u128::from(u32::MAX)) as u64;
        self.per_key_ns = if self.per_key_ns == 0 {
            now
        } else {
            (self.per_key_ns + now) / 2
        };
    }
}

/// One writer task's connection and reusable buffers.
pub struct Writer {
    server: Server,
    conn: Option<Connection>,
    opts: WriterOptions,
    pipeline: Pipeline,
    pace: Pace,
    backoff: Backoff,
    /// The largest payload this writer has written: the target takes values that large.
    largest_written: usize,
}

/// A failure to write a batch that no retry can fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(pub String);

impl Writer {
    /// A writer for `server` (connects lazily).
    pub fn new(server: Server, opts: WriterOptions) -> Writer {
        let backoff = Backoff::new(opts.retry_for);
        Writer {
            server,
            conn: None,
            opts,
            pipeline: Pipeline::new(),
            pace: Pace::default(),
            backoff,
            largest_written: 0,
        }
    }

    /// The target server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// How this writer writes.
    pub fn options(&self) -> &WriterOptions {
        &self.opts
    }

    /// Writes every record of `batch`, retrying lost connections; returns what was done. Keys
    /// dead-lettered (`--on-key-error skip`) are on disk before this returns.
    pub async fn write(&mut self, batch: &Batch) -> anyhow::Result<Counts> {
        let mut records = std::borrow::Cow::Borrowed(batch.records.as_slice());
        let mut quarantine = Quarantine::new(self.opts.key_errors.clone());
        loop {
            let before = quarantine.len();
            match self.try_write(&records, batch, &mut quarantine).await {
                Ok(mut counts) => {
                    self.backoff.reset();
                    let largest = records.iter().map(|r| r.payload.len()).max();
                    self.largest_written = self.largest_written.max(largest.unwrap_or(0));
                    quarantine.flush(&mut counts)?;
                    return Ok(counts);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(e)) => {
                    // The attempt is made again whole: its refusals will come again.
                    quarantine.truncate(before);
                    self.conn = None;
                    let (server, opts) = (&self.server, &self.opts);
                    if let Some((i, refusal)) =
                        refused_as_too_large(server, opts, &records, self.largest_written).await
                    {
                        // The value is over the target's limit: that key's fault alone.
                        let rec = &records[i];
                        let reason =
                            "Protocol error: invalid bulk length (over proto-max-bulk-len)";
                        quarantine.refuse(
                            rec,
                            self.target_db(rec),
                            Cause::TooLarge,
                            reason,
                            refusal,
                        )?;
                        let mut rest = records.into_owned();
                        rest.remove(i);
                        records = std::borrow::Cow::Owned(rest);
                        continue;
                    }
                    self.backoff.wait(e).await?;
                }
            }
        }
    }

    /// The target DB of `rec`.
    fn target_db(&self, rec: &Record) -> u32 {
        self.opts.target_db(rec.db)
    }

    /// One attempt at writing `records` (of `batch`): a lost connection is
    /// [`Failure::Transient`] and the caller sends the whole batch again.
    async fn try_write(
        &mut self,
        records: &[Record],
        batch: &Batch,
        q: &mut Quarantine,
    ) -> Result<Counts, Failure> {
        let mut counts = Counts {
            scanned: batch.scanned,
            vanished: batch.vanished,
            ..Counts::default()
        };
        if records.is_empty() {
            return Ok(counts);
        }
        let db = self.target_db(&records[0]);
        if self.conn.is_none() {
            self.conn = Some(self.server.connect().await?);
        }
        let Writer {
            conn,
            opts,
            pipeline,
            pace,
            ..
        } = self;
        let conn = conn
            .as_mut()
            .ok_or_else(|| Failure::Fatal(anyhow::anyhow!("no target connection")))?;
        let ep = conn.endpoint().to_string();
        let mut to = Dest { conn, ep: &ep, db };
        let mut round = Round {
            pipeline,
            opts,
            q,
            counts: &mut counts,
            pace,
        };
        let again = round.restore(&mut to, records, Pass::First).await?;
        if !again.is_empty() {
            round.restore(&mut to, &again, Pass::Reencoded).await?;
        }
        Ok(counts)
    }
}

/// Where a batch goes: the connection, its endpoint for messages, the target DB selected.
struct Dest<'a> {
    conn: &'a mut Connection,
    ep: &'a str,
    db: u32,
}

/// Which pass over a batch's records a round of RESTOREs is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The records as read (the DB is selected first when needed).
    First,
    /// Records the target refused as too new, re-encoded for it (never re-encoded again).
    Reencoded,
}

/// What a round of RESTOREs uses and adds to.
struct Round<'a> {
    pipeline: &'a mut Pipeline,
    opts: &'a WriterOptions,
    q: &'a mut Quarantine,
    counts: &'a mut Counts,
    pace: &'a mut Pace,
}

impl Round<'_> {
    /// Writes `records` on `to` in one round trip, adding to the counts; returns the records the
    /// target refused as too new for it, re-encoded (first pass only).
    async fn restore(
        &mut self,
        to: &mut Dest<'_>,
        records: &[Record],
        pass: Pass,
    ) -> Result<Vec<Record>, Failure> {
        self.pipeline.clear();
        let select = pass == Pass::First && self.opts.select_db && to.conn.db() != to.db;
        if select {
            let db = to.db.to_string();
            self.pipeline.cmd(&[b"SELECT".as_slice(), db.as_bytes()]);
        }
        let sent = self.encode(records, to).map_err(Failure::Fatal)?;
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        to.conn.send(self.pipeline).await?;
        if select {
            let mut reply = Vec::with_capacity(1);
            to.conn.recv_into(1, &mut reply).await?;
            if let Some(Reply::Error(e)) = reply.pop() {
                let (ep, db) = (to.ep, to.db);
                return Err(Failure::Fatal(anyhow::anyhow!(
                    "the target {ep} refused SELECT {db}: {e}"
                )));
            }
            to.conn.note_selected(to.db);
        }
        // Replies other than `+OK`, by the index of their record in `sent`: usually none.
        let mut unusual: Vec<(usize, Reply)> = Vec::new();
        to.conn.wait_quietly(self.pace.quiet_for(sent.len())).await;
        let woke = std::time::Instant::now();
        to.conn
            .recv_statuses(sent.len(), |i, reply| unusual.push((i, reply)))
            .await?;
        let pace = &mut *self.pace;
        pace.note(sent.len(), started.elapsed(), woke.elapsed());
        let counts = &mut *self.counts;
        counts.written += sent.len() as u64;
        counts.bytes += sent.iter().map(|r| r.size() as u64).sum::<u64>();
        if pass == Pass::Reencoded {
            counts.reencoded += sent.len() as u64;
        }
        let (again, busy) = self
            .judge_refusals(&sent, unusual, to, pass)
            .map_err(Failure::Fatal)?;
        if !busy.is_empty() {
            let own = super::resent::own_copies(&mut *to.conn, &busy, &self.opts.clocks).await?;
            super::resent::count(&busy, &own, self.counts);
        }
        Ok(again)
    }

    /// Appends a RESTORE for each of `records` to the pipeline; returns the records sent, in
    /// order. A value over the target's known limit is refused (dead-lettered or fatal, see
    /// `key_error.rs`) and an expired one counted, neither sent.
    fn encode<'r>(
        &mut self,
        records: &'r [Record],
        to: &Dest<'_>,
    ) -> anyhow::Result<Vec<&'r Record>> {
        let opts = self.opts;
        let replace = opts.on_conflict != OnConflict::Skip;
        let mut sent: Vec<&Record> = Vec::with_capacity(records.len());
        let mut ttl_buf = itoa::Buffer::new();
        for rec in records {
            if let Some(e) = over_limit(opts, rec, to.ep) {
                let reason = too_large_reason(opts, rec);
                self.q.refuse(rec, to.db, Cause::TooLarge, &reason, e)?;
                continue;
            }
            let Some(ttl) = restore_ttl(opts, rec, to.ep)? else {
                self.counts.expired_skipped += 1;
                continue;
            };
            push_restore(self.pipeline, rec, ttl_buf.format(ttl).as_bytes(), replace);
            sent.push(rec);
        }
        Ok(sent)
    }

    /// The error replies of a round (`unusual`, by index in `sent`): a `BUSYKEY` is returned
    /// second (ferry's own copy or a conflict kept, `resent.rs` decides); a payload too new for
    /// the target is re-encoded (returned first, first pass only); any other refusal is judged
    /// (`judge`).
    fn judge_refusals<'r>(
        &mut self,
        sent: &[&'r Record],
        unusual: Vec<(usize, Reply)>,
        to: &Dest<'_>,
        pass: Pass,
    ) -> anyhow::Result<(Vec<Record>, Vec<&'r Record>)> {
        let mut again: Vec<Record> = Vec::new();
        let mut busy: Vec<&Record> = Vec::new();
        for (i, reply) in unusual {
            // A reply that is neither `+OK` nor an error still means the key was written.
            let Reply::Error(err) = reply else { continue };
            let rec = sent[i];
            let counts = &mut *self.counts;
            counts.written -= 1;
            counts.bytes -= rec.size() as u64;
            if pass == Pass::Reencoded {
                counts.reencoded -= 1;
            }
            if ErrorKind::of(&err) == ErrorKind::BusyKey {
                busy.push(rec);
                continue;
            }
            let reencoded = match pass {
                Pass::First => reencode_refused(self.opts, rec, &err),
                Pass::Reencoded => None,
            };
            match reencoded {
                Some(Ok(r)) => again.push(r),
                Some(Err(e)) => {
                    let reason = format!("{err}; {e:#}");
                    self.q
                        .refuse(rec, to.db, Cause::NotRepresentable, &reason, e)?
                }
                None => judge(self.q, to.ep, to.db, rec, &err)?,
            }
        }
        Ok((again, busy))
    }
}

/// For a record the target refused with `err`: when the refusal is "DUMP payload version or
/// checksum are wrong" and the payload's version is newer than the target's (known) RDB version,
/// the record re-encoded for the target (`rdb::encode::transcode_payload`: decoded and written
/// in encodings every version loads). `None` for any other refusal. An `Err` names the key when
/// the value cannot be expressed in the target's version (e.g. hash field TTLs into RDB < 12):
/// never dropped silently.
pub(crate) fn reencode_refused(
    opts: &WriterOptions,
    rec: &Record,
    err: &str,
) -> Option<anyhow::Result<Record>> {
    let target = opts.target_rdb?;
    if ErrorKind::of(err) != ErrorKind::PayloadVersion {
        return None;
    }
    let version = rec.payload_rdb_version()?;
    if crate::rdb::encode::target_accepts(version, target) {
        return None;
    }
    Some(
        crate::rdb::encode::transcode_payload(&rec.payload, target)
            .map(|payload| Record {
                payload,
                ..rec.clone()
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "key {} (db {}) was serialized in RDB format version {version}, which the target cannot \
                     load (it loads up to RDB {target}), and re-encoding it failed: {e}. The target must run \
                     the same or a newer Redis/Valkey version than the source",
                    escape_key(&rec.key),
                    rec.db
                )
            }),
    )
}

/// After a lost connection, when the target's `proto-max-bulk-len` is unknown and `records`
/// hold a value larger than any written so far (`largest_written`): whether the target refuses
/// that value's size (see `bulk_limit`), with the index of its record. Such a refusal is final,
/// never retried.
async fn refused_as_too_large(
    server: &Server,
    opts: &WriterOptions,
    records: &[Record],
    largest_written: usize,
) -> Option<(usize, anyhow::Error)> {
    if opts.max_bulk.is_some() {
        return None;
    }
    let rec = suspect(records, largest_written)?;
    let i = records.iter().position(|r| std::ptr::eq(r, rec))?;
    let db = opts.target_db(rec.db);
    let refusal = bulk_limit::check_loss(server, db, &rec.key, rec.payload.len()).await?;
    Some((i, refusal))
}

/// A RESTORE of `rec` into DB `db` of `ep` refused with `err`: dead-lettered when that is the
/// key's own fault and the policy is `skip` (`key_error.rs`); otherwise the error to stop with.
pub(crate) fn judge(
    q: &mut Quarantine,
    ep: &str,
    db: u32,
    rec: &Record,
    err: &str,
) -> anyhow::Result<()> {
    match key_fault(err) {
        Some(cause) => q.refuse(rec, db, cause, err, refused(ep, db, rec, err)),
        None => Err(refused(ep, db, rec, err)),
    }
}

enum Failure {
    Transient(ConnError),
    Fatal(anyhow::Error),
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        if e.is_transient() {
            Failure::Transient(e)
        } else {
            Failure::Fatal(e.into())
        }
    }
}

/// The `RESTORE … ABSTTL` time for `rec` on the target's clock (0: no expiry), or `None` when
/// its expiry has passed already (the caller counts it as expired and writes nothing). Refuses a
/// value larger than the target accepts, naming the key and the target `ep`.
pub(crate) fn restore_ttl(
    opts: &WriterOptions,
    rec: &Record,
    ep: &str,
) -> anyhow::Result<Option<i64>> {
    if let Some(e) = over_limit(opts, rec, ep) {
        return Err(e);
    }
    Ok(match rec.expire_at_ms {
        None => Some(0),
        Some(at) if opts.clocks.has_passed(at) => None,
        Some(at) => Some(opts.clocks.to_target(at)),
    })
}

/// The refusal of a value larger than the target accepts (known `proto-max-bulk-len`), naming
/// the key and the target `ep`; `None` when it fits or the limit is unknown.
pub(crate) fn over_limit(opts: &WriterOptions, rec: &Record, ep: &str) -> Option<anyhow::Error> {
    let max = opts.max_bulk?;
    (rec.payload.len() as u64 > max).then(|| {
        anyhow::anyhow!(
            "key {} (db {}) is {} but the target {ep} accepts values up to {} (proto-max-bulk-len); \
             raise proto-max-bulk-len on the target (CONFIG SET or the parameter group), then rerun the same command \
             (or pass --on-key-error skip to set such keys aside in a dead-letter file and copy the others)",
            escape_key(&rec.key),
            rec.db,
            human_bytes(rec.payload.len() as u64),
            human_bytes(max)
        )
    })
}

/// The dead-letter reason of a value over the known limit (no target text: it was never sent).
pub(crate) fn too_large_reason(opts: &WriterOptions, rec: &Record) -> String {
    format!(
        "value of {} bytes over the target's proto-max-bulk-len of {} bytes (not sent)",
        rec.payload.len(),
        opts.max_bulk.unwrap_or(0)
    )
}

/// Appends `RESTORE key ttl payload ABSTTL [REPLACE]` to `p`.
pub(crate) fn push_restore(p: &mut Pipeline, rec: &Record, ttl: &[u8], replace: bool) {
    p.restore(&rec.key, ttl, &rec.payload, replace);
}

/// Turns a RESTORE error reply into a message that says what to do.
pub(crate) fn refused(ep: &str, db: u32, rec: &Record, err: &str) -> anyhow::Error {
    let kind = ErrorKind::of(err);
    if kind == ErrorKind::OverBulkLimit {
        // Read before the server closed the connection (often it is only seen as a reset).
        return bulk_limit::too_large(ep, db, &rec.key, rec.payload.len());
    }
    let key = escape_key(&rec.key);
    let what = format!("the target {ep} refused to write key {key} (db {db}): {err}.");
    let todo = if kind == ErrorKind::Oom {
        "The target is out of memory (maxmemory reached). Give it more memory (a larger node type or a \
         higher maxmemory) and rerun the same command: it resumes from the checkpoint."
            .to_string()
    } else if kind == ErrorKind::ReadOnly {
        "The target is a read-only replica: point --target at the primary endpoint.".to_string()
    } else if matches!(kind, ErrorKind::NoPerm(_)) {
        "The target's ACL user lacks a permission: it needs +restore +select +ping +info +time on all keys (~*)."
            .to_string()
            + skip_hint(err)
    } else if kind.is_bad_payload() {
        let what = match rec.payload_rdb_version() {
            Some(v) => format!(
                "The value was serialized in RDB format version {v}, which this target cannot load: the target must \
                 run the same or a newer Redis/Valkey version than the source."
            ),
            None => "The value's serialized form is not one this target can load.".to_string(),
        };
        what + skip_hint(err)
    } else if kind.is_redirect() || kind == ErrorKind::ClusterDown {
        "The target is a Redis Cluster that changed its slot layout during the run; rerun the same command to resume."
            .to_string()
    } else {
        "Rerun the same command to resume once the cause is fixed.".to_string()
    };
    anyhow::anyhow!("{what} {todo}")
}

/// For a refusal that is the key's own fault: how to copy the other keys anyway.
fn skip_hint(err: &str) -> &'static str {
    match key_fault(err) {
        Some(_) => " Or pass --on-key-error skip: keys refused like this one go to a dead-letter file, the others are copied.",
        None => "",
    }
}

/// The largest record of `records` over both [`bulk_limit::PROBE_FLOOR`] and `written` (the largest payload
/// already written by this writer, which the target evidently takes): the one to ask about.
fn suspect(records: &[Record], written: usize) -> Option<&Record> {
    records
        .iter()
        .filter(|r| r.payload.len() > written.max(bulk_limit::PROBE_FLOOR))
        .max_by_key(|r| r.payload.len())
}
