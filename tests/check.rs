//! `ferry check`: every check against real servers, its exit code (0 ready, 1 warnings, 2 would
//! fail), the row that names the problem, no password anywhere, and nothing written on either
//! side.

mod support;

use std::process::Command;
use support::ferry::{Run, Workdir};

use support::servers::{tls_dir, Cluster, Server, ServerOpts, Version};

/// Every key name of DB `db`, sorted.
fn keys(s: &Server, db: u32) -> Vec<Vec<u8>> {
    let mut c = s.conn();
    let _: () = redis::cmd("SELECT").arg(db).query(&mut c).expect("SELECT");
    let mut k: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    k.sort();
    k
}

/// A few keys of each kind in `db`, some with TTLs.
fn seed_small(s: &Server, db: u32) {
    let mut c = s.conn();
    support::data::seed_bulk(&mut c, db, 200, "small:");
}

/// The check rows whose status is `status`, as "name: detail | fix" lines.
fn rows(run: &Run, status: &str) -> Vec<String> {
    let report = run.report.as_ref().expect("no --report written");
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| {
            format!(
                "{}: {} | {}",
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or(""),
                c["fix"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn assert_exit(run: &Run, code: i32) {
    assert_eq!(
        run.code,
        code,
        "expected exit {code}, got {}:\n{}",
        run.code,
        run.text()
    );
    let report = run.report.as_ref().expect("no --report written");
    let expected = ["ok", "warn", "fail"][code as usize];
    assert_eq!(report["status"], expected, "{report}");
}

/// Asserts that the row `name` exists and failed.
fn assert_row_fails(run: &Run, name: &str) {
    let fails = rows(run, "fail");
    assert!(
        fails.iter().any(|r| r.starts_with(&format!("{name}: "))),
        "no failed {name:?} row:\n{}",
        run.stdout
    );
}

/// The failed rows, asserted to exist and to name every needle (case-insensitive).
fn assert_fails_naming(run: &Run, needles: &[&str]) {
    assert_exit(run, 2);
    let fails = rows(run, "fail").join("\n");
    for n in needles {
        assert!(
            fails.to_lowercase().contains(&n.to_lowercase()),
            "no fail row names {n:?}:\n{fails}\n\n{}",
            run.text()
        );
        assert!(
            run.stdout.to_lowercase().contains(&n.to_lowercase()),
            "the table does not name {n:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn healthy_pair_is_ready_and_nothing_is_written() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 0);
    seed_small(&src, 2);
    let dst = Server::tls_target(Version::Valkey8);
    let mut d = dst.conn();
    let _: () = redis::cmd("SET")
        .arg("unrelated")
        .arg("1")
        .query(&mut d)
        .unwrap();
    let (src_before, dst_before) = (src.keys_per_db(), dst.keys_per_db());
    let src_keys = keys(&src, 0);
    let work = Workdir::new();
    let run = work.between("check", &src, &dst).run();
    assert_exit(&run, 0);
    let report = run.report.as_ref().unwrap();
    let checks = report["checks"].as_array().unwrap();
    for name in [
        "source: connection",
        "target: connection",
        "source: ACL rights",
        "target: ACL rights",
        "DB layout",
        "target: existing keys",
        "target: maxmemory",
        "target: maxmemory-policy",
        "target: proto-max-bulk-len",
        "target: TLS certificate",
        "source: clock",
        "target: clock",
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name:?} row: {report}"));
        assert_eq!(c["status"], "ok", "{c}");
        assert!(
            c["detail"].as_str().is_some_and(|d| !d.is_empty()) && c["fix"].is_string(),
            "{c}"
        );
    }
    assert!(run.stdout.contains("ready"), "{}", run.stdout);
    assert!(
        !run.text().contains(support::servers::TEST_PASSWORD),
        "{}",
        run.text()
    );
    assert!(!report.to_string().contains(support::servers::TEST_PASSWORD));
    assert_eq!(
        (src.keys_per_db(), dst.keys_per_db()),
        (src_before, dst_before),
        "check wrote something"
    );
    assert_eq!(keys(&src, 0), src_keys);
    assert_eq!(keys(&dst, 0), vec![b"unrelated".to_vec()]);

    // From an RDB file: examined whole; whether the target's key is one of the file's is left
    // to migrate (a warning).
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file = work.file("dump.rdb");
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    let file = file.to_string_lossy().into_owned();
    let run = work.ferry("check").args(&["--rdb", &file]).to(&dst).run();
    assert_exit(&run, 1);
    let warns = rows(&run, "warn");
    assert!(
        warns.len() == 1 && warns[0].starts_with("target: existing keys: DB 0 holds 1 keys"),
        "{warns:?}"
    );
    assert!(run.stdout.contains("source: RDB file"), "{}", run.stdout);

    // A source key already on the target: fail with --on-conflict fail, fine with replace.
    let _: () = redis::cmd("SET")
        .arg(&src_keys[0])
        .arg("old")
        .query(&mut d)
        .unwrap();
    let check = work.between("check", &src, &dst);
    let run = check.run();
    assert_fails_naming(&run, &["target: existing keys", "--on-conflict replace"]);
    assert_exit(&check.args(&["--on-conflict", "replace"]).run(), 0);
    assert_eq!(dst.dbsize(), 2, "check wrote to the target");
}

#[test]
fn small_evicting_target_fails_naming_maxmemory_and_eviction() {
    let src = Server::plain(Version::V6_2);
    let mut s = src.conn();
    let value = "x".repeat(100_000);
    let mut p = redis::pipe();
    for i in 0..250 {
        p.cmd("SET").arg(format!("big:{i}")).arg(&value).ignore();
    }
    let _: () = p.query(&mut s).unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let mut d = dst.conn();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "8mb"])
        .query(&mut d)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .query(&mut d)
        .unwrap();
    let work = Workdir::new();
    let run = work.between("check", &src, &dst).run();
    assert_row_fails(&run, "target: maxmemory");
    assert_fails_naming(&run, &["target: maxmemory-policy", "evict", "noeviction"]);
    assert_eq!(dst.total_keys(), 0, "check wrote to the target");
}

/// The big-key reader's commands are checked too: a source user that may DUMP but not HSCAN
/// would stop at the first big hash; with `--big-key-bytes 0` (no big-key reads) it is ready.
#[test]
fn source_user_without_hscan_fails_unless_big_keys_are_off() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 0);
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "+@all",
            "-hscan",
        ])
        .query(&mut src.conn())
        .unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let source = format!("redis://reader:reader-pw@127.0.0.1:{}", src.port);
    let check = |extra: &[&str]| {
        work.ferry("check")
            .source(&source)
            .to(&dst)
            .args(extra)
            .run()
    };
    assert_fails_naming(&check(&[]), &["source: ACL rights", "HSCAN", "+hscan"]);
    let run = check(&["--big-key-bytes", "0"]);
    assert!(
        !rows(&run, "fail")
            .iter()
            .any(|r| r.starts_with("source: ACL rights")),
        "{}",
        run.text()
    );
}

#[test]
fn source_user_without_dump_fails_naming_dump_and_hides_the_password() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 0);
    let mut s = src.conn();
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
        .query(&mut s)
        .unwrap();
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let source = format!("redis://reader:reader-secret-pw@127.0.0.1:{}", src.port);
    let run = work.ferry("check").source(&source).to(&dst).run();
    assert_fails_naming(&run, &["source: ACL rights", "DUMP", "+dump"]);
    let report = run.report.as_ref().unwrap().to_string();
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("report", &report),
    ] {
        assert!(
            !text.contains("reader-secret-pw"),
            "the password leaked into {what}:\n{text}"
        );
    }
    // A wrong password is a fail row with the server's words, not the password.
    let source = format!("redis://reader:wrong-secret-pw@127.0.0.1:{}", src.port);
    let run = work.ferry("check").source(&source).to(&dst).run();
    assert_fails_naming(&run, &["source: connection", "authentication"]);
    assert!(
        !run.text().contains("wrong-secret-pw")
            && !run.report.unwrap().to_string().contains("wrong-secret-pw")
    );
}

#[test]
fn cluster_target_db3_needs_db_map_and_unassigned_slots_fail() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 3);
    let cluster = Cluster::start(Version::Valkey8, false);
    let work = Workdir::new();
    let base = work.between("check", &src, &cluster);
    let run = base.run();
    assert_fails_naming(&run, &["DB layout", "--db-map 3:0"]);
    let mapped = base.args(&["--db-map", "3:0"]);
    let run = mapped.run();
    assert_exit(&run, 0);

    // The cluster as a source, into a standalone target.
    let dst = Server::plain(Version::V7_0);
    let from_cluster = work
        .ferry("check")
        .from(&cluster)
        .target(&dst.url_without_password());
    let run = from_cluster.run();
    assert_exit(&run, 0);

    // Unassign slots 0-99 in every node's view (DELSLOTS is not gossiped).
    for node in &cluster.nodes {
        let _: () = redis::cmd("CLUSTER")
            .arg("DELSLOTSRANGE")
            .arg(0)
            .arg(99)
            .query(&mut node.conn())
            .unwrap();
    }
    let run = mapped.run();
    assert_fails_naming(&run, &["target: cluster", "0-99"]);
    // A source cluster with unassigned slots: its keys there cannot be read (a warning).
    let run = from_cluster.run();
    assert_exit(&run, 1);
    assert!(
        rows(&run, "warn")
            .iter()
            .any(|w| w.starts_with("source: cluster: no master serves slots 0-99")),
        "{}",
        run.stdout
    );
    assert_eq!(keys(&src, 3).len(), 200);
    for node in &cluster.nodes {
        assert_eq!(node.dbsize(), 0, "check wrote to the target");
    }
}

/// A certificate for 127.0.0.1 signed by the test CA, valid for `days` days, in `dir`:
/// (certificate, key).
fn short_lived_cert(dir: &std::path::Path, days: u32) -> (String, String) {
    let (crt, key, csr, ext) = (
        dir.join("short.crt"),
        dir.join("short.key"),
        dir.join("short.csr"),
        dir.join("short.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |f: &std::path::Path| f.to_str().unwrap().to_string();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
        "-subj",
        "/CN=localhost",
    ]);
    let (ca_crt, ca_key) = (tls_dir().join("ca.crt"), tls_dir().join("ca.key"));
    // -set_serial: no serial file written next to the shared test CA.
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca_crt),
        "-CAkey",
        &p(&ca_key),
        "-set_serial",
        "4242",
        "-days",
        &days.to_string(),
        "-sha256",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&crt),
    ]);
    (p(&crt), p(&key))
}

#[test]
fn certificate_expiring_soon_is_a_warning_with_its_date() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 0);
    let work = Workdir::new();
    let (crt, key) = short_lived_cert(work.path(), 10);
    let mut opts = ServerOpts::tls();
    opts.extra_args = vec!["--tls-cert-file".into(), crt, "--tls-key-file".into(), key];
    let dst = Server::start(Version::Valkey8, opts);
    let run = work.between("check", &src, &dst).run();
    assert_exit(&run, 1);
    let warns = rows(&run, "warn");
    assert_eq!(warns.len(), 1, "{warns:?}");
    let w = &warns[0];
    assert!(
        w.starts_with("target: TLS certificate: expires on 20"),
        "{w}"
    );
    assert!(
        w.contains("(in 9 days)") || w.contains("(in 10 days)"),
        "{w}"
    );
    assert!(run.stdout.contains("renew"), "{}", run.stdout);
}

#[test]
fn target_acl_rights_by_dryrun_or_reported_unchecked() {
    let src = Server::plain(Version::V6_2);
    seed_small(&src, 0);
    let dst = Server::tls_target(Version::Valkey8);
    let mut d = dst.conn();
    for rules in [
        [
            "SETUSER",
            "norestore",
            "on",
            ">norestore-pw",
            "~*",
            "+@all",
            "-restore",
        ],
        ["SETUSER", "noacl", "on", ">noacl-pw", "~*", "+@all", "-acl"],
    ] {
        let _: () = redis::cmd("ACL").arg(&rules).query(&mut d).unwrap();
    }
    let work = Workdir::new();
    let target = |user: &str| format!("rediss://{user}:{user}-pw@127.0.0.1:{}", dst.port);
    let check = |user: &str| {
        work.ferry("check")
            .from(&src)
            .target(&target(user))
            .target_ca()
            .run()
    };
    // 7.0+ with the right to run ACL: DRYRUN finds RESTORE denied.
    let run = check("norestore");
    assert_fails_naming(&run, &["target: ACL rights", "RESTORE", "+restore"]);
    assert!(!run.text().contains("norestore-pw"));
    // Without it: the read-only commands are tried, RESTORE and the big-key writes are
    // reported unchecked.
    let run = check("noacl");
    assert_exit(&run, 1);
    let warns = rows(&run, "warn");
    assert!(
        warns.len() == 1
            && warns[0]
                .starts_with("target: ACL rights (RESTORE and the big-key writes): not checked")
            && warns[0].contains("HSET")
            && warns[0].contains("RENAME"),
        "{warns:?}"
    );
    // A source older than 7.0 is checked by running its read-only commands: all allowed.
    assert!(
        run.stdout
            .contains("checked by running the read-only commands"),
        "{}",
        run.stdout
    );
}

#[test]
fn follow_needs_keyspace_notifications_or_says_why_not() {
    let src = Server::plain(Version::V7_0);
    seed_small(&src, 0);
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let check = |source: &str, extra: &[&str]| {
        let check = work.ferry("check").source(source).to(&dst);
        check.arg("--follow").args(extra).run()
    };
    let mut s = src.conn();
    let acl = |c: &mut redis::Connection, args: &[&str]| {
        let _: () = redis::cmd("ACL").arg(args).query(c).unwrap();
    };
    // Off (the default), CONFIG allowed: --follow would fall back to reconciliation passes.
    let run = check(&src.url(), &[]);
    assert_exit(&run, 1);
    let warns = rows(&run, "warn").join("\n");
    assert!(
        warns.starts_with("source: keyspace notifications: off or incomplete")
            && warns.contains("reconciliation passes alone")
            && warns.contains("CONFIG SET notify-keyspace-events KEA"),
        "{warns}"
    );
    // --enable-notifications: fine when the user may CONFIG SET, a failure when it may not.
    assert_exit(&check(&src.url(), &["--enable-notifications"]), 0);
    acl(
        &mut s,
        &[
            "SETUSER",
            "app",
            "on",
            ">app-secret-pw",
            "~*",
            "&*",
            "+@all",
            "-config|set",
        ],
    );
    let app = format!("redis://app:app-secret-pw@127.0.0.1:{}", src.port);
    let run = check(&app, &["--enable-notifications"]);
    assert_fails_naming(&run, &["source: keyspace notifications", "+config|set"]);
    assert!(!run.text().contains("app-secret-pw"));
    // CONFIG refused altogether (as on managed services): unknown, a warning saying what to do.
    acl(
        &mut s,
        &[
            "SETUSER",
            "managed",
            "on",
            ">managed-secret-pw",
            "~*",
            "&*",
            "+@all",
            "-config",
        ],
    );
    let managed = format!("redis://managed:managed-secret-pw@127.0.0.1:{}", src.port);
    let run = check(&managed, &[]);
    assert_exit(&run, 1);
    let warns = rows(&run, "warn").join("\n");
    assert!(
        warns.contains("source: keyspace notifications: unknown: CONFIG GET refused")
            && warns.contains("parameter group"),
        "{warns}"
    );
    // On: --follow follows by events.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "KEA"])
        .query(&mut s)
        .unwrap();
    let run = check(&src.url(), &[]);
    assert_exit(&run, 0);
    let oks = rows(&run, "ok").join("\n");
    assert!(oks.contains("follows by keyspace events"), "{oks}");
    assert_eq!(dst.total_keys(), 0, "check wrote to the target");
}
