//! Checkpoint and resume: crashes, signals, restarts and refusals, against real servers.

mod support;

use std::time::{Duration, Instant};

use rand::Rng;
use support::data;
use support::ferry::{kill_runs, Ferry, KillAt, Workdir};
use support::servers::{Server, ServerOpts, Version, TEST_PASSWORD};

/// A deliberately slow migration (`batch` keys a SCAN page and a batch, `writers` writers) with
/// a checkpoint, so it can be interrupted.
fn slow<'w>(
    work: &'w Workdir,
    src: &Server,
    dst: &Server,
    batch: &str,
    writers: &str,
) -> Ferry<'w> {
    work.migrate(src, dst)
        .args(&["--scan-count", batch, "--batch-keys", batch])
        .args(&["--writers", writers])
        .checkpoint("job.checkpoint.json")
        .progress("log")
        .args(&["--log-every", "1", "--no-verify"])
}

fn assert_target_equals_source(src: &Server, dst: &Server) {
    data::assert_same_all(&mut src.conn(), &mut dst.conn(), 1_000);
}

#[test]
fn sigkill_at_random_moments_then_rerun_ends_exact() {
    let src = Server::plain(Version::V6_2);
    let total = data::seed_bulk(&mut src.conn(), 0, 50_000, "bulk:");
    data::seed_bulk(&mut src.conn(), 3, 5_000, "other:");
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    // Smaller batches, one writer and one thread: a whole run must take long enough
    // to be killed several times after progress was saved. A capped rate (and one thread): how
    // long a run takes no longer depends on how fast the machine is (a quiet machine finished
    // whole runs between two polls).
    let ferry =
        slow(&work, &src, &dst, "50", "1").args(&["--threads", "1", "--max-keys-per-sec", "40000"]);
    let mut rng = rand::rng();
    let all = (total + 5_000) as i64;
    // Kill points: two at random times early in a run (start-up, conflict check, first
    // batches), then six at random amounts of progress, in increasing order.
    // Points are counted in DB 0 (50k keys) and stop at 80% of it, so a run is never so close
    // to its end that it finishes between two polls.
    let db0 = total as i64;
    let mut points: Vec<i64> = (0..6)
        .map(|_| rng.random_range(db0 / 20..db0 * 8 / 10))
        .collect();
    points.sort_unstable();
    let checkpoint = work.file("job.checkpoint.json");
    let at: Vec<KillAt> = [KillAt::Early(80), KillAt::Early(80)]
        .into_iter()
        .chain(points.into_iter().map(KillAt::Point))
        .collect();
    // One connection for all polls: a TLS handshake per poll would let a run overshoot its
    // kill point.
    let mut poll = dst.conn();
    // Past the kill point, and this run has saved progress at least once (every 0.1 s):
    // otherwise a kill only loses this run's own work, which is allowed but proves nothing
    // about resuming.
    let saved_since = |t: std::time::SystemTime| {
        let fresh = std::fs::metadata(&checkpoint)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > t);
        fresh
            && std::fs::read_to_string(&checkpoint)
                .is_ok_and(|text| text.contains("/db0\"") || text.contains("/db3\""))
    };
    let reached = |p: i64, started| {
        let db0_size: i64 = redis::cmd("DBSIZE").query(&mut poll).expect("DBSIZE");
        db0_size >= p && saved_since(started)
    };
    let kills = kill_runs(&ferry, &at, Duration::from_millis(1), reached, || {
        dst.total_keys() < all
    });
    assert!(kills >= 5, "only {kills} runs were killed mid-copy");
    let before = std::fs::read_to_string(&checkpoint).unwrap_or_default();
    let run = ferry.run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.report.as_ref().unwrap()["resumed"], true);
    let this_run = run.num("keys.written_this_run");
    assert!(
        this_run < (total + 5_000) as i64,
        "the final run re-copied everything ({this_run} keys)\ncheckpoint before it: {before}\n{}",
        run.text()
    );
    run.assert_says("resuming from checkpoint");
    assert_target_equals_source(&src, &dst);
}

#[test]
fn sigint_stops_cleanly_and_rerun_resumes() {
    let src = Server::plain(Version::V5_0);
    data::seed_bulk(&mut src.conn(), 0, 30_000, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let ferry = slow(&work, &src, &dst, "200", "2");
    let mut running = ferry.spawn();
    running.until_keys(&dst, 1_000, Duration::from_secs(30));
    running.signal("INT");
    let run = running.wait();
    assert_eq!(run.code, 2, "{}", run.text());
    run.assert_says("rerun the same command");
    assert_eq!(run.report.as_ref().unwrap()["status"], "interrupted");
    let written_first = run.num("keys.written");
    assert!(
        written_first > 0 && written_first < 30_000,
        "interrupted run wrote {written_first}"
    );

    let run = ferry.run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.report.as_ref().unwrap()["resumed"], true);
    assert!(run.num("keys.written_this_run") < 30_000);
    assert_target_equals_source(&src, &dst);
}

/// The source drops ferry's connections again and again while it reads (as a failover or a
/// network blip does): each time the reader reconnects, reads its page again from the same
/// cursor without handing on a key twice, and the run ends exact in one process.
#[test]
fn source_connections_killed_mid_run_are_survived_in_process() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 40_000, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let mut running = slow(&work, &src, &dst, "200", "2").spawn();
    let mut admin = src.conn();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.exited() {
        assert!(Instant::now() < deadline, "ferry did not finish");
        if dst.dbsize() > 1_000 && kills < 5 {
            let killed: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                .query(&mut admin)
                .expect("CLIENT KILL");
            if killed > 0 {
                kills += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let run = running.wait();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        kills >= 2,
        "the source connection was killed only {kills} times"
    );
    assert!(
        run.text().contains("retrying"),
        "no retry was logged:\n{}",
        run.text()
    );
    // No key of a page read again was handed on twice.
    assert_eq!(run.num("keys.scanned"), 40_000, "{}", run.text());
    assert_eq!(run.num("keys.written"), 40_000, "{}", run.text());
    assert_target_equals_source(&src, &dst);
}

#[test]
fn target_restart_mid_run_is_survived_in_process() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 40_000, "bulk:");
    // Persistence on, so what was acknowledged before the restart survives it.
    let mut dst = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(TEST_PASSWORD.into()),
            extra_args: vec![
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
            ],
            ..ServerOpts::default()
        },
    );
    let work = Workdir::new();
    let mut running = slow(&work, &src, &dst, "200", "2").spawn();
    running.until_keys(&dst, 2_000, Duration::from_secs(30));
    dst.restart();
    let run = running.wait();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.text().contains("retrying"),
        "no retry was logged:\n{}",
        run.text()
    );
    assert_eq!(run.report.as_ref().unwrap()["resumed"], false);
    assert_target_equals_source(&src, &dst);
}

#[test]
fn checkpoint_of_another_job_is_refused_and_corruption_reported() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 2_000, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let cp = work.file("shared.checkpoint.json");
    let cp = cp.to_str().unwrap();
    let base = work.migrate(&src, &dst).checkpoint(cp).arg("--no-verify");
    let run = base.run();
    assert_eq!(run.code, 0, "{}", run.text());
    let saved = std::fs::read_to_string(cp).expect("checkpoint written");
    assert!(saved.contains("\"completed\": true"), "{saved}");
    assert!(!saved.contains(TEST_PASSWORD));

    // Same file, different job (another DB map): refused, naming both.
    let run = base.clone().args(&["--db-map", "0:4"]).run();
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.text().contains("belongs to a different job") && run.text().contains("--fresh"),
        "{}",
        run.text()
    );

    // The same job again: already complete, nothing copied.
    let run = base.run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.written_this_run"), 0);

    // A damaged file is reported, not ignored.
    std::fs::write(cp, saved.replacen("\"written\"", "\"writt3n\"", 1)).unwrap();
    let run = base.run();
    assert_eq!(run.code, 2, "{}", run.text());
    run.assert_says("is corrupt");
    let truncated = &saved[..saved.len() / 2];
    std::fs::write(cp, truncated).unwrap();
    let run = base.run();
    assert_eq!(run.code, 2, "{}", run.text());
    run.assert_says("is corrupt");

    // --fresh ignores it and starts over (the keys are ours already: replace them).
    let run = base.args(&["--fresh", "--on-conflict", "replace"]).run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.report.as_ref().unwrap()["resumed"], false);
    assert_eq!(run.num("keys.written_this_run"), 2_000);
    assert_target_equals_source(&src, &dst);
}
