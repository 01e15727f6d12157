//! Servers that stop answering, and connections killed under ferry, against real servers.
//!
//! A target paused with SIGSTOP keeps its TCP port open (the kernel still accepts connections)
//! but answers nothing: the hang a dead network path or an overloaded server gives. ferry must
//! give up within about `--retry-for`, naming the target and the timeout; stop within a second
//! or two on SIGTERM with its checkpoint saved; and a rerun must end with the exact contents.
//! Connections killed every 50 ms (`CLIENT KILL TYPE normal`) must be retried in every phase.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::data;
use support::ferry::{signal, Ferry, Run, Running, Workdir};
use support::servers::{Server, Version, TEST_PASSWORD};

/// A server paused with SIGSTOP until [`Paused::resume`] or drop (SIGCONT).
struct Paused {
    pid: u32,
    running: bool,
}

impl Paused {
    fn pause(server: &Server) -> Paused {
        let pid = server.pid().expect("the server runs");
        signal(pid, "STOP");
        Paused {
            pid,
            running: false,
        }
    }

    fn resume(&mut self) {
        if !self.running {
            signal(self.pid, "CONT");
            self.running = true;
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.resume();
    }
}

/// A source with `n` bulk keys plus the rich dataset (every type, TTLs).
fn source_with(n: usize) -> Server {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let caps = data::Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    data::seed_bulk(&mut c, 0, n, "bulk:");
    src
}

/// `ferry migrate` for a slow copy (small batches) from `src` into the TLS `dst`, with a
/// checkpoint.
fn slow_migrate<'w>(work: &'w Workdir, src: &Server, dst: &Server, retry_for: &str) -> Ferry<'w> {
    work.migrate(src, dst)
        .args(&["--scan-count", "50", "--batch-keys", "50", "--writers", "2"])
        .args(&["--retry-for", retry_for])
        .checkpoint("job.checkpoint.json")
        .progress("log")
        .args(&["--log-every", "1"])
}

/// Waits until ferry is writing: 500 keys on the target, at most 60 s.
fn until_writing(ferry: &mut Running, dst: &Server) {
    ferry.until_keys(dst, 500, Duration::from_secs(60));
}

/// The server stopped by [`stalled_mid_copy`].
enum Side {
    Source,
    Target,
}

/// A slow `--no-verify` copy (60,000 keys, `--retry-for retry_for`) whose `side` is stopped
/// (for 30 s at most) once ferry writes: ferry must give up, exit 2, within `retry_for` + 6 s.
/// Returns the run and the two servers, running again.
fn stalled_mid_copy(side: Side, retry_for: u64) -> (Run, Server, Server) {
    let src = source_with(60_000);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let mut ferry = slow_migrate(&work, &src, &dst, &retry_for.to_string())
        .arg("--no-verify")
        .spawn();
    until_writing(&mut ferry, &dst);
    let (stalled, name) = match side {
        Side::Source => (&src, "source"),
        Side::Target => (&dst, "target"),
    };
    let mut paused = Paused::pause(stalled);
    let stalled_at = Instant::now();
    let (run, exited) = ferry.wait_within(Duration::from_secs(30));
    let took = exited - stalled_at;
    paused.resume();
    eprintln!(
        "ferry gave up {:.1}s after the {name} stalled",
        took.as_secs_f64()
    );
    let text = run.text();
    assert_eq!(run.code, 2, "{text}");
    assert!(
        took < Duration::from_secs(retry_for + 6),
        "ferry took {took:?} to give up on a {name} stalled past --retry-for {retry_for}:\n{text}"
    );
    (run, src, dst)
}

#[test]
fn target_stalled_past_retry_for_fails_naming_it_and_the_timeout() {
    // Stopped for 30 s: far past --retry-for 5.
    let (run, _src, dst) = stalled_mid_copy(Side::Target, 5);
    let text = run.text();
    let target = dst.url_without_password();
    for needle in [
        format!("the target {target}"),
        "did not answer".to_string(),
        "answer timeout 2.5s".to_string(),
        "--retry-for 5".to_string(),
        "rerun the same command".to_string(),
        format!("waiting for the target {target} to answer"),
    ] {
        run.assert_says(&needle);
    }
    assert!(!text.contains("Is this a TLS port"), "{text}");
    assert!(
        !text.contains(TEST_PASSWORD),
        "the password leaked:\n{text}"
    );
}

#[test]
fn source_stalled_mid_copy_fails_naming_it() {
    let (run, src, _dst) = stalled_mid_copy(Side::Source, 4);
    let needle = format!("the source {} did not answer", src.url_without_password());
    run.assert_says(&needle);
    run.assert_says("--retry-for 4");
}

#[test]
fn verify_against_a_stalled_target_fails_naming_it_not_blaming_tls() {
    let src = source_with(100);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let mut paused = Paused::pause(&dst);
    let verify = work
        .between("verify", &src, &dst)
        .args(&["--retry-for", "4"])
        .progress("log");
    let started = Instant::now();
    let (run, exited) = verify.spawn().wait_within(Duration::from_secs(30));
    let took = exited - started;
    paused.resume();
    eprintln!("verify gave up after {:.1}s", took.as_secs_f64());
    let text = run.text();
    assert_eq!(run.code, 2, "{text}");
    assert!(took < Duration::from_secs(4 + 6), "took {took:?}:\n{text}");
    let needle = format!(
        "the target {} did not answer for",
        dst.url_without_password()
    );
    run.assert_says(&needle);
    run.assert_says("the TLS handshake");
    assert!(
        !text.contains("Is this a TLS port") && !text.contains("plain TCP"),
        "a silent server is not a plain-TCP port:\n{text}"
    );
}

#[test]
fn sigterm_during_a_target_stall_stops_at_once_and_the_rerun_is_exact() {
    let src = source_with(30_000);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    // The default --retry-for: the stall would last 30 s before ferry drops a connection.
    let migrate = slow_migrate(&work, &src, &dst, "60");
    let mut ferry = migrate.spawn();
    until_writing(&mut ferry, &dst);
    let mut paused = Paused::pause(&dst);
    // Long enough for every writer to be waiting on the stopped target.
    sleep(Duration::from_millis(1500));
    ferry.signal("TERM");
    let signalled = Instant::now();
    let (run, exited) = ferry.wait_within(Duration::from_secs(30));
    let took = exited - signalled;
    eprintln!("ferry exited {:.2}s after SIGTERM", took.as_secs_f64());
    let text = run.text();
    assert_eq!(run.code, 2, "{text}");
    assert!(
        took < Duration::from_secs(4),
        "ferry took {took:?} to stop on SIGTERM while the target stalled:\n{text}"
    );
    let cp_path = work.file("job.checkpoint.json");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cp_path).expect("the checkpoint is saved"))
            .expect("the checkpoint is JSON");
    let cp = &file["checkpoint"];
    assert_eq!(cp["completed"], false, "{cp}");
    paused.resume();
    // Only acknowledged batches are recorded: the target holds at least what the checkpoint
    // counts as written (it may hold more: batches sent but never acknowledged).
    let recorded = cp["totals"]["written"].as_i64().expect("totals.written");
    assert!(recorded > 0, "{cp}");
    assert!(
        recorded <= dst.dbsize(),
        "the checkpoint counts {recorded} keys written, the target holds {}",
        dst.dbsize()
    );

    let rerun = migrate.run();
    assert_eq!(rerun.code, 0, "{}", rerun.text());
    rerun.assert_says("resuming from checkpoint");
    let a = data::snapshot(&mut src.conn(), 0);
    let b = data::snapshot(&mut dst.conn(), 0);
    data::assert_same(&a, &b, 2_000);
}

/// Kills every normal client of `server` every `every` ms while `active` is set, until `done`
/// (bounded: at most 5 minutes).
fn killer(
    server: &Server,
    every: Arc<AtomicU64>,
    active: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let mut conn = server.conn();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut killed = 0u64;
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            if active.load(Ordering::SeqCst) {
                // SKIPME yes (the default) spares this connection.
                let n: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut conn)
                    .expect("CLIENT KILL");
                killed += n as u64;
            }
            sleep(Duration::from_millis(every.load(Ordering::SeqCst)));
        }
        killed
    })
}

/// 10 runs with the target's connections killed every 50 ms (the reported defect: about one
/// run in 6 failed in the conflict check), then 15 every 10 ms (so the test fails reliably
/// without retries in every phase), the last 5 with a full conflict check.
#[test]
fn connections_killed_every_50ms_are_retried_in_every_phase() {
    let src = source_with(2_000);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let active = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let every = Arc::new(AtomicU64::new(50));
    let kill = killer(&dst, every.clone(), active.clone(), done.clone());
    let migrate = work
        .migrate(&src, &dst)
        .args(&["--on-conflict", "fail", "--fresh"])
        .checkpoint("job.checkpoint.json")
        .args(&["--batch-keys", "200"])
        // The gate redoes all its checks after a lost connection, and under kills every 10 ms
        // on a loaded machine an attempt of its dozen round trips can lose several times in a
        // row: 60 s of backoff (~17 attempts, 30 s gave ~11) keeps that from failing the run
        // (it did once, at load 11). A phase that never retries still fails.
        .args(&["--retry-for", "60"])
        .progress("none");
    let mut failures = Vec::new();
    for i in 0..25 {
        if i == 10 {
            every.store(10, Ordering::SeqCst);
        }
        // An empty target each time, so the conflict check passes and the copy runs again; in
        // the last 5 runs it holds other keys, so the check reads every source key (SCAN on
        // the source, EXISTS on the target) instead of stopping at DBSIZE 0. Then verification
        // would report those keys, so it is skipped.
        let crowded = i >= 20;
        let mut c = dst.conn();
        redis::cmd("FLUSHALL")
            .query::<()>(&mut c)
            .expect("FLUSHALL");
        if crowded {
            data::seed_bulk(&mut c, 0, 3_000, "other:");
        }
        drop(c);
        let ferry = if crowded {
            migrate.clone().arg("--no-verify")
        } else {
            migrate.clone()
        };
        active.store(true, Ordering::SeqCst);
        let run = ferry.run();
        active.store(false, Ordering::SeqCst);
        if run.code != 0 {
            let ms = every.load(Ordering::SeqCst);
            failures.push(format!(
                "run {i} (kills every {ms} ms): exit {}:\n{}",
                run.code,
                run.text()
            ));
        }
    }
    done.store(true, Ordering::SeqCst);
    let killed = kill.join().expect("the killer thread");
    eprintln!("connections killed: {killed}");
    assert!(killed > 0, "the killer never killed a connection");
    assert!(
        failures.is_empty(),
        "{} of 25 runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let a = data::snapshot(&mut src.conn(), 0);
    let mut b = data::snapshot(&mut dst.conn(), 0);
    b.retain(|k, _| !k.starts_with(b"other:"));
    data::assert_same(&a, &b, 2_000);
}
