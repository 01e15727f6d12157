//! RDB reader throughput and CRC64 speed.
//!
//! The reader bench generates an RDB file in memory (default 128 MiB; set
//! `FERRY_BENCH_RDB_MB` to change it) with a realistic mix: short strings, 1 KiB strings, hashes
//! and sets as listpack blobs, plain lists, and some expiring keys. It measures the migrate path
//! (walk + copy into payloads) and the validating path (walk + full decode of every value).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry::rdb::crc64;
use ferry::rdb::length::write_length;
use ferry::rdb::listpack;
use ferry::rdb::reader::{Item, RdbReader, ReaderOptions};
use ferry::rdb::string::write_raw;
use ferry::rdb::types;
use ferry::rdb::writer::RdbWriter;

fn generate(target_bytes: usize) -> Vec<u8> {
    let mut w = RdbWriter::new(Vec::with_capacity(target_bytes + (1 << 20)), 11).expect("writer");
    w.aux(b"redis-ver", b"7.2.4").expect("aux");
    w.select_db(0).expect("select");
    let big = vec![b'v'; 1024];
    let mut i: u64 = 0;
    let mut value = Vec::new();
    loop {
        let key = format!("key:{i:012}");
        value.clear();
        let (t, expire) = match i % 8 {
            0..=2 => {
                write_raw(
                    &mut value,
                    format!("value-{i}-{}", "x".repeat(80)).as_bytes(),
                );
                (types::STRING, None)
            }
            3 => {
                write_raw(&mut value, &big);
                (types::STRING, Some(1_900_000_000_000 + i as i64))
            }
            4 | 5 => {
                let mut lp = listpack::Writer::new();
                for f in 0..16 {
                    lp.push_str(format!("field{f}").as_bytes());
                    lp.push_str(format!("value-{i}-{f}").as_bytes());
                }
                write_raw(&mut value, &lp.finish());
                (types::HASH_LISTPACK, None)
            }
            6 => {
                let mut lp = listpack::Writer::new();
                for m in 0..32 {
                    lp.push_int((i * 32 + m) as i64);
                }
                write_raw(&mut value, &lp.finish());
                (types::SET_LISTPACK, None)
            }
            _ => {
                write_length(&mut value, 20);
                for e in 0..20 {
                    write_raw(&mut value, format!("element-{e}-{i}").as_bytes());
                }
                (types::LIST, None)
            }
        };
        w.key(key.as_bytes(), t, &value, expire).expect("key");
        i += 1;
        if i % 1024 == 0 {
            // Cheap size check without finishing the writer.
            let approx = i as usize * 290;
            if approx >= target_bytes {
                break;
            }
        }
    }
    w.finish().expect("finish")
}

fn read_file(bytes: &[u8], validate: bool) -> usize {
    let opts = ReaderOptions {
        known_size: Some(bytes.len() as u64),
        validate_values: validate,
        ..ReaderOptions::default()
    };
    let mut n = 0;
    for item in RdbReader::with_options(bytes, opts).expect("header") {
        if let Item::Record(r) = item.expect("item") {
            n += r.record.payload.len();
        }
    }
    n
}

fn bench_reader(c: &mut Criterion) {
    let mb: usize = std::env::var("FERRY_BENCH_RDB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let file = generate(mb << 20);
    let mut g = c.benchmark_group("rdb_reader");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("walk_to_payloads", file.len()),
        &file,
        |b, f| b.iter(|| black_box(read_file(f, false))),
    );
    g.bench_with_input(
        BenchmarkId::new("walk_and_decode", file.len()),
        &file,
        |b, f| b.iter(|| black_box(read_file(f, true))),
    );
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc64");
    for size in [100usize, 4096, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("payload", size), &data, |b, d| {
            b.iter(|| black_box(crc64::checksum(d)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_reader, bench_crc);
criterion_main!(benches);
