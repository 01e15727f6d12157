//! The checks of `ferry check` as the gate of `migrate` and `verify`: a failing row stops the
//! run before anything is written (exit 2, the row's words: check, detail, what to do), a
//! warning is printed and the run goes on.

mod support;

use support::ferry::{Run, Workdir};
use support::servers::{Server, Version, TEST_PASSWORD};

/// Exit 2, a report with status error, every needle in the output and in the report's error,
/// and no password anywhere.
fn assert_stopped(run: &Run, needles: &[&str], secrets: &[&str]) {
    assert_eq!(run.code, 2, "expected exit 2:\n{}", run.text());
    let report = run.report.as_ref().expect("no report");
    assert_eq!(report["status"], "error", "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "the output lacks {n:?}:\n{}",
            run.text()
        );
        assert!(error.contains(n), "the report's error lacks {n:?}: {error}");
    }
    for secret in secrets.iter().chain([&TEST_PASSWORD]) {
        assert!(
            !run.text().contains(secret),
            "{secret} leaked:\n{}",
            run.text()
        );
        assert!(
            !report.to_string().contains(secret),
            "{secret} leaked: {report}"
        );
    }
}

#[test]
fn migrate_into_a_small_evicting_target_stops_before_writing() {
    let src = Server::plain(Version::V6_2);
    let value = "x".repeat(100_000);
    let mut p = redis::pipe();
    for i in 0..250 {
        p.cmd("SET").arg(format!("big:{i}")).arg(&value).ignore();
    }
    let _: () = p.query(&mut src.conn()).unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let mut d = dst.conn();
    for (k, v) in [("maxmemory", "8mb"), ("maxmemory-policy", "allkeys-lru")] {
        let _: () = redis::cmd("CONFIG")
            .arg(&["SET", k, v])
            .query(&mut d)
            .unwrap();
    }
    let work = Workdir::new();
    let run = work.between("migrate", &src, &dst).run();
    assert_stopped(
        &run,
        &[
            "target: maxmemory:",
            "the data does not fit",
            "target: maxmemory-policy:",
            "evicts keys",
            "what to do: set it to noeviction",
            "nothing was written",
        ],
        &[],
    );
    assert_eq!(dst.total_keys(), 0, "something was written");
    assert_eq!(run.num("keys.written"), 0);
}

#[test]
fn verify_with_a_source_user_without_dump_stops_naming_dump() {
    let src = Server::plain(Version::V6_2);
    support::data::seed_bulk(&mut src.conn(), 0, 200, "k:");
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-secret-pw",
            "~*",
            "+@all",
            "-dump",
        ])
        .query(&mut src.conn())
        .unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let run = work
        .ferry("verify")
        .source(&format!(
            "redis://reader:reader-secret-pw@127.0.0.1:{}",
            src.port
        ))
        .to(&dst)
        .run();
    assert_stopped(
        &run,
        &[
            "source: ACL rights:",
            "DUMP",
            "ACL SETUSER reader +dump",
            "nothing was verified",
        ],
        &["reader-secret-pw"],
    );
}

/// `verify --rdb` runs the same checks on the target before reading anything: a target user
/// that may not DUMP stops it in check's words, not at the first compared key.
#[test]
fn verify_of_a_file_with_a_target_user_without_dump_stops_naming_dump() {
    let src = Server::plain(Version::V6_2);
    support::data::seed_bulk(&mut src.conn(), 0, 200, "k:");
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let work = Workdir::new();
    let file = work.path().join("dump.rdb");
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    let dst = Server::tls_target(Version::Valkey8);
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "checker",
            "on",
            ">checker-secret-pw",
            "~*",
            "+@all",
            "-dump",
        ])
        .query(&mut dst.conn())
        .unwrap();
    let checker = format!("rediss://checker:checker-secret-pw@127.0.0.1:{}", dst.port);
    let run = work
        .ferry("verify")
        .args(&["--rdb", &file.to_string_lossy()])
        .target(&checker)
        .target_ca()
        .run();
    assert_stopped(
        &run,
        &[
            "target: ACL rights:",
            "DUMP",
            "ACL SETUSER checker +dump",
            "nothing was verified",
        ],
        &["checker-secret-pw"],
    );
}

#[test]
fn a_warning_is_printed_and_migrate_goes_on() {
    let src = Server::plain(Version::V6_2);
    support::data::seed_bulk(&mut src.conn(), 0, 300, "k:");
    let dst = Server::tls_target(Version::Valkey8);
    // An evicting policy without maxmemory evicts nothing yet: a warning, not a failure.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .query(&mut dst.conn())
        .unwrap();
    let work = Workdir::new();
    let run = work.between("migrate", &src, &dst).run();
    assert_eq!(run.code, 0, "{}", run.text());
    let warning = "ferry: warning: target: maxmemory-policy: allkeys-lru: no maxmemory now";
    assert!(run.stderr.contains(warning), "{}", run.text());
    assert!(
        run.stderr.contains("what to do: set it to noeviction"),
        "{}",
        run.text()
    );
    let notes = run.report.as_ref().unwrap()["notes"].to_string();
    assert!(notes.contains("target: maxmemory-policy"), "{notes}");
    assert_eq!(run.num("keys.written"), 300);
    assert_eq!(dst.total_keys(), 300);
}
