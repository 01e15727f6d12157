//! Redis Cluster on either side: every source master scanned, every write routed by slot, and
//! the copy exact through resharding and node restarts on the target. Drives the real `ferry`
//! binary against real 3-master clusters, then reads both sides back key by key (type, value,
//! TTL within 1 s) with an independent client.

mod support;

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::cluster_data::{self, cluster_dbsize, reshard, seed_cluster, slot_layout};
use support::data::{self, Caps, KeyState};
use support::ferry::{Endpoint, Ferry, Run, Running, Workdir};
use support::servers::{Cluster, Server, ServerOpts, Version};

const TTL_TOLERANCE_MS: i64 = 1_000;

/// `ferry migrate` from `src` to `dst` (the test CA for a TLS side), progress as log lines.
fn migrate<'w>(work: &'w Workdir, src: &impl Endpoint, dst: &impl Endpoint) -> Ferry<'w> {
    work.migrate(src, dst).progress("log")
}

/// Starts ferry in the background, logging the router's redirections.
fn spawn(ferry: &Ferry) -> Running {
    let route_debug = "info,ferry::endpoint::route=debug";
    ferry.clone().env("FERRY_LOG", route_debug).spawn()
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

/// The mix of [`seed_cluster`] into DB `db` of a standalone server.
fn seed_standalone(s: &Server, db: u32, prefix: &str, bulk: usize) {
    let mut conn = s.conn();
    let caps = Caps::detect(&mut conn);
    data::seed_rich(&mut conn, db, &format!("{prefix}rich:"), &caps);
    data::seed_rich(&mut conn, db, &format!("{{{prefix}tag}}rich:"), &caps);
    data::seed_bulk(&mut conn, db, bulk, &format!("{prefix}bulk:"));
    data::seed_bulk(&mut conn, db, bulk / 10, &format!("{{{prefix}grp}}bulk:"));
}

/// Target equals source: same keys, types, values, TTLs within 1 s (a key of the source may be
/// missing only if its TTL ran out in between).
fn assert_same(source: &BTreeMap<Vec<u8>, KeyState>, target: &BTreeMap<Vec<u8>, KeyState>) {
    assert!(
        source.len() > 100,
        "the source has only {} keys",
        source.len()
    );
    data::assert_same_allow_expired(source, target, TTL_TOLERANCE_MS, 2_000);
    data::assert_no_permanent_where_ttl(source, target);
    // Every type the source has (streams from 5.0 on) made it.
    let kinds = data::kind_counts(target);
    assert_eq!(kinds, data::kind_counts(source), "types on the target");
    assert!(kinds.len() >= 5, "too few types: {kinds:?}");
}

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "ferry failed:\n{}", run.text());
    assert_eq!(run.report.as_ref().expect("report")["status"], "ok");
    let scanned = run.num("keys.scanned");
    let accounted =
        run.num("keys.written") + run.num("keys.expired_skipped") + run.num("keys.vanished");
    assert_eq!(
        scanned,
        accounted,
        "report: {}",
        run.report.as_ref().unwrap()
    );
}

fn cluster_into_cluster(target_version: Version) {
    let src = Cluster::start(Version::V6_2, false);
    let dst = Cluster::start(target_version, true);
    seed_cluster(&src, 6_000);
    let work = Workdir::new();
    // With verification (the default): ferry's own check across both clusters must pass too.
    let r = migrate(&work, &src, &dst).run();
    assert_ok(&r);
    assert!(r.text().contains("cluster of 3 masters"), "{}", r.text());
    let source = cluster_data::snapshot_cluster(&src);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
    // Every target master got keys: the writes were routed, not all sent to the seed.
    for node in &dst.nodes {
        assert!(
            cluster_data::dbsize(node) > 1_000,
            "{node} holds too few keys"
        );
    }
    // The checkpoint keeps one finished stream per source master, named by node id and slots.
    let cp =
        std::fs::read_to_string(work.file(&format!("ferry-{}.checkpoint.json", checkpoint_id(&r))))
            .expect("checkpoint file");
    for node in &src.nodes {
        let id = cluster_data::node_id(node);
        assert!(
            cp.contains(&format!("cluster:{id}:")),
            "no stream for {id} in {cp}"
        );
    }
}

/// The job id from the checkpoint path in the report.
fn checkpoint_id(r: &Run) -> String {
    let path = r.report.as_ref().expect("report")["checkpoint"]
        .as_str()
        .expect("checkpoint in report")
        .to_string();
    path.trim_start_matches("ferry-")
        .trim_end_matches(".checkpoint.json")
        .to_string()
}

#[test]
fn redis_6_2_cluster_into_redis_7_0_tls_cluster() {
    cluster_into_cluster(Version::V7_0);
}

#[test]
fn redis_6_2_cluster_into_valkey_8_tls_cluster() {
    cluster_into_cluster(Version::Valkey8);
}

#[test]
fn redis_5_0_standalone_into_redis_7_0_tls_cluster() {
    let src = Server::plain(Version::V5_0);
    seed_standalone(&src, 0, "", 5_000);
    let dst = Cluster::start(Version::V7_0, true);
    let work = Workdir::new();

    // --on-conflict fail (the default) checks the cluster target key by key, routed by slot.
    let clash = b"{tag}rich:str:plain";
    redis::cmd("SET")
        .arg(clash)
        .arg("already here")
        .query::<()>(&mut dst.conn())
        .expect("SET on the target");
    let r = migrate(&work, &src, &dst).run();
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(
        r.text().contains("already holds 1 of the source's keys")
            && r.text().contains("{tag}rich:str:plain"),
        "{}",
        r.text()
    );
    assert_eq!(
        cluster_dbsize(&dst),
        1,
        "nothing may be written after a refusal"
    );
    redis::cmd("DEL")
        .arg(clash)
        .query::<()>(&mut dst.conn())
        .expect("DEL");

    let r = migrate(&work, &src, &dst).args(&["--fresh"]).run();
    assert_ok(&r);
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
}

/// Valkey 8 writes RDB 11 payloads, which Redis 7.0 (RDB 10) refuses: the cluster writer
/// re-encodes each refused key for RDB 10 and writes it again, as the standalone writer does
/// (tests/errors.rs). Before, the first refusal stopped the copy.
#[test]
fn valkey_8_standalone_into_redis_7_0_tls_cluster_is_reencoded() {
    let src = Server::plain(Version::Valkey8);
    seed_standalone(&src, 0, "", 2_000);
    let dst = Cluster::start(Version::V7_0, true);
    let work = Workdir::new();
    let r = migrate(&work, &src, &dst).run();
    assert_ok(&r);
    assert_eq!(
        r.num("keys.reencoded"),
        r.num("keys.written"),
        "every payload is RDB 11: {}",
        r.text()
    );
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
}

/// `--on-conflict skip` into a cluster: a second run over ferry's own copies (`--fresh`)
/// counts them as written, not as conflicts (routed read-backs, `sink/resent.rs`).
#[test]
fn skip_into_a_cluster_does_not_count_ferrys_own_copies_as_conflicts() {
    let src = Server::plain(Version::V6_2);
    seed_standalone(&src, 0, "", 1_000);
    let dst = Cluster::start(Version::V7_0, true);
    let work = Workdir::new();
    let skip = ["--on-conflict", "skip", "--no-verify"];
    let r = migrate(&work, &src, &dst).args(&skip).run();
    assert_ok(&r);
    assert_eq!(r.num("keys.conflicts"), 0, "{}", r.text());
    let fresh = [&skip[..], &["--fresh"]].concat();
    let r = migrate(&work, &src, &dst).args(&fresh).run();
    assert_ok(&r);
    assert_eq!(r.num("keys.conflicts"), 0, "{}", r.text());
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
}

#[test]
fn standalone_with_several_dbs_into_a_cluster_needs_an_explicit_db_map() {
    let src = Server::plain(Version::V6_2);
    seed_standalone(&src, 0, "zero:", 1_000);
    seed_standalone(&src, 3, "three:", 1_000);
    let dst = Cluster::start(Version::Valkey8, true);
    let work = Workdir::new();

    // DB 3 has nowhere to go.
    let r = migrate(&work, &src, &dst).run();
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(
        r.text().contains("only DB 0") && r.text().contains("--db-map 3:0"),
        "{}",
        r.text()
    );
    // Mapped, but DBs 0 and 3 would share DB 0: refused unless a conflict policy says how.
    let r = migrate(&work, &src, &dst).args(&["--db-map", "3:0"]).run();
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(
        r.text()
            .contains("source DBs 0, 3 would all be written into target DB 0")
            && r.text().contains("--on-conflict"),
        "{}",
        r.text()
    );
    assert_eq!(
        cluster_dbsize(&dst),
        0,
        "nothing may be written after a refusal"
    );

    // One DB alone, mapped: fine.
    let r = migrate(&work, &src, &dst)
        .args(&["--db", "3", "--db-map", "3:0"])
        .run();
    assert_ok(&r);
    let three = data::snapshot(&mut src.conn(), 3);
    assert_same(&three, &cluster_data::snapshot_cluster(&dst));

    // Both, with --on-conflict replace: the union (their key names differ).
    let r = migrate(&work, &src, &dst)
        .args(&["--db-map", "3:0", "--on-conflict", "replace", "--no-verify"])
        .run();
    assert_ok(&r);
    let mut both = data::snapshot(&mut src.conn(), 0);
    both.extend(three);
    assert_same(&both, &cluster_data::snapshot_cluster(&dst));
}

#[test]
fn redis_6_2_cluster_into_standalone_tls_target() {
    let src = Cluster::start(Version::V6_2, false);
    seed_cluster(&src, 6_000);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let r = migrate(&work, &src, &dst).run();
    assert_ok(&r);
    let source = cluster_data::snapshot_cluster(&src);
    let target = data::snapshot(&mut dst.conn(), 0);
    assert_same(&source, &target);
}

#[test]
fn redis_3_2_cluster_into_redis_7_0_tls_standalone() {
    // 3.2.6 is the oldest cluster ferry reads: CLUSTER SLOTS with node ids, no streams.
    let src = Cluster::start(Version::V3_2, false);
    seed_cluster(&src, 3_000);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let r = migrate(&work, &src, &dst).run();
    assert_ok(&r);
    let source = cluster_data::snapshot_cluster(&src);
    let target = data::snapshot(&mut dst.conn(), 0);
    assert_same(&source, &target);
}

/// A slow migration (tiny batches, one writer, no verification) of ~45k keys from a standalone
/// 6.2 source, so that the target can change under it.
fn slow_source() -> Server {
    let src = Server::plain(Version::V6_2);
    seed_standalone(&src, 0, "", 40_000);
    src
}

fn slow<'w>(work: &'w Workdir, src: &impl Endpoint, dst: &impl Endpoint) -> Ferry<'w> {
    migrate(work, src, dst).args(&[
        "--batch-keys",
        "3",
        "--scan-count",
        "30",
        "--writers",
        "1",
        "--no-verify",
    ])
}

/// `ferry verify` between the two, which must find them equal.
fn verify(work: &Workdir, src: &Server, dst: &Cluster) {
    let r = work.between("verify", src, dst).run();
    assert_eq!(r.code, 0, "ferry verify:\n{}", r.text());
}

#[test]
fn resharding_the_target_while_ferry_writes_keeps_the_copy_exact() {
    let src = slow_source();
    let dst = Cluster::start(Version::V7_0, true);
    let work = Workdir::new();
    // The slot of the 4000 `{grp}bulk:` keys is half migrated when ferry starts: its owner
    // answers ASK for every one of them, and they must land on the importing node.
    let hot = cluster_data::key_slot(&dst, "{grp}bulk:");
    let from = cluster_data::owner_of(&dst, hot);
    let to = (from + 1) % 3;
    cluster_data::begin_slot_migration(&dst, hot, from, to);
    let mut ferry = spawn(&slow(&work, &src, &dst));
    wait_until("writes to the importing node", 60, || {
        cluster_data::keys_in_slot(&dst.nodes[to], hot) > 200
    });
    cluster_data::finish_slot_migration(&dst, hot, from, to);
    let before = slot_layout(&dst);
    // Move slots between the masters, in both directions, for as long as ferry writes.
    let mut moved_while_running = 0;
    for (from, to, n) in [
        (0, 1, 700),
        (1, 2, 400),
        (2, 0, 300),
        (0, 2, 200),
        (2, 1, 500),
    ] {
        if ferry.exited() {
            break;
        }
        reshard(&dst, from, to, n);
        moved_while_running += 1;
    }
    let after = slot_layout(&dst);
    let still_running = !ferry.exited();
    let r = ferry.wait();
    assert_ok(&r);
    assert!(
        moved_while_running >= 3,
        "ferry finished after {moved_while_running} slot moves; make the migration slower"
    );
    eprintln!(
        "{moved_while_running} reshards while ferry ran (still running after: {still_running})"
    );
    // The writes really met the migration: redirected by MOVED, and by ASK inside a slot that
    // was half moved.
    let rounds = |what: &str| {
        r.stderr
            .lines()
            .filter(|l| l.contains("redirected") && !l.contains(&format!(" 0 {what}")))
            .count()
    };
    let (moved, asked) = (rounds("command(s) with MOVED"), rounds("with ASK"));
    eprintln!("write rounds redirected by MOVED: {moved}, by ASK: {asked}");
    assert!(
        moved > 0 && asked > 0,
        "redirections not exercised:\n{}",
        r.stderr
    );
    assert_ne!(before, after, "the slots did not move");
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
    verify(&work, &src, &dst);
}

#[test]
fn restarting_target_masters_while_ferry_writes_keeps_the_copy_exact() {
    let src = slow_source();
    // AOF with fsync on every write: a SIGKILLed node keeps every write it acknowledged, as a
    // managed service's durable node would.
    let mut opts = ServerOpts::tls();
    opts.extra_args = ["--appendonly", "yes", "--appendfsync", "always"]
        .map(String::from)
        .to_vec();
    let mut dst = Cluster::start_with(Version::V7_0, opts);
    let work = Workdir::new();
    let mut ferry = spawn(&slow(&work, &src, &dst));
    let mut restarted_while_running = 0;
    for (node, at) in [(1usize, 3_000u64), (2, 12_000), (0, 20_000)] {
        wait_until("ferry's progress", 120, || {
            cluster_dbsize(&dst) > at || ferry.exited()
        });
        if !ferry.exited() {
            restarted_while_running += 1;
        }
        // SIGKILL, then start again on the same port and dir (nodes.conf + AOF).
        dst.nodes[node].stop();
        sleep(Duration::from_millis(500));
        dst.nodes[node].restart();
    }
    let r = ferry.wait();
    assert_ok(&r);
    assert!(
        restarted_while_running >= 2,
        "ferry finished before the restarts"
    );
    assert!(
        r.text().contains("retrying"),
        "ferry never noticed a restart:\n{}",
        r.text()
    );
    let source = data::snapshot(&mut src.conn(), 0);
    let target = cluster_data::snapshot_cluster(&dst);
    assert_same(&source, &target);
    verify(&work, &src, &dst);
}

#[test]
fn resharding_the_source_during_a_run_is_caught_and_the_rerun_rescans_those_slots() {
    let src = Cluster::start(Version::V6_2, false);
    seed_cluster(&src, 40_000);
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let slow = slow(&work, &src, &dst);
    let mut ferry = spawn(&slow);
    wait_until("ferry's first writes", 60, || {
        cluster_data::dbsize(&dst) > 500
    });
    assert!(!ferry.exited(), "ferry finished too early");
    reshard(&src, 0, 1, 800);
    let r = ferry.wait();
    // Keys may have moved from a master not yet scanned to one already scanned: never "done".
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(
        r.text().contains("changed during the copy") || r.text().contains("being resharded"),
        "{}",
        r.text()
    );
    // The rerun says what it rescans, and ends exact.
    let r = slow.run();
    assert_ok(&r);
    assert!(
        r.text().contains("scanned again from the start"),
        "{}",
        r.text()
    );
    let source = cluster_data::snapshot_cluster(&src);
    let target = data::snapshot(&mut dst.conn(), 0);
    assert_same(&source, &target);
}

/// Throughput into a 3-master TLS cluster vs a standalone TLS target (200k small strings).
/// Run with `cargo test --release --test cluster -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput_cluster_vs_standalone() {
    let n = 200_000;
    let src = Server::plain(Version::V6_2);
    {
        let mut c = src.conn();
        for start in (0..n).step_by(2_000) {
            let mut p = redis::pipe();
            for i in start..start + 2_000 {
                p.cmd("SET")
                    .arg(format!("key:{i:08}"))
                    .arg(format!("{i:032}"))
                    .ignore();
            }
            p.query::<()>(&mut c).expect("seed");
        }
    }
    let standalone = Server::tls_target(Version::V7_0);
    let cluster = Cluster::start(Version::V7_0, true);
    for (name, url) in [("standalone", standalone.url()), ("cluster", cluster.url())] {
        let work = Workdir::new();
        let to = work.ferry("migrate").from(&src).target(&url).target_ca();
        let r = to.args(&["--progress", "log", "--no-verify"]).run();
        assert_ok(&r);
        let ms = r.num("elapsed_ms").max(1);
        println!(
            "THROUGHPUT {name}: {} keys in {ms} ms = {:.0} keys/s",
            r.num("keys.written"),
            r.num("keys.written") as f64 * 1000.0 / ms as f64
        );
    }
}
