//! The version matrix: every old source (Redis 3.2, 4.0, 5.0, 6.0, 6.2) into every new target
//! (Redis 7.0, Valkey 8.0, Valkey 8.1, Redis 8.0), each target with TLS and a password, both ways
//! ferry reads: a live `migrate` (with its built-in verification) and `migrate --rdb` of the
//! source's own `SAVE` file. After each run the target is read back by the independent test client
//! and compared with the source.
//!
//! One server per version, started once for the whole matrix (targets are flushed between runs),
//! so the 40 runs take seconds, not minutes. Redis 4.0 is built only when its source tarball is
//! there (`scripts/test-servers.sh`); without it the matrix says so loudly and tests the rest.
//!
//! The README's table of tested pairs is generated from [`SOURCES`] and [`TARGETS`] here:
//! `readme_table_is_the_tested_matrix` fails when it differs; regenerate it with
//! `FERRY_WRITE_README=1 cargo test --release --test matrix readme`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::data::{self, Caps, KeyState};
use support::ferry::{Run, Workdir};
use support::servers::{ca_cert, Server, Version};

/// Old servers that cannot switch TLS on in place.
const SOURCES: [Version; 5] = [
    Version::V3_2,
    Version::V4_0,
    Version::V5_0,
    Version::V6_0,
    Version::V6_2,
];

/// New servers users move to; every one runs with TLS and a password here.
const TARGETS: [Version; 4] = [
    Version::V7_0,
    Version::Valkey8,
    Version::Valkey8_1,
    Version::V8_0,
];

const TTL_TOLERANCE_MS: i64 = 1_000;
/// Short TTLs seeded before each live run: some expire before SCAN reaches them, some between
/// DUMP and RESTORE, some during the verification.
const LIVE_SHORT_TTLS_MS: [u64; 4] = [5, 30, 120, 400];
/// Short TTLs seeded before `SAVE`: gone when the file is read, so ferry must skip them.
const FILE_SHORT_TTLS_MS: [u64; 3] = [5, 50, 300];
const SHORT_TTL_KEYS: usize = 20;
/// DBs of the dataset: the rich one in 0 and 2, file-only short TTLs in 3, bulk keys in 7.
const RICH_DBS: [u32; 2] = [0, 2];
const FILE_TTL_DB: u32 = 3;
const BULK_DB: u32 = 7;

const MARK_BEGIN: &str = "<!-- version-matrix:begin -->";
const MARK_END: &str = "<!-- version-matrix:end -->";

// ---------------------------------------------------------------- the table

/// Why `src` → `dst` cannot work, if it cannot. A server accepts `RESTORE` payloads and RDB files
/// of its own RDB version or older, so an older source into a newer target always works; none of
/// the listed pairs is blocked (the matrix test asserts it, so a new pair that is gets a reason
/// here, a cell saying so, and a test of ferry's error).
fn obstacle(src: Version, dst: Version) -> Option<String> {
    (src.rdb_version() > dst.rdb_version()).then(|| {
        format!(
            "{} writes RDB {}, {} reads RDB ≤ {}",
            src.label(),
            src.rdb_version(),
            dst.label(),
            dst.rdb_version()
        )
    })
}

/// The README's table: sources down, targets across, what each pair was proven to do.
fn readme_table() -> String {
    let mut t = String::from("| source ↓ · target → (TLS + password) |");
    for d in TARGETS {
        t.push_str(&format!(" {} (RDB {}) |", d.label(), d.rdb_version()));
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(TARGETS.len()));
    for s in SOURCES {
        t.push_str(&format!("\n| {} (RDB {}) |", s.label(), s.rdb_version()));
        for d in TARGETS {
            match obstacle(s, d) {
                None => t.push_str(" ✓ live · ✓ `--rdb` |"),
                Some(why) => t.push_str(&format!(" ✗ {why} |")),
            }
        }
    }
    t.push('\n');
    t
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// The README's table is the one this file tests (regenerate: see the module docs).
#[test]
fn readme_table_is_the_tested_matrix() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (Some(b), Some(e)) = (readme.find(MARK_BEGIN), readme.find(MARK_END)) else {
        panic!("README.md has no {MARK_BEGIN} … {MARK_END} section for the version matrix")
    };
    let start = b + MARK_BEGIN.len() + 1;
    let want = readme_table();
    if std::env::var_os("FERRY_WRITE_README").is_some() {
        let new = format!("{}{want}{}", &readme[..start], &readme[e..]);
        std::fs::write(&path, new).expect("write README.md");
        return;
    }
    assert_eq!(
        &readme[start.min(e)..e],
        want,
        "README.md's version matrix differs from tests/matrix.rs; regenerate it with \
         FERRY_WRITE_README=1 cargo test --release --test matrix readme"
    );
}

// ---------------------------------------------------------------- the 4.0 step of the script

/// Runs `scripts/test-servers.sh install-4.0` on an empty cache with `FERRY_REDIS40_TARBALL`
/// pointing at `tarball`.
fn install_40(tarball: &Path) -> (std::process::Output, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-servers.sh"))
        .arg("install-4.0")
        .env("FERRY_SERVERS", cache.path())
        .env("FERRY_REDIS40_TARBALL", tarball)
        .output()
        .expect("run scripts/test-servers.sh");
    (out, cache)
}

/// Without the 4.0 source the script says so in one line, and goes on (exit 0).
#[test]
fn script_skips_4_0_in_one_line_without_its_source() {
    let missing = std::env::temp_dir().join("ferry-no-such-dir/redis-4.0.14.tar.gz");
    let (out, cache) = install_40(&missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-4.0 failed: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {stderr}");
    assert!(
        lines[0].contains("skipping Redis 4.0") && lines[0].contains(&*missing.to_string_lossy()),
        "{stderr}"
    );
    assert!(!cache.path().join("bin/4.0").exists());
}

/// A file that is not the official 4.0.14 tarball is refused before anything is built.
#[test]
fn script_refuses_a_4_0_tarball_with_another_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("redis-4.0.14.tar.gz");
    std::fs::write(&fake, b"not redis").expect("write");
    let (out, cache) = install_40(&fake);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is not the official redis-4.0.14.tar.gz"),
        "{stderr}"
    );
    assert!(!cache.path().join("bin/4.0").exists());
}

// ---------------------------------------------------------------- the matrix

/// Written straight to stderr, past the test harness' capture: shown even when the test passes.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// "valkey 8.1" or "4.0.": the start of `Caps::describe` for a server of this version.
fn expected_release(v: Version) -> String {
    if v.is_valkey() {
        v.label().to_lowercase()
    } else {
        format!("{}.", v.name())
    }
}

/// Starts `v` and checks that it is the release the matrix claims to test.
fn start(v: Version, tls: bool) -> Server {
    let s = if tls {
        Server::tls_target(v)
    } else {
        Server::plain(v)
    };
    let got = Caps::detect(&mut s.conn()).describe();
    assert!(
        got.starts_with(&expected_release(v)),
        "{s} reports {got}, not {}",
        v.label()
    );
    s
}

/// Both runs of one pair, for messages.
fn pair(src: &Server, dst: &Server, how: &str) -> String {
    format!("{} → {} ({how})", src.version.label(), dst.version.label())
}

fn flushall(server: &Server) {
    let () = redis::cmd("FLUSHALL")
        .query(&mut server.conn())
        .expect("FLUSHALL");
}

/// The rich dataset (every type the version has, binary keys, TTLs) in two DBs, bulk keys in a
/// third, and short TTLs that expire before the file is read. Returns the time of `SAVE`'s
/// short TTLs.
fn seed(src: &Server) -> Instant {
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    for (db, prefix) in RICH_DBS.iter().zip(["rich:", "second:"]) {
        data::seed_rich(&mut c, *db, prefix, &caps);
    }
    data::seed_bulk(&mut c, BULK_DB, 300, "bulk:");
    for ttl in FILE_SHORT_TTLS_MS {
        data::seed_short_ttls(&mut c, FILE_TTL_DB, SHORT_TTL_KEYS, ttl);
    }
    Instant::now()
}

/// `SAVE` on `src`, then a copy of its `dump.rdb` (the server may overwrite its own).
fn save(src: &Server, work: &Workdir) -> PathBuf {
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file = work.file(&format!("{}.rdb", src.version.name()));
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    file
}

/// Waits until every short TTL seeded at `since` (at most `max_ttl_ms`) has run out, so both
/// snapshots see the same keys.
fn wait_expired(since: Instant, max_ttl_ms: u64) {
    let until = since + Duration::from_millis(max_ttl_ms + 20);
    if let Some(left) = until.checked_duration_since(Instant::now()) {
        sleep(left);
    }
}

fn snapshot_all(server: &Server) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    data::snapshot_all(&mut server.conn())
}

/// The target holds exactly the source's keys, values and TTLs, read by the test client; every
/// type the source has and every DB are there.
fn assert_target_equals_source(src: &Server, dst: &Server, what: &str) {
    let source = snapshot_all(src);
    let target = snapshot_all(dst);
    let d = data::diff(
        &source,
        &target,
        &data::CompareOpts {
            ttl_tolerance_ms: TTL_TOLERANCE_MS,
            expired_below_ms: 0,
        },
    );
    assert!(
        d.is_empty(),
        "{what}: {}",
        data::format_diffs(&d, 20, source.len(), target.len())
    );
    let dbs: BTreeSet<u32> = target.keys().map(|(db, _)| *db).collect();
    let want: BTreeSet<u32> = RICH_DBS.iter().copied().chain([BULK_DB]).collect();
    assert_eq!(dbs, want, "{what}: DBs on the target");
    let kinds = data::kind_counts(&target);
    let mut expected = vec!["string", "list", "hash", "set", "zset"];
    if src.version.has_streams() {
        expected.push("stream");
    }
    for kind in expected {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "{what}: no {kind} on the target: {kinds:?}"
        );
    }
    assert!(
        target.values().filter(|k| k.pttl >= 0).count() > 10,
        "{what}: too few keys with a TTL on the target"
    );
}

/// A run that ended well: exit 0, status ok, the built-in verification found no difference.
fn assert_ok(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: ferry failed:\n{}", run.text());
    let r = run.report.as_ref().expect("no report written");
    assert_eq!(r["status"], "ok", "{what}: {r}");
    assert_eq!(r["verify"]["status"], "ok", "{what}: verification: {r}");
    assert_eq!(r["verify"]["totals"]["differences"], 0, "{what}: {r}");
}

/// `migrate HOW... --target URL --target-cacert CA --progress none`.
fn migrate(work: &Workdir, how: &[&str], dst: &Server) -> Run {
    let (url, ca) = (dst.url(), ca_cert().to_string_lossy().into_owned());
    let mut args = vec!["migrate"];
    args.extend(how);
    args.extend([
        "--target",
        &url,
        "--target-cacert",
        &ca,
        "--progress",
        "none",
    ]);
    work.run(&args)
}

/// Live: SCAN/DUMP from the source while short TTLs run out, RESTORE into the TLS target.
fn live(src: &Server, dst: &Server, work: &Workdir) {
    let what = pair(src, dst, "live");
    flushall(dst);
    let mut c = src.conn();
    for ttl in LIVE_SHORT_TTLS_MS {
        data::seed_short_ttls(&mut c, 0, SHORT_TTL_KEYS, ttl);
    }
    let seeded = Instant::now();
    let run = migrate(work, &["--source", &src.url()], dst);
    assert_ok(&run, &what);
    wait_expired(seeded, LIVE_SHORT_TTLS_MS[3]);
    assert_target_equals_source(src, dst, &what);
}

/// `--rdb`: the source's own SAVE file, whose short TTLs have run out and must be skipped.
fn from_file(src: &Server, file: &Path, dst: &Server, work: &Workdir) {
    let what = pair(src, dst, "--rdb");
    flushall(dst);
    let run = migrate(work, &["--rdb", &file.to_string_lossy()], dst);
    assert_ok(&run, &what);
    let file_short = (FILE_SHORT_TTLS_MS.len() * SHORT_TTL_KEYS) as i64;
    assert_eq!(
        run.num("keys.expired_skipped"),
        file_short,
        "{what}: expired keys of the file: {}",
        run.text()
    );
    assert_target_equals_source(src, dst, &what);
}

/// Every source into every target, live and from its file.
#[test]
fn every_source_into_every_target() {
    let t0 = Instant::now();
    for s in SOURCES {
        for d in TARGETS {
            assert_eq!(
                obstacle(s, d),
                None,
                "{} → {} cannot work: say so in the table and test ferry's error",
                s.label(),
                d.label()
            );
        }
    }
    let missing: Vec<Version> = SOURCES.into_iter().filter(|v| !v.is_installed()).collect();
    for v in &missing {
        assert_eq!(
            *v,
            Version::V4_0,
            "{} is not installed: run scripts/test-servers.sh install",
            v.label()
        );
        say(&format!(
            "\n!!!!!!!! version matrix: {} NOT TESTED — not installed (scripts/test-servers.sh \
             builds it only from ../shared/redis-src/redis-4.0.14.tar.gz or \
             $FERRY_REDIS40_TARBALL); {} pairs skipped !!!!!!!!\n",
            v.label(),
            TARGETS.len()
        ));
    }
    let targets: Vec<Server> = TARGETS.into_iter().map(|v| start(v, true)).collect();
    let sources: Vec<Server> = SOURCES
        .into_iter()
        .filter(|v| v.is_installed())
        .map(|v| start(v, false))
        .collect();
    let work = Workdir::new();
    for src in &sources {
        let seeded = seed(src);
        let file = save(src, &work);
        wait_expired(seeded, FILE_SHORT_TTLS_MS[2]);
        for dst in &targets {
            live(src, dst, &work);
            from_file(src, &file, dst, &work);
        }
    }
    say(&format!(
        "version matrix: {} sources × {} targets, live and --rdb: {} runs green in {:.1} s{}",
        sources.len(),
        targets.len(),
        2 * sources.len() * targets.len(),
        t0.elapsed().as_secs_f64(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                " (NOT TESTED: {})",
                missing
                    .iter()
                    .map(Version::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
}
