//! Comparing one key's two states, and two sets of keys, exactly.
//!
//! The order of checks decides the kind reported when several things differ: presence first
//! (`missing` / `extra`), then `type`, then `value`, then `ttl`. TTLs are absolute expiries on
//! this machine's clock (`TIME + PTTL` of each side, minus that side's clock skew) and agree when
//! within `--ttl-tolerance`; a TTL on one side only is always a difference.
//!
//! A key present on one side only whose expiry has passed (or will within the tolerance) is not a
//! loss: it expired between the two reads, and is counted as such.

use std::collections::HashMap;

use bytes::Bytes;

use super::digest::Kind;
use super::report::DiffKind;
use super::state::KeyState;

/// The outcome of comparing one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Equal (or absent on both sides).
    Same,
    /// On one side only, and its TTL ran out (or is about to).
    Expired,
    /// A difference, with a human detail.
    Differs(DiffKind, String),
}

/// Compares the source and target states of one key at local time `now_ms`.
pub fn compare(
    source: Option<&KeyState>,
    target: Option<&KeyState>,
    tolerance_ms: u64,
    now_ms: i64,
) -> Verdict {
    let tol = i64::try_from(tolerance_ms).unwrap_or(i64::MAX);
    let expiring = |s: &KeyState| {
        s.expire_at_ms
            .is_some_and(|e| e <= now_ms.saturating_add(tol))
    };
    match (source, target) {
        (None, None) => Verdict::Same,
        (Some(s), None) if expiring(s) => Verdict::Expired,
        (None, Some(t)) if expiring(t) => Verdict::Expired,
        (Some(s), None) => Verdict::Differs(
            DiffKind::Missing,
            format!(
                "{} on the source{}, absent on the target",
                s.kind.name(),
                paren(ttl_text(s, now_ms))
            ),
        ),
        (None, Some(t)) => Verdict::Differs(
            DiffKind::Extra,
            format!(
                "{} on the target{}, absent on the source",
                t.kind.name(),
                paren(ttl_text(t, now_ms))
            ),
        ),
        (Some(s), Some(t)) => {
            if s.kind != t.kind && s.kind != Kind::Undecodable && t.kind != Kind::Undecodable {
                return Verdict::Differs(
                    DiffKind::Type,
                    format!("source {}, target {}", s.kind.name(), t.kind.name()),
                );
            }
            if s.kind != t.kind || s.digest != t.digest {
                let detail = if s.kind == Kind::Undecodable || t.kind == Kind::Undecodable {
                    format!(
                        "source {}, target {}: compared by raw payload bytes, which differ",
                        s.kind.name(),
                        t.kind.name()
                    )
                } else {
                    format!("{} content differs", s.kind.name())
                };
                return Verdict::Differs(DiffKind::Value, detail);
            }
            match (s.expire_at_ms, t.expire_at_ms) {
                (None, None) => Verdict::Same,
                (Some(_), None) => Verdict::Differs(
                    DiffKind::Ttl,
                    format!(
                        "source{}, target has no TTL (permanent)",
                        ttl_text(s, now_ms)
                    ),
                ),
                (None, Some(_)) => Verdict::Differs(
                    DiffKind::Ttl,
                    format!(
                        "source has no TTL (permanent), target{}",
                        ttl_text(t, now_ms)
                    ),
                ),
                (Some(a), Some(b)) => {
                    let diff = b.saturating_sub(a);
                    if diff.unsigned_abs() <= tolerance_ms {
                        Verdict::Same
                    } else {
                        Verdict::Differs(
                            DiffKind::Ttl,
                            format!(
                                "expiry differs by {diff:+} ms (target minus source; tolerance {tolerance_ms} ms)"
                            ),
                        )
                    }
                }
            }
        }
    }
}

fn ttl_text(s: &KeyState, now_ms: i64) -> String {
    match s.expire_at_ms {
        None => String::new(),
        Some(e) => format!(" expires in {} ms", e.saturating_sub(now_ms)),
    }
}

/// The latest expiry either side showed for a key (`None` if neither side has one).
pub fn latest_expiry(source: Option<&KeyState>, target: Option<&KeyState>) -> Option<i64> {
    let a = source.and_then(|s| s.expire_at_ms);
    let b = target.and_then(|s| s.expire_at_ms);
    a.max(b)
}

fn paren(text: String) -> String {
    if text.is_empty() {
        text
    } else {
        format!(" ({})", text.trim_start())
    }
}

/// Compares two key maps of the same buckets; returns every key that is not [`Verdict::Same`],
/// with its [`latest_expiry`]. Both maps are consumed so that memory is given back as the
/// comparison goes.
pub fn compare_maps(
    mut source: HashMap<Bytes, KeyState>,
    mut target: HashMap<Bytes, KeyState>,
    tolerance_ms: u64,
    now_ms: i64,
) -> Vec<(Bytes, Verdict, Option<i64>)> {
    let mut out = Vec::new();
    for (key, s) in source.drain() {
        let t = target.remove(&key);
        let v = compare(Some(&s), t.as_ref(), tolerance_ms, now_ms);
        if v != Verdict::Same {
            out.push((key, v, latest_expiry(Some(&s), t.as_ref())));
        }
    }
    for (key, t) in target.drain() {
        let v = compare(None, Some(&t), tolerance_ms, now_ms);
        if v != Verdict::Same {
            out.push((key, v, t.expire_at_ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::digest::Digest;

    fn st(kind: Kind, d: u128, e: Option<i64>) -> KeyState {
        KeyState {
            kind,
            digest: Digest(d),
            expire_at_ms: e,
        }
    }

    fn kind_of(v: Verdict) -> Option<DiffKind> {
        match v {
            Verdict::Differs(k, _) => Some(k),
            _ => None,
        }
    }

    #[test]
    fn kinds() {
        let now = 1_000_000;
        let s = st(Kind::Hash, 1, Some(now + 60_000));
        let c = |a: Option<&KeyState>, b: Option<&KeyState>| kind_of(compare(a, b, 1000, now));
        assert_eq!(c(Some(&s), Some(&s)), None);
        assert_eq!(c(Some(&s), None), Some(DiffKind::Missing));
        assert_eq!(c(None, Some(&s)), Some(DiffKind::Extra));
        assert_eq!(
            c(Some(&s), Some(&st(Kind::String, 1, s.expire_at_ms))),
            Some(DiffKind::Type)
        );
        assert_eq!(
            c(Some(&s), Some(&st(Kind::Hash, 2, s.expire_at_ms))),
            Some(DiffKind::Value)
        );
        assert_eq!(
            c(Some(&s), Some(&st(Kind::Hash, 1, Some(now + 70_000)))),
            Some(DiffKind::Ttl)
        );
        assert_eq!(
            c(Some(&s), Some(&st(Kind::Hash, 1, Some(now + 60_999)))),
            None
        );
        assert_eq!(
            c(Some(&s), Some(&st(Kind::Hash, 1, None))),
            Some(DiffKind::Ttl)
        );
        assert_eq!(
            c(Some(&st(Kind::Hash, 1, None)), Some(&s)),
            Some(DiffKind::Ttl)
        );
    }

    #[test]
    fn expiring_keys_are_not_losses() {
        let now = 1_000_000;
        let gone = st(Kind::String, 1, Some(now - 5));
        let soon = st(Kind::String, 1, Some(now + 500));
        assert_eq!(compare(Some(&gone), None, 1000, now), Verdict::Expired);
        assert_eq!(compare(None, Some(&soon), 1000, now), Verdict::Expired);
        let later = st(Kind::String, 1, Some(now + 5000));
        assert!(matches!(
            compare(Some(&later), None, 1000, now),
            Verdict::Differs(DiffKind::Missing, _)
        ));
    }
}
