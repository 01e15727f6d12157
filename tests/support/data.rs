//! Test data for ferry's integration tests: fill a source with a rich dataset, then read both
//! servers back into canonical snapshots and compare them key by key.
//!
//! Everything here uses ordinary commands only (no DUMP), so a snapshot is an independent view
//! of the logical data: what ferry writes through DUMP/RESTORE is checked against what a client
//! reads. It works against every server the suite runs (Redis 3.2, 4.0, 5.0, 6.0, 6.2, 7.0, 8.0,
//! Valkey 8.0, 8.1): HMSET instead of multi-field HSET, no UNLINK, streams only on 5.0+, and
//! `XINFO` replies of every shape (flat arrays on RESP2, maps on RESP3, fields missing on older
//! servers).
//!
//! Functions take any `redis::ConnectionLike` (a `redis::Connection`, or a cluster connection
//! for the seeding functions with `db` 0). The ones with a `db` argument `SELECT` it and leave the
//! connection on that database.
//!
//! Typical use:
//! ```ignore
//! let caps = data::Caps::detect(&mut src);
//! data::seed_rich(&mut src, 0, "rich:", &caps);
//! // ... run ferry ...
//! let a = data::snapshot(&mut src, 0);
//! let b = data::snapshot(&mut dst, 0);
//! data::assert_same(&a, &b, 2_000);
//! ```
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::{Cmd, ConnectionLike, RedisResult, Value};

// ============================================================================ capabilities

/// What a server version can do, as far as seeding and reading data is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// `redis_version` (Valkey 8 reports 7.2.4 here).
    pub version: (u32, u32, u32),
    /// `valkey_version`, when the server is Valkey.
    pub valkey: Option<(u32, u32, u32)>,
    /// Streams and consumer groups (5.0+).
    pub streams: bool,
    /// `HSET key f1 v1 f2 v2 ...` (4.0+); before that only `HMSET` takes several fields.
    pub multi_hset: bool,
    /// `UNLINK` (4.0+).
    pub unlink: bool,
    /// `XGROUP CREATE ... MKSTREAM` is used by `seed_rich` from 6.2 on.
    pub mkstream: bool,
    /// `XAUTOCLAIM`, `XPENDING ... IDLE` (6.2+).
    pub xautoclaim: bool,
    /// Stream metadata of 7.0+: `entries-added`, `max-deleted-entry-id`, group `entries-read`.
    pub stream_meta_v7: bool,
    /// `RESTORE ... ABSTTL` (5.0+).
    pub restore_absttl: bool,
}

fn parse_triplet(s: &str) -> (u32, u32, u32) {
    let mut it = s
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

impl Caps {
    /// From a version string such as `"3.2.6"`, `"6.2.14"` or `"7.2.4"`. A string starting with
    /// `valkey` (`"valkey"`, `"valkey8"`, `"valkey-8.0.2"`) is taken as Valkey, which reports
    /// `redis_version` 7.2.4.
    pub fn for_version(version: &str) -> Caps {
        let lower = version.trim().to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("valkey") {
            let v = parse_triplet(rest);
            let v = if v == (0, 0, 0) { (8, 0, 0) } else { v };
            return Caps::from_parts((7, 2, 4), Some(v));
        }
        Caps::from_parts(parse_triplet(&lower), None)
    }

    fn from_parts(version: (u32, u32, u32), valkey: Option<(u32, u32, u32)>) -> Caps {
        let at_least = |maj: u32, min: u32| (version.0, version.1) >= (maj, min);
        Caps {
            version,
            valkey,
            streams: at_least(5, 0),
            multi_hset: at_least(4, 0),
            unlink: at_least(4, 0),
            mkstream: at_least(6, 2),
            xautoclaim: at_least(6, 2),
            stream_meta_v7: at_least(7, 0),
            restore_absttl: at_least(5, 0),
        }
    }

    /// From the server's `INFO server` (`redis_version`, `valkey_version`).
    pub fn detect<C: ConnectionLike>(conn: &mut C) -> Caps {
        let info: Value = redis::cmd("INFO")
            .arg("server")
            .query(conn)
            .expect("INFO server");
        let info = value_string(&info).unwrap_or_default();
        let field = |name: &str| {
            info.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        let version = parse_triplet(&field("redis_version").expect("INFO has no redis_version"));
        let valkey = field("valkey_version").map(|v| parse_triplet(&v));
        Caps::from_parts(version, valkey)
    }

    /// `"3.2.6"`, `"valkey 8.0.2"` — for messages.
    pub fn describe(&self) -> String {
        match self.valkey {
            Some((a, b, c)) => format!("valkey {a}.{b}.{c}"),
            None => format!("{}.{}.{}", self.version.0, self.version.1, self.version.2),
        }
    }
}

// ============================================================================ small helpers

/// `SELECT db`. An error is ignored for db 0 (cluster mode refuses SELECT; db 0 is all there is).
pub fn select<C: ConnectionLike>(conn: &mut C, db: u32) {
    let r: RedisResult<()> = redis::cmd("SELECT").arg(db).query(conn);
    if let Err(e) = r {
        assert_eq!(db, 0, "SELECT {db}: {e}");
    }
}

/// Milliseconds since the Unix epoch, as the servers' clocks see it (same machine).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}

/// A byte string as Redis' own `redis-cli` would show it: `"ab\x00\xff\n"`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// `escape`, cut to about `max` input bytes (with the full length when cut).
pub fn preview(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        escape(bytes)
    } else {
        format!("{}... ({} bytes)", escape(&bytes[..max]), bytes.len())
    }
}

fn exec<C: ConnectionLike>(conn: &mut C, cmd: &Cmd, what: &str) {
    let r: RedisResult<Value> = cmd.query(conn);
    if let Err(e) = r {
        panic!("seeding {what}: {e}");
    }
}

fn key_with(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(suffix);
    k
}

fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Double(d) => Some(d.to_string().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes().to_vec()),
        Value::BigNumber(n) => Some(format!("{n:?}").into_bytes()),
        _ => None,
    }
}

fn value_string(v: &Value) -> Option<String> {
    value_bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => value_string(other).and_then(|s| s.trim().parse().ok()),
    }
}

fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        other => value_string(other).and_then(|s| parse_score(&s)),
    }
}

fn parse_score(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// The elements of an array-like reply (RESP2 array, RESP3 set, map flattened), `[]` for nil.
fn value_items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.clone(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        Value::Attribute { data, .. } => value_items(data),
        _ => Vec::new(),
    }
}

/// A `field value field value ...` reply (or a RESP3 map) as `(field name, value)` pairs.
fn value_fields(v: &Value) -> Vec<(String, Value)> {
    let items = value_items(v);
    items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (value_string(&c[0]).unwrap_or_default(), c[1].clone()))
        .collect()
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn pairs_of(v: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    value_items(v)
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| {
            (
                value_bytes(&c[0]).unwrap_or_default(),
                value_bytes(&c[1]).unwrap_or_default(),
            )
        })
        .collect()
}

// ============================================================================ seeding

/// Helper that remembers every key it wrote.
struct Seeder<'a, C: ConnectionLike> {
    conn: &'a mut C,
    prefix: Vec<u8>,
    keys: BTreeSet<Vec<u8>>,
}

impl<C: ConnectionLike> Seeder<'_, C> {
    fn key(&mut self, suffix: &[u8]) -> Vec<u8> {
        let k = key_with(&self.prefix, suffix);
        self.keys.insert(k.clone());
        k
    }

    /// `NAME key args...` on `prefix + suffix`.
    fn run<A: redis::ToRedisArgs>(&mut self, name: &str, suffix: &[u8], args: A) -> Vec<u8> {
        let k = self.key(suffix);
        let mut c = redis::cmd(name);
        c.arg(&k).arg(args);
        exec(self.conn, &c, &format!("{name} {}", escape(&k)));
        k
    }

    fn set(&mut self, suffix: &[u8], value: &[u8]) -> Vec<u8> {
        self.run("SET", suffix, value)
    }

    /// RPUSH in chunks of 100 elements.
    fn rpush(&mut self, suffix: &[u8], items: &[Vec<u8>]) -> Vec<u8> {
        let mut k = Vec::new();
        for chunk in items.chunks(100) {
            k = self.run("RPUSH", suffix, chunk);
        }
        k
    }

    /// HMSET (works on 3.2) in chunks of 100 fields.
    fn hmset(&mut self, suffix: &[u8], pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut k = Vec::new();
        for chunk in pairs.chunks(100) {
            let flat: Vec<&Vec<u8>> = chunk.iter().flat_map(|(f, v)| [f, v]).collect();
            k = self.run("HMSET", suffix, flat);
        }
        k
    }

    fn sadd(&mut self, suffix: &[u8], members: &[Vec<u8>]) -> Vec<u8> {
        let mut k = Vec::new();
        for chunk in members.chunks(100) {
            k = self.run("SADD", suffix, chunk);
        }
        k
    }

    /// ZADD with scores given as strings (`"+inf"`, `"0.1"`, `"1e300"`), 100 per command.
    fn zadd(&mut self, suffix: &[u8], entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut k = Vec::new();
        for chunk in entries.chunks(100) {
            let flat: Vec<Vec<u8>> = chunk
                .iter()
                .flat_map(|(s, m)| [s.as_bytes().to_vec(), m.clone()])
                .collect();
            k = self.run("ZADD", suffix, flat);
        }
        k
    }

    fn pexpire(&mut self, key: &[u8], ms: u64) {
        let mut c = redis::cmd("PEXPIRE");
        c.arg(key).arg(ms);
        exec(self.conn, &c, &format!("PEXPIRE {}", escape(key)));
    }

    fn raw(&mut self, args: &[&[u8]]) -> Value {
        let mut c = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
        for a in &args[1..] {
            c.arg(*a);
        }
        let r: RedisResult<Value> = c.query(self.conn);
        r.unwrap_or_else(|e| {
            let shown: Vec<String> = args.iter().map(|a| preview(a, 40)).collect();
            panic!("seeding {}: {e}", shown.join(" "))
        })
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Durations used for the TTL keys of `seed_rich`.
pub const RICH_TTLS_MS: [u64; 3] = [3_600_000, 86_400_000, 50_000];

/// The 100 KB compressible string of `seed_rich` (RDB stores it LZF-compressed).
pub fn compressible_100k() -> Vec<u8> {
    let pattern = b"ferry-lzf-compressible-0123456789-";
    pattern.iter().copied().cycle().take(100 * 1024).collect()
}

/// Writes a rich dataset into `db` under `prefix` and returns the number of distinct keys
/// written. Covers every type and the encodings that matter to RDB/DUMP payloads:
///
/// * strings: plain, binary (`\0`, `\xff`), int-encoded (small, large, negative, i64 bounds),
///   not-quite-ints, 44/45-byte (embstr/raw), 100 KB compressible (LZF), 4 KB incompressible,
///   empty;
/// * binary key names: `\0`, `\xff`, newline, spaces, UTF-8;
/// * lists: small (ziplist/listpack), ints only, 2000 elements (quicklist with many nodes, ints
///   of every width), a few 10 KB elements;
/// * hashes: small, 600 fields (hashtable), small with a 100-byte value and with a 70-byte field
///   (hashtable by size);
/// * sets: small intset, 64-bit intset, 600-int intset turned hashtable, small and 300-member
///   string sets;
/// * zsets: small and 300 members (skiplist), scores `+inf`, `-inf`, 0, negative, 0.1, 1e300,
///   ties;
/// * streams (5.0+): 10 entries with an XDEL'd one and differing field sets, groups with pending
///   entries for two consumers (one entry delivered twice), a group with no consumers, 250
///   entries (several listpack nodes), an empty stream with a group (XADD + XDEL), another via
///   `XGROUP CREATE ... MKSTREAM` (6.2+), one stream with a TTL;
/// * TTLs: 1 hour, 1 day, 50 000 ms on every type, one `PEXPIREAT` a year ahead; all other keys
///   are permanent.
pub fn seed_rich<C: ConnectionLike>(conn: &mut C, db: u32, prefix: &str, caps: &Caps) -> usize {
    select(conn, db);
    let mut s = Seeder {
        conn,
        prefix: prefix.as_bytes().to_vec(),
        keys: BTreeSet::new(),
    };

    // ---- strings
    s.set(b"str:plain", b"hello, ferry");
    s.set(b"str:binary", b"\x00\x01\x02\xff\xfe bin \x00 end\r\n");
    s.set(b"str:all-bytes", &(0u8..=255).collect::<Vec<u8>>());
    s.set(b"str:int:small", b"42");
    s.set(b"str:int:zero", b"0");
    s.set(b"str:int:negative", b"-12345");
    s.set(b"str:int:large", b"1234567890123");
    s.set(b"str:int:max", i64::MAX.to_string().as_bytes());
    s.set(b"str:int:min", i64::MIN.to_string().as_bytes());
    s.set(b"str:int:too-big", b"18446744073709551616");
    s.set(b"str:int:leading-zero", b"007");
    s.set(b"str:float", b"3.14159");
    s.set(b"str:embstr-44", &[b'e'; 44]);
    s.set(b"str:raw-45", &[b'r'; 45]);
    s.set(b"str:compressible-100k", &compressible_100k());
    let mut rng = StdRng::seed_from_u64(0xfe22_7001);
    let mut noise = vec![0u8; 4096];
    rng.fill(&mut noise[..]);
    s.set(b"str:incompressible-4k", &noise);
    s.set(b"str:empty", b"");
    s.set(b"str:utf8", "héllo wörld — 日本語 🚀".as_bytes());

    // ---- binary key names
    s.set(b"bin:\x00nul\x00", b"key with NULs");
    s.set(b"bin:\xff\xfe\xfd", b"key with high bytes");
    s.set(b"bin:new\nline\r\n", b"key with newlines");
    s.set(b"bin:with spaces  ", b"key with spaces");
    s.set("bin:utf8:ключ-日本-ü-🚀".as_bytes(), b"utf-8 key");
    s.set(b"bin:\"quote\\back", b"key with quote and backslash");
    s.hmset(
        b"bin:hash:\x00\xff",
        &[(b"\x00f".to_vec(), b"\xffv".to_vec()), (b("f2"), b("v2"))],
    );

    // ---- lists
    s.rpush(
        b"list:small",
        &[
            b("a"),
            b("b"),
            b("1"),
            b("-2"),
            b"\x00bin\xff".to_vec(),
            b(""),
        ],
    );
    s.rpush(
        b"list:ints",
        &[b("1"), b("2"), b("3"), b("100000"), b("-5"), b("0")],
    );
    let large: Vec<Vec<u8>> = (0..2000i64)
        .map(|i| match i % 4 {
            0 => i.to_string().into_bytes(),
            1 => format!("item-{i}-padding-xxxxxxxxxxxxxxxx").into_bytes(),
            // ints of every ziplist/listpack width: 13-bit, 16, 24, 32 and 64 bits.
            2 => [
                -4000i64,
                30_000,
                -8_000_000,
                2_000_000_000,
                -9_000_000_000_000,
            ][(i as usize / 4) % 5]
                .wrapping_add(i)
                .to_string()
                .into_bytes(),
            _ => format!("long-element-{i}-{}", "z".repeat(70)).into_bytes(),
        })
        .collect();
    s.rpush(b"list:large", &large);
    let big_elems: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 10 * 1024]).collect();
    s.rpush(b"list:big-elements", &big_elems);

    // ---- hashes
    s.hmset(
        b"hash:small",
        &[
            (b("name"), b("ferry")),
            (b("num"), b("123")),
            (b("neg"), b("-7")),
            (b("empty"), b("")),
            (b"bin\x00".to_vec(), b"\x00\xff".to_vec()),
        ],
    );
    let big_hash: Vec<(Vec<u8>, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("field-{i}").into_bytes(),
                if i % 3 == 0 {
                    (i * 7).to_string().into_bytes()
                } else {
                    format!("value-{i}").into_bytes()
                },
            )
        })
        .collect();
    s.hmset(b"hash:large", &big_hash);
    s.hmset(
        b"hash:big-value",
        &[(b("small"), b("v")), (b("big"), vec![b'v'; 100])],
    );
    s.hmset(
        b"hash:big-field",
        &[(vec![b'f'; 70], b("v")), (b("other"), b("w"))],
    );

    // ---- sets
    s.sadd(
        b"set:intset-small",
        &[b("1"), b("2"), b("3"), b("-4"), b("1000000")],
    );
    s.sadd(
        b"set:intset-64bit",
        &[
            b("1"),
            (1i64 << 40).to_string().into_bytes(),
            (-(1i64 << 62)).to_string().into_bytes(),
        ],
    );
    let ints: Vec<Vec<u8>> = (0..600i64)
        .map(|i| (i * 3 - 900).to_string().into_bytes())
        .collect();
    s.sadd(b"set:intset-large", &ints);
    s.sadd(
        b"set:strings",
        &[
            b("apple"),
            b("banana"),
            b"\x00bin\xff".to_vec(),
            b("with space"),
            b(""),
        ],
    );
    let strs: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("member-{i}").into_bytes())
        .collect();
    s.sadd(b"set:strings-large", &strs);

    // ---- sorted sets
    let zsmall: Vec<(String, Vec<u8>)> = [
        ("0", "zero"),
        ("-1.5", "negative"),
        ("0.1", "tenth"),
        ("+inf", "plus-inf"),
        ("-inf", "minus-inf"),
        ("1e300", "huge"),
        ("-1e-300", "tiny-negative"),
        ("42", "int"),
        ("1", "tie-a"),
        ("1", "tie-b"),
    ]
    .iter()
    .map(|(sc, m)| (sc.to_string(), b(m)))
    .collect();
    s.zadd(b"zset:small", &zsmall);
    let zlarge: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let score = match i % 10 {
                0 => "+inf".to_string(),
                1 => "-inf".to_string(),
                2 => "0".to_string(),
                3 => format!("-{i}.25"),
                4 => format!("{i}.1"),
                5 => "1e300".to_string(),
                _ => format!("{}", i * 1000),
            };
            (score, format!("zmember-{i}").into_bytes())
        })
        .collect();
    s.zadd(b"zset:large", &zlarge);
    s.zadd(
        b"zset:binary",
        &[
            ("1".to_string(), b"\x00m".to_vec()),
            ("2".to_string(), b"\xffm".to_vec()),
        ],
    );

    // ---- streams
    if caps.streams {
        seed_streams(&mut s, caps);
    }

    // ---- TTLs
    let ttl_keys: Vec<Vec<u8>> = vec![
        s.set(b"ttl:str:1h", b"expires in an hour"),
        s.set(b"ttl:str:1d", b"expires in a day"),
        s.set(b"ttl:str:50s", b"expires in 50 s"),
        s.hmset(b"ttl:hash:1h", &[(b("a"), b("1")), (b("b"), b("2"))]),
        s.rpush(b"ttl:list:1d", &[b("x"), b("y"), b("z")]),
        s.sadd(b"ttl:set:50s", &[b("1"), b("2"), b("three")]),
        s.zadd(b"ttl:zset:1h", &[("1.5".to_string(), b("m"))]),
        s.set(b"ttl:int:1d", b"987654321"),
    ];
    for (i, k) in ttl_keys.iter().enumerate() {
        s.pexpire(k, RICH_TTLS_MS[i % RICH_TTLS_MS.len()]);
    }
    let far = s.set(b"ttl:pexpireat:1y", b"expires in a year");
    let at = (now_ms() + 365 * 86_400_000).to_string();
    s.raw(&[b"PEXPIREAT", &far, at.as_bytes()]);
    let bin_ttl = s.set(b"ttl:bin:\x00\xff", b"binary key with ttl");
    s.pexpire(&bin_ttl, 3_600_000);

    s.keys.len()
}

fn seed_streams<C: ConnectionLike>(s: &mut Seeder<'_, C>, caps: &Caps) {
    // 10 entries with explicit ids, differing field sets, one deleted.
    let basic = s.key(b"stream:basic");
    for i in 1..=10u32 {
        let id = format!("1000-{i}");
        let n = i.to_string();
        let payload = format!("payload-{i}");
        let mut args: Vec<&[u8]> = vec![b"XADD", &basic, id.as_bytes(), b"n", n.as_bytes()];
        if i % 3 == 0 {
            args.extend_from_slice(&[b"extra", b"\x00\xff"]);
        } else {
            args.extend_from_slice(&[b"payload", payload.as_bytes()]);
        }
        s.raw(&args);
    }
    s.raw(&[b"XDEL", &basic, b"1000-5"]);
    // g1: alice reads 3, bob reads 2; the first of alice's is acked.
    s.raw(&[b"XGROUP", b"CREATE", &basic, b"g1", b"0"]);
    let read = |s: &mut Seeder<'_, C>, group: &[u8], consumer: &[u8], count: &[u8], from: &[u8]| {
        let k = key_with(&s.prefix, b"stream:basic");
        s.raw(&[
            b"XREADGROUP",
            b"GROUP",
            group,
            consumer,
            b"COUNT",
            count,
            b"STREAMS",
            &k,
            from,
        ]);
    };
    read(s, b"g1", b"alice", b"3", b">");
    read(s, b"g1", b"bob", b"2", b">");
    s.raw(&[b"XACK", &basic, b"g1", b"1000-1"]);
    // g2: created at the end, nobody read.
    s.raw(&[b"XGROUP", b"CREATE", &basic, b"g2", b"$"]);
    // g3: carol reads 2 then re-reads her pending ones (delivery count 2).
    s.raw(&[b"XGROUP", b"CREATE", &basic, b"g3", b"0"]);
    read(s, b"g3", b"carol", b"2", b">");
    read(s, b"g3", b"carol", b"10", b"0");

    // 250 entries: several listpack nodes (stream-node-max-entries 100).
    let large = s.key(b"stream:large");
    for i in 0..250u32 {
        let id = format!("{}-0", 5000 + i);
        let v = (i * 11).to_string();
        let name = format!("name-{i}");
        s.raw(&[
            b"XADD",
            &large,
            id.as_bytes(),
            b"v",
            v.as_bytes(),
            b"name",
            name.as_bytes(),
        ]);
    }
    s.raw(&[b"XGROUP", b"CREATE", &large, b"workers", b"0"]);
    let k = large.clone();
    s.raw(&[
        b"XREADGROUP",
        b"GROUP",
        b"workers",
        b"w1",
        b"COUNT",
        b"120",
        b"STREAMS",
        &k,
        b">",
    ]);

    // Empty stream with a group: XADD then XDEL.
    let empty = s.key(b"stream:empty");
    s.raw(&[b"XADD", &empty, b"7-7", b"f", b"v"]);
    s.raw(&[b"XDEL", &empty, b"7-7"]);
    s.raw(&[b"XGROUP", b"CREATE", &empty, b"lonely", b"$"]);

    if caps.mkstream {
        let mk = s.key(b"stream:mkstream");
        s.raw(&[b"XGROUP", b"CREATE", &mk, b"g", b"$", b"MKSTREAM"]);
    }

    // A stream with a TTL.
    let ttl = s.key(b"ttl:stream:1d");
    s.raw(&[b"XADD", &ttl, b"1-1", b"a", b"b"]);
    s.pexpire(&ttl, 86_400_000);
}

/// Names of the keys written by `seed_short_ttls`.
pub const SHORT_TTL_PREFIX: &str = "short-ttl:";

/// Writes `n` keys (strings, hashes, lists) named `short-ttl:<ttl_ms>ms:<i>` in `db`, each
/// expiring in `ttl_ms` — meant to expire while ferry runs. Calls with different `ttl_ms` write
/// different keys. Pipelined; returns `n`.
pub fn seed_short_ttls<C: ConnectionLike>(conn: &mut C, db: u32, n: usize, ttl_ms: u64) -> usize {
    select(conn, db);
    let ttl_ms = ttl_ms.max(1);
    for start in (0..n).step_by(1000) {
        let mut p = redis::pipe();
        for i in start..(start + 1000).min(n) {
            let k = format!("{SHORT_TTL_PREFIX}{ttl_ms}ms:{i}");
            match i % 3 {
                0 => {
                    p.cmd("SET").arg(&k).arg(i).arg("PX").arg(ttl_ms).ignore();
                }
                1 => {
                    p.cmd("HMSET").arg(&k).arg("f").arg(i).ignore();
                    p.cmd("PEXPIRE").arg(&k).arg(ttl_ms).ignore();
                }
                _ => {
                    p.cmd("RPUSH").arg(&k).arg("a").arg(i).ignore();
                    p.cmd("PEXPIRE").arg(&k).arg(ttl_ms).ignore();
                }
            }
        }
        p.query::<()>(conn).expect("seed_short_ttls pipeline");
    }
    n
}

/// Key `i` of `seed_bulk(.., prefix)`: `prefix` + 8-digit `i`. Its type is
/// `["string", "hash", "list", "set", "zset"][i % 5]`.
pub fn bulk_key(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:08}")
}

/// Writes `n` keys fast (1000 per pipeline): strings, hashes, lists, sets and zsets in turn,
/// deterministic contents (seeded from `prefix`), about a third with a TTL of 10–60 minutes.
/// Returns `n`.
pub fn seed_bulk<C: ConnectionLike>(conn: &mut C, db: u32, n: usize, prefix: &str) -> usize {
    select(conn, db);
    let seed = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    for start in (0..n).step_by(1000) {
        let mut p = redis::pipe();
        for i in start..(start + 1000).min(n) {
            let k = bulk_key(prefix, i);
            let ttl: Option<u64> = rng
                .random_bool(1.0 / 3.0)
                .then(|| rng.random_range(600_000..3_600_000));
            let items = rng.random_range(1..=8usize);
            match i % 5 {
                0 => {
                    let v = if rng.random_bool(0.25) {
                        rng.random_range(-1_000_000i64..1_000_000).to_string()
                    } else {
                        let len = rng.random_range(8..200usize);
                        let mut v = format!("v{i}-");
                        v.extend((0..len).map(|j| (b'a' + ((i + j) % 26) as u8) as char));
                        v
                    };
                    p.cmd("SET").arg(&k).arg(v);
                    if let Some(t) = ttl {
                        p.arg("PX").arg(t);
                    }
                    p.ignore();
                }
                1 => {
                    p.cmd("HMSET").arg(&k);
                    for f in 0..items {
                        p.arg(format!("f{f}")).arg(format!("val-{i}-{f}"));
                    }
                    p.ignore();
                }
                2 => {
                    p.cmd("RPUSH").arg(&k);
                    for e in 0..items {
                        p.arg(format!("e{}", i * 10 + e));
                    }
                    p.ignore();
                }
                3 => {
                    p.cmd("SADD").arg(&k);
                    for e in 0..items {
                        if i % 2 == 0 {
                            p.arg(i * 10 + e);
                        } else {
                            p.arg(format!("m{e}"));
                        }
                    }
                    p.ignore();
                }
                _ => {
                    p.cmd("ZADD").arg(&k);
                    for e in 0..items {
                        p.arg(rng.random_range(-1000..1000) as f64 / 4.0)
                            .arg(format!("z{e}"));
                    }
                    p.ignore();
                }
            }
            if let (Some(t), false) = (ttl, i % 5 == 0) {
                p.cmd("PEXPIRE").arg(&k).arg(t).ignore();
            }
        }
        p.query::<()>(conn).expect("seed_bulk pipeline");
    }
    n
}

// ============================================================================ snapshots

/// The logical content of a key, normalised so that two servers holding the same data give
/// equal values whatever their encodings and iteration orders.
#[derive(Debug, Clone, PartialEq)]
pub enum Canon {
    String(Vec<u8>),
    /// In list order.
    List(Vec<Vec<u8>>),
    /// Sorted by field.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// Sorted.
    Set(Vec<Vec<u8>>),
    /// `(member, score)` sorted by member.
    ZSet(Vec<(Vec<u8>, f64)>),
    Stream(StreamCanon),
    /// A type this module cannot read (module types...): only the type name is compared.
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: String,
    /// In entry order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamCanon {
    /// XRANGE - +.
    pub entries: Vec<StreamEntry>,
    /// XINFO STREAM length.
    pub length: u64,
    /// XINFO STREAM last-generated-id.
    pub last_id: String,
    /// 7.0+ only (`None` when the server does not report it; then not compared).
    pub max_deleted_id: Option<String>,
    /// 7.0+ only.
    pub entries_added: Option<u64>,
    /// Sorted by name.
    pub groups: Vec<GroupCanon>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupCanon {
    pub name: Vec<u8>,
    /// `None` on servers whose XINFO GROUPS lacks it (then not compared).
    pub last_delivered_id: Option<String>,
    /// 7.0+ only (`None` when absent or nil; then not compared).
    pub entries_read: Option<u64>,
    /// XINFO GROUPS pending.
    pub pending: u64,
    /// `(name, pending)` sorted by name.
    pub consumers: Vec<(Vec<u8>, u64)>,
    /// XPENDING - + N: `(id, consumer, delivery count)` in id order.
    pub pel: Vec<(String, Vec<u8>, u64)>,
}

fn opt_eq<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

impl GroupCanon {
    /// Equal, except for fields one side does not report.
    pub fn matches(&self, other: &GroupCanon) -> bool {
        self.name == other.name
            && opt_eq(&self.last_delivered_id, &other.last_delivered_id)
            && opt_eq(&self.entries_read, &other.entries_read)
            && self.pending == other.pending
            && self.consumers == other.consumers
            && self.pel == other.pel
    }
}

impl StreamCanon {
    /// Equal, except for fields one side does not report (older servers).
    pub fn matches(&self, other: &StreamCanon) -> bool {
        self.entries == other.entries
            && self.length == other.length
            && self.last_id == other.last_id
            && opt_eq(&self.max_deleted_id, &other.max_deleted_id)
            && opt_eq(&self.entries_added, &other.entries_added)
            && self.groups.len() == other.groups.len()
            && self
                .groups
                .iter()
                .zip(&other.groups)
                .all(|(a, b)| a.matches(b))
    }
}

impl Canon {
    /// Equal as far as both servers report (see `StreamCanon::matches`).
    pub fn matches(&self, other: &Canon) -> bool {
        match (self, other) {
            (Canon::Stream(a), Canon::Stream(b)) => a.matches(b),
            (a, b) => a == b,
        }
    }

    /// Number of elements (bytes for a string, entries for a stream).
    pub fn len(&self) -> usize {
        match self {
            Canon::String(v) => v.len(),
            Canon::List(v) | Canon::Set(v) => v.len(),
            Canon::Hash(v) => v.len(),
            Canon::ZSet(v) => v.len(),
            Canon::Stream(s) => s.entries.len(),
            Canon::Other(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One key as read by `snapshot`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    /// TYPE: string, list, hash, set, zset, stream, ...
    pub kind: String,
    pub value: Canon,
    /// PTTL when read: -1 for a permanent key.
    pub pttl: i64,
    /// Absolute expiry (this machine's clock, which the local servers share) when read; -1 for a
    /// permanent key. TTLs are compared on this, so the time between reading the source and
    /// reading the target does not count as a TTL difference.
    pub expire_at_ms: i64,
}

/// `now + pttl` for a key with a TTL, `pttl` itself (-1) otherwise.
pub fn expire_at(pttl: i64) -> i64 {
    if pttl >= 0 {
        now_ms() + pttl
    } else {
        pttl
    }
}

/// Every key of `db` (SCAN, deduplicated, sorted).
pub fn scan_keys<C: ConnectionLike>(conn: &mut C, db: u32) -> Vec<Vec<u8>> {
    select(conn, db);
    let mut keys = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.into_iter().collect()
}

/// The command that reads a non-stream value.
fn read_cmd(kind: &str, key: &[u8]) -> Option<Cmd> {
    let mut c = match kind {
        "string" => redis::cmd("GET"),
        "list" => {
            let mut c = redis::cmd("LRANGE");
            c.arg(key).arg(0).arg(-1);
            return Some(c);
        }
        "hash" => redis::cmd("HGETALL"),
        "set" => redis::cmd("SMEMBERS"),
        "zset" => {
            let mut c = redis::cmd("ZRANGE");
            c.arg(key).arg(0).arg(-1).arg("WITHSCORES");
            return Some(c);
        }
        _ => return None,
    };
    c.arg(key);
    Some(c)
}

fn canon_from(kind: &str, v: &Value) -> Option<Canon> {
    Some(match kind {
        "string" => Canon::String(value_bytes(v)?),
        "list" => Canon::List(
            value_items(v)
                .iter()
                .map(|x| value_bytes(x).unwrap_or_default())
                .collect(),
        ),
        "hash" => {
            let mut pairs = pairs_of(v);
            pairs.sort();
            Canon::Hash(pairs)
        }
        "set" => {
            let mut m: Vec<Vec<u8>> = value_items(v)
                .iter()
                .map(|x| value_bytes(x).unwrap_or_default())
                .collect();
            m.sort();
            Canon::Set(m)
        }
        "zset" => {
            // RESP2: flat member/score; RESP3: [member, score] pairs.
            let items = value_items(v);
            let mut out: Vec<(Vec<u8>, f64)> =
                if items.iter().all(|x| matches!(x, Value::Array(_))) && !items.is_empty() {
                    items
                        .iter()
                        .map(|p| {
                            let p = value_items(p);
                            (
                                value_bytes(&p[0]).unwrap_or_default(),
                                value_f64(&p[1]).expect("zset score"),
                            )
                        })
                        .collect()
                } else {
                    items
                        .chunks(2)
                        .map(|c| {
                            (
                                value_bytes(&c[0]).unwrap_or_default(),
                                value_f64(&c[1]).expect("zset score"),
                            )
                        })
                        .collect()
                };
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Canon::ZSet(out)
        }
        _ => return None,
    })
}

fn key_type<C: ConnectionLike>(conn: &mut C, key: &[u8]) -> String {
    let v: Value = redis::cmd("TYPE").arg(key).query(conn).expect("TYPE");
    value_string(&v).unwrap_or_default()
}

fn pttl<C: ConnectionLike>(conn: &mut C, key: &[u8]) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).expect("PTTL")
}

fn read_stream<C: ConnectionLike>(conn: &mut C, key: &[u8]) -> RedisResult<StreamCanon> {
    let range: Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(conn)?;
    let entries = value_items(&range)
        .iter()
        .map(|e| {
            let e = value_items(e);
            StreamEntry {
                id: value_string(&e[0]).unwrap_or_default(),
                fields: pairs_of(&e[1]),
            }
        })
        .collect();
    let info: Value = redis::cmd("XINFO").arg("STREAM").arg(key).query(conn)?;
    let info = value_fields(&info);
    let get_str = |f: &[(String, Value)], n: &str| field(f, n).and_then(value_string);
    let get_int = |f: &[(String, Value)], n: &str| field(f, n).and_then(value_int);

    let groups_v: Value = redis::cmd("XINFO").arg("GROUPS").arg(key).query(conn)?;
    let mut groups = Vec::new();
    for g in value_items(&groups_v) {
        let g = value_fields(&g);
        let name = field(&g, "name")
            .and_then(value_bytes)
            .expect("XINFO GROUPS name");
        let consumers_v: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(key)
            .arg(&name)
            .query(conn)?;
        let mut consumers: Vec<(Vec<u8>, u64)> = value_items(&consumers_v)
            .iter()
            .map(|c| {
                let c = value_fields(c);
                (
                    field(&c, "name").and_then(value_bytes).unwrap_or_default(),
                    get_int(&c, "pending").unwrap_or(0) as u64,
                )
            })
            .collect();
        consumers.sort();
        let pel_v: Value = redis::cmd("XPENDING")
            .arg(key)
            .arg(&name)
            .arg("-")
            .arg("+")
            .arg(10_000_000)
            .query(conn)?;
        let pel = value_items(&pel_v)
            .iter()
            .map(|p| {
                let p = value_items(p);
                (
                    value_string(&p[0]).unwrap_or_default(),
                    value_bytes(&p[1]).unwrap_or_default(),
                    value_int(&p[3]).unwrap_or(0) as u64,
                )
            })
            .collect();
        groups.push(GroupCanon {
            name,
            last_delivered_id: get_str(&g, "last-delivered-id"),
            entries_read: get_int(&g, "entries-read").map(|v| v as u64),
            pending: get_int(&g, "pending").unwrap_or(0) as u64,
            consumers,
            pel,
        });
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(StreamCanon {
        entries,
        length: get_int(&info, "length").unwrap_or(0) as u64,
        last_id: get_str(&info, "last-generated-id").unwrap_or_default(),
        max_deleted_id: get_str(&info, "max-deleted-entry-id"),
        entries_added: get_int(&info, "entries-added").map(|v| v as u64),
        groups,
    })
}

/// Reads one key with plain commands, retrying if it changes type or vanishes while being read.
/// `None` when the key does not exist (or expired meanwhile).
pub fn read_key<C: ConnectionLike>(conn: &mut C, key: &[u8]) -> Option<KeyState> {
    for _ in 0..5 {
        let kind = key_type(conn, key);
        if kind == "none" {
            return None;
        }
        let ttl = pttl(conn, key);
        if ttl == -2 {
            return None;
        }
        let value = if kind == "stream" {
            match read_stream(conn, key) {
                Ok(s) => Some(Canon::Stream(s)),
                Err(_) => None,
            }
        } else if let Some(c) = read_cmd(&kind, key) {
            let r: RedisResult<Value> = c.query(conn);
            r.ok().and_then(|v| canon_from(&kind, &v))
        } else {
            Some(Canon::Other(kind.clone()))
        };
        if key_type(conn, key) != kind {
            continue; // changed or expired while reading
        }
        if let Some(value) = value {
            return Some(KeyState {
                kind,
                value,
                pttl: ttl,
                expire_at_ms: expire_at(ttl),
            });
        }
    }
    panic!("could not read key {} consistently", escape(key));
}

/// Reads every key of `db`: SCAN, then TYPE, PTTL and the value of each key (pipelined, 500 keys
/// at a time; streams one by one). Keys that expire while being read are left out.
pub fn snapshot<C: ConnectionLike>(conn: &mut C, db: u32) -> BTreeMap<Vec<u8>, KeyState> {
    let keys = scan_keys(conn, db);
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let mut p = redis::pipe();
        for k in chunk {
            p.cmd("TYPE").arg(k);
        }
        let types: Vec<Value> = p.query(conn).expect("TYPE pipeline");
        let types: Vec<String> = types
            .iter()
            .map(|t| value_string(t).unwrap_or_default())
            .collect();

        let mut p = redis::pipe();
        let mut batched: Vec<(&Vec<u8>, &str)> = Vec::new();
        let mut single: Vec<&Vec<u8>> = Vec::new();
        for (k, t) in chunk.iter().zip(&types) {
            match (t.as_str(), read_cmd(t, k)) {
                ("none", _) => {}
                (_, Some(c)) => {
                    p.cmd("PTTL").arg(k);
                    p.add_command(c);
                    p.cmd("TYPE").arg(k);
                    batched.push((k, t));
                }
                (_, None) => single.push(k),
            }
        }
        if !batched.is_empty() {
            let vals: Vec<RedisResult<Value>> =
                p.ignore_errors().query(conn).expect("read pipeline");
            assert_eq!(vals.len(), batched.len() * 3, "pipeline reply count");
            for ((k, t), r) in batched.iter().zip(vals.chunks(3)) {
                let ttl = r[0].as_ref().ok().and_then(value_int);
                let value = r[1].as_ref().ok().and_then(|v| canon_from(t, v));
                let still = r[2].as_ref().ok().and_then(value_string);
                match (ttl, value, still) {
                    (Some(-2), _, _) => {} // expired
                    (Some(ttl), Some(value), Some(still)) if still == *t => {
                        out.insert(
                            (*k).clone(),
                            KeyState {
                                kind: t.to_string(),
                                value,
                                pttl: ttl,
                                expire_at_ms: expire_at(ttl),
                            },
                        );
                    }
                    _ => single.push(k), // changed under us: read it again alone
                }
            }
        }
        for k in single {
            if let Some(st) = read_key(conn, k) {
                out.insert(k.clone(), st);
            }
        }
    }
    out
}

/// Databases with keys, from INFO keyspace.
pub fn nonempty_dbs<C: ConnectionLike>(conn: &mut C) -> Vec<u32> {
    let info: Value = redis::cmd("INFO")
        .arg("keyspace")
        .query(conn)
        .expect("INFO keyspace");
    value_string(&info)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (db, rest) = l.trim().split_once(':')?;
            let n: u32 = db.strip_prefix("db")?.parse().ok()?;
            rest.contains("keys=").then_some(n)
        })
        .collect()
}

/// `snapshot` of every non-empty database (INFO keyspace), keyed by `(db, key)`. Leaves the
/// connection on db 0.
pub fn snapshot_all<C: ConnectionLike>(conn: &mut C) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    let mut out = BTreeMap::new();
    for db in nonempty_dbs(conn) {
        for (k, v) in snapshot(conn, db) {
            out.insert((db, k), v);
        }
    }
    select(conn, 0);
    out
}

/// The union of several nodes' `snapshot(.., 0)` — the keyspace of a cluster read master by
/// master. Panics if a key shows up on two nodes.
pub fn snapshot_nodes(conns: &mut [redis::Connection]) -> BTreeMap<Vec<u8>, KeyState> {
    let mut out = BTreeMap::new();
    for c in conns.iter_mut() {
        for (k, v) in snapshot(c, 0) {
            if out.insert(k.clone(), v).is_some() {
                panic!("key {} is on two cluster nodes", escape(&k));
            }
        }
    }
    out
}

/// How many keys of each TYPE a snapshot holds.
pub fn kind_counts<K>(snap: &BTreeMap<K, KeyState>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for st in snap.values() {
        *m.entry(st.kind.clone()).or_insert(0) += 1;
    }
    m
}

/// OBJECT ENCODING of a key (for checking that a seed produced the encodings it means to).
pub fn encoding<C: ConnectionLike>(conn: &mut C, key: &[u8]) -> String {
    let v: Value = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query(conn)
        .expect("OBJECT ENCODING");
    value_string(&v).unwrap_or_default()
}

// ============================================================================ comparison

/// A snapshot key that can be shown in a diff.
pub trait SnapKey: Ord + Clone {
    fn show(&self) -> String;
}

impl SnapKey for Vec<u8> {
    fn show(&self) -> String {
        preview(self, 120)
    }
}

impl SnapKey for (u32, Vec<u8>) {
    fn show(&self) -> String {
        format!("db{} {}", self.0, preview(&self.1, 120))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// Different TYPE.
    Type,
    /// Same type, different content.
    Value,
    /// Both have a TTL, further apart than the tolerance.
    Ttl,
    /// The source key has a TTL, the target one is permanent.
    TtlLost,
    /// The source key is permanent, the target one has a TTL.
    TtlAdded,
}

#[derive(Debug, Clone)]
pub struct Diff {
    pub kind: DiffKind,
    pub key: String,
    pub detail: String,
}

/// How `diff` compares.
#[derive(Debug, Clone, Copy)]
pub struct CompareOpts {
    /// Largest allowed |source pttl - target pttl| when both have a TTL.
    pub ttl_tolerance_ms: i64,
    /// A source key whose pttl was below this (and not -1) may be missing on the target:
    /// it expired in between. 0: no key may be missing.
    pub expired_below_ms: i64,
}

fn ttl_str(ms: i64) -> String {
    if ms == -1 {
        "permanent".to_string()
    } else {
        format!("pttl {ms} ms")
    }
}

fn first_list_diff(a: &[Vec<u8>], b: &[Vec<u8>]) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let at = |v: &[Vec<u8>]| {
        v.get(i)
            .map(|x| preview(x, 60))
            .unwrap_or_else(|| "(end)".into())
    };
    format!(
        "{} vs {} elements; first difference at index {i}: {} vs {}",
        a.len(),
        b.len(),
        at(a),
        at(b)
    )
}

/// Members only in one side and (for maps) members whose values differ, a few of each.
fn map_diff<V: PartialEq, F: Fn(&V) -> String>(
    a: &[(Vec<u8>, V)],
    b: &[(Vec<u8>, V)],
    show: F,
) -> String {
    let am: BTreeMap<&Vec<u8>, &V> = a.iter().map(|(k, v)| (k, v)).collect();
    let bm: BTreeMap<&Vec<u8>, &V> = b.iter().map(|(k, v)| (k, v)).collect();
    let only_a: Vec<String> = am
        .keys()
        .filter(|k| !bm.contains_key(*k))
        .take(3)
        .map(|k| preview(k, 40))
        .collect();
    let only_b: Vec<String> = bm
        .keys()
        .filter(|k| !am.contains_key(*k))
        .take(3)
        .map(|k| preview(k, 40))
        .collect();
    let changed: Vec<String> = am
        .iter()
        .filter_map(|(k, v)| {
            let w = bm.get(k)?;
            (v != w).then(|| format!("{}: {} vs {}", preview(k, 40), show(v), show(w)))
        })
        .take(3)
        .collect();
    let mut s = format!("{} vs {} members", a.len(), b.len());
    if !only_a.is_empty() {
        let _ = write!(s, "; only in source: {}", only_a.join(", "));
    }
    if !only_b.is_empty() {
        let _ = write!(s, "; only in target: {}", only_b.join(", "));
    }
    if !changed.is_empty() {
        let _ = write!(s, "; changed: {}", changed.join(", "));
    }
    s
}

fn stream_diff(a: &StreamCanon, b: &StreamCanon) -> String {
    let mut parts = Vec::new();
    if a.entries != b.entries {
        let i = a
            .entries
            .iter()
            .zip(&b.entries)
            .take_while(|(x, y)| x == y)
            .count();
        let at = |v: &[StreamEntry]| {
            v.get(i)
                .map(|e| {
                    let f: Vec<String> = e
                        .fields
                        .iter()
                        .map(|(k, v)| format!("{}={}", preview(k, 20), preview(v, 20)))
                        .collect();
                    format!("{} {{{}}}", e.id, f.join(" "))
                })
                .unwrap_or_else(|| "(end)".into())
        };
        parts.push(format!(
            "entries: {} vs {}, first difference at #{i}: {} vs {}",
            a.entries.len(),
            b.entries.len(),
            at(&a.entries),
            at(&b.entries)
        ));
    }
    if a.length != b.length {
        parts.push(format!("length {} vs {}", a.length, b.length));
    }
    if a.last_id != b.last_id {
        parts.push(format!("last-generated-id {} vs {}", a.last_id, b.last_id));
    }
    if !opt_eq(&a.max_deleted_id, &b.max_deleted_id) {
        parts.push(format!(
            "max-deleted-entry-id {:?} vs {:?}",
            a.max_deleted_id, b.max_deleted_id
        ));
    }
    if !opt_eq(&a.entries_added, &b.entries_added) {
        parts.push(format!(
            "entries-added {:?} vs {:?}",
            a.entries_added, b.entries_added
        ));
    }
    let names = |s: &StreamCanon| -> Vec<String> {
        s.groups.iter().map(|g| preview(&g.name, 40)).collect()
    };
    if names(a) != names(b) {
        parts.push(format!(
            "groups [{}] vs [{}]",
            names(a).join(", "),
            names(b).join(", ")
        ));
    } else {
        for (x, y) in a.groups.iter().zip(&b.groups) {
            if !x.matches(y) {
                parts.push(format!(
                    "group {}: {}",
                    preview(&x.name, 40),
                    group_diff(x, y)
                ));
            }
        }
    }
    parts.join("; ")
}

fn group_diff(x: &GroupCanon, y: &GroupCanon) -> String {
    let mut d = Vec::new();
    if !opt_eq(&x.last_delivered_id, &y.last_delivered_id) {
        d.push(format!(
            "last-delivered-id {:?} vs {:?}",
            x.last_delivered_id, y.last_delivered_id
        ));
    }
    if !opt_eq(&x.entries_read, &y.entries_read) {
        d.push(format!(
            "entries-read {:?} vs {:?}",
            x.entries_read, y.entries_read
        ));
    }
    if x.pending != y.pending {
        d.push(format!("pending {} vs {}", x.pending, y.pending));
    }
    if x.consumers != y.consumers {
        d.push(format!(
            "consumers {:?} vs {:?}",
            show_consumers(&x.consumers),
            show_consumers(&y.consumers)
        ));
    }
    if x.pel != y.pel {
        let i = x.pel.iter().zip(&y.pel).take_while(|(p, q)| p == q).count();
        let at = |v: &[(String, Vec<u8>, u64)]| {
            v.get(i)
                .map(|(id, c, n)| format!("{id} {} deliveries={n}", preview(c, 40)))
                .unwrap_or_else(|| "(end)".into())
        };
        d.push(format!(
            "PEL {} vs {} entries, first difference at #{i}: {} vs {}",
            x.pel.len(),
            y.pel.len(),
            at(&x.pel),
            at(&y.pel)
        ));
    }
    d.join(", ")
}

fn show_consumers(c: &[(Vec<u8>, u64)]) -> Vec<String> {
    c.iter()
        .map(|(n, p)| format!("{}:{p}", String::from_utf8_lossy(n)))
        .collect()
}

/// A short description of how two values of the same type differ.
pub fn describe_value_diff(a: &Canon, b: &Canon) -> String {
    match (a, b) {
        (Canon::String(x), Canon::String(y)) => {
            let i = x.iter().zip(y).take_while(|(p, q)| p == q).count();
            format!(
                "{} vs {} bytes, first difference at byte {i}: {} vs {}",
                x.len(),
                y.len(),
                preview(&x[i.min(x.len())..], 40),
                preview(&y[i.min(y.len())..], 40)
            )
        }
        (Canon::List(x), Canon::List(y)) => format!("list {}", first_list_diff(x, y)),
        (Canon::Set(x), Canon::Set(y)) => {
            let px: Vec<(Vec<u8>, ())> = x.iter().map(|m| (m.clone(), ())).collect();
            let py: Vec<(Vec<u8>, ())> = y.iter().map(|m| (m.clone(), ())).collect();
            format!("set {}", map_diff(&px, &py, |_| String::new()))
        }
        (Canon::Hash(x), Canon::Hash(y)) => {
            format!("hash {}", map_diff(x, y, |v| preview(v, 40)))
        }
        (Canon::ZSet(x), Canon::ZSet(y)) => {
            format!("zset {}", map_diff(x, y, |v| format!("{v}")))
        }
        (Canon::Stream(x), Canon::Stream(y)) => format!("stream {}", stream_diff(x, y)),
        (x, y) => format!("{x:?} vs {y:?}"),
    }
}

/// Every difference between two snapshots (source first). See `CompareOpts`.
pub fn diff<K: SnapKey>(
    source: &BTreeMap<K, KeyState>,
    target: &BTreeMap<K, KeyState>,
    opts: &CompareOpts,
) -> Vec<Diff> {
    let mut out = Vec::new();
    for (k, s) in source {
        let Some(t) = target.get(k) else {
            let expired = s.pttl >= 0 && s.pttl < opts.expired_below_ms;
            if !expired {
                out.push(Diff {
                    kind: DiffKind::Missing,
                    key: k.show(),
                    detail: format!("{} ({}) missing on target", s.kind, ttl_str(s.pttl)),
                });
            }
            continue;
        };
        if s.kind != t.kind {
            out.push(Diff {
                kind: DiffKind::Type,
                key: k.show(),
                detail: format!("type {} vs {}", s.kind, t.kind),
            });
            continue;
        }
        if !s.value.matches(&t.value) {
            out.push(Diff {
                kind: DiffKind::Value,
                key: k.show(),
                detail: describe_value_diff(&s.value, &t.value),
            });
        }
        match (s.pttl, t.pttl) {
            (-1, -1) => {}
            (-1, tt) => out.push(Diff {
                kind: DiffKind::TtlAdded,
                key: k.show(),
                detail: format!("permanent on source, pttl {tt} ms on target"),
            }),
            (st, -1) => out.push(Diff {
                kind: DiffKind::TtlLost,
                key: k.show(),
                detail: format!("pttl {st} ms on source, permanent on target"),
            }),
            (st, tt) if (s.expire_at_ms - t.expire_at_ms).abs() > opts.ttl_tolerance_ms => out
                .push(Diff {
                    kind: DiffKind::Ttl,
                    key: k.show(),
                    detail: format!(
                        "pttl {st} ms vs {tt} ms when read: expiry off by {} ms (tolerance {} ms)",
                        s.expire_at_ms - t.expire_at_ms,
                        opts.ttl_tolerance_ms
                    ),
                }),
            _ => {}
        }
    }
    for (k, t) in target {
        if !source.contains_key(k) {
            out.push(Diff {
                kind: DiffKind::Extra,
                key: k.show(),
                detail: format!("{} ({}) only on target", t.kind, ttl_str(t.pttl)),
            });
        }
    }
    out
}

/// Renders differences for a panic message: the count per kind and the first `max`.
pub fn format_diffs(diffs: &[Diff], max: usize, source_len: usize, target_len: usize) -> String {
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    for d in diffs {
        *per_kind.entry(format!("{:?}", d.kind)).or_insert(0) += 1;
    }
    let mut s = format!(
        "snapshots differ: {} difference(s) ({}) between source ({source_len} keys) and \
         target ({target_len} keys)",
        diffs.len(),
        per_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for d in diffs.iter().take(max) {
        let _ = write!(s, "\n  {:?} {}: {}", d.kind, d.key, d.detail);
    }
    if diffs.len() > max {
        let _ = write!(s, "\n  ... and {} more", diffs.len() - max);
    }
    s
}

/// Panics with a readable diff unless the snapshots hold the same keys with the same types,
/// values and TTL state (TTLs within `ttl_tolerance_ms`; a key with a TTL must not be permanent
/// on the other side and vice versa). No key may be missing: see `assert_same_allow_expired`.
pub fn assert_same<K: SnapKey>(
    source: &BTreeMap<K, KeyState>,
    target: &BTreeMap<K, KeyState>,
    ttl_tolerance_ms: i64,
) {
    assert_same_allow_expired(source, target, ttl_tolerance_ms, 0);
}

/// [`assert_same`] over every DB of two servers (their [`snapshot_all`]s).
pub fn assert_same_all<C: ConnectionLike, D: ConnectionLike>(
    source: &mut C,
    target: &mut D,
    ttl_tolerance_ms: i64,
) {
    let (a, b) = (snapshot_all(source), snapshot_all(target));
    assert_same(&a, &b, ttl_tolerance_ms);
}

/// `assert_same`, except that a source key whose pttl was below `expired_below_ms` may be
/// absent on the target (it expired between the two reads, or during the migration).
pub fn assert_same_allow_expired<K: SnapKey>(
    source: &BTreeMap<K, KeyState>,
    target: &BTreeMap<K, KeyState>,
    ttl_tolerance_ms: i64,
    expired_below_ms: i64,
) {
    let opts = CompareOpts {
        ttl_tolerance_ms,
        expired_below_ms,
    };
    let d = diff(source, target, &opts);
    if !d.is_empty() {
        panic!("{}", format_diffs(&d, 20, source.len(), target.len()));
    }
}

/// Panics if a key that has a TTL on the source is permanent on the target (the one migration
/// bug that silently turns a cache into a leak). Keys missing on either side are ignored.
pub fn assert_no_permanent_where_ttl<K: SnapKey>(
    source: &BTreeMap<K, KeyState>,
    target: &BTreeMap<K, KeyState>,
) {
    let bad: Vec<Diff> = source
        .iter()
        .filter(|(_, s)| s.pttl >= 0)
        .filter_map(|(k, s)| {
            let t = target.get(k)?;
            (t.pttl == -1).then(|| Diff {
                kind: DiffKind::TtlLost,
                key: k.show(),
                detail: format!("pttl {} ms on source, permanent on target", s.pttl),
            })
        })
        .collect();
    if !bad.is_empty() {
        panic!(
            "{}",
            format_diffs(&bad, 20, source.len(), target.len()).replacen(
                "snapshots differ",
                "keys with a TTL became permanent",
                1
            )
        );
    }
}
