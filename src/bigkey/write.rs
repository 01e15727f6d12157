//! Chunks → a temporary key in the key's own hash slot → `MULTI RENAME + expiry EXEC`.
//!
//! A big key is built element by element, so while it is being built it must not be visible
//! under its name (a reader would see half a hash) and a crash must not leave half of it
//! behind. It is therefore written into a temporary key and renamed in place with its expiry in
//! one transaction: the key appears whole or not at all.
//!
//! - The temporary key lives in the **same hash slot** as the key (a cluster refuses a RENAME
//!   across slots with CROSSSLOT): its name starts with a hash tag chosen so that its CRC16
//!   slot equals the key's, whatever the key's bytes (`{`/`}` included).
//! - Its name is deterministic per (job, key, writer), so a rerun after a crash deletes it before
//!   writing the key again; and every chunk's round trip also sets a safety `PEXPIRE` on it,
//!   so a temporary key of a job never rerun expires on its own instead of staying behind. The
//!   transaction sets the key's real expiry (`PEXPIREAT`) or removes the safety one (`PERSIST`).
//! - Element writes are not idempotent (`RPUSH` twice doubles a list), so any failure restarts
//!   the key from an empty temporary key, never from the middle.
//!
//! A stream is `XADD`ed entry by entry, then `XSETID` (the stream made first, so one with no
//! entries left keeps its last ID), `XGROUP CREATE` (+ `CREATECONSUMER` on 6.2+) and `XCLAIM …
//! FORCE` for each pending entry. Two states cannot be rebuilt that way, and are reported as the
//! key's own failure (`--on-key-error`) rather than copied different: a pending entry whose
//! message was deleted (`XCLAIM` ignores IDs not in the stream — rebuilding it would need a
//! placeholder entry `XADD`ed at that ID in order, i.e. the deleted IDs known before the
//! entries are written), and a consumer with no pending entries on a target before 6.2.

use std::sync::OnceLock;

use bytes::Bytes;

use super::{Chunk, PendingEntry, StreamEntry, StreamGroup, StreamId, StreamMeta};
use crate::display::escape_key;
use crate::endpoint::slot::key_slot;
use crate::endpoint::{Pipeline, Reply};

/// The safety expiry of a temporary key, refreshed by every chunk written into it: long enough
/// for any pause between two chunks, short enough that an abandoned one goes soon.
pub const TEMP_TTL_MS: u64 = 6 * 3600 * 1000;

/// A short hash tag (`{…}` contents) for every slot: `tags()[slot]` hashes to `slot`.
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let slots = usize::from(crate::endpoint::cluster::SLOTS);
        let mut tags = vec![String::new(); slots];
        let mut left = slots;
        let mut i: u64 = 0;
        // About 170k CRC16s of a few bytes until every slot has a tag: well under a millisecond.
        while left > 0 {
            let tag = format!("{i:x}");
            let slot = usize::from(key_slot(tag.as_bytes()));
            if tags[slot].is_empty() {
                tags[slot] = tag;
                left -= 1;
            }
            i += 1;
        }
        tags
    })
}

/// The temporary key for `key` in job `job` written by writer number `writer`: in the same slot
/// as `key`, and the same name on every run of the job (so a rerun finds and deletes a crashed
/// run's, see [`all_temp_keys`]). One per writer: SCAN may list a key twice (while the source
/// rehashes), and two writers building the same big key must not write into one temporary key.
pub fn temp_key(job: &str, key: &[u8], writer: usize) -> Bytes {
    let tag = &tags()[usize::from(key_slot(key))];
    let hash = crate::rdb::crc64::checksum(key);
    let job: String = job.chars().take(16).collect();
    Bytes::from(format!(
        "{{{tag}}}ferry:tmp:{job}:{hash:016x}:{}:{writer}",
        key.len()
    ))
}

/// Writer numbers whose temporary keys a writer deletes before building a key: a crashed run
/// with up to this many writers (or `writers`, if more) leaves nothing a rerun does not find.
pub const TEMP_WRITERS: usize = 16;

/// Every temporary key name `key` may have in job `job` (all in `key`'s slot, so one `DEL`).
pub fn all_temp_keys(job: &str, key: &[u8], writers: usize) -> Vec<Bytes> {
    (0..writers.max(TEMP_WRITERS))
        .map(|w| temp_key(job, key, w))
        .collect()
}

/// `ms-seq`, as stream commands take an ID.
fn id_text(id: &StreamId) -> String {
    format!("{}-{}", id.ms, id.seq)
}

/// A score as text that parses back to the same `f64` (Rust prints the shortest exact form;
/// infinities as Redis spells them).
pub fn score_text(score: f64) -> String {
    if score == f64::INFINITY {
        "+inf".to_string()
    } else if score == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{score:e}")
    }
}

/// What the target supports, for the stream metadata commands.
#[derive(Debug, Clone, Copy)]
pub struct TargetFeatures {
    /// Redis/Valkey 7.0+: `XSETID … ENTRIESADDED … MAXDELETEDID`, `XGROUP CREATE … ENTRIESREAD`.
    pub stream_v7: bool,
    /// Redis 6.2+: `XGROUP CREATECONSUMER` (before, a consumer is only created by claiming an
    /// entry for it).
    pub create_consumer: bool,
}

/// Why `chunk` cannot be written into this target the chunked way, if it cannot: a consumer
/// with no pending entries on a target without `XGROUP CREATECONSUMER` (one RESTORE would
/// carry it; leaving it out would be a silent difference).
pub fn unwritable(chunk: &Chunk, features: TargetFeatures) -> Option<String> {
    let Chunk::StreamGroup(g) = chunk else {
        return None;
    };
    let idle = g.without_pending.first()?;
    if features.create_consumer {
        return None;
    }
    Some(format!(
        "consumer {} of group {} has no pending entries, and the target (before Redis 6.2) has \
         no XGROUP CREATECONSUMER to create it ({} such consumer(s) in the group)",
        escape_key(idle),
        escape_key(&g.name),
        g.without_pending.len()
    ))
}

/// The reason given when `XCLAIM … FORCE` claimed nothing: the pending entry's message was
/// deleted from the stream (`XDEL`), and XCLAIM ignores IDs that are not in the stream.
pub const PENDING_WITHOUT_ENTRY: &str = "a pending entry refers to a message deleted from the \
     stream (XDEL): it cannot be recreated on the target by XCLAIM, which ignores IDs not in \
     the stream";

/// Appends the commands writing `chunk` into `tmp` to `p`; returns how many it added.
pub fn encode_chunk(
    p: &mut Pipeline,
    tmp: &[u8],
    chunk: &Chunk,
    features: TargetFeatures,
) -> usize {
    let before = p.len();
    match chunk {
        Chunk::String(b) => {
            p.cmd(&[b"APPEND", tmp, b]);
        }
        Chunk::List(v) => variadic(p, b"RPUSH", tmp, v.iter().map(|e| &e[..])),
        Chunk::Set(v) => variadic(p, b"SADD", tmp, v.iter().map(|e| &e[..])),
        Chunk::ZSet(v) => {
            let scores: Vec<String> = v.iter().map(|(_, s)| score_text(*s)).collect();
            let args = v
                .iter()
                .zip(&scores)
                .flat_map(|((m, _), s)| [s.as_bytes(), &m[..]]);
            variadic(p, b"ZADD", tmp, args);
        }
        Chunk::Hash(v) => {
            let args = v.iter().flat_map(|(f, val)| [&f[..], &val[..]]);
            variadic(p, b"HSET", tmp, args);
        }
        Chunk::StreamEntries(v) => v.iter().for_each(|e| xadd(p, tmp, e)),
        Chunk::StreamMeta(m) => xsetid(p, tmp, m, features),
        Chunk::StreamGroup(g) => group(p, tmp, g, features),
        Chunk::StreamPending { group, entries } => {
            entries.iter().for_each(|e| xclaim(p, tmp, group, e))
        }
    }
    p.len() - before
}

/// `CMD tmp args…`, or nothing when there are no args.
fn variadic<'a>(
    p: &mut Pipeline,
    cmd: &'a [u8],
    tmp: &'a [u8],
    args: impl Iterator<Item = &'a [u8]>,
) {
    let mut all: Vec<&[u8]> = vec![cmd, tmp];
    all.extend(args);
    if all.len() > 2 {
        p.cmd(&all);
    }
}

fn xadd(p: &mut Pipeline, tmp: &[u8], e: &StreamEntry) {
    let id = id_text(&e.id);
    let mut args: Vec<&[u8]> = vec![b"XADD", tmp, id.as_bytes()];
    for (f, v) in &e.fields {
        args.push(f);
        args.push(v);
    }
    p.cmd(&args);
}

/// A consumer group that exists only for an instant (below): no real group has this name when
/// it is created (the real ones come after the metadata).
const SCRATCH_GROUP: &[u8] = b"ferry:scratch";

/// `XSETID` (with the 7.0 counters where the target has them), after making sure the stream
/// exists: a stream whose entries were all deleted (`XDEL`, `XTRIM`) or never added has none to
/// create it, and `XSETID` refuses a missing key. `XGROUP CREATE … MKSTREAM` of a scratch group,
/// destroyed at once, creates it empty whatever its last ID (`XADD` cannot take `0-0`).
fn xsetid(p: &mut Pipeline, tmp: &[u8], m: &StreamMeta, features: TargetFeatures) {
    p.cmd(&[
        b"XGROUP".as_slice(),
        b"CREATE",
        tmp,
        SCRATCH_GROUP,
        b"$",
        b"MKSTREAM",
    ]);
    p.cmd(&[b"XGROUP".as_slice(), b"DESTROY", tmp, SCRATCH_GROUP]);
    let last = id_text(&m.last_id);
    let mut args: Vec<Vec<u8>> = vec![b"XSETID".to_vec(), tmp.to_vec(), last.into_bytes()];
    if features.stream_v7 {
        if let Some(n) = m.entries_added {
            args.push(b"ENTRIESADDED".to_vec());
            args.push(n.to_string().into_bytes());
            let max = m.max_deleted_id.unwrap_or_default();
            args.push(b"MAXDELETEDID".to_vec());
            args.push(id_text(&max).into_bytes());
        }
    }
    p.cmd(&args);
}

fn group(p: &mut Pipeline, tmp: &[u8], g: &StreamGroup, features: TargetFeatures) {
    let last = id_text(&g.last_delivered);
    let mut args: Vec<Vec<u8>> = vec![
        b"XGROUP".to_vec(),
        b"CREATE".to_vec(),
        tmp.to_vec(),
        g.name.to_vec(),
        last.into_bytes(),
        // A stream whose entries were all deleted has none to create it.
        b"MKSTREAM".to_vec(),
    ];
    if let (true, Some(n)) = (features.stream_v7, g.entries_read) {
        args.push(b"ENTRIESREAD".to_vec());
        args.push(n.to_string().into_bytes());
    }
    p.cmd(&args);
    // Before 6.2 the consumers with pending entries are created by their XCLAIMs, and a group
    // with others is refused first (`unwritable`).
    if features.create_consumer {
        for c in &g.consumers {
            p.cmd(&[b"XGROUP".as_slice(), b"CREATECONSUMER", tmp, &g.name, c]);
        }
    }
}

/// `XCLAIM … FORCE JUSTID`: puts the entry in the group's PEL under its consumer with its idle
/// time and delivery count (`JUSTID` leaves the count as `RETRYCOUNT` sets it).
fn xclaim(p: &mut Pipeline, tmp: &[u8], group: &[u8], e: &PendingEntry) {
    let id = id_text(&e.id);
    let idle = e.idle_ms.to_string();
    let count = e.delivery_count.to_string();
    p.cmd(&[
        b"XCLAIM".as_slice(),
        tmp,
        group,
        &e.consumer,
        b"0",
        id.as_bytes(),
        b"IDLE",
        idle.as_bytes(),
        b"RETRYCOUNT",
        count.as_bytes(),
        b"FORCE",
        b"JUSTID",
    ]);
}

/// Appends `PEXPIRE tmp <safety>` (see [`TEMP_TTL_MS`]): its reply is 0 when the temporary key
/// does not exist any more, which [`check_replies`] reports as lost.
pub fn push_keepalive(p: &mut Pipeline, tmp: &[u8]) {
    let ms = TEMP_TTL_MS.to_string();
    p.cmd(&[b"PEXPIRE".as_slice(), tmp, ms.as_bytes()]);
}

/// Why a chunk's round trip did not leave the temporary key as expected.
#[derive(Debug)]
pub enum ChunkError {
    /// The temporary key is gone (expired or deleted by someone): start the key over.
    TempLost,
    /// The target refused a command: the key cannot be written this way.
    Refused(String),
    /// The target took every command, but the key would not be the source's (see
    /// [`PENDING_WITHOUT_ENTRY`]).
    Unwritable(&'static str),
}

/// Checks the replies of a round trip built with [`encode_chunk`]s and a final
/// [`push_keepalive`] (whose reply is the last one).
pub fn check_replies(replies: &[Reply]) -> Result<(), ChunkError> {
    if let Some(err) = replies.iter().find_map(Reply::error) {
        return Err(ChunkError::Refused(err.to_string()));
    }
    // Only `XCLAIM … JUSTID` answers with an array: an empty one claimed nothing.
    if replies
        .iter()
        .any(|r| matches!(r, Reply::Array(Some(ids)) if ids.is_empty()))
    {
        return Err(ChunkError::Unwritable(PENDING_WITHOUT_ENTRY));
    }
    match replies.last().and_then(Reply::as_int) {
        Some(1) => Ok(()),
        _ => Err(ChunkError::TempLost),
    }
}

/// How the key is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// No expiry: the safety one is removed.
    Never,
    /// Absolute Unix ms on the target's clock.
    At(i64),
}

/// Appends `MULTI, RENAME tmp key, PEXPIREAT key at | PERSIST key, EXEC`; the EXEC reply is the
/// fourth. (For `--on-conflict skip` the caller WATCHes the key and checks it is absent first.)
pub fn push_rename(p: &mut Pipeline, tmp: &[u8], key: &[u8], expire: Expire) {
    p.cmd(&[b"MULTI".as_slice()]);
    p.cmd(&[b"RENAME".as_slice(), tmp, key]);
    match expire {
        Expire::Never => p.cmd(&[b"PERSIST".as_slice(), key]),
        Expire::At(at) => p.cmd(&[b"PEXPIREAT".as_slice(), key, at.to_string().as_bytes()]),
    };
    p.cmd(&[b"EXEC".as_slice()]);
}

/// Whether the EXEC of [`push_rename`] renamed the key: `Ok(true)` done, `Ok(false)` aborted by
/// a WATCHed change, `Err` a refusal (named for `key`).
pub fn renamed(replies: &[Reply], key: &[u8]) -> anyhow::Result<bool> {
    let refused = |e: &str| {
        anyhow::anyhow!(
            "the target refused to put big key {} in place (RENAME from its temporary key): {e}",
            escape_key(key)
        )
    };
    // MULTI +OK, RENAME +QUEUED, PEXPIREAT/PERSIST +QUEUED, EXEC [..].
    if let Some(e) = replies.iter().take(3).find_map(Reply::error) {
        return Err(refused(e));
    }
    match replies.get(3) {
        Some(Reply::Array(None)) => Ok(false),
        Some(Reply::Array(Some(inner))) => match inner.iter().find_map(Reply::error) {
            Some(e) => Err(refused(e)),
            None => Ok(true),
        },
        Some(Reply::Error(e)) => Err(refused(e)),
        other => Err(refused(&format!("unexpected EXEC reply {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_key_is_in_the_key_slot_and_deterministic() {
        for key in [
            b"plain".as_slice(),
            b"{user:1}:profile",
            b"a{}b",
            b"}{x",
            b"{",
            b"",
            &[0xff, 0x00, b'{', b'z', b'}'],
        ] {
            let t = temp_key("job123", key, 0);
            assert_eq!(key_slot(&t), key_slot(key), "{key:?} -> {t:?}");
            assert_eq!(t, temp_key("job123", key, 0));
            assert_ne!(t, temp_key("job124", key, 0));
            assert_ne!(t, temp_key("job123", key, 1));
            let all = all_temp_keys("job123", key, 4);
            assert_eq!(all.len(), TEMP_WRITERS);
            assert!(all.contains(&t));
            assert!(all.iter().all(|k| key_slot(k) == key_slot(key)));
        }
        assert_ne!(temp_key("j", b"a", 0), temp_key("j", b"b", 0));
    }

    #[test]
    fn idle_consumers_need_createconsumer_and_unclaimed_entries_are_reported() {
        let g = Chunk::StreamGroup(StreamGroup {
            name: Bytes::from("g"),
            consumers: vec![Bytes::from("busy"), Bytes::from("idle")],
            without_pending: vec![Bytes::from("idle")],
            ..StreamGroup::default()
        });
        let old = TargetFeatures {
            stream_v7: false,
            create_consumer: false,
        };
        let why = unwritable(&g, old).expect("refused before 6.2");
        assert!(
            why.contains("idle") && why.contains("CREATECONSUMER"),
            "{why}"
        );
        let new = TargetFeatures {
            create_consumer: true,
            ..old
        };
        assert_eq!(unwritable(&g, new), None);
        let claimed_nothing = [Reply::Array(Some(vec![])), Reply::Int(1)];
        assert!(matches!(
            check_replies(&claimed_nothing),
            Err(ChunkError::Unwritable(_))
        ));
    }

    #[test]
    fn every_slot_has_a_tag() {
        let t = tags();
        assert_eq!(t.len(), 16384);
        for (slot, tag) in t.iter().enumerate() {
            assert_eq!(usize::from(key_slot(tag.as_bytes())), slot);
        }
    }

    #[test]
    fn scores_round_trip_exactly() {
        for s in [
            0.1,
            1.0 / 3.0,
            -2.5e-300,
            1.7976931348623157e308,
            5e-324,
            123456789.12345679,
            0.0,
            -0.0,
        ] {
            let text = score_text(s);
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), s.to_bits(), "{s} -> {text}");
        }
        assert_eq!(score_text(f64::INFINITY), "+inf");
        assert_eq!(score_text(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn chunks_become_commands() {
        let f = TargetFeatures {
            stream_v7: true,
            create_consumer: true,
        };
        let mut p = Pipeline::new();
        let tmp = b"t".as_slice();
        let n = encode_chunk(&mut p, tmp, &Chunk::List(vec![]), f);
        assert_eq!(n, 0);
        let n = encode_chunk(
            &mut p,
            tmp,
            &Chunk::Hash(vec![(Bytes::from("f"), Bytes::from("v"))]),
            f,
        );
        assert_eq!(n, 1);
        let g = StreamGroup {
            name: Bytes::from("g"),
            last_delivered: StreamId { ms: 5, seq: 1 },
            entries_read: Some(3),
            consumers: vec![Bytes::from("c1"), Bytes::from("c2")],
            without_pending: vec![Bytes::from("c2")],
        };
        assert_eq!(encode_chunk(&mut p, tmp, &Chunk::StreamGroup(g), f), 3);
        let pending = Chunk::StreamPending {
            group: Bytes::from("g"),
            entries: vec![PendingEntry {
                id: StreamId { ms: 1, seq: 0 },
                consumer: Bytes::from("c1"),
                idle_ms: 10,
                delivery_count: 4,
            }],
        };
        assert_eq!(encode_chunk(&mut p, tmp, &pending, f), 1);
    }

    #[test]
    fn replies_are_checked() {
        let ok = [Reply::Int(3), Reply::Int(1)];
        assert!(check_replies(&ok).is_ok());
        let lost = [Reply::Int(3), Reply::Int(0)];
        assert!(matches!(check_replies(&lost), Err(ChunkError::TempLost)));
        let refused = [Reply::Error("NOPERM x".into()), Reply::Int(1)];
        assert!(matches!(
            check_replies(&refused),
            Err(ChunkError::Refused(_))
        ));
        let exec_ok = [
            Reply::Status("OK".into()),
            Reply::Status("QUEUED".into()),
            Reply::Status("QUEUED".into()),
            Reply::Array(Some(vec![Reply::Status("OK".into()), Reply::Int(1)])),
        ];
        assert!(renamed(&exec_ok, b"k").unwrap());
        let aborted = [
            Reply::Status("OK".into()),
            Reply::Status("QUEUED".into()),
            Reply::Status("QUEUED".into()),
            Reply::Array(None),
        ];
        assert!(!renamed(&aborted, b"k").unwrap());
    }
}
