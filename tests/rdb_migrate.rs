//! `ferry migrate --rdb FILE` and `ferry verify --rdb FILE`, driving the real binary: files
//! written by `SAVE` on real servers of every supported version go into TLS targets, and the
//! target must then equal the server that wrote the file.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use support::data::{self, Caps, KeyState};
use support::ferry::{kill_runs, Endpoint, Ferry, KillAt, Run, Workdir};
use support::servers::{Server, Version};

const TTL_TOLERANCE_MS: i64 = 1_000;

/// `SAVE` on `src`, then a copy of its `dump.rdb` in `work` (the server may overwrite its own).
fn save(src: &Server, work: &Workdir, name: &str) -> PathBuf {
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file = work.file(name);
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    file
}

/// Every type in DBs 0 and 2, bulk keys in DB 5.
fn seed(src: &Server) -> usize {
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    let mut n = data::seed_rich(&mut c, 0, "rich:", &caps);
    n += data::seed_rich(&mut c, 2, "second:", &caps);
    n += data::seed_bulk(&mut c, 5, 3_000, "bulk:");
    n
}

fn snapshot_all(server: &Server) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    data::snapshot_all(&mut server.conn())
}

/// `ferry migrate --rdb FILE` into `dst` (with the test CA), progress as log lines.
fn migrate<'w>(work: &'w Workdir, file: &Path, dst: &impl Endpoint) -> Ferry<'w> {
    work.migrate_file(file, dst).progress("log")
}

fn report(run: &Run) -> &serde_json::Value {
    run.report.as_ref().expect("no report written")
}

/// The file written by `src_version` goes into a `dst_version` TLS target; the target then equals
/// the source server, and the built-in verification (file against target) agrees.
fn round_trip(src_version: Version, dst_version: Version) {
    let src = Server::plain(src_version);
    let dst = Server::tls_target(dst_version);
    seed(&src);
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");
    let run = migrate(&work, &file, &dst)
        .args(&["--log-every", "0"])
        .run();
    assert_eq!(run.code, 0, "ferry failed:\n{}", run.text());

    let source = snapshot_all(&src);
    let target = snapshot_all(&dst);
    assert!(source.len() > 3_000, "source has {} keys", source.len());
    data::assert_same(&source, &target, TTL_TOLERANCE_MS);
    data::assert_no_permanent_where_ttl(&source, &target);
    let r = report(&run);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(run.num("keys.written") as usize, source.len(), "{r}");
    assert_eq!(
        run.num("keys.scanned"),
        run.num("keys.written")
            + run.num("keys.expired_skipped")
            + run.num("keys.empty_skipped")
            + run.num("keys.modules_skipped"),
        "{r}"
    );
    assert_eq!(run.num("keys.reencoded"), 0, "{r}");
    assert_eq!(r["verify"]["status"], "ok", "verification: {r}");
    assert!(
        r["source"].as_str().unwrap_or("").starts_with("rdb:"),
        "{r}"
    );
    assert!(
        run.text().contains("of the file"),
        "no file progress:\n{}",
        run.text()
    );
    let kinds = data::kind_counts(&target);
    let mut expected = vec!["string", "list", "hash", "set", "zset"];
    if src_version.has_streams() {
        expected.push("stream");
    }
    for kind in expected {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {kinds:?}"
        );
    }
}

#[test]
fn rdb_3_2_into_redis_7_0() {
    round_trip(Version::V3_2, Version::V7_0);
}

#[test]
fn rdb_3_2_into_valkey_8() {
    round_trip(Version::V3_2, Version::Valkey8);
}

#[test]
fn rdb_5_0_into_redis_7_0() {
    round_trip(Version::V5_0, Version::V7_0);
}

#[test]
fn rdb_5_0_into_valkey_8() {
    round_trip(Version::V5_0, Version::Valkey8);
}

#[test]
fn rdb_6_0_into_redis_7_0() {
    round_trip(Version::V6_0, Version::V7_0);
}

#[test]
fn rdb_6_0_into_valkey_8() {
    round_trip(Version::V6_0, Version::Valkey8);
}

#[test]
fn rdb_6_2_into_redis_7_0() {
    round_trip(Version::V6_2, Version::V7_0);
}

#[test]
fn rdb_6_2_into_valkey_8() {
    round_trip(Version::V6_2, Version::Valkey8);
}

#[test]
fn rdb_7_0_into_redis_7_0() {
    round_trip(Version::V7_0, Version::V7_0);
}

#[test]
fn rdb_7_0_into_valkey_8() {
    round_trip(Version::V7_0, Version::Valkey8);
}

/// A Valkey 8 file (RDB 11) into Redis 7.0 (RDB 10): every payload is re-encoded, the report says
/// so, and nothing is lost.
#[test]
fn valkey_8_file_into_redis_7_0_is_reencoded() {
    let src = Server::plain(Version::Valkey8);
    let dst = Server::tls_target(Version::V7_0);
    seed(&src);
    let work = Workdir::new();
    let file = save(&src, &work, "valkey.rdb");
    let run = migrate(&work, &file, &dst).run();
    assert_eq!(run.code, 0, "ferry failed:\n{}", run.text());
    let source = snapshot_all(&src);
    let target = snapshot_all(&dst);
    data::assert_same(&source, &target, TTL_TOLERANCE_MS);
    let r = report(&run);
    assert_eq!(run.num("keys.reencoded"), run.num("keys.written"), "{r}");
    assert_eq!(run.num("keys.written") as usize, source.len(), "{r}");
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("re-encoded") && notes.contains("RDB 11") && notes.contains("RDB 10"),
        "{r}"
    );
    assert!(run.text().contains("re-encoded"), "{}", run.text());
    assert_eq!(r["verify"]["status"], "ok", "{r}");
}

/// SIGKILL at random points of a big file, then a rerun: the target ends exactly equal, and the
/// last run did not copy everything again.
#[test]
fn sigkill_mid_file_then_rerun_ends_exact() {
    let src = Server::plain(Version::V7_0);
    let n0 = data::seed_bulk(&mut src.conn(), 0, 200_000, "big:");
    let n3 = data::seed_bulk(&mut src.conn(), 3, 10_000, "other:");
    let all = (n0 + n3) as i64;
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let file = save(&src, &work, "big.rdb");
    let migrate = migrate(&work, &file, &dst)
        .batch_keys(50)
        .writers(1)
        .checkpoint("job.checkpoint.json")
        .no_verify();
    let mut rng = rand::rng();
    let mut points: Vec<i64> = (0..4)
        .map(|_| rng.random_range(all / 5..all * 9 / 10))
        .collect();
    points.sort_unstable();
    let at: Vec<KillAt> = [KillAt::Early(100)]
        .into_iter()
        .chain(points.into_iter().map(KillAt::Point))
        .collect();
    let kills = kill_runs(
        &migrate,
        &at,
        Duration::from_millis(2),
        |p, _| dst.total_keys() >= p,
        || dst.total_keys() < all,
    );
    assert!(kills >= 3, "only {kills} runs were killed mid-copy");
    let run = migrate.run();
    assert_eq!(run.code, 0, "{}", run.text());
    let r = report(&run);
    assert_eq!(r["resumed"], true, "{r}");
    assert!(
        run.num("keys.written_this_run") < all,
        "the final run re-copied everything: {r}"
    );
    assert_eq!(run.num("keys.written"), all, "{r}");
    assert!(run.text().contains("file offset"), "{}", run.text());
    let a = snapshot_all(&src);
    let b = snapshot_all(&dst);
    data::assert_same(&a, &b, TTL_TOLERANCE_MS);
}

/// A file's checkpoint stops applying once the file changes (its size and modification time are
/// part of the job): the rerun is refused with the reason and writes nothing.
#[test]
fn checkpoint_of_a_changed_file_is_refused() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 500, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");
    let migrate = migrate(&work, &file, &dst)
        .checkpoint("job.checkpoint.json")
        .no_verify();
    let first = migrate.run();
    assert_eq!(first.code, 0, "{}", first.text());
    assert_eq!(dst.dbsize(), 500);

    // The same bytes written again: a new modification time, so another job.
    std::thread::sleep(Duration::from_millis(50));
    let bytes = std::fs::read(&file).expect("read the file");
    std::fs::write(&file, bytes).expect("rewrite the file");
    let () = redis::cmd("FLUSHALL")
        .query(&mut dst.conn())
        .expect("FLUSHALL");
    let again = migrate.run();
    assert_eq!(again.code, 2, "{}", again.text());
    assert!(
        again.text().contains("belongs to a different job")
            && again.text().contains("If the file changed")
            && again.text().contains("--fresh"),
        "{}",
        again.text()
    );
    assert_eq!(dst.dbsize(), 0, "a refused rerun wrote keys");
}

/// Damaged files are refused before anything is written, with the offset in the message.
#[test]
fn damaged_files_exit_2_and_write_nothing() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 2_000, "bulk:");
    let marker = "ferry-marker-value-that-only-the-checksum-protects";
    let () = redis::cmd("SET")
        .arg("marker")
        .arg(marker)
        .query(&mut src.conn())
        .expect("SET");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let good = std::fs::read(save(&src, &work, "good.rdb")).expect("read");

    let at = good
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("marker in the file");
    let mut flipped = good.clone();
    flipped[at + 10] ^= 0x20;
    let mut magic = good.clone();
    magic[..5].copy_from_slice(b"RADIS");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            vec!["truncated", "offset"],
        ),
        ("flipped", flipped, vec!["CRC64", "offset"]),
        ("magic", magic, vec!["not an RDB file", "offset 0"]),
        ("empty", Vec::new(), vec!["is empty", "not an RDB file"]),
    ];
    for (name, bytes, expect) in cases {
        let file = work.file(&format!("{name}.rdb"));
        std::fs::write(&file, &bytes).expect("write");
        let run = migrate(&work, &file, &dst).fresh().run();
        assert_eq!(run.code, 2, "{name}: {}", run.text());
        let err = report(&run)["error"].as_str().unwrap_or("").to_string();
        for e in expect {
            assert!(err.contains(e), "{name}: {e:?} not in {err}");
        }
        assert!(err.contains("Nothing was written"), "{name}: {err}");
        assert_eq!(dst.total_keys(), 0, "{name}: keys were written");
    }
}

/// `--on-conflict fail` checks every key of the file when the target is not empty.
#[test]
fn conflicts_with_the_file_are_refused_before_writing() {
    let src = Server::plain(Version::V6_0);
    data::seed_bulk(&mut src.conn(), 0, 1_000, "bulk:");
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");
    let key = data::bulk_key("bulk:", 123);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("theirs")
        .query(&mut dst.conn())
        .expect("SET");
    let run1 = migrate(&work, &file, &dst).run();
    assert_eq!(run1.code, 2, "{}", run1.text());
    let err = report(&run1)["error"].as_str().unwrap_or("").to_string();
    assert!(
        err.contains(&key) && err.contains("Nothing was written"),
        "{err}"
    );
    assert_eq!(dst.total_keys(), 1);

    // skip: keeps the target's copy and counts it.
    let run2 = migrate(&work, &file, &dst)
        .on_conflict("skip")
        .no_verify()
        .run();
    assert_eq!(run2.code, 0, "{}", run2.text());
    assert_eq!(run2.num("keys.conflicts"), 1);
    let v: String = redis::cmd("GET")
        .arg(&key)
        .query(&mut dst.conn())
        .expect("GET");
    assert_eq!(v, "theirs");
    assert_eq!(dst.total_keys(), 1_000);
}

/// `ferry verify --rdb` compares a file with a target: equal after a migration, a difference
/// once the target changes.
#[test]
fn verify_rdb_against_the_target() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    data::seed_bulk(&mut c, 1, 2_000, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");
    let m = migrate(&work, &file, &dst).no_verify().run();
    assert_eq!(m.code, 0, "{}", m.text());

    let verify = work
        .ferry("verify")
        .rdb(&file)
        .to(&dst)
        .progress("none")
        .rounds(1);
    let v = verify.run();
    assert_eq!(v.code, 0, "{}", v.text());
    let r = report(&v);
    assert_eq!(r["status"], "ok", "{r}");
    assert!(
        r["source"].as_str().unwrap_or("").starts_with("rdb:"),
        "{r}"
    );

    let mut d = dst.conn();
    data::select(&mut d, 1);
    let () = redis::cmd("SET")
        .arg(data::bulk_key("bulk:", 5))
        .arg("changed")
        .query(&mut d)
        .expect("SET");
    let v = verify.run();
    assert_eq!(v.code, 1, "{}", v.text());
    assert!(
        v.text().contains(&data::bulk_key("bulk:", 5)),
        "{}",
        v.text()
    );
}

/// A Redis 7.0 file with a function library: loaded on the target with the keys, or left out
/// with `--skip-functions`.
#[test]
fn function_libraries_are_loaded_or_skipped() {
    let src = Server::plain(Version::V7_0);
    let code =
        "#!lua name=ferrylib\nredis.register_function('ferry_answer', function() return 42 end)";
    let () = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(code)
        .query::<String>(&mut src.conn())
        .map(|_| ())
        .expect("FUNCTION LOAD");
    data::seed_bulk(&mut src.conn(), 0, 500, "bulk:");
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");

    let dst = Server::tls_target(Version::Valkey8);
    let run1 = migrate(&work, &file, &dst).run();
    assert_eq!(run1.code, 0, "{}", run1.text());
    let answer: i64 = redis::cmd("FCALL")
        .arg("ferry_answer")
        .arg(0)
        .query(&mut dst.conn())
        .expect("FCALL");
    assert_eq!(answer, 42);
    assert!(report(&run1)["notes"].to_string().contains("ferrylib"));
    // A rerun finds the same library there: nothing to do, no conflict.
    let run2 = migrate(&work, &file, &dst)
        .fresh()
        .on_conflict("replace")
        .run();
    assert_eq!(run2.code, 0, "{}", run2.text());

    let dst2 = Server::tls_target(Version::V7_0);
    let run3 = migrate(&work, &file, &dst2).arg("--skip-functions").run();
    assert_eq!(run3.code, 0, "{}", run3.text());
    let libs: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut dst2.conn())
        .expect("FUNCTION LIST");
    assert!(
        matches!(&libs, redis::Value::Array(a) if a.is_empty()),
        "{libs:?}"
    );
    assert!(report(&run3)["notes"]
        .to_string()
        .contains("--skip-functions"));
    assert_eq!(dst2.dbsize(), 500);
}

/// Function libraries written by a Redis 7.0 release candidate (RDB opcode 246, a real file of
/// the redis-rdb-cli corpus) are migrated as Redis 7.0 loads them, into Redis 7.0 and Valkey 8,
/// and a rerun finds them already there.
#[test]
fn release_candidate_functions_are_migrated() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rdb/redis-rdb-cli/rdt/filter1.rdb");
    let work = Workdir::new();
    for version in [Version::V7_0, Version::Valkey8] {
        let dst = Server::tls_target(version);
        let run1 = migrate(&work, &file, &dst).fresh().run();
        assert_eq!(run1.code, 0, "{version:?}: {}", run1.text());
        let mut c = dst.conn();
        for (function, answer) in [("test1", 1), ("test2", 2)] {
            let got: i64 = redis::cmd("FCALL")
                .arg(function)
                .arg(0)
                .query(&mut c)
                .unwrap_or_else(|e| panic!("{version:?}: FCALL {function}: {e}"));
            assert_eq!(got, answer, "{version:?}: {function}");
        }
        let notes = report(&run1)["notes"].to_string();
        assert!(
            notes.contains("lib1") && notes.contains("lib2") && notes.contains("release candidate"),
            "{notes}"
        );
        // The file's one key (db 1) came along.
        assert_eq!(dst.dbsize_of(1), 1, "{version:?}");
        let run2 = migrate(&work, &file, &dst)
            .fresh()
            .on_conflict("replace")
            .run();
        assert_eq!(run2.code, 0, "{version:?} rerun: {}", run2.text());
    }
}

/// The writer's fallback helps live migrations too: a live Valkey 8 source (DUMP payloads of RDB
/// 11) into Redis 7.0 (RDB 10) — each refused payload is re-encoded and written again.
#[test]
fn live_valkey_8_into_redis_7_0_is_reencoded_by_the_writer() {
    let src = Server::plain(Version::Valkey8);
    let dst = Server::tls_target(Version::V7_0);
    seed(&src);
    let work = Workdir::new();
    let run = work.migrate(&src, &dst).progress("none").run();
    assert_eq!(run.code, 0, "ferry failed:\n{}", run.text());
    let source = snapshot_all(&src);
    let target = snapshot_all(&dst);
    data::assert_same(&source, &target, TTL_TOLERANCE_MS);
    assert_eq!(run.num("keys.reencoded"), run.num("keys.written"));
    assert!(run.text().contains("re-encoded"), "{}", run.text());
}

/// A file into a TLS Redis Cluster: the DB plan is checked (a cluster has only DB 0), the
/// conflict check is routed by slot, and the keys land on the masters owning their slots.
#[test]
fn rdb_into_a_tls_cluster() {
    use support::cluster_data;
    use support::servers::Cluster;

    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    data::seed_bulk(&mut c, 0, 3_000, "bulk:");
    data::seed_bulk(&mut c, 3, 100, "three:");
    let work = Workdir::new();
    let file = save(&src, &work, "dump.rdb");
    let dst = Cluster::start(Version::V7_0, true);

    let r = migrate(&work, &file, &dst).run();
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.text().contains("--db-map 3:0"), "{}", r.text());

    let clash = data::bulk_key("bulk:", 7);
    let () = redis::cmd("SET")
        .arg(&clash)
        .arg("already here")
        .query(&mut dst.conn())
        .expect("SET on the target");
    let r = migrate(&work, &file, &dst).db(0).run();
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.text().contains(&clash), "{}", r.text());
    assert_eq!(
        cluster_data::snapshot_cluster(&dst).len(),
        1,
        "written after a refusal"
    );
    let () = redis::cmd("DEL")
        .arg(&clash)
        .query(&mut dst.conn())
        .expect("DEL");

    let r = migrate(&work, &file, &dst).db(0).fresh().run();
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(report(&r)["verify"]["status"], "ok", "{}", r.text());
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    data::assert_same(&source, &target, TTL_TOLERANCE_MS);
}
