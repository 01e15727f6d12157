//! Load limits on the source and metrics, against real servers (issue #15, items 2 and 3).
//!
//! - `--max-keys-per-sec 25000` on 100,000 keys takes about 4 s, and `/metrics` scraped
//!   mid-run shows `ferry_keys_written_total` rising and the throttle state;
//! - `--source-latency-ms`: a source made slow by another client's `DEBUG SLEEP`s slows ferry
//!   down (`--progress json` lines say so), and ferry speeds up again once it recovers;
//! - the limits refuse `--rdb` (no live source to protect) with a clear error.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::data;
use support::ferry::Workdir;
use support::servers::{free_port, Server, Version, TEST_PASSWORD};

/// GET `path` from the metrics server; `None` while it does not answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The value of the sample line starting with `name` (labels included) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn assert_target_equals_source(src: &Server, dst: &Server) {
    data::assert_same_all(&mut src.conn(), &mut dst.conn(), 1_000);
}

#[test]
fn keys_per_sec_limit_holds_and_metrics_show_it() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    data::seed_bulk(&mut src.conn(), 0, 100_000, "bulk:");
    let work = Workdir::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let ferry = work
        .migrate(&src, &dst)
        .args(&["--no-verify", "--max-keys-per-sec", "25000"])
        .args(&["--metrics-addr", &addr])
        .progress("none")
        .spawn();
    // Two scrapes a second apart while it copies.
    let mut written = Vec::new();
    let mut limited = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1_000));
        if let Some(text) = http_get(port, "/metrics") {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            if let Some(n) = sample(&text, "ferry_keys_written_total") {
                if n > 0.0 {
                    written.push(n);
                }
            }
            limited |= sample(&text, "ferry_throttle{state=\"rate-limit\"}") == Some(1.0);
            assert_eq!(
                sample(&text, "ferry_phase{phase=\"copy\"}"),
                Some(1.0),
                "{text}"
            );
        }
    }
    let health = http_get(port, "/healthz").unwrap_or_default();
    let run = ferry.wait();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(!run.text().contains(TEST_PASSWORD));
    assert_eq!(
        written.len(),
        2,
        "no two scrapes during the copy: {written:?}"
    );
    assert!(written[1] > written[0], "not rising: {written:?}");
    assert!(limited, "the throttle never showed rate-limit");
    assert!(health.ends_with("ok\n"), "{health}");
    // 100,000 keys at 25,000/s: about 4 s (a bound, not a benchmark: the lower end is the
    // limit itself, the upper one only catches a throttle that never lets go).
    assert!((3.5..30.0).contains(&secs), "took {secs:.1} s");
    assert_eq!(run.num("keys.written"), 100_000);
    assert_target_equals_source(&src, &dst);
}

/// `--max-bytes-per-sec` holds for a big key too: its chunks are paid for as they are read
/// (before, a big key's HSCANs read past the budget at full speed).
#[test]
fn bytes_per_sec_limit_holds_for_a_big_key() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    {
        let mut c = src.conn();
        data::seed_bulk(&mut c, 0, 100, "small:");
        support::bigkey_data::big_hash(&mut c, "big:hash", 60_000, false);
    }
    let work = Workdir::new();
    let started = Instant::now();
    let run = work
        .migrate(&src, &dst)
        .args(&["--no-verify", "--big-key-bytes", "1048576"])
        .args(&["--max-bytes-per-sec", "2000000"])
        .run();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.big_keys"), 1, "{}", run.text());
    // ~6.7 MB of fields at 2 MB/s: over 3 s (the first chunk is free, the budget starts at
    // zero); the upper bound only catches a throttle that never lets go.
    assert!((2.0..60.0).contains(&secs), "took {secs:.1} s");
    assert_target_equals_source(&src, &dst);
}

#[test]
fn slow_source_slows_ferry_down_until_it_recovers() {
    let src = Server::plain(Version::V6_2);
    let dst = Server::tls_target(Version::Valkey8);
    data::seed_bulk(&mut src.conn(), 0, 150_000, "bulk:");
    let work = Workdir::new();
    let mut ferry = work
        .migrate(&src, &dst)
        .args(&["--no-verify", "--source-latency-ms", "30"])
        .args(&["--max-keys-per-sec", "30000"])
        .progress("json")
        .args(&["--log-every", "1"])
        .spawn();
    let stderr = ferry.child.stderr.take().expect("stderr");
    let lines = thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    // Once the copy is under way, another client makes the source answer slowly for 2 s.
    let started = Instant::now();
    let mut s = src.conn();
    while started.elapsed() < Duration::from_secs(30) {
        let dumps: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut s)
            .unwrap_or_default();
        if dumps.contains("cmdstat_dump:") {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    {
        let mut c = src.conn();
        let until = Instant::now() + Duration::from_millis(2_000);
        while Instant::now() < until {
            let () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.1")
                .query(&mut c)
                .expect("DEBUG SLEEP");
            thread::sleep(Duration::from_millis(5));
        }
    }
    let mut run = ferry.wait();
    let lines = lines.join().expect("stderr reader");
    run.stderr = lines.join("\n");
    assert_eq!(run.code, 0, "{}", run.text());
    let states: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["throttle"].as_str().map(str::to_string))
        .collect();
    let slowed = states.iter().position(|s| s == "source-latency");
    assert!(
        slowed.is_some(),
        "never slowed down: {states:?}\n{}",
        run.text()
    );
    let recovered = slowed.and_then(|i| states[i..].iter().position(|s| s != "source-latency"));
    assert!(recovered.is_some(), "never recovered: {states:?}");
    assert_eq!(run.num("keys.written"), 150_000);
    assert_target_equals_source(&src, &dst);
}

#[test]
fn limits_refuse_an_rdb_file() {
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let file = work.file("dump.rdb");
    std::fs::write(&file, b"REDIS0009\xff\0\0\0\0\0\0\0\0").expect("write rdb");
    let run = work
        .ferry("migrate")
        .rdb(&file)
        .to(&dst)
        .args(&["--max-keys-per-sec", "10"])
        .run();
    assert_eq!(run.code, 2, "{}", run.text());
    run.assert_says("live source");
    assert_eq!(dst.dbsize(), 0);
}
