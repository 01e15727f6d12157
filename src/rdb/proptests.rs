//! Property tests: the reader and decoder never panic on arbitrary or mutated input, and
//! encoding a value then decoding it gives the value back, for every target version.

use proptest::prelude::*;

use super::decode::{decode_payload, decode_value};
use super::elements::{assemble, ElementReader};
use super::encode::{encode_value, transcode_payload};
use super::reader::{read_all, Item, RdbReader, ReaderOptions};
use super::value::{HashField, Stream, StreamGroup, StreamId, Value};
use super::writer::RdbWriter;
use super::{payload, types};

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        "[0-9]{1,19}".prop_map(String::into_bytes),
        Just(b"-12".to_vec()),
        prop::collection::vec(Just(b'a'), 0..300),
    ]
}

fn value_strategy(hash_ttl: bool) -> impl Strategy<Value = Value> {
    let field = (
        bytes_strategy(),
        bytes_strategy(),
        prop::option::of(1i64..(1 << 47)),
    )
        .prop_map(move |(field, value, e)| HashField {
            field,
            value,
            expire_at_ms: if hash_ttl { e } else { None },
        });
    let id = (0u64..1_000_000, 0u64..10).prop_map(|(ms, seq)| StreamId { ms, seq });
    let stream = (
        prop::collection::btree_map(
            id,
            prop::collection::vec((bytes_strategy(), bytes_strategy()), 1..4),
            0..250,
        ),
        prop::collection::vec(bytes_strategy(), 0..3),
    )
        .prop_map(|(entries, consumers)| {
            let entries: Vec<_> = entries.into_iter().collect();
            let last_id = entries.last().map(|e| e.0).unwrap_or_default();
            let mut consumers: Vec<Vec<u8>> = consumers;
            consumers.sort();
            consumers.dedup();
            let pending = match (entries.first(), consumers.first()) {
                (Some(e), Some(c)) => vec![(e.0, c.clone(), 3)],
                _ => vec![],
            };
            Value::Stream(Box::new(Stream {
                entries,
                last_id,
                groups: vec![StreamGroup {
                    name: b"g".to_vec(),
                    last_delivered: last_id,
                    pending,
                    consumers,
                }],
            }))
        });
    prop_oneof![
        bytes_strategy().prop_map(Value::String),
        prop::collection::vec(bytes_strategy(), 0..20).prop_map(Value::List),
        prop::collection::vec(bytes_strategy(), 0..20).prop_map(Value::Set),
        prop::collection::vec(field, 0..20).prop_map(Value::Hash),
        prop::collection::vec(
            (
                bytes_strategy(),
                prop_oneof![
                    any::<f64>().prop_filter("no NaN", |f| !f.is_nan()),
                    Just(f64::INFINITY),
                    Just(-0.0)
                ]
            ),
            0..20
        )
        .prop_map(Value::ZSet),
        stream,
    ]
}

/// A small valid file with one key of each kind.
fn sample_file() -> Vec<u8> {
    let mut w = RdbWriter::new(Vec::new(), 11).unwrap();
    w.aux(b"redis-ver", b"7.2.0").unwrap();
    w.select_db(0).unwrap();
    let values = [
        Value::String(b"hello".to_vec()),
        Value::List(vec![b"a".to_vec(), b"b".to_vec()]),
        Value::Set(vec![b"x".to_vec()]),
        Value::ZSet(vec![(b"m".to_vec(), 1.5)]),
        Value::Hash(vec![HashField {
            field: b"f".to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: None,
        }]),
    ];
    for (i, v) in values.iter().enumerate() {
        let p = encode_value(v, 11).unwrap();
        w.key_from_payload(
            format!("k{i}").as_bytes(),
            &p,
            (i == 2).then_some(1_800_000_000_000),
        )
        .unwrap();
    }
    let lp = {
        let mut l = super::listpack::Writer::new();
        l.push_str(b"a");
        l.push_int(7);
        l.finish()
    };
    let mut raw = Vec::new();
    super::string::write_raw(&mut raw, &lp);
    w.key(b"lp", types::SET_LISTPACK, &raw, None).unwrap();
    w.finish().unwrap()
}

fn read_everything(bytes: &[u8], known: bool) {
    let opts = ReaderOptions {
        known_size: known.then_some(bytes.len() as u64),
        validate_values: true,
        ..ReaderOptions::default()
    };
    if let Ok(r) = RdbReader::with_options(bytes, opts) {
        for item in r {
            match item {
                Ok(Item::Record(k)) => {
                    let _ = decode_payload(&k.record.payload);
                }
                Ok(_) => {}
                Err(e) => {
                    assert!(e.offset().is_some());
                    break;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(mut tail in prop::collection::vec(any::<u8>(), 0..400), v in 1u16..13) {
        let mut f = format!("REDIS{v:04}").into_bytes();
        f.append(&mut tail);
        read_everything(&f, true);
        read_everything(&f, false);
    }

    #[test]
    fn reader_never_panics_on_mutated_files(muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut f = sample_file();
        for (i, b) in muts {
            let i = i.index(f.len());
            f[i] = b;
        }
        let n = cut.index(f.len() + 1);
        read_everything(&f, true);
        read_everything(&f[..n], false);
    }

    #[test]
    fn decoders_never_panic(t in 0u8..30, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_value(t, &body);
        let p = payload::build(t, &body, 11);
        let _ = decode_payload(&p);
        let _ = transcode_payload(&p, 10);
        let _ = super::walk::value_len(t, &body, types::Flavor::Redis);
        let _ = super::walk::value_len(t, &body, types::Flavor::Valkey);
    }

    #[test]
    fn encode_then_decode_round_trips(v in value_strategy(false), target in prop::sample::select(vec![9u16, 10, 11, 12, 80])) {
        let p = encode_value(&v, target).unwrap();
        prop_assert_eq!(payload::footer_version(&p), Some(target));
        prop_assert_eq!(decode_payload(&p).unwrap(), v);
    }

    /// A value read element by element (strings in pieces of `max`) is the value decoded whole.
    #[test]
    fn elements_make_up_the_whole_value(v in value_strategy(false), target in prop::sample::select(vec![7u16, 9, 10, 11, 12]), max in 1usize..3000) {
        let Ok(p) = encode_value(&v, target) else {
            return Ok(());
        };
        let (t, raw, _) = payload::split(&p).unwrap();
        let mut r = ElementReader::new(raw, t, 0, raw.len() as u64).unwrap();
        let mut elems = Vec::new();
        while let Some(e) = r.next(max).unwrap() {
            elems.push(e);
        }
        prop_assert_eq!(assemble(t, elems), decode_payload(&p).unwrap());
    }

    #[test]
    fn element_reader_never_panics(t in 0u8..22, body in prop::collection::vec(any::<u8>(), 0..300), max in 1usize..100) {
        if let Ok(mut r) = ElementReader::new(&body[..], t, 0, body.len() as u64) {
            while let Ok(Some(_)) = r.next(max) {}
        }
    }

    #[test]
    fn hash_field_ttls_round_trip(v in value_strategy(true), target in prop::sample::select(vec![12u16, 80])) {
        if let Value::Hash(_) = v {
            let p = encode_value(&v, target).unwrap();
            prop_assert_eq!(decode_payload(&p).unwrap(), v);
        }
    }
}

#[test]
fn old_targets_get_string_scores_and_refuse_streams() {
    let z = Value::ZSet(vec![
        (b"a".to_vec(), 1e300),
        (b"b".to_vec(), f64::NEG_INFINITY),
        (b"c".to_vec(), 2.5),
    ]);
    let p = encode_value(&z, 7).unwrap();
    assert_eq!(p[0], types::ZSET);
    assert_eq!(decode_payload(&p).unwrap(), z);
    let s = Value::Stream(Box::default());
    let e = encode_value(&s, 8).unwrap_err();
    assert!(e.to_string().contains("stream needs logical commands"));
    let h = Value::Hash(vec![HashField {
        field: b"f".to_vec(),
        value: b"v".to_vec(),
        expire_at_ms: Some(5),
    }]);
    assert!(encode_value(&h, 11).is_err());
    assert!(encode_value(&Value::ZSet(vec![(b"n".to_vec(), f64::NAN)]), 11).is_err());
}

#[test]
fn transcode_downgrades_only_when_needed() {
    // A Valkey 8 / Redis 7.2 set-listpack payload (RDB 11) for a Redis 7.0 target (RDB 10).
    let mut lp = super::listpack::Writer::new();
    lp.push_str(b"a");
    lp.push_int(42);
    let mut raw = Vec::new();
    super::string::write_raw(&mut raw, &lp.finish());
    let p11 = payload::build(types::SET_LISTPACK, &raw, 11);
    assert_eq!(transcode_payload(&p11, 11).unwrap().as_ref(), p11.as_ref());
    let p10 = transcode_payload(&p11, 10).unwrap();
    assert_eq!(p10[0], types::SET);
    assert_eq!(payload::footer_version(&p10), Some(10));
    assert_eq!(
        decode_payload(&p10).unwrap(),
        Value::Set(vec![b"a".to_vec(), b"42".to_vec()])
    );
    // Redis 12 payloads are refused by Valkey 9 (foreign range): re-encoded as RDB 80.
    let p12 = payload::build(types::STRING, b"\x01x", 12);
    let pv = transcode_payload(&p12, 80).unwrap();
    assert_eq!(payload::footer_version(&pv), Some(80));
}

#[test]
fn transcode_stream_v3_to_v2_keeps_metadata() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rdb/librdb/stream_v11.rdb"
    ))
    .unwrap();
    let items = read_all(&bytes).unwrap();
    let rec = items
        .iter()
        .find_map(|i| {
            if let Item::Record(r) = i {
                Some(r.record.clone())
            } else {
                None
            }
        })
        .unwrap();
    let p10 = transcode_payload(&rec.payload, 10).unwrap();
    assert_eq!(p10[0], types::STREAM_LISTPACKS_2);
    assert_eq!(
        decode_payload(&p10).unwrap(),
        decode_payload(&rec.payload).unwrap()
    );
    let (_, v10, _) = payload::split(&p10).unwrap();
    let (_, v11, _) = payload::split(&rec.payload).unwrap();
    let d10 = super::stream::decode(
        &mut super::cursor::Cursor::new(v10, 0),
        types::STREAM_LISTPACKS_2,
    )
    .unwrap();
    let d11 = super::stream::decode(
        &mut super::cursor::Cursor::new(v11, 0),
        types::STREAM_LISTPACKS_3,
    )
    .unwrap();
    assert_eq!(d10.entries_added, d11.entries_added);
    assert_eq!(d10.groups[0].pending, d11.groups[0].pending);
    assert_eq!(d10.groups[0].entries_read, d11.groups[0].entries_read);
}

#[test]
fn writer_output_reads_back() {
    let f = sample_file();
    let items = read_all(&f).unwrap();
    let keys = items
        .iter()
        .filter(|i| matches!(i, Item::Record(_)))
        .count();
    assert_eq!(keys, 6);
    assert!(matches!(
        items.last(),
        Some(Item::End { checksum: Some(_) })
    ));
}
