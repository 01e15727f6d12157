//! Live source: SCAN one DB of one server, and fetch each page's TTLs and values in pipelines.
//!
//! Per chunk of a page: one pipeline `TIME, PTTL k1, DUMP k1, …, PTTL kn, DUMP kn, TIME` (the
//! page's first chunk also carries the next page's `SCAN`), with two such round trips in flight
//! so the source never waits for ferry. The two `TIME`s around the PTTLs turn each relative PTTL
//! into an absolute expiry on the source's clock, exact even when the source stalls part-way
//! (see `read/expiry.rs`), so neither a stall nor the time a record waits in ferry's queues moves it.
//!
//! A lost connection is retried with backoff from the same cursor (SCAN cursors are stateless on
//! the server); keys of the page already handed on are not sent twice.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Batch, Position};
use crate::bigkey::{size, BigKey};
use crate::endpoint::retry::Backoff;
use crate::endpoint::{ConnError, Connection, Pipeline, Reply, Server};
use crate::partition::KeyShare;
use crate::read::expiry;
use crate::read::refusal::{Who, COPY_RIGHTS};
use crate::read::{dump_size, scan};
use crate::record::Record;
use crate::stop::Stop;
use crate::throttle::Throttle;

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
    /// Big-key detection (`--big-key-bytes`); `None`: every key is DUMPed.
    pub big: Option<BigProbe>,
}

/// How a reader tells big keys (see `bigkey/size.rs`).
#[derive(Debug, Clone, Copy)]
pub struct BigProbe {
    /// The probe the source supports.
    pub probe: size::Probe,
    /// Keys estimated larger than this are big.
    pub threshold: u64,
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
    /// The source server's load budget (`--max-keys-per-sec` …), when one is set.
    pub throttle: Option<Arc<Throttle>>,
    /// For a cluster master: its node id, checked on every (re)connect. A SCAN cursor only means
    /// something on the node that issued it, so a failover ends this stream with an error
    /// instead of continuing on another node's keyspace (a rerun rescans it on the new master).
    pub node_id: Option<String>,
    /// `--partition`: only keys of this share are read and handed on (the others are SCANned
    /// and dropped; they are another worker's).
    pub filter: Option<Arc<KeyShare>>,
}

/// DUMP round trips a reader keeps in flight. With two, the source works on the next chunk of
/// keys while ferry parses the replies of the previous one and hands them on, so a single-stream
/// source is never idle waiting for ferry.
const IN_FLIGHT: usize = 2;

/// Reads the whole DB into `tx`, stopping early (cleanly) when `stop` is raised.
///
/// Each SCAN page is cut into at least two chunks. A chunk is one round trip: `TIME`, then
/// `PTTL`+`DUMP` per key, and — in a page's first chunk — the `SCAN` of the next page, so the
/// keys of the next page are known while the rest of this page is still being fetched. Up to
/// [`IN_FLIGHT`] chunks are sent before the first one's replies are read.
pub async fn scan_db(
    task: ScanTask,
    opts: ScanOptions,
    tx: mpsc::Sender<Batch>,
    stop: Stop,
) -> anyhow::Result<()> {
    let mut reader = Reader {
        conn: None,
        reread_conn: None,
        server: task.server,
        db: task.db,
        backoff: Backoff::new(opts.retry_for),
        opts,
        seq: task.first_seq,
        stream: task.stream,
        avg_size: dump_size::FIRST_GUESS,
        pipeline: Pipeline::new(),
        replies: Vec::new(),
        node_id: task.node_id,
        throttle: task.throttle,
        filter: task.filter,
        todo: VecDeque::new(),
        in_flight: VecDeque::new(),
        resume: Resume {
            cursor: task.cursor,
            page: None,
            handed: 0,
        },
        retry: None,
    };
    reader.todo.push_back(Todo::Scan(task.cursor));
    loop {
        if stop.is_raised() {
            return Ok(());
        }
        match reader.step(&tx).await {
            Ok(Step::More) => reader.backoff.reset(),
            // Finished, or the receiver is gone because the job is stopping.
            Ok(Step::Done) => return Ok(()),
            Err(StepError::Fatal(e)) => return Err(e),
            Err(StepError::Transient(e)) => {
                reader.restart();
                reader.backoff.wait(e).await?;
            }
        }
    }
}

/// The keys of one SCAN page.
struct Page {
    /// The cursor SCAN was called with to list them (where a retry of the page starts).
    cursor: u64,
    /// The cursor SCAN returned: the next page (0: this was the last).
    next: u64,
    /// The keys to DUMP (once probed, only the small ones).
    keys: Vec<Bytes>,
    /// Its big keys, handed on with the page's last batch.
    big: Vec<BigKey>,
}

/// One round trip of a reader.
struct Chunk {
    /// The page whose keys `range` are fetched; `None` for a round trip that is only a SCAN.
    page: Option<Arc<Page>>,
    range: Range<usize>,
    /// `SCAN` this cursor in the same round trip.
    scan: Option<u64>,
    /// Probe the sizes of this (next) page's keys in the same round trip.
    probe: Option<Arc<Page>>,
}

impl Chunk {
    fn scan_only(cursor: u64) -> Chunk {
        Chunk {
            page: None,
            range: 0..0,
            scan: Some(cursor),
            probe: None,
        }
    }

    /// Commands in the round trip: two `TIME`s and two per key if there are keys, the probes
    /// (`per_probe` commands per probed key) and the SCAN.
    fn commands(&self, per_probe: usize) -> usize {
        let keys = self.range.len();
        let probes = self.probe.as_ref().map_or(0, |p| p.keys.len() * per_probe);
        (if keys > 0 {
            expiry::commands_with_values(keys)
        } else {
            0
        }) + probes
            + usize::from(self.scan.is_some())
    }

    fn keys(&self) -> &[Bytes] {
        match &self.page {
            Some(page) => &page.keys[self.range.clone()],
            None => &[],
        }
    }
}

/// Where a retry after a lost connection starts: `SCAN cursor`, of whose page (when known) the
/// first `handed` keys were handed on already. Moves only when a batch is handed on.
struct Resume {
    cursor: u64,
    page: Option<Arc<Page>>,
    handed: usize,
}

/// Work a reader has not asked the source for yet.
enum Todo {
    /// `SCAN cursor` alone: at the start, and after a lost connection.
    Scan(u64),
    /// The keys of a page from `from` on.
    Page { page: Arc<Page>, from: usize },
    /// A page whose keys' sizes are still to be probed (big-key detection on).
    Probe(Arc<Page>),
}

/// A retry after a lost connection: SCAN `cursor` again, leaving out the keys already handed on.
struct Retry {
    cursor: u64,
    sent: HashSet<Bytes>,
}

enum Step {
    More,
    Done,
}

struct Reader {
    conn: Option<Connection>,
    /// A second connection for re-reading TTLs after a stall (the first has round trips in
    /// flight); opened only when needed.
    reread_conn: Option<Connection>,
    server: Server,
    db: u32,
    opts: ScanOptions,
    backoff: Backoff,
    seq: u64,
    stream: usize,
    /// Running estimate of a record's size, to size DUMP round trips by bytes (see `read/dump_size.rs`).
    avg_size: usize,
    /// Command buffer, reused.
    pipeline: Pipeline,
    /// Reply buffer, reused.
    replies: Vec<Reply>,
    /// Expected cluster node id (see [`ScanTask::node_id`]).
    node_id: Option<String>,
    /// See [`ScanTask::throttle`].
    throttle: Option<Arc<Throttle>>,
    /// Keys of this worker's share (see [`ScanTask::filter`]).
    filter: Option<Arc<KeyShare>>,
    /// What is left to ask for, in order.
    todo: VecDeque<Todo>,
    /// Chunks sent, replies not read yet, oldest first.
    in_flight: VecDeque<Chunk>,
    /// Where a retry starts.
    resume: Resume,
    /// Set while a page is read again after a lost connection.
    retry: Option<Retry>,
}

/// A failure inside one round trip: retry, or give up.
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
        let node = self.node_id.as_deref();
        ensure_open(&mut self.conn, &self.server, self.db, node).await
    }

    async fn reread_conn(&mut self) -> Result<&mut Connection, StepError> {
        let node = self.node_id.as_deref();
        ensure_open(&mut self.reread_conn, &self.server, self.db, node).await
    }

    /// After a lost connection: forget every chunk not handed on, and start again from the
    /// page being handed on, remembering which of its keys were handed on already.
    fn restart(&mut self) {
        self.conn = None;
        self.reread_conn = None;
        let Resume {
            cursor,
            page,
            handed,
        } = &self.resume;
        let handed = page.as_ref().map_or(&[][..], |p| &p.keys[..*handed]);
        let mut retry = match self.retry.take() {
            Some(r) if r.cursor == *cursor => r,
            _ => Retry {
                cursor: *cursor,
                sent: HashSet::new(),
            },
        };
        retry.sent.extend(handed.iter().cloned());
        self.retry = Some(retry);
        self.in_flight.clear();
        self.todo.clear();
        self.todo.push_back(Todo::Scan(*cursor));
    }

    /// Sends chunks until [`IN_FLIGHT`] are in flight, then reads the oldest and hands its
    /// records on.
    async fn step(&mut self, tx: &mpsc::Sender<Batch>) -> Result<Step, StepError> {
        self.fill_in_flight().await?;
        let Some(chunk) = self.in_flight.front() else {
            return Ok(Step::Done);
        };
        let n = chunk.commands(self.per_probe());
        let mut replies = std::mem::take(&mut self.replies);
        replies.clear();
        let got = match self.conn().await {
            Ok(conn) => conn
                .recv_into(n, &mut replies)
                .await
                .map_err(StepError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = got {
            self.replies = replies;
            return Err(e);
        }
        let Some(mut chunk) = self.in_flight.pop_front() else {
            return Ok(Step::Done);
        };
        let mut it = replies.drain(..);
        let read = if chunk.range.is_empty() {
            None
        } else {
            Some(self.read_replies(chunk.keys(), &mut it)?)
        };
        let short = || {
            StepError::Fatal(anyhow::anyhow!(
                "the source {} sent fewer replies than commands",
                self.server.endpoint
            ))
        };
        let probed = match (chunk.probe.take(), self.opts.big) {
            (Some(page), Some(big)) => {
                let n = page.keys.len();
                let verdicts = size::read(&mut it, big.probe, n, big.threshold);
                Some((page, verdicts.ok_or_else(short)?))
            }
            _ => None,
        };
        let scanned_page = match chunk.scan {
            Some(cursor) => Some((cursor, it.next().ok_or_else(short)?)),
            None => None,
        };
        drop(it);
        self.replies = replies;
        // The probed page is queued before the page the SCAN lists (which is probed next).
        if let Some((page, verdicts)) = probed {
            let page = self.classify(page, verdicts).await?;
            self.todo.push_back(Todo::Page { page, from: 0 });
        }
        if let Some((cursor, reply)) = scanned_page {
            self.add_page(cursor, reply)?;
        }
        let fetched = match read {
            Some(read) => Some(self.records(chunk.keys(), read).await?),
            None => None,
        };
        self.hand_on(&chunk, fetched, tx).await
    }

    /// Sends chunks until [`IN_FLIGHT`] are on the wire (pipelined ahead of their replies).
    async fn fill_in_flight(&mut self) -> Result<(), StepError> {
        // A chunk whose send fails is dropped with the others: `restart` starts over from
        // `resume`, which only moves when a batch is handed on.
        while self.in_flight.len() < IN_FLIGHT {
            let Some(chunk) = self.next_chunk() else {
                break;
            };
            if let Some(t) = &self.throttle {
                t.take_keys(chunk.range.len()).await;
            }
            self.send(&chunk).await?;
            self.in_flight.push_back(chunk);
        }
        Ok(())
    }

    /// Hands the keys `chunk` fetched to the writers, in batches bounded by bytes; the last
    /// batch of a page carries its position and big keys, and moves `resume` past the page.
    async fn hand_on(
        &mut self,
        chunk: &Chunk,
        fetched: Option<Fetched>,
        tx: &mpsc::Sender<Batch>,
    ) -> Result<Step, StepError> {
        let Some(page) = &chunk.page else {
            return Ok(Step::More);
        };
        let is_last = chunk.range.end == page.keys.len();
        let position = is_last.then_some(if page.next == 0 {
            Position::Done
        } else {
            Position::Cursor(page.next)
        });
        let Fetched {
            records,
            vanished,
            uncertainty_ms,
        } = fetched.unwrap_or_default();
        let big = if is_last {
            page.big.clone()
        } else {
            Vec::new()
        };
        // A round trip is sized by an estimate (values' sizes are unknown until they arrive),
        // so a chunk that brought more bytes than that is handed on in several batches: what
        // waits in the queue and in the writers stays bounded by `batch_bytes`. The last one
        // carries the position and the keys that vanished.
        let mut parts = split_by_bytes(records, self.opts.batch_bytes);
        let last = parts.pop().unwrap_or_default();
        let mut handed = 0;
        for part in parts {
            let n = part.len() as u64;
            handed += n;
            let batch = self.batch(part, None, n, 0);
            if tx.send(batch).await.is_err() {
                return Ok(Step::Done);
            }
        }
        let scanned = chunk.range.len() as u64 - handed + big.len() as u64;
        let mut batch = self.batch(last, position, scanned, vanished);
        batch.noted.expiry_uncertainty_ms = uncertainty_ms;
        if !big.is_empty() {
            batch.big = big;
            batch.big_source = Some(crate::bigkey::BigSource::Server(self.server.clone()));
        }
        if tx.send(batch).await.is_err() {
            return Ok(Step::Done);
        }
        self.resume = if is_last {
            // The page is handed on whole: a later retry starts after it.
            self.retry = None;
            Resume {
                cursor: page.next,
                page: None,
                handed: 0,
            }
        } else {
            Resume {
                cursor: page.cursor,
                handed: chunk.range.end,
                page: Some(page.clone()),
            }
        };
        Ok(Step::More)
    }

    /// Queues the keys of the page a `SCAN cursor` reply lists.
    fn add_page(&mut self, cursor: u64, reply: Reply) -> Result<(), StepError> {
        let (next, mut keys) = scan::parse_scan(reply)
            .with_context(|| format!("SCAN {cursor} on the source {}", self.server.endpoint))?;
        // Only a page read again after a lost connection is filtered: hashing every key of
        // every page would cost more than all of the RESP parsing.
        if let Some(retry) = &self.retry {
            if retry.cursor == cursor && !retry.sent.is_empty() {
                keys.retain(|k| !retry.sent.contains(k));
            }
        }
        if let Some(share) = &self.filter {
            keys.retain(|k| share.contains(k));
        }
        let page = Arc::new(Page {
            cursor,
            next,
            keys,
            big: Vec::new(),
        });
        self.todo.push_back(match self.opts.big {
            Some(_) => Todo::Probe(page),
            None => Todo::Page { page, from: 0 },
        });
        Ok(())
    }

    /// Commands the size probe sends per key (0: big-key detection off).
    fn per_probe(&self) -> usize {
        self.opts.big.map_or(0, |b| b.probe.commands_per_key())
    }

    /// The page with its keys sorted by the probe's `verdicts`: the small ones to DUMP, the big
    /// ones aside. Keys the probe could not decide are asked about in one more round trip (on
    /// the second connection: the first has round trips in flight).
    async fn classify(
        &mut self,
        page: Arc<Page>,
        verdicts: Vec<size::Verdict>,
    ) -> Result<Arc<Page>, StepError> {
        let Some(big_probe) = self.opts.big else {
            return Err(StepError::Fatal(anyhow::anyhow!(
                "internal: probe without options"
            )));
        };
        let (cursor, next) = (page.cursor, page.next);
        // The probe's chunk held the page's only reference: its keys are moved, not cloned
        // (a reference count up and down per key saved).
        let listed = Arc::try_unwrap(page).map_or_else(|p| p.keys.clone(), |p| p.keys);
        let mut keys = Vec::with_capacity(listed.len());
        let mut big = Vec::new();
        let mut checks: Vec<(Bytes, Option<u64>)> = Vec::new();
        for (key, v) in listed.into_iter().zip(verdicts) {
            match v {
                size::Verdict::Small => keys.push(key),
                size::Verdict::Big(kind, estimate) => big.push(BigKey {
                    db: self.db,
                    key,
                    kind,
                    estimate,
                }),
                size::Verdict::Check { size } => checks.push((key, size)),
            }
        }
        if !checks.is_empty() {
            let mut p = Pipeline::new();
            let asked: Vec<&Bytes> = checks.iter().map(|c| &c.0).collect();
            size::ask_details(&mut p, &asked);
            let ep = self.server.endpoint.to_string();
            let replies = self.reread_conn().await?.run(&p).await?;
            let mut it = replies.into_iter();
            for (key, known) in checks {
                let details = size::read_details(&mut it, known).ok_or_else(|| {
                    StepError::Fatal(anyhow::anyhow!(
                        "the source {ep} sent fewer replies than commands"
                    ))
                })?;
                match details {
                    Some((kind, estimate)) if estimate > big_probe.threshold => big.push(BigKey {
                        db: self.db,
                        key,
                        kind,
                        estimate,
                    }),
                    _ => keys.push(key),
                }
            }
        }
        Ok(Arc::new(Page {
            cursor,
            next,
            keys,
            big,
        }))
    }

    /// The next round trip to send, cut from the front of `todo` now, so its size follows the
    /// latest size estimate (a chunk's size is only known once its DUMPs arrive).
    fn next_chunk(&mut self) -> Option<Chunk> {
        let (page, from) = match self.todo.pop_front()? {
            Todo::Scan(cursor) => return Some(Chunk::scan_only(cursor)),
            Todo::Probe(page) => {
                return Some(Chunk {
                    page: None,
                    range: 0..0,
                    scan: (page.next != 0).then_some(page.next),
                    probe: Some(page),
                })
            }
            Todo::Page { page, from } => (page, from),
        };
        let len = page.keys.len();
        let probing = self.opts.big.is_some();
        // With big-key detection, the next page's SCAN rides with its probe instead (below).
        let mut scan_next = (!probing && from == 0 && page.next != 0).then_some(page.next);
        let mut size = dump_size::keys_per_round_trip(
            self.opts.batch_bytes,
            self.avg_size,
            self.opts.batch_keys,
        );
        if from == 0 {
            // At least two chunks per page, so the next page's SCAN (asked in the first)
            // returns while the second is still to be fetched.
            size = size.min(len.div_ceil(2));
        }
        let end = (from + size).min(len);
        if end < len {
            self.todo.push_front(Todo::Page {
                page: page.clone(),
                from: end,
            });
        }
        // The probe of the next page (and the SCAN of the one after) rides with this page's
        // first chunk: the next page is classified before its first DUMP is due.
        let mut probe = None;
        if probing && from == 0 {
            let at = self.todo.iter().position(|t| matches!(t, Todo::Probe(_)));
            if let Some(Todo::Probe(next)) = at.and_then(|i| self.todo.remove(i)) {
                scan_next = (next.next != 0).then_some(next.next);
                probe = Some(next);
            }
        }
        // An empty page is one chunk without keys: it still moves the position (and SCANs on).
        Some(Chunk {
            page: Some(page),
            range: from..end,
            scan: scan_next,
            probe,
        })
    }

    /// Writes a chunk's round trip (without waiting for its replies).
    async fn send(&mut self, chunk: &Chunk) -> Result<(), StepError> {
        let mut p = std::mem::take(&mut self.pipeline);
        p.clear();
        if !chunk.range.is_empty() {
            let keys = chunk.keys();
            expiry::ask_with_values(&mut p, keys);
        }
        if let (Some(page), Some(big)) = (&chunk.probe, self.opts.big) {
            size::ask(&mut p, big.probe, &page.keys);
        }
        if let Some(c) = chunk.scan {
            scan::ask(&mut p, c, self.opts.scan_count);
        }
        let sent = if p.is_empty() {
            Ok(())
        } else {
            match self.conn().await {
                Ok(conn) => conn.send(&p).await.map_err(StepError::from),
                Err(e) => Err(e),
            }
        };
        self.pipeline = p;
        sent
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
            noted: crate::counts::Counts::default(),
            big: Vec::new(),
            big_source: None,
        };
        self.seq += 1;
        b
    }

    /// Takes the replies `TIME, PTTL k, DUMP k, …, TIME` of `keys` off `it`.
    fn read_replies(
        &self,
        keys: &[Bytes],
        it: &mut impl Iterator<Item = Reply>,
    ) -> Result<Replies, StepError> {
        let (bracket, ttls, dumps) = expiry::read_with_values(it, keys.len()).map_err(|e| {
            let ep = self.server.endpoint.to_string();
            let who = Who {
                side: "source",
                ep: &ep,
                rights: COPY_RIGHTS,
            };
            StepError::Fatal(who.reply_error(self.db, keys, e))
        })?;
        Ok(Replies {
            bracket,
            ttls,
            dumps,
        })
    }

    /// Turns one round trip's replies into records with absolute expiries (re-reading the
    /// TTLs after a stall, see `read/expiry.rs`); keys gone by the time of PTTL or DUMP are counted
    /// as vanished.
    async fn records(&mut self, keys: &[Bytes], read: Replies) -> Result<Fetched, StepError> {
        let db = self.db;
        let expiries = if expiry::needs_reread(&read.bracket, &read.ttls) {
            let conn = self.reread_conn().await?;
            expiry::settle(conn, keys, read.bracket, &read.ttls).await?
        } else {
            expiry::Expiries::new(&read.bracket, &read.ttls)
        };
        let mut fetched = Fetched {
            records: Vec::with_capacity(keys.len()),
            vanished: 0,
            uncertainty_ms: expiries.uncertainty_ms,
        };
        let mut bytes = 0;
        for (key, read) in keys.iter().zip(expiry::pairs(read.dumps, expiries.each)) {
            let Some(expiry::KeyRead {
                payload,
                expire_at_ms,
            }) = read
            else {
                fetched.vanished += 1;
                continue;
            };
            bytes += key.len() + payload.len();
            fetched.records.push(Record {
                db,
                key: key.clone(),
                payload,
                expire_at_ms,
            });
        }
        if let Some(t) = &self.throttle {
            t.pay_bytes(bytes);
        }
        if !fetched.records.is_empty() {
            self.avg_size =
                dump_size::next_estimate(self.avg_size, bytes / fetched.records.len() + 1);
        }
        Ok(fetched)
    }
}

/// One round trip's replies for its keys, not yet turned into records.
struct Replies {
    bracket: expiry::Bracket,
    ttls: Vec<expiry::Ttl>,
    dumps: Vec<Reply>,
}

/// The records of one round trip.
#[derive(Default)]
struct Fetched {
    records: Vec<Record>,
    vanished: u64,
    /// See [`expiry::Expiries::uncertainty_ms`].
    uncertainty_ms: u64,
}

/// The connection in `slot`, opened (see [`open`]) when there is none.
async fn ensure_open<'a>(
    slot: &'a mut Option<Connection>,
    server: &Server,
    db: u32,
    node_id: Option<&str>,
) -> Result<&'a mut Connection, StepError> {
    if slot.is_none() {
        *slot = Some(open(server, db, node_id).await?);
    }
    slot.as_mut()
        .ok_or_else(|| StepError::Fatal(anyhow::anyhow!("no source connection")))
}

/// A new connection to the source with `db` selected (and, for a cluster master, checked to
/// be the node `node_id` still, see [`ScanTask::node_id`]).
async fn open(server: &Server, db: u32, node_id: Option<&str>) -> Result<Connection, StepError> {
    let mut c = server.connect().await?;
    if let Some(want) = node_id {
        let me = crate::endpoint::cluster::whoami(&mut c).await?;
        let (id, master) = (me.id, me.master);
        if id != want || !master {
            return Err(StepError::Fatal(anyhow::anyhow!(
                "the source node {} is now {} {} (it was master {} when this scan started): \
                 the cluster failed over during the run. Rerun the same command: the slots of \
                 that master are scanned again on their new master",
                server.endpoint,
                if master { "master" } else { "replica" },
                crate::endpoint::cluster::short_id(&id),
                crate::endpoint::cluster::short_id(want)
            )));
        }
    }
    c.select(db).await?;
    Ok(c)
}

/// Cuts `records` into runs of at most `max_bytes` (a record larger than that alone); always at
/// least one run, possibly empty.
fn split_by_bytes(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let total: usize = records.iter().map(Record::size).sum();
    if total <= max_bytes {
        return vec![records];
    }
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for rec in records {
        let size = rec.size();
        if !part.is_empty() && bytes + size > max_bytes {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += size;
        part.push(rec);
    }
    parts.push(part);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u8, size: usize) -> Record {
        Record {
            db: 0,
            key: Bytes::from(vec![i]),
            payload: Bytes::from(vec![0u8; size - 1]),
            expire_at_ms: None,
        }
    }

    #[test]
    fn split_by_bytes_bounds_every_run_and_keeps_order() {
        assert_eq!(split_by_bytes(Vec::new(), 10).len(), 1);
        let recs: Vec<Record> = [4, 4, 4, 30, 1, 1, 9]
            .iter()
            .enumerate()
            .map(|(i, &n)| rec(i as u8, n))
            .collect();
        let parts = split_by_bytes(recs, 10);
        let sizes: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| p.iter().map(Record::size).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![4, 4], vec![4], vec![30], vec![1, 1], vec![9]]
        );
        let keys: Vec<u8> = parts.iter().flatten().map(|r| r.key[0]).collect();
        assert_eq!(keys, vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
