//! Smoke tests of the test-data helpers (`tests/support/data.rs`): seeding works on old and new
//! servers, snapshots see every type, and the comparison both accepts equal data and fails on
//! every kind of difference.

mod support;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use support::data::{self, Canon, Caps, CompareOpts, DiffKind, KeyState};
use support::servers::{Server, Version};

fn k(prefix: &str, suffix: &[u8]) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(suffix);
    v
}

fn get<'a>(snap: &'a BTreeMap<Vec<u8>, KeyState>, prefix: &str, suffix: &[u8]) -> &'a KeyState {
    snap.get(&k(prefix, suffix))
        .unwrap_or_else(|| panic!("key {} not in snapshot", data::escape(&k(prefix, suffix))))
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Checks common to every version: counts, values that exercise special encodings, TTLs.
fn check_rich_common(snap: &BTreeMap<Vec<u8>, KeyState>, p: &str) {
    // strings
    assert_eq!(
        get(snap, p, b"str:compressible-100k").value,
        Canon::String(data::compressible_100k())
    );
    assert_eq!(get(snap, p, b"str:empty").value, Canon::String(vec![]));
    assert_eq!(
        get(snap, p, b"str:int:min").value,
        Canon::String(b"-9223372036854775808".to_vec())
    );
    assert_eq!(
        get(snap, p, b"str:all-bytes").value,
        Canon::String((0u8..=255).collect())
    );
    // binary key names
    for name in [
        &b"bin:\x00nul\x00"[..],
        b"bin:\xff\xfe\xfd",
        b"bin:new\nline\r\n",
        b"bin:with spaces  ",
        "bin:utf8:ключ-日本-ü-🚀".as_bytes(),
    ] {
        assert_eq!(get(snap, p, name).kind, "string");
    }
    // lists keep their order
    let Canon::List(large) = &get(snap, p, b"list:large").value else {
        panic!("list:large is not a list")
    };
    assert_eq!(large.len(), 2000);
    assert_eq!(large[0], b"0");
    assert_eq!(large[1], b"item-1-padding-xxxxxxxxxxxxxxxx");
    assert_eq!(
        get(snap, p, b"list:small").value,
        Canon::List(vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"1".to_vec(),
            b"-2".to_vec(),
            b"\x00bin\xff".to_vec(),
            vec![],
        ])
    );
    assert_eq!(get(snap, p, b"hash:large").value.len(), 600);
    assert_eq!(get(snap, p, b"set:intset-large").value.len(), 600);
    // zset scores, sorted by member
    let Canon::ZSet(z) = &get(snap, p, b"zset:small").value else {
        panic!("zset:small is not a zset")
    };
    let score = |m: &str| z.iter().find(|(k, _)| k == m.as_bytes()).unwrap().1;
    assert_eq!(score("plus-inf"), f64::INFINITY);
    assert_eq!(score("minus-inf"), f64::NEG_INFINITY);
    assert_eq!(score("tenth"), 0.1);
    assert_eq!(score("huge"), 1e300);
    assert_eq!(score("negative"), -1.5);
    assert_eq!(score("zero"), 0.0);
    assert!(
        z.windows(2).all(|w| w[0].0 < w[1].0),
        "zset sorted by member"
    );
    // TTLs: 1 hour, 1 day, 50 s, 1 year; everything else permanent
    let ttl = |s: &[u8]| get(snap, p, s).pttl;
    assert!((3_500_000..=3_600_000).contains(&ttl(b"ttl:str:1h")));
    assert!((86_300_000..=86_400_000).contains(&ttl(b"ttl:str:1d")));
    assert!((40_000..=50_000).contains(&ttl(b"ttl:str:50s")));
    assert!(ttl(b"ttl:pexpireat:1y") > 360 * 86_400_000);
    assert!((3_500_000..=3_600_000).contains(&ttl(b"ttl:bin:\x00\xff")));
    assert_eq!(ttl(b"str:plain"), -1);
    for (key, st) in snap {
        let is_ttl = key[p.len()..].starts_with(b"ttl:");
        assert_eq!(
            st.pttl >= 0,
            is_ttl,
            "{}: pttl {}",
            data::escape(key),
            st.pttl
        );
    }
}

fn check_encodings(conn: &mut redis::Connection, p: &str) {
    for (suffix, want) in [
        (&b"list:large"[..], "quicklist"),
        (b"hash:large", "hashtable"),
        (b"hash:big-value", "hashtable"),
        (b"set:intset-small", "intset"),
        (b"set:intset-64bit", "intset"),
        (b"set:intset-large", "hashtable"),
        (b"zset:large", "skiplist"),
        (b"str:int:max", "int"),
        (b"str:compressible-100k", "raw"),
    ] {
        assert_eq!(
            data::encoding(conn, &k(p, suffix)),
            want,
            "encoding of {}",
            String::from_utf8_lossy(suffix)
        );
    }
    for small in [&b"hash:small"[..], b"zset:small"] {
        let enc = data::encoding(conn, &k(p, small));
        assert!(enc == "ziplist" || enc == "listpack", "{enc}");
    }
}

// ---------------------------------------------------------------------------- with servers

#[test]
fn seed_rich_on_3_2_has_every_type_but_streams() {
    let server = Server::plain(Version::V3_2);
    let mut c = server.conn();
    let caps = Caps::detect(&mut c);
    assert_eq!(caps.version.0, 3);
    assert!(!caps.streams && !caps.multi_hset && !caps.unlink);

    let n = data::seed_rich(&mut c, 0, "rich:", &caps);
    let snap = data::snapshot(&mut c, 0);
    assert_eq!(snap.len(), n);
    assert_eq!(
        data::kind_counts(&snap),
        counts(&[
            ("hash", 6),
            ("list", 5),
            ("set", 6),
            ("string", 30),
            ("zset", 4)
        ])
    );
    check_rich_common(&snap, "rich:");
    check_encodings(&mut c, "rich:");
    // ints of every width in a multi-node quicklist
    let dbg: String = redis::cmd("DEBUG")
        .arg("OBJECT")
        .arg("rich:list:large")
        .query(&mut c)
        .unwrap();
    let nodes: u32 = dbg
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ql_nodes:"))
        .and_then(|n| n.parse().ok())
        .expect("ql_nodes in DEBUG OBJECT");
    assert!(nodes >= 5, "{dbg}");

    // A second database, and snapshot_all over both.
    let n3 = data::seed_rich(&mut c, 3, "db3:", &caps);
    let all = data::snapshot_all(&mut c);
    assert_eq!(all.len(), n + n3);
    assert!(all.contains_key(&(0, b"rich:str:plain".to_vec())));
    assert!(all.contains_key(&(3, b"db3:str:plain".to_vec())));
    assert!(!all.contains_key(&(0, b"db3:str:plain".to_vec())));
    // the same data read twice compares equal
    data::assert_same(&all, &data::snapshot_all(&mut c), 1_000);
}

#[test]
fn seed_rich_on_6_2_has_every_type_and_streams() {
    let server = Server::plain(Version::V6_2);
    let mut c = server.conn();
    let caps = Caps::detect(&mut c);
    assert_eq!((caps.version.0, caps.version.1), (6, 2));
    assert!(caps.streams && caps.mkstream && !caps.stream_meta_v7);

    let n = data::seed_rich(&mut c, 0, "rich:", &caps);
    let snap = data::snapshot(&mut c, 0);
    assert_eq!(snap.len(), n);
    assert_eq!(
        data::kind_counts(&snap),
        counts(&[
            ("hash", 6),
            ("list", 5),
            ("set", 6),
            ("stream", 5),
            ("string", 30),
            ("zset", 4)
        ])
    );
    check_rich_common(&snap, "rich:");
    check_encodings(&mut c, "rich:");

    let Canon::Stream(s) = &get(&snap, "rich:", b"stream:basic").value else {
        panic!("stream:basic is not a stream")
    };
    assert_eq!(s.length, 9);
    assert_eq!(s.entries.len(), 9);
    assert!(s.entries.iter().all(|e| e.id != "1000-5"), "XDEL'd entry");
    assert_eq!(s.last_id, "1000-10");
    let names: Vec<&[u8]> = s.groups.iter().map(|g| &g.name[..]).collect();
    assert_eq!(names, [&b"g1"[..], b"g2", b"g3"]);
    let g1 = &s.groups[0];
    assert_eq!(g1.last_delivered_id.as_deref(), Some("1000-6"));
    assert_eq!(g1.pending, 4);
    assert_eq!(
        g1.consumers,
        vec![(b"alice".to_vec(), 2), (b"bob".to_vec(), 2)]
    );
    assert_eq!(g1.pel.len(), 4);
    assert!(s.groups[1].consumers.is_empty() && s.groups[1].pending == 0);
    let g3 = &s.groups[2];
    assert!(g3.pel.iter().all(|(_, c, n)| c == b"carol" && *n == 2));

    let Canon::Stream(large) = &get(&snap, "rich:", b"stream:large").value else {
        panic!()
    };
    assert_eq!(large.entries.len(), 250);
    assert_eq!(large.groups[0].pending, 120);

    for empty in [&b"stream:empty"[..], b"stream:mkstream"] {
        let Canon::Stream(e) = &get(&snap, "rich:", empty).value else {
            panic!()
        };
        assert_eq!((e.length, e.entries.len(), e.groups.len()), (0, 0, 1));
    }
    let Canon::Stream(e) = &get(&snap, "rich:", b"stream:empty").value else {
        panic!()
    };
    assert_eq!(e.last_id, "7-7");
}

/// Every version the suite runs can be seeded and read back, and reading twice agrees.
#[test]
fn seed_rich_reads_back_on_every_version() {
    let servers = [
        (Server::plain(Version::V3_2), "3.2"),
        (Server::plain(Version::V5_0), "5.0"),
        (Server::plain(Version::V6_0), "6.0"),
        (Server::plain(Version::V6_2), "6.2"),
        (Server::tls_target(Version::V7_0), "7.0"),
        (Server::tls_target(Version::Valkey8), "valkey"),
    ];
    for (server, name) in &servers {
        let mut c = server.conn();
        let caps = Caps::detect(&mut c);
        assert_eq!(caps.valkey.is_some(), *name == "valkey", "{caps:?}");
        assert_eq!(caps.streams, *name != "3.2", "{caps:?}");
        let n = data::seed_rich(&mut c, 2, "rich:", &caps);
        let a = data::snapshot(&mut c, 2);
        assert_eq!(a.len(), n, "{name}");
        check_rich_common(&a, "rich:");
        let b = data::snapshot(&mut c, 2);
        data::assert_same(&a, &b, 1_000);
        if caps.stream_meta_v7 {
            let Canon::Stream(s) = &get(&a, "rich:", b"stream:basic").value else {
                panic!()
            };
            assert_eq!(s.entries_added, Some(10), "{name}");
            assert_eq!(s.max_deleted_id.as_deref(), Some("1000-5"), "{name}");
        }
    }
}

/// DUMP on 6.2, RESTORE on a 7.0 TLS target: the snapshots agree; then every kind of damage
/// done to the target is reported.
#[test]
fn dump_restore_6_2_to_7_0_tls_compares_equal_and_damage_is_caught() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    assert!(dst.url().starts_with("rediss://"), "{}", dst.url());
    let mut s = src.conn();
    let mut t = dst.conn();
    let caps = Caps::detect(&mut s);
    data::seed_rich(&mut s, 0, "rich:", &caps);

    // One key first, by hand: the stream with groups and pending entries.
    let key = b"rich:stream:basic".to_vec();
    let payload: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut s).unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg(&key)
        .arg(0)
        .arg(&payload)
        .query(&mut t)
        .unwrap();
    let one_src = data::read_key(&mut s, &key).unwrap();
    let one_dst = data::read_key(&mut t, &key).unwrap();
    assert!(one_src.value.matches(&one_dst.value));
    let Canon::Stream(st) = &one_dst.value else {
        panic!()
    };
    assert!(st.entries_added.is_some(), "7.0 reports entries-added");

    // Then every key, TTLs as absolute unix times.
    for key in data::scan_keys(&mut s, 0) {
        let payload: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut s).unwrap();
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut s).unwrap();
        let mut restore = redis::cmd("RESTORE");
        if pttl > 0 {
            restore
                .arg(&key)
                .arg(data::now_ms() + pttl)
                .arg(&payload)
                .arg("REPLACE")
                .arg("ABSTTL");
        } else {
            restore.arg(&key).arg(0).arg(&payload).arg("REPLACE");
        }
        let _: () = restore.query(&mut t).unwrap();
    }
    let a = data::snapshot(&mut s, 0);
    let b = data::snapshot(&mut t, 0);
    assert_eq!(a.len(), b.len());
    data::assert_same(&a, &b, 2_000);
    data::assert_no_permanent_where_ttl(&a, &b);

    // Damage the target in every way the comparison must notice.
    let q = |t: &mut redis::Connection, args: &[&[u8]]| {
        let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for a in &args[1..] {
            c.arg(*a);
        }
        let _: redis::Value = c.query(t).unwrap();
    };
    q(&mut t, &[b"LSET", b"rich:list:large", b"1500", b"changed"]);
    q(&mut t, &[b"PERSIST", b"rich:ttl:str:1h"]);
    q(&mut t, &[b"PEXPIRE", b"rich:ttl:str:1d", b"5000"]);
    q(&mut t, &[b"PEXPIRE", b"rich:str:plain", b"600000"]);
    q(&mut t, &[b"DEL", b"rich:bin:\x00nul\x00"]);
    q(&mut t, &[b"SET", b"rich:extra\xff", b"x"]);
    q(&mut t, &[b"DEL", b"rich:hash:small"]);
    q(&mut t, &[b"SET", b"rich:hash:small", b"now a string"]);
    q(&mut t, &[b"XACK", b"rich:stream:basic", b"g1", b"1000-2"]);
    q(&mut t, &[b"ZADD", b"rich:zset:small", b"0.2", b"tenth"]);
    q(&mut t, &[b"SREM", b"rich:set:intset-large", b"0"]);
    let b = data::snapshot(&mut t, 0);
    let opts = CompareOpts {
        ttl_tolerance_ms: 2_000,
        expired_below_ms: 0,
    };
    let diffs = data::diff(&a, &b, &opts);
    let mut got: Vec<(DiffKind, String)> = diffs.iter().map(|d| (d.kind, d.key.clone())).collect();
    got.sort_by_key(|(k, key)| (format!("{k:?}"), key.clone()));
    let mut want = vec![
        (DiffKind::Value, "\"rich:list:large\""),
        (DiffKind::TtlLost, "\"rich:ttl:str:1h\""),
        (DiffKind::Ttl, "\"rich:ttl:str:1d\""),
        (DiffKind::TtlAdded, "\"rich:str:plain\""),
        (DiffKind::Missing, "\"rich:bin:\\x00nul\\x00\""),
        (DiffKind::Extra, "\"rich:extra\\xff\""),
        (DiffKind::Type, "\"rich:hash:small\""),
        (DiffKind::Value, "\"rich:stream:basic\""),
        (DiffKind::Value, "\"rich:zset:small\""),
        (DiffKind::Value, "\"rich:set:intset-large\""),
    ]
    .into_iter()
    .map(|(k, s)| (k, s.to_string()))
    .collect::<Vec<_>>();
    want.sort_by_key(|(k, key)| (format!("{k:?}"), key.clone()));
    assert_eq!(
        got,
        want,
        "{}",
        data::format_diffs(&diffs, 50, a.len(), b.len())
    );

    let msg = panic_message(|| data::assert_same(&a, &b, 2_000));
    assert!(msg.contains("10 difference(s)"), "{msg}");
    assert!(msg.contains("first difference at index 1500"), "{msg}");
    assert!(msg.contains("\"changed\""), "{msg}");
    assert!(msg.contains("group \"g1\""), "{msg}");
    assert!(msg.contains("\"tenth\": 0.1 vs 0.2"), "{msg}");
    let msg = panic_message(|| data::assert_no_permanent_where_ttl(&a, &b));
    assert!(msg.contains("rich:ttl:str:1h"), "{msg}");
    assert!(!msg.contains("rich:str:plain"), "{msg}");
}

#[test]
fn short_ttls_expire_and_only_the_tolerant_comparison_accepts_them() {
    let server = Server::plain(Version::V5_0);
    let mut c = server.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    assert_eq!(data::seed_short_ttls(&mut c, 0, 300, 1_500), 300);
    // Another TTL writes other keys.
    assert_eq!(data::seed_short_ttls(&mut c, 0, 30, 1_499), 30);
    let before = data::snapshot(&mut c, 0);
    let short: Vec<&KeyState> = before
        .iter()
        .filter(|(k, _)| k.starts_with(data::SHORT_TTL_PREFIX.as_bytes()))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(short.len(), 330, "read before they expire");
    assert!(short.iter().all(|s| (0..=1_500).contains(&s.pttl)));
    let kinds = data::kind_counts(
        &before
            .iter()
            .filter(|(k, _)| k.starts_with(b"short-ttl:"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    assert_eq!(
        kinds,
        counts(&[("hash", 110), ("list", 110), ("string", 110)])
    );

    std::thread::sleep(std::time::Duration::from_millis(2_000));
    let after = data::snapshot(&mut c, 0);
    assert_eq!(after.len(), before.len() - 330);
    data::assert_same_allow_expired(&before, &after, 3_000, 1_501);
    let msg = panic_message(|| data::assert_same(&before, &after, 3_000));
    assert!(msg.contains("Missing: 330"), "{msg}");
    // A long-TTL key going missing is still an error with the tolerant variant.
    let _: () = redis::cmd("DEL")
        .arg("rich:ttl:str:1h")
        .query(&mut c)
        .unwrap();
    let after = data::snapshot(&mut c, 0);
    let msg = panic_message(|| data::assert_same_allow_expired(&before, &after, 3_000, 1_501));
    assert!(msg.contains("1 difference(s)"), "{msg}");
    assert!(msg.contains("rich:ttl:str:1h"), "{msg}");
}

#[test]
fn seed_bulk_writes_mixed_keys_with_a_third_expiring() {
    let server = Server::plain(Version::V3_2);
    let mut c = server.conn();
    let start = std::time::Instant::now();
    assert_eq!(data::seed_bulk(&mut c, 1, 20_000, "bulk:"), 20_000);
    let seeded = start.elapsed();
    let snap = data::snapshot(&mut c, 1);
    eprintln!(
        "seed_bulk 20k keys: {seeded:?}; snapshot: {:?}",
        start.elapsed() - seeded
    );
    assert_eq!(snap.len(), 20_000);
    assert_eq!(
        data::kind_counts(&snap),
        counts(&[
            ("hash", 4000),
            ("list", 4000),
            ("set", 4000),
            ("string", 4000),
            ("zset", 4000)
        ])
    );
    let with_ttl: Vec<i64> = snap
        .values()
        .filter(|s| s.pttl >= 0)
        .map(|s| s.pttl)
        .collect();
    assert!(
        (6_000..7_400).contains(&with_ttl.len()),
        "{} keys with a TTL",
        with_ttl.len()
    );
    assert!(with_ttl.iter().all(|t| (500_000..=3_600_000).contains(t)));
    for (i, kind) in ["string", "hash", "list", "set", "zset"].iter().enumerate() {
        assert_eq!(
            snap[data::bulk_key("bulk:", 100 + i).as_bytes()].kind,
            *kind
        );
    }
    // Deterministic: the same prefix gives the same data.
    let other = Server::plain(Version::V6_2);
    let mut o = other.conn();
    data::seed_bulk(&mut o, 1, 20_000, "bulk:");
    data::assert_same(&snap, &data::snapshot(&mut o, 1), 60_000);
}

// ---------------------------------------------------------------------------- without servers

/// Changes a key's TTL as if it had been read with that PTTL (same fixed read time as `st`).
fn set_pttl(k: &mut KeyState, pttl: i64) {
    k.pttl = pttl;
    k.expire_at_ms = if pttl >= 0 {
        1_000_000_000 + pttl
    } else {
        pttl
    };
}

fn st(kind: &str, value: Canon, pttl: i64) -> KeyState {
    KeyState {
        kind: kind.into(),
        value,
        pttl,
        // A fixed "read time", so tolerance edges are exact.
        expire_at_ms: if pttl >= 0 {
            1_000_000_000 + pttl
        } else {
            pttl
        },
    }
}

fn sample() -> BTreeMap<Vec<u8>, KeyState> {
    let mut m = BTreeMap::new();
    m.insert(
        b"s".to_vec(),
        st("string", Canon::String(b"v".to_vec()), -1),
    );
    m.insert(
        b"bin\x00\xff\n".to_vec(),
        st(
            "list",
            Canon::List(vec![b"a".to_vec(), b"b".to_vec()]),
            10_000,
        ),
    );
    m.insert(
        b"z".to_vec(),
        st(
            "zset",
            Canon::ZSet(vec![(b"a".to_vec(), f64::INFINITY), (b"b".to_vec(), 0.1)]),
            -1,
        ),
    );
    m
}

#[test]
fn assert_same_accepts_equal_snapshots_and_ttls_within_tolerance() {
    let a = sample();
    let mut b = sample();
    set_pttl(b.get_mut(&b"bin\x00\xff\n"[..]).unwrap(), 9_000);
    data::assert_same(&a, &b, 1_000);
    data::assert_no_permanent_where_ttl(&a, &b);
}

#[test]
#[should_panic(expected = "Value \"s\": 1 vs 1 bytes, first difference at byte 0")]
fn assert_same_panics_on_a_different_value() {
    let a = sample();
    let mut b = sample();
    b.get_mut(&b"s"[..]).unwrap().value = Canon::String(b"w".to_vec());
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "Missing \"bin\\x00\\xff\\n\"")]
fn assert_same_panics_on_a_missing_key_and_escapes_it() {
    let a = sample();
    let mut b = sample();
    b.remove(&b"bin\x00\xff\n"[..]);
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "Extra \"x\"")]
fn assert_same_panics_on_an_extra_key() {
    let a = sample();
    let mut b = sample();
    b.insert(b"x".to_vec(), st("string", Canon::String(vec![]), -1));
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "TtlLost")]
fn assert_same_panics_when_a_ttl_is_lost() {
    let a = sample();
    let mut b = sample();
    set_pttl(b.get_mut(&b"bin\x00\xff\n"[..]).unwrap(), -1);
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "TtlAdded")]
fn assert_same_panics_when_a_ttl_appears() {
    let a = sample();
    let mut b = sample();
    set_pttl(b.get_mut(&b"s"[..]).unwrap(), 5_000);
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "off by 1001 ms")]
fn assert_same_panics_on_a_ttl_beyond_tolerance() {
    let a = sample();
    let mut b = sample();
    set_pttl(b.get_mut(&b"bin\x00\xff\n"[..]).unwrap(), 8_999);
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "type zset vs set")]
fn assert_same_panics_on_a_different_type() {
    let a = sample();
    let mut b = sample();
    b.insert(
        b"z".to_vec(),
        st("set", Canon::Set(vec![b"a".to_vec()]), -1),
    );
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "\"b\": 0.1 vs 0.2")]
fn assert_same_panics_on_a_different_score() {
    let a = sample();
    let mut b = sample();
    b.get_mut(&b"z"[..]).unwrap().value =
        Canon::ZSet(vec![(b"a".to_vec(), f64::INFINITY), (b"b".to_vec(), 0.2)]);
    data::assert_same(&a, &b, 1_000);
}

#[test]
#[should_panic(expected = "keys with a TTL became permanent")]
fn assert_no_permanent_where_ttl_panics() {
    let a = sample();
    let mut b = sample();
    set_pttl(b.get_mut(&b"bin\x00\xff\n"[..]).unwrap(), -1);
    data::assert_no_permanent_where_ttl(&a, &b);
}

#[test]
fn expired_keys_are_tolerated_only_below_the_threshold() {
    let a = sample(); // "bin..." has pttl 10 000
    let mut b = sample();
    b.remove(&b"bin\x00\xff\n"[..]);
    data::assert_same_allow_expired(&a, &b, 1_000, 10_001);
    let msg = panic_message(|| data::assert_same_allow_expired(&a, &b, 1_000, 10_000));
    assert!(msg.contains("Missing"), "{msg}");
    // A permanent key is never "expired".
    let mut c = sample();
    c.remove(&b"s"[..]);
    let msg = panic_message(|| data::assert_same_allow_expired(&a, &c, 1_000, i64::MAX));
    assert!(msg.contains("Missing \"s\""), "{msg}");
}

#[test]
fn diff_output_is_capped_at_twenty() {
    let a: BTreeMap<Vec<u8>, KeyState> = (0..50)
        .map(|i| {
            (
                format!("k{i:02}").into_bytes(),
                st("string", Canon::String(vec![]), -1),
            )
        })
        .collect();
    let b = BTreeMap::new();
    let msg = panic_message(|| data::assert_same(&a, &b, 0));
    assert!(msg.contains("50 difference(s)"), "{msg}");
    assert!(msg.contains("k19") && !msg.contains("k20"), "{msg}");
    assert!(msg.contains("... and 30 more"), "{msg}");
}

#[test]
fn stream_fields_missing_on_old_servers_are_not_compared() {
    use data::{GroupCanon, StreamCanon, StreamEntry};
    let old = StreamCanon {
        entries: vec![StreamEntry {
            id: "1-1".into(),
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
        }],
        length: 1,
        last_id: "1-1".into(),
        max_deleted_id: None,
        entries_added: None,
        groups: vec![GroupCanon {
            name: b"g".to_vec(),
            last_delivered_id: Some("1-1".into()),
            entries_read: None,
            pending: 1,
            consumers: vec![(b"c".to_vec(), 1)],
            pel: vec![("1-1".into(), b"c".to_vec(), 1)],
        }],
    };
    let mut new = old.clone();
    new.max_deleted_id = Some("0-0".into());
    new.entries_added = Some(1);
    new.groups[0].entries_read = Some(1);
    assert!(Canon::Stream(old.clone()).matches(&Canon::Stream(new.clone())));
    assert_ne!(Canon::Stream(old.clone()), Canon::Stream(new.clone()));

    let mut moved = new.clone();
    moved.groups[0].last_delivered_id = Some("1-0".into());
    assert!(!Canon::Stream(old.clone()).matches(&Canon::Stream(moved)));
    let mut redelivered = new.clone();
    redelivered.groups[0].pel[0].2 = 2;
    assert!(!Canon::Stream(old.clone()).matches(&Canon::Stream(redelivered)));
    let mut renamed = new;
    renamed.groups[0].consumers[0].0 = b"d".to_vec();
    assert!(!Canon::Stream(old).matches(&Canon::Stream(renamed)));
}

#[test]
fn caps_from_version_strings() {
    let c = Caps::for_version("3.2.6");
    assert_eq!(c.version, (3, 2, 6));
    assert!(!c.streams && !c.multi_hset && !c.restore_absttl);
    let c = Caps::for_version("5.0.6");
    assert!(c.streams && c.multi_hset && c.restore_absttl && !c.mkstream);
    let c = Caps::for_version("6.2.14");
    assert!(c.mkstream && c.xautoclaim && !c.stream_meta_v7);
    let c = Caps::for_version("7.0.15");
    assert!(c.stream_meta_v7 && c.valkey.is_none());
    let c = Caps::for_version("valkey-8.0.2");
    assert_eq!((c.version, c.valkey), ((7, 2, 4), Some((8, 0, 2))));
    assert!(c.stream_meta_v7);
    assert_eq!(c.describe(), "valkey 8.0.2");
}

#[test]
fn escape_shows_bytes_like_redis_cli() {
    assert_eq!(data::escape(b"a b\x00\xff\n\"\\"), r#""a b\x00\xff\n\"\\""#);
    assert_eq!(data::preview(&[b'x'; 10], 3), "\"xxx\"... (10 bytes)");
}
