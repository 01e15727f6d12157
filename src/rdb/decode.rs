//! Decoding DUMP payloads and raw RDB values into logical [`Value`]s.
//!
//! Verification decodes both sides — a Redis 3.2 `DUMP` and a Valkey 8 `DUMP` of the same key use
//! different encodings — so this handles every encoding from RDB 1 to 12 and Valkey's 80+: plain
//! strings/lists/sets/hashes/zsets, zipmaps, ziplists, intsets, listpacks, quicklists v1/v2,
//! streams v1–v3, hashes with field TTLs, and module values (kept opaque). A value must consume
//! its bytes exactly; anything left over is reported as corruption.

use super::cursor::{safe_capacity, Cursor};
use super::error::{RdbError, Result};
use super::hash_ttl;
use super::intset;
use super::length::read_length;
use super::listpack;
use super::module;
use super::payload;
use super::score;
use super::stream;
use super::string::{itoa, read_bytes, read_string, RdbStr};
use super::types::{self, Flavor};
use super::value::{HashField, Value};
use super::ziplist::{self, Elem};
use super::zipmap;

/// Decode a DUMP payload (any supported footer version), verifying its CRC64. Offsets in errors
/// are positions in the payload.
pub fn decode_payload(payload: &[u8]) -> Result<Value> {
    let (t, value, version) = payload::split(payload)?;
    decode_value_with(t, value, Flavor::from_version(version)).map_err(|e| e.rebase(1))
}

/// Decode raw value bytes of type `type_byte` using Redis numbering; an ambiguous type 22 that
/// does not parse as Redis' layout is tried as Valkey's. Offsets in errors are positions in
/// `bytes`.
pub fn decode_value(type_byte: u8, bytes: &[u8]) -> Result<Value> {
    match decode_value_with(type_byte, bytes, Flavor::Redis) {
        Err(e) if type_byte == types::VALKEY_HASH_2 => {
            decode_value_with(type_byte, bytes, Flavor::Valkey).map_err(|_| e)
        }
        r => r,
    }
}

/// Decode raw value bytes of type `type_byte` under the given numbering.
pub fn decode_value_with(type_byte: u8, bytes: &[u8], flavor: Flavor) -> Result<Value> {
    let mut cur = Cursor::new(bytes, 0);
    let v = decode_from(&mut cur, type_byte, flavor)?;
    if !cur.is_empty() {
        return Err(RdbError::corrupt(
            cur.offset(),
            types::type_name(type_byte, flavor),
            format!("{} unexpected bytes after the value", cur.remaining()),
        ));
    }
    Ok(v)
}

fn strings(cur: &mut Cursor<'_>, what: &'static str) -> Result<Vec<Vec<u8>>> {
    let n = read_length(cur, what)?;
    cur.check_count(n, 1, what)?;
    let mut out = Vec::with_capacity(safe_capacity(n, cur.remaining()));
    for _ in 0..n {
        out.push(read_bytes(cur, what)?);
    }
    Ok(out)
}

pub(crate) fn blob_elems<'s>(s: &'s RdbStr<'_>, listpack_format: bool) -> Result<Vec<Elem<'s>>> {
    let r = if listpack_format {
        listpack::parse(&s.bytes)
    } else {
        ziplist::parse(&s.bytes)
    };
    r.map_err(|e| s.map_inner_err(e))
}

fn pairs_to_hash(s: &RdbStr<'_>, elems: &[Elem<'_>]) -> Result<Vec<HashField>> {
    if elems.len() % 2 != 0 {
        return Err(RdbError::corrupt(
            s.offset,
            "hash blob",
            "odd number of elements",
        ));
    }
    Ok(elems
        .chunks_exact(2)
        .map(|p| HashField {
            field: p[0].to_vec(),
            value: p[1].to_vec(),
            expire_at_ms: None,
        })
        .collect())
}

fn pairs_to_zset(s: &RdbStr<'_>, elems: &[Elem<'_>]) -> Result<Vec<(Vec<u8>, f64)>> {
    if elems.len() % 2 != 0 {
        return Err(RdbError::corrupt(
            s.offset,
            "zset blob",
            "odd number of elements",
        ));
    }
    elems
        .chunks_exact(2)
        .map(|p| {
            let score = match p[1] {
                Elem::Int(i) => i as f64,
                Elem::Str(t) => score::parse_score_text(t).ok_or_else(|| {
                    RdbError::corrupt(
                        s.offset,
                        "zset blob",
                        format!("bad score {:?}", String::from_utf8_lossy(t)),
                    )
                })?,
            };
            Ok((p[0].to_vec(), score))
        })
        .collect()
}

/// A sorted set: members with string scores (`ZSET`) or binary doubles (`ZSET_2`).
fn decode_zset(cur: &mut Cursor<'_>, t: u8) -> Result<Value> {
    let n = read_length(cur, "zset member count")?;
    cur.check_count(n, 2, "zset member count")?;
    let mut out = Vec::with_capacity(safe_capacity(n, cur.remaining()));
    for _ in 0..n {
        let m = read_bytes(cur, "zset member")?;
        let s = if t == types::ZSET {
            score::read_string_score(cur)?
        } else {
            score::read_binary_double(cur, "zset binary score")?
        };
        out.push((m, s));
    }
    Ok(Value::ZSet(out))
}

/// A hash stored field by field.
fn decode_hash(cur: &mut Cursor<'_>) -> Result<Value> {
    let n = read_length(cur, "hash field count")?;
    cur.check_count(n, 2, "hash field count")?;
    let mut out = Vec::with_capacity(safe_capacity(n, cur.remaining()));
    for _ in 0..n {
        let field = read_bytes(cur, "hash field")?;
        let value = read_bytes(cur, "hash value")?;
        out.push(HashField {
            field,
            value,
            expire_at_ms: None,
        });
    }
    Ok(Value::Hash(out))
}

/// A hash stored as a zipmap (Redis before 2.6).
fn decode_zipmap(cur: &mut Cursor<'_>) -> Result<Value> {
    let s = read_string(cur, "zipmap blob")?;
    let pairs = zipmap::parse(&s.bytes).map_err(|e| s.map_inner_err(e))?;
    Ok(Value::Hash(
        pairs
            .into_iter()
            .map(|(f, v)| HashField {
                field: f.to_vec(),
                value: v.to_vec(),
                expire_at_ms: None,
            })
            .collect(),
    ))
}

/// A quicklist: ziplist nodes (`LIST_QUICKLIST`), or listpack / plain nodes (`_2`).
fn decode_quicklist(cur: &mut Cursor<'_>, t: u8) -> Result<Value> {
    let n = read_length(cur, "quicklist node count")?;
    cur.check_count(n, 1, "quicklist node count")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let container = if t == types::LIST_QUICKLIST_2 {
            let at = cur.offset();
            let c = read_length(cur, "quicklist node container")?;
            if c != 1 && c != 2 {
                return Err(RdbError::corrupt(
                    at,
                    "quicklist node",
                    format!("bad container {c}"),
                ));
            }
            c
        } else {
            2
        };
        let s = read_string(cur, "quicklist node")?;
        if container == 1 {
            out.push(s.bytes.into_owned());
        } else {
            out.extend(
                blob_elems(&s, t == types::LIST_QUICKLIST_2)?
                    .iter()
                    .map(Elem::to_vec),
            );
        }
    }
    Ok(Value::List(out))
}

fn decode_from(cur: &mut Cursor<'_>, t: u8, flavor: Flavor) -> Result<Value> {
    let start = cur.offset();
    Ok(match t {
        types::STRING => Value::String(read_bytes(cur, "string value")?),
        types::LIST => Value::List(strings(cur, "list element")?),
        types::SET => Value::Set(strings(cur, "set member")?),
        types::ZSET | types::ZSET_2 => decode_zset(cur, t)?,
        types::HASH => decode_hash(cur)?,
        types::MODULE_PRE_GA => {
            return Err(RdbError::Unsupported {
                offset: start,
                what: "pre-GA module value (type 6, Redis 4.0 release candidates) cannot be parsed"
                    .into(),
            })
        }
        types::MODULE_2 => {
            let start_pos = cur.pos();
            let id = read_length(cur, "module id")?;
            module::skip_annotated(cur)?;
            let (name, _ver) = module::name_from_id(id);
            let raw = cur.consumed_since(start_pos).to_vec();
            Value::Module { name, raw }
        }
        types::HASH_ZIPMAP => decode_zipmap(cur)?,
        types::LIST_ZIPLIST => {
            let s = read_string(cur, "list ziplist blob")?;
            Value::List(blob_elems(&s, false)?.iter().map(Elem::to_vec).collect())
        }
        types::SET_INTSET => {
            let s = read_string(cur, "intset blob")?;
            let v = intset::parse(&s.bytes).map_err(|e| s.map_inner_err(e))?;
            Value::Set(v.into_iter().map(itoa).collect())
        }
        types::SET_LISTPACK => {
            let s = read_string(cur, "set listpack blob")?;
            Value::Set(blob_elems(&s, true)?.iter().map(Elem::to_vec).collect())
        }
        types::ZSET_ZIPLIST | types::ZSET_LISTPACK => {
            let s = read_string(cur, "zset blob")?;
            let e = blob_elems(&s, t == types::ZSET_LISTPACK)?;
            Value::ZSet(pairs_to_zset(&s, &e)?)
        }
        types::HASH_ZIPLIST | types::HASH_LISTPACK => {
            let s = read_string(cur, "hash blob")?;
            let e = blob_elems(&s, t == types::HASH_LISTPACK)?;
            Value::Hash(pairs_to_hash(&s, &e)?)
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => decode_quicklist(cur, t)?,
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(stream::decode(cur, t)?.into()))
        }
        22 if flavor == Flavor::Valkey => Value::Hash(hash_ttl::decode_valkey_hash2(cur)?),
        types::HASH_METADATA_PRE_GA => Value::Hash(hash_ttl::decode_metadata(cur, false)?),
        types::HASH_METADATA if flavor == Flavor::Redis => {
            Value::Hash(hash_ttl::decode_metadata(cur, true)?)
        }
        23 if flavor == Flavor::Valkey => {
            return Err(RdbError::Unsupported {
                offset: start,
                what: "Valkey path hash (type 23, RDB 81) is not supported".into(),
            })
        }
        types::HASH_LISTPACK_EX_PRE_GA => Value::Hash(hash_ttl::decode_listpack_ex(cur, false)?),
        types::HASH_LISTPACK_EX if flavor == Flavor::Redis => {
            Value::Hash(hash_ttl::decode_listpack_ex(cur, true)?)
        }
        other => {
            return Err(RdbError::UnknownType {
                offset: start,
                byte: other,
            })
        }
    })
}
