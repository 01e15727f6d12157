//! RDB type bytes and opcodes, and which RDB versions they belong to.
//!
//! One byte starts every item in an RDB file: small values are value types (how the following key's
//! value is encoded), values from 0xF3 up are opcodes (metadata). The same numbers are used in DUMP
//! payloads, whose first byte is the value type. Two vendors assign the numbers from 22 up
//! differently: Redis 7.4+ (RDB 12) uses 22–25 for hashes with field expiry, Valkey 9 (RDB 80+,
//! `VALKEY` magic) uses 22 for its own field-expiry hash and 23 for path hashes. The [`Flavor`]
//! decides which meaning applies, from the magic (files) or the footer version (payloads).

/// String (raw, int-encoded or LZF).
pub const STRING: u8 = 0;
/// List as a plain sequence of strings (linked list, RDB ≤ 6 era).
pub const LIST: u8 = 1;
/// Set as a plain sequence of strings.
pub const SET: u8 = 2;
/// Sorted set with scores stored as strings (RDB < 8).
pub const ZSET: u8 = 3;
/// Hash as field/value string pairs.
pub const HASH: u8 = 4;
/// Sorted set with binary double scores (RDB 8+).
pub const ZSET_2: u8 = 5;
/// Module value from Redis 4.0 release candidates: not self-describing, cannot be parsed.
pub const MODULE_PRE_GA: u8 = 6;
/// Module value with type annotations (RDB 8+).
pub const MODULE_2: u8 = 7;
/// Hash as a zipmap blob (Redis ≤ 2.4).
pub const HASH_ZIPMAP: u8 = 9;
/// List as a ziplist blob.
pub const LIST_ZIPLIST: u8 = 10;
/// Set of integers as an intset blob.
pub const SET_INTSET: u8 = 11;
/// Sorted set as a ziplist blob.
pub const ZSET_ZIPLIST: u8 = 12;
/// Hash as a ziplist blob.
pub const HASH_ZIPLIST: u8 = 13;
/// List as a quicklist of ziplists (RDB 7–9).
pub const LIST_QUICKLIST: u8 = 14;
/// Stream, listpacks v1 (RDB 9).
pub const STREAM_LISTPACKS: u8 = 15;
/// Hash as a listpack blob (RDB 10).
pub const HASH_LISTPACK: u8 = 16;
/// Sorted set as a listpack blob (RDB 10).
pub const ZSET_LISTPACK: u8 = 17;
/// List as a quicklist of listpacks / plain nodes (RDB 10).
pub const LIST_QUICKLIST_2: u8 = 18;
/// Stream, listpacks v2 (RDB 10).
pub const STREAM_LISTPACKS_2: u8 = 19;
/// Set as a listpack blob (RDB 11).
pub const SET_LISTPACK: u8 = 20;
/// Stream, listpacks v3 (RDB 11).
pub const STREAM_LISTPACKS_3: u8 = 21;
/// Redis 7.4 RC: hash with field TTLs, absolute TTLs, no minExpire. Valkey 9: see [`VALKEY_HASH_2`].
pub const HASH_METADATA_PRE_GA: u8 = 22;
/// Redis 7.4 RC: listpack hash with field TTLs, no minExpire. Valkey 9.2: path hash (unsupported).
pub const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
/// Redis 7.4+: hash with field TTLs relative to a leading minExpire (RDB 12).
pub const HASH_METADATA: u8 = 24;
/// Redis 7.4+: listpack hash with field TTLs and a leading minExpire (RDB 12).
pub const HASH_LISTPACK_EX: u8 = 25;
/// Valkey 9 (RDB 80): hash with per-field absolute expiry (-1 = none) after each pair.
pub const VALKEY_HASH_2: u8 = 22;

/// Valkey 9 (RDB 80, `VALKEY` magic only): in-progress slot import.
pub const OP_SLOT_IMPORT: u8 = 0xF3;
/// Cluster slot size hint (Redis 7.4+).
pub const OP_SLOT_INFO: u8 = 0xF4;
/// Function library (Redis 7.0 GA+).
pub const OP_FUNCTION2: u8 = 0xF5;
/// Function from Redis 7.0 release candidates (name, engine, description, code).
pub const OP_FUNCTION_PRE_GA: u8 = 0xF6;
/// Module auxiliary data.
pub const OP_MODULE_AUX: u8 = 0xF7;
/// LRU idle time of the next key.
pub const OP_IDLE: u8 = 0xF8;
/// LFU frequency of the next key.
pub const OP_FREQ: u8 = 0xF9;
/// Auxiliary string/string field.
pub const OP_AUX: u8 = 0xFA;
/// Hash table size hint for the current DB.
pub const OP_RESIZEDB: u8 = 0xFB;
/// Absolute expiry of the next key in ms.
pub const OP_EXPIRETIME_MS: u8 = 0xFC;
/// Absolute expiry of the next key in seconds (old files).
pub const OP_EXPIRETIME: u8 = 0xFD;
/// Switch the current DB.
pub const OP_SELECTDB: u8 = 0xFE;
/// End of the keyspace; a CRC64 follows from RDB 5.
pub const OP_EOF: u8 = 0xFF;
/// Redis Enterprise only: RAM LRU hint (one length) before a key; safe to skip.
pub const OP_ENTERPRISE_RAM_LRU: u8 = 0x6B;

/// Highest Redis RDB version understood (Redis 7.4 / 8.0).
pub const MAX_REDIS_VERSION: u16 = 12;
/// Valkey RDB versions understood (Valkey 9.0 = 80, 9.2 = 81).
pub const VALKEY_VERSIONS: std::ops::RangeInclusive<u16> = 80..=81;

/// Whose numbering applies to ambiguous type bytes (22 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Redis numbering (REDIS magic, versions 1–12).
    Redis,
    /// Valkey 9+ numbering (VALKEY magic, versions 80+).
    Valkey,
}

impl Flavor {
    /// The flavor implied by an RDB version number (DUMP payload footers carry no magic).
    pub fn from_version(version: u16) -> Flavor {
        if version >= 80 {
            Flavor::Valkey
        } else {
            Flavor::Redis
        }
    }
}

/// True if this version can be parsed.
pub fn version_supported(version: u16) -> bool {
    (1..=MAX_REDIS_VERSION).contains(&version) || VALKEY_VERSIONS.contains(&version)
}

/// A short human name for a type byte, for messages.
pub fn type_name(t: u8, flavor: Flavor) -> &'static str {
    match (t, flavor) {
        (STRING, _) => "string",
        (LIST, _) => "list",
        (SET, _) => "set",
        (ZSET, _) => "zset",
        (HASH, _) => "hash",
        (ZSET_2, _) => "zset2",
        (MODULE_PRE_GA, _) => "module-pre-ga",
        (MODULE_2, _) => "module2",
        (HASH_ZIPMAP, _) => "hash-zipmap",
        (LIST_ZIPLIST, _) => "list-ziplist",
        (SET_INTSET, _) => "set-intset",
        (ZSET_ZIPLIST, _) => "zset-ziplist",
        (HASH_ZIPLIST, _) => "hash-ziplist",
        (LIST_QUICKLIST, _) => "list-quicklist",
        (STREAM_LISTPACKS, _) => "stream-listpacks",
        (HASH_LISTPACK, _) => "hash-listpack",
        (ZSET_LISTPACK, _) => "zset-listpack",
        (LIST_QUICKLIST_2, _) => "list-quicklist2",
        (STREAM_LISTPACKS_2, _) => "stream-listpacks2",
        (SET_LISTPACK, _) => "set-listpack",
        (STREAM_LISTPACKS_3, _) => "stream-listpacks3",
        (22, Flavor::Redis) => "hash-metadata-pre-ga",
        (23, Flavor::Redis) => "hash-listpack-ex-pre-ga",
        (24, Flavor::Redis) => "hash-metadata",
        (25, Flavor::Redis) => "hash-listpack-ex",
        (22, Flavor::Valkey) => "valkey-hash2",
        (23, Flavor::Valkey) => "valkey-path-hash",
        _ => "unknown",
    }
}

/// True if `t` is a value type this crate can walk and decode under `flavor`.
pub fn is_value_type(t: u8, flavor: Flavor) -> bool {
    match flavor {
        Flavor::Redis => matches!(t, 0..=7 | 9..=25),
        Flavor::Valkey => matches!(t, 0..=7 | 9..=23),
    }
}
