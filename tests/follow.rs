//! `ferry migrate --follow` and `ferry cutover` against real servers under a write load.
//!
//! Each test seeds a Redis 6.2 source in three DBs, starts a write load from a thread (bounded in
//! operations and time) that runs through the copy and the follow, then asks `ferry cutover` for
//! a verdict once the load stopped, and compares the target with the source read back by the
//! independent redis-rs client: values, types, TTLs (±1 s), no extra keys.

mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use support::ferry::{finish, Endpoint, Run, Workdir};
use support::servers::{ca_cert, Cluster, Server, ServerOpts, Version};
use support::slowlog;
use support::{cluster_data, data};

const DBS: [u32; 3] = [0, 1, 2];
const CHECKPOINT: &str = "job.checkpoint.json";

fn source(extra: &[&str]) -> Server {
    Server::start(
        Version::V6_2,
        ServerOpts {
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..ServerOpts::default()
        },
    )
}

fn seed(src: &Server) {
    let mut c = src.conn();
    for db in DBS {
        data::seed_bulk(&mut c, db, 1_500, &format!("bulk{db}:"));
    }
    data::select(&mut c, 0);
}

/// `ferry migrate --follow` from `src` into the TLS `dst` (a server or a cluster each), with
/// small batches and progress as log lines, plus `extra`.
fn follow_args(src: &impl Endpoint, dst: &impl Endpoint, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "migrate",
        "--source",
        &src.url(),
        "--target",
        &dst.url(),
        "--target-cacert",
        &ca_cert().to_string_lossy(),
        "--checkpoint",
        CHECKPOINT,
        "--follow",
        "--scan-count",
        "200",
        "--batch-keys",
        "200",
        "--progress",
        "log",
        "--log-every",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A running `ferry migrate --follow`, its stderr in a file.
struct Follower {
    child: Child,
    report: PathBuf,
    log: PathBuf,
}

impl Follower {
    fn start(work: &Workdir, args: &[String]) -> Follower {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut cmd, report) = work.command(&args);
        let log = work.file(&format!("follower-{}.log", rand::random::<u32>()));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ferry");
        Follower { child, report, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the follower to exit (at most `limit`), and collects its outcome.
    fn wait(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let out = std::process::Output {
                    status,
                    stdout: Vec::new(),
                    stderr: std::fs::read(&self.log).unwrap_or_default(),
                };
                return finish(out, &self.report);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the follower did not exit within {limit:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the follow loop runs (the copy is done).
    fn wait_following(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains("following the source") {
            assert!(
                Instant::now() < deadline,
                "no follow within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A write load over every type and the commands that move, expire or delete keys, in the three
/// DBs; at most `max_ops` operations, stopped after `limit` or when `stop` is set. `flush`:
/// one FLUSHDB of DB 2 half-way.
fn load(
    src: &Server,
    max_ops: usize,
    limit: Duration,
    flush: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<usize> {
    load_in(src, &DBS, max_ops, limit, flush, stop)
}

/// [`load`] in the databases `dbs` only.
fn load_in(
    src: &Server,
    dbs: &'static [u32],
    max_ops: usize,
    limit: Duration,
    flush: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<usize> {
    let client = src.client();
    std::thread::spawn(move || {
        let mut c = client.get_connection().expect("load connection");
        let mut rng = rand::rng();
        let started = Instant::now();
        let mut ops = 0;
        let mut flushed = !flush;
        while ops < max_ops && started.elapsed() < limit && !stop.load(Ordering::Relaxed) {
            let db = dbs[rng.random_range(0..dbs.len())];
            data::select(&mut c, db);
            if !flushed && started.elapsed() > limit / 2 {
                data::select(&mut c, 2);
                let _: () = redis::cmd("FLUSHDB").query(&mut c).expect("FLUSHDB");
                flushed = true;
            }
            let i = rng.random_range(0..200);
            let j = rng.random_range(0..200);
            let now = data::now_ms();
            let mut cmd = match rng.random_range(0..17) {
                0 => redis::cmd("SET")
                    .arg(format!("s:{i}"))
                    .arg(format!("v{ops}"))
                    .clone(),
                1 => redis::cmd("SET")
                    .arg(format!("t:{i}"))
                    .arg("short")
                    .arg("PX")
                    .arg(rng.random_range(50..1500))
                    .clone(),
                2 => redis::cmd("HSET")
                    .arg(format!("h:{i}"))
                    .arg(format!("f{j}"))
                    .arg(ops)
                    .clone(),
                3 => redis::cmd("RPUSH").arg(format!("l:{i}")).arg(ops).clone(),
                4 => redis::cmd("LPOP").arg(format!("l:{i}")).clone(),
                5 => redis::cmd("SADD").arg(format!("set:{i}")).arg(j).clone(),
                6 => redis::cmd("ZINCRBY")
                    .arg(format!("z:{i}"))
                    .arg(1.5)
                    .arg(format!("m{j}"))
                    .clone(),
                7 => redis::cmd("XADD")
                    .arg(format!("x:{i}"))
                    .arg("*")
                    .arg("f")
                    .arg(ops)
                    .clone(),
                8 => redis::cmd("XTRIM")
                    .arg(format!("x:{i}"))
                    .arg("MAXLEN")
                    .arg(3)
                    .clone(),
                9 => redis::cmd("DEL")
                    .arg(format!("s:{j}"))
                    .arg(format!("bulk{db}:{:08}", i * 7))
                    .clone(),
                10 => redis::cmd("PEXPIREAT")
                    .arg(format!("h:{j}"))
                    .arg(now - 1000)
                    .clone(),
                11 => redis::cmd("PEXPIRE")
                    .arg(format!("set:{j}"))
                    .arg(rng.random_range(100..3000))
                    .clone(),
                12 => redis::cmd("PERSIST").arg(format!("set:{j}")).clone(),
                13 => redis::cmd("RENAME")
                    .arg(format!("s:{i}"))
                    .arg(format!("s:{j}"))
                    .clone(),
                14 => redis::cmd("MOVE")
                    .arg(format!("z:{i}"))
                    .arg(dbs[j % dbs.len()])
                    .clone(),
                15 => redis::cmd("INCR").arg(format!("c:{i}")).clone(),
                _ => redis::cmd("APPEND").arg(format!("s:{i}")).arg("+").clone(),
            };
            // RENAME of a missing key and the like are refused: that is part of the load.
            let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
            let _ = &mut cmd;
            ops += 1;
            if ops % 200 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ops
    })
}

fn cutover(work: &Workdir, extra: &[&str]) -> Run {
    let mut args = vec!["cutover", "--checkpoint", CHECKPOINT, "--timeout", "60"];
    args.extend_from_slice(extra);
    work.run(&args)
}

/// The target equals the source, read back by redis-rs: values, types, TTLs within 1 s. The
/// target is read after the source, so a key with less than 1 s to live, plus the time the two
/// reads took (a second or more on a loaded machine: a key with 1003 ms left was once gone from
/// the target by the time it was read), may be gone from either.
fn assert_exact(src: &Server, dst: &Server) {
    let started = data::now_ms();
    let a = data::snapshot_all(&mut src.conn());
    let mut b = data::snapshot_all(&mut dst.conn());
    let slack = 1_000 + (data::now_ms() - started);
    assert!(
        a.len() > 1_000,
        "the source lost its data: {} keys",
        a.len()
    );
    b.retain(|k, st| a.contains_key(k) || !(0..slack).contains(&st.pttl));
    data::assert_same_allow_expired(&a, &b, 1_000, slack);
}

/// Runs a whole follow: load through copy and follow, then cutover; returns the follower's run.
fn follow_under_load(
    src: &Server,
    dst: &Server,
    work: &Workdir,
    extra: &[&str],
    flush: bool,
    mid: impl FnOnce(&Follower),
) -> (Run, Run) {
    seed(src);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = load(src, 60_000, Duration::from_secs(6), flush, stop.clone());
    let follower = Follower::start(work, &follow_args(src, dst, extra));
    follower.wait_following(Duration::from_secs(60));
    mid(&follower);
    let ops = writes.join().expect("load thread");
    assert!(ops > 1_000, "the load made only {ops} writes");
    let verdict = cutover(work, &[]);
    let run = follower.wait(Duration::from_secs(90));
    (verdict, run)
}

#[test]
fn follows_a_write_load_and_cuts_over_exact() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let (verdict, run) = follow_under_load(&src, &dst, &work, &[], true, |_| {});
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert!(
        verdict.text().contains("GO: the target equals the source"),
        "{}",
        verdict.text()
    );
    assert_eq!(run.code, 0, "{}", run.text());
    let report = run.report.as_ref().expect("follower report");
    assert!(
        report["follow"]["events"].as_u64().unwrap_or(0) > 1_000,
        "{report}"
    );
    assert_eq!(report["follow"]["mode"], "events");
    assert_eq!(report["cutover"]["verdict"], "GO");
    // The FLUSHDB of the load publishes no event: the watcher must have seen it.
    assert!(
        run.text()
            .contains("FLUSHDB, FLUSHALL or SWAPDB ran on the source"),
        "{}",
        run.text()
    );
    assert_exact(&src, &dst);
}

#[test]
fn killed_subscription_is_detected_and_reconciled() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    // No FLUSHDB in this load: only the killed subscription loses events.
    let (verdict, run) = follow_under_load(&src, &dst, &work, &[], false, |_| {
        std::thread::sleep(Duration::from_millis(500));
        src.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    });
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert_exact(&src, &dst);
    assert!(
        run.text()
            .contains("the subscription to the source's events was lost"),
        "{}",
        run.text()
    );
    let report = run.report.as_ref().expect("follower report");
    assert!(
        report["follow"]["gaps"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );
    assert!(
        report["follow"]["passes"].as_u64().unwrap_or(0) >= 2,
        "{report}"
    );
}

#[test]
fn without_notifications_and_config_follows_by_reconciliation() {
    let src = source(&["--rename-command", "CONFIG", ""]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let (verdict, run) =
        follow_under_load(&src, &dst, &work, &["--reconcile-every", "1"], true, |_| {});
    assert!(
        run.text()
            .contains("cannot read the source's notify-keyspace-events")
            && run.text().contains("notify-keyspace-events KEA"),
        "{}",
        run.text()
    );
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(
        run.report.as_ref().unwrap()["cutover"]["verification"],
        "full"
    );
    assert_exact(&src, &dst);
}

#[test]
fn follower_killed_then_rerun_ends_exact() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    seed(&src);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = load(&src, 60_000, Duration::from_secs(8), true, stop.clone());
    let args = follow_args(&src, &dst, &[]);
    let mut first = Follower::start(&work, &args);
    first.wait_following(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1_000));
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("wait");
    // Writes go on while no follower runs; the same command again reconciles and follows on.
    std::thread::sleep(Duration::from_millis(1_000));
    let cut_early = cutover(&work, &[]);
    assert_eq!(cut_early.code, 2, "{}", cut_early.text());
    assert!(
        cut_early.text().contains("not running"),
        "{}",
        cut_early.text()
    );
    let second = Follower::start(&work, &args);
    second.wait_following(Duration::from_secs(60));
    writes.join().expect("load thread");
    let verdict = cutover(&work, &[]);
    let run = second.wait(Duration::from_secs(90));
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert_exact(&src, &dst);
}

#[test]
fn pause_source_holds_writes_for_at_most_the_pause_and_cuts_over_exact() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    seed(&src);
    let follower = Follower::start(&work, &follow_args(&src, &dst, &[]));
    follower.wait_following(Duration::from_secs(60));
    // A writer that never stops on its own: only the pause may hold it.
    let client = src.client();
    let writer = std::thread::spawn(move || {
        let mut c = client.get_connection().expect("writer connection");
        let started = Instant::now();
        let mut last = Instant::now();
        let (mut gap, mut before_gap, mut after_gap) = (Duration::ZERO, 0i64, 0u64);
        while started.elapsed() < Duration::from_secs(14) {
            let n: i64 = redis::cmd("INCR")
                .arg("pause:counter")
                .query(&mut c)
                .expect("INCR");
            let now = Instant::now();
            if now - last > gap {
                gap = now - last;
                before_gap = n - 1;
                after_gap = 0;
            } else {
                after_gap += 1;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(2));
        }
        (gap, before_gap, after_gap)
    });
    std::thread::sleep(Duration::from_secs(2));
    let verdict = cutover(&work, &["--pause-source", "3"]);
    let run = follower.wait(Duration::from_secs(60));
    let (gap, before_gap, after_gap) = writer.join().expect("writer");
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert!(verdict.text().contains("paused"), "{}", verdict.text());
    // The writes waited during the pause, never longer than it, and went on after it.
    assert!(
        gap >= Duration::from_millis(1_500),
        "writes were never held: longest gap {gap:?}"
    );
    assert!(
        gap <= Duration::from_millis(3_500),
        "writes were held {gap:?} for a 3 s pause"
    );
    assert!(after_gap > 100, "writes did not go on after the pause");
    // The target holds the source as it was when the writes were paused.
    let mut t = dst.conn();
    let on_target: i64 = redis::cmd("GET")
        .arg("pause:counter")
        .query(&mut t)
        .expect("GET");
    assert_eq!(
        on_target, before_gap,
        "the target's counter is not the source's at the pause"
    );
}

#[test]
fn rerun_with_reconcile_brings_a_changed_target_up_to_date() {
    let src = source(&[]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    seed(&src);
    let mut args: Vec<String> = follow_args(&src, &dst, &[])
        .into_iter()
        .filter(|a| a != "--follow")
        .collect();
    let first = work.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(first.code, 0, "{}", first.text());
    // The source changes after the copy (the application kept writing).
    let stop = Arc::new(AtomicBool::new(false));
    load(&src, 3_000, Duration::from_secs(3), false, stop)
        .join()
        .expect("load");
    let again = work.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(again.code, 1, "{}", again.text());
    assert!(
        again.text().contains("the source most likely changed")
            && again.text().contains("--reconcile"),
        "{}",
        again.text()
    );
    args.push("--reconcile".into());
    let fixed = work.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(fixed.code, 0, "{}", fixed.text());
    assert!(fixed.text().contains("--reconcile:"), "{}", fixed.text());
    assert_exact(&src, &dst);
}

/// Ids of the source's SLOWLOG entries (every command is logged: `slowlog-log-slower-than 0`)
/// whose arguments are exactly `args`, oldest first.
fn slowlog_ids(src: &Server, args: &[&str]) -> Vec<i64> {
    let mut ids: Vec<i64> = slowlog::entries(&mut src.conn())
        .iter()
        .filter(|e| e.matches(args))
        .map(|e| e.id)
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn del_racing_an_in_flight_dump_never_resurrects_the_key() {
    let src = source(&[
        "--notify-keyspace-events",
        "KEA",
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    seed(&src);
    // The 500k-member sets are big keys, which the follower copies in chunks; this test is
    // about the DUMP path's race, so big-key detection is off.
    let follower = Follower::start(&work, &follow_args(&src, &dst, &["--big-key-bytes", "0"]));
    follower.wait_following(Duration::from_secs(60));
    let mut c = src.conn();
    let mut t = dst.conn();
    let mut raced = 0;
    for attempt in 0..6 {
        let key = format!("big:{attempt}");
        // A set big enough that its DUMP keeps the source busy for tens of ms.
        for chunk in 0..200 {
            let members: Vec<String> = (0..2_500).map(|m| format!("member-{chunk}-{m}")).collect();
            let _: () = redis::cmd("SADD")
                .arg(&key)
                .arg(&members)
                .query(&mut c)
                .expect("SADD");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = redis::cmd("SCARD").arg(&key).query(&mut t).expect("SCARD");
            if n == 500_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never reached the target:\n{}",
                follower.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // One more write (the follower re-reads the key: a long DUMP), then DEL while that read
        // is in flight: the server runs the DEL after the DUMP, so the read holds the old value.
        let _: () = redis::cmd("SADD")
            .arg(&key)
            .arg("one-more")
            .query(&mut c)
            .expect("SADD");
        std::thread::sleep(Duration::from_millis(20 + 10 * attempt));
        let _: () = redis::cmd("DEL").arg(&key).query(&mut c).expect("DEL");
        // Gone from the target, and it stays gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query(&mut t)
                .expect("EXISTS");
            if n == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} still on the target:\n{}",
                follower.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1_000));
        let n: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut t)
            .expect("EXISTS");
        assert_eq!(n, 0, "{key} came back on the target");
        let dumps = slowlog_ids(&src, &["DUMP", &key]);
        let del = slowlog_ids(&src, &["DEL", &key]);
        let del = del.first().copied().expect("the DEL is in the slowlog");
        let reads_after = slowlog_ids(&src, &["PTTL", &key])
            .into_iter()
            .filter(|&id| id > del)
            .count();
        if dumps.iter().any(|&d| d < del && d > del - 50) && reads_after > 0 {
            raced += 1;
        }
    }
    // The race was provoked (a DUMP ran just before the DEL, and the key was read again after).
    assert!(
        raced >= 1,
        "the DEL never raced an in-flight DUMP in 6 attempts"
    );
    let verdict = cutover(&work, &[]);
    let run = follower.wait(Duration::from_secs(90));
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert_exact(&src, &dst);
}

/// A write load on a cluster: every type, DEL, short TTLs, EXPIREAT in the past, PERSIST,
/// RENAME (within a hash tag), INCR/APPEND, pops, ZINCRBY, XADD/XTRIM.
fn cluster_load(src: &Cluster, max_ops: usize, limit: Duration) -> JoinHandle<usize> {
    let client = src.client();
    std::thread::spawn(move || {
        let mut c = client.get_connection().expect("cluster load connection");
        let mut rng = rand::rng();
        let started = Instant::now();
        let mut ops = 0;
        while ops < max_ops && started.elapsed() < limit {
            let i = rng.random_range(0..300);
            let j = rng.random_range(0..300);
            let now = data::now_ms();
            let cmd = match rng.random_range(0..14) {
                0 => redis::cmd("SET").arg(format!("s:{{{i}}}")).arg(ops).clone(),
                1 => redis::cmd("SET")
                    .arg(format!("t:{{{i}}}"))
                    .arg("short")
                    .arg("PX")
                    .arg(rng.random_range(50..1500))
                    .clone(),
                2 => redis::cmd("HSET")
                    .arg(format!("h:{{{i}}}"))
                    .arg(j)
                    .arg(ops)
                    .clone(),
                3 => redis::cmd("RPUSH")
                    .arg(format!("l:{{{i}}}"))
                    .arg(ops)
                    .clone(),
                4 => redis::cmd("LPOP").arg(format!("l:{{{i}}}")).clone(),
                5 => redis::cmd("SADD")
                    .arg(format!("set:{{{i}}}"))
                    .arg(j)
                    .clone(),
                6 => redis::cmd("ZINCRBY")
                    .arg(format!("z:{{{i}}}"))
                    .arg(2)
                    .arg(j)
                    .clone(),
                7 => redis::cmd("XADD")
                    .arg(format!("x:{{{i}}}"))
                    .arg("*")
                    .arg("f")
                    .arg(ops)
                    .clone(),
                8 => redis::cmd("XTRIM")
                    .arg(format!("x:{{{i}}}"))
                    .arg("MAXLEN")
                    .arg(3)
                    .clone(),
                9 => redis::cmd("DEL").arg(format!("s:{{{j}}}")).clone(),
                10 => redis::cmd("PEXPIREAT")
                    .arg(format!("h:{{{j}}}"))
                    .arg(now - 1000)
                    .clone(),
                11 => redis::cmd("PERSIST").arg(format!("set:{{{j}}}")).clone(),
                12 => redis::cmd("RENAME")
                    .arg(format!("s:{{{i}}}"))
                    .arg(format!("r:{{{i}}}"))
                    .clone(),
                _ => redis::cmd("APPEND")
                    .arg(format!("s:{{{i}}}"))
                    .arg("+")
                    .clone(),
            };
            let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
            ops += 1;
            if ops % 200 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ops
    })
}

/// A 3-master 6.2 cluster (notifications on) followed into a 3-master TLS 7.0 cluster under a
/// load of `load_ops` writes over `load_for`; `during` runs once the follower follows; then a
/// cutover must say GO and the target must equal the source.
fn cluster_follow_and_cut_over(
    load_ops: usize,
    load_for: Duration,
    during: impl FnOnce(&Cluster),
) -> Run {
    let src = Cluster::start_with(
        Version::V6_2,
        ServerOpts {
            extra_args: vec!["--notify-keyspace-events".into(), "KEA".into()],
            ..ServerOpts::default()
        },
    );
    let dst = Cluster::start(Version::V7_0, true);
    cluster_data::seed_bulk_cluster(&mut src.conn(), 3_000, "bulk:");
    let work = Workdir::new();
    let args: Vec<String> = [
        "migrate",
        "--source",
        &src.url(),
        "--target",
        &dst.url(),
        "--target-cacert",
        &ca_cert().to_string_lossy(),
        "--checkpoint",
        CHECKPOINT,
        "--follow",
        "--progress",
        "log",
        "--log-every",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let writes = cluster_load(&src, load_ops, load_for);
    let follower = Follower::start(&work, &args);
    follower.wait_following(Duration::from_secs(60));
    during(&src);
    assert!(writes.join().expect("load") > 1_000);
    let verdict = cutover(&work, &[]);
    let run = follower.wait(Duration::from_secs(90));
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nfollower:\n{}",
        verdict.text(),
        run.text()
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert_cluster_exact(&src, &dst);
    run
}

/// [`assert_exact`] for clusters.
fn assert_cluster_exact(src: &Cluster, dst: &Cluster) {
    let a = cluster_data::snapshot_cluster(src);
    let mut b = cluster_data::snapshot_cluster(dst);
    assert!(
        a.len() > 3_000,
        "the source lost its data: {} keys",
        a.len()
    );
    b.retain(|k, st| a.contains_key(k) || !(0..1_000).contains(&st.pttl));
    data::assert_same_allow_expired(&a, &b, 1_000, 1_000);
}

#[test]
fn cluster_source_follows_into_a_tls_cluster_and_cuts_over_exact() {
    let run = cluster_follow_and_cut_over(40_000, Duration::from_secs(6), |_| {});
    assert!(
        run.text().contains("the source's 3 masters"),
        "{}",
        run.text()
    );
}

#[test]
fn cluster_source_resharded_mid_follow_ends_exact() {
    cluster_follow_and_cut_over(60_000, Duration::from_secs(8), |src| {
        // Slots (and their keys) move between masters while the load writes and ferry follows.
        cluster_data::reshard(src, 0, 1, 1_000);
        cluster_data::reshard(src, 2, 0, 500);
    });
}

/// Lag from a source write to the target under a steady load, for docs/benchmarks.md:
/// `FERRY_FOLLOW_RATES=2000,10000,30000 bash scripts/test.sh --test follow follow_lag -- --ignored --nocapture`.
/// Each write is `SET lag:N <ms sent>` (pipelines every 10 ms); a poller reads the target with
/// pipelined GETs every 5 ms and takes, per key, the time it first saw it minus the time sent
/// (so each figure includes up to 5 ms of polling). Not an assertion: a measurement.
#[test]
#[ignore]
fn follow_lag_measurement() {
    let rates: Vec<u64> = std::env::var("FERRY_FOLLOW_RATES")
        .unwrap_or_else(|_| "2000,10000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    seed(&src);
    let extra: usize = std::env::var("FERRY_FOLLOW_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if extra > 0 {
        data::seed_bulk(&mut src.conn(), 0, extra, "big:");
    }
    let follower = Follower::start(&work, &follow_args(&src, &dst, &[]));
    follower.wait_following(Duration::from_secs(300));
    // The first reconciliation pass (after the copy) makes the cutover's verification incremental.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !follower.log().contains("reconciliation pass 1 done") {
        assert!(
            Instant::now() < deadline,
            "no first pass:\n{}",
            follower.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut base = 0u64;
    for rate in rates {
        let secs = 10u64;
        let n = rate * secs;
        let client = src.client();
        let writer = std::thread::spawn(move || {
            let mut c = client.get_connection().expect("writer");
            let per_tick = (rate / 100).max(1);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = 0u64;
            while sent < n {
                let mut p = redis::pipe();
                for _ in 0..per_tick.min(n - sent) {
                    p.cmd("SET")
                        .arg(format!("lag:{}", base + sent))
                        .arg(data::now_ms())
                        .ignore();
                    sent += 1;
                }
                let _: () = p.query(&mut c).expect("SET pipeline");
                tick += 1;
                let due = started + Duration::from_millis(10 * tick);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent as f64 / started.elapsed().as_secs_f64()
        });
        let mut t = dst.conn();
        let mut seen = vec![false; n as usize];
        let mut lags: Vec<i64> = Vec::with_capacity(n as usize);
        let mut lo = 0u64;
        let deadline = Instant::now() + Duration::from_secs(secs + 60);
        while lo < n && Instant::now() < deadline {
            let hi = (lo + 3_000).min(n);
            let mut p = redis::pipe();
            for i in lo..hi {
                p.cmd("GET").arg(format!("lag:{}", base + i));
            }
            let vals: Vec<Option<i64>> = p.query(&mut t).expect("GET pipeline");
            let now = data::now_ms();
            for (i, v) in (lo..hi).zip(vals) {
                if let (Some(sent), false) = (v, seen[i as usize]) {
                    seen[i as usize] = true;
                    lags.push(now - sent);
                }
            }
            while lo < n && seen[lo as usize] {
                lo += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let achieved = writer.join().expect("writer");
        lags.sort_unstable();
        let pct = |q: f64| {
            lags.get(((lags.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(-1)
        };
        eprintln!(
            "follow lag at {rate} writes/s (achieved {achieved:.0}/s, {} of {n} keys seen): p50 {} ms, p99 {} ms, max {} ms",
            lags.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        base += n;
    }
    let verdict = cutover(&work, &[]);
    let run = follower.wait(Duration::from_secs(300));
    assert_eq!(verdict.code, 0, "{}\n{}", verdict.text(), run.text());
    eprintln!("{}", verdict.text());
    // The same data verified whole by `ferry verify`, for comparison with the cutover's pause.
    let started = Instant::now();
    let full = work.run(&[
        "verify",
        "--source",
        &src.url(),
        "--target",
        &dst.url(),
        "--target-cacert",
        &ca_cert().to_string_lossy(),
    ]);
    assert_eq!(full.code, 0, "{}", full.text());
    eprintln!(
        "full ferry verify of the same data: {:.2} s; the cutover's drain + verification: {} ms",
        started.elapsed().as_secs_f64(),
        run.report
            .as_ref()
            .map_or(0, |r| r["cutover"]["verify_ms"].as_u64().unwrap_or(0))
    );
}

/// `--partition` with `--follow`: two workers follow one Redis 6.2 source (one DB, so the split
/// is by key hash and both subscribe to the same server) while a writer writes; one `ferry
/// cutover` with both checkpoints asks both, and says GO only when both did. Each worker acted
/// on its own share's events and left the other's alone; the target equals the source.
#[test]
fn two_partition_workers_follow_one_source_and_cut_over_exact() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::Valkey8);
    data::seed_bulk(&mut src.conn(), 0, 3_000, "bulk0:");
    let work = Workdir::new();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = load_in(&src, &[0], 40_000, Duration::from_secs(6), false, stop);
    let checkpoints = ["w0.checkpoint.json", "w1.checkpoint.json"];
    let workers: Vec<Follower> = (0..2)
        .map(|i| {
            let mut args = follow_args(&src, &dst, &["--partition", &format!("{i}/2")]);
            let cp = args
                .iter()
                .position(|a| a == CHECKPOINT)
                .expect("--checkpoint");
            args[cp] = checkpoints[i].to_string();
            Follower::start(&work, &args)
        })
        .collect();
    for w in &workers {
        w.wait_following(Duration::from_secs(60));
    }
    assert!(writes.join().expect("load thread") > 1_000);
    let verdict = work.run(&[
        "cutover",
        "--checkpoint",
        checkpoints[0],
        "--checkpoint",
        checkpoints[1],
        "--timeout",
        "60",
    ]);
    let runs: Vec<Run> = workers
        .into_iter()
        .map(|w| w.wait(Duration::from_secs(90)))
        .collect();
    let logs: Vec<String> = runs.iter().map(Run::text).collect();
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nworkers:\n{}",
        verdict.text(),
        logs.join("\n----\n")
    );
    assert!(
        verdict.text().contains("all 2 followers answered GO"),
        "{}",
        verdict.text()
    );
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.text());
        assert!(run.text().contains("split by key hash"), "{}", run.text());
        let report = run.report.as_ref().expect("worker report");
        assert_eq!(report["cutover"]["verdict"], "GO", "{report}");
        // Both workers receive every event of the one server, and act on their own keys only.
        let f = &report["follow"];
        assert!(f["events"].as_u64().unwrap_or(0) > 100, "{report}");
        assert!(
            f["other_shares_events"].as_u64().unwrap_or(0) > 100,
            "{report}"
        );
    }
    assert_exact(&src, &dst);
}

/// `--partition` with `--follow` on a cluster source: 3 masters of a 6.2 cluster over 2 workers
/// (split by masters: 2 and 1), each subscribed to its own masters only, under a write load; one
/// cutover of both says GO and the target cluster equals the source.
#[test]
fn two_partition_workers_follow_a_cluster_and_cut_over_exact() {
    let src = Cluster::start_with(
        Version::V6_2,
        ServerOpts {
            extra_args: vec!["--notify-keyspace-events".into(), "KEA".into()],
            ..ServerOpts::default()
        },
    );
    let dst = Cluster::start(Version::V7_0, true);
    cluster_data::seed_bulk_cluster(&mut src.conn(), 3_000, "bulk:");
    let work = Workdir::new();
    let writes = cluster_load(&src, 30_000, Duration::from_secs(6));
    let checkpoints = ["c0.checkpoint.json", "c1.checkpoint.json"];
    let workers: Vec<Follower> = (0..2)
        .map(|i| {
            let share = format!("{i}/2");
            let args: Vec<String> = [
                "migrate",
                "--source",
                &src.url(),
                "--target",
                &dst.url(),
                "--target-cacert",
                &ca_cert().to_string_lossy(),
                "--checkpoint",
                checkpoints[i],
                "--partition",
                &share,
                "--follow",
                "--progress",
                "log",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Follower::start(&work, &args)
        })
        .collect();
    for w in &workers {
        w.wait_following(Duration::from_secs(60));
    }
    assert!(writes.join().expect("load") > 1_000);
    let verdict = work.run(&[
        "cutover",
        "--checkpoint",
        checkpoints[0],
        "--checkpoint",
        checkpoints[1],
        "--timeout",
        "60",
    ]);
    let runs: Vec<Run> = workers
        .into_iter()
        .map(|w| w.wait(Duration::from_secs(90)))
        .collect();
    assert_eq!(
        verdict.code,
        0,
        "cutover:\n{}\nworkers:\n{}\n----\n{}",
        verdict.text(),
        runs[0].text(),
        runs[1].text()
    );
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.text());
        assert!(
            run.text().contains("3 masters over 2 shares"),
            "{}",
            run.text()
        );
    }
    // Each worker subscribed to the masters of its share only.
    assert!(
        runs[0]
            .text()
            .contains("subscribed to the keyspace events of the source's 2 masters"),
        "{}",
        runs[0].text()
    );
    assert!(
        runs[1]
            .text()
            .contains("subscribed to the keyspace events of the source before"),
        "{}",
        runs[1].text()
    );
    assert_cluster_exact(&src, &dst);
}

/// A big key changed while ferry follows is copied again in chunks, never DUMPed (one DUMP of
/// a big hash blocks the source for as long as it takes, at every change); a big key deleted
/// meanwhile is deleted on the target.
#[test]
fn big_keys_changed_while_following_are_copied_in_chunks() {
    let src = source(&["--notify-keyspace-events", "KEA"]);
    let dst = Server::tls_target(Version::V7_0);
    seed(&src);
    let mut c = src.conn();
    for key in ["big:hash", "big:gone"] {
        support::bigkey_data::big_hash(&mut c, key, 20_000, false);
    }
    let work = Workdir::new();
    let follower = Follower::start(
        &work,
        &follow_args(&src, &dst, &["--big-key-bytes", "1048576"]),
    );
    follower.wait_following(Duration::from_secs(60));
    // Every command from here on is in the slowlog, so a DUMP of a big key would show.
    slowlog::log_slower_than(&mut c, 0);
    for round in 0..5 {
        let () = redis::cmd("HSET")
            .arg(&["big:hash", &format!("new:{round}"), "x"])
            .query(&mut c)
            .expect("HSET");
        std::thread::sleep(Duration::from_millis(300));
    }
    let () = redis::cmd("DEL")
        .arg("big:gone")
        .query(&mut c)
        .expect("DEL");
    std::thread::sleep(Duration::from_millis(500));
    let verdict = cutover(&work, &[]);
    let run = follower.wait(Duration::from_secs(90));
    assert_eq!(verdict.code, 0, "{}\n{}", verdict.text(), run.text());
    assert_eq!(run.code, 0, "{}", run.text());
    // (big:gone, once deleted, is small: a DUMP of a key that is not there costs nothing.)
    assert!(
        slowlog_ids(&src, &["DUMP", "big:hash"]).is_empty(),
        "big:hash was DUMPed while following"
    );
    let hscans = slowlog::counts_on(&mut c, "big:hash")
        .get("HSCAN")
        .copied()
        .unwrap_or(0);
    assert!(
        hscans > 0,
        "big:hash was not read in chunks while following"
    );
    let mut d = dst.conn();
    let n: i64 = redis::cmd("HLEN")
        .arg("big:hash")
        .query(&mut d)
        .expect("HLEN");
    assert_eq!(
        n, 20_005,
        "the target's big:hash lacks the fields added while following"
    );
    let gone: i64 = redis::cmd("EXISTS")
        .arg("big:gone")
        .query(&mut d)
        .expect("EXISTS");
    assert_eq!(gone, 0, "big:gone was deleted on the source");
    assert_exact(&src, &dst);
}

/// A big key of a *cluster* source changed while ferry follows is copied again in chunks read
/// on the master of its slot, never DUMPed; the target (proto-max-bulk-len 1mb, which refuses
/// one RESTORE of the 2 MB hash) ends equal to the source.
#[test]
fn cluster_big_keys_changed_while_following_are_copied_in_chunks() {
    let src = Cluster::start_with(
        Version::V6_2,
        ServerOpts {
            extra_args: vec!["--notify-keyspace-events".into(), "KEA".into()],
            ..ServerOpts::default()
        },
    );
    let dst = Server::start(
        Version::Valkey8,
        ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
            ..ServerOpts::tls()
        },
    );
    cluster_data::seed_bulk_cluster(&mut src.conn(), 1_000, "bulk:");
    let owner = src.node_for_key(b"big:hash");
    let mut c = owner.conn();
    // Random values: a DUMP compresses repetitive ones, and this one must stay over 1 MB.
    support::bigkey_data::big_hash(&mut c, "big:hash", 20_000, true);
    let work = Workdir::new();
    let args = follow_args(&src, &dst, &["--big-key-bytes", "1048576"]);
    let follower = Follower::start(&work, &args);
    follower.wait_following(Duration::from_secs(60));
    // Every command on the owning master from here on is in its slowlog.
    slowlog::log_slower_than(&mut c, 0);
    for round in 0..5 {
        let () = redis::cmd("HSET")
            .arg(&["big:hash", &format!("new:{round}"), "x"])
            .query(&mut c)
            .expect("HSET");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let verdict = cutover(&work, &[]);
    let run = follower.wait(Duration::from_secs(90));
    assert_eq!(verdict.code, 0, "{}\n{}", verdict.text(), run.text());
    assert_eq!(run.code, 0, "{}", run.text());
    // Read before the test's own reads of the source below.
    let log = slowlog::counts_on(&mut owner.conn(), "big:hash");
    let on_big = |name: &str| log.get(name).copied().unwrap_or(0);
    assert_eq!(on_big("DUMP"), 0, "big:hash was DUMPed while following");
    assert!(
        on_big("HSCAN") > 0,
        "big:hash was not read in chunks while following"
    );
    let mut d = dst.conn();
    let n: i64 = redis::cmd("HLEN")
        .arg("big:hash")
        .query(&mut d)
        .expect("HLEN");
    assert_eq!(
        n, 20_005,
        "the target's big:hash lacks the fields added while following"
    );
    let a: std::collections::BTreeMap<(u32, Vec<u8>), data::KeyState> =
        cluster_data::snapshot_cluster(&src)
            .into_iter()
            .map(|(k, v)| ((0, k), v))
            .collect();
    data::assert_same_allow_expired(&a, &data::snapshot_all(&mut d), 1_000, 1_000);
}
