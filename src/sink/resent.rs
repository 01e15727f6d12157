//! Keys the target already holds under `--on-conflict skip`: ferry's own copy, or a conflict.
//!
//! With `skip`, RESTOREs go without `REPLACE` and a `BUSYKEY` keeps the target's key. But ferry
//! re-sends keys it wrote itself: the whole batch after a lost connection, and the keys written
//! after the last checkpoint on a resume. Their `BUSYKEY` is no conflict — the target holds what
//! ferry would write — and counting them as conflicts would tell the user that keys of the
//! target were kept when they were ferry's. So each key refused as busy is read back: `PTTL` and
//! `MEMORY USAGE` first, then `DUMP` when the value is not far bigger than the one ferry holds
//! (a big value of the target's own is not serialized for nothing), and it counts as written
//! when its value (decoded, any encoding or order) and expiry match.
//! Only `BUSYKEY` replies pay this: a run without conflicts sends nothing more.
//!
//! A key ferry copied in an earlier run and the source changed since still counts as a
//! conflict: nothing on the target tells that copy from a key of its own.

use crate::counts::Counts;
use crate::endpoint::{ConnError, Connection, Pipeline, Reply};
use crate::rdb::decode_payload;
use crate::rdb::value::Value;
use crate::record::Record;

use super::options::Clocks;
use crate::endpoint::route::{KeyedCommands, Router};

/// How far the target's remaining TTL may be from the one ferry would write, in ms: clock skews
/// measured by two runs differ by a few ms, and the read-back takes a round trip.
const TTL_SLACK_MS: i64 = 1_000;

/// The target's value may use this many times the payload's bytes (plus [`USAGE_ALLOWANCE`])
/// and still be read back, since the same value can take that much more memory than its
/// payload: LZF packs a repetitive string up to ~88:1 (the test data's 100 KiB repetitive string
/// takes 115 kB of memory for a payload of 1–2 kB), and a 1-byte element costs tens of bytes.
const USAGE_FACTOR: i64 = 100;
/// See [`USAGE_FACTOR`].
const USAGE_ALLOWANCE: i64 = 64 << 10;

/// Something that runs one command per key on the target and returns one reply per key.
pub(crate) trait KeyReads {
    /// The error of a failed round trip.
    type Error;
    /// Runs `head… key` for each of `keys`, in order.
    async fn each(&mut self, head: &[&[u8]], keys: &[&[u8]]) -> Result<Vec<Reply>, Self::Error>;
}

impl KeyReads for Connection {
    type Error = ConnError;

    async fn each(&mut self, head: &[&[u8]], keys: &[&[u8]]) -> Result<Vec<Reply>, ConnError> {
        let mut p = Pipeline::new();
        for key in keys {
            let mut args: Vec<&[u8]> = head.to_vec();
            args.push(key);
            p.cmd(&args);
        }
        self.run(&p).await
    }
}

/// The same command for each key, routed by slot.
struct Each<'a> {
    head: &'a [&'a [u8]],
    keys: &'a [&'a [u8]],
}

impl KeyedCommands for Each<'_> {
    fn count(&self) -> usize {
        self.keys.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        self.keys[i]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        let mut args: Vec<&[u8]> = self.head.to_vec();
        args.push(self.keys[i]);
        p.cmd(&args);
    }
}

impl KeyReads for Router {
    type Error = anyhow::Error;

    async fn each(&mut self, head: &[&[u8]], keys: &[&[u8]]) -> anyhow::Result<Vec<Reply>> {
        self.run(&Each { head, keys }).await
    }
}

/// For each of `busy` (records the target refused with `BUSYKEY`), whether the target's key is
/// exactly what ferry would write: same kind, value and expiry.
pub(crate) async fn own_copies<R: KeyReads>(
    target: &mut R,
    busy: &[&Record],
    clocks: &Clocks,
) -> Result<Vec<bool>, R::Error> {
    let keys: Vec<&[u8]> = busy.iter().map(|r| r.key.as_ref()).collect();
    let pttls = target.each(&[b"PTTL"], &keys).await?;
    let usages = target.each(&[b"MEMORY", b"USAGE"], &keys).await?;
    let now = crate::read::clock::now_ms();
    let worth_reading: Vec<usize> = (0..busy.len())
        .filter(|&i| {
            let rec = busy[i];
            same_expiry(rec, pttls.get(i), clocks, now) && small_enough(rec, usages.get(i))
        })
        .collect();
    let mut own = vec![false; busy.len()];
    if worth_reading.is_empty() {
        return Ok(own);
    }
    let dump_keys: Vec<&[u8]> = worth_reading.iter().map(|&i| keys[i]).collect();
    let dumps = target.each(&[b"DUMP"], &dump_keys).await?;
    for (&i, dump) in worth_reading.iter().zip(dumps) {
        if let Reply::Bulk(Some(payload)) = dump {
            own[i] = same_value(busy[i], &payload);
        }
    }
    for (i, rec) in busy.iter().enumerate().filter(|(i, _)| !own[*i]) {
        tracing::debug!(
            key = %crate::display::escape_key(&rec.key),
            pttl = ?pttls.get(i),
            usage = ?usages.get(i),
            "the target's key differs from the source's: a conflict, kept"
        );
    }
    Ok(own)
}

/// Counts the keys refused with `BUSYKEY`: written when the target's key is ferry's own copy
/// (`own`, from [`own_copies`]), a conflict kept otherwise.
pub(crate) fn count(busy: &[&Record], own: &[bool], counts: &mut Counts) {
    for (rec, &own) in busy.iter().zip(own) {
        if own {
            counts.written += 1;
            counts.bytes += rec.size() as u64;
        } else {
            counts.conflicts += 1;
        }
    }
}

/// The target's `PTTL` reply agrees with the record's expiry: both permanent, or both expiring
/// within [`TTL_SLACK_MS`] of each other (local time `now`).
fn same_expiry(rec: &Record, pttl: Option<&Reply>, clocks: &Clocks, now: i64) -> bool {
    let Some(pttl) = pttl.and_then(Reply::as_int) else {
        return false;
    };
    match rec.expire_at_ms {
        None => pttl == -1,
        Some(at) => {
            let left = at - clocks.source_skew_ms - now;
            pttl >= 0 && (left - pttl).abs() <= TTL_SLACK_MS
        }
    }
}

/// The target's value is small enough to be read back for comparison; an error reply (no
/// `MEMORY` command before 4.0, or an ACL without it) leaves the size unknown, and it is read.
fn small_enough(rec: &Record, usage: Option<&Reply>) -> bool {
    match usage {
        Some(Reply::Int(n)) => {
            let payload = i64::try_from(rec.payload.len()).unwrap_or(i64::MAX);
            *n <= payload
                .saturating_mul(USAGE_FACTOR)
                .saturating_add(USAGE_ALLOWANCE)
        }
        Some(Reply::Error(_)) => true,
        _ => false,
    }
}

/// The target's DUMP `payload` holds the record's value (compared decoded: the target may
/// encode it differently, in another RDB version, with its elements in another order).
fn same_value(rec: &Record, payload: &[u8]) -> bool {
    match (decode_payload(&rec.payload), decode_payload(payload)) {
        (Ok(ours), Ok(theirs)) => canonical(ours) == canonical(theirs),
        _ => false,
    }
}

/// `v` with the elements of its unordered collections sorted: two encodings of one set, hash
/// or sorted set list them in different orders (an intset and a hashtable, a listpack and a
/// dict). Lists and streams keep their order, which is part of their value.
fn canonical(v: Value) -> Value {
    match v {
        Value::Set(mut members) => {
            members.sort_unstable();
            Value::Set(members)
        }
        Value::Hash(mut fields) => {
            fields.sort_unstable_by(|a, b| a.field.cmp(&b.field));
            Value::Hash(fields)
        }
        Value::ZSet(mut members) => {
            members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Value::ZSet(members)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::encode::encode_value;
    use crate::rdb::value::Value;

    fn record(value: &Value, rdb: u16, expire_at_ms: Option<i64>) -> Record {
        Record {
            db: 0,
            key: bytes::Bytes::from_static(b"k"),
            payload: encode_value(value, rdb).expect("encode"),
            expire_at_ms,
        }
    }

    #[test]
    fn same_value_in_another_rdb_version_is_ferrys_copy() {
        let v = Value::Set(vec![b"a".to_vec(), b"b".to_vec()]);
        let rec = record(&v, 7, None);
        let target = encode_value(&v, 11).expect("encode");
        assert!(same_value(&rec, &target));
        let other = encode_value(&Value::Set(vec![b"a".to_vec()]), 11).expect("encode");
        assert!(!same_value(&rec, &other));
        // Another encoding lists the members in another order: still the same set.
        let reordered = Value::Set(vec![b"b".to_vec(), b"a".to_vec()]);
        assert!(same_value(
            &rec,
            &encode_value(&reordered, 11).expect("encode")
        ));
        // A list's order is its value.
        let list = record(&Value::List(vec![b"a".to_vec(), b"b".to_vec()]), 9, None);
        let swapped = Value::List(vec![b"b".to_vec(), b"a".to_vec()]);
        assert!(!same_value(
            &list,
            &encode_value(&swapped, 9).expect("encode")
        ));
    }

    #[test]
    fn expiry_must_agree_within_the_slack() {
        let v = Value::String(b"v".to_vec());
        let clocks = Clocks::default();
        let now = 1_000_000;
        let permanent = record(&v, 9, None);
        assert!(same_expiry(&permanent, Some(&Reply::Int(-1)), &clocks, now));
        assert!(!same_expiry(
            &permanent,
            Some(&Reply::Int(5_000)),
            &clocks,
            now
        ));
        let expiring = record(&v, 9, Some(now + 60_000));
        assert!(same_expiry(
            &expiring,
            Some(&Reply::Int(59_500)),
            &clocks,
            now
        ));
        assert!(!same_expiry(&expiring, Some(&Reply::Int(-1)), &clocks, now));
        assert!(!same_expiry(
            &expiring,
            Some(&Reply::Int(30_000)),
            &clocks,
            now
        ));
        assert!(!same_expiry(&expiring, None, &clocks, now));
    }

    #[test]
    fn a_far_bigger_target_value_is_not_read_back() {
        let rec = record(&Value::String(b"v".to_vec()), 9, None);
        assert!(small_enough(&rec, Some(&Reply::Int(100))));
        assert!(!small_enough(&rec, Some(&Reply::Int(10 << 20))));
        assert!(small_enough(
            &rec,
            Some(&Reply::Error("ERR unknown command".into()))
        ));
        assert!(!small_enough(&rec, Some(&Reply::Bulk(None))));
    }
}
