//! Exact expiries from a live server: every `PTTL` read between two readings of its clock.
//!
//! `PTTL` answers relative to the moment the server runs it, and ferry writes absolute expiries
//! (`RESTORE … ABSTTL`), so it needs the server's clock *at that moment*. One `TIME` before a
//! pipeline is not enough: any stall part-way through it (a big `DUMP`, another client's slow
//! command, a paused server) moved every later key's expiry earlier by the stall — 376 keys
//! 2.0 s early under another client's `DEBUG SLEEP 2`, 182 keys up to 3.25 s early behind a
//! 200 MB value with no induced stall at all.
//!
//! So a round trip asks `TIME, PTTL k1, DUMP k1, …, PTTL kn, DUMP kn, TIME`. The server runs a
//! connection's commands in order, so each PTTL was computed between the two readings, and a
//! key's absolute expiry lies in `[first + pttl, second + pttl]`; ferry takes the middle, off by
//! at most half the bracket. A bracket wider than [`NARROW_MS`] means the server stalled in
//! between (or DUMPed a big value): the PTTLs of the keys that have a TTL are read again, alone
//! (`TIME, PTTL k…, TIME` in round trips of at most [`REREAD_BYTES`], which the server runs
//! without serving another client in between), until one is narrow (at most [`REREADS`] times,
//! keeping the narrowest). The worst uncertainty left is reported.
//!
//! Why each PTTL stays next to its DUMP: a first version put every PTTL before every DUMP, which
//! kept big DUMPs out of the bracket but cost 6–9 % of a live copy's throughput on 1M small keys
//! (the source looks each key up twice, and the second lookup is cheap only right after the
//! first). Byte-bounded round trips keep ordinary brackets narrow; a huge value costs one small
//! TTL re-read.
//!
//! Used by the copy's reader (`source/scan.rs`), by verification (`verify/live_node.rs`), the
//! follower and the big-key copy, so every key is read the same way.

use bytes::Bytes;

use super::clock::parse_time_ms;
use crate::endpoint::resp::KeyCommand;
use crate::endpoint::{Connection, Pipeline, Reply};

pub use super::clock::{NARROW_MS, REREADS};

/// Commands [`ask_with_values`] adds for `keys` keys.
pub fn commands_with_values(keys: usize) -> usize {
    2 * keys + 2
}

/// What a `PTTL` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (`-2`).
    Gone,
    /// The key has no expiry (`-1`).
    Persistent,
    /// Milliseconds left.
    Left(i64),
}

impl Ttl {
    /// Reads a `PTTL` reply (any other negative number, which no server sends, as no expiry).
    pub fn from_reply(reply: &Reply) -> Ttl {
        match reply.as_int() {
            None | Some(-2) => Ttl::Gone,
            Some(n) if n < 0 => Ttl::Persistent,
            Some(n) => Ttl::Left(n),
        }
    }
}

/// Two readings of a server's clock (Unix ms) around a run of PTTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bracket {
    /// `TIME` before the PTTLs.
    pub first_ms: i64,
    /// `TIME` after them.
    pub last_ms: i64,
}

impl Bracket {
    /// How far apart the readings are.
    pub fn width_ms(&self) -> i64 {
        (self.last_ms - self.first_ms).max(0)
    }

    /// The most an expiry from [`Bracket::expire_at`] can be off (`TIME` is read to the ms).
    pub fn uncertainty_ms(&self) -> u64 {
        (self.width_ms() as u64).div_ceil(2) + 1
    }

    /// The absolute expiry (server clock) of a key with `left` ms to live when read inside.
    pub fn expire_at(&self, left: i64) -> i64 {
        self.first_ms + self.width_ms() / 2 + left
    }
}

/// A key's expiry as read, on the server's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Gone when its PTTL was read.
    Gone,
    /// No TTL.
    Never,
    /// Expires at this Unix ms.
    At(i64),
}

/// The expiries of a run of keys, and how exact they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiries {
    /// One per key, in order.
    pub each: Vec<Expiry>,
    /// The most any `At` may be off, in ms (0 when no key has a TTL).
    pub uncertainty_ms: u64,
}

/// Why a reply of [`ask`]'s commands could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The server answered with fewer replies than commands, or not with a time to `TIME`.
    Malformed(&'static str),
    /// The server refused the PTTL of the key at this index (an ACL, a cluster redirection).
    Refused { index: usize, error: String },
}

/// Appends `TIME, PTTL k…, TIME` to `p`.
pub fn ask<'a>(p: &mut Pipeline, keys: impl ExactSizeIterator<Item = &'a [u8]>) {
    p.cmd(&[b"TIME"]);
    p.per_key(KeyCommand::Pttl, keys);
    p.cmd(&[b"TIME"]);
}

/// Appends `TIME, PTTL k1, DUMP k1, …, TIME` to `p`: the keys' values with their expiries.
pub fn ask_with_values(p: &mut Pipeline, keys: &[Bytes]) {
    p.cmd(&[b"TIME"]);
    p.pttl_dump_pairs(keys.iter().map(|k| &k[..]));
    p.cmd(&[b"TIME"]);
}

/// Reads the replies to [`ask_with_values`] for `n` keys from `it`: the bracket, the TTLs and
/// the DUMP replies (an error reply to either command is a [`ReadError::Refused`]).
pub fn read_with_values(
    it: &mut impl Iterator<Item = Reply>,
    n: usize,
) -> Result<(Bracket, Vec<Ttl>, Vec<Reply>), ReadError> {
    let first_ms = read_time(it.next())?;
    let mut ttls = Vec::with_capacity(n);
    let mut dumps = Vec::with_capacity(n);
    for index in 0..n {
        let (Some(pttl), Some(dump)) = (it.next(), it.next()) else {
            return Err(ReadError::Malformed("fewer replies than commands"));
        };
        for r in [&pttl, &dump] {
            if let Some(error) = r.error() {
                return Err(ReadError::Refused {
                    index,
                    error: error.to_string(),
                });
            }
        }
        ttls.push(Ttl::from_reply(&pttl));
        dumps.push(dump);
    }
    let last_ms = read_time(it.next())?;
    Ok((Bracket { first_ms, last_ms }, ttls, dumps))
}

fn read_time(reply: Option<Reply>) -> Result<i64, ReadError> {
    reply
        .as_ref()
        .and_then(parse_time_ms)
        .ok_or(ReadError::Malformed("no time in the reply to TIME"))
}

/// Reads the replies to [`ask`] for `n` keys from `it`.
pub fn read(
    it: &mut impl Iterator<Item = Reply>,
    n: usize,
) -> Result<(Bracket, Vec<Ttl>), ReadError> {
    let first_ms = read_time(it.next())?;
    let mut ttls = Vec::with_capacity(n);
    for index in 0..n {
        let reply = it
            .next()
            .ok_or(ReadError::Malformed("fewer replies than commands"))?;
        if let Some(error) = reply.error() {
            return Err(ReadError::Refused {
                index,
                error: error.to_string(),
            });
        }
        ttls.push(Ttl::from_reply(&reply));
    }
    let last_ms = read_time(it.next())?;
    Ok((Bracket { first_ms, last_ms }, ttls))
}

impl Expiries {
    /// The expiries as read inside `bracket`, however wide.
    pub fn new(bracket: &Bracket, ttls: &[Ttl]) -> Expiries {
        let timed = ttls.iter().any(|t| matches!(t, Ttl::Left(_)));
        Expiries {
            each: ttls.iter().map(|t| expiry(bracket, *t)).collect(),
            uncertainty_ms: if timed { bracket.uncertainty_ms() } else { 0 },
        }
    }
}

impl Expiry {
    /// `None` when the key is gone, else its expiry (`None`: no TTL), as a [`Record`] holds it.
    ///
    /// [`Record`]: crate::record::Record
    pub fn at(self) -> Option<Option<i64>> {
        match self {
            Expiry::Gone => None,
            Expiry::Never => Some(None),
            Expiry::At(ms) => Some(Some(ms)),
        }
    }
}

/// True when `bracket` is too wide for the TTLs read inside it: call [`settle`].
pub fn needs_reread(bracket: &Bracket, ttls: &[Ttl]) -> bool {
    bracket.width_ms() > NARROW_MS && ttls.iter().any(|t| matches!(t, Ttl::Left(_)))
}

/// Turns a wide bracket and its TTLs into expiries, reading again on `conn` (the same DB
/// selected, nothing in flight) the TTLs of the keys that have one until a bracket is narrow.
/// A key found gone or without a TTL by a re-read is taken as such: that is its newer state.
pub async fn settle(
    conn: &mut Connection,
    keys: &[Bytes],
    bracket: Bracket,
    ttls: &[Ttl],
) -> anyhow::Result<Expiries> {
    let mut out = Expiries::new(&bracket, ttls);
    let timed: Vec<usize> = (0..ttls.len())
        .filter(|&i| matches!(ttls[i], Ttl::Left(_)))
        .collect();
    if timed.is_empty() {
        return Ok(out);
    }
    out.uncertainty_ms = 0;
    for group in groups(keys, &timed) {
        let best = reread_group(conn, keys, group, bracket, &mut out.each).await?;
        out.uncertainty_ms = out.uncertainty_ms.max(best.uncertainty_ms());
    }
    Ok(out)
}

/// Bytes of one re-read round trip at most. Redis reads a client's input 16 KiB at a time
/// and runs every complete command in it before serving another client, so a round trip this
/// small cannot have another client's slow command in the middle of it: only a paused process
/// can widen its bracket.
const REREAD_BYTES: usize = 8 * 1024;

/// `timed` (indexes into `keys`) cut into runs whose re-read fits in [`REREAD_BYTES`].
fn groups<'a>(keys: &[Bytes], timed: &'a [usize]) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (n, &i) in timed.iter().enumerate() {
        // `*2\r\n$4\r\nPTTL\r\n$<len>\r\n<key>\r\n`: the key and ~25 bytes around it.
        let size = keys[i].len() + 25;
        if n > start && bytes + size > REREAD_BYTES {
            out.push(&timed[start..n]);
            (start, bytes) = (n, 0);
        }
        bytes += size;
    }
    out.push(&timed[start..]);
    out
}

/// Reads the TTLs of `group` again until a bracket is narrow (at most [`REREADS`] times),
/// keeping the narrowest in `each`; returns that bracket.
async fn reread_group(
    conn: &mut Connection,
    keys: &[Bytes],
    group: &[usize],
    first: Bracket,
    each: &mut [Expiry],
) -> anyhow::Result<Bracket> {
    let mut best = first;
    for _ in 0..REREADS {
        if best.width_ms() <= NARROW_MS {
            break;
        }
        let mut p = Pipeline::new();
        ask(&mut p, group.iter().map(|&i| &keys[i][..]));
        let replies = conn.run(&p).await?;
        let (again, ttls) = read(&mut replies.into_iter(), group.len()).map_err(|e| {
            anyhow::anyhow!(
                "the {} {} answered a PTTL re-read with something ferry cannot read: {e:?}",
                conn.side(),
                conn.endpoint()
            )
        })?;
        if again.width_ms() < best.width_ms() {
            best = again;
            for (&i, t) in group.iter().zip(ttls) {
                each[i] = expiry(&again, t);
            }
        }
    }
    if best.width_ms() > NARROW_MS {
        tracing::warn!(
            "the {} {} kept stalling while its TTLs were read ({} ms between two TIME readings \
             after {} tries): {} expiries are exact to ±{} ms",
            conn.side(),
            conn.endpoint(),
            best.width_ms(),
            REREADS + 1,
            group.len(),
            best.uncertainty_ms()
        );
    }
    Ok(best)
}

/// A key as read on one connection: its DUMP payload and expiry (server clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRead {
    /// The DUMP payload.
    pub payload: Bytes,
    /// Absolute expiry, Unix ms on the server's clock; `None`: no TTL.
    pub expire_at_ms: Option<i64>,
}

/// The keys of one [`read_keys`] round trip: `None` for a key that is gone.
#[derive(Debug, Clone, Default)]
pub struct KeysRead {
    /// One per key asked, in order.
    pub each: Vec<Option<KeyRead>>,
    /// See [`Expiries::uncertainty_ms`].
    pub uncertainty_ms: u64,
}

/// Why [`read_keys`] failed.
#[derive(Debug)]
pub enum ReadKeysError {
    /// The replies could not be read (see [`ReadError`]); `Refused` carries the key's index.
    Reply(ReadError),
    /// The connection failed (a [`ConnError`](crate::endpoint::ConnError) inside).
    Conn(anyhow::Error),
}

impl From<anyhow::Error> for ReadKeysError {
    fn from(e: anyhow::Error) -> Self {
        ReadKeysError::Conn(e)
    }
}

/// Reads `keys` (the DB selected on `conn`, nothing in flight) in one round trip
/// `TIME, PTTL k1, DUMP k1, …, TIME`, with their expiries made exact ([`settle`] after a stall).
/// For a caller that reads on one connection at a time: verification, the follower.
pub async fn read_keys(conn: &mut Connection, keys: &[Bytes]) -> Result<KeysRead, ReadKeysError> {
    let mut p = Pipeline::new();
    ask_with_values(&mut p, keys);
    let replies = conn.run(&p).await.map_err(anyhow::Error::from)?;
    let (bracket, ttls, dumps) =
        read_with_values(&mut replies.into_iter(), keys.len()).map_err(ReadKeysError::Reply)?;
    let expiries = if needs_reread(&bracket, &ttls) {
        settle(conn, keys, bracket, &ttls).await?
    } else {
        Expiries::new(&bracket, &ttls)
    };
    Ok(KeysRead {
        uncertainty_ms: expiries.uncertainty_ms,
        each: pair(dumps, expiries.each),
    })
}

/// The expiries of `keys` alone (the DB selected on `conn`, nothing in flight): one round trip
/// `TIME, PTTL k…, TIME`, made exact with [`settle`] after a stall. For a big key, whose value is
/// read in chunks afterwards (`sink/chunked.rs`).
pub async fn read_expiries(
    conn: &mut Connection,
    keys: &[Bytes],
) -> Result<Expiries, ReadKeysError> {
    let mut p = Pipeline::new();
    ask(&mut p, keys.iter().map(|k| &k[..]));
    let replies = conn.run(&p).await.map_err(anyhow::Error::from)?;
    let (bracket, ttls) =
        read(&mut replies.into_iter(), keys.len()).map_err(ReadKeysError::Reply)?;
    if needs_reread(&bracket, &ttls) {
        Ok(settle(conn, keys, bracket, &ttls).await?)
    } else {
        Ok(Expiries::new(&bracket, &ttls))
    }
}

/// Each key's DUMP reply with its expiry: `None` for a key gone by either command.
pub fn pair(dumps: Vec<Reply>, expiries: Vec<Expiry>) -> Vec<Option<KeyRead>> {
    pairs(dumps, expiries).collect()
}

/// [`pair`] as an iterator, for a caller that turns each into a record at once.
pub fn pairs(dumps: Vec<Reply>, expiries: Vec<Expiry>) -> impl Iterator<Item = Option<KeyRead>> {
    dumps
        .into_iter()
        .zip(expiries)
        .map(|(dump, exp)| match (dump, exp.at()) {
            (Reply::Bulk(Some(payload)), Some(expire_at_ms)) => Some(KeyRead {
                payload,
                expire_at_ms,
            }),
            _ => None,
        })
}

fn expiry(bracket: &Bracket, ttl: Ttl) -> Expiry {
    match ttl {
        Ttl::Gone => Expiry::Gone,
        Ttl::Persistent => Expiry::Never,
        Ttl::Left(ms) => Expiry::At(bracket.expire_at(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(ms: i64) -> Reply {
        Reply::Array(Some(vec![
            Reply::Bulk(Some(Bytes::from((ms / 1000).to_string()))),
            Reply::Bulk(Some(Bytes::from((ms % 1000 * 1000 + 999).to_string()))),
        ]))
    }

    #[test]
    fn expiry_is_the_middle_of_the_bracket() {
        let b = Bracket {
            first_ms: 1_000,
            last_ms: 1_010,
        };
        assert_eq!(b.expire_at(500), 1_505);
        assert_eq!(b.uncertainty_ms(), 6);
        let reversed = Bracket {
            first_ms: 1_010,
            last_ms: 1_000,
        };
        assert_eq!(reversed.width_ms(), 0);
    }

    #[test]
    fn reads_time_ttls_time() {
        let replies = vec![
            time(5_000),
            Reply::Int(-2),
            Reply::Int(-1),
            Reply::Int(700),
            time(5_004),
            Reply::Int(99),
        ];
        let mut it = replies.into_iter();
        let (b, ttls) = read(&mut it, 3).unwrap();
        assert_eq!(
            b,
            Bracket {
                first_ms: 5_000,
                last_ms: 5_004
            }
        );
        assert_eq!(ttls, vec![Ttl::Gone, Ttl::Persistent, Ttl::Left(700)]);
        assert_eq!(expiry(&b, ttls[2]), Expiry::At(5_702));
        // What follows the second TIME is left for the caller.
        assert_eq!(it.next(), Some(Reply::Int(99)));
    }

    #[test]
    fn reads_values_between_two_times() {
        let dump = |b: &'static [u8]| Reply::Bulk(Some(Bytes::from_static(b)));
        let replies = vec![
            time(9_000),
            Reply::Int(1_000),
            dump(b"v1"),
            Reply::Int(-2),
            Reply::Bulk(None),
            time(9_002),
        ];
        let (b, ttls, dumps) = read_with_values(&mut replies.into_iter(), 2).unwrap();
        assert_eq!(b.expire_at(1_000), 10_001);
        assert_eq!(ttls, vec![Ttl::Left(1_000), Ttl::Gone]);
        assert_eq!(dumps, vec![dump(b"v1"), Reply::Bulk(None)]);
        let mut p = Pipeline::new();
        ask_with_values(
            &mut p,
            &[Bytes::from_static(b"k1"), Bytes::from_static(b"k2")],
        );
        assert_eq!(p.len(), commands_with_values(2));
    }

    #[test]
    fn rereads_are_cut_by_bytes_and_keep_every_key_once() {
        let keys: Vec<Bytes> = (0..1_000)
            .map(|i| Bytes::from(format!("key:{i:05}")))
            .collect();
        let timed: Vec<usize> = (0..1_000).step_by(2).collect();
        let gs = groups(&keys, &timed);
        assert!(gs.len() > 1);
        assert!(gs.iter().all(|g| g.len() * (9 + 25) <= REREAD_BYTES));
        assert_eq!(gs.concat(), timed);
    }

    #[test]
    fn refusals_and_short_replies_are_errors() {
        let refused = vec![time(1), Reply::Error("NOPERM no".into()), time(2)];
        assert_eq!(
            read(&mut refused.into_iter(), 1),
            Err(ReadError::Refused {
                index: 0,
                error: "NOPERM no".into()
            })
        );
        let short = vec![time(1), Reply::Int(5)];
        assert!(matches!(
            read(&mut short.into_iter(), 1),
            Err(ReadError::Malformed(_))
        ));
    }
}
