//! Strings longer than the target's `proto-max-bulk-len` (issue #14's 40 MB string), against
//! real servers.
//!
//! No command can make a string longer than that limit piece by piece (APPEND and SETRANGE
//! refuse), but RESTORE checks only its payload: ferry packs a big string's GETRANGE chunks into
//! one LZF-compressed payload (`src/bigkey/packed_string.rs`) and RESTOREs it. These tests show:
//! - a 6.2 and a 3.2 source's 40 MB strings (the bytes, and text that LZF shrinks only
//!   about four times) land exactly in a Valkey 8 TLS target with `proto-max-bulk-len 16mb`,
//!   TTL kept, verified, no temporary key left; the source never got a DUMP of them (its SLOWLOG,
//!   logging every command) and its slowest command took less than half of one DUMP of the
//!   string (in practice about a sixtieth: a GETRANGE of one chunk);
//! - a random string over the limit cannot shrink under it: exit 2 naming the key, its size and
//!   the limit, or with `--on-key-error skip` a dead-letter line while every other key is
//!   copied; a random string just under the limit, whose packed form is not, is still copied
//!   (the packed prefix RESTOREd, the rest APPENDed);
//! - `--rdb` of the same: the file's LZF string is decompressed as a stream and packed again;
//! - SIGKILL while strings are packed, and while a packed prefix is being appended to, then a
//!   rerun: exact, no temporary key left.
//!
//! Before the packed strings, the 40 MB strings made the copy stop with exit 2 (the target
//! refused the APPEND past 16 MB).

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use support::bigkey_data::big_string;
use support::data::{self, assert_same};
use support::ferry::{kill_runs, KillAt, Run, Workdir};
use support::servers::{Server, ServerOpts, Version};
use support::slowlog;

const TTL_TOLERANCE_MS: i64 = 5_000;

/// The string size.
const FORTY_MB: usize = 40 << 20;

/// A Valkey 8 TLS target refusing any bulk over `limit`.
fn target(limit: &str) -> Server {
    Server::start(
        Version::Valkey8,
        ServerOpts {
            extra_args: vec!["--proto-max-bulk-len".into(), limit.into()],
            ..ServerOpts::tls()
        },
    )
}

/// A pseudo-random sequence (xorshift).
fn noise(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// `n` random bytes: LZF cannot shrink them.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut next = noise(seed);
    let mut v: Vec<u8> = (0..n.div_ceil(8))
        .flat_map(|_| next().to_le_bytes())
        .collect();
    v.truncate(n);
    v
}

/// `n` bytes of 8-byte words drawn at random from 64: LZF shrinks it about four times (every
/// word is a short back-reference, no longer runs), like real text more than a pattern does.
fn words(n: usize, seed: u64) -> Vec<u8> {
    let mut next = noise(seed);
    let vocabulary: Vec<[u8; 8]> = (0..64).map(|_| next().to_le_bytes()).collect();
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&vocabulary[(next() % 64) as usize]);
    }
    v.truncate(n);
    v
}

fn set(c: &mut redis::Connection, key: &str, value: &[u8]) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(c).expect("SET");
}

/// The two 40 MB strings (one with a TTL) and 200 small keys.
fn seed_forty_mb(c: &mut redis::Connection) {
    data::seed_bulk(c, 0, 200, "small:");
    data::select(c, 0);
    set(c, "big:string", &big_string(FORTY_MB));
    set(c, "big:words", &words(FORTY_MB, 7));
    let _: () = redis::cmd("PEXPIRE")
        .arg("big:words")
        .arg(3_600_000)
        .query(c)
        .expect("PEXPIRE");
}

/// Keys on `c` named like a temporary key of ferry's.
fn temp_keys(c: &mut redis::Connection) -> Vec<Vec<u8>> {
    data::scan_keys(c, 0)
        .into_iter()
        .filter(|k| k.windows(10).any(|w| w == b"ferry:tmp:"))
        .collect()
}

fn strlen(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("STRLEN").arg(key).query(c).expect("STRLEN")
}

/// The 40 MB strings from a live `version` source into a 16mb target (see the module docs).
fn forty_mb_strings_from(version: Version) {
    let src = Server::plain(version);
    let dst = target("16mb");
    let mut c = src.conn();
    seed_forty_mb(&mut c);
    slowlog::start(&mut c, 0);
    let work = Workdir::new();
    let t = Instant::now();
    let r = work.migrate(&src, &dst).run();
    let took = t.elapsed();
    assert_eq!(r.code, 0, "{}", r.text());
    let ferry_log = slowlog::slowest(&mut c);

    // Never DUMPed: ferry DUMPs only the small keys.
    let dumped: Vec<&(i64, String)> = ferry_log
        .iter()
        .filter(|(_, cmd)| cmd.to_ascii_uppercase().starts_with("DUMP big:"))
        .collect();
    assert!(dumped.is_empty(), "the source was asked to DUMP {dumped:?}");
    assert!(
        ferry_log.iter().any(|(_, cmd)| cmd.starts_with("GETRANGE")),
        "the strings were not read with GETRANGE: {:?}",
        &ferry_log[..ferry_log.len().min(10)]
    );
    // One DUMP of the string, as the code before #14 sent, measured the same way.
    slowlog::start(&mut c, 0);
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg("big:words")
        .query(&mut c)
        .expect("DUMP");
    let dump_us = slowlog::slowest(&mut c)
        .iter()
        .find(|(_, cmd)| cmd.to_ascii_uppercase().starts_with("DUMP"))
        .map(|(us, _)| *us)
        .expect("the DUMP in the slowlog");
    let (worst_us, worst_cmd) = ferry_log.first().cloned().unwrap_or_default();
    let rss = r.num("peak_rss_bytes");
    eprintln!(
        "{version}: two 40 MB strings copied in {took:.1?} (with verification), peak RSS {} MiB; \
         source: ferry's slowest command {worst_us} µs ({worst_cmd}); one DUMP of big:words \
         ({} bytes) {dump_us} µs",
        rss >> 20,
        dump.len()
    );
    // Loose: on a loaded 2-core machine any command may be descheduled for milliseconds.
    assert!(
        worst_us * 2 < dump_us,
        "ferry blocked the source {worst_us} µs ({worst_cmd}), one DUMP takes {dump_us} µs"
    );
    assert!(rss < 200 << 20, "peak RSS {rss} bytes");

    assert_eq!(r.num("keys.big_keys"), 2, "{}", r.text());
    assert_eq!(r.num("keys.written"), 202, "{}", r.text());
    assert!(r.num("verify.totals.big_keys_read") >= 4, "{}", r.text());
    let mut d = dst.conn();
    assert_eq!(strlen(&mut d, "big:string"), FORTY_MB as i64);
    assert_eq!(strlen(&mut d, "big:words"), FORTY_MB as i64);
    assert_same(
        &data::snapshot_all(&mut src.conn()),
        &data::snapshot_all(&mut d),
        TTL_TOLERANCE_MS,
    );
    assert!(temp_keys(&mut d).is_empty());
}

#[test]
fn forty_mb_strings_from_6_2_into_a_16mb_target() {
    forty_mb_strings_from(Version::V6_2);
}

#[test]
fn forty_mb_strings_from_3_2_into_a_16mb_target() {
    forty_mb_strings_from(Version::V3_2);
}

/// The dead-letter file's lines.
fn letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead-letter line is JSON"))
        .collect()
}

/// Exit 2 naming the key, its size and the limit, and what to do.
fn assert_stopped_on(r: &Run, key_text: &str, limit: &str) {
    let text = r.text();
    assert_eq!(r.code, 2, "{text}");
    for needle in [
        key_text,
        "bytes read so far",
        limit,
        "does not compress under",
        "Raise proto-max-bulk-len on the target",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(!text.contains("panicked"), "{text}");
}

/// With `--on-key-error skip`: exit 1, exactly `key` dead-lettered as too large, every other key
/// of the source on the target, no temporary key.
fn assert_dead_lettered(r: &Run, dl: &Path, key: &[u8], src: &Server, dst: &Server) {
    assert_eq!(r.code, 1, "{}", r.text());
    assert_eq!(r.num("keys.dead_lettered"), 1, "{}", r.text());
    let lines = letters(dl);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines[0]["key_hex"], hex.as_str(), "{lines:?}");
    assert_eq!(lines[0]["cause"], "too_large", "{lines:?}");
    assert_eq!(lines[0]["type"], "string", "{lines:?}");
    let reason = lines[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("proto-max-bulk-len") && reason.contains("not compressible"),
        "{reason}"
    );
    let mut all = data::snapshot_all(&mut src.conn());
    all.remove(&(0, key.to_vec()));
    let mut d = dst.conn();
    assert_same(&all, &data::snapshot_all(&mut d), TTL_TOLERANCE_MS);
    assert!(temp_keys(&mut d).is_empty());
}

fn flushall(s: &Server) {
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut s.conn())
        .expect("FLUSHALL");
}

/// A random string over a 1mb limit cannot be packed under it: stop names it; skip
/// dead-letters it and copies the rest — a compressible 8 MB string, and a random one just
/// under the limit whose packed form is not (its packed prefix RESTOREd, the rest APPENDed).
#[test]
fn an_incompressible_string_over_the_limit_is_refused_or_dead_lettered() {
    let src = Server::plain(Version::V6_2);
    let dst = target("1mb");
    let mut c = src.conn();
    data::seed_bulk(&mut c, 0, 200, "small:");
    data::select(&mut c, 0);
    set(&mut c, "big\x01raw", &random_bytes(3 << 20, 1));
    set(&mut c, "big:text", &big_string(8 << 20));
    // Under 1 MiB, but 1 byte more per 32 as literal runs is over it.
    set(&mut c, "big:fits", &random_bytes(1_040_000, 2));

    let work = Workdir::new();
    let stop = work.migrate(&src, &dst).run();
    assert_stopped_on(&stop, "big\\x01raw", "1048576 bytes");

    flushall(&dst);
    let work = Workdir::new();
    let dl = work.file("refused.jsonl");
    let skip = work
        .migrate(&src, &dst)
        .args(&["--on-key-error", "skip", "--dead-letter"])
        .arg(dl.to_str().expect("utf-8 path"))
        .run();
    assert_dead_lettered(&skip, &dl, b"big\x01raw", &src, &dst);
    assert_eq!(skip.num("keys.big_keys"), 2, "{}", skip.text());
    assert_eq!(strlen(&mut dst.conn(), "big:fits"), 1_040_000);
}

/// `SAVE` on `src`, then a copy of its `dump.rdb` in `work`.
fn save(src: &Server, work: &Workdir) -> PathBuf {
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file = work.file("dump.rdb");
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    file
}

/// `--rdb`: the file stores the 40 MB strings LZF-compressed (big:words about 10 MB of it, over
/// ferry's 8 MiB threshold, so it is read as a stream); they are packed again into the 16mb
/// target. A random 17 MiB string cannot be: stop names it, skip dead-letters it.
#[test]
fn rdb_strings_over_the_limit() {
    let src = Server::plain(Version::V6_2);
    let dst = target("16mb");
    let mut c = src.conn();
    seed_forty_mb(&mut c);
    set(&mut c, "big\x01raw", &random_bytes(17 << 20, 3));
    let work = Workdir::new();
    let file = save(&src, &work);
    let rdb = |w: &Workdir, extra: &[&str]| {
        w.ferry("migrate")
            .args(&["--rdb", file.to_str().expect("utf-8 path")])
            .to(&dst)
            .args(extra)
            .run()
    };

    let dl = work.file("refused.jsonl");
    let t = Instant::now();
    let skip = rdb(
        &work,
        &[
            "--on-key-error",
            "skip",
            "--dead-letter",
            dl.to_str().expect("utf-8 path"),
        ],
    );
    let rss = skip.num("peak_rss_bytes");
    eprintln!(
        "--rdb: copied in {:.1?} (with verification), peak RSS {} MiB, big keys {}",
        t.elapsed(),
        rss >> 20,
        skip.num("keys.big_keys")
    );
    assert_dead_lettered(&skip, &dl, b"big\x01raw", &src, &dst);
    // big:words (its LZF form in the file is over 8 MiB; big:string's is not, and is RESTOREd
    // as the file stores it).
    assert_eq!(skip.num("keys.big_keys"), 1, "{}", skip.text());
    assert_eq!(strlen(&mut dst.conn(), "big:words"), FORTY_MB as i64);
    assert!(rss < 200 << 20, "peak RSS {rss} bytes");

    flushall(&dst);
    let stop = rdb(&Workdir::new(), &[]);
    assert_stopped_on(&stop, "big\\x01raw", "16777216 bytes");
}

/// Calls of GETRANGE the source has served (INFO commandstats).
fn getrange_calls(s: &Server) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut s.conn())
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_getrange:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// SIGKILL while strings are read and packed (nothing on the target yet), and while a temporary
/// key holds a RESTOREd prefix being APPENDed to; the rerun is exact and leaves no temporary key.
#[test]
fn killed_while_packing_strings_then_rerun_is_exact() {
    let src = Server::plain(Version::V6_2);
    let dst = target("4mb");
    let mut c = src.conn();
    data::seed_bulk(&mut c, 0, 200, "small:");
    data::select(&mut c, 0);
    set(&mut c, "big:string", &big_string(FORTY_MB));
    // Under 4 MiB, over it as literal runs: a packed prefix, then APPENDs.
    set(&mut c, "big:fits", &random_bytes(4_150_000, 4));
    let _: () = redis::cmd("PEXPIRE")
        .arg("big:fits")
        .arg(3_600_000)
        .query(&mut c)
        .expect("PEXPIRE");
    let work = Workdir::new();
    // Small chunks: thousands of GETRANGEs per string, so the kills land mid-key.
    let migrate = work
        .migrate(&src, &dst)
        .args(&["--batch-bytes", "16384", "--writers", "1"]);
    let done = || {
        let mut d = dst.conn();
        strlen(&mut d, "big:string") == FORTY_MB as i64 && strlen(&mut d, "big:fits") > 0
    };
    // -1: once a temporary key is on the target.
    let at = [300, 1_500, -1, 3_000].map(KillAt::Point);
    let kills = kill_runs(
        &migrate,
        &at,
        std::time::Duration::from_millis(1),
        |p, _| match p {
            -1 => !temp_keys(&mut dst.conn()).is_empty(),
            p => getrange_calls(&src) >= p,
        },
        || !done(),
    );
    assert!(kills >= 2, "only {kills} runs were killed mid-copy");
    let r = migrate.run();
    assert_eq!(r.code, 0, "{}", r.text());
    let mut d = dst.conn();
    assert_same(
        &data::snapshot_all(&mut src.conn()),
        &data::snapshot_all(&mut d),
        TTL_TOLERANCE_MS,
    );
    assert!(temp_keys(&mut d).is_empty(), "a temporary key was left");
}
