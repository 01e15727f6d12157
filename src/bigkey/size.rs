//! Which keys are big, known before any of them is DUMPed, for a few bytes per key.
//!
//! The reader asks in the round trip that already carries the next page's `SCAN` (see
//! `source/scan.rs`), so a page's keys are classified before their first DUMP is sent and no
//! round trip is added on the hot path:
//!
//! - Redis 4.0+ ([`Probe::Memory`]): `MEMORY USAGE key` with the server's default sampling
//!   (5 elements of a collection: O(1) per key; `SAMPLES 0` would walk every element, as slow
//!   as the DUMP it is meant to avoid). A key over the threshold is then asked its `TYPE`.
//! - Redis 3.2 ([`Probe::Encoding`], no MEMORY command): `OBJECT ENCODING key` and `STRLEN key`
//!   (a `WRONGTYPE` error for other types). Compact encodings (int, embstr, ziplist, intset,
//!   listpack) are small by construction; a raw string's length is exact. For the others
//!   (lists are always quicklist, big hashes and sets hashtable, big zsets skiplist) a second
//!   round trip for just those keys ([`ask_details`]) reads the type, the length and a sample
//!   of up to 16 elements: size ≈ length × the sample's average element.
//!
//! An estimate errs (a sample is not the whole); a key a little over or under the threshold is
//! copied correctly either way, only by the other path.

use bytes::Bytes;

use super::Kind;
use crate::endpoint::resp::KeyCommand;
use crate::endpoint::{Pipeline, Reply};

/// Elements sampled for a collection's average element size.
const SAMPLE: usize = 16;

/// The key [`Probe::choose`] asks about (it need not exist; on a cluster, ask its slot's master).
pub const PROBE_KEY: &[u8] = b"ferry:no-such-key";

/// How a source is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `MEMORY USAGE key` (Redis 4.0+).
    Memory,
    /// `OBJECT ENCODING key` + `STRLEN key` (Redis 3.2).
    Encoding,
}

impl Probe {
    /// The probe for a source of this (major, minor) version.
    pub fn for_version(version: (u32, u32)) -> Probe {
        if version >= (4, 0) {
            Probe::Memory
        } else {
            Probe::Encoding
        }
    }

    /// The probe for the source behind `conn`: [`Probe::Memory`] on 4.0+ unless its ACL denies
    /// `MEMORY` (asked once, of a key that does not exist), [`Probe::Encoding`] otherwise.
    pub async fn choose(
        conn: &mut crate::endpoint::Connection,
        version: (u32, u32),
    ) -> Result<Probe, crate::endpoint::ConnError> {
        if Probe::for_version(version) == Probe::Encoding {
            return Ok(Probe::Encoding);
        }
        let reply = conn
            .cmd(&[b"MEMORY".as_slice(), b"USAGE", PROBE_KEY])
            .await?;
        Ok(match reply.error() {
            None => Probe::Memory,
            // A cluster node that does not serve the key's slot: the command passed its ACL
            // check (made before the redirection) and exists.
            Some(e) if crate::endpoint::ErrorKind::of(e).is_redirect() => Probe::Memory,
            Some(e) => {
                tracing::info!(
                    "the source refused MEMORY USAGE ({e}); big keys are found by OBJECT ENCODING and type lengths instead"
                );
                Probe::Encoding
            }
        })
    }

    /// Commands [`ask`] adds per key.
    pub fn commands_per_key(self) -> usize {
        match self {
            Probe::Memory => 1,
            Probe::Encoding => 2,
        }
    }
}

/// What the first probe says of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// DUMP it as usual (also a key gone meanwhile: the DUMP counts it as vanished).
    Small,
    /// Big, of this kind and estimated size.
    Big(Kind, u64),
    /// Over the threshold or unknown: ask [`ask_details`].
    Check {
        /// The size known so far (MEMORY USAGE), if any.
        size: Option<u64>,
    },
}

/// Appends the probe of `keys` to `p`.
pub fn ask(p: &mut Pipeline, probe: Probe, keys: &[Bytes]) {
    match probe {
        // Pre-encoded: asked of every key, the generic encoder cost ~2 % of a live copy's CPU.
        Probe::Memory => p.per_key(KeyCommand::MemoryUsage, keys.iter().map(|k| &k[..])),
        Probe::Encoding => {
            for k in keys {
                for part in 0..probe.commands_per_key() {
                    ask_part(p, probe, k, part);
                }
            }
        }
    }
}

/// Appends command `part` (of [`Probe::commands_per_key`]) of the probe of `key` to `p`: one
/// command at a time, so a cluster's router can send each to the master of the key's slot.
pub fn ask_part(p: &mut Pipeline, probe: Probe, key: &[u8], part: usize) {
    match (probe, part) {
        (Probe::Memory, _) => p.cmd(&[b"MEMORY".as_slice(), b"USAGE", key]),
        (Probe::Encoding, 0) => p.cmd(&[b"OBJECT".as_slice(), b"ENCODING", key]),
        (Probe::Encoding, _) => p.cmd(&[b"STRLEN".as_slice(), key]),
    };
}

/// Reads the replies of [`ask`] for `n` keys; keys over `threshold` bytes are not `Small`.
pub fn read(
    it: &mut impl Iterator<Item = Reply>,
    probe: Probe,
    n: usize,
    threshold: u64,
) -> Option<Vec<Verdict>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let v = match probe {
            Probe::Memory => match it.next()? {
                Reply::Int(size) if (size as u64) <= threshold => Verdict::Small,
                Reply::Int(size) => Verdict::Check {
                    size: Some(size as u64),
                },
                Reply::Bulk(None) => Verdict::Small,
                // Refused (an ACL without MEMORY): find out the 3.2 way.
                _ => Verdict::Check { size: None },
            },
            Probe::Encoding => {
                let (enc, len) = (it.next()?, it.next()?);
                encoding_verdict(enc.as_bytes(), len.as_int(), threshold)
            }
        };
        out.push(v);
    }
    Some(out)
}

fn encoding_verdict(enc: Option<&[u8]>, strlen: Option<i64>, threshold: u64) -> Verdict {
    match enc {
        // Gone, or compact by construction.
        None | Some(b"int" | b"embstr" | b"ziplist" | b"intset" | b"listpack") => Verdict::Small,
        Some(b"raw") => match strlen {
            Some(n) if n as u64 > threshold => Verdict::Big(Kind::String, n as u64),
            _ => Verdict::Small,
        },
        _ => Verdict::Check { size: None },
    }
}

/// Commands [`ask_details`] adds per key.
pub const DETAIL_COMMANDS: usize = 12;

/// Appends, for each key, its `TYPE`, every type's length command and a sample read of every
/// type (the ones of other types answer `WRONGTYPE` at no cost): one round trip whatever the
/// types.
pub fn ask_details(p: &mut Pipeline, keys: &[&Bytes]) {
    for k in keys {
        for part in 0..DETAIL_COMMANDS {
            ask_detail(p, k, part);
        }
    }
}

/// Appends command `part` (of [`DETAIL_COMMANDS`]) of [`ask_details`] for `k` to `p`.
pub fn ask_detail(p: &mut Pipeline, k: &[u8], part: usize) {
    const LENGTHS: [&[u8]; 6] = [b"STRLEN", b"HLEN", b"LLEN", b"SCARD", b"ZCARD", b"XLEN"];
    let n = SAMPLE.to_string();
    let last = (SAMPLE - 1).to_string();
    match part {
        0 => p.cmd(&[b"TYPE".as_slice(), k]),
        1..=6 => p.cmd(&[LENGTHS[part - 1], k]),
        7 => p.cmd(&[b"LRANGE".as_slice(), k, b"0", last.as_bytes()]),
        8 => p.cmd(&[b"HSCAN".as_slice(), k, b"0", b"COUNT", n.as_bytes()]),
        9 => p.cmd(&[b"SRANDMEMBER".as_slice(), k, n.as_bytes()]),
        10 => p.cmd(&[
            b"ZRANGE".as_slice(),
            k,
            b"0",
            last.as_bytes(),
            b"WITHSCORES",
        ]),
        _ => p.cmd(&[b"XRANGE".as_slice(), k, b"-", b"+", b"COUNT", n.as_bytes()]),
    };
}

/// Reads one key's [`ask_details`] replies: its kind and estimated size (`None`: gone, or a
/// type never chunked such as a module's — DUMPed as usual). `known` is the MEMORY USAGE size.
pub fn read_details(
    it: &mut impl Iterator<Item = Reply>,
    known: Option<u64>,
) -> Option<Option<(Kind, u64)>> {
    let replies: Vec<Reply> = it.by_ref().take(DETAIL_COMMANDS).collect();
    if replies.len() < DETAIL_COMMANDS {
        return None;
    }
    let Some(kind) = replies[0].as_bytes().and_then(Kind::from_type_name) else {
        return Some(None);
    };
    let len_at = match kind {
        Kind::String => 1,
        Kind::Hash => 2,
        Kind::List => 3,
        Kind::Set => 4,
        Kind::ZSet => 5,
        Kind::Stream => 6,
    };
    let len = replies[len_at].as_int().unwrap_or(0).max(0) as u64;
    if kind == Kind::String {
        return Some(Some((kind, known.unwrap_or(len))));
    }
    let sample = match kind {
        Kind::List => &replies[7],
        Kind::Hash => match &replies[8] {
            Reply::Array(Some(parts)) => parts.get(1).unwrap_or(&Reply::Bulk(None)),
            other => other,
        },
        Kind::Set => &replies[9],
        Kind::ZSet => &replies[10],
        _ => &replies[11],
    };
    let (bytes, elements) = sample_size(sample);
    // Per element: its sampled bytes (a hash field with its value, a member with its score)
    // plus a few bytes of framing.
    let per = match kind {
        Kind::Hash | Kind::ZSet => (bytes / (elements / 2).max(1)) + 16,
        _ => (bytes / elements.max(1)) + 16,
    };
    let estimate = known.unwrap_or(len.saturating_mul(per as u64));
    Some(Some((kind, estimate)))
}

/// Bytes and number of leaf bulks in a (nested) sample reply.
fn sample_size(r: &Reply) -> (usize, usize) {
    match r {
        Reply::Bulk(Some(b)) => (b.len(), 1),
        Reply::Array(Some(parts)) => parts.iter().fold((0, 0), |(b, n), p| {
            let (pb, pn) = sample_size(p);
            (b + pb, n + pn)
        }),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::from(s.to_string())))
    }

    #[test]
    fn memory_usage_over_the_threshold_is_checked() {
        let replies = vec![Reply::Int(100), Reply::Int(5000), Reply::Bulk(None)];
        let v = read(&mut replies.into_iter(), Probe::Memory, 3, 1000).unwrap();
        assert_eq!(
            v,
            vec![
                Verdict::Small,
                Verdict::Check { size: Some(5000) },
                Verdict::Small
            ]
        );
    }

    #[test]
    fn encodings_decide_what_they_can() {
        let wrong = Reply::Error("WRONGTYPE".into());
        let replies = vec![
            bulk("ziplist"),
            wrong.clone(),
            bulk("raw"),
            Reply::Int(5000),
            bulk("raw"),
            Reply::Int(10),
            bulk("quicklist"),
            wrong,
        ];
        let v = read(&mut replies.into_iter(), Probe::Encoding, 4, 1000).unwrap();
        assert_eq!(
            v,
            vec![
                Verdict::Small,
                Verdict::Big(Kind::String, 5000),
                Verdict::Small,
                Verdict::Check { size: None }
            ]
        );
    }

    #[test]
    fn details_estimate_from_the_sample() {
        let wrong = || Reply::Error("WRONGTYPE".into());
        let sample = Reply::Array(Some(vec![bulk("0123456789"), bulk("0123456789")]));
        let replies = vec![
            Reply::Status("list".into()),
            wrong(),
            wrong(),
            Reply::Int(1000),
            wrong(),
            wrong(),
            wrong(),
            sample,
            wrong(),
            wrong(),
            wrong(),
            wrong(),
        ];
        let got = read_details(&mut replies.into_iter(), None).unwrap();
        assert_eq!(got, Some((Kind::List, 1000 * 26)));
    }
}
