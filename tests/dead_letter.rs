//! Per-key failures (issue 14, item 7), against real servers: a target ACL user that may not
//! write `secret:*` keys. By default ferry stops naming the key; with `--on-key-error skip` every
//! other key is copied exactly, the refused keys are listed in the dead-letter file with the
//! target's reason, and the run ends with exit 1; once the ACL is fixed, `--keys-from` the
//! dead-letter file makes the target equal to the source. No password appears anywhere.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use support::data::{self, Caps, KeyState};
use support::ferry::{Run, Workdir};
use support::servers::{ca_cert, Cluster, Server, Version, TEST_PASSWORD};
use support::slowlog;

/// The restricted ACL user's password.
const APP_PW: &str = "app-pass-7f3k";

/// A plain 6.2 source: every type (TTLs, binary keys) under `app:` and under `secret:`, plus 300
/// small `app:bulk:` keys, in DB 0.
fn source() -> Server {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "app:", &caps);
    data::seed_bulk(&mut c, 0, 300, "app:bulk:");
    data::seed_rich(&mut c, 0, "secret:", &caps);
    src
}

/// User `app` may read every key but write only `app:*` (Valkey 8 / Redis 7 key permissions).
fn restrict(conn: &mut redis::Connection) {
    let rules = [
        "SETUSER",
        "app",
        "on",
        APP_PW,
        "resetkeys",
        "%R~*",
        "%RW~app:*",
        "+@all",
    ];
    let rules: Vec<String> = rules
        .iter()
        .map(|r| {
            if *r == APP_PW {
                format!(">{r}")
            } else {
                r.to_string()
            }
        })
        .collect();
    let _: () = redis::cmd("ACL")
        .arg(&rules)
        .query(conn)
        .expect("ACL SETUSER");
}

/// The ACL fixed: `app` may write `secret:*` too.
fn allow_secret(conn: &mut redis::Connection) {
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "%RW~secret:*"])
        .query(conn)
        .expect("ACL SETUSER");
}

/// Every key of a server by (db, key).
type Snapshot = BTreeMap<(u32, Vec<u8>), KeyState>;

/// The keys of `all` outside `secret:`, and the names of those inside.
fn split(all: &Snapshot) -> (Snapshot, BTreeSet<(u32, Vec<u8>)>) {
    let secret: BTreeSet<(u32, Vec<u8>)> = all
        .keys()
        .filter(|(_, k)| k.starts_with(b"secret:"))
        .cloned()
        .collect();
    let rest = all
        .iter()
        .filter(|(k, _)| !secret.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (rest, secret)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The dead-letter file's lines, parsed.
fn letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead-letter line is JSON"))
        .collect()
}

/// No password in any output or in any file ferry left in `work`.
fn assert_no_password(work: &Workdir, runs: &[&Run]) {
    for pw in [APP_PW, TEST_PASSWORD] {
        for r in runs {
            assert!(!r.text().contains(pw), "a password leaked:\n{}", r.text());
        }
        for entry in std::fs::read_dir(work.path()).expect("read workdir") {
            let path = entry.expect("dir entry").path();
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            assert!(
                !text.contains(pw),
                "a password leaked into {}",
                path.display()
            );
        }
    }
}

fn dead_letter_path(work: &Workdir, run: &Run) -> PathBuf {
    let report = run.report.as_ref().expect("a report");
    let name = report["dead_letter"]
        .as_str()
        .unwrap_or_else(|| panic!("the report names no dead-letter file: {report}"));
    work.path().join(name)
}

/// The whole story against `target` (a URL with user `app`): `read_target` reads the target,
/// `fix` lets `app` write `secret:*`.
fn dead_letter_story(
    src: &Server,
    target: &str,
    read_target: &dyn Fn() -> Snapshot,
    fix: &dyn Fn(),
) {
    let ca = ca_cert().to_string_lossy().into_owned();
    let work = Workdir::new();
    let base = [
        "migrate",
        "--source",
        &src.url(),
        "--target",
        target,
        "--target-cacert",
        &ca,
        "--round-pause",
        "200",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let all = data::snapshot_all(&mut src.conn());
    let (rest, secret) = split(&all);
    assert!(secret.len() > 20 && rest.len() > 300);

    // 1. Default: stop at the first refused key, naming it and the reason.
    let stop = work.run(&base);
    let text = stop.text();
    assert_eq!(stop.code, 2, "expected exit 2:\n{text}");
    assert!(
        text.contains("\"secret:") && text.contains("NOPERM"),
        "{text}"
    );
    assert!(text.contains("--on-key-error skip"), "{text}");

    // 2. skip: every other key exact, the refused ones in the dead-letter file, exit 1.
    let args = with(&["--on-key-error", "skip"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let skip = work.run(&args);
    let text = skip.text();
    assert_eq!(skip.code, 1, "expected exit 1:\n{text}");
    assert_eq!(
        skip.num("keys.dead_lettered"),
        secret.len() as i64,
        "{text}"
    );
    assert!(
        text.contains("--keys-from") && text.contains("dead-letter"),
        "{text}"
    );
    let verify = &skip.report.as_ref().expect("report")["verify"];
    assert_eq!(
        verify["totals"]["differences"].as_u64(),
        Some(secret.len() as u64),
        "verification should report exactly the refused keys missing: {verify}"
    );
    let file = dead_letter_path(&work, &skip);
    let lines = letters(&file);
    let listed: BTreeSet<(u32, Vec<u8>)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["cause"], "acl_denied", "{l}");
            assert!(
                l["reason"].as_str().unwrap_or("").starts_with("NOPERM"),
                "{l}"
            );
            assert!(l["type"].as_str().is_some_and(|t| t != "unknown"), "{l}");
            assert!(l["size"].as_u64().is_some_and(|n| n > 0), "{l}");
            assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
            let db = l["db"].as_u64().expect("db") as u32;
            (db, unhex(l["key_hex"].as_str().expect("key_hex")))
        })
        .collect();
    assert_eq!(
        listed, secret,
        "the dead-letter file must list exactly the denied keys"
    );
    let target = read_target();
    data::assert_same(&rest, &target, 2_000);

    // 3. The ACL fixed: copy just the listed keys; the target equals the source.
    fix();
    let args = with(&["--keys-from", file.to_str().expect("utf-8 path")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = work.run(&args);
    let text = again.text();
    assert_eq!(again.code, 0, "expected exit 0:\n{text}");
    assert_eq!(again.num("keys.written"), secret.len() as i64, "{text}");
    // Only the listed keys were verified, all equal.
    let v = &again.report.as_ref().expect("report")["verify"];
    assert_eq!(v["mode"], "listed", "{v}");
    assert_eq!(
        v["totals"]["keys_compared"].as_u64(),
        Some(secret.len() as u64),
        "{v}"
    );
    assert_eq!(v["totals"]["differences"].as_u64(), Some(0), "{v}");
    let target = read_target();
    data::assert_same(&all, &target, 2_000);
    assert_no_password(&work, &[&stop, &skip, &again]);
}

#[test]
fn refused_keys_are_dead_lettered_then_copied_from_the_list() {
    let src = source();
    let dst = Server::tls_target(Version::Valkey8);
    restrict(&mut dst.conn());
    let target = format!("rediss://app:{APP_PW}@127.0.0.1:{}", dst.port);
    dead_letter_story(
        &src,
        &target,
        &|| data::snapshot_all(&mut dst.conn()),
        &|| allow_secret(&mut dst.conn()),
    );
}

#[test]
fn refused_keys_into_a_cluster_are_dead_lettered_then_copied_from_the_list() {
    let src = source();
    let dst = Cluster::start(Version::Valkey8, true);
    for node in &dst.nodes {
        restrict(&mut node.conn());
    }
    let target = format!("rediss://app:{APP_PW}@127.0.0.1:{}", dst.nodes[0].port);
    let read = || {
        support::cluster_data::snapshot_cluster(&dst)
            .into_iter()
            .map(|(k, v)| ((0u32, k), v))
            .collect()
    };
    let fix = || {
        for node in &dst.nodes {
            allow_secret(&mut node.conn());
        }
    };
    dead_letter_story(&src, &target, &read, &fix);
}

/// 200 small keys and one random value of `mib` MiB (`big\x01one`) in DB 0 of a 6.2 source.
fn source_with_big_value(mib: usize) -> Server {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    data::seed_bulk(&mut c, 0, 200, "small:");
    // Random bytes: DUMP compresses repetitive strings with LZF, and this value must stay big.
    let value: Vec<u8> = (0..mib << 20).map(|_| rand::random::<u8>()).collect();
    let _: () = redis::cmd("SET")
        .arg("big\x01one")
        .arg(value)
        .query(&mut c)
        .expect("SET");
    src
}

/// A value over the target's proto-max-bulk-len (1mb), with `--on-key-error skip`: set aside,
/// every other key copied. Three ways the limit shows: read up front with CONFIG GET (the value
/// is never sent); CONFIG denied and a 2 MiB value refused with a reply; CONFIG denied and a
/// 24 MiB value seen as a reset connection, which ferry asks the target about (these three on
/// the RESTORE path, `--big-key-bytes 0`); and a string copied in chunks (big-key detection
/// on, the default) that the target refuses to grow past the limit.
#[test]
fn oversized_values_are_dead_lettered() {
    for (mib, deny_config, chunked) in [
        (2, false, false),
        (2, true, false),
        (24, true, false),
        (2, false, true),
    ] {
        let src = source_with_big_value(mib);
        let dst = Server::start(
            Version::Valkey8,
            support::servers::ServerOpts {
                extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
                ..support::servers::ServerOpts::tls()
            },
        );
        let user = if deny_config {
            let _: () = redis::cmd("ACL")
                .arg(&[
                    "SETUSER",
                    "app",
                    "on",
                    &format!(">{APP_PW}"),
                    "~*",
                    "+@all",
                    "-config",
                ])
                .query(&mut dst.conn())
                .expect("ACL SETUSER");
            format!("app:{APP_PW}")
        } else {
            format!(":{TEST_PASSWORD}")
        };
        let target = format!("rediss://{user}@127.0.0.1:{}", dst.port);
        let ca = ca_cert().to_string_lossy().into_owned();
        let work = Workdir::new();
        let dl = work.file("refused.jsonl");
        let run = work.run(&[
            "migrate",
            "--source",
            &src.url(),
            "--target",
            &target,
            "--target-cacert",
            &ca,
            "--on-key-error",
            "skip",
            "--dead-letter",
            dl.to_str().expect("utf-8 path"),
            "--round-pause",
            "200",
            "--big-key-bytes",
            if chunked { "8388608" } else { "0" },
        ]);
        let text = run.text();
        let case = format!("{mib} MiB, CONFIG denied: {deny_config}, chunked: {chunked}");
        assert_eq!(run.code, 1, "{case}: expected exit 1:\n{text}");
        assert_eq!(run.num("keys.dead_lettered"), 1, "{case}:\n{text}");
        assert_eq!(run.num("keys.written"), 200, "{case}:\n{text}");
        let lines = letters(&dl);
        assert_eq!(lines.len(), 1, "{case}: {lines:?}");
        assert_eq!(lines[0]["cause"], "too_large", "{case}: {lines:?}");
        assert_eq!(lines[0]["key_hex"], "626967016f6e65", "{case}: {lines:?}");
        assert_eq!(lines[0]["type"], "string", "{case}: {lines:?}");
        let reason = lines[0]["reason"].as_str().unwrap_or("");
        if chunked {
            // Refused by ferry before any APPEND past the limit (sink/chunked.rs), or by the
            // target when its limit is not known.
            assert!(
                reason.contains("proto-max-bulk-len")
                    || reason.contains("exceeds maximum allowed size"),
                "{case}: {reason}"
            );
        } else if deny_config {
            assert!(reason.contains("invalid bulk length"), "{case}: {reason}");
        } else {
            assert!(reason.contains("(not sent)"), "{case}: {reason}");
        }
        if mib == 24 {
            assert!(
                run.stderr
                    .contains("asking the target whether it takes values that large"),
                "{case}: the refusal was not recognised from a lost connection:\n{text}"
            );
        }
        let mut all = data::snapshot_all(&mut src.conn());
        all.remove(&(0, b"big\x01one".to_vec()));
        data::assert_same(&all, &data::snapshot_all(&mut dst.conn()), 2_000);
        assert_no_password(&work, &[&run]);
    }
}

/// A hash too big for one RESTORE, dead-lettered by a run with big-key detection off, is copied
/// by `--keys-from` in chunks (not DUMPed and refused again).
#[test]
fn a_dead_lettered_big_key_is_copied_in_chunks_from_the_list() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    data::seed_bulk(&mut c, 0, 200, "small:");
    // Random values: DUMP compresses repetitive ones with LZF, and this hash must stay big.
    support::bigkey_data::big_hash(&mut c, "big:hash", 30_000, true);
    let dst = Server::start(
        Version::Valkey8,
        support::servers::ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
            ..support::servers::ServerOpts::tls()
        },
    );
    let ca = ca_cert().to_string_lossy().into_owned();
    let work = Workdir::new();
    let dl = work.file("refused.jsonl");
    let dl = dl.to_str().expect("utf-8 path");
    let (source, target) = (src.url(), dst.url());
    let base = [
        "migrate",
        "--source",
        &source,
        "--target",
        &target,
        "--target-cacert",
        &ca,
    ];
    let mut first = base.to_vec();
    first.extend([
        "--on-key-error",
        "skip",
        "--dead-letter",
        dl,
        "--big-key-bytes",
        "0",
    ]);
    let run = work.run(&first);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(run.num("keys.dead_lettered"), 1, "{}", run.text());
    let mut again = base.to_vec();
    again.extend(["--keys-from", dl, "--big-key-bytes", "1048576"]);
    let run = work.run(&again);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.big_keys"), 1, "{}", run.text());
    data::assert_same(
        &data::snapshot_all(&mut src.conn()),
        &data::snapshot_all(&mut dst.conn()),
        2_000,
    );
}

/// `--keys-from` a plain list (a plain line, a quoted line with escapes, a key no longer on the
/// source) into another DB with `--db-map`: the listed keys copied, the missing one counted as
/// vanished, nothing else written.
#[test]
fn keys_from_a_plain_list_with_db_map() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    data::select(&mut c, 2);
    for (k, v) in [
        (&b"plain:one"[..], &b"1"[..]),
        (b"bin:\x00\xff\n", b"2"),
        (b"not:listed", b"3"),
    ] {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(&mut c).expect("SET");
    }
    let _: () = redis::cmd("PEXPIRE")
        .arg("plain:one")
        .arg(3_600_000)
        .query(&mut c)
        .expect("PEXPIRE");
    let dst = Server::tls_target(Version::Valkey8);
    let work = Workdir::new();
    let list = work.file("keys.txt");
    std::fs::write(&list, b"plain:one\n\"bin:\\x00\\xff\\x0a\"\ngone:key\n").expect("write list");
    let run = work
        .migrate(&src, &dst)
        .args(&[
            "--db",
            "2",
            "--db-map",
            "2:5",
            "--keys-from",
            list.to_str().expect("utf-8 path"),
        ])
        .run();
    let text = run.text();
    assert_eq!(run.code, 0, "expected exit 0:\n{text}");
    assert_eq!(run.num("keys.written"), 2, "{text}");
    assert_eq!(run.num("keys.vanished"), 1, "{text}");
    let mut source = data::snapshot(&mut src.conn(), 2);
    source.remove(&b"not:listed"[..]);
    let target = data::snapshot(&mut dst.conn(), 5);
    data::assert_same(&source, &target, 2_000);
    assert_eq!(
        data::snapshot_all(&mut dst.conn()).len(),
        2,
        "only the listed keys"
    );
}

/// `--rdb` (the source's SAVE file) into the restricted target with `--on-key-error skip`: the
/// same dead letters as a live copy, every other key exact, exit 1.
#[test]
fn refused_keys_from_an_rdb_file_are_dead_lettered() {
    let src = source();
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let work = Workdir::new();
    let file = work.file("dump.rdb");
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    let dst = Server::tls_target(Version::Valkey8);
    restrict(&mut dst.conn());
    let target = format!("rediss://app:{APP_PW}@127.0.0.1:{}", dst.port);
    let ca = ca_cert().to_string_lossy().into_owned();
    let run = work.run(&[
        "migrate",
        "--rdb",
        file.to_str().expect("utf-8 path"),
        "--target",
        &target,
        "--target-cacert",
        &ca,
        "--on-key-error",
        "skip",
    ]);
    let text = run.text();
    let all = data::snapshot_all(&mut src.conn());
    let (rest, secret) = split(&all);
    assert_eq!(run.code, 1, "expected exit 1:\n{text}");
    assert_eq!(run.num("keys.dead_lettered"), secret.len() as i64, "{text}");
    let listed: BTreeSet<(u32, Vec<u8>)> = letters(&dead_letter_path(&work, &run))
        .iter()
        .map(|l| {
            assert_eq!(l["cause"], "acl_denied", "{l}");
            let db = l["db"].as_u64().expect("db") as u32;
            (db, unhex(l["key_hex"].as_str().expect("key_hex")))
        })
        .collect();
    assert_eq!(
        listed, secret,
        "the dead-letter file must list exactly the denied keys"
    );
    data::assert_same(&rest, &data::snapshot_all(&mut dst.conn()), 2_000);
    assert_no_password(&work, &[&run]);
}

/// `--keys-from` with a *cluster* source: a big listed hash (2 MB, over one RESTORE for a
/// target with proto-max-bulk-len 1mb) is sized and read in chunks on the master of its slot,
/// never DUMPed there (by the copy or by the verification); the target equals the source.
#[test]
fn keys_from_a_cluster_source_copies_big_keys_in_chunks() {
    let src = Cluster::start(Version::V6_2, false);
    let owner = src.node_for_key(b"big:hash");
    let mut c = owner.conn();
    // Random values: DUMP compresses repetitive ones, and this hash must stay big.
    support::bigkey_data::big_hash(&mut c, "big:hash", 20_000, true);
    let mut cc = src.conn();
    let small: Vec<String> = (0..50).map(|i| format!("small:{i}")).collect();
    for (i, k) in small.iter().enumerate() {
        let () = redis::cmd("SET").arg(k).arg(i).query(&mut cc).expect("SET");
    }
    let () = redis::cmd("PEXPIRE")
        .arg(&["big:hash", "3600000"])
        .query(&mut c)
        .expect("PEXPIRE");
    let dst = Server::start(
        Version::Valkey8,
        support::servers::ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
            ..support::servers::ServerOpts::tls()
        },
    );
    let work = Workdir::new();
    let list = work.file("keys.txt");
    let mut lines = small.join("\n");
    lines.push_str("\nbig:hash\n");
    std::fs::write(&list, lines).expect("write list");
    slowlog::log_slower_than(&mut c, 0);
    let run = work
        .migrate(&src, &dst)
        .args(&[
            "--keys-from",
            list.to_str().expect("utf-8 path"),
            "--big-key-bytes",
            "1048576",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(run.num("keys.big_keys"), 1, "{}", run.text());
    // Read before the test's own reads of the source below.
    let log = slowlog::counts_on(&mut owner.conn(), "big:hash");
    assert_eq!(log.get("DUMP"), None, "big:hash was DUMPed: {log:?}");
    assert!(
        log.contains_key("HSCAN"),
        "big:hash was not read in chunks: {log:?}"
    );
    let a: BTreeMap<(u32, Vec<u8>), KeyState> = support::cluster_data::snapshot_cluster(&src)
        .into_iter()
        .map(|(k, v)| ((0, k), v))
        .collect();
    assert_eq!(a.len(), 51);
    data::assert_same(&a, &data::snapshot_all(&mut dst.conn()), 2_000);
}
