//! Live migration: every key, type and TTL from each old source version into each TLS target,
//! driving the real `ferry` binary against real servers, then reading both sides back.

mod support;

use std::collections::BTreeMap;

use support::data::{self, Caps, KeyState};
use support::ferry::Workdir;
use support::servers::{ca_cert, Server, Version};

const TTL_TOLERANCE_MS: i64 = 1_000;

/// Fills DBs 0, 2 and 5 of `src` with every type, binary keys, TTLs, and keys about to expire.
fn seed(src: &Server) -> usize {
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    let mut n = data::seed_rich(&mut c, 0, "rich:", &caps);
    n += data::seed_rich(&mut c, 2, "second:", &caps);
    n += data::seed_bulk(&mut c, 5, 3_000, "bulk:");
    // Expire while ferry runs: some before the scan reaches them, some between DUMP and RESTORE.
    for ttl in [5, 30, 120, 400] {
        n += data::seed_short_ttls(&mut c, 0, 50, ttl);
    }
    n
}

fn snapshot_all(server: &Server) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    data::snapshot_all(&mut server.conn())
}

fn migrate_and_check(src_version: Version, dst_version: Version) {
    let src = Server::plain(src_version);
    let dst = Server::tls_target(dst_version);
    let seeded = seed(&src);
    let work = Workdir::new();
    let ca = ca_cert();
    let run = work.run(&[
        "migrate",
        "--source",
        &src.url(),
        "--target",
        &dst.url(),
        "--target-cacert",
        ca.to_str().unwrap(),
        "--progress",
        "log",
        "--no-verify",
    ]);
    assert_eq!(run.code, 0, "ferry failed:\n{}", run.text());

    let source = snapshot_all(&src);
    let target = snapshot_all(&dst);
    assert!(
        source.len() > 500,
        "seeded {seeded}, source now has {}",
        source.len()
    );
    // Source keys that expire between the two snapshots may be absent from the target.
    data::assert_same_allow_expired(&source, &target, TTL_TOLERANCE_MS, 2_000);
    data::assert_no_permanent_where_ttl(&source, &target);
    // Nothing that expired may come back: every target key is on the source too, or had a TTL
    // that ran out on the source in the meantime (then it must be gone soon on the target too).
    for (k, t) in &target {
        if !source.contains_key(k) {
            assert!(
                t.pttl >= 0 && t.pttl < 2_000,
                "key {:?} exists only on the target, pttl {}",
                k,
                t.pttl
            );
        }
    }
    // Several DBs, every type.
    let dbs: std::collections::BTreeSet<u32> = target.keys().map(|(db, _)| *db).collect();
    assert_eq!(dbs, [0, 2, 5].into_iter().collect(), "target DBs");
    let kinds = data::kind_counts(&target);
    let caps = Caps::detect(&mut src.conn());
    let mut expected = vec!["string", "list", "hash", "set", "zset"];
    if caps.streams {
        expected.push("stream");
    }
    for kind in expected {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} on the target: {kinds:?}"
        );
    }
    // The report accounts for every key listed by SCAN.
    let scanned = run.num("keys.scanned");
    let accounted =
        run.num("keys.written") + run.num("keys.expired_skipped") + run.num("keys.vanished");
    assert_eq!(
        scanned,
        accounted,
        "report: {}",
        run.report.as_ref().unwrap()
    );
    // Short-TTL keys may expire on the target after being written, never the other way round.
    assert!(
        run.num("keys.written") as usize >= target.len(),
        "written < keys on target"
    );
    assert!(run.num("keys.written") <= scanned);
    assert_eq!(run.report.as_ref().unwrap()["status"], "ok");
    assert!(run.num("elapsed_ms") >= 0 && run.num("bytes") > 0);
}

#[test]
fn redis_3_2_into_redis_7_0_tls() {
    migrate_and_check(Version::V3_2, Version::V7_0);
}

#[test]
fn redis_3_2_into_valkey_8_tls() {
    migrate_and_check(Version::V3_2, Version::Valkey8);
}

#[test]
fn redis_5_0_into_redis_7_0_tls() {
    migrate_and_check(Version::V5_0, Version::V7_0);
}

#[test]
fn redis_5_0_into_valkey_8_tls() {
    migrate_and_check(Version::V5_0, Version::Valkey8);
}

#[test]
fn redis_6_0_into_redis_7_0_tls() {
    migrate_and_check(Version::V6_0, Version::V7_0);
}

#[test]
fn redis_6_0_into_valkey_8_tls() {
    migrate_and_check(Version::V6_0, Version::Valkey8);
}

#[test]
fn redis_6_2_into_redis_7_0_tls() {
    migrate_and_check(Version::V6_2, Version::V7_0);
}

#[test]
fn redis_6_2_into_valkey_8_tls() {
    migrate_and_check(Version::V6_2, Version::Valkey8);
}

/// Values of 1 MiB among small keys: every value arrives intact, and ferry's memory stays
/// bounded by its batches. A DUMP's size is unknown until it arrives, so a reader that sized
/// its first round trips for small values would fetch hundreds of these at once.
#[test]
fn big_values_are_copied_with_bounded_memory() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    let mut c = src.conn();
    let big = 120;
    let mut expected = Vec::new();
    for i in 0..big {
        // Random bytes: Redis would LZF-compress a repetitive value in its DUMP payload.
        let value: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
        let key = format!("big:{i}");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query(&mut c)
            .expect("SET");
        if i % 40 == 0 {
            expected.push((key, value));
        }
    }
    data::seed_bulk(&mut c, 0, 2_000, "small:");
    let work = Workdir::new();
    let run = work.run(&[
        "migrate",
        "--source",
        &src.url(),
        "--target",
        &dst.url(),
        "--target-cacert",
        &ca_cert().to_string_lossy(),
        "--progress",
        "none",
    ]);
    // Exit 0 includes the built-in verification finding both sides equal.
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.written"), big + 2_000);
    let mut d = dst.conn();
    for (key, value) in &expected {
        let got: Vec<u8> = redis::cmd("GET").arg(key).query(&mut d).expect("GET");
        assert!(got == *value, "{key} differs on the target");
    }
    let peak = run.num("peak_rss_bytes");
    assert!(
        peak > 0 && peak < 100 << 20,
        "ferry's peak RSS was {} MiB for 120 MiB of values",
        peak >> 20
    );
}
