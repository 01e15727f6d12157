//! Expiries stay exact when the source stalls mid-read (issue #11, items 1 and 2).
//!
//! Another client stalls the source (`DEBUG SLEEP`) while ferry reads it, and big values whose
//! `DUMP` takes the source a long time sit among the keys. Before the fix, ferry turned every
//! PTTL into an absolute expiry with one `TIME` taken at the start of a pipeline, so each key
//! read after a stall expired early on the target by the stall. Every key here is seeded with
//! `PEXPIREAT` at a known absolute time, so the oracle is exact: the target's `PEXPIRETIME`
//! must be within ±250 ms of it.

mod support;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use ferry::report::escape_key;
use support::data;
use support::ferry::{Run, Workdir};
use support::servers::{ca_cert, Server, Version, TEST_PASSWORD};

/// Keys with a TTL among the seeded ones: every fifth.
const TTL_EVERY: usize = 5;

/// Seeds `n` small strings in DB 0, every fifth with an absolute expiry 1–2 h ahead at a
/// millisecond that differs per key; returns (key, expiry ms) of those with one.
fn seed(conn: &mut redis::Connection, n: usize) -> Vec<(String, i64)> {
    let base = data::now_ms() + 3_600_000;
    let mut expiring = Vec::new();
    for start in (0..n).step_by(5_000) {
        let mut p = redis::pipe();
        for i in start..(start + 5_000).min(n) {
            let key = format!("k:{i:07}");
            p.cmd("SET").arg(&key).arg(format!("value-{i}")).ignore();
            if i % TTL_EVERY == 0 {
                let at = base + (i as i64 * 7_919) % 3_600_000;
                p.cmd("PEXPIREAT").arg(&key).arg(at).ignore();
                expiring.push((key, at));
            }
        }
        let () = p.query(conn).expect("seed");
    }
    expiring
}

/// Adds values whose DUMP keeps the source busy for a long time: a 200 MB string, a hash of
/// 1M fields and a list of 2M elements (the first two with a TTL).
fn seed_big(conn: &mut redis::Connection) -> Vec<(String, i64)> {
    let at = data::now_ms() + 7_200_000 + 123;
    let () = redis::cmd("SETRANGE")
        .arg("big:string")
        .arg(200 * 1024 * 1024 - 1)
        .arg("!")
        .query(conn)
        .expect("SETRANGE");
    for start in (0..1_000_000).step_by(10_000) {
        let mut c = redis::cmd("HMSET");
        c.arg("big:hash");
        for i in start..start + 10_000 {
            c.arg(format!("field-{i}")).arg(i);
        }
        let () = c.query(conn).expect("HMSET");
    }
    for start in (0..2_000_000).step_by(20_000) {
        let mut c = redis::cmd("RPUSH");
        c.arg("big:list");
        for i in start..start + 20_000 {
            c.arg(i);
        }
        let _: i64 = c.query(conn).expect("RPUSH");
    }
    let mut out = Vec::new();
    for key in ["big:string", "big:hash"] {
        let _: i64 = redis::cmd("PEXPIREAT")
            .arg(key)
            .arg(at)
            .query(conn)
            .expect("PEXPIREAT");
        out.push((key.to_string(), at));
    }
    out
}

/// Starts `ferry ARGS` in the background.
fn spawn(work: &Workdir, args: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let (mut cmd, report) = work.command(args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    (cmd.spawn().expect("start ferry"), report)
}

fn args<'a>(cmd: &'a str, src: &'a str, dst: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec![
        cmd,
        "--source",
        src,
        "--target",
        dst,
        "--target-cacert",
        ca,
        "--progress",
        "none",
    ]
}

/// Waits until `ready` says the run is under way, then stalls `src` with `DEBUG SLEEP secs`
/// from another client, `times` times with `gap_ms` between (until ferry exits, when `times`
/// is `None`, and for at most 90 s). Returns whether the first stall began before ferry exited.
fn stall(
    src: &Server,
    child: &mut std::process::Child,
    mut ready: impl FnMut() -> bool,
    secs: &str,
    times: Option<usize>,
    gap_ms: u64,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "ferry never got under way");
        if child.try_wait().expect("ferry status").is_some() {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let running = child.try_wait().expect("ferry status").is_none();
    let mut c = src.conn();
    let until = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    while times.is_none_or(|t| n < t) && Instant::now() < until {
        if times.is_none() && child.try_wait().expect("ferry status").is_some() {
            break;
        }
        let () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(secs)
            .query(&mut c)
            .expect("DEBUG SLEEP");
        n += 1;
        thread::sleep(Duration::from_millis(gap_ms));
    }
    running
}

/// True once the source has answered more than `n` DUMPs since it started.
fn dumps_over(src: &Server, n: u64) -> impl FnMut() -> bool {
    let mut s = src.conn();
    move || {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut s)
            .unwrap_or_default();
        let calls = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_dump:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        calls > n
    }
}

fn finish(child: std::process::Child, report: &std::path::Path) -> Run {
    let out = child.wait_with_output().expect("ferry output");
    let run = support::ferry::finish(out, report);
    assert!(!run.text().contains(TEST_PASSWORD), "{}", run.text());
    run
}

/// Every key of `expect` is on the target with its expiry within ±250 ms.
fn assert_expiries(dst: &Server, expect: &[(String, i64)]) {
    let mut t = dst.conn();
    let mut off = Vec::new();
    for chunk in expect.chunks(5_000) {
        let mut p = redis::pipe();
        for (key, _) in chunk {
            p.cmd("PEXPIRETIME").arg(key);
        }
        let got: Vec<i64> = p.query(&mut t).expect("PEXPIRETIME");
        for ((key, want), got) in chunk.iter().zip(got) {
            if (got - want).abs() > 250 {
                off.push(format!("{key}: {} ms", got - want));
            }
        }
    }
    assert!(
        off.is_empty(),
        "{} of {} expiries are off by more than 250 ms, e.g. {:?}",
        off.len(),
        expect.len(),
        &off[..off.len().min(10)]
    );
}

fn migrate_under_stalls(with_big_values: bool) {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    let mut expect = {
        let mut c = src.conn();
        seed(&mut c, 300_000)
    };
    if with_big_values {
        let mut c = src.conn();
        expect.extend(seed_big(&mut c));
    }
    let ca = ca_cert();
    let ca = ca.to_str().expect("CA path");
    let (src_url, dst_url) = (src.url(), dst.url());
    let work = Workdir::new();
    // Small batches: the copy takes long enough for both stalls to land in it.
    let mut a = args("migrate", &src_url, &dst_url, ca);
    a.extend(["--writers", "2", "--batch-keys", "500"]);
    let (mut child, report) = spawn(&work, &a);
    let stalled = stall(
        &src,
        &mut child,
        dumps_over(&src, 20_000),
        "1.5",
        Some(2),
        50,
    );
    let run = finish(child, &report);
    assert!(stalled, "the copy ended before the stalls:\n{}", run.text());
    assert_expiries(&dst, &expect);
    assert_eq!(run.code, 0, "{}", run.text());
    let r = run.report.as_ref().expect("report");
    let worst = r["expiry_uncertainty_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expiry_uncertainty_ms in {r}"));
    assert!(worst <= 250, "worst expiry uncertainty {worst} ms: {r}");
}

#[test]
fn expiries_exact_when_the_source_stalls_mid_copy() {
    migrate_under_stalls(false);
}

#[test]
fn expiries_exact_beside_huge_values() {
    migrate_under_stalls(true);
}

#[test]
fn verify_names_exactly_the_moved_ttls_while_the_source_stalls() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    let expect = {
        let mut c = src.conn();
        seed(&mut c, 300_000)
    };
    let ca = ca_cert();
    let ca = ca.to_str().expect("CA path");
    let (src_url, dst_url) = (src.url(), dst.url());
    let work = Workdir::new();
    let mut a = args("migrate", &src_url, &dst_url, ca);
    a.extend(["--no-verify"]);
    let run = work.run(&a);
    assert_eq!(run.code, 0, "{}", run.text());

    // 100 expiries moved 3 s later on the target and 2,000 moved 2 s earlier, spread over the
    // keyspace. A stall of 2 s read into the source's expiries (as before the fix) hid the
    // earlier ones: keys read after it looked 2 s early on the source too.
    let mut moved: Vec<(String, i64)> = Vec::new();
    {
        let mut t = dst.conn();
        let mut p = redis::pipe();
        for (i, (key, at)) in expect.iter().enumerate() {
            let by = match (i % 600, i % 30) {
                (1, _) => 3_000,
                (_, 0) => -2_000,
                _ => continue,
            };
            p.cmd("PEXPIREAT").arg(key).arg(at + by).ignore();
            moved.push((key.clone(), by));
        }
        let () = p.query(&mut t).expect("move TTLs");
    }
    assert_eq!(moved.iter().filter(|(_, by)| *by > 0).count(), 100);
    assert_eq!(moved.len(), 2_100);
    let a = args("verify", &src_url, &dst_url, ca);
    let (mut child, report) = spawn(&work, &a);
    // Stalls over the whole run, the rechecks included, leaving the source some time to work.
    let stalled = stall(&src, &mut child, dumps_over(&src, 20_000), "2", None, 400);
    let run = finish(child, &report);
    assert!(stalled, "verify ended before the stalls:\n{}", run.text());
    assert_eq!(run.code, 1, "{}", run.text());
    let r = run.report.as_ref().expect("report");
    let named: BTreeSet<(String, String)> = r["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences in {r}"))
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = moved
        .iter()
        .map(|(k, _)| ("ttl".to_string(), escape_key(k.as_bytes())))
        .collect();
    let missed: Vec<_> = want.difference(&named).take(10).collect();
    let invented: Vec<_> = named.difference(&want).take(10).collect();
    assert!(
        missed.is_empty() && invented.is_empty(),
        "verify must name exactly the {} moved TTLs; missed {missed:?}…, invented {invented:?}…",
        want.len()
    );
}
