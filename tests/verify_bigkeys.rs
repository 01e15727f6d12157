//! Verification of big keys (#14 item 5): keys over `--big-key-bytes` are read in chunks on both
//! sides and digested incrementally, never DUMPed. Equal big keys of every type (a stream with
//! groups, consumers and pending entries included) verify as equal with no DUMP of them on
//! either server (`INFO commandstats`), on a 6.2 and a 3.2 source (no MEMORY USAGE); one element
//! changed in each is reported by name; and verifying a 40 MB string stays small in memory.

mod support;

use std::collections::BTreeSet;

use ferry::report::escape_key;
use support::bigkey_data::{seed_big, BigSizes, BIG_KEYS};
use support::data;
use support::ferry::{Run, Workdir};
use support::servers::{ca_cert, Server, Version, TEST_PASSWORD};

const SIZES: BigSizes = BigSizes {
    hash: 40_000,
    list: 40_000,
    zset: 30_000,
    set: 30_000,
    string: 3 << 20,
    stream: 5_000,
};

/// Small keys beside the big ones.
const SMALL: usize = 2_000;

/// Keys above this are big in these tests (every big key is well above it, no small key is).
const BIG_KEY_BYTES: &str = "200000";

fn ferry(work: &Workdir, cmd: &str, src: &Server, dst: &Server, extra: &[&str]) -> Run {
    let ca = ca_cert();
    let (src_url, dst_url) = (src.url(), dst.url());
    let mut args = vec![
        cmd,
        "--source",
        &src_url,
        "--target",
        &dst_url,
        "--target-cacert",
        ca.to_str().expect("CA path is UTF-8"),
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    let run = work.run(&args);
    assert!(!run.text().contains(TEST_PASSWORD), "{}", run.text());
    run
}

/// Copies every key of DB 0 with the test client's own DUMP / RESTORE (with its TTL).
fn copy_all(src: &Server, dst: &Server) {
    let (mut s, mut t) = (src.conn(), dst.conn());
    for key in data::scan_keys(&mut s, 0) {
        let (payload, pttl): (Vec<u8>, i64) = redis::pipe()
            .cmd("DUMP")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query(&mut s)
            .expect("DUMP + PTTL");
        redis::cmd("RESTORE")
            .arg(&key)
            .arg(pttl.max(0))
            .arg(payload)
            .arg("REPLACE")
            .query::<()>(&mut t)
            .expect("RESTORE");
    }
}

/// `cmdstat_dump` calls since the last `CONFIG RESETSTAT`.
fn dump_calls(s: &Server) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut s.conn())
        .expect("INFO commandstats");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_dump:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn reset_stats(s: &Server) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut s.conn())
        .expect("CONFIG RESETSTAT");
}

/// A source of `version` with the big keys and [`SMALL`] small ones, and a Valkey 8 TLS target
/// holding the same.
fn equal_pair(version: Version) -> (Server, Server) {
    let src = Server::plain(version);
    let dst = Server::tls_target(Version::Valkey8);
    let mut c = src.conn();
    seed_big(&mut c, SIZES, version.has_streams());
    data::seed_bulk(&mut c, 0, SMALL, "small:");
    copy_all(&src, &dst);
    reset_stats(&src);
    reset_stats(&dst);
    (src, dst)
}

fn big_keys(version: Version) -> Vec<&'static str> {
    BIG_KEYS
        .iter()
        .copied()
        .filter(|k| version.has_streams() || *k != "big:stream")
        .collect()
}

fn equal_big_keys_verify_without_dump(version: Version) {
    let (src, dst) = equal_pair(version);
    let work = Workdir::new();
    let run = ferry(
        &work,
        "verify",
        &src,
        &dst,
        &["--big-key-bytes", BIG_KEY_BYTES],
    );
    assert_eq!(run.code, 0, "verify failed:\n{}", run.text());
    let v = run.report.as_ref().expect("report");
    assert_eq!(v["totals"]["differences"], 0, "{v}");
    let big = big_keys(version).len() as u64;
    assert_eq!(v["totals"]["big_keys_read"], 2 * big, "{v}");
    // Every small key DUMPed once on each side, no big one. Before 7.0 (no ACL DRYRUN) the
    // gate's rights check runs one DUMP, of an absent key, on the source.
    let rights_probe = u64::from(src.version < Version::V7_0);
    assert_eq!(
        dump_calls(&src),
        SMALL as u64 + rights_probe,
        "source DUMPs"
    );
    assert_eq!(dump_calls(&dst), SMALL as u64, "target DUMPs");

    // Without big-key detection, the old path DUMPs them (so the check above can fail).
    reset_stats(&src);
    let run = ferry(&work, "verify", &src, &dst, &["--big-key-bytes", "0"]);
    assert_eq!(run.code, 0, "verify failed:\n{}", run.text());
    assert_eq!(dump_calls(&src), SMALL as u64 + big + rights_probe);
}

#[test]
fn equal_big_keys_from_6_2_verify_without_dump() {
    equal_big_keys_verify_without_dump(Version::V6_2);
}

#[test]
fn equal_big_keys_from_3_2_verify_without_dump() {
    equal_big_keys_verify_without_dump(Version::V3_2);
}

fn q(c: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(c)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[test]
fn one_changed_element_in_a_big_key_is_reported() {
    let (src, dst) = equal_pair(Version::V6_2);
    let mut t = dst.conn();
    q(&mut t, &["HSET", "big:hash", "field:5", "changed"]);
    q(&mut t, &["LSET", "big:list", "7", "changed"]);
    // The next double after the member's score: only an exact score compare sees it.
    let next = f64::from_bits(support::bigkey_data::score(10).to_bits() + 1);
    q(
        &mut t,
        &["ZADD", "big:zset", &format!("{next:.17e}"), "member:10"],
    );
    q(&mut t, &["SREM", "big:set", "s:3:sss"]);
    q(&mut t, &["SADD", "big:set", "s:3:ssS"]);
    q(&mut t, &["SETRANGE", "big:string", "1000", "X"]);
    // One more delivery of a pending entry.
    q(
        &mut t,
        &["XCLAIM", "big:stream", "g1", "bob", "0", "1001-0"],
    );
    let work = Workdir::new();
    let run = ferry(
        &work,
        "verify",
        &src,
        &dst,
        &["--big-key-bytes", BIG_KEY_BYTES, "--rounds", "1"],
    );
    assert_eq!(
        run.code,
        1,
        "verify must find the differences:\n{}",
        run.text()
    );
    let v = run.report.as_ref().expect("report");
    let found: BTreeSet<(String, String)> = v["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("key"))
        })
        .collect();
    let want: BTreeSet<(String, String)> = BIG_KEYS
        .iter()
        .map(|k| ("value".to_string(), escape_key(k.as_bytes())))
        .collect();
    assert_eq!(found, want, "{v}");
    // Read in chunks on both sides (and again when their buckets were re-read).
    assert!(
        v["totals"]["big_keys_read"].as_u64().unwrap_or(0) >= 2 * BIG_KEYS.len() as u64,
        "{v}"
    );
}

/// A string of `n` bytes that LZF cannot shrink (so a DUMP payload is as big as the value).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The issue measured 627 MB to verify one 200 MB string. A 40 MB one, read in chunks, keeps the
/// process far below its size; DUMPed (detection off), it costs several times the value.
#[test]
fn verifying_a_40_mb_string_stays_small() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    let value = noise(40 << 20);
    for s in [&src, &dst] {
        let mut c = s.conn();
        for part in value.chunks(4 << 20) {
            redis::cmd("APPEND")
                .arg("huge")
                .arg(part)
                .query::<()>(&mut c)
                .expect("APPEND");
        }
    }
    let work = Workdir::new();
    let rss = |extra: &[&str]| {
        let run = ferry(&work, "verify", &src, &dst, extra);
        assert_eq!(run.code, 0, "verify failed:\n{}", run.text());
        let v = run.report.as_ref().expect("report");
        v["peak_rss_bytes"].as_u64().expect("peak_rss_bytes")
    };
    let chunked = rss(&[]);
    let dumped = rss(&["--big-key-bytes", "0"]);
    eprintln!(
        "verify of a 40 MB string: peak RSS {} MB in chunks, {} MB with DUMP",
        chunked >> 20,
        dumped >> 20
    );
    assert!(
        chunked < 40 << 20,
        "peak RSS {chunked} bytes for a 40 MB string"
    );
    assert!(chunked < dumped / 2, "chunked {chunked}, dumped {dumped}");
}
