//! One big key from the live source (or an `.rdb` file) to the target, one chunk in memory at a
//! time.
//!
//! A writer that receives a batch with big keys (see `source/scan.rs`: the reader probed them
//! instead of DUMPing them; `source/rdb_file.rs`: the file reader skipped them) copies each here
//! before it acknowledges the batch, so the checkpoint never moves past a big key before its
//! RENAME:
//!
//! ```text
//!  source: TIME, PTTL key, TIME (expiry, as for every key: read/expiry.rs)
//!  target: [EXISTS key → skip]  DEL tmp (every writer's: a crashed run's too)
//!  loop    source: one chunk (bigkey/read.rs)  →  target: HSET/RPUSH/… tmp …, PEXPIRE tmp <safety>
//!          (a string's chunks are LZF-packed instead: RESTORE tmp <safety> <payload> at its end)
//!  target: MULTI, RENAME tmp key, PEXPIREAT key <abs ms> | PERSIST key, EXEC
//! ```
//! Any failure restarts the key from an empty temporary key (element writes are not
//! idempotent); a key written to while it was read is read again (a few times, then the job
//! stops naming it). A key whose expiry passes before the RENAME is not written.
//!
//! A file's value is the same but for its source side: the expiry is the one the file stored,
//! the chunks come from `bigkey/file.rs` (read on a blocking thread), and a file never changes while
//! it is read (the whole file was checked first).

use std::time::Duration;

use bytes::Bytes;

use super::key_error::{Cause, KeyErrors};
use super::options::{BigOptions, WriterOptions};
use crate::bigkey::file::FileChunks;
use crate::bigkey::packed_string::PackedString;
use crate::bigkey::read::{ChunkReader, ReadError};
use crate::bigkey::write::{self, ChunkError, Expire};
use crate::bigkey::{BigKey, BigSource, Chunk, Kind};
use crate::counts::Counts;
use crate::dead_letter::Letter;
use crate::display::{escape_key, human_bytes};
use crate::endpoint::retry::Backoff;
use crate::endpoint::route::Router;
use crate::endpoint::{ConnError, Connection, ErrorKind, Pipeline, Reply, Server};
use crate::policy::OnConflict;
use crate::rdb::reader::BigValue;
use crate::read::expiry::{self, Expiry, ReadKeysError};

/// Reads of a key that keeps changing while it is read before ferry gives up on it.
const MAX_REREADS: usize = 5;

/// Where big keys go.
pub enum Target<'a> {
    /// A standalone server (a DB is selected per key).
    Standalone(&'a Server),
    /// A cluster: the master owning the key's slot.
    Cluster(&'a mut Router),
}

impl Target<'_> {
    /// The server for `key`, and the DB to select there (`None` on a cluster).
    fn dest(
        &self,
        key: &[u8],
        db: u32,
        opts: &WriterOptions,
    ) -> Result<(Server, Option<u32>), Again> {
        match self {
            Target::Standalone(s) => {
                let db = opts.target_db(db);
                Ok(((*s).clone(), opts.select_db.then_some(db)))
            }
            Target::Cluster(r) => match r.server_for(key) {
                Some(s) => Ok((s, None)),
                None => Err(Again::Transient(anyhow::anyhow!(
                    "no master of the target cluster serves the slot of key {}",
                    escape_key(key)
                ))),
            },
        }
    }

    async fn refresh(&mut self) {
        if let Target::Cluster(r) = self {
            if let Err(e) = r.refresh().await {
                tracing::warn!("{e:#}");
            }
        }
    }
}

/// What happened to one big key.
enum Outcome {
    Written {
        bytes: u64,
    },
    Vanished,
    Expired,
    Conflict,
    /// Refused by the target for a reason of its own, in the dead-letter file.
    DeadLettered,
}

/// Why an attempt at a key did not finish.
enum Again {
    /// A lost connection, a cluster redirection, a temporary key gone: try again after a pause.
    Transient(anyhow::Error),
    /// The key changed while it was read: read it again (its type too).
    Changed(anyhow::Error),
    /// No retry can fix it.
    Fatal(anyhow::Error),
    /// The target refused this key for a reason of its own (`sink/key_error.rs`): with
    /// `--on-key-error skip` it goes to the dead-letter file and the copy goes on.
    KeyFault {
        /// Why.
        cause: Cause,
        /// The target's error text.
        reason: String,
        /// The message to stop with under `--on-key-error stop`.
        fatal: anyhow::Error,
    },
}

impl From<ConnError> for Again {
    fn from(e: ConnError) -> Self {
        if e.is_transient() {
            Again::Transient(e.into())
        } else {
            Again::Fatal(e.into())
        }
    }
}

impl From<anyhow::Error> for Again {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConnError>() {
            Ok(c) => c.into(),
            Err(e) => Again::Fatal(e),
        }
    }
}

/// Where one big key is read from.
#[derive(Clone, Copy)]
enum ReadFrom<'a> {
    /// The live source server.
    Server(&'a Server),
    /// A value of an `.rdb` file.
    File(&'a std::path::Path, &'a BigValue),
}

/// Copies every key of `keys` from `source` into `target`; returns what was done.
pub async fn copy_keys(
    keys: &[BigKey],
    source: &BigSource,
    mut target: Target<'_>,
    opts: &WriterOptions,
) -> anyhow::Result<Counts> {
    let Some(big) = &opts.big else {
        anyhow::bail!("internal error: a big key reached a writer without big-key options");
    };
    let mut counts = Counts::default();
    let mut letters = Vec::new();
    let mut src: Option<Connection> = None;
    // A cluster source's key is read on the master of its slot, asked again at every attempt.
    let mut owner: Option<Server> = None;
    for (i, key) in keys.iter().enumerate() {
        let mut backoff = Backoff::new(opts.retry_for);
        let mut rereads = 0;
        let mut kind = Some(key.kind);
        let outcome = loop {
            let from = match source {
                BigSource::Server(s) => ReadFrom::Server(s),
                BigSource::Cluster(router) => {
                    src = None;
                    match router.lock().await.server_for(&key.key) {
                        Some(s) => ReadFrom::Server(owner.insert(s)),
                        None => {
                            let e = anyhow::anyhow!(
                                "no master of the source cluster serves the slot of big key {} (CLUSTERDOWN?)",
                                escape_key(&key.key)
                            );
                            refresh_source(source).await;
                            backoff.wait(e).await?;
                            continue;
                        }
                    }
                }
                BigSource::File { path, values } => match values.get(i) {
                    Some(v) => ReadFrom::File(path, v),
                    None => {
                        anyhow::bail!("internal error: a big key of the file without its place")
                    }
                },
            };
            let attempt = Attempt {
                key,
                kind,
                from,
                opts,
                big,
            };
            match attempt.run(&mut src, &mut target).await {
                Ok(o) => break o,
                Err(Again::Fatal(e)) => return Err(e),
                Err(Again::KeyFault {
                    cause,
                    reason,
                    fatal,
                }) => {
                    letters.push(set_aside(opts, key, cause, &reason, fatal)?);
                    break Outcome::DeadLettered;
                }
                Err(Again::Transient(e)) => {
                    src = None;
                    target.refresh().await;
                    refresh_source(source).await;
                    backoff.wait(e).await?;
                }
                Err(Again::Changed(e)) => {
                    rereads += 1;
                    kind = None;
                    if rereads >= MAX_REREADS {
                        return Err(e.context(format!(
                            "big key {} (db {}) changed every time it was read in chunks ({MAX_REREADS} times); \
                             rerun when it is written to less often (or copy it with --follow, which copies it again after each change)",
                            escape_key(&key.key),
                            key.db
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        outcome.add_to(&mut counts);
    }
    // On disk before the batch holding these keys is acknowledged.
    if let (KeyErrors::Skip(file), false) = (&opts.key_errors, letters.is_empty()) {
        file.append(&letters)?;
        counts.dead_lettered += letters.len() as u64;
    }
    Ok(counts)
}

/// A big key the target refused for a reason of its own: the error that stops the job
/// (`--on-key-error stop`), or its dead letter (`skip`).
fn set_aside(
    opts: &WriterOptions,
    key: &BigKey,
    cause: Cause,
    reason: &str,
    fatal: anyhow::Error,
) -> anyhow::Result<Letter> {
    if let KeyErrors::Stop = &opts.key_errors {
        return Err(fatal);
    }
    tracing::warn!(
        "big key {} (db {}) refused by the target ({}): {reason}; written to the dead-letter file, the copy goes on",
        escape_key(&key.key),
        key.db,
        cause.name()
    );
    Ok(Letter::of_big(
        (key.db, &key.key),
        (key.kind.type_name(), key.estimate),
        opts.target_db(key.db),
        cause,
        reason,
    ))
}

impl Outcome {
    /// Adds what happened to one key to `counts`.
    fn add_to(self, counts: &mut Counts) {
        match self {
            Outcome::Written { bytes } => {
                counts.written += 1;
                counts.big_keys += 1;
                counts.bytes += bytes;
            }
            Outcome::Vanished => counts.vanished += 1,
            Outcome::Expired => counts.expired_skipped += 1,
            Outcome::Conflict => counts.conflicts += 1,
            // Counted once the letters are on disk (`copy_keys`).
            Outcome::DeadLettered => {}
        }
    }
}

/// A cluster source's slot map read again (after a redirection or a lost master).
async fn refresh_source(source: &BigSource) {
    if let BigSource::Cluster(router) = source {
        if let Err(e) = router.lock().await.refresh().await {
            tracing::warn!("{e:#}");
        }
    }
}

/// One try at one key.
struct Attempt<'a> {
    key: &'a BigKey,
    /// `None`: ask the source (after the key changed type).
    kind: Option<Kind>,
    from: ReadFrom<'a>,
    opts: &'a WriterOptions,
    big: &'a BigOptions,
}

/// Where an attempt reads its chunks from.
enum Chunks<'c> {
    /// The live source, over its connection.
    Live(&'c mut Connection, ChunkReader),
    /// A file (taken while a blocking thread reads the next chunk).
    File(Option<Box<FileChunks>>),
}

/// A key's source side, ready to be read: its expiry (source clock) and its chunks.
enum Opened<'c> {
    Ready(Option<i64>, Chunks<'c>),
    /// Nothing to copy.
    Done(Outcome),
}

impl Attempt<'_> {
    /// The source side of the key: its expiry and where its chunks come from.
    async fn open<'c>(&self, src: &'c mut Option<Connection>) -> Result<Opened<'c>, Again> {
        let clocks = self.opts.clocks;
        let budget = self.big.budget;
        let source = match self.from {
            ReadFrom::Server(source) => source,
            ReadFrom::File(path, value) => {
                return Ok(match value.expire_at_ms {
                    Some(at) if clocks.has_passed(at) => Opened::Done(Outcome::Expired),
                    at => {
                        let chunks = FileChunks::open(path, value, budget).map_err(Again::Fatal)?;
                        Opened::Ready(at, Chunks::File(Some(Box::new(chunks))))
                    }
                });
            }
        };
        if src.is_none() {
            *src = Some(source.connect().await?);
        }
        let Some(conn) = src.as_mut() else {
            return Err(Again::Fatal(anyhow::anyhow!("no source connection")));
        };
        conn.select(self.key.db).await?;
        let at = match self.expiry(source, conn).await? {
            Expiry::Gone => return Ok(Opened::Done(Outcome::Vanished)),
            Expiry::Never => None,
            Expiry::At(at) if clocks.has_passed(at) => return Ok(Opened::Done(Outcome::Expired)),
            Expiry::At(at) => Some(at),
        };
        let key = &self.key.key;
        let reader = match self.kind {
            Some(kind) => ChunkReader::new(key.clone(), kind, budget),
            None => match ChunkReader::open(conn, key.clone(), budget).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(Opened::Done(Outcome::Vanished)),
                Err(e) => return Err(self.read_failed(source, e)),
            },
        };
        Ok(Opened::Ready(at, Chunks::Live(conn, reader)))
    }

    async fn run(
        &self,
        src: &mut Option<Connection>,
        target: &mut Target<'_>,
    ) -> Result<Outcome, Again> {
        let key = &self.key.key;
        let clocks = self.opts.clocks;
        let (at, mut chunks) = match self.open(src).await? {
            Opened::Ready(at, chunks) => (at, chunks),
            Opened::Done(outcome) => return Ok(outcome),
        };
        let (server, db) = target.dest(key, self.key.db, self.opts)?;
        let mut dst = server.connect().await?;
        if let Some(db) = db {
            dst.select(db).await?;
        }
        let skip = self.opts.on_conflict == OnConflict::Skip;
        if skip && exists(&mut dst, key).await? {
            return Ok(Outcome::Conflict);
        }
        let tmp = write::temp_key(&self.big.job, key, self.big.writer);
        // Every writer's, so a crashed run's are gone whichever writer built them.
        let mut del: Vec<Bytes> = vec![Bytes::from_static(b"DEL")];
        del.extend(write::all_temp_keys(&self.big.job, key, self.big.writers));
        dst.cmd(&del).await?;
        let written = self.fill(&mut dst, &mut chunks, &tmp).await;
        let bytes = match written {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Outcome::Vanished),
            Err(e) => {
                // Best effort: a rerun deletes it anyway (same name), and it expires on its own.
                let _ = dst.cmd(&[b"DEL".as_slice(), &tmp]).await;
                return Err(e);
            }
        };
        let expire = match at {
            None => Expire::Never,
            Some(at) if clocks.has_passed(at) => {
                dst.cmd(&[b"DEL".as_slice(), &tmp]).await?;
                return Ok(Outcome::Expired);
            }
            Some(at) => Expire::At(clocks.to_target(at)),
        };
        match put_in_place(&mut dst, &tmp, key, expire, skip).await? {
            true => Ok(Outcome::Written { bytes }),
            false => Ok(Outcome::Conflict),
        }
    }

    /// The key's expiry, read as every key's is (see `read/expiry.rs`).
    async fn expiry(&self, source: &Server, conn: &mut Connection) -> Result<Expiry, Again> {
        let key = std::slice::from_ref(&self.key.key);
        match expiry::read_expiries(conn, key).await {
            Ok(e) => Ok(e.each.first().copied().unwrap_or(Expiry::Gone)),
            Err(ReadKeysError::Conn(e)) => Err(e.into()),
            // A cluster's slot moved: read it where it is now.
            Err(ReadKeysError::Reply(expiry::ReadError::Refused { error, .. }))
                if ErrorKind::of(&error).is_cluster_transient() =>
            {
                Err(Again::Transient(anyhow::anyhow!(
                    "the source answered {error} for big key {}",
                    escape_key(&self.key.key)
                )))
            }
            Err(ReadKeysError::Reply(e)) => Err(Again::Fatal(anyhow::anyhow!(
                "the source {} refused to read the expiry of big key {} (db {}): {e:?}",
                source.endpoint,
                escape_key(&self.key.key),
                self.key.db
            ))),
        }
    }

    /// Writes every chunk of the key into `tmp`; the bytes written, or `None` when the key
    /// vanished (nothing is left under `tmp` then).
    ///
    /// A string is packed (`packed_string.rs`) and RESTOREd onto `tmp` in one command at its
    /// end — the only way a string longer than the target's `proto-max-bulk-len` can be
    /// written, and faster than APPENDs. When the packed form would pass its cap, what is packed
    /// is RESTOREd then and the rest APPENDed, which the target accepts while the string stays
    /// within its limit; past the limit the key is refused (`string_too_long`).
    async fn fill(
        &self,
        dst: &mut Connection,
        chunks: &mut Chunks<'_>,
        tmp: &Bytes,
    ) -> Result<Option<u64>, Again> {
        let mut p = Pipeline::new();
        let mut bytes = self.key.key.len() as u64;
        let mut any = false;
        let mut pack = Some(PackedString::new(self.big.packed_cap()));
        let mut string_len = 0u64;
        loop {
            let mut chunk = match self.next_chunk(chunks).await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(None) => {
                    dst.cmd(&[b"DEL".as_slice(), tmp]).await?;
                    return Ok(None);
                }
                Err(Some(e)) => return Err(e),
            };
            if let Some(why) = write::unwritable(&chunk, self.big.features) {
                return Err(self.unwritable(&why));
            }
            bytes += chunk.size() as u64;
            if let Chunk::String(piece) = &chunk {
                string_len += piece.len() as u64;
                if let Some(packed) = pack.as_mut() {
                    if packed.push(piece).is_ok() {
                        continue;
                    }
                    // Full: what is packed goes in, what is not (this piece too) is appended.
                    chunk = Chunk::String(self.unpack_rest(dst, tmp, &mut pack, string_len).await?);
                    any = true;
                }
                self.check_string_len(dst.endpoint(), string_len)?;
            }
            any |= self.write_chunk(dst, &mut p, tmp, chunk).await?;
        }
        if let Some(packed) = pack.as_mut() {
            let rest = match packed.finish() {
                Ok(()) => Vec::new(),
                Err(_) => self
                    .unpack_rest(dst, tmp, &mut pack, string_len)
                    .await?
                    .to_vec(),
            };
            if let Some(packed) = pack.take() {
                any |= self.restore_packed(dst, tmp, packed).await?;
            }
            if !rest.is_empty() {
                any |= self
                    .write_chunk(dst, &mut p, tmp, Chunk::String(rest.into()))
                    .await?;
            }
        }
        Ok(any.then_some(bytes))
    }

    /// After the packed string filled its cap: RESTOREs what is packed onto `tmp` (`pack` is
    /// done) and returns the bytes that were not, to be appended — unless the string is already
    /// too long for the target, which no RESTORE of a prefix can help.
    async fn unpack_rest(
        &self,
        dst: &mut Connection,
        tmp: &Bytes,
        pack: &mut Option<PackedString>,
        string_len: u64,
    ) -> Result<Bytes, Again> {
        self.check_string_len(dst.endpoint(), string_len)?;
        let Some(mut packed) = pack.take() else {
            return Ok(Bytes::new());
        };
        let rest = packed.take_pending();
        self.restore_packed(dst, tmp, packed).await?;
        Ok(Bytes::from(rest))
    }

    /// Writes one chunk into `tmp` (with the keepalive); false when it held nothing.
    async fn write_chunk(
        &self,
        dst: &mut Connection,
        p: &mut Pipeline,
        tmp: &Bytes,
        chunk: Chunk,
    ) -> Result<bool, Again> {
        p.clear();
        if write::encode_chunk(p, tmp, &chunk, self.big.features) == 0 {
            return Ok(false);
        }
        drop(chunk);
        write::push_keepalive(p, tmp);
        let replies = dst.run(p).await?;
        match write::check_replies(&replies) {
            Ok(()) => Ok(true),
            Err(ChunkError::TempLost) => Err(Again::Transient(anyhow::anyhow!(
                "the temporary key of big key {} disappeared from the target while it was written; writing it again",
                escape_key(&self.key.key)
            ))),
            Err(ChunkError::Refused(e)) => Err(self.write_refused(dst.endpoint(), &e)),
            Err(ChunkError::Unwritable(why)) => Err(self.unwritable(why)),
        }
    }

    /// `RESTORE tmp <safety ttl> <packed payload> REPLACE`; false when nothing was packed.
    async fn restore_packed(
        &self,
        dst: &mut Connection,
        tmp: &Bytes,
        packed: PackedString,
    ) -> Result<bool, Again> {
        let Some(payload) = packed.into_payload() else {
            return Ok(false);
        };
        let ttl = write::TEMP_TTL_MS.to_string();
        let mut p = Pipeline::new();
        p.cmd(&[
            b"RESTORE".as_slice(),
            tmp,
            ttl.as_bytes(),
            &payload,
            b"REPLACE",
        ]);
        drop(payload);
        match dst.run(&p).await?.first() {
            Some(Reply::Error(e)) => Err(self.write_refused(dst.endpoint(), e)),
            Some(_) => Ok(true),
            None => Err(Again::Fatal(anyhow::anyhow!(
                "the target {} did not answer RESTORE",
                dst.endpoint()
            ))),
        }
    }

    /// Refuses a string already longer than the target's `proto-max-bulk-len` that did not pack
    /// under it: no APPEND can make it, and the target would refuse the first one past it.
    fn check_string_len(&self, ep: &str, len: u64) -> Result<(), Again> {
        let Some(limit) = self.big.max_bulk.filter(|&m| len > m) else {
            return Ok(());
        };
        let key = escape_key(&self.key.key);
        let db = self.key.db;
        let cap = self.big.packed_cap();
        let reason = format!(
            "string of at least {len} bytes, longer than the target's proto-max-bulk-len \
             ({limit} bytes) and not compressible under {cap} bytes: raise proto-max-bulk-len on the target"
        );
        let fatal = anyhow::anyhow!(
            "big key {key} (db {db}) is a string of at least {} ({len} bytes read so far), longer than the \
             target {ep}'s proto-max-bulk-len of {} ({limit} bytes), and it does not compress under {} \
             (LZF, one RESTORE): no command can build it there. Raise proto-max-bulk-len on the target \
             above the string's size (CONFIG SET proto-max-bulk-len, or the parameter group of a managed \
             service), then rerun the same command; or rerun with --on-key-error skip to copy every other \
             key and list this one in the dead-letter file",
            human_bytes(len),
            human_bytes(limit),
            human_bytes(cap as u64)
        );
        Err(self.key_fault(Cause::TooLarge, &reason, fatal))
    }

    /// The next chunk; `Err(None)` when the key vanished from the live source.
    async fn next_chunk(&self, chunks: &mut Chunks<'_>) -> Result<Option<Chunk>, Option<Again>> {
        match chunks {
            Chunks::Live(conn, reader) => match self.paced(reader.next(conn)).await {
                Ok(c) => Ok(c),
                Err(ReadError::Vanished) => Err(None),
                Err(e) => {
                    let ReadFrom::Server(source) = self.from else {
                        return Err(Some(Again::Fatal(e.into())));
                    };
                    Err(Some(self.read_failed(source, e)))
                }
            },
            Chunks::File(slot) => {
                let Some(mut file) = slot.take() else {
                    return Err(Some(Again::Fatal(anyhow::anyhow!(
                        "internal error: the file's chunk reader is gone"
                    ))));
                };
                let (file, next) = tokio::task::spawn_blocking(move || {
                    let next = file.next_chunk();
                    (file, next)
                })
                .await
                .map_err(|e| {
                    Some(Again::Fatal(anyhow::anyhow!(
                        "the thread reading the file failed: {e}"
                    )))
                })?;
                *slot = Some(file);
                next.map_err(|e| Some(Again::Fatal(e)))
            }
        }
    }

    /// Reads one chunk of a live source within its load limits: waits while the source's
    /// budget is spent (or it is slow), then pays for the chunk's bytes.
    async fn paced(
        &self,
        read: impl std::future::Future<Output = Result<Option<Chunk>, ReadError>>,
    ) -> Result<Option<Chunk>, ReadError> {
        let throttle = match (self.from, &self.big.throttles) {
            (ReadFrom::Server(source), Some(t)) => t.for_server(source),
            _ => None,
        };
        let Some(throttle) = throttle else {
            return read.await;
        };
        throttle.take_keys(0).await;
        let chunk = read.await?;
        if let Some(c) = &chunk {
            throttle.pay_bytes(c.size());
        }
        Ok(chunk)
    }

    fn read_failed(&self, source: &Server, e: ReadError) -> Again {
        let what = format!(
            "reading big key {} (db {}) in chunks from the source {}",
            escape_key(&self.key.key),
            self.key.db,
            source.endpoint
        );
        match e {
            ReadError::Conn(c) => Again::from(c),
            // A cluster's slot moved (or is moving) away from this master: read it again where
            // it is then (a key being migrated is read once its slot has moved).
            ReadError::Refused { error, .. } if ErrorKind::of(&error).is_cluster_transient() => {
                Again::Transient(anyhow::anyhow!("{what}: the source answered {error}"))
            }
            ReadError::Changed { .. } | ReadError::TypeChanged(Some(_)) | ReadError::Vanished => {
                Again::Changed(anyhow::Error::from(e).context(what))
            }
            other => Again::Fatal(anyhow::Error::from(other).context(format!(
                "{what}. The source's ACL user needs +getrange +lrange +sscan +zscan +hscan +xrange +xinfo \
                 +xpending +type +strlen +llen +scard +zcard +hlen +xlen for big keys"
            ))),
        }
    }

    fn key_fault(&self, cause: Cause, err: &str, fatal: anyhow::Error) -> Again {
        Again::KeyFault {
            cause,
            reason: err.to_string(),
            fatal,
        }
    }

    /// A key the chunked copy cannot reproduce on this target (`write::unwritable`): a per-key
    /// failure, never a silent difference.
    fn unwritable(&self, why: &str) -> Again {
        let fatal = anyhow::anyhow!(
            "big key {} (db {}) cannot be copied in chunks exactly: {why}. Copy it whole with one \
             RESTORE (rerun with --big-key-bytes above its size; the target's proto-max-bulk-len \
             must accept its DUMP), or rerun with --on-key-error skip to copy every other key and \
             list it in the dead-letter file",
            escape_key(&self.key.key),
            self.key.db
        );
        self.key_fault(Cause::NotRepresentable, why, fatal)
    }

    fn write_refused(&self, ep: &str, err: &str) -> Again {
        let kind = ErrorKind::of(err);
        if kind.is_cluster_transient() {
            return Again::Transient(anyhow::anyhow!("the target answered {err}"));
        }
        if kind == ErrorKind::StringTooLong {
            return self.key_fault(Cause::TooLarge, err, anyhow::anyhow!(
                "the target {ep} refused to grow big key {} (db {}) past its proto-max-bulk-len: {err}. A string \
                 can never be larger than that setting on the target, whatever the way it is written: raise \
                 proto-max-bulk-len on the target above the string's size (CONFIG SET or the parameter group), then \
                 rerun the same command",
                escape_key(&self.key.key),
                self.key.db
            ));
        }
        if let Some(cause) = super::key_error::key_fault(err) {
            let fatal = anyhow::anyhow!(
                "the target {ep} refused big key {} (db {}): {err}. Fix the cause on the target, or \
                 rerun with --on-key-error skip to copy every other key and list the refused ones",
                escape_key(&self.key.key),
                self.key.db
            );
            return self.key_fault(cause, err, fatal);
        }
        Again::Fatal(anyhow::anyhow!(
            "the target {ep} refused to write big key {} (db {}) into its temporary key: {err}. Big keys are \
             written with RESTORE/HSET/SADD/ZADD/RPUSH/APPEND/XADD/XSETID/XGROUP/XCLAIM, PEXPIRE, DEL, EXISTS, MULTI, RENAME, \
             PEXPIREAT, PERSIST, EXEC (and WATCH with --on-conflict skip): the target's ACL user needs them on all keys",
            escape_key(&self.key.key),
            self.key.db
        ))
    }
}

async fn exists(dst: &mut Connection, key: &[u8]) -> Result<bool, Again> {
    match dst.cmd(&[b"EXISTS".as_slice(), key]).await? {
        Reply::Int(n) => Ok(n > 0),
        other => Err(Again::Fatal(anyhow::anyhow!(
            "the target {} answered EXISTS with {other:?}",
            dst.endpoint()
        ))),
    }
}

/// `MULTI RENAME tmp key; PEXPIREAT|PERSIST; EXEC`. With `skip`, only if `key` is still absent
/// (WATCHed): false, and `tmp` deleted, when it exists.
async fn put_in_place(
    dst: &mut Connection,
    tmp: &Bytes,
    key: &Bytes,
    expire: Expire,
    skip: bool,
) -> Result<bool, Again> {
    loop {
        if skip {
            dst.cmd(&[b"WATCH".as_slice(), key]).await?;
            if exists(dst, key).await? {
                dst.cmd(&[b"UNWATCH".as_slice()]).await?;
                dst.cmd(&[b"DEL".as_slice(), tmp]).await?;
                return Ok(false);
            }
        }
        let mut p = Pipeline::new();
        write::push_rename(&mut p, tmp, key, expire);
        let replies = dst.run(&p).await?;
        match write::renamed(&replies, key) {
            Ok(true) => return Ok(true),
            // The WATCHed key was written meanwhile: look again.
            Ok(false) => continue,
            Err(e) => return Err(Again::Fatal(e)),
        }
    }
}
