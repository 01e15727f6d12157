//! Streams at the edges of the chunked copy (issue 14), against real servers: big-key detection
//! forced on with a tiny `--big-key-bytes`, so every stream is read with XRANGE/XINFO/XPENDING
//! and rebuilt with XADD/XSETID/XGROUP/XCLAIM, live and from a `SAVE`d `.rdb` file.
//!
//! - A stream with no entries left (all deleted, or only an `XSETID`) but a last ID and groups
//!   is copied exactly.
//! - A pending entry whose message was deleted (`XDEL`) cannot be recreated by XCLAIM (it
//!   ignores IDs not in the stream): the key is a per-key failure (`--on-key-error`), never a
//!   silently different PEL.
//! - A target before 6.2 has no `XGROUP CREATECONSUMER`: a stream whose consumers all have
//!   pending entries is copied exactly (XCLAIM creates them); one with a consumer that has none
//!   is a per-key failure.
//!
//! The target is read back with the independent client (`data::snapshot_all`: entries, groups,
//! consumers with their pending counts, PEL) and compared field by field with `XINFO STREAM
//! FULL` (times aside).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redis::Value;
use support::data::{self, KeyState};
use support::ferry::{Run, Workdir};
use support::servers::{ca_cert, Server, Version};

/// Small enough that every stream here is big.
const BIG: &str = "64";

fn q(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}

/// `XINFO STREAM key FULL` as `path → value` text: entries, last ID, the 7.0 counters, and per
/// group its last-delivered ID, entries read, lag and PEL (id, consumer, delivery count), per
/// consumer its PEL. Times (delivery, seen, active) are left out: they are when the target got
/// them; so are the radix tree's sizes, which depend on how the stream was built.
fn stream_full(c: &mut redis::Connection, key: &str) -> BTreeMap<String, String> {
    fn pairs(v: &Value) -> Vec<(String, &Value)> {
        let Value::Array(items) = v else {
            panic!("XINFO STREAM FULL: not a flat map: {v:?}")
        };
        items.chunks(2).map(|p| (text(&p[0]), &p[1])).collect()
    }
    fn text(v: &Value) -> String {
        match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Nil => "nil".into(),
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(text).collect();
                format!("[{}]", inner.join(","))
            }
            other => format!("{other:?}"),
        }
    }
    /// A PEL entry without its delivery time (the one integer over 10^12).
    fn pel(v: &Value) -> String {
        let Value::Array(entries) = v else {
            return text(v);
        };
        let kept: Vec<String> = entries
            .iter()
            .map(|e| match e {
                Value::Array(parts) => {
                    let p: Vec<String> = parts
                        .iter()
                        .filter(|x| !matches!(x, Value::Int(i) if *i > 1_000_000_000_000))
                        .map(text)
                        .collect();
                    p.join(" ")
                }
                other => text(other),
            })
            .collect();
        kept.join("; ")
    }
    let v = q(c, &["XINFO", "STREAM", key, "FULL"]);
    let mut out = BTreeMap::new();
    for (name, value) in pairs(&v) {
        match name.as_str() {
            "radix-tree-keys" | "radix-tree-nodes" => {}
            "groups" => {
                let Value::Array(groups) = value else {
                    panic!("groups: {value:?}")
                };
                for g in groups {
                    let g = pairs(g);
                    let gname = g.iter().find(|(n, _)| n == "name").map(|(_, v)| text(v));
                    let gname = gname.expect("group name");
                    for (n, v) in &g {
                        match n.as_str() {
                            "pel" | "pending" if matches!(v, Value::Array(_)) => {
                                out.insert(format!("group {gname} {n}"), pel(v));
                            }
                            "consumers" => {
                                let Value::Array(cs) = v else {
                                    panic!("consumers")
                                };
                                for c in cs {
                                    let c = pairs(c);
                                    let cname = c
                                        .iter()
                                        .find(|(n, _)| n == "name")
                                        .map(|(_, v)| text(v))
                                        .expect("consumer name");
                                    for (n, v) in &c {
                                        let path = format!("group {gname} consumer {cname} {n}");
                                        match n.as_str() {
                                            "pel" | "pending" => {
                                                out.insert(path, pel(v));
                                            }
                                            n if n.ends_with("-time") => {}
                                            _ => {
                                                out.insert(path, text(v));
                                            }
                                        }
                                    }
                                }
                            }
                            _ => {
                                out.insert(format!("group {gname} {n}"), text(v));
                            }
                        }
                    }
                }
            }
            _ => {
                out.insert(name, text(value));
            }
        }
    }
    out
}

/// The stream `key` is the same on both sides, by `XINFO STREAM FULL` (the fields both servers
/// print: a 6.2 source has no 7.0 counters) and `XPENDING`.
fn assert_same_stream(src: &Server, dst: &Server, key: &str) {
    let a = stream_full(&mut src.conn(), key);
    let b = stream_full(&mut dst.conn(), key);
    assert!(
        a.contains_key("last-generated-id") && a.contains_key("entries"),
        "{a:?}"
    );
    for (path, va) in &a {
        if let Some(vb) = b.get(path) {
            assert_eq!(
                va, vb,
                "XINFO STREAM {key} FULL: {path} differs (source, target)"
            );
        }
    }
    let paths = |m: &BTreeMap<String, String>| -> Vec<String> {
        // Group and consumer names (the fields printed differ by version).
        m.keys()
            .filter(|k| k.starts_with("group") && k.ends_with(" name"))
            .cloned()
            .collect()
    };
    assert_eq!(
        paths(&a),
        paths(&b),
        "XINFO STREAM {key} FULL: groups or consumers differ"
    );
    for group in ["g", "g1", "g2"] {
        let xp = |s: &Server| -> String {
            let mut c = s.conn();
            let r: redis::RedisResult<Value> =
                redis::cmd("XPENDING").arg(key).arg(group).query(&mut c);
            format!("{r:?}")
        };
        assert_eq!(xp(src), xp(dst), "XPENDING {key} {group} differs");
    }
}

fn migrate(work: &Workdir, from: &[String], dst: &Server, extra: &[&str]) -> Run {
    let ca = ca_cert().to_string_lossy().into_owned();
    let target = dst.url();
    let mut args: Vec<&str> = vec!["migrate"];
    args.extend(from.iter().map(String::as_str));
    args.extend(["--target", &target, "--big-key-bytes", BIG]);
    if dst.url().starts_with("rediss") {
        args.extend(["--target-cacert", &ca]);
    }
    args.extend(extra);
    work.run(&args)
}

fn live(src: &Server) -> Vec<String> {
    vec!["--source".into(), src.url()]
}

/// `SAVE` on `src`, then a copy of its `dump.rdb` in `work`, as `--rdb FILE`.
fn rdb(src: &Server, work: &Workdir) -> Vec<String> {
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file: PathBuf = work.file("dump.rdb");
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    vec!["--rdb".into(), file.to_string_lossy().into_owned()]
}

fn snapshot(s: &Server) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    data::snapshot_all(&mut s.conn())
}

/// No temporary key of ferry's is left on the target.
fn assert_no_temp_keys(dst: &Server) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*ferry:tmp*")
        .query(&mut dst.conn())
        .expect("KEYS");
    assert!(keys.is_empty(), "temporary keys left: {keys:?}");
}

/// Streams with no entries but a last ID, groups and consumers.
fn seed_empty_streams(c: &mut redis::Connection) {
    // Every entry delivered, acknowledged, then deleted: alice stays, with nothing pending.
    for id in ["1-1", "2-1", "3-1"] {
        q(c, &["XADD", "s:emptied", id, "f", "v"]);
    }
    q(c, &["XGROUP", "CREATE", "s:emptied", "g1", "0"]);
    q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "STREAMS",
            "s:emptied",
            ">",
        ],
    );
    q(c, &["XACK", "s:emptied", "g1", "1-1", "2-1", "3-1"]);
    q(c, &["XDEL", "s:emptied", "1-1", "2-1", "3-1"]);
    q(c, &["XGROUP", "CREATE", "s:emptied", "g2", "2-1"]);
    // Only a last ID set by XSETID, and a group with an idle consumer.
    q(c, &["XADD", "s:setid", "1-1", "f", "v"]);
    q(c, &["XDEL", "s:setid", "1-1"]);
    q(c, &["XSETID", "s:setid", "99-7"]);
    q(c, &["XGROUP", "CREATE", "s:setid", "g", "$"]);
    q(c, &["XGROUP", "CREATECONSUMER", "s:setid", "g", "bob"]);
    // Never had an entry: last ID 0-0.
    q(c, &["XGROUP", "CREATE", "s:zero", "g", "0", "MKSTREAM"]);
    q(c, &["PEXPIRE", "s:zero", "3600000"]);
}

const EMPTY: [&str; 3] = ["s:emptied", "s:setid", "s:zero"];

fn empty_streams_are_copied_exactly(version: Version) {
    let src = Server::plain(version);
    let mut c = src.conn();
    seed_empty_streams(&mut c);
    data::seed_bulk(&mut c, 0, 20, "small:");
    for from_file in [false, true] {
        let dst = Server::tls_target(Version::Valkey8);
        let work = Workdir::new();
        let from = if from_file {
            rdb(&src, &work)
        } else {
            live(&src)
        };
        let run = migrate(&work, &from, &dst, &[]);
        assert_eq!(run.code, 0, "{}", run.text());
        assert!(run.num("keys.big_keys") >= 3, "{}", run.text());
        for key in EMPTY {
            assert_same_stream(&src, &dst, key);
        }
        data::assert_same(&snapshot(&src), &snapshot(&dst), 2_000);
        assert_no_temp_keys(&dst);
    }
}

#[test]
fn empty_streams_with_groups_are_copied_exactly_from_6_2() {
    empty_streams_are_copied_exactly(Version::V6_2);
}

#[test]
fn empty_streams_with_groups_are_copied_exactly_from_7_0() {
    // 7.0 adds entries-added, max-deleted-id and entries-read, all kept.
    empty_streams_are_copied_exactly(Version::V7_0);
}

/// A stream whose group has a pending entry for a message deleted since (XDEL).
fn seed_pending_deleted(c: &mut redis::Connection) {
    for i in 1..=40 {
        q(
            c,
            &[
                "XADD",
                "s:ghost",
                &format!("{i}-1"),
                "field",
                &"x".repeat(40),
            ],
        );
    }
    q(c, &["XGROUP", "CREATE", "s:ghost", "g", "0"]);
    q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "alice",
            "COUNT",
            "10",
            "STREAMS",
            "s:ghost",
            ">",
        ],
    );
    q(c, &["XDEL", "s:ghost", "5-1"]);
}

/// What the source holds besides `s:ghost`, and that the target holds exactly that.
fn assert_all_but(src: &Server, dst: &Server, left_out: &[&str]) {
    let mut a = snapshot(src);
    for k in left_out {
        a.remove(&(0, k.as_bytes().to_vec()));
    }
    data::assert_same(&a, &snapshot(dst), 2_000);
}

#[test]
fn a_pending_entry_of_a_deleted_message_is_a_key_error_not_a_silent_difference() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    seed_pending_deleted(&mut c);
    data::seed_bulk(&mut c, 0, 20, "small:");
    // The source's PEL still lists the deleted message.
    let pel = q(&mut c, &["XPENDING", "s:ghost", "g", "5-1", "5-1", "1"]);
    assert!(matches!(&pel, Value::Array(v) if v.len() == 1), "{pel:?}");
    for from_file in [false, true] {
        let dst = Server::tls_target(Version::Valkey8);
        let work = Workdir::new();
        let from = if from_file {
            rdb(&src, &work)
        } else {
            live(&src)
        };
        let letter =
            refused_then_set_aside(&work, &from, &dst, "s:ghost", "deleted from the stream");
        assert!(letter.contains("deleted from the stream"), "{letter}");
        assert_all_but(&src, &dst, &["s:ghost"]);
        assert_no_temp_keys(&dst);
    }
}

/// The copy from `from` stops (exit 2) on `key`, naming it and `why`; with `--on-key-error
/// skip` it exits 1 with exactly that key in the dead-letter file, whose line is returned.
fn refused_then_set_aside(
    work: &Workdir,
    from: &[String],
    dst: &Server,
    key: &str,
    why: &str,
) -> String {
    let run = migrate(work, from, dst, &[]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.text().contains(key) && run.text().contains(why),
        "{}",
        run.text()
    );
    let dl = work.file("refused.jsonl");
    let dl_arg = dl.to_str().expect("utf-8 path");
    let extra = ["--on-key-error", "skip", "--dead-letter", dl_arg];
    let run = migrate(work, from, dst, &extra);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(run.num("keys.dead_lettered"), 1, "{}", run.text());
    let letters = letters(&dl);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let line = letters[0].to_string();
    assert!(line.contains(key), "{line}");
    line
}

/// The dead-letter file's lines, parsed.
fn letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead-letter line is JSON"))
        .collect()
}

/// Streams whose consumers all have pending entries (`s:busy`), and one with an idle consumer
/// (`s:idle`).
fn seed_consumers(c: &mut redis::Connection) {
    for key in ["s:busy", "s:idle"] {
        for i in 1..=20 {
            q(c, &["XADD", key, &format!("{i}-0"), "f", &"y".repeat(30)]);
        }
        q(c, &["XGROUP", "CREATE", key, "g", "0"]);
        for who in ["alice", "carol"] {
            q(
                c,
                &[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    who,
                    "COUNT",
                    "3",
                    "STREAMS",
                    key,
                    ">",
                ],
            );
        }
        // Delivered twice: the delivery count travels.
        q(c, &["XCLAIM", key, "g", "carol", "0", "1-0"]);
    }
    q(c, &["XGROUP", "CREATECONSUMER", "s:idle", "g", "bob"]);
}

#[test]
fn a_target_before_6_2_gets_consumers_with_pending_entries_and_refuses_idle_ones() {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    seed_consumers(&mut c);
    data::seed_bulk(&mut c, 0, 20, "small:");
    for from_file in [false, true] {
        let dst = Server::plain(Version::V6_0);
        let work = Workdir::new();
        let from = if from_file {
            rdb(&src, &work)
        } else {
            live(&src)
        };
        refused_then_set_aside(&work, &from, &dst, "s:idle", "CREATECONSUMER");
        assert_same_stream(&src, &dst, "s:busy");
        assert_all_but(&src, &dst, &["s:idle"]);
        assert_no_temp_keys(&dst);
    }
}
