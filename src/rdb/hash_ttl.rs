//! Hashes with per-field expiry (Redis 7.4+ types 22–25, Valkey 9 type 22).
//!
//! Redis 7.4 release candidates wrote type 22 as `count, (ttl-as-length, field, value)*` with
//! absolute TTLs (0 = none) and type 23 as a listpack of `field, value, ttl` triples. Redis 7.4 GA
//! (types 24/25) puts an 8-byte little-endian *minExpire* first; in type 24 each TTL is then
//! relative: stored `ttl` means `ttl + minExpire - 1` (0 still = none), while the listpack of type
//! 25 keeps absolute TTLs. Valkey 9 (RDB 80) reused number 22 for a different layout:
//! `count, (field, value, expiry as 8-byte LE i64)*` with -1 meaning none. Which layout a 22
//! means is decided by the [`Flavor`](super::types::Flavor).

use super::cursor::{safe_capacity, Cursor};
use super::error::{RdbError, Result};
use super::length::{read_length, write_length};
use super::listpack;
use super::string::{read_bytes, read_string, write_raw};
use super::value::HashField;

/// Largest valid field expiry (Redis `EB_EXPIRE_TIME_MAX`, 2^48 - 1 ms).
pub const EXPIRE_TIME_MAX: u64 = (1 << 48) - 1;

fn expiry(at: u64, v: u64) -> Result<Option<i64>> {
    if v == 0 {
        return Ok(None);
    }
    if v > EXPIRE_TIME_MAX {
        return Err(RdbError::corrupt(
            at,
            "hash field TTL",
            format!("expiry {v} is out of range"),
        ));
    }
    Ok(Some(v as i64))
}

/// Redis type 22 (pre-GA) or 24 (GA): `[minExpire] count (ttl field value)*`.
pub fn decode_metadata(cur: &mut Cursor<'_>, ga: bool) -> Result<Vec<HashField>> {
    let min_expire = if ga {
        Some(cur.u64_le("hash minExpire")?)
    } else {
        None
    };
    let n = read_length(cur, "hash field count")?;
    cur.check_count(n, 3, "hash field count")?;
    let mut out = Vec::with_capacity(safe_capacity(n, cur.remaining()));
    for _ in 0..n {
        let at = cur.offset();
        let ttl = read_length(cur, "hash field TTL")?;
        let abs = match (ttl, min_expire) {
            (0, _) => 0,
            (t, Some(min)) => t
                .checked_add(min)
                .and_then(|v| v.checked_sub(1))
                .ok_or_else(|| RdbError::corrupt(at, "hash field TTL", "relative TTL overflows"))?,
            (t, None) => t,
        };
        let expire_at_ms = expiry(at, abs)?;
        let field = read_bytes(cur, "hash field")?;
        let value = read_bytes(cur, "hash value")?;
        out.push(HashField {
            field,
            value,
            expire_at_ms,
        });
    }
    Ok(out)
}

/// Redis type 23 (pre-GA) or 25 (GA): `[minExpire] listpack(field value ttl)*`.
pub fn decode_listpack_ex(cur: &mut Cursor<'_>, ga: bool) -> Result<Vec<HashField>> {
    if ga {
        cur.u64_le("hash minExpire")?;
    }
    let s = read_string(cur, "hash listpack-ex blob")?;
    let elems = listpack::parse(&s.bytes).map_err(|e| s.map_inner_err(e))?;
    if elems.len() % 3 != 0 {
        return Err(RdbError::corrupt(
            s.offset,
            "hash listpack-ex",
            format!("{} elements is not a multiple of 3", elems.len()),
        ));
    }
    let mut out = Vec::with_capacity(elems.len() / 3);
    for t in elems.chunks_exact(3) {
        let (f, v, ttl) = (t[0], t[1], t[2]);
        let ttl = ttl
            .as_int()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| {
                RdbError::corrupt(
                    s.offset,
                    "hash listpack-ex",
                    "TTL is not a non-negative integer",
                )
            })?;
        out.push(HashField {
            field: f.to_vec(),
            value: v.to_vec(),
            expire_at_ms: expiry(s.offset, ttl)?,
        });
    }
    Ok(out)
}

/// Valkey type 22: `count (field value expiry-i64-LE)*`, expiry -1 = none.
pub fn decode_valkey_hash2(cur: &mut Cursor<'_>) -> Result<Vec<HashField>> {
    let n = read_length(cur, "hash field count")?;
    cur.check_count(n, 10, "hash field count")?;
    let mut out = Vec::with_capacity(safe_capacity(n, cur.remaining()));
    for _ in 0..n {
        let field = read_bytes(cur, "hash field")?;
        let value = read_bytes(cur, "hash value")?;
        let at = cur.offset();
        let e = cur.i64_le("hash field expiry")?;
        let expire_at_ms = match e {
            -1 => None,
            e if e >= 0 => Some(e),
            e => {
                return Err(RdbError::corrupt(
                    at,
                    "hash field expiry",
                    format!("invalid expiry {e}"),
                ))
            }
        };
        out.push(HashField {
            field,
            value,
            expire_at_ms,
        });
    }
    Ok(out)
}

/// Encode as Redis type 24 value bytes.
pub fn encode_metadata(fields: &[HashField]) -> Result<Vec<u8>> {
    let mut min = u64::MAX;
    for f in fields {
        if let Some(e) = f.expire_at_ms {
            let e = u64::try_from(e)
                .ok()
                .filter(|&e| (1..=EXPIRE_TIME_MAX).contains(&e))
                .ok_or_else(|| RdbError::Encode(format!("hash field expiry {e} out of range")))?;
            min = min.min(e);
        }
    }
    let min = if min == u64::MAX {
        EXPIRE_TIME_MAX + 1
    } else {
        min
    };
    let mut out = Vec::new();
    out.extend_from_slice(&min.to_le_bytes());
    write_length(&mut out, fields.len() as u64);
    for f in fields {
        let ttl = match f.expire_at_ms {
            Some(e) => e as u64 - min + 1,
            None => 0,
        };
        write_length(&mut out, ttl);
        write_raw(&mut out, &f.field);
        write_raw(&mut out, &f.value);
    }
    Ok(out)
}

/// Encode as Valkey type 22 value bytes.
pub fn encode_valkey_hash2(fields: &[HashField]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_length(&mut out, fields.len() as u64);
    for f in fields {
        write_raw(&mut out, &f.field);
        write_raw(&mut out, &f.value);
        let e = match f.expire_at_ms {
            Some(e) if e >= 0 => e,
            Some(e) => {
                return Err(RdbError::Encode(format!(
                    "hash field expiry {e} out of range"
                )))
            }
            None => -1,
        };
        out.extend_from_slice(&e.to_le_bytes());
    }
    Ok(out)
}
