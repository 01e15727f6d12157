//! Canonical digest throughput (criterion): the CPU cost verification pays per key.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/targets/bench cargo bench --bench digest
//! ```
//! * `digest_value` — canonical digest of an already decoded value, per type.
//! * `from_payload` — what each key costs on each side: decode a DUMP payload (CRC64 check
//!   included) and digest it, for payloads in old (RDB 9, Redis 5–6.2) and new (RDB 11,
//!   Valkey 8) encodings.
//! * `bucket_add`   — adding a key's state to its bucket aggregate (slot + two TTL-grid hashes).
//!
//! Throughput is reported in keys (elements = keys), over a mix shaped like a typical cache:
//! mostly short strings, some small hashes, lists, sets and zsets.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ferry::rdb::encode::encode_value;
use ferry::rdb::value::{HashField, Value};
use ferry::verify::bucket::{bucket_of, DbAggregates, TtlGrid};
use ferry::verify::digest::digest_value;
use ferry::verify::state::KeyState;

fn bytes(s: String) -> Vec<u8> {
    s.into_bytes()
}

/// One value of each common shape, indexed by `i`.
fn value(i: usize) -> Value {
    match i % 10 {
        0..=5 => Value::String(bytes(format!("value-{i}-{}", "x".repeat(i % 64)))),
        6 => Value::Hash(
            (0..8)
                .map(|f| HashField {
                    field: bytes(format!("field-{f}")),
                    value: bytes(format!("{}", i * f)),
                    expire_at_ms: None,
                })
                .collect(),
        ),
        7 => Value::List((0..10).map(|e| bytes(format!("item-{e}-{i}"))).collect()),
        8 => Value::Set(
            (0..10)
                .map(|e| bytes(format!("{}", e * 1000 + i)))
                .collect(),
        ),
        _ => Value::ZSet(
            (0..10)
                .map(|e| (bytes(format!("member-{e}")), e as f64 * 1.5))
                .collect(),
        ),
    }
}

fn bench(c: &mut Criterion) {
    const KEYS: usize = 1000;
    let values: Vec<Value> = (0..KEYS).map(value).collect();

    let mut g = c.benchmark_group("digest_value");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("mix", |b| {
        b.iter(|| {
            for v in &values {
                black_box(digest_value(black_box(v)));
            }
        })
    });
    g.finish();

    let mut one = c.benchmark_group("digest_value_one");
    one.throughput(Throughput::Elements(1));
    for (name, v) in [
        ("string-32B", Value::String(vec![b's'; 32])),
        (
            "hash-100-fields",
            Value::Hash(
                (0..100)
                    .map(|f| HashField {
                        field: bytes(format!("field-{f}")),
                        value: bytes(format!("value-{f}")),
                        expire_at_ms: None,
                    })
                    .collect(),
            ),
        ),
        (
            "zset-100-members",
            Value::ZSet(
                (0..100)
                    .map(|m| (bytes(format!("member-{m}")), m as f64))
                    .collect(),
            ),
        ),
    ] {
        one.bench_function(name, |b| b.iter(|| black_box(digest_value(black_box(&v)))));
    }
    one.finish();

    let mut g = c.benchmark_group("from_payload");
    g.throughput(Throughput::Elements(KEYS as u64));
    for rdb in [9u16, 11] {
        let payloads: Vec<Bytes> = values
            .iter()
            .map(|v| encode_value(v, rdb).expect("encode"))
            .collect();
        g.bench_with_input(
            BenchmarkId::new("mix", format!("rdb{rdb}")),
            &payloads,
            |b, p| {
                b.iter(|| {
                    for payload in p {
                        black_box(KeyState::from_payload(black_box(payload), Some(1)));
                    }
                })
            },
        );
    }
    g.finish();

    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| bytes(format!("user:{i}:profile")))
        .collect();
    let states: Vec<KeyState> = values
        .iter()
        .map(|v| KeyState::from_payload(&encode_value(v, 9).expect("encode"), None).0)
        .collect();
    let mut g = c.benchmark_group("bucket_add");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("mix", |b| {
        let mut agg = DbAggregates::new(TtlGrid::new(1000));
        b.iter(|| {
            for (k, s) in keys.iter().zip(&states) {
                agg.add(k, bucket_of(k), s);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
