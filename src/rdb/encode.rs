//! Re-encoding values for targets that cannot take the source payload.
//!
//! A server refuses a payload whose footer version is newer than its own (Redis 7.0 = RDB 10
//! cannot `RESTORE` a Valkey 8 / Redis 7.2 RDB 11 payload, let alone Redis 8's RDB 12), and Valkey 9
//! refuses Redis' RDB 12–79 range. For those, the value is decoded and written again in the
//! simplest encoding the target version accepts — plain string, list (type 1), set (type 2),
//! hash (type 4), zset with binary scores (type 5, or string scores before RDB 8) — which every
//! Redis since 2.x loads and converts to its preferred in-memory encoding. Hashes with field TTLs
//! need a target that has them (Redis RDB 12: type 24; Valkey RDB 80+: type 22). Streams are
//! written as the newest stream type the target knows (v1 RDB 9, v2 RDB 10, v3 RDB 11+); going
//! through [`transcode_payload`] keeps all stream metadata the older format can express.

use bytes::Bytes;

use super::decode;
use super::error::{RdbError, Result};
use super::hash_ttl;
use super::length::write_length;
use super::payload;
use super::score;
use super::stream::{self, StreamData};
use super::string::write_raw;
use super::types::{self, Flavor};
use super::value::Value;

/// True if a server speaking `target` RDB version accepts a payload with footer `version`.
pub fn target_accepts(version: u16, target: u16) -> bool {
    if version > target {
        return false;
    }
    // Valkey 9+ rejects the "foreign" Redis range 12..=79.
    !(target >= 80 && (12..80).contains(&version))
}

fn check_target(target: u16) -> Result<()> {
    if types::version_supported(target) {
        Ok(())
    } else {
        Err(RdbError::Encode(format!(
            "unsupported target RDB version {target}"
        )))
    }
}

fn stream_type_for(target: u16) -> Result<u8> {
    match target {
        11.. => Ok(types::STREAM_LISTPACKS_3),
        10 => Ok(types::STREAM_LISTPACKS_2),
        9 => Ok(types::STREAM_LISTPACKS),
        _ => Err(RdbError::Encode(format!(
            "streams need RDB 9 or newer; target is RDB {target} (stream needs logical commands)"
        ))),
    }
}

/// Encode `value` as a full DUMP payload a server with RDB version `target_rdb_version` accepts.
pub fn encode_value(value: &Value, target_rdb_version: u16) -> Result<Bytes> {
    let target = target_rdb_version;
    check_target(target)?;
    let mut out = Vec::new();
    let t = match value {
        Value::String(s) => {
            write_raw(&mut out, s);
            types::STRING
        }
        Value::List(items) => {
            write_length(&mut out, items.len() as u64);
            for i in items {
                write_raw(&mut out, i);
            }
            types::LIST
        }
        Value::Set(items) => {
            write_length(&mut out, items.len() as u64);
            for i in items {
                write_raw(&mut out, i);
            }
            types::SET
        }
        Value::Hash(fields) => {
            if fields.iter().all(|f| f.expire_at_ms.is_none()) {
                write_length(&mut out, fields.len() as u64);
                for f in fields {
                    write_raw(&mut out, &f.field);
                    write_raw(&mut out, &f.value);
                }
                types::HASH
            } else if target >= 80 {
                out = hash_ttl::encode_valkey_hash2(fields)?;
                types::VALKEY_HASH_2
            } else if target >= 12 {
                out = hash_ttl::encode_metadata(fields)?;
                types::HASH_METADATA
            } else {
                return Err(RdbError::Encode(format!(
                    "hash has fields with TTLs, which RDB {target} cannot store"
                )));
            }
        }
        Value::ZSet(members) => {
            if members.iter().any(|(_, s)| s.is_nan()) {
                return Err(RdbError::Encode("sorted set with a NaN score".into()));
            }
            write_length(&mut out, members.len() as u64);
            let binary = target >= 8;
            for (m, s) in members {
                write_raw(&mut out, m);
                if binary {
                    out.extend_from_slice(&s.to_le_bytes());
                } else {
                    score::write_string_score(&mut out, *s);
                }
            }
            if binary {
                types::ZSET_2
            } else {
                types::ZSET
            }
        }
        Value::Stream(s) => {
            let t = stream_type_for(target)?;
            out = stream::encode(&StreamData::from_logical(s), t)?;
            t
        }
        Value::Module { raw, .. } => {
            if target < 8 {
                return Err(RdbError::Encode(format!(
                    "module values need RDB 8+, target is RDB {target}"
                )));
            }
            out.extend_from_slice(raw);
            types::MODULE_2
        }
    };
    Ok(payload::build(t, &out, target))
}

/// Make `payload` acceptable to a server speaking RDB `target_rdb_version`: returned unchanged if
/// it already is, otherwise decoded and re-encoded (streams keep their metadata).
pub fn transcode_payload(payload: &[u8], target_rdb_version: u16) -> Result<Bytes> {
    check_target(target_rdb_version)?;
    let (t, value, version) = payload::split(payload)?;
    if target_accepts(version, target_rdb_version) {
        return Ok(Bytes::copy_from_slice(payload));
    }
    let flavor = Flavor::from_version(version);
    if matches!(
        t,
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3
    ) {
        let mut cur = super::cursor::Cursor::new(value, 1);
        let data = stream::decode(&mut cur, t)?;
        let nt = stream_type_for(target_rdb_version)?;
        return Ok(payload::build(
            nt,
            &stream::encode(&data, nt)?,
            target_rdb_version,
        ));
    }
    let v = decode::decode_value_with(t, value, flavor).map_err(|e| e.rebase(1))?;
    encode_value(&v, target_rdb_version)
}
