//! Verification against real servers: `ferry verify` and the verification at the end of
//! `ferry migrate`, driving the real binary.
//!
//! - no false positives: 3.2 and 6.2 sources (every type, small and large encodings, binary
//!   keys, TTLs, keys expiring during the run) against Redis 7.0 and Valkey 8.0 TLS targets;
//! - every kind of difference injected on the target is reported with its kind and key;
//! - `ferry migrate` exits 1 when its verification finds a difference;
//! - a difference that settles between rounds, and a key that expires, are not losses;
//! - `--sample` finds differences and says it was a sample;
//! - (ignored by default) throughput on 200 000 keys: `cargo test --release --test verify -- --ignored --nocapture`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use ferry::report::escape_key;
use support::data::{self, Caps};
use support::ferry::{Endpoint, Run, Workdir};
use support::servers::{Cluster, Server, Version, TEST_PASSWORD};

/// `ferry CMD` from `src` to `dst` (a server or a cluster), `--progress none`, then `extra`;
/// fails if the password shows in the output.
fn ferry(
    work: &Workdir,
    cmd: &str,
    src: &impl Endpoint,
    dst: &impl Endpoint,
    extra: &[&str],
) -> Run {
    let run = work
        .between(cmd, src, dst)
        .progress("none")
        .args(extra)
        .run();
    assert!(
        !run.text().contains(TEST_PASSWORD),
        "the password appears in the output:\n{}",
        run.text()
    );
    run
}

/// `ferry migrate --no-verify` from `src` to `dst`, which must succeed: the copy a test then
/// changes and verifies.
fn copy(work: &Workdir, src: &Server, dst: &Server) {
    let run = ferry(work, "migrate", src, dst, &["--no-verify"]);
    assert_eq!(run.code, 0, "migrate failed:\n{}", run.text());
}

/// Two verification rounds 100 ms apart: one quick recheck.
const TWO_QUICK_ROUNDS: [&str; 4] = ["--rounds", "2", "--round-pause", "100"];

/// `ferry verify` from `src` to `dst` (a server or a cluster) with `extra`.
fn verify(work: &Workdir, src: &impl Endpoint, dst: &impl Endpoint, extra: &[&str]) -> Run {
    ferry(work, "verify", src, dst, extra)
}

fn report(run: &Run) -> &serde_json::Value {
    run.report
        .as_ref()
        .unwrap_or_else(|| panic!("no report written:\n{}", run.text()))
}

/// The report of a run whose verification found differences: exit 1, status `mismatch`.
fn mismatch(run: &Run) -> &serde_json::Value {
    assert_eq!(run.code, 1, "differences should be found:\n{}", run.text());
    let r = report(run);
    assert_eq!(r["status"], "mismatch", "{r}");
    r
}

/// (kind, escaped key) of every listed difference.
fn differences(v: &serde_json::Value) -> BTreeSet<(String, String)> {
    v["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences array in {v}"))
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn diff(kind: &str, key: &[u8]) -> (String, String) {
    (kind.to_string(), escape_key(key))
}

fn cmd(conn: &mut impl redis::ConnectionLike, args: &[&[u8]]) -> redis::Value {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(conn)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

// ------------------------------------------------------------------ no false positives

fn equal_after_migration(src_version: Version, dst_version: Version) {
    let src = Server::plain(src_version);
    let dst = Server::tls_target(dst_version);
    {
        let mut c = src.conn();
        let caps = Caps::detect(&mut c);
        data::seed_rich(&mut c, 0, "rich:", &caps);
        data::seed_rich(&mut c, 2, "second:", &caps);
        data::seed_bulk(&mut c, 5, 2_000, "bulk:");
        // Keys that expire while ferry copies and verifies.
        data::seed_short_ttls(&mut c, 0, 60, 1_500);
    }
    let work = Workdir::new();

    // migrate verifies by default.
    let run = ferry(&work, "migrate", &src, &dst, &[]);
    assert_eq!(run.code, 0, "migrate + verify failed:\n{}", run.text());
    let r = report(&run);
    assert_eq!(r["status"], "ok", "{r}");
    let v = &r["verify"];
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["mode"], "full");
    assert_eq!(v["totals"]["differences"], 0, "{v}");
    assert!(run.stderr.contains("EQUAL"), "{}", run.stderr);

    // ferry verify on its own, after the short TTLs are gone: exact counts.
    std::thread::sleep(Duration::from_millis(1_600));
    let run = verify(&work, &src, &dst, &[]);
    assert_eq!(run.code, 0, "verify failed:\n{}", run.text());
    let v = report(&run);
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["totals"]["differences"], 0, "{v}");
    let (s, t) = (&v["totals"]["source"], &v["totals"]["target"]);
    assert_eq!(s, t, "counts differ: {v}");
    assert!(s["keys"].as_u64().unwrap_or(0) > 2_000, "{v}");
    assert!(s["with_ttl"].as_u64().unwrap_or(0) > 10, "{v}");
    let dbs: Vec<u64> = v["dbs"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["db"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(dbs, vec![0, 2, 5], "{v}");
    let mut kinds = vec!["string", "list", "set", "hash", "zset"];
    if src_version.has_streams() {
        kinds.push("stream");
    }
    for k in kinds {
        assert!(s["types"][k].as_u64().unwrap_or(0) > 0, "no {k}: {v}");
    }
    assert!(s["types"].get("undecodable").is_none(), "{v}");

    // A sample agrees too, and says it is one.
    let run = verify(&work, &src, &dst, &["--sample", "100"]);
    assert_eq!(run.code, 0, "verify --sample failed:\n{}", run.text());
    let v = report(&run);
    assert_eq!(v["mode"], "sample", "{v}");
    assert!(run.stderr.contains("SAMPLE ONLY"), "{}", run.stderr);
}

#[test]
fn equal_redis_3_2_into_redis_7_0() {
    equal_after_migration(Version::V3_2, Version::V7_0);
}

#[test]
fn equal_redis_3_2_into_valkey_8() {
    equal_after_migration(Version::V3_2, Version::Valkey8);
}

#[test]
fn equal_redis_6_2_into_redis_7_0() {
    equal_after_migration(Version::V6_2, Version::V7_0);
}

#[test]
fn equal_redis_6_2_into_valkey_8() {
    equal_after_migration(Version::V6_2, Version::Valkey8);
}

// ------------------------------------------------------------------ each kind of difference

#[test]
fn every_kind_of_difference_is_reported() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    {
        let mut c = src.conn();
        let caps = Caps::detect(&mut c);
        data::seed_rich(&mut c, 0, "rich:", &caps);
        data::seed_bulk(&mut c, 3, 500, "bulk:");
    }
    let work = Workdir::new();
    copy(&work, &src, &dst);

    let mut t = dst.conn();
    cmd(&mut t, &[b"DEL", b"rich:str:plain"]);
    cmd(&mut t, &[b"DEL", b"rich:bin:\x00nul\x00"]);
    cmd(&mut t, &[b"SET", b"only-on-target", b"surprise"]);
    cmd(
        &mut t,
        &[b"HSET", b"rich:hash:small", b"name", b"not-ferry"],
    );
    cmd(
        &mut t,
        &[b"HSET", b"rich:hash:large", b"field-7", b"changed"],
    );
    cmd(&mut t, &[b"ZADD", b"rich:zset:small", b"43", b"int"]);
    cmd(&mut t, &[b"LSET", b"rich:list:small", b"1", b"changed"]);
    cmd(&mut t, &[b"LSET", b"rich:list:large", b"1000", b"changed"]);
    let first: redis::Value = cmd(
        &mut t,
        &[b"XRANGE", b"rich:stream:large", b"-", b"+", b"COUNT", b"1"],
    );
    let id = match &first {
        redis::Value::Array(entries) => match entries.first() {
            Some(redis::Value::Array(e)) => match e.first() {
                Some(redis::Value::BulkString(id)) => id.clone(),
                other => panic!("XRANGE entry id: {other:?}"),
            },
            other => panic!("XRANGE entry: {other:?}"),
        },
        other => panic!("XRANGE: {other:?}"),
    };
    cmd(&mut t, &[b"XDEL", b"rich:stream:large", &id]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("rich:ttl:str:1h")
        .query(&mut t)
        .expect("PTTL");
    assert!(pttl > 0);
    cmd(
        &mut t,
        &[
            b"PEXPIRE",
            b"rich:ttl:str:1h",
            (pttl + 10_000).to_string().as_bytes(),
        ],
    );
    cmd(&mut t, &[b"PERSIST", b"rich:ttl:hash:1h"]);
    cmd(&mut t, &[b"DEL", b"rich:str:utf8"]);
    cmd(&mut t, &[b"RPUSH", b"rich:str:utf8", b"now a list"]);
    data::select(&mut t, 3);
    cmd(&mut t, &[b"DEL", b"bulk:00000007"]);

    let run = verify(&work, &src, &dst, &TWO_QUICK_ROUNDS);
    let v = mismatch(&run);
    let expected: BTreeSet<(String, String)> = [
        diff("missing", b"rich:str:plain"),
        diff("missing", b"rich:bin:\x00nul\x00"),
        diff("missing", b"bulk:00000007"),
        diff("extra", b"only-on-target"),
        diff("value", b"rich:hash:small"),
        diff("value", b"rich:hash:large"),
        diff("value", b"rich:zset:small"),
        diff("value", b"rich:list:small"),
        diff("value", b"rich:list:large"),
        diff("value", b"rich:stream:large"),
        diff("ttl", b"rich:ttl:str:1h"),
        diff("ttl", b"rich:ttl:hash:1h"),
        diff("type", b"rich:str:utf8"),
    ]
    .into_iter()
    .collect();
    assert_eq!(differences(v), expected, "{v}");
    assert_eq!(v["totals"]["differences"], expected.len(), "{v}");
    let by_kind = &v["totals"]["by_kind"];
    assert_eq!(by_kind["missing"], 3, "{v}");
    assert_eq!(by_kind["extra"], 1, "{v}");
    assert_eq!(by_kind["value"], 6, "{v}");
    assert_eq!(by_kind["ttl"], 2, "{v}");
    assert_eq!(by_kind["type"], 1, "{v}");
    assert_eq!(v["rounds_run"], 2, "{v}");
    // The DB of the bulk key is named, and the TTL detail says by how much.
    let listed = v["differences"].as_array().expect("differences");
    let bulk = listed
        .iter()
        .find(|d| d["key"] == escape_key(b"bulk:00000007"))
        .expect("bulk key listed");
    assert_eq!(bulk["db"], 3);
    let ttl = listed
        .iter()
        .find(|d| d["key"] == escape_key(b"rich:ttl:str:1h"))
        .expect("ttl key listed");
    let detail = ttl["detail"].as_str().unwrap_or("");
    let by: i64 = detail
        .split("differs by ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.trim_start_matches('+').parse().ok())
        .unwrap_or_else(|| panic!("no difference in {ttl}"));
    assert!((9_000..=11_000).contains(&by), "{ttl}");
    // Counts side by side show the missing and extra keys.
    let (s, t) = (&v["totals"]["source"], &v["totals"]["target"]);
    assert_eq!(
        s["keys"].as_i64().unwrap_or(0) - 3 + 1,
        t["keys"].as_i64().unwrap_or(-1),
        "{v}"
    );
    assert!(run.stderr.contains("DIFFERENT"), "{}", run.stderr);
    assert!(run.stderr.contains("rich:hash:small"), "{}", run.stderr);
}

// ------------------------------------------------------------------ migrate's exit code

#[test]
fn migrate_exits_1_when_its_verification_differs() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    data::seed_bulk(&mut src.conn(), 0, 300, "bulk:");
    cmd(
        &mut dst.conn(),
        &[b"SET", b"left-over", b"from an earlier test"],
    );
    let work = Workdir::new();
    let run = ferry(&work, "migrate", &src, &dst, &["--rounds", "1"]);
    let r = mismatch(&run);
    assert_eq!(r["keys"]["written"], 300, "{r}");
    assert_eq!(
        differences(&r["verify"]),
        [diff("extra", b"left-over")].into_iter().collect(),
        "{r}"
    );
    // --no-verify skips it (the checkpoint says the copy is complete).
    let run = ferry(&work, "migrate", &src, &dst, &["--no-verify"]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(report(&run)["verify"].is_null());
}

// ------------------------------------------------------------------ live sources

#[test]
fn settled_and_expired_keys_are_not_losses() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    data::seed_bulk(&mut src.conn(), 0, 500, "bulk:");
    let work = Workdir::new();
    copy(&work, &src, &dst);

    // A hash changed on the target (put back during the pause), and a source key that expires.
    let key = data::bulk_key("bulk:", 1);
    let mut t = dst.conn();
    cmd(&mut t, &[b"HSET", key.as_bytes(), b"f", b"being written"]);
    let mut s = src.conn();
    cmd(&mut s, &[b"SET", b"expiring", b"soon", b"PX", b"4000"]);

    let mut verify = work
        .between("verify", &src, &dst)
        .progress("none")
        .args(&["--rounds", "3", "--round-pause", "3000"])
        .spawn();
    let stderr = verify.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let started = Instant::now();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("ferry ended before round 2:\n{seen}"))
            .expect("read stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("round 2") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{seen}");
    }
    // The pause is 3 s: put the source's value back on the target now.
    let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut s).expect("DUMP");
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut s).expect("PTTL");
    let _: () = redis::cmd("RESTORE")
        .arg(&key)
        .arg(pttl.max(0))
        .arg(dump)
        .arg("REPLACE")
        .query(&mut t)
        .expect("RESTORE");
    for line in lines {
        seen.push_str(&line.unwrap_or_default());
        seen.push('\n');
    }
    let mut run = verify.wait();
    run.stderr = seen;
    assert_eq!(
        run.code,
        0,
        "the differences should have settled:\n{}",
        run.text()
    );
    let v = report(&run);
    assert_eq!(v["totals"]["differences"], 0, "{v}");
    assert!(
        v["totals"]["settled_on_recheck"].as_u64().unwrap_or(0) >= 1,
        "{v}"
    );
    assert_eq!(v["totals"]["expired_during_verify"], 1, "{v}");
    assert!(v["rounds_run"].as_u64().unwrap_or(0) >= 2, "{v}");
}

// ------------------------------------------------------------------ cluster target

#[test]
fn cluster_target_differences_are_found() {
    let src = Server::plain(Version::V6_2);
    let dst = Cluster::start(Version::V7_0, true);
    {
        let mut c = src.conn();
        let caps = Caps::detect(&mut c);
        data::seed_rich(&mut c, 0, "rich:", &caps);
        data::seed_bulk(&mut c, 0, 2_000, "bulk:");
    }
    let work = Workdir::new();
    let run = ferry(&work, "migrate", &src, &dst, &[]);
    assert_eq!(
        run.code,
        0,
        "migrate + verify into a cluster:\n{}",
        run.text()
    );
    assert_eq!(report(&run)["verify"]["status"], "ok", "{}", run.text());

    let mut cc = dst.conn();
    let gone = data::bulk_key("bulk:", 3);
    cmd(&mut cc, &[b"DEL", gone.as_bytes()]);
    cmd(&mut cc, &[b"HSET", b"rich:hash:small", b"name", b"changed"]);
    cmd(&mut cc, &[b"SET", b"{elsewhere}extra", b"1"]);
    let run = verify(&work, &src, &dst, &TWO_QUICK_ROUNDS);
    assert_eq!(run.code, 1, "{}", run.text());
    let v = report(&run);
    let expected: BTreeSet<(String, String)> = [
        diff("missing", gone.as_bytes()),
        diff("value", b"rich:hash:small"),
        diff("extra", b"{elsewhere}extra"),
    ]
    .into_iter()
    .collect();
    assert_eq!(differences(v), expected, "{v}");
    assert!(
        v["servers"]
            .as_str()
            .unwrap_or("")
            .contains("cluster of 3 masters"),
        "{v}"
    );
}

// ------------------------------------------------------------------ --sample

#[test]
fn sample_finds_differences_and_says_so() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    {
        let mut c = src.conn();
        data::seed_bulk(&mut c, 0, 3_000, "big:");
        data::seed_bulk(&mut c, 1, 40, "small:");
    }
    let work = Workdir::new();
    copy(&work, &src, &dst);
    {
        let mut t = dst.conn();
        for i in (0..3_000).step_by(2) {
            cmd(&mut t, &[b"DEL", data::bulk_key("big:", i).as_bytes()]);
        }
        data::select(&mut t, 1);
        cmd(&mut t, &[b"DEL", data::bulk_key("small:", 5).as_bytes()]);
    }
    let run = verify(&work, &src, &dst, &["--sample", "100", "--rounds", "1"]);
    assert_eq!(run.code, 1, "{}", run.text());
    let v = report(&run);
    assert_eq!(v["mode"], "sample", "{v}");
    assert_eq!(v["sample"]["requested_per_db"], 100, "{v}");
    assert!(run.stderr.contains("SAMPLE ONLY"), "{}", run.stderr);
    let found = differences(v);
    // DB 1 has fewer keys than the sample size: it is checked whole, exactly.
    assert!(
        found.contains(&diff("missing", data::bulk_key("small:", 5).as_bytes())),
        "{v}"
    );
    let missing_big = found
        .iter()
        .filter(|(k, key)| k == "missing" && key.starts_with("\"big:"))
        .count();
    assert!(missing_big > 10, "{v}");
    // Exact key counts come from the servers.
    assert_eq!(v["dbs"][0]["source"]["keys"], 3_000, "{v}");
    assert_eq!(v["dbs"][0]["target"]["keys"], 1_500, "{v}");
}

// ------------------------------------------------------------------ throughput

/// 200 000 keys (`DEBUG POPULATE`) on a 6.2 source, migrated to a 7.0 TLS target, then verified.
/// Run with `cargo test --release --test verify -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_200k_keys() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    cmd(&mut src.conn(), &[b"DEBUG", b"POPULATE", b"200000"]);
    let work = Workdir::new();
    copy(&work, &src, &dst);
    let started = Instant::now();
    let run = verify(&work, &src, &dst, &[]);
    let wall = started.elapsed();
    assert_eq!(run.code, 0, "verify failed:\n{}", run.text());
    let v = report(&run);
    println!(
        "verify of 200000 keys: {:.2}s wall, {} keys/s (report), elapsed_ms {}",
        wall.as_secs_f64(),
        v["keys_per_sec"],
        v["elapsed_ms"]
    );
}
