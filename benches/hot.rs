//! Micro-benchmarks of ferry's per-key hot paths (criterion).
//!
//! ```text
//! CARGO_TARGET_DIR=/work/targets/bench cargo bench --bench hot            # all (~1 min)
//! CARGO_TARGET_DIR=/work/targets/bench cargo bench --bench hot -- resp    # a group
//! ```
//! * `crc64`       — DUMP payload and RDB file CRC64 (Redis's Jones polynomial): byte-wise table
//!   (what `Crc::<u64>::new(&CRC_64_REDIS)` gives), slice-by-16 table (what `rdb::crc64` used
//!   until it measured this) and `ferry::rdb::crc64` (crc-fast, carry-less-multiply folding).
//! * `slot`        — cluster hash slot of a key (CRC16/XMODEM of the hash tag), per key.
//! * `resp_encode` — one RESTORE batch (`RESTORE key ttl payload ABSTTL REPLACE` × 1000) encoded
//!   into a reused buffer: with the generic `endpoint::resp::encode_command`, and with
//!   `encode_restore` (constant parts pre-encoded), which the writer uses.
//! * `resp_parse`  — the reply stream of one DUMP round trip (`TIME`, then `PTTL`+`DUMP` × 1000)
//!   parsed with `endpoint::resp::parse_reply`, whole and as it arrives in 16 KiB reads.
//!
//! Throughput is reported per byte (crc64, encode, parse) or per key (slot), so the figures can
//! be set against the end-to-end numbers of `scripts/bench.sh` (see docs/benchmarks.md).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use crc::{Crc, Table, CRC_16_XMODEM, CRC_64_REDIS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ferry::endpoint::resp::{encode_command, encode_restore, parse_reply};

/// Deterministic filler bytes (xorshift), so payloads do not compress or repeat trivially.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// A DUMP payload of a plain string value: type 0, length, bytes, RDB version, CRC64.
fn dump_payload(value: &[u8]) -> Bytes {
    let mut p = vec![0u8];
    let n = value.len();
    if n < 64 {
        p.push(n as u8);
    } else if n < 16384 {
        p.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        p.push(0x80);
        p.extend_from_slice(&(n as u32).to_be_bytes());
    }
    p.extend_from_slice(value);
    p.extend_from_slice(&9u16.to_le_bytes());
    let crc = Crc::<u64>::new(&CRC_64_REDIS).checksum(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(p)
}

/// `n` records of `size`-byte values: (key, payload, absolute TTL).
fn records(n: usize, size: usize) -> Vec<(Bytes, Bytes, i64)> {
    (0..n)
        .map(|i| {
            let key = Bytes::from(format!("key:{i:08}"));
            let payload = dump_payload(&filler(size, i as u64 + 1));
            let ttl = if i % 4 == 0 {
                1_900_000_000_000 + i as i64
            } else {
                0
            };
            (key, payload, ttl)
        })
        .collect()
}

fn bench_crc64(c: &mut Criterion) {
    let bytewise: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);
    let slice16: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);
    let mut g = c.benchmark_group("crc64");
    for size in [100usize, 10 * 1024, 1 << 20] {
        let data = filler(size, 7);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("bytewise", size), &data, |b, d| {
            b.iter(|| bytewise.checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("slice16", size), &data, |b, d| {
            b.iter(|| slice16.checksum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("ferry", size), &data, |b, d| {
            b.iter(|| ferry::rdb::crc64::checksum(black_box(d)))
        });
    }
    g.finish();
}

/// Redis Cluster's key slot: CRC16/XMODEM of the hash tag (the bytes between the first `{` and
/// the next `}`, when not empty), else of the whole key, modulo 16384. The same function as
/// `sink::slots::key_slot`, kept here so this file only needs `endpoint::resp` from the crate.
fn key_slot(crc16: &Crc<u16>, key: &[u8]) -> u16 {
    let tag = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16.checksum(tag) % 16384
}

fn bench_slot(c: &mut Criterion) {
    let crc16 = Crc::<u16>::new(&CRC_16_XMODEM);
    assert_eq!(key_slot(&crc16, b"123456789"), 0x31c3); // CRC16/XMODEM check value (< 16384)
    assert_eq!(
        key_slot(&crc16, b"{user1000}.following"),
        key_slot(&crc16, b"user1000")
    );
    let keys: Vec<Vec<u8>> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!("user:{i:08}:profile").into_bytes(),
            1 => format!("{{order:{i}}}:items").into_bytes(),
            _ => format!("session:{i:016x}").into_bytes(),
        })
        .collect();
    let mut g = c.benchmark_group("slot");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("key_slot_1000_keys", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for k in &keys {
                acc = acc.wrapping_add(key_slot(&crc16, black_box(k)) as u32);
            }
            acc
        })
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("resp_encode");
    for (n, size) in [(1000usize, 100usize), (100, 50 * 1024)] {
        let recs = records(n, size);
        let bytes: usize = recs.iter().map(|(k, p, _)| k.len() + p.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        let mut buf = BytesMut::new();
        g.bench_function(
            BenchmarkId::new("restore_batch", format!("{n}x{size}B")),
            |b| {
                b.iter(|| {
                    buf.clear();
                    let mut ttl_buf = itoa::Buffer::new();
                    for (key, payload, ttl) in &recs {
                        let ttl = ttl_buf.format(*ttl).as_bytes();
                        encode_command(
                            &mut buf,
                            &[
                                b"RESTORE".as_slice(),
                                key,
                                ttl,
                                payload,
                                b"ABSTTL",
                                b"REPLACE",
                            ],
                        );
                    }
                    black_box(buf.len())
                })
            },
        );
        // What the writer uses: the constant parts pre-encoded.
        g.bench_function(
            BenchmarkId::new("restore_batch_preencoded", format!("{n}x{size}B")),
            |b| {
                b.iter(|| {
                    buf.clear();
                    let mut ttl_buf = itoa::Buffer::new();
                    for (key, payload, ttl) in &recs {
                        let ttl = ttl_buf.format(*ttl).as_bytes();
                        encode_restore(&mut buf, key, ttl, payload, true);
                    }
                    black_box(buf.len())
                })
            },
        );
    }
    g.finish();
}

/// The bytes a server sends back for `TIME` + (`PTTL`, `DUMP`) per record.
fn dump_replies(recs: &[(Bytes, Bytes, i64)]) -> Vec<u8> {
    let mut out = b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n".to_vec();
    for (i, (_, payload, _)) in recs.iter().enumerate() {
        if i % 4 == 0 {
            out.extend_from_slice(b":86400000\r\n");
        } else {
            out.extend_from_slice(b":-1\r\n");
        }
        out.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("resp_parse");
    for (n, size) in [(1000usize, 100usize), (100, 50 * 1024)] {
        let recs = records(n, size);
        let wire = dump_replies(&recs);
        let want = 1 + 2 * n;
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(
            BenchmarkId::new("dump_pipeline_whole", format!("{n}x{size}B")),
            |b| {
                b.iter(|| {
                    let mut buf = BytesMut::from(&wire[..]);
                    let mut got = 0;
                    while let Some(r) = parse_reply(&mut buf).unwrap() {
                        black_box(&r);
                        got += 1;
                    }
                    assert_eq!(got, want);
                })
            },
        );
        // As `Connection::run` sees it: bytes arrive in reads of at most 16 KiB, and the parser
        // is called after each read.
        g.bench_function(
            BenchmarkId::new("dump_pipeline_16k_reads", format!("{n}x{size}B")),
            |b| {
                b.iter(|| {
                    let mut buf = BytesMut::with_capacity(64 * 1024);
                    let mut got = 0;
                    for chunk in wire.chunks(16 * 1024) {
                        buf.extend_from_slice(chunk);
                        while let Some(r) = parse_reply(&mut buf).unwrap() {
                            black_box(&r);
                            got += 1;
                        }
                    }
                    assert_eq!(got, want);
                })
            },
        );
    }
    // A SCAN page reply (cursor + 1000 keys), whole.
    let mut scan = b"*2\r\n$7\r\n1234567\r\n*1000\r\n".to_vec();
    for i in 0..1000 {
        let k = format!("key:{i:08}");
        scan.extend_from_slice(format!("${}\r\n{k}\r\n", k.len()).as_bytes());
    }
    g.throughput(Throughput::Bytes(scan.len() as u64));
    g.bench_function("scan_page_1000_keys", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&scan[..]);
            black_box(parse_reply(&mut buf).unwrap().unwrap())
        })
    });
    g.finish();
}

criterion_group! {
    name = hot;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench_crc64, bench_slot, bench_encode, bench_parse
}
criterion_main!(hot);
