//! Big keys copied in chunks from a live source (issue #14, items 1, 2, 4, 6), against real servers.
//!
//! A 6.2 source and a 3.2 source (no MEMORY USAGE) hold keys over `--big-key-bytes` of every
//! type beside small keys, some with TTLs, and the Valkey 8 TLS target's `proto-max-bulk-len`
//! (4mb) refuses a RESTORE of any of them: the copy exits 0, the target equals the source (read
//! by the independent `redis` client, stream groups and PEL included), the report counts the big
//! keys and its peak RSS stays bounded. The same job with detection off (`--big-key-bytes 0`,
//! i.e. the code before #14) fails on the first big key. A copy SIGKILLed while a big key is half
//! written, then rerun, is exact and leaves no temporary key. A cluster target gets each big
//! key in its own slot (keys with hash tags included), without CROSSSLOT.
//! Every run also verifies (big keys read in chunks on both sides, `verify/big.rs`), so exit 0
//! means ferry's own verification agreed too.

mod support;

use std::time::{Duration, Instant};

use redis::ConnectionLike;
use support::cluster_data;
use support::data::{self, assert_same};
use support::ferry::{finish, Run, Workdir};
use support::servers::{ca_cert, Cluster, Server, ServerOpts, Version};

const HASH_FIELDS: usize = 200_000;
const LIST_LEN: usize = 200_000;
const ZSET_LEN: usize = 100_000;
const SET_LEN: usize = 100_000;
/// Under the target's 4mb: a string can never be larger than `proto-max-bulk-len` (APPEND and
/// SETRANGE refuse to grow one past it), so no copy method can write a bigger one there.
const STRING_BYTES: usize = 3 << 20;
const STREAM_LEN: usize = 30_000;

/// Valkey 8 TLS target refusing any value over 4mb.
fn small_bulk_target() -> Server {
    Server::start(
        Version::Valkey8,
        ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), "4mb".into()],
            ..ServerOpts::tls()
        },
    )
}

/// Runs `pipe` on `c`, in pieces of `n` commands built by `add(pipe, i)` for `i` in `0..total`.
fn fill(
    c: &mut redis::Connection,
    total: usize,
    n: usize,
    add: impl Fn(&mut redis::Pipeline, usize),
) {
    let mut i = 0;
    while i < total {
        let mut p = redis::pipe();
        for j in i..(i + n).min(total) {
            add(&mut p, j);
        }
        p.query::<()>(c).expect("seed pipeline");
        i += n;
    }
}

/// Big keys of every type `version` has (keys are prefixed, so the cluster test can use hash
/// tags), and small keys beside them; a few with TTLs.
fn seed_big(c: &mut redis::Connection, streams: bool, prefix: &str) {
    let k = |name: &str| format!("{prefix}{name}");
    let hash = k("big:hash");
    fill(c, HASH_FIELDS / 500, 1, |p, b| {
        let mut cmd = redis::cmd("HMSET");
        cmd.arg(&hash);
        for i in b * 500..(b + 1) * 500 {
            cmd.arg(format!("field:{i}"))
                .arg(format!("value-{i}-{}", "h".repeat(i % 40)));
        }
        p.add_command(cmd).ignore();
    });
    let list = k("big:list");
    fill(c, LIST_LEN / 1000, 1, |p, b| {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(&list);
        for i in b * 1000..(b + 1) * 1000 {
            cmd.arg(format!("element-{i}-{}", "l".repeat(i % 30)));
        }
        p.add_command(cmd).ignore();
    });
    let zset = k("big:zset");
    fill(c, ZSET_LEN / 1000, 1, |p, b| {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&zset);
        for i in b * 1000..(b + 1) * 1000 {
            // Scores that need all 17 significant digits, negative ones, and both infinities.
            let score = match i {
                0 => "-inf".to_string(),
                1 => "+inf".to_string(),
                _ => format!(
                    "{:e}",
                    (i as f64) / 3.0 * if i % 2 == 0 { 1.0 } else { -1.0 }
                ),
            };
            cmd.arg(score).arg(format!("member-{i}"));
        }
        p.add_command(cmd).ignore();
    });
    let set = k("big:set");
    fill(c, SET_LEN / 1000, 1, |p, b| {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&set);
        for i in b * 1000..(b + 1) * 1000 {
            cmd.arg(format!("set-member-{i}-{}", "s".repeat(i % 20)));
        }
        p.add_command(cmd).ignore();
    });
    let string: Vec<u8> = (0..STRING_BYTES).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg(k("big:string"))
        .arg(string)
        .query(c)
        .expect("SET");
    // TTLs on two big keys (one long, one that survives the copy) and on small keys.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&hash)
        .arg(3_600_000)
        .query(c)
        .expect("PEXPIRE");
    let _: () = redis::cmd("PEXPIRE")
        .arg(&list)
        .arg(600_000)
        .query(c)
        .expect("PEXPIRE");
    fill(c, 2000, 500, |p, i| {
        p.cmd("SET")
            .arg(k(&format!("small:{i}")))
            .arg(format!("v{i}"))
            .ignore();
        if i % 3 == 0 {
            p.cmd("PEXPIRE")
                .arg(k(&format!("small:{i}")))
                .arg(900_000)
                .ignore();
        }
    });
    if streams {
        seed_stream(c, &k("big:stream"));
    }
}

/// A stream with two groups, consumers (one without pending entries) and pending entries with
/// several delivery counts.
fn seed_stream(c: &mut redis::Connection, key: &str) {
    fill(c, STREAM_LEN, 1000, |p, i| {
        p.cmd("XADD")
            .arg(key)
            .arg(format!("{}-{}", 1_000 + i / 3, i % 3))
            .arg("f")
            .arg(format!("payload-{i}-{}", "x".repeat(i % 50)))
            .arg("n")
            .arg(i)
            .ignore();
    });
    let _: () = redis::cmd("XDEL")
        .arg(key)
        .arg("1000-1")
        .query(c)
        .expect("XDEL");
    for (group, start) in [("g1", "0"), ("g2", "1500-0")] {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(group)
            .arg(start)
            .query(c)
            .expect("XGROUP CREATE");
    }
    let read = |c: &mut redis::Connection, group: &str, consumer: &str, n: usize| {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(n)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .query(c)
            .expect("XREADGROUP");
    };
    read(c, "g1", "alice", 300);
    read(c, "g1", "bob", 200);
    read(c, "g2", "carol", 50);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(key)
        .arg("g2")
        .arg("idle-dave")
        .query(c)
        .expect("CREATECONSUMER");
    // Delivery counts above 1: claim some of alice's to bob twice.
    for _ in 0..2 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(key)
            .arg("g1")
            .arg("bob")
            .arg(0)
            .arg("1000-0")
            .arg("1001-2")
            .query(c)
            .expect("XCLAIM");
    }
    let _: () = redis::cmd("XACK")
        .arg(key)
        .arg("g1")
        .arg("1002-0")
        .query(c)
        .expect("XACK");
}

/// The snapshot helper reads up to 500 keys' PTTLs and values in one pipeline and dates the
/// PTTLs when the pipeline returns: with a 200k-field hash in it, on a loaded machine, that is
/// over a second late for every key of the pipeline. So whole snapshots are compared loosely and
/// [`assert_ttls_close`] checks expiries precisely, one key at a time.
const SNAPSHOT_TTL_TOLERANCE_MS: i64 = 5_000;

/// Each of `keys` has the same absolute expiry (±1 s) on both sides, read alone on each.
fn assert_ttls_close(src: &mut redis::Connection, dst: &mut redis::Connection, keys: &[&str]) {
    for key in keys {
        let at = |c: &mut redis::Connection| {
            let pttl: i64 = redis::cmd("PTTL").arg(*key).query(c).expect("PTTL");
            assert!(pttl > 0, "{key} has no TTL ({pttl})");
            data::now_ms() + pttl
        };
        let (a, b) = (at(src), at(dst));
        assert!((a - b).abs() <= 1_000, "{key}: expiry off by {} ms", b - a);
    }
}

fn migrate_args(src: &str, dst: &str, extra: &[&str]) -> Vec<String> {
    let ca = ca_cert();
    let mut a: Vec<String> = [
        "migrate",
        "--source",
        src,
        "--target",
        dst,
        "--target-cacert",
        ca.to_str().expect("CA path"),
    ]
    .map(String::from)
    .to_vec();
    if !extra.contains(&"--big-key-bytes") {
        a.extend(["--big-key-bytes", "1048576"].map(String::from));
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(work: &Workdir, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    work.run(&args)
}

/// Keys on `s` named like a temporary key of ferry's.
fn temp_keys(c: &mut impl ConnectionLike) -> Vec<Vec<u8>> {
    data::scan_keys(c, 0)
        .into_iter()
        .filter(|k| k.windows(10).any(|w| w == b"ferry:tmp:"))
        .collect()
}

fn copies_every_type(version: Version) {
    let src = Server::plain(version);
    let dst = small_bulk_target();
    seed_big(&mut src.conn(), version.has_streams(), "");
    let work = Workdir::new();

    // Detection off is the code before #14: one RESTORE per key, refused by the target.
    let old = run(
        &work,
        &migrate_args(&src.url(), &dst.url(), &["--big-key-bytes", "0"]),
    );
    assert_eq!(old.code, 2, "{}", old.text());
    assert!(old.text().contains("proto-max-bulk-len"), "{}", old.text());
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut dst.conn())
        .expect("FLUSHALL");

    let r = run(&work, &migrate_args(&src.url(), &dst.url(), &["--fresh"]));
    assert_eq!(r.code, 0, "{}", r.text());
    let big = if version.has_streams() { 6 } else { 5 };
    assert_eq!(r.num("keys.big_keys"), big, "{}", r.text());
    assert_eq!(r.num("keys.written"), 2000 + big, "{}", r.text());
    // Verification read them in chunks too, on both sides.
    assert!(
        r.num("verify.totals.big_keys_read") >= 2 * big,
        "{}",
        r.text()
    );
    let rss = r.num("peak_rss_bytes");
    eprintln!(
        "{version}: peak RSS {} MiB, {} bytes written",
        rss >> 20,
        r.num("bytes")
    );
    assert!(rss < 100 << 20, "peak RSS {rss} bytes");
    let (a, b) = (
        data::snapshot_all(&mut src.conn()),
        data::snapshot_all(&mut dst.conn()),
    );
    assert_same(&a, &b, SNAPSHOT_TTL_TOLERANCE_MS);
    assert_ttls_close(
        &mut src.conn(),
        &mut dst.conn(),
        &["big:hash", "big:list", "small:3"],
    );
    assert!(temp_keys(&mut dst.conn()).is_empty());
}

#[test]
fn big_keys_from_6_2_into_a_small_bulk_limit() {
    copies_every_type(Version::V6_2);
}

#[test]
fn big_keys_from_3_2_without_memory_usage() {
    copies_every_type(Version::V3_2);
}

/// SIGKILL while a big key is half written, then rerun: exact, no temporary key left.
#[test]
fn killed_mid_big_key_then_rerun_is_exact() {
    let src = Server::plain(Version::V6_2);
    let dst = small_bulk_target();
    seed_big(&mut src.conn(), true, "");
    let work = Workdir::new();
    // Small chunks, so a big key takes long enough to be caught half written.
    let args = migrate_args(&src.url(), &dst.url(), &["--batch-bytes", "16384"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut cmd, _report) = work.command(&argv);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start ferry");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dst_conn = dst.conn();
    loop {
        assert!(
            Instant::now() < deadline,
            "no temporary key seen within 30 s"
        );
        if !temp_keys(&mut dst_conn).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL ferry");
    let _ = child.wait();
    // The kill came while a big key was half written (16 KB chunks: each takes many round
    // trips), so the rerun has a temporary key to clean up.
    assert!(
        !temp_keys(&mut dst_conn).is_empty(),
        "the kill left no temporary key"
    );

    let (mut cmd, report) = work.command(&argv);
    let out = cmd.output().expect("rerun ferry");
    let r = finish(out, &report);
    assert_eq!(r.code, 0, "{}", r.text());
    let (a, b) = (
        data::snapshot_all(&mut src.conn()),
        data::snapshot_all(&mut dst.conn()),
    );
    assert_same(&a, &b, SNAPSHOT_TTL_TOLERANCE_MS);
    assert_ttls_close(
        &mut src.conn(),
        &mut dst.conn(),
        &["big:hash", "big:list", "small:3"],
    );
    assert!(
        temp_keys(&mut dst.conn()).is_empty(),
        "a temporary key was left behind"
    );
}

/// A cluster target: each big key (some with hash tags, some with braces that are not one) is
/// built in its own slot and renamed there; no CROSSSLOT.
#[test]
fn big_keys_into_a_cluster_target() {
    let src = Server::plain(Version::V6_2);
    let dst = Cluster::start_with(
        Version::Valkey8,
        ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), "4mb".into()],
            ..ServerOpts::tls()
        },
    );
    let mut c = src.conn();
    seed_big(&mut c, true, "");
    let mut tagged = |name: &str| {
        let v: Vec<String> = (0..60_000).map(|i| format!("member-{i}-{name}")).collect();
        let _: () = redis::cmd("SADD")
            .arg(name)
            .arg(v)
            .query(&mut c)
            .expect("SADD");
    };
    tagged("{user:7}:friends");
    tagged("a{}b:set");
    tagged("}{odd");
    let work = Workdir::new();
    let r = run(&work, &migrate_args(&src.url(), &dst.url(), &[]));
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(!r.text().contains("CROSSSLOT"), "{}", r.text());
    assert_eq!(r.num("keys.big_keys"), 9, "{}", r.text());
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target, SNAPSHOT_TTL_TOLERANCE_MS);
    for node in &dst.nodes {
        assert!(temp_keys(&mut node.conn()).is_empty());
    }
}
