//! The RDB reader and decoder against real RDB files from six public projects.
//!
//! `tests/data/rdb/` holds a copied subset (see its LICENSES.md); every file there must either
//! parse completely (reader + full decode of every value) or, for the deliberately broken ones,
//! fail with the expected error naming an offset. Where a project ships expected outputs they are
//! compared: librdb logical (`*_data.json`) and raw (`*_raw.json`) JSON, redis-rdb-cli RESTORE
//! payloads (`all.rdb.dump`), rdb-rs RESP protocol dumps and hdt3213/rdb JSON lines.
//! `all_shared_corpus_files` additionally runs over the full corpus in `../shared/rdb-corpus`
//! (or `$FERRY_RDB_CORPUS`) when it is present.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ferry::rdb::decode::decode_payload;
use ferry::rdb::error::RdbError;
use ferry::rdb::reader::{read_all, Item, RdbReader, ReaderOptions};
use ferry::rdb::value::Value;
use ferry::rdb::{payload, walk};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rdb")
}

fn shared_corpus() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FERRY_RDB_CORPUS").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rdb-corpus")),
        Some(PathBuf::from("/work/shared/rdb-corpus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("INDEX.tsv").is_file())
}

/// A key as read from a file.
#[derive(Debug, Clone)]
struct Key {
    db: u32,
    key: Vec<u8>,
    payload: Vec<u8>,
    value: Value,
    expire_at_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Parsed {
    keys: Vec<Key>,
    aux: Vec<(Vec<u8>, Vec<u8>)>,
    functions: Vec<Vec<u8>>,
    empty_keys: usize,
    items: Vec<Item>,
}

/// Read a file completely and decode every value; any failure is returned.
fn parse(bytes: &[u8]) -> Result<Parsed, RdbError> {
    // The validating reader first, so errors carry file offsets.
    let opts = ReaderOptions {
        known_size: Some(bytes.len() as u64),
        validate_values: true,
        ..Default::default()
    };
    let validated = RdbReader::with_options(bytes, opts)?.collect::<Result<Vec<_>, _>>()?;
    let items = read_all(bytes)?;
    assert_eq!(validated, items);
    let mut p = Parsed::default();
    for it in &items {
        match it {
            Item::Record(r) => {
                let rec = &r.record;
                let value = decode_payload(&rec.payload)?;
                // The walker and the decoder must agree on the value's extent.
                let (t, v, ver) = payload::split(&rec.payload)?;
                let (n, empty) =
                    walk::value_len(t, v, ferry::rdb::types::Flavor::from_version(ver))?;
                assert_eq!(n, v.len());
                assert!(!empty);
                p.keys.push(Key {
                    db: rec.db,
                    key: rec.key.to_vec(),
                    payload: rec.payload.to_vec(),
                    value,
                    expire_at_ms: rec.expire_at_ms,
                });
            }
            Item::Aux { key, value } => p.aux.push((key.clone(), value.clone())),
            Item::Function(code) => p.functions.push(code.clone()),
            Item::FunctionPreGa { code, .. } => p.functions.push(code.clone()),
            Item::EmptyKey { .. } => p.empty_keys += 1,
            _ => {}
        }
    }
    p.items = items;
    Ok(p)
}

/// Files that must fail, and how.
fn expected_failure(rel: &str) -> Option<fn(&RdbError) -> bool> {
    match rel {
        "librdb/future_v19.rdb" => {
            Some(|e| matches!(e, RdbError::UnsupportedVersion { version: 99, .. }))
        }
        "librdb/invalid_chksum_v8.rdb" => Some(|e| matches!(e, RdbError::CrcMismatch { .. })),
        "redis/corrupt_ziplist.rdb" => Some(|e| {
            matches!(
                e,
                RdbError::Corrupt { .. }
                    | RdbError::LengthPastEnd { .. }
                    | RdbError::Truncated { .. }
            )
        }),
        _ => None,
    }
}

/// Check one file against its expected outcome; returns a one-line summary.
fn check_file(root: &Path, rel: &str) -> String {
    let bytes = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let r = parse(&bytes);
    match (expected_failure(rel), r) {
        (None, Ok(p)) => {
            if rel == "redis/corrupt_empty_keys.rdb" {
                assert_eq!((p.keys.len(), p.empty_keys), (0, 9), "{rel}");
            }
            format!(
                "ok   {rel}: {} keys, {} empty skipped",
                p.keys.len(),
                p.empty_keys
            )
        }
        (None, Err(e)) => panic!("{rel} should parse, got: {e}"),
        (Some(_), Ok(_)) => panic!("{rel} must fail but parsed"),
        (Some(pred), Err(e)) => {
            assert!(pred(&e), "{rel}: wrong error kind: {e}");
            assert!(e.offset().is_some(), "{rel}: error without offset: {e}");
            format!("FAIL {rel} (expected): {e}")
        }
    }
}

fn rdb_files(root: &Path) -> Vec<String> {
    let index = std::fs::read_to_string(root.join("INDEX.tsv")).expect("INDEX.tsv");
    index
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(format!("{}/{}", f.next()?, f.next()?))
        })
        .collect()
}

#[test]
fn copied_corpus_files_parse_or_fail_precisely() {
    let root = data_dir();
    let files = rdb_files(&root);
    assert!(files.len() > 100, "copied corpus has {} files", files.len());
    for f in &files {
        println!("{}", check_file(&root, f));
    }
}

#[test]
fn all_shared_corpus_files() {
    let Some(root) = shared_corpus() else {
        println!("shared corpus not found; skipped");
        return;
    };
    let files = rdb_files(&root);
    assert_eq!(files.len(), 153);
    for f in &files {
        println!("{}", check_file(&root, f));
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical comparison form.

/// An order-insensitive canonical form of a value, as librdb compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Canon {
    Bytes(Vec<u8>),
    Num(String),
    List(Vec<Canon>),
    Map(BTreeMap<Vec<u8>, Canon>),
}

fn score_canon(s: f64) -> Canon {
    Canon::Num(if s == 0.0 {
        "0".into()
    } else {
        format!("{s:e}")
    })
}

fn canon(v: &Value) -> Canon {
    let sorted = |items: &[Vec<u8>]| {
        let mut l: Vec<Canon> = items.iter().cloned().map(Canon::Bytes).collect();
        l.sort();
        Canon::List(l)
    };
    match v {
        Value::String(s) => Canon::Bytes(s.clone()),
        Value::List(l) | Value::Set(l) => sorted(l),
        Value::Hash(h) => Canon::Map(
            h.iter()
                .map(|f| (f.field.clone(), Canon::Bytes(f.value.clone())))
                .collect(),
        ),
        Value::ZSet(z) => Canon::Map(
            z.iter()
                .map(|(m, s)| (m.clone(), score_canon(*s)))
                .collect(),
        ),
        Value::Stream(s) => {
            let mut entries: Vec<Canon> = s
                .entries
                .iter()
                .map(|(id, fields)| {
                    let mut m = BTreeMap::new();
                    m.insert(
                        b"id".to_vec(),
                        Canon::Bytes(format!("{}-{}", id.ms, id.seq).into_bytes()),
                    );
                    m.insert(
                        b"items".to_vec(),
                        Canon::Map(
                            fields
                                .iter()
                                .map(|(f, v)| (f.clone(), Canon::Bytes(v.clone())))
                                .collect(),
                        ),
                    );
                    Canon::Map(m)
                })
                .collect();
            entries.sort();
            let mut m = BTreeMap::new();
            m.insert(b"entries".to_vec(), Canon::List(entries));
            Canon::Map(m)
        }
        Value::Module { name, raw } => Canon::Bytes(
            format!(
                "<Content of Module '{name}'. Occupies a serialized size of {} bytes>",
                raw.len()
            )
            .into_bytes(),
        ),
    }
}

/// librdb JSON strings are byte strings: code points ≤ 0xFF are bytes.
fn json_bytes(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or_else(|_| panic!("code point {c:?} > 0xFF")))
        .collect()
}

fn json_canon(v: &serde_json::Value, score_map: bool) -> Canon {
    match v {
        serde_json::Value::String(s) if score_map => {
            let f: f64 = match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                other => other
                    .parse()
                    .unwrap_or_else(|_| panic!("bad score {other}")),
            };
            score_canon(f)
        }
        serde_json::Value::String(s) => Canon::Bytes(json_bytes(s)),
        serde_json::Value::Number(n) => Canon::Bytes(n.to_string().into_bytes()),
        serde_json::Value::Array(a) => {
            let mut l: Vec<Canon> = a.iter().map(|x| json_canon(x, false)).collect();
            l.sort();
            Canon::List(l)
        }
        serde_json::Value::Object(o) => Canon::Map(
            o.iter()
                .map(|(k, x)| (json_bytes(k), json_canon(x, false)))
                .collect(),
        ),
        other => panic!("unexpected JSON {other}"),
    }
}

fn parse_fragment(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = text.trim();
    let wrapped = if t.starts_with('[') {
        t.to_string()
    } else {
        format!("{{{t}}}")
    };
    serde_json::from_str(&wrapped).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// librdb data-level JSON: per DB, key -> logical value (order-insensitive).
fn check_librdb_data(p: &Parsed, json: &serde_json::Value, what: &str) {
    let dbs: Vec<&serde_json::Map<String, serde_json::Value>> = match json {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_object()).collect(),
        serde_json::Value::Object(o) => vec![o],
        _ => panic!("{what}: unexpected JSON shape"),
    };
    let mut want: BTreeMap<Vec<u8>, Canon> = BTreeMap::new();
    for db in dbs {
        for (k, v) in db {
            match k.as_str() {
                "__aux__" => {
                    let obj = v.as_object().expect("aux object");
                    for (ak, av) in obj {
                        let got = p.aux.iter().find(|(k, _)| k == &json_bytes(ak));
                        let got = got.unwrap_or_else(|| panic!("{what}: missing aux {ak}"));
                        assert_eq!(
                            got.1,
                            json_bytes(av.as_str().expect("aux string")),
                            "{what}: aux {ak}"
                        );
                    }
                }
                "__func__" => {
                    let want: BTreeSet<Vec<u8>> = v
                        .as_object()
                        .expect("func")
                        .values()
                        .map(|s| json_bytes(s.as_str().expect("code")))
                        .collect();
                    let got: BTreeSet<Vec<u8>> = p.functions.iter().cloned().collect();
                    assert_eq!(got, want, "{what}: functions");
                }
                "__dbsize__" | "__slotinfo__" => {}
                _ => {
                    let is_zset = p
                        .keys
                        .iter()
                        .any(|key| key.key == json_bytes(k) && matches!(key.value, Value::ZSet(_)));
                    let c = if is_zset {
                        Canon::Map(
                            v.as_object()
                                .expect("zset object")
                                .iter()
                                .map(|(m, s)| (json_bytes(m), json_canon(s, true)))
                                .collect(),
                        )
                    } else {
                        json_canon(v, false)
                    };
                    want.insert(json_bytes(k), c);
                }
            }
        }
    }
    let got: BTreeMap<Vec<u8>, Canon> = p
        .keys
        .iter()
        .filter(|k| want.contains_key(&k.key))
        .map(|k| (k.key.clone(), canon(&k.value)))
        .collect();
    for (k, w) in &want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: key {:?} missing", String::from_utf8_lossy(k)));
        // Streams in librdb data JSON carry only `entries`; compare that part.
        assert_eq!(g, w, "{what}: key {:?}", String::from_utf8_lossy(k));
    }
    if what.ends_with("set_expired.json") {
        // librdb was told to drop expired keys for this output; the key is there, expired.
        assert!(
            want.is_empty()
                && p.keys.len() == 1
                && p.keys[0]
                    .expire_at_ms
                    .is_some_and(|e| e < 1_700_000_000_000)
        );
    } else {
        assert_eq!(want.len(), p.keys.len(), "{what}: key count");
    }
}

/// librdb raw-level JSON: key -> type byte + value bytes exactly as stored.
fn check_librdb_raw(p: &Parsed, json: &serde_json::Value, what: &str) {
    let obj = json.as_object().expect("raw object");
    let mut n = 0;
    for (k, v) in obj {
        // librdb's set raw files hold the decoded blob in an array (struct level): skip those.
        if k.starts_with("__") || v.is_array() {
            continue;
        }
        let key = p
            .keys
            .iter()
            .find(|x| x.key == json_bytes(k))
            .unwrap_or_else(|| panic!("{what}: {k} missing"));
        let raw = &key.payload[..key.payload.len() - payload::FOOTER_LEN];
        assert_eq!(
            raw,
            json_bytes(v.as_str().expect("raw string")).as_slice(),
            "{what}: raw bytes of {k}"
        );
        n += 1;
    }
    let _ = n;
}

#[test]
fn librdb_expected_outputs() {
    let root = data_dir();
    let index = std::fs::read_to_string(root.join("INDEX.tsv")).expect("index");
    let mut compared = 0;
    for line in index.lines().skip(1).filter(|l| l.starts_with("librdb\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected) = (cols[1], cols[5]);
        if expected == "-" || expected_failure(&format!("librdb/{file}")).is_some() {
            continue;
        }
        let p =
            parse(&std::fs::read(root.join("librdb").join(file)).expect("read")).expect("parse");
        for exp in expected.split(';') {
            let what = format!("librdb/{file} vs {exp}");
            let skip = exp.ends_with("_struct.json")
                || exp.ends_with(".resp")
                || exp.ends_with(".txt")
                || exp.contains("subset")
                || exp.contains("filters")
                || exp == "stream_data_with_meta.json";
            if skip {
                continue;
            }
            let json = parse_fragment(&root.join("librdb").join(exp));
            if exp.ends_with("_raw.json") {
                check_librdb_raw(&p, &json, &what);
            } else {
                check_librdb_data(&p, &json, &what);
            }
            compared += 1;
        }
    }
    println!("compared {compared} librdb expected-output files");
    assert!(compared >= 40, "only {compared} librdb comparisons");
}

#[test]
fn librdb_stream_metadata() {
    let root = data_dir().join("librdb");
    let bytes = std::fs::read(root.join("stream_v11.rdb")).expect("read");
    let items = read_all(&bytes).expect("parse");
    let rec = items
        .iter()
        .find_map(|i| match i {
            Item::Record(r) => Some(r.record.clone()),
            _ => None,
        })
        .expect("record");
    let (t, v, _) = payload::split(&rec.payload).expect("split");
    let mut cur = ferry::rdb::cursor::Cursor::new(v, 1);
    let d = ferry::rdb::stream::decode(&mut cur, t).expect("stream");
    let json = parse_fragment(&root.join("stream_data_with_meta.json"));
    let s = &json["mystream"];
    assert_eq!(d.length, s["length"].as_u64().expect("length"));
    assert_eq!(d.entries_added, s["entriesAdded"].as_u64().expect("added"));
    assert_eq!(
        format!("{}-{}", d.last_id.ms, d.last_id.seq),
        s["lastID"].as_str().expect("last")
    );
    assert_eq!(
        format!("{}-{}", d.first_id.ms, d.first_id.seq),
        s["firstID"].as_str().expect("first")
    );
    let groups = s["groups"].as_array().expect("groups");
    assert_eq!(d.groups.len(), groups.len());
    for (g, jg) in d.groups.iter().zip(groups) {
        assert_eq!(g.name, json_bytes(jg["name"].as_str().expect("name")));
        assert_eq!(g.entries_read, jg["entriesRead"].as_u64());
        let jp = jg["pending"].as_array().expect("pending");
        assert_eq!(g.pending.len(), jp.len());
        for (p, j) in g.pending.iter().zip(jp) {
            assert_eq!(p.delivery_time, j["sent"].as_i64().expect("sent"));
            assert_eq!(p.delivery_count, j["count"].as_u64().expect("count"));
        }
        let jc = jg["consumers"].as_array().expect("consumers");
        for (c, j) in g.consumers.iter().zip(jc) {
            assert_eq!(c.name, json_bytes(j["name"].as_str().expect("name")));
            assert_eq!(c.active_time, j["activeTime"].as_i64().expect("active"));
            assert_eq!(c.seen_time, j["seenTime"].as_i64().expect("seen"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RESP helpers (redis-rdb-cli dump, rdb-rs protocol).

fn parse_resp(mut b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    fn line<'a>(b: &mut &'a [u8]) -> &'a [u8] {
        let i = b.windows(2).position(|w| w == b"\r\n").expect("CRLF");
        let l = &b[..i];
        *b = &b[i + 2..];
        l
    }
    let mut cmds = Vec::new();
    while !b.is_empty() {
        let l = line(&mut b);
        assert_eq!(l[0], b'*', "array expected");
        let n: usize = std::str::from_utf8(&l[1..]).unwrap().parse().unwrap();
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let l = line(&mut b);
            assert_eq!(l[0], b'$');
            let len: usize = std::str::from_utf8(&l[1..]).unwrap().parse().unwrap();
            args.push(b[..len].to_vec());
            b = &b[len + 2..];
        }
        cmds.push(args);
    }
    cmds
}

#[test]
fn redis_rdb_cli_restore_payloads() {
    let root = data_dir().join("redis-rdb-cli/rct");
    let p = parse(&std::fs::read(root.join("all.rdb")).expect("read")).expect("parse");
    let cmds = parse_resp(&std::fs::read(root.join("all.rdb.dump")).expect("read dump"));
    let mut db = 0u32;
    // Their output groups keys differently from file order; match by (db, key), in order for
    // keys the file repeats across SELECTDB sections.
    let mut mine: std::collections::HashMap<(u32, Vec<u8>), std::collections::VecDeque<&Key>> =
        Default::default();
    for k in &p.keys {
        mine.entry((k.db, k.key.clone())).or_default().push_back(k);
    }
    let (mut restores, mut functions) = (0, 0);
    for c in &cmds {
        let name = String::from_utf8_lossy(&c[0]).to_ascii_lowercase();
        match name.as_str() {
            "select" => db = String::from_utf8_lossy(&c[1]).parse().unwrap(),
            "restore" => {
                // Both are in file order (the file repeats some keys across SELECTDB sections).
                let key = mine
                    .get_mut(&(db, c[1].clone()))
                    .and_then(|q| q.pop_front())
                    .unwrap_or_else(|| {
                        panic!(
                            "key {:?} in db {db} missing",
                            String::from_utf8_lossy(&c[1])
                        )
                    });
                let theirs = &c[3];
                // Their footer says RDB 10 (like the file); compare type + value bytes, and make
                // sure their payload decodes to the same logical value.
                assert_eq!(
                    &theirs[..theirs.len() - 10],
                    &key.payload[..key.payload.len() - 10],
                    "payload of {:?}",
                    String::from_utf8_lossy(&c[1])
                );
                assert_eq!(
                    canon(&decode_payload(theirs).expect("their payload decodes")),
                    canon(&key.value)
                );
                restores += 1;
            }
            "function" => functions += 1,
            other => panic!("unexpected command {other}"),
        }
    }
    assert_eq!(restores, 268);
    assert_eq!(functions, 2);
    // The two keys its dump leaves out are the ones that had already expired when it ran.
    let left: Vec<&&Key> = mine.values().flatten().collect();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter()
            .all(|k| k.expire_at_ms.is_some_and(|e| e < 1_700_000_000_000)),
        "{left:?}"
    );
}

/// Logical state built from rdb-rs `protocol/` RESP dumps.
#[test]
fn rdb_rs_protocol_dumps() {
    let root = data_dir().join("rdb-rs");
    let mut compared = 0;
    for entry in std::fs::read_dir(root.join("protocol")).expect("dir") {
        let path = entry.expect("entry").path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let rdb = root.join(format!("{stem}.rdb"));
        let p = parse(&std::fs::read(&rdb).expect("read rdb")).expect("parse");
        let cmds = parse_resp(&std::fs::read(&path).expect("read protocol"));
        let mut db = 0u32;
        let mut want: BTreeMap<(u32, Vec<u8>), Canon> = BTreeMap::new();
        let mut lists: BTreeMap<(u32, Vec<u8>), Vec<Vec<u8>>> = BTreeMap::new();
        let mut expiries: BTreeMap<(u32, Vec<u8>), i64> = BTreeMap::new();
        for c in &cmds {
            let name = String::from_utf8_lossy(&c[0]).to_ascii_uppercase();
            let k = (db, c.get(1).cloned().unwrap_or_default());
            match name.as_str() {
                "SELECT" => db = String::from_utf8_lossy(&c[1]).parse().unwrap(),
                "SET" => {
                    want.insert(k, Canon::Bytes(c[2].clone()));
                }
                "RPUSH" => lists.entry(k).or_default().extend(c[2..].iter().cloned()),
                "SADD" => lists.entry(k).or_default().extend(c[2..].iter().cloned()),
                "HSET" | "HMSET" => {
                    let e = want.entry(k).or_insert_with(|| Canon::Map(BTreeMap::new()));
                    if let Canon::Map(m) = e {
                        for pair in c[2..].chunks(2) {
                            m.insert(pair[0].clone(), Canon::Bytes(pair[1].clone()));
                        }
                    }
                }
                "ZADD" => {
                    let e = want.entry(k).or_insert_with(|| Canon::Map(BTreeMap::new()));
                    if let Canon::Map(m) = e {
                        for pair in c[2..].chunks(2) {
                            let s: f64 = String::from_utf8_lossy(&pair[0]).parse().expect("score");
                            m.insert(pair[1].clone(), score_canon(s));
                        }
                    }
                }
                "PEXPIREAT" => {
                    expiries.insert(k, String::from_utf8_lossy(&c[2]).parse().unwrap());
                }
                other => panic!("{stem}: unexpected command {other}"),
            }
        }
        for (k, mut l) in lists {
            l.sort();
            want.insert(k, Canon::List(l.into_iter().map(Canon::Bytes).collect()));
        }
        let got: BTreeMap<(u32, Vec<u8>), Canon> = p
            .keys
            .iter()
            .map(|k| ((k.db, k.key.clone()), canon(&k.value)))
            .collect();
        // rdb-rs collapses a zset/hash member given twice and writes lists in order; compare
        // canonical (order-insensitive) forms.
        assert_eq!(got, want, "{stem}");
        for k in &p.keys {
            assert_eq!(
                k.expire_at_ms,
                expiries.get(&(k.db, k.key.clone())).copied(),
                "{stem}: expiry"
            );
        }
        compared += 1;
    }
    assert!(compared >= 25, "only {compared} protocol files");
}

// ---------------------------------------------------------------------------------------------
// hdt3213/rdb JSON lines.

/// Unix ms of an RFC 3339 timestamp like `2022-02-18T06:15:29.18+08:00`.
fn rfc3339_ms(s: &str) -> i64 {
    let (date, rest) = s.split_once('T').expect("T");
    let mut d = date.split('-').map(|x| x.parse::<i64>().unwrap());
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    let tz_at = rest.rfind(['+', '-']).expect("zone");
    let (time, zone) = rest.split_at(tz_at);
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (
        t.next().unwrap().parse().unwrap(),
        t.next().unwrap().parse().unwrap(),
    );
    let sec = t.next().unwrap();
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let ss: i64 = whole.parse().unwrap();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (zh, zm) = zone[1..].split_once(':').unwrap();
    let offset = sign * (zh.parse::<i64>().unwrap() * 60 + zm.parse::<i64>().unwrap()) * 60;
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    ((days * 86400 + hh * 3600 + mm * 60 + ss - offset) * 1000) + ms
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn hdt3213_json_lines() {
    let root = data_dir().join("hdt3213-rdb");
    let mut compared = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .expect("dir")
        .map(|e| e.expect("e").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let stem = name.trim_end_matches(".json");
        let rdb = root.join(format!("{stem}.rdb"));
        if !rdb.exists() {
            continue; // memory_regex.json etc. are filtered outputs
        }
        let p = parse(&std::fs::read(&rdb).expect("read")).expect("parse");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("json"))
                .expect("parse json");
        let mut n = 0;
        for obj in json.as_array().expect("array") {
            let ty = obj["type"].as_str().unwrap_or("");
            if !matches!(ty, "string" | "list" | "set" | "hash" | "zset" | "stream") {
                continue;
            }
            let db = obj["db"].as_u64().expect("db") as u32;
            let key = obj["key"].as_str().expect("key");
            let k = p
                .keys
                .iter()
                .find(|k| k.db == db && lossy(&k.key) == key)
                .unwrap_or_else(|| panic!("{name}: key {key} missing"));
            let want_exp = obj
                .get("expiration")
                .and_then(|e| e.as_str())
                .map(rfc3339_ms);
            assert_eq!(k.expire_at_ms, want_exp, "{name}: expiry of {key}");
            match (&k.value, ty) {
                (Value::String(s), "string") => {
                    assert_eq!(lossy(s), obj["value"].as_str().unwrap(), "{name}: {key}")
                }
                (Value::List(l), "list") => {
                    let want: Vec<String> = obj["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(
                        l.iter().map(|x| lossy(x)).collect::<Vec<_>>(),
                        want,
                        "{name}: {key}"
                    );
                }
                (Value::Set(l), "set") => {
                    let want: BTreeSet<String> = obj["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(
                        l.iter().map(|x| lossy(x)).collect::<BTreeSet<_>>(),
                        want,
                        "{name}: {key}"
                    );
                }
                (Value::Hash(h), "hash") => {
                    let want: BTreeMap<String, String> = obj["hash"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(f, v)| (f.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    let got: BTreeMap<String, String> = h
                        .iter()
                        .map(|f| (lossy(&f.field), lossy(&f.value)))
                        .collect();
                    assert_eq!(got, want, "{name}: {key}");
                    if let Some(exp) = obj.get("expire").and_then(|e| e.as_object()) {
                        for f in h {
                            let w = exp
                                .get(&lossy(&f.field))
                                .and_then(|x| x.as_i64())
                                .unwrap_or(0);
                            assert_eq!(
                                f.expire_at_ms.unwrap_or(0),
                                w,
                                "{name}: field TTL of {key}"
                            );
                        }
                    }
                }
                (Value::ZSet(z), "zset") => {
                    let want: BTreeMap<String, f64> = obj["entries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| {
                            (
                                e["member"].as_str().unwrap().to_string(),
                                e["score"].as_f64().unwrap(),
                            )
                        })
                        .collect();
                    let got: BTreeMap<String, f64> =
                        z.iter().map(|(m, s)| (lossy(m), *s)).collect();
                    assert_eq!(got, want, "{name}: {key}");
                }
                (Value::Stream(s), "stream") => {
                    let want: usize = obj["entries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| {
                            n["msgs"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter(|m| !m["deleted"].as_bool().unwrap_or(false))
                                .count()
                        })
                        .sum();
                    assert_eq!(s.entries.len(), want, "{name}: {key} entry count");
                    assert_eq!(
                        s.groups.len(),
                        obj.get("groups")
                            .and_then(|g| g.as_array())
                            .map_or(0, |g| g.len()),
                        "{name}: groups"
                    );
                }
                (v, t) => panic!("{name}: {key}: decoded {} but JSON says {t}", v.type_name()),
            }
            n += 1;
        }
        assert_eq!(n, p.keys.len(), "{name}: key count");
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} hdt3213 files compared");
}

// ---------------------------------------------------------------------------------------------
// Corruption.

fn small_valid_file() -> Vec<u8> {
    std::fs::read(data_dir().join("librdb/multiple_lists_strings.rdb")).expect("read")
}

fn assert_error_with_offset(bytes: &[u8], what: &str) -> RdbError {
    let e = parse(bytes).expect_err(what);
    assert!(e.offset().is_some(), "{what}: {e}");
    e
}

#[test]
fn truncated_files_fail_with_offset() {
    let f = small_valid_file();
    for cut in 0..f.len() {
        let e = assert_error_with_offset(&f[..cut], "truncated");
        assert!(
            matches!(
                e,
                RdbError::Truncated { .. }
                    | RdbError::LengthPastEnd { .. }
                    | RdbError::BadMagic { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn flipped_bytes_are_detected() {
    let f = small_valid_file();
    for i in 9..f.len() - 8 {
        let mut g = f.clone();
        g[i] ^= 0x5A;
        // Either a structural error or the file CRC catches every single-byte change.
        assert_error_with_offset(&g, "flipped byte");
    }
}

#[test]
fn wrong_magic_and_version() {
    let mut f = small_valid_file();
    f[0] = b'X';
    assert!(matches!(parse(&f), Err(RdbError::BadMagic { .. })));
    let mut f = small_valid_file();
    f[5..9].copy_from_slice(b"0013");
    assert!(matches!(
        parse(&f),
        Err(RdbError::UnsupportedVersion {
            version: 13,
            offset: 5
        })
    ));
    assert!(matches!(parse(b"RED"), Err(RdbError::Truncated { .. })));
    assert!(matches!(
        parse(b"hello world"),
        Err(RdbError::BadMagic { .. })
    ));
}

#[test]
fn length_past_end_is_an_error_not_an_allocation() {
    // A string key whose value claims 4 GiB (32-bit length) in a tiny file.
    let mut f = b"REDIS0009".to_vec();
    f.extend_from_slice(&[0x00, 0x01, b'k', 0x80, 0xFF, 0xFF, 0xFF, 0xF0, b'x', 0xFF]);
    let e = parse(&f).expect_err("past end");
    assert!(
        matches!(
            e,
            RdbError::LengthPastEnd {
                offset: 17,
                len: 0xFFFF_FFF0,
                remaining: 2,
                ..
            }
        ),
        "{e}"
    );
    // Same without a known size: reading stops at EOF with a truncation error.
    let r: Result<Vec<Item>, RdbError> = RdbReader::new(&f[..]).expect("header").collect();
    assert!(matches!(r, Err(RdbError::Truncated { .. })), "{r:?}");
    // 64-bit element count for a list.
    let mut f = b"REDIS0009".to_vec();
    f.extend_from_slice(&[0x01, 0x01, b'k', 0x81, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xFF]);
    assert!(matches!(parse(&f), Err(RdbError::LengthPastEnd { .. })));
}

#[test]
fn resume_from_every_record_boundary() {
    let f = std::fs::read(data_dir().join("redis-rdb-cli/rct/all.rdb")).expect("read");
    let opts = || ReaderOptions {
        known_size: Some(f.len() as u64),
        ..Default::default()
    };
    let mut r = RdbReader::with_options(&f[..], opts()).expect("header");
    let mut states = Vec::new();
    let mut all = Vec::new();
    while let Some(item) = r.next_item().expect("item") {
        if matches!(item, Item::Record(_)) {
            states.push((all.len() + 1, r.resume_state()));
        }
        all.push(item);
    }
    for (idx, st) in states.iter().step_by(17) {
        let rest: Vec<Item> = RdbReader::resume(&f[st.offset as usize..], *st, opts())
            .expect("resume")
            .collect::<Result<_, _>>()
            .expect("resumed read verifies the CRC too");
        assert_eq!(rest, all[*idx..], "resume at {}", st.offset);
    }
}
