//! Big keys of every type for the #14 tests: a hash, list, zset (scores ±inf and values that
//! need all 17 digits), set, string and, on 5.0+, a stream with two groups, consumers (one with
//! nothing pending) and pending entries with delivery counts above one.
#![allow(dead_code)] // each test binary uses a different part of this module

use redis::Connection;

/// How many elements each big key gets (bytes for the string, entries for the stream).
#[derive(Debug, Clone, Copy)]
pub struct BigSizes {
    pub hash: usize,
    pub list: usize,
    pub zset: usize,
    pub set: usize,
    pub string: usize,
    pub stream: usize,
}

/// The names of the big keys [`seed_big`] writes (the stream only where it was written).
pub const BIG_KEYS: [&str; 6] = [
    "big:hash",
    "big:list",
    "big:zset",
    "big:set",
    "big:string",
    "big:stream",
];

/// A score that needs all 17 significant digits to round-trip, or ±inf, for member `i`.
pub fn score(i: usize) -> f64 {
    match i {
        0 => f64::INFINITY,
        1 => f64::NEG_INFINITY,
        2 => 0.1,
        3 => 1.0 / 3.0,
        _ => i as f64 * 1.000_000_000_000_000_2 + 0.1,
    }
}

/// A string of `n` bytes that is not one repeated byte (so a misplaced range shows).
pub fn big_string(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ (i / 251 % 7) as u8)
        .collect()
}

/// Writes a hash of `fields` fields (`f:PART:I`) of 100-byte values under `key`, 1,000 fields
/// per HSET. `random` values do not compress, so its DUMP payload stays as big as the hash
/// (a repeated byte would shrink under LZF).
pub fn big_hash(conn: &mut Connection, key: &str, fields: usize, random: bool) {
    for part in 0..fields.div_ceil(1_000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key);
        for i in 0..1_000.min(fields - part * 1_000) {
            let value: Vec<u8> = if random {
                (0..100).map(|_| rand::random::<u8>()).collect()
            } else {
                vec![b'v'; 100]
            };
            cmd.arg(format!("f:{part}:{i}")).arg(value);
        }
        let () = cmd.query(conn).expect("HSET");
    }
}

/// Writes the big keys into the selected DB of `conn`; `streams`: whether the server has them.
/// The hash and the string get a TTL of an hour.
pub fn seed_big(conn: &mut Connection, sizes: BigSizes, streams: bool) {
    let batch = 1_000;
    for start in (0..sizes.hash.max(sizes.list).max(sizes.zset).max(sizes.set)).step_by(batch) {
        let mut p = redis::pipe();
        for i in start..start + batch {
            if i < sizes.hash {
                p.cmd("HSET")
                    .arg("big:hash")
                    .arg(format!("field:{i}"))
                    .arg(format!("value-{i}-{}", "h".repeat(i % 40)))
                    .ignore();
            }
            if i < sizes.list {
                p.cmd("RPUSH")
                    .arg("big:list")
                    .arg(format!("item-{i}-{}", "l".repeat(i % 30)))
                    .ignore();
            }
            if i < sizes.zset {
                let s = score(i);
                let text = if s.is_infinite() {
                    if s > 0.0 { "+inf" } else { "-inf" }.to_string()
                } else {
                    format!("{s:.17e}")
                };
                p.cmd("ZADD")
                    .arg("big:zset")
                    .arg(text)
                    .arg(format!("member:{i}"))
                    .ignore();
            }
            if i < sizes.set {
                p.cmd("SADD")
                    .arg("big:set")
                    .arg(format!("s:{i}:{}", "s".repeat(i % 20)))
                    .ignore();
            }
        }
        p.query::<()>(conn).expect("seed big keys");
    }
    let value = big_string(sizes.string);
    for part in value.chunks(1 << 20) {
        redis::cmd("APPEND")
            .arg("big:string")
            .arg(part)
            .query::<()>(conn)
            .expect("APPEND");
    }
    for key in ["big:hash", "big:string"] {
        redis::cmd("PEXPIRE")
            .arg(key)
            .arg(3_600_000)
            .query::<()>(conn)
            .expect("PEXPIRE");
    }
    if streams {
        seed_stream(conn, sizes.stream);
    }
}

fn seed_stream(conn: &mut Connection, n: usize) {
    for start in (0..n).step_by(1_000) {
        let mut p = redis::pipe();
        for i in start..(start + 1_000).min(n) {
            p.cmd("XADD")
                .arg("big:stream")
                .arg(format!("{}-{}", 1_000 + i / 3, i % 3))
                .arg("f")
                .arg(format!("v{i}"))
                .arg("g")
                .arg("x".repeat(i % 17))
                .ignore();
        }
        p.query::<()>(conn).expect("XADD");
    }
    let q = |conn: &mut Connection, args: &[&str]| {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query::<redis::Value>(conn)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    q(conn, &["XGROUP", "CREATE", "big:stream", "g1", "0"]);
    q(conn, &["XGROUP", "CREATE", "big:stream", "g2", "0"]);
    let read = |conn: &mut Connection, g: &str, c: &str, n: usize| {
        let n = n.to_string();
        let args = [
            "XREADGROUP",
            "GROUP",
            g,
            c,
            "COUNT",
            &n,
            "STREAMS",
            "big:stream",
            ">",
        ];
        q(conn, &args);
    };
    read(conn, "g1", "alice", 700);
    read(conn, "g1", "bob", 300);
    read(conn, "g2", "carol", 50);
    read(conn, "g2", "dave", 5);
    // dave acknowledges all: a consumer with nothing pending.
    let dave: redis::Value = redis::cmd("XPENDING")
        .arg("big:stream")
        .arg("g2")
        .arg("-")
        .arg("+")
        .arg(100)
        .arg("dave")
        .query(conn)
        .expect("XPENDING dave");
    if let redis::Value::Array(items) = dave {
        for item in items {
            if let redis::Value::Array(parts) = item {
                if let Some(redis::Value::BulkString(id)) = parts.first() {
                    redis::cmd("XACK")
                        .arg("big:stream")
                        .arg("g2")
                        .arg(id.as_slice())
                        .query::<()>(conn)
                        .expect("XACK");
                }
            }
        }
    }
    // Deliveries above one: bob claims some of alice's twice.
    for id in ["1000-1", "1001-0", "1010-2"] {
        for _ in 0..2 {
            q(conn, &["XCLAIM", "big:stream", "g1", "bob", "0", id]);
        }
    }
    // A last id beyond the last entry.
    let last = format!("{}-5", 1_000 + n / 3 + 10);
    q(conn, &["XADD", "big:stream", &last, "f", "gone"]);
    q(conn, &["XDEL", "big:stream", &last]);
}
