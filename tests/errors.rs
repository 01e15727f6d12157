//! Bad input and failing servers: each gets a clear error naming what is wrong and what to do,
//! exit code 2, no password in any output, and nothing half-written where ferry refused to start.

mod support;

use support::data::{self, Caps};
use support::ferry::{Run, Workdir};
use support::servers::{
    client_cert, client_key, other_ca_cert, CertKind, Server, ServerOpts, Version,
};

const PASSWORD: &str = "ferry-test-pass";

fn small_source(version: Version) -> Server {
    let src = Server::plain(version);
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    src
}

fn target_dbsize(dst: &Server) -> i64 {
    let mut c = dst.conn();
    let mut total = 0;
    for db in 0..16 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).expect("SELECT");
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
        total += n;
    }
    total
}

fn assert_failed(run: &Run, needles: &[&str]) {
    assert_eq!(
        run.code,
        2,
        "expected exit 2, got {}:\n{}",
        run.code,
        run.text()
    );
    let text = run.text();
    for n in needles {
        assert!(text.contains(n), "message lacks {n:?}:\n{text}");
    }
    assert!(
        !text.contains(PASSWORD),
        "the password leaked into the output:\n{text}"
    );
    if let Some(report) = &run.report {
        let r = report.to_string();
        assert!(
            !r.contains(PASSWORD),
            "the password leaked into the report: {r}"
        );
        assert_eq!(report["status"], "error", "{r}");
        assert!(
            report["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r}"
        );
    }
}

fn target_url_with(dst: &Server, password: &str) -> String {
    format!("rediss://:{password}@127.0.0.1:{}", dst.port)
}

#[test]
fn bad_urls_are_explained() {
    let work = Workdir::new();
    for (source, target, needle) in [
        (
            "http://127.0.0.1:1",
            "rediss://:ferry-test-pass@127.0.0.1:2",
            "use redis://",
        ),
        (
            "redis://127.0.0.1:1",
            "rediss://:ferry-test-pass@:2",
            "--target",
        ),
        (
            "redis://127.0.0.1:1",
            "rediss://:ferry-test-pass@127.0.0.1:99999",
            "--target",
        ),
        (
            "redis://127.0.0.1:1",
            "rediss://:ferry-test-pass@127.0.0.1:2/3",
            "--db",
        ),
        (
            "redis://127.0.0.1:1",
            "not a url ferry-test-pass",
            "not a valid URL",
        ),
    ] {
        let run = work.ferry("migrate").source(source).target(target).run();
        assert_failed(&run, &[needle]);
    }
}

#[test]
fn unreachable_source_is_named() {
    let dst = Server::tls_target(Version::V7_0);
    let port = support::servers::free_port();
    let work = Workdir::new();
    let run = work
        .ferry("migrate")
        .source(&format!("redis://127.0.0.1:{port}"))
        .to(&dst)
        .run();
    assert_failed(&run, &["cannot connect to the source", &port.to_string()]);
}

#[test]
fn wrong_or_missing_password_is_refused_before_writing() {
    let src = small_source(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let run = work
        .ferry("migrate")
        .from(&src)
        .target(&target_url_with(&dst, "not-the-password"))
        .target_ca()
        .run();
    assert_failed(
        &run,
        &["authentication to the target", "taken from the URL"],
    );
    assert!(!run.text().contains("not-the-password"), "{}", run.text());
    let run = work
        .ferry("migrate")
        .from(&src)
        .target(&format!("rediss://127.0.0.1:{}", dst.port))
        .target_ca()
        .run();
    assert_failed(&run, &["requires a password"]);
    assert_eq!(target_dbsize(&dst), 0, "something was written");
}

#[test]
fn password_from_env_or_file_never_printed() {
    let src = small_source(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let plain = format!("rediss://127.0.0.1:{}", dst.port);
    let plain_target = work.ferry("migrate").from(&src).target(&plain).target_ca();
    let run = plain_target
        .clone()
        .arg("--no-verify")
        .password_env("target", PASSWORD)
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(target_dbsize(&dst) > 0);

    let file = work.file("target.pass");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let run = plain_target
        .args(&["--target-password-file", file.to_str().unwrap()])
        .args(&["--on-conflict", "replace", "--no-verify", "--fresh"])
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    // Neither the output, nor the report, nor any checkpoint holds the password.
    assert!(!run.text().contains(PASSWORD));
    for entry in std::fs::read_dir(work.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(PASSWORD),
                "{} holds the password",
                path.display()
            );
        }
    }
}

#[test]
fn tls_failures_are_explained() {
    let src = small_source(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let other = other_ca_cert().to_string_lossy().into_owned();
    // A certificate from a CA we were not told to trust.
    let to_dst = work.ferry("migrate").from(&src).target(&dst.url());
    let run = to_dst.clone().args(&["--target-cacert", &other]).run();
    assert_failed(&run, &["TLS handshake with the target", "--target-cacert"]);
    // Plain TCP to a TLS port, and TLS to a plain port.
    let run = work
        .ferry("migrate")
        .from(&src)
        .target(&dst.url().replace("rediss://", "redis://"))
        .run();
    assert_failed(&run, &["rediss://"]);
    let run = work
        .ferry("migrate")
        .source(&src.url().replace("redis://", "rediss://"))
        .to(&dst)
        .source_ca()
        .run();
    assert_failed(&run, &["TLS handshake with the source", "redis://"]);
    // A CA file that is not a certificate.
    let junk = work.file("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let run = to_dst
        .clone()
        .args(&["--target-cacert", junk.to_str().unwrap()])
        .run();
    assert_failed(&run, &["--target-cacert", "no PEM certificate"]);
    assert_eq!(target_dbsize(&dst), 0, "something was written");
    // --target-insecure works, and says loudly what it gives up.
    let run = to_dst.args(&["--target-insecure", "--no-verify"]).run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.text().contains("NOT verified"), "{}", run.text());
    assert!(target_dbsize(&dst) > 0);
}

#[test]
fn sni_and_mutual_tls() {
    let src = small_source(Version::V6_2);
    let sni = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(PASSWORD.into()),
            cert: CertKind::Sni,
            ..ServerOpts::default()
        },
    );
    let work = Workdir::new();
    let run = work.migrate(&src, &sni).run();
    assert_failed(&run, &["--target-sni"]);
    let run = work
        .migrate(&src, &sni)
        .args(&["--target-sni", "target.ferry.test", "--no-verify"])
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    // sni.crt names only target.ferry.test, so read it with redis-cli --sni.
    let keys: i64 = sni.cli(&["DBSIZE"]).trim().parse().expect("DBSIZE");
    assert!(keys > 0);

    let mtls = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(PASSWORD.into()),
            mtls: true,
            ..ServerOpts::default()
        },
    );
    let run = work.migrate(&src, &mtls).run();
    assert_failed(&run, &["target"]);
    assert_eq!(target_dbsize(&mtls), 0);
    let (cert, key) = (client_cert(), client_key());
    let run = work
        .migrate(&src, &mtls)
        .args(&["--target-cert", cert.to_str().unwrap()])
        .args(&["--target-key", key.to_str().unwrap(), "--no-verify"])
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(target_dbsize(&mtls) > 0);
}

#[test]
fn acl_denials_are_named() {
    let src = small_source(Version::V6_2);
    let dst = Server::tls_target(Version::V7_0);
    let mut t = dst.conn();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "writer",
            "on",
            ">writer-pass",
            "~*",
            "+@all",
            "-restore",
        ])
        .query(&mut t)
        .unwrap();
    let mut s = src.conn();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-pass",
            "~*",
            "+@all",
            "-dump",
        ])
        .query(&mut s)
        .unwrap();
    let work = Workdir::new();
    let target = format!("rediss://writer:writer-pass@127.0.0.1:{}", dst.port);
    let run = work
        .ferry("migrate")
        .from(&src)
        .target(&target)
        .target_ca()
        .run();
    // Found before the first write: ACL DRYRUN on the 7.0 target, as `ferry check` words it.
    assert_failed(
        &run,
        &[
            "target: ACL rights",
            "may not run RESTORE",
            "ACL SETUSER writer +restore",
        ],
    );
    assert!(!run.text().contains("writer-pass"));
    assert_eq!(target_dbsize(&dst), 0);
    let source = format!("redis://reader:reader-pass@127.0.0.1:{}", src.port);
    let run = work
        .ferry("migrate")
        .source(&source)
        .to(&dst)
        .arg("--fresh")
        .run();
    assert_failed(&run, &["NOPERM", "+dump"]);
    assert!(!run.text().contains("reader-pass"));
    assert_eq!(target_dbsize(&dst), 0);
}

#[test]
fn target_out_of_memory() {
    let src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 20_000, "bulk:");
    let dst = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(PASSWORD.into()),
            maxmemory: Some("3mb".into()),
            extra_args: vec!["--maxmemory-policy".into(), "noeviction".into()],
            ..ServerOpts::default()
        },
    );
    let work = Workdir::new();
    // Too small from the start: the checks before writing refuse, naming maxmemory.
    let run = work.migrate(&src, &dst).run();
    assert_failed(
        &run,
        &[
            "target: maxmemory:",
            "the data does not fit",
            "raise maxmemory",
        ],
    );
    assert_eq!(target_dbsize(&dst), 0, "something was written");

    // Room at the start, full half-way (something else filled it): the copy stops clearly.
    let mut t = dst.conn();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"])
        .query(&mut t)
        .unwrap();
    let (mut cmd, report) = work
        .migrate(&src, &dst)
        .args(&["--fresh", "--max-keys-per-sec", "4000", "--no-verify"])
        .command();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while target_dbsize(&dst) < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "ferry never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "1"])
        .query(&mut t)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let run = support::ferry::finish(out, &report);
    assert_failed(&run, &["out of memory", "rerun the same command"]);
}

#[test]
fn read_only_replica_target_is_refused() {
    let src = small_source(Version::V6_2);
    let primary = Server::tls_target(Version::V7_0);
    let replica = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(PASSWORD.into()),
            extra_args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
                "--tls-replication".into(),
                "yes".into(),
            ],
            ..ServerOpts::default()
        },
    );
    let work = Workdir::new();
    let run = work.migrate(&src, &replica).run();
    assert_failed(&run, &["read-only replica", "primary"]);
    assert_eq!(target_dbsize(&primary), 0);
}

#[test]
fn newer_payload_is_reencoded_for_older_target() {
    // Valkey 8 writes RDB 11 payloads, which Redis 7.0 (RDB 10) refuses: the writer re-encodes
    // the refused key for RDB 10 and writes it again (tests/rdb_migrate.rs covers every type).
    let src = Server::plain(Version::Valkey8);
    let mut c = src.conn();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let run = work.migrate(&src, &dst).run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.reencoded"), 1, "{}", run.text());
    let v: String = redis::cmd("GET").arg("k").query(&mut dst.conn()).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn key_too_big_for_target() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    // Random bytes: DUMP compresses repetitive strings with LZF, and this value must stay big.
    let value: Vec<u8> = (0..3 << 20).map(|_| rand::random::<u8>()).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(value)
        .query(&mut c)
        .unwrap();
    let dst = Server::start(
        Version::V7_0,
        ServerOpts {
            tls: true,
            password: Some(PASSWORD.into()),
            extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
            ..ServerOpts::default()
        },
    );
    let work = Workdir::new();
    let run = work.migrate(&src, &dst).run();
    assert_failed(&run, &["\"big\"", "proto-max-bulk-len"]);
    assert_eq!(target_dbsize(&dst), 0);
}

#[test]
fn source_vanishing_mid_run_fails_clearly() {
    let mut src = Server::plain(Version::V6_2);
    data::seed_bulk(&mut src.conn(), 0, 60_000, "bulk:");
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let (mut cmd, report) = work
        .migrate(&src, &dst)
        .args(&["--scan-count", "50", "--batch-keys", "50", "--writers", "1"])
        .args(&["--retry-for", "2", "--progress", "log", "--log-every", "1"])
        .command();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the source once the target has some keys, well before the end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while target_dbsize(&dst) < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "ferry never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    src.stop();
    let out = child.wait_with_output().unwrap();
    let run = support::ferry::finish(out, &report);
    assert_failed(&run, &["source", "gave up", "rerun the same command"]);
}

#[test]
fn conflicts_fail_replace_skip() {
    let src = Server::plain(Version::V6_2);
    let mut s = src.conn();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("from-source")
            .query(&mut s)
            .unwrap();
    }
    let dst = Server::tls_target(Version::V7_0);
    let mut t = dst.conn();
    let _: () = redis::cmd("SET")
        .arg("k7")
        .arg("from-target")
        .query(&mut t)
        .unwrap();
    let work = Workdir::new();
    let base = work.migrate(&src, &dst).arg("--no-verify");

    let run = base.run();
    assert_failed(&run, &["already holds 1", "\"k7\"", "--on-conflict"]);
    assert_eq!(
        target_dbsize(&dst),
        1,
        "nothing may be written when refusing"
    );

    let run = base.clone().args(&["--on-conflict", "skip"]).run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.conflicts"), 1);
    assert_eq!(run.num("keys.written"), 99);
    let v: String = redis::cmd("GET").arg("k7").query(&mut t).unwrap();
    assert_eq!(v, "from-target");

    let run = base.args(&["--on-conflict", "replace", "--fresh"]).run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.written"), 100);
    let v: String = redis::cmd("GET").arg("k7").query(&mut t).unwrap();
    assert_eq!(v, "from-source");
}

/// Under `--on-conflict skip`, keys ferry re-sends (after a lost connection, on a resume, or
/// here on a second run with `--fresh`) find their own copy on the target: they count as
/// written, not as conflicts. Only keys whose value or expiry differ are conflicts. Before, the
/// second run reported every key as a conflict.
#[test]
fn skip_does_not_count_ferrys_own_copies_as_conflicts() {
    let src = Server::plain(Version::V6_2);
    let mut s = src.conn();
    for i in 0..200 {
        let k = format!("k{i}");
        let _: () = redis::cmd("SET")
            .arg(&k)
            .arg("from-source")
            .query(&mut s)
            .unwrap();
        if i % 2 == 0 {
            let _: () = redis::cmd("PEXPIRE")
                .arg(&k)
                .arg(600_000)
                .query(&mut s)
                .unwrap();
        }
    }
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut s)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .query(&mut s)
        .unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let mut t = dst.conn();
    // A different value, and the same value without the source's TTL: both real conflicts.
    let _: () = redis::cmd("SET")
        .arg("k7")
        .arg("from-target")
        .query(&mut t)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k8")
        .arg("from-source")
        .query(&mut t)
        .unwrap();
    let work = Workdir::new();
    let base = work
        .migrate(&src, &dst)
        .args(&["--no-verify", "--on-conflict", "skip"]);

    let first = base.run();
    assert_eq!(first.code, 0, "{}", first.text());
    assert_eq!(first.num("keys.conflicts"), 2, "{}", first.text());
    assert_eq!(first.num("keys.written"), 200, "{}", first.text());

    let again = base.clone().arg("--fresh").run();
    assert_eq!(again.code, 0, "{}", again.text());
    assert_eq!(
        again.num("keys.conflicts"),
        2,
        "ferry's own copies are no conflicts: {}",
        again.text()
    );
    assert_eq!(again.num("keys.written"), 200, "{}", again.text());
    let v: String = redis::cmd("GET").arg("k7").query(&mut t).unwrap();
    assert_eq!(v, "from-target");
    let ttl: i64 = redis::cmd("PTTL").arg("k8").query(&mut t).unwrap();
    assert_eq!(ttl, -1, "the target's own k8 is kept");
    let ttl: i64 = redis::cmd("PTTL").arg("k10").query(&mut t).unwrap();
    assert!(ttl > 500_000, "k10 keeps its TTL: {ttl}");
}

#[test]
fn db_selection_copies_only_chosen_dbs() {
    let src = Server::plain(Version::V5_0);
    let mut s = src.conn();
    for db in [0, 1, 2] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut s).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("in-db{db}"))
            .arg("x")
            .query(&mut s)
            .unwrap();
    }
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let run = work
        .migrate(&src, &dst)
        .args(&["--db", "0,2", "--no-verify"])
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    let mut t = dst.conn();
    for (db, expected) in [(0, 1), (1, 0), (2, 1)] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut t).unwrap();
        let n: i64 = redis::cmd("DBSIZE").query(&mut t).unwrap();
        assert_eq!(n, expected, "db {db}");
    }
}
