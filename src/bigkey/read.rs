//! Reading one big key from a live source as a sequence of byte-bounded [`Chunk`]s.
//!
//! A `DUMP` of a big key blocks the source for as long as it takes to serialize the whole value
//! and costs memory in proportion to it. Here every source command touches about one chunk's
//! worth of data: `GETRANGE` by byte windows, `LRANGE` by index windows, `SSCAN`/`ZSCAN`/`HSCAN`
//! with a `COUNT` sized from the element sizes seen so far, `XRANGE … COUNT n`, then a stream's
//! metadata (`XINFO STREAM`), groups (`XINFO GROUPS`, `XINFO CONSUMERS`) and pending entries
//! (`XPENDING key group start + n`, in pages). The API is pull-based
//! ([`ChunkReader::next`]), so a caller holds one chunk at a time.
//!
//! Windows start small and grow (at most ×4 per round trip) towards `budget / average element
//! size`, so a key of huge elements does not make the first command touch a huge range. A
//! `SCAN`-family `COUNT` is only a hint: a compact encoding (ziplist/listpack/intset) answers
//! with everything at once, which is fine since those are small by construction.
//!
//! Every round trip is `READ, TYPE key, LENGTH key` (one pipeline): `TYPE` after the read tells
//! a key that vanished ([`ReadError::Vanished`]) or changed type ([`ReadError::TypeChanged`])
//! from one that ended, and the length at the last round trip, compared with the elements read,
//! catches a key written to mid-read or a `SCAN` that returned an element twice
//! ([`ReadError::Changed`]); the caller decides whether to read it again.
//!
//! Paging without exclusive ranges (`(id` needs 6.2): the next `XRANGE`/`XPENDING` starts at
//! the last ID plus one, which works on 5.0 too. Works on 3.2 (no streams) to 7.x.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Chunk, Kind, PendingEntry, StreamEntry, StreamGroup, StreamId, StreamMeta};
use crate::endpoint::{ConnError, Connection, Pipeline, Reply};
use crate::rdb::score::parse_score_text;

/// Elements asked for in the first window, before any element size is known.
const FIRST_WINDOW: usize = 8;
/// The largest window, whatever the budget: bounds the time one command blocks the source when
/// elements are tiny (a scan costs per element, not per byte). Measured (tests/bigkeys.rs, 6.2
/// on a loaded machine): `ZSCAN … COUNT 100000` blocked the source 0.47 s, a third of one DUMP of
/// a 1M-field hash; 10000 keeps every command under a tenth of it.
const MAX_WINDOW: usize = 10_000;
/// Assumed bytes of one pending entry (ID, consumer name, two numbers) for sizing pages.
const PENDING_BYTES: usize = 64;

/// Why a big key could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The key was deleted (or expired) during the read.
    #[error("the key vanished while it was read in chunks")]
    Vanished,
    /// The key now holds another type (`None`: a module type or one ferry does not know).
    #[error("the key changed type while it was read in chunks (now {})", .0.map_or("another type", Kind::type_name))]
    TypeChanged(Option<Kind>),
    /// The key was written to during the read: `read` elements were read, it now holds `now`
    /// (or a `SCAN` returned an element twice). Reading it again usually succeeds.
    #[error("the key changed while it was read in chunks ({read} elements read, it now holds {now}); read it again")]
    Changed {
        /// Elements (bytes for a string, entries for a stream) read.
        read: u64,
        /// Its length at the end of the read.
        now: u64,
    },
    /// The server refused a command (an ACL, a missing command on an old server).
    #[error("the server refused {command}: {error}")]
    Refused {
        /// The command's name.
        command: &'static str,
        /// The server's error.
        error: String,
    },
    /// A reply ferry cannot read.
    #[error("unexpected reply to {command}: {what}")]
    Malformed {
        /// The command's name.
        command: &'static str,
        /// What was wrong.
        what: String,
    },
    /// The connection failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
}

/// Where a stream read is.
#[derive(Debug)]
enum StreamStep {
    /// Entries from this ID on.
    Entries(StreamId),
    /// Metadata and the list of groups next.
    Meta,
    /// The next group's chunk (its consumers read), then its pending entries.
    Group,
    /// Pending entries of the current group from this ID on.
    Pending(StreamId),
}

/// Where a read is.
#[derive(Debug)]
enum Step {
    /// String bytes from this offset.
    Bytes(u64),
    /// List elements from this index.
    Index(u64),
    /// A SCAN-family cursor; `first` until the first round trip.
    Cursor { cursor: u64, first: bool },
    /// A stream.
    Stream(StreamStep),
    /// Everything read.
    Done,
}

/// Reads one key of a known [`Kind`] in chunks of about `budget` bytes.
#[derive(Debug)]
pub struct ChunkReader {
    key: Bytes,
    kind: Kind,
    budget: usize,
    step: Step,
    /// Elements asked for in the last window (grows towards the budget).
    window: usize,
    /// Bytes and elements read so far (for the average element size and the final check).
    bytes: u64,
    elements: u64,
    /// Stream groups not yet emitted, and the one whose pending entries are being read.
    groups: VecDeque<StreamGroup>,
    group: Option<Bytes>,
}

impl ChunkReader {
    /// A reader of `key`, which holds a `kind`, in chunks of about `budget` bytes.
    pub fn new(key: Bytes, kind: Kind, budget: usize) -> ChunkReader {
        let step = match kind {
            Kind::String => Step::Bytes(0),
            Kind::List => Step::Index(0),
            Kind::Set | Kind::ZSet | Kind::Hash => Step::Cursor {
                cursor: 0,
                first: true,
            },
            Kind::Stream => Step::Stream(StreamStep::Entries(StreamId::default())),
        };
        ChunkReader {
            key,
            kind,
            budget: budget.max(1),
            step,
            window: FIRST_WINDOW,
            bytes: 0,
            elements: 0,
            groups: VecDeque::new(),
            group: None,
        }
    }

    /// A reader of `key` whatever it holds: asks `TYPE` first. `Ok(None)` when the key does not
    /// exist; [`ReadError::TypeChanged`] for a type that cannot be read in chunks (a module).
    pub async fn open(
        conn: &mut Connection,
        key: Bytes,
        budget: usize,
    ) -> Result<Option<ChunkReader>, ReadError> {
        let reply = conn.cmd(&[b"TYPE".as_slice(), &key]).await?;
        refused("TYPE", &reply)?;
        let name = reply.as_bytes().unwrap_or_default();
        if name == b"none" {
            return Ok(None);
        }
        match Kind::from_type_name(name) {
            Some(kind) => Ok(Some(ChunkReader::new(key, kind, budget))),
            None => Err(ReadError::TypeChanged(None)),
        }
    }

    /// The key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// What the key holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The next chunk, `Ok(None)` once the whole key was read (the DB selected on `conn`, nothing
    /// else in flight on it). After an error the reader is done.
    pub async fn next(&mut self, conn: &mut Connection) -> Result<Option<Chunk>, ReadError> {
        loop {
            let result = match &self.step {
                Step::Done => return Ok(None),
                Step::Bytes(at) => self.next_bytes(conn, *at).await,
                Step::Index(at) => self.next_list(conn, *at).await,
                Step::Cursor { cursor, first } => {
                    if !*first && *cursor == 0 {
                        self.step = Step::Done;
                        return Ok(None);
                    }
                    self.next_scan(conn, *cursor).await
                }
                Step::Stream(_) => self.next_stream(conn).await,
            };
            match result {
                Ok(Some(chunk)) => return Ok(Some(chunk)),
                // A step that read nothing (an empty SCAN page, a stream without groups).
                Ok(None) => continue,
                Err(e) => {
                    self.step = Step::Done;
                    return Err(e);
                }
            }
        }
    }

    /// Elements for the next window: `budget / average size`, at most ×4 the last window.
    fn next_window(&mut self) -> usize {
        let target = match self.bytes.checked_div(self.elements) {
            None => FIRST_WINDOW,
            Some(avg) => (self.budget / avg.max(1) as usize).max(1),
        };
        self.window = target
            .min(self.window.saturating_mul(4))
            .clamp(1, MAX_WINDOW);
        self.window
    }

    /// Runs `command` followed by `TYPE key` and the key's length command, checking the type.
    /// Returns the command's reply and the key's length.
    async fn round_trip(
        &self,
        conn: &mut Connection,
        name: &'static str,
        command: &[&[u8]],
    ) -> Result<(Reply, u64), ReadError> {
        let mut p = Pipeline::new();
        p.cmd(command);
        p.cmd(&[b"TYPE".as_slice(), &self.key]);
        p.cmd(&[length_command(self.kind).as_bytes(), &self.key]);
        let mut replies = conn.run(&p).await?.into_iter();
        let (Some(reply), Some(ty), Some(len)) = (replies.next(), replies.next(), replies.next())
        else {
            return Err(malformed(name, "fewer replies than commands"));
        };
        refused("TYPE", &ty)?;
        check_type(self.kind, ty.as_bytes().unwrap_or_default())?;
        refused(name, &reply)?;
        let len = len
            .as_int()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        Ok((reply, len))
    }

    /// Called once the last window was read: the elements read must be what the key holds now.
    fn finish(&mut self, len_now: u64) -> Result<(), ReadError> {
        self.step = Step::Done;
        if self.elements != len_now {
            return Err(ReadError::Changed {
                read: self.elements,
                now: len_now,
            });
        }
        Ok(())
    }

    async fn next_bytes(
        &mut self,
        conn: &mut Connection,
        at: u64,
    ) -> Result<Option<Chunk>, ReadError> {
        let want = self.budget as u64;
        let (start, end) = (at.to_string(), (at + want - 1).to_string());
        let (reply, len) = self
            .round_trip(
                conn,
                "GETRANGE",
                &[b"GETRANGE", &self.key, start.as_bytes(), end.as_bytes()],
            )
            .await?;
        let bytes = bulk(&reply, "GETRANGE")?;
        self.bytes += bytes.len() as u64;
        self.elements += bytes.len() as u64;
        if (bytes.len() as u64) < want {
            self.finish(len)?;
        } else {
            self.step = Step::Bytes(at + want);
        }
        Ok((!bytes.is_empty()).then_some(Chunk::String(bytes)))
    }

    async fn next_list(
        &mut self,
        conn: &mut Connection,
        at: u64,
    ) -> Result<Option<Chunk>, ReadError> {
        let n = self.next_window() as u64;
        let (start, end) = (at.to_string(), (at + n - 1).to_string());
        let (reply, len) = self
            .round_trip(
                conn,
                "LRANGE",
                &[b"LRANGE", &self.key, start.as_bytes(), end.as_bytes()],
            )
            .await?;
        let items = array(reply, "LRANGE")?
            .iter()
            .map(|r| bulk(r, "LRANGE"))
            .collect::<Result<Vec<_>, _>>()?;
        self.count(items.iter().map(|b| b.len()));
        if (items.len() as u64) < n {
            self.finish(len)?;
        } else {
            self.step = Step::Index(at + n);
        }
        Ok((!items.is_empty()).then_some(Chunk::List(items)))
    }

    async fn next_scan(
        &mut self,
        conn: &mut Connection,
        cursor: u64,
    ) -> Result<Option<Chunk>, ReadError> {
        let (cmd, name): (&[u8], _) = match self.kind {
            Kind::Set => (b"SSCAN", "SSCAN"),
            Kind::ZSet => (b"ZSCAN", "ZSCAN"),
            _ => (b"HSCAN", "HSCAN"),
        };
        let count = self.next_window().to_string();
        let cur = cursor.to_string();
        let (reply, len) = self
            .round_trip(
                conn,
                name,
                &[cmd, &self.key, cur.as_bytes(), b"COUNT", count.as_bytes()],
            )
            .await?;
        let (next, flat) = parse_scan_reply(reply, name)?;
        let chunk = match self.kind {
            Kind::Set => {
                self.count(flat.iter().map(|b| b.len()));
                Chunk::Set(flat)
            }
            Kind::ZSet => {
                let members = zscan_pairs(flat)?;
                self.count(members.iter().map(|(m, _)| m.len() + 8));
                Chunk::ZSet(members)
            }
            _ => {
                let fields = pairs(flat, "HSCAN")?;
                self.count(fields.iter().map(|(f, v)| f.len() + v.len()));
                Chunk::Hash(fields)
            }
        };
        self.step = Step::Cursor {
            cursor: next,
            first: false,
        };
        if next == 0 {
            self.finish(len)?;
        }
        Ok((!chunk_is_empty(&chunk)).then_some(chunk))
    }

    /// Adds elements of these sizes to the running totals.
    fn count(&mut self, sizes: impl Iterator<Item = usize>) {
        for s in sizes {
            self.bytes += s as u64;
            self.elements += 1;
        }
    }

    async fn next_stream(&mut self, conn: &mut Connection) -> Result<Option<Chunk>, ReadError> {
        let Step::Stream(step) = &self.step else {
            return Ok(None);
        };
        match *step {
            StreamStep::Entries(from) => self.stream_entries(conn, from).await,
            StreamStep::Meta => self.stream_meta(conn).await,
            StreamStep::Group => self.stream_group(conn).await,
            StreamStep::Pending(from) => self.stream_pending(conn, from).await,
        }
    }

    async fn stream_entries(
        &mut self,
        conn: &mut Connection,
        from: StreamId,
    ) -> Result<Option<Chunk>, ReadError> {
        let n = self.next_window();
        let (start, count) = (format_id(from), n.to_string());
        let (reply, _) = self
            .round_trip(
                conn,
                "XRANGE",
                &[
                    b"XRANGE",
                    &self.key,
                    start.as_bytes(),
                    b"+",
                    b"COUNT",
                    count.as_bytes(),
                ],
            )
            .await?;
        let entries = parse_entries(reply)?;
        self.count(entries.iter().map(|e| 16 + fields_size(&e.fields)));
        self.step = match entries.last() {
            Some(last) if entries.len() >= n => match next_id(last.id) {
                Some(id) => Step::Stream(StreamStep::Entries(id)),
                None => Step::Stream(StreamStep::Meta),
            },
            _ => Step::Stream(StreamStep::Meta),
        };
        Ok((!entries.is_empty()).then_some(Chunk::StreamEntries(entries)))
    }

    /// `XINFO STREAM` (metadata, length) and `XINFO GROUPS`, one round trip.
    async fn stream_meta(&mut self, conn: &mut Connection) -> Result<Option<Chunk>, ReadError> {
        let mut p = Pipeline::new();
        p.cmd(&[b"XINFO".as_slice(), b"STREAM", &self.key]);
        p.cmd(&[b"XINFO".as_slice(), b"GROUPS", &self.key]);
        p.cmd(&[b"TYPE".as_slice(), &self.key]);
        let mut replies = conn.run(&p).await?.into_iter();
        let (Some(info), Some(groups), Some(ty)) = (replies.next(), replies.next(), replies.next())
        else {
            return Err(malformed("XINFO", "fewer replies than commands"));
        };
        refused("TYPE", &ty)?;
        check_type(Kind::Stream, ty.as_bytes().unwrap_or_default())?;
        refused("XINFO STREAM", &info)?;
        refused("XINFO GROUPS", &groups)?;
        let (meta, len) = parse_stream_info(info)?;
        self.groups = parse_groups(groups)?.into();
        self.step = Step::Stream(StreamStep::Group);
        if self.elements != len {
            self.step = Step::Done;
            return Err(ReadError::Changed {
                read: self.elements,
                now: len,
            });
        }
        Ok(Some(Chunk::StreamMeta(meta)))
    }

    /// The next group with its consumers (`XINFO CONSUMERS`), or the end.
    async fn stream_group(&mut self, conn: &mut Connection) -> Result<Option<Chunk>, ReadError> {
        let Some(mut group) = self.groups.pop_front() else {
            self.step = Step::Done;
            return Ok(None);
        };
        let (reply, _) = self
            .round_trip(
                conn,
                "XINFO CONSUMERS",
                &[b"XINFO", b"CONSUMERS", &self.key, &group.name],
            )
            .await?;
        (group.consumers, group.without_pending) = parse_consumers(reply)?;
        self.group = Some(group.name.clone());
        self.step = Step::Stream(StreamStep::Pending(StreamId::default()));
        Ok(Some(Chunk::StreamGroup(group)))
    }

    /// A page of the current group's pending entries (`XPENDING key group start + n`).
    async fn stream_pending(
        &mut self,
        conn: &mut Connection,
        from: StreamId,
    ) -> Result<Option<Chunk>, ReadError> {
        let Some(group) = self.group.clone() else {
            self.step = Step::Stream(StreamStep::Group);
            return Ok(None);
        };
        let n = (self.budget / PENDING_BYTES).clamp(1, MAX_WINDOW);
        let (start, count) = (format_id(from), n.to_string());
        let (reply, _) = self
            .round_trip(
                conn,
                "XPENDING",
                &[
                    b"XPENDING",
                    &self.key,
                    &group,
                    start.as_bytes(),
                    b"+",
                    count.as_bytes(),
                ],
            )
            .await?;
        let entries = parse_pending(reply)?;
        self.step = match entries.last().map(|e| next_id(e.id)) {
            Some(Some(id)) if entries.len() >= n => Step::Stream(StreamStep::Pending(id)),
            _ => Step::Stream(StreamStep::Group),
        };
        Ok((!entries.is_empty()).then_some(Chunk::StreamPending { group, entries }))
    }
}

/// True when a chunk holds no element.
fn chunk_is_empty(c: &Chunk) -> bool {
    match c {
        Chunk::Set(v) => v.is_empty(),
        Chunk::ZSet(v) => v.is_empty(),
        Chunk::Hash(v) => v.is_empty(),
        _ => false,
    }
}

/// The command that tells a key's length in the unit the reader counts.
fn length_command(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "STRLEN",
        Kind::List => "LLEN",
        Kind::Set => "SCARD",
        Kind::ZSet => "ZCARD",
        Kind::Hash => "HLEN",
        Kind::Stream => "XLEN",
    }
}

fn check_type(kind: Kind, ty: &[u8]) -> Result<(), ReadError> {
    if ty == b"none" {
        return Err(ReadError::Vanished);
    }
    match Kind::from_type_name(ty) {
        Some(k) if k == kind => Ok(()),
        other => Err(ReadError::TypeChanged(other)),
    }
}

fn refused(command: &'static str, reply: &Reply) -> Result<(), ReadError> {
    match reply.error() {
        Some(e) => Err(ReadError::Refused {
            command,
            error: e.to_string(),
        }),
        None => Ok(()),
    }
}

fn malformed(command: &'static str, what: &str) -> ReadError {
    ReadError::Malformed {
        command,
        what: what.to_string(),
    }
}

fn bulk(r: &Reply, command: &'static str) -> Result<Bytes, ReadError> {
    match r {
        Reply::Bulk(Some(b)) => Ok(b.clone()),
        Reply::Status(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
        _ => Err(malformed(command, "expected a string")),
    }
}

fn array(r: Reply, command: &'static str) -> Result<Vec<Reply>, ReadError> {
    match r {
        Reply::Array(Some(v)) => Ok(v),
        Reply::Array(None) => Ok(Vec::new()),
        _ => Err(malformed(command, "expected an array")),
    }
}

fn int(r: &Reply, command: &'static str) -> Result<u64, ReadError> {
    match r {
        Reply::Int(n) if *n >= 0 => Ok(*n as u64),
        Reply::Bulk(Some(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed(command, "expected a number")),
        _ => Err(malformed(command, "expected a number")),
    }
}

/// `[cursor, [elements…]]` → (next cursor, elements).
pub fn parse_scan_reply(r: Reply, command: &'static str) -> Result<(u64, Vec<Bytes>), ReadError> {
    let mut parts = array(r, command)?.into_iter();
    let (Some(cursor), Some(items)) = (parts.next(), parts.next()) else {
        return Err(malformed(command, "expected [cursor, elements]"));
    };
    let cursor = int(&cursor, command)?;
    let items = array(items, command)?
        .iter()
        .map(|r| bulk(r, command))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cursor, items))
}

/// A flat `[a, b, a, b…]` list as pairs.
fn pairs(flat: Vec<Bytes>, command: &'static str) -> Result<Vec<(Bytes, Bytes)>, ReadError> {
    if flat.len() % 2 != 0 {
        return Err(malformed(command, "an odd number of elements"));
    }
    let mut it = flat.into_iter();
    let mut out = Vec::with_capacity(it.len() / 2);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

/// `ZSCAN`'s `[member, score…]`, scores parsed exactly (Redis prints 17 significant digits,
/// `inf` and `-inf`).
pub fn zscan_pairs(flat: Vec<Bytes>) -> Result<Vec<(Bytes, f64)>, ReadError> {
    pairs(flat, "ZSCAN")?
        .into_iter()
        .map(|(m, s)| match parse_score_text(&s) {
            Some(score) if !score.is_nan() => Ok((m, score)),
            _ => Err(malformed(
                "ZSCAN",
                &format!("score {:?}", String::from_utf8_lossy(&s)),
            )),
        })
        .collect()
}

/// `1526919030474-55` → its ID.
pub fn parse_id(text: &[u8]) -> Option<StreamId> {
    let s = std::str::from_utf8(text).ok()?;
    let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
    Some(StreamId {
        ms: ms.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

fn format_id(id: StreamId) -> String {
    format!("{}-{}", id.ms, id.seq)
}

/// The smallest ID after `id` (`None` after the largest).
fn next_id(id: StreamId) -> Option<StreamId> {
    match id.seq.checked_add(1) {
        Some(seq) => Some(StreamId { ms: id.ms, seq }),
        None => id.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
    }
}

fn id(r: &Reply, command: &'static str) -> Result<StreamId, ReadError> {
    r.as_bytes()
        .and_then(parse_id)
        .ok_or_else(|| malformed(command, "expected a stream ID"))
}

fn fields_size(fields: &[(Bytes, Bytes)]) -> usize {
    fields.iter().map(|(f, v)| f.len() + v.len()).sum()
}

/// `XRANGE`'s `[[id, [field, value…]]…]`.
pub fn parse_entries(r: Reply) -> Result<Vec<StreamEntry>, ReadError> {
    array(r, "XRANGE")?
        .into_iter()
        .map(|e| {
            let mut parts = array(e, "XRANGE")?.into_iter();
            let (Some(entry_id), Some(fields)) = (parts.next(), parts.next()) else {
                return Err(malformed("XRANGE", "expected [id, fields]"));
            };
            let flat = array(fields, "XRANGE")?
                .iter()
                .map(|r| bulk(r, "XRANGE"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(StreamEntry {
                id: id(&entry_id, "XRANGE")?,
                fields: pairs(flat, "XRANGE")?,
            })
        })
        .collect()
}

/// A flat `[name, value…]` map reply (XINFO) as pairs of lowercase names and replies.
fn map(r: Reply, command: &'static str) -> Result<Vec<(String, Reply)>, ReadError> {
    let flat = array(r, command)?;
    if flat.len() % 2 != 0 {
        return Err(malformed(command, "an odd number of elements"));
    }
    let mut it = flat.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let name = k
            .to_text()
            .ok_or_else(|| malformed(command, "expected a field name"))?;
        out.push((name.to_ascii_lowercase(), v));
    }
    Ok(out)
}

fn field<'a>(m: &'a [(String, Reply)], name: &str) -> Option<&'a Reply> {
    m.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A number field that may be absent or nil (older servers, a group never read).
fn optional_int(m: &[(String, Reply)], name: &str) -> Option<u64> {
    field(m, name).and_then(|r| int(r, "XINFO").ok())
}

/// `XINFO STREAM` → the metadata and the stream's length.
pub fn parse_stream_info(r: Reply) -> Result<(StreamMeta, u64), ReadError> {
    let m = map(r, "XINFO STREAM")?;
    let last_id = field(&m, "last-generated-id")
        .ok_or_else(|| malformed("XINFO STREAM", "no last-generated-id"))
        .and_then(|r| id(r, "XINFO STREAM"))?;
    let len = field(&m, "length")
        .ok_or_else(|| malformed("XINFO STREAM", "no length"))
        .and_then(|r| int(r, "XINFO STREAM"))?;
    let max_deleted_id = field(&m, "max-deleted-entry-id")
        .map(|r| id(r, "XINFO STREAM"))
        .transpose()?;
    Ok((
        StreamMeta {
            last_id,
            entries_added: optional_int(&m, "entries-added"),
            max_deleted_id,
        },
        len,
    ))
}

/// `XINFO GROUPS` → the groups (consumers not yet read).
pub fn parse_groups(r: Reply) -> Result<Vec<StreamGroup>, ReadError> {
    array(r, "XINFO GROUPS")?
        .into_iter()
        .map(|g| {
            let m = map(g, "XINFO GROUPS")?;
            let name = field(&m, "name")
                .ok_or_else(|| malformed("XINFO GROUPS", "no name"))
                .and_then(|r| bulk(r, "XINFO GROUPS"))?;
            let last_delivered = field(&m, "last-delivered-id")
                .ok_or_else(|| malformed("XINFO GROUPS", "no last-delivered-id"))
                .and_then(|r| id(r, "XINFO GROUPS"))?;
            Ok(StreamGroup {
                name,
                last_delivered,
                entries_read: optional_int(&m, "entries-read"),
                consumers: Vec::new(),
                without_pending: Vec::new(),
            })
        })
        .collect()
}

/// `XINFO CONSUMERS` → the consumer names, and those with no pending entries.
pub fn parse_consumers(r: Reply) -> Result<(Vec<Bytes>, Vec<Bytes>), ReadError> {
    let mut names = Vec::new();
    let mut without_pending = Vec::new();
    for c in array(r, "XINFO CONSUMERS")? {
        let m = map(c, "XINFO CONSUMERS")?;
        let name = field(&m, "name")
            .ok_or_else(|| malformed("XINFO CONSUMERS", "no name"))
            .and_then(|r| bulk(r, "XINFO CONSUMERS"))?;
        if optional_int(&m, "pending") == Some(0) {
            without_pending.push(name.clone());
        }
        names.push(name);
    }
    Ok((names, without_pending))
}

/// The extended `XPENDING` form: `[[id, consumer, idle ms, deliveries]…]`.
pub fn parse_pending(r: Reply) -> Result<Vec<PendingEntry>, ReadError> {
    array(r, "XPENDING")?
        .into_iter()
        .map(|e| {
            let parts = array(e, "XPENDING")?;
            let [entry_id, consumer, idle, count] = parts.as_slice() else {
                return Err(malformed(
                    "XPENDING",
                    "expected [id, consumer, idle, count]",
                ));
            };
            Ok(PendingEntry {
                id: id(entry_id, "XPENDING")?,
                consumer: bulk(consumer, "XPENDING")?,
                idle_ms: int(idle, "XPENDING")?,
                delivery_count: int(count, "XPENDING")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }
    fn arr(v: Vec<Reply>) -> Reply {
        Reply::Array(Some(v))
    }

    #[test]
    fn scores_are_exact_and_infinite() {
        let flat = [
            "a",
            "inf",
            "b",
            "-inf",
            "c",
            "0.10000000000000001",
            "d",
            "-3",
        ]
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect();
        let z = zscan_pairs(flat).expect("parses");
        assert_eq!(z[0].1, f64::INFINITY);
        assert_eq!(z[1].1, f64::NEG_INFINITY);
        assert_eq!(z[2].1.to_bits(), 0.1f64.to_bits());
        assert_eq!(z[3].1, -3.0);
        let bad = vec![Bytes::from_static(b"m"), Bytes::from_static(b"x1")];
        assert!(matches!(zscan_pairs(bad), Err(ReadError::Malformed { .. })));
        assert!(zscan_pairs(vec![Bytes::from_static(b"m")]).is_err());
    }

    #[test]
    fn every_double_round_trips_through_17_digits() {
        for v in [
            1.0f64 / 3.0,
            1e308,
            5e-324,
            -2.2250738585072014e-308,
            123456789.12345679,
        ] {
            let text = format!("{v:.16e}");
            let got = zscan_pairs(vec![Bytes::from_static(b"m"), text.into()]).expect("parses");
            assert_eq!(got[0].1.to_bits(), v.to_bits());
        }
    }

    #[test]
    fn scan_reply() {
        let r = arr(vec![b("17"), arr(vec![b("x"), b("y")])]);
        let (c, items) = parse_scan_reply(r, "SSCAN").expect("parses");
        assert_eq!(c, 17);
        assert_eq!(items, vec![Bytes::from("x"), Bytes::from("y")]);
        assert!(parse_scan_reply(b("0"), "SSCAN").is_err());
    }

    #[test]
    fn ids_parse_and_advance() {
        assert_eq!(parse_id(b"5-7"), Some(StreamId { ms: 5, seq: 7 }));
        assert_eq!(parse_id(b"5"), Some(StreamId { ms: 5, seq: 0 }));
        assert_eq!(parse_id(b"x-1"), None);
        assert_eq!(
            next_id(StreamId {
                ms: 1,
                seq: u64::MAX
            }),
            Some(StreamId { ms: 2, seq: 0 })
        );
        assert_eq!(
            next_id(StreamId {
                ms: u64::MAX,
                seq: u64::MAX
            }),
            None
        );
    }

    #[test]
    fn entries_and_pending() {
        let r = arr(vec![arr(vec![b("1-1"), arr(vec![b("f"), b("v")])])]);
        let e = parse_entries(r).expect("parses");
        assert_eq!(e[0].id, StreamId { ms: 1, seq: 1 });
        assert_eq!(e[0].fields, vec![(Bytes::from("f"), Bytes::from("v"))]);
        let p = arr(vec![arr(vec![
            b("1-1"),
            b("alice"),
            Reply::Int(42),
            Reply::Int(3),
        ])]);
        let p = parse_pending(p).expect("parses");
        assert_eq!(p[0].consumer, Bytes::from("alice"));
        assert_eq!((p[0].idle_ms, p[0].delivery_count), (42, 3));
        assert!(parse_pending(arr(vec![arr(vec![b("1-1")])])).is_err());
    }

    #[test]
    fn stream_info_old_and_new() {
        // 5.0: no entries-added / max-deleted-entry-id.
        let old = arr(vec![
            b("length"),
            Reply::Int(2),
            b("last-generated-id"),
            b("9-1"),
            b("first-entry"),
            arr(vec![b("1-0"), arr(vec![])]),
        ]);
        let (m, len) = parse_stream_info(old).expect("parses");
        assert_eq!(len, 2);
        assert_eq!(m.last_id, StreamId { ms: 9, seq: 1 });
        assert_eq!((m.entries_added, m.max_deleted_id), (None, None));
        let new = arr(vec![
            b("length"),
            Reply::Int(2),
            b("last-generated-id"),
            b("9-1"),
            b("max-deleted-entry-id"),
            b("3-0"),
            b("entries-added"),
            Reply::Int(5),
        ]);
        let (m, _) = parse_stream_info(new).expect("parses");
        assert_eq!(m.entries_added, Some(5));
        assert_eq!(m.max_deleted_id, Some(StreamId { ms: 3, seq: 0 }));
        assert!(parse_stream_info(arr(vec![b("length")])).is_err());
    }

    #[test]
    fn groups_and_consumers() {
        let g = arr(vec![arr(vec![
            b("name"),
            b("g1"),
            b("consumers"),
            Reply::Int(1),
            b("pending"),
            Reply::Int(1),
            b("last-delivered-id"),
            b("4-0"),
            b("entries-read"),
            Reply::Bulk(None),
        ])]);
        let g = parse_groups(g).expect("parses");
        assert_eq!(g[0].name, Bytes::from("g1"));
        assert_eq!(g[0].last_delivered, StreamId { ms: 4, seq: 0 });
        assert_eq!(g[0].entries_read, None);
        let c = arr(vec![arr(vec![
            b("name"),
            b("alice"),
            b("pending"),
            Reply::Int(1),
        ])]);
        assert_eq!(
            parse_consumers(c).expect("parses"),
            (vec![Bytes::from("alice")], vec![])
        );
    }

    #[test]
    fn windows_grow_towards_the_budget() {
        let mut r = ChunkReader::new(Bytes::from("k"), Kind::List, 1000);
        assert_eq!(r.next_window(), FIRST_WINDOW);
        r.count(std::iter::repeat_n(10, 8));
        assert_eq!(r.next_window(), 32); // ×4 at most
        r.count(std::iter::repeat_n(10, 32));
        assert_eq!(r.next_window(), 100); // budget / 10 bytes
        r.count(std::iter::repeat_n(10_000, 100));
        assert_eq!(r.next_window(), 1); // huge elements: one at a time
    }
}
