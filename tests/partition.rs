//! `--partition I/N`: one job split over worker processes started together in one directory,
//! as a Kubernetes Indexed Job runs them. Real servers; the oracle is the independent client:
//! the union of the shares equals the source, every key is written by exactly one worker, a
//! SIGKILLed worker resumes its own share, `verify --partition` checks only its share (both
//! sides), and `report merge` adds the workers' reports up to the whole job's figures.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::cluster_data::{self, cluster_dbsize};
use support::data::{self, Caps};
use support::ferry::{Endpoint, Ferry, Run, Running, Workdir};
use support::servers::{Cluster, Server, ServerOpts, Version};

/// `ferry COMMAND` from `src` to `dst` with `--progress log`: the whole job.
fn job<'w>(
    work: &'w Workdir,
    command: &str,
    src: &impl Endpoint,
    dst: &impl Endpoint,
) -> Ferry<'w> {
    work.between(command, src, dst).progress("log")
}

/// Runs every invocation at once and waits for all.
fn run_together(all: &[Ferry]) -> Vec<Run> {
    let running: Vec<Running> = all.iter().map(Ferry::spawn).collect();
    running.into_iter().map(Running::wait).collect()
}

fn assert_ok(r: &Run) {
    assert_eq!(r.code, 0, "ferry failed:\n{}", r.text());
    assert_eq!(r.report.as_ref().expect("report")["status"], "ok");
}

fn sum(runs: &[&Run], path: &str) -> i64 {
    runs.iter().map(|r| r.num(path)).sum()
}

/// The shares' verifications listed (SCANned) each side once between them: their per-side
/// `totals.listed` add up to the whole verification's.
fn assert_listed_once(shares: &[&Run], whole: &Run) {
    for side in ["source", "target"] {
        let path = format!("totals.listed.{side}");
        let all = whole.num(&path);
        assert!(all > 0, "the whole verify listed no {side} key");
        assert_eq!(sum(shares, &path), all, "{side} keys listed by the shares");
    }
}

/// `ferry report merge` of the reports of `runs`, written into the work dir.
fn merge(work: &Workdir, runs: &[&Run], name: &str) -> (i32, Value, String) {
    let mut merge = work.ferry("report").arg("merge");
    for (i, r) in runs.iter().enumerate() {
        let path = work.file(&format!("{name}-{i}.json"));
        std::fs::write(
            &path,
            serde_json::to_vec(r.report.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        merge = merge.arg(&path.display().to_string());
    }
    let m = merge.run();
    let report = m.report.clone().unwrap_or(Value::Null);
    (m.code, report, m.text())
}

/// The checkpoint files in the work dir whose job is share `share` (e.g. "1/3").
fn checkpoint_of(work: &Workdir, share: &str) -> Option<(PathBuf, String)> {
    std::fs::read_dir(work.path())
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".checkpoint.json"))
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .find(|(_, t)| t.contains(&format!("\"partition\": \"{share}\"")))
}

#[test]
fn six_master_cluster_over_three_workers_one_killed_and_rerun() {
    let src = Cluster::start_masters(Version::V6_2, ServerOpts::default(), 6);
    let dst = Cluster::start(Version::Valkey8, true);
    cluster_data::seed_cluster(&src, 24_000);
    let source = cluster_data::snapshot_cluster(&src);
    let work = Workdir::new();
    let worker = |i: u32| job(&work, "migrate", &src, &dst).partition(i, 3);
    // Worker 1 runs with tiny batches so that it is still copying when it is killed.
    let slow = ["--scan-count", "10", "--batch-keys", "10", "--writers", "1"];
    let c0 = worker(0).spawn();
    let mut c1 = worker(1).args(&slow).spawn();
    let c2 = worker(2).spawn();
    // SIGKILL worker 1 once its own checkpoint holds a position inside a stream.
    let (limit, poll) = (Duration::from_secs(30), Duration::from_millis(2));
    c1.wait_until(
        "checkpoint of worker 1 inside a stream",
        limit,
        poll,
        || checkpoint_of(&work, "1/3").is_some_and(|(_, t)| t.contains("\"cursor\"")),
    );
    c1.kill();
    let w0 = c0.wait();
    let w2 = c2.wait();
    assert_ok(&w0);
    assert_ok(&w2);
    // Three shares, three checkpoints side by side in one directory.
    for share in ["0/3", "1/3", "2/3"] {
        assert!(
            checkpoint_of(&work, share).is_some(),
            "no checkpoint of share {share}"
        );
    }
    let w1 = worker(1).run();
    assert_ok(&w1);
    let rerun = w1.report.as_ref().unwrap();
    assert_eq!(rerun["resumed"], true, "{}", w1.text());
    assert!(
        w1.num("keys.written_this_run") < w1.num("keys.written"),
        "the rerun copied its whole share again: {rerun}"
    );
    // Each share SCANs its own two masters.
    w0.assert_says("6 masters over 3 shares");

    // The union equals the source, and every key was written by exactly one worker.
    let target = cluster_data::snapshot_cluster(&dst);
    data::assert_same_allow_expired(&source, &target, 1_000, 2_000);
    data::assert_no_permanent_where_ttl(&source, &target);
    // Every key was written by exactly one worker: shares 0 and 2 wrote exactly the keys of
    // their two masters (the masters in slot order, two by two), share 1 the rest. Share 1's
    // count may exceed its keys by the part of a SCAN page that was acknowledged before the kill
    // and copied again by the rerun (counted twice, written with the same value).
    let per_share: Vec<i64> = cluster_data::slot_layout(&src)
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .map(|&(_, _, port)| {
                    let node = src
                        .nodes
                        .iter()
                        .find(|n| n.addr().ends_with(&format!(":{port}")));
                    cluster_data::dbsize(node.expect("master of the slot layout")) as i64
                })
                .sum()
        })
        .collect();
    assert_eq!(per_share.iter().sum::<i64>() as usize, source.len());
    assert_eq!(w0.num("keys.written"), per_share[0]);
    assert_eq!(w2.num("keys.written"), per_share[2]);
    let extra = w1.num("keys.written") - per_share[1];
    assert!(
        (0..=100).contains(&extra),
        "share 1 wrote {extra} keys more than it holds"
    );
    assert_eq!(cluster_dbsize(&dst) as usize, source.len());
    let workers = [&w0, &w1, &w2];

    // verify --partition over the same shares (both sides filtered), then the whole job.
    let verify = |i: u32| job(&work, "verify", &src, &dst).partition(i, 3);
    let vs = run_together(&[verify(0), verify(1), verify(2)]);
    for v in &vs {
        assert_ok(v);
    }
    let whole = job(&work, "verify", &src, &dst).run();
    assert_ok(&whole);
    let refs: Vec<&Run> = vs.iter().collect();
    assert_eq!(
        sum(&refs, "totals.target.keys"),
        whole.num("totals.target.keys")
    );
    // Each worker listed only the masters of its share, on both sides: together they listed
    // each side once, not three times.
    assert_listed_once(&refs, &whole);
    let (code, merged, text) = merge(&work, &refs, "verify");
    assert_eq!(code, 0, "{text}");
    for side in ["source", "target"] {
        assert_eq!(
            merged["totals"][side],
            whole.report.as_ref().unwrap()["totals"][side]
        );
    }
    let (code, merged, text) = merge(&work, &workers, "migrate");
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        merged["keys"]["written"].as_i64(),
        Some(sum(&workers, "keys.written"))
    );
    assert_eq!(
        merged["keys"]["scanned"].as_i64(),
        Some(sum(&workers, "keys.scanned"))
    );
    assert_eq!(merged["status"], "ok");
    // A missing share is refused: the gate cannot pass on part of the job.
    let (code, _, text) = merge(&work, &[&w0, &w2], "partial");
    assert_eq!(code, 2);
    assert!(text.contains("share(s) 1/3 are missing"), "{text}");
}

#[test]
fn redis_3_2_standalone_three_dbs_over_two_workers() {
    let src = Server::plain(Version::V3_2);
    let dst = Server::tls_target(Version::Valkey8);
    let mut conn = src.conn();
    let caps = Caps::detect(&mut conn);
    for db in [0, 1, 4] {
        data::seed_rich(&mut conn, db, &format!("db{db}:rich:"), &caps);
        data::seed_bulk(&mut conn, db, 3_000, &format!("db{db}:bulk:"));
    }
    let work = Workdir::new();
    let share = |cmd: &str, i: u32| job(&work, cmd, &src, &dst).partition(i, 2);
    let ws = run_together(&[share("migrate", 0), share("migrate", 1)]);
    for w in &ws {
        assert_ok(w);
    }
    // By DB: DBs 0 and 4 to share 0, DB 1 to share 1.
    ws[0].assert_says("DBs [0, 4]");
    ws[1].assert_says("DBs [1]");
    let a = data::snapshot_all(&mut src.conn());
    let b = data::snapshot_all(&mut dst.conn());
    data::assert_same(&a, &b, 1_000);
    let refs: Vec<&Run> = ws.iter().collect();
    assert_eq!(sum(&refs, "keys.written") as usize, a.len());

    let vs = run_together(&[share("verify", 0), share("verify", 1)]);
    for v in &vs {
        assert_ok(v);
    }
    let whole = job(&work, "verify", &src, &dst).run();
    assert_ok(&whole);
    let vrefs: Vec<&Run> = vs.iter().collect();
    assert_listed_once(&vrefs, &whole);
    let (code, merged, text) = merge(&work, &vrefs, "verify");
    assert_eq!(code, 0, "{text}");
    let w = whole.report.as_ref().unwrap();
    assert_eq!(merged["totals"]["source"], w["totals"]["source"]);
    assert_eq!(merged["dbs"], w["dbs"]);

    // An extra key on the target in DB 1 is share 1's to find, and share 0's to leave alone.
    let mut c = dst.conn();
    redis::cmd("SELECT").arg(1).query::<()>(&mut c).unwrap();
    redis::cmd("SET")
        .arg("db1:intruder")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap();
    let vs = run_together(&[share("verify", 0), share("verify", 1)]);
    assert_eq!(vs[0].code, 0, "{}", vs[0].text());
    assert_eq!(vs[1].code, 1, "{}", vs[1].text());
    assert_eq!(vs[1].num("totals.by_kind.extra"), 1);
    let vrefs: Vec<&Run> = vs.iter().collect();
    let (code, merged, _) = merge(&work, &vrefs, "verify-extra");
    assert_eq!(code, 1);
    assert_eq!(merged["status"], "mismatch");
}

#[test]
fn standalone_one_db_is_split_by_key_hash() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    data::seed_bulk(&mut src.conn(), 0, 6_000, "bulk:");
    let work = Workdir::new();
    let share = |cmd: &str, i: u32| job(&work, cmd, &src, &dst).partition(i, 3);
    let ws = run_together(&[
        share("migrate", 0),
        share("migrate", 1),
        share("migrate", 2),
    ]);
    for w in &ws {
        assert_ok(w);
        w.assert_says("split by key hash");
        // Roughly a third each: the hash spreads the keys.
        let n = w.num("keys.written");
        assert!((1_500..2_500).contains(&n), "{n}");
    }
    let a = data::snapshot_all(&mut src.conn());
    let b = data::snapshot_all(&mut dst.conn());
    data::assert_same(&a, &b, 1_000);
    let refs: Vec<&Run> = ws.iter().collect();
    assert_eq!(sum(&refs, "keys.written"), 6_000);
    assert_eq!(sum(&refs, "keys.scanned"), 6_000);
    // Each share's verification reads only its keys, on both sides.
    let vs = run_together(&[share("verify", 0), share("verify", 1), share("verify", 2)]);
    for (v, w) in vs.iter().zip(&ws) {
        assert_ok(v);
        assert_eq!(v.num("totals.target.keys"), w.num("keys.written"));
        // One SCAN space split by hash: every worker lists it whole (the documented cost).
        assert_eq!(v.num("totals.listed.source"), 6_000);
    }
}

#[test]
fn bad_partitions_are_refused_clearly() {
    let work = Workdir::new();
    for (bad, says) in [
        ("3/3", "0 to 2"),
        ("1/0", "at least 1"),
        ("a/2", "not a share number"),
    ] {
        let r = work
            .ferry("migrate")
            .source("redis://127.0.0.1:1")
            .target("redis://127.0.0.1:2")
            .args(&["--partition", bad])
            .run();
        assert_eq!(r.code, 2, "{}", r.text());
        assert!(r.text().contains(says), "{bad}: {}", r.text());
    }
}
