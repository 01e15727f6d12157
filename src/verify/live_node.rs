//! One live server read for verification: SCAN, then pipelined TIME + PTTL + DUMP, over pooled
//! connections that reconnect on loss.
//!
//! A stream of one database runs a *lister* (SCAN, keys only) and [`FETCHERS`] *readers*, each
//! with its own connection: a reader sends one pipeline `TIME, PTTL k…, TIME, DUMP k…` per page
//! of keys — one round trip — and decodes and digests the replies while the other readers'
//! pipelines are on the wire or in the server, so neither this process nor the server waits on
//! the other. The two `TIME`s around the PTTLs turn each relative `PTTL` into an absolute expiry
//! on the server's clock, exact even when the server stalls (`read/expiry.rs`, shared with
//! the copy), and the server's clock skew (measured once at start) moves it to this machine's clock,
//! so the two sides' expiries can be compared although their clocks differ. Payloads are decoded
//! and dropped at once: nothing here holds values. Each reader folds into its own fork of the
//! visitor; the forks are merged at the end (bucket aggregates and key maps merge exactly).
//!
//! Keys a re-read does not want (outside the differing buckets) are only listed, never read.
//! A lost connection is retried with backoff (`--retry-for`): the lister from the same cursor
//! (SCAN cursors are stateless), a reader with the same keys (its results are only handed on
//! once the whole page is read, so nothing is counted twice).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};

use super::big::{self, BigKeys, BigRead};
use super::bucket::bucket_of;
use super::side::{Entry, StreamStats, Visit, Want};
use super::state::KeyState;
use crate::bigkey::read::ReadError as BigReadError;
use crate::endpoint::retry::{retrying, Backoff};
use crate::endpoint::{info, ConnError, Connection, Pipeline, Server};
use crate::partition::KeyShare;
use crate::read::clock::clock_skew;
use crate::read::dump_size;
use crate::read::expiry;
use crate::read::refusal::{Who, VERIFY_RIGHTS};
use crate::read::scan::{self, parse_scan};
use crate::stop::Stop;
use crate::throttle::{Throttle, Throttles};

/// Readers per stream (each with a connection): enough to keep a server and this process busy
/// at once, few enough not to crowd a busy source.
pub const FETCHERS: usize = 3;

/// Settings of a live side.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// `SCAN … COUNT n`, and most keys per read round trip.
    pub scan_count: u32,
    /// Most payload bytes per read round trip (a page of big values is split).
    pub batch_bytes: usize,
    /// How long to keep retrying a lost connection.
    pub retry_for: Duration,
    /// The source's load budget (`--max-keys-per-sec` …); `None` for the target, or no limit.
    pub throttles: Option<Arc<Throttles>>,
    /// `--partition`: only keys of this share are compared (the same filter on both sides).
    pub share: Option<Arc<KeyShare>>,
    /// `--big-key-bytes`: keys estimated larger are read in chunks, never DUMPed (0: off).
    pub big_key_bytes: u64,
}

/// One server (a standalone server, or one master of a cluster), read over pooled connections.
pub struct Node {
    server: Server,
    opts: LiveOptions,
    /// Server clock minus this machine's clock, in ms.
    skew_ms: i64,
    /// Keys listed by this side (shared by every node of the side).
    listed: Arc<AtomicU64>,
    /// Running estimate of a payload's size, to size read round trips by bytes.
    avg_size: AtomicUsize,
    /// Idle connections.
    idle: Mutex<Vec<Connection>>,
    /// This server's share of [`LiveOptions::throttles`].
    throttle: Option<Arc<Throttle>>,
    /// How big keys are found and read here (`None`: every key is DUMPed).
    big: Option<BigKeys>,
}

/// Runs `$body` (an `anyhow::Result`) with `$conn` bound to a pooled connection of `$side`,
/// reconnecting and retrying (with backoff, for `--retry-for`) when the connection is lost;
/// evaluates to the `Ok` value and returns other errors from the enclosing function.
macro_rules! with_conn {
    ($side:expr, |$conn:ident| $body:expr) => {{
        let side = $side;
        let mut backoff = Backoff::new(side.opts.retry_for);
        loop {
            let mut $conn = match side.pooled().await {
                Ok(c) => c,
                Err(e) if is_transient(&e) => {
                    backoff.wait(e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let result = {
                let $conn = &mut $conn;
                $body
            };
            match result {
                Ok(v) => {
                    side.give_back($conn).await;
                    break v;
                }
                Err(e) if is_transient(&e) => backoff.wait(e).await?,
                Err(e) => return Err(e),
            }
        }
    }};
}

impl Node {
    /// A node reading `server` (of `version` when known): its clock skew measured and its size
    /// probe chosen; more connections are opened when reads need them.
    pub async fn new(
        server: Server,
        version: Option<(u32, u32)>,
        opts: LiveOptions,
        listed: Arc<AtomicU64>,
    ) -> anyhow::Result<Node> {
        // Each step on a connection of its own, retried alone: see `LiveSide::open`.
        let skew_ms = retrying(opts.retry_for, || async {
            clock_skew(&mut server.connect().await?).await
        })
        .await?;
        if skew_ms.abs() > 2_000 {
            tracing::warn!(
                "the {} {}'s clock is {skew_ms} ms off this machine's; TTLs are compared after correcting for it",
                server.endpoint.side.name(),
                server.endpoint
            );
        }
        let throttle = opts.throttles.as_ref().and_then(|t| t.for_server(&server));
        let (big_key_bytes, batch_bytes) = (opts.big_key_bytes, opts.batch_bytes);
        // The connection of the last step is the first the reads use.
        let (big, conn) = retrying(opts.retry_for, || async {
            let mut conn = server.connect().await?;
            let big = BigKeys::for_server(&mut conn, version, big_key_bytes, batch_bytes).await?;
            Ok((big, conn))
        })
        .await?;
        Ok(Node {
            throttle,
            big,
            server,
            opts: LiveOptions {
                scan_count: opts.scan_count.max(1),
                batch_bytes: opts.batch_bytes.max(1),
                ..opts
            },
            skew_ms,
            listed,
            avg_size: AtomicUsize::new(dump_size::FIRST_GUESS),
            idle: Mutex::new(vec![conn]),
        })
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    fn side_name(&self) -> &'static str {
        self.server.endpoint.side.name()
    }

    async fn connect(&self, db: u32) -> anyhow::Result<Connection> {
        let mut c = self.server.connect().await?;
        c.select(db).await?;
        Ok(c)
    }

    /// Lists `db` with SCAN and hands the wanted keys, a page at a time, to the readers.
    async fn list(
        &self,
        db: u32,
        want: &Want,
        tx: mpsc::Sender<Vec<(Bytes, u16)>>,
        stop: &Stop,
    ) -> anyhow::Result<u64> {
        let mut cursor = 0u64;
        let mut listed = 0u64;
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::new(self.opts.retry_for);
        loop {
            if stop.is_raised() {
                anyhow::bail!("stopped before the {} was fully read", self.side_name());
            }
            let page = async {
                let c = match &mut conn {
                    Some(c) => c,
                    None => conn.insert(self.connect(db).await?),
                };
                let reply = c.cmd(&scan::command(cursor, self.opts.scan_count)).await?;
                parse_scan(reply).with_context(|| {
                    format!(
                        "SCAN {cursor} on the {} {}",
                        self.side_name(),
                        self.server.endpoint
                    )
                })
            }
            .await;
            let (next, keys) = match page {
                Ok(p) => p,
                Err(e) if is_transient(&e) => {
                    conn = None;
                    backoff.wait(e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff.reset();
            listed += keys.len() as u64;
            self.listed.fetch_add(keys.len() as u64, Ordering::Relaxed);
            let wanted: Vec<(Bytes, u16)> = keys
                .into_iter()
                .map(|k| {
                    let b = bucket_of(&k);
                    (k, b)
                })
                .filter(|(k, b)| {
                    want.wants(*b) && self.opts.share.as_ref().is_none_or(|s| s.contains(k))
                })
                .collect();
            if !wanted.is_empty() && tx.send(wanted).await.is_err() {
                // The readers are gone: one of them failed and its error is reported.
                break;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if let Some(c) = conn {
            self.give_back(c).await;
        }
        Ok(listed)
    }

    /// A reader: reads the pages it receives and folds them into `visitor`.
    async fn read_pages<V: Visit>(
        &self,
        db: u32,
        rx: &Mutex<mpsc::Receiver<Vec<(Bytes, u16)>>>,
        mut visitor: V,
    ) -> anyhow::Result<(V, StreamStats)> {
        let mut stats = StreamStats::default();
        loop {
            let page = rx.lock().await.recv().await;
            let Some(page) = page else { break };
            let keys: Vec<Bytes> = page.iter().map(|(k, _)| k.clone()).collect();
            let (states, attempt) = self.fetch(db, &keys).await?;
            stats.add(attempt);
            for ((key, bucket), state) in page.into_iter().zip(states) {
                match state {
                    Some(state) => visitor.visit(Entry { key, bucket, state }),
                    None => stats.vanished += 1,
                }
            }
        }
        Ok((visitor, stats))
    }

    /// This side's reader, for messages (`ep`: the endpoint, printed).
    fn reader<'a>(&self, ep: &'a str) -> Who<'a> {
        Who {
            side: self.side_name(),
            ep,
            rights: VERIFY_RIGHTS,
        }
    }

    fn refused(&self, db: u32, key: &[u8], err: &str) -> anyhow::Error {
        self.reader(&self.server.endpoint.to_string())
            .refused(db, key, err)
    }

    /// Reads `keys` of `db` ([`Side::fetch`](super::side::Side::fetch), and each page of the
    /// readers): pipelines of `TIME, PTTL k…, TIME, DUMP k…`, sized by bytes, with
    /// the TTLs read again after a stall (see `read/expiry.rs`); big keys found first and read
    /// in chunks instead (`big.rs`). Each round trip's keys are retried alone on a new
    /// connection when it is lost, so the keys already read are not read again and a page
    /// gets through connections killed every few ms (one attempt of the whole page needed all
    /// its round trips without a loss: `tests/stalls.rs` failed 1–4 runs of 25 on it).
    pub async fn fetch(
        &self,
        db: u32,
        keys: &[Bytes],
    ) -> anyhow::Result<(Vec<Option<KeyState>>, StreamStats)> {
        let mut stats = StreamStats::default();
        let mut out = Vec::with_capacity(keys.len());
        let mut start = 0;
        while start < keys.len() {
            let avg = self.avg_size.load(Ordering::Relaxed).max(1);
            let n = dump_size::keys_per_round_trip(
                self.opts.batch_bytes,
                avg,
                4 * self.opts.scan_count as usize,
            );
            let chunk = &keys[start..(start + n).min(keys.len())];
            start += chunk.len();
            if let Some(t) = &self.throttle {
                t.take_keys(chunk.len()).await;
            }
            let (states, attempt) =
                with_conn!(self, |conn| self.fetch_round(conn, db, chunk).await);
            stats.add(attempt);
            out.extend(states);
        }
        Ok((out, stats))
    }

    /// One round trip's keys of [`Node::fetch`] on `conn`. The statistics are this
    /// attempt's alone, so a retry after a lost connection counts nothing twice.
    async fn fetch_round(
        &self,
        conn: &mut Connection,
        db: u32,
        chunk: &[Bytes],
    ) -> anyhow::Result<(Vec<Option<KeyState>>, StreamStats)> {
        let mut stats = StreamStats::default();
        conn.select(db).await?;
        let kinds = match &self.big {
            Some(b) => big::classify(conn, b, chunk).await?,
            None => vec![None; chunk.len()],
        };
        let small: Vec<Bytes> = chunk
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| k.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let small = self.dump_keys(conn, db, &small, &mut stats).await?;
        let mut small = small.into_iter();
        let mut out = Vec::with_capacity(chunk.len());
        for (key, kind) in chunk.iter().zip(kinds) {
            out.push(match kind {
                None => small.next().flatten(),
                Some(kind) => self.read_big(conn, db, key, kind, &mut stats).await?,
            });
        }
        Ok((out, stats))
    }

    /// Reads `keys` with `TIME, PTTL k1, DUMP k1, …, TIME` (one round trip).
    async fn dump_keys(
        &self,
        conn: &mut Connection,
        db: u32,
        keys: &[Bytes],
        stats: &mut StreamStats,
    ) -> anyhow::Result<Vec<Option<KeyState>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let read = expiry::read_keys(conn, keys).await.map_err(|e| {
            self.reader(&self.server.endpoint.to_string())
                .read_error(db, keys, e)
        })?;
        let mut out = Vec::with_capacity(keys.len());
        let mut bytes = 0usize;
        for (key, read) in keys.iter().zip(read.each) {
            stats.read += 1;
            let Some(read) = read else {
                out.push(None);
                continue;
            };
            bytes += read.payload.len();
            // Onto this machine's clock, so both sides' expiries compare.
            let expire = read.expire_at_ms.map(|ms| ms - self.skew_ms);
            let (state, err) = KeyState::from_payload(&read.payload, expire);
            if let Some(err) = err {
                stats.note_undecodable(self.side_name(), db, key, &err);
            }
            out.push(Some(state));
        }
        if let Some(t) = &self.throttle {
            t.pay_bytes(bytes);
        }
        let avg = self.avg_size.load(Ordering::Relaxed).max(1);
        self.avg_size.store(
            dump_size::next_estimate(avg, bytes / keys.len() + 1),
            Ordering::Relaxed,
        );
        Ok(out)
    }

    /// Reads one big key in chunks (a module value it turned into: with DUMP).
    async fn read_big(
        &self,
        conn: &mut Connection,
        db: u32,
        key: &Bytes,
        kind: crate::bigkey::Kind,
        stats: &mut StreamStats,
    ) -> anyhow::Result<Option<KeyState>> {
        let Some(b) = &self.big else {
            return Ok(None);
        };
        let read = big::read(conn, b, key, kind).await.map_err(|e| match e {
            BigReadError::Conn(c) => anyhow::Error::from(c),
            BigReadError::Refused { command, error } => {
                self.refused(db, key, &format!("{command}: {error}"))
            }
            e => anyhow::anyhow!(
                "the {} {} could not be read in chunks at key {} (db {db}): {e}",
                self.side_name(),
                self.server.endpoint,
                crate::display::escape_key(key)
            ),
        })?;
        match read {
            BigRead::Gone => {
                stats.read += 1;
                Ok(None)
            }
            BigRead::Read(mut state, bytes) => {
                stats.read += 1;
                stats.big += 1;
                state.expire_at_ms = state.expire_at_ms.map(|ms| ms - self.skew_ms);
                if let Some(t) = &self.throttle {
                    t.pay_bytes(bytes);
                }
                Ok(Some(state))
            }
            BigRead::Dump => {
                let mut one = self
                    .dump_keys(conn, db, std::slice::from_ref(key), stats)
                    .await?;
                Ok(one.pop().flatten())
            }
        }
    }

    async fn keyspace_with(
        &self,
        conn: &mut Connection,
    ) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
        let reply = conn.cmd(&[b"INFO".as_slice(), b"keyspace"]).await?;
        if let Some(err) = reply.error() {
            anyhow::bail!(
                "the {} {} refused INFO: {err}",
                self.side_name(),
                self.server.endpoint
            );
        }
        Ok(info::parse_keyspace(&reply.to_text().unwrap_or_default()))
    }

    async fn random_with(
        &self,
        conn: &mut Connection,
        db: u32,
        n: u64,
    ) -> anyhow::Result<Vec<Bytes>> {
        conn.select(db).await?;
        let size = conn.cmd(&[b"DBSIZE".as_slice()]).await?;
        if let Some(err) = size.error() {
            anyhow::bail!(
                "the {} {} refused DBSIZE: {err}",
                self.side_name(),
                self.server.endpoint
            );
        }
        let size = size.as_int().unwrap_or(0).max(0) as u64;
        let mut keys: HashSet<Bytes> = HashSet::new();
        if size <= n {
            // Small enough: take every key, exactly.
            let mut cursor = 0u64;
            loop {
                let reply = conn
                    .cmd(&scan::command(cursor, self.opts.scan_count))
                    .await?;
                let (next, page) = parse_scan(reply)?;
                keys.extend(page.into_iter().map(|k| Bytes::copy_from_slice(&k)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        } else {
            // RANDOMKEY repeats keys; stop after 4n draws if the database keeps repeating.
            let mut draws = 0u64;
            while (keys.len() as u64) < n && draws < n.saturating_mul(4) {
                let batch = (n - keys.len() as u64).clamp(1, 1000);
                let mut p = Pipeline::new();
                for _ in 0..batch {
                    p.cmd(&[b"RANDOMKEY"]);
                }
                draws += batch;
                for r in conn.run(&p).await? {
                    if let Some(err) = r.error() {
                        anyhow::bail!(
                            "the {} {} refused RANDOMKEY: {err}",
                            self.side_name(),
                            self.server.endpoint
                        );
                    }
                    if let Some(k) = r.as_bytes() {
                        keys.insert(Bytes::copy_from_slice(k));
                    }
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// An idle connection, or a new one.
    async fn pooled(&self) -> anyhow::Result<Connection> {
        let idle = self.idle.lock().await.pop();
        match idle {
            Some(c) => Ok(c),
            None => self.connect(0).await,
        }
    }

    async fn give_back(&self, conn: Connection) {
        self.idle.lock().await.push(conn);
    }
}

impl Node {
    /// Keys per database: (keys, keys with a TTL), from `INFO keyspace`.
    pub async fn keyspace(&self) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
        Ok(with_conn!(self, |conn| self.keyspace_with(conn).await))
    }

    /// See [`Side::stream`](super::side::Side::stream): one lister and [`FETCHERS`] readers.
    pub async fn stream<V: Visit>(
        &self,
        db: u32,
        want: &Want,
        visitor: V,
        stop: &Stop,
    ) -> anyhow::Result<(V, StreamStats)> {
        let (tx, rx) = mpsc::channel::<Vec<(Bytes, u16)>>(FETCHERS * 2);
        let rx = Mutex::new(rx);
        let (f1, f2) = (visitor.fork(), visitor.fork());
        let (listed, (v0, s0), (v1, s1), (v2, s2)) = tokio::try_join!(
            self.list(db, want, tx, stop),
            self.read_pages(db, &rx, visitor),
            self.read_pages(db, &rx, f1),
            self.read_pages(db, &rx, f2),
        )?;
        let mut visitor = v0;
        visitor.merge(v1);
        visitor.merge(v2);
        let mut stats = s0;
        stats.add(s1);
        stats.add(s2);
        stats.listed = listed;
        Ok((visitor, stats))
    }

    /// See [`Side::random_keys`](super::side::Side::random_keys).
    pub async fn random_keys(&self, db: u32, n: u64) -> anyhow::Result<Vec<Bytes>> {
        Ok(with_conn!(self, |conn| self.random_with(conn, db, n).await))
    }
}

/// True for errors a reconnect may fix.
fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConnError>()
        .is_some_and(ConnError::is_transient)
}
