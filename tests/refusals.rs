//! Refusals found by a hostile trial (issue 11, items 4, 5, 7 and 8), against real servers: each
//! gets a clear error naming what was wrong and what to do, exit code 2, and nothing written to
//! the target where ferry refuses to start — or, for the inputs ferry now accepts (a gzip file,
//! standard input, a named pipe), an exact copy.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::data::{self, Caps};
use support::ferry::{finish, Run, Workdir};
use support::servers::{ca_cert, Cluster, Server, ServerOpts, Version};

const PASSWORD: &str = "ferry-test-pass";

fn ca() -> String {
    ca_cert().to_string_lossy().into_owned()
}

/// A plain 6.2 source holding every type (some keys with TTLs) in DB 0.
fn rich_source() -> Server {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    let caps = Caps::detect(&mut c);
    data::seed_rich(&mut c, 0, "rich:", &caps);
    src
}

fn target_keys(dst: &Server) -> i64 {
    let mut c = dst.conn();
    (0..16)
        .map(|db| {
            data::select(&mut c, db);
            redis::cmd("DBSIZE").query::<i64>(&mut c).expect("DBSIZE")
        })
        .sum()
}

/// `ferry ARGS` in `work` with no `--report` added (unlike `Workdir::command`).
fn bare(work: &Workdir, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.current_dir(work.path())
        .args(args)
        .env_remove("FERRY_SOURCE_PASSWORD")
        .env_remove("FERRY_TARGET_PASSWORD")
        .env_remove("FERRY_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run_bare(mut cmd: Command) -> Run {
    let out = cmd.output().expect("cannot run the ferry binary");
    finish(out, Path::new("/nonexistent/report.json"))
}

fn assert_refused(run: &Run, needles: &[&str]) {
    let text = run.text();
    assert_eq!(run.code, 2, "expected exit 2, got {}:\n{text}", run.code);
    for n in needles {
        assert!(text.contains(n), "message lacks {n:?}:\n{text}");
    }
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
}

/// `SAVE` on `src` and a copy of its dump.rdb in `work`.
fn save(src: &Server, work: &Workdir, name: &str) -> PathBuf {
    let () = redis::cmd("SAVE").query(&mut src.conn()).expect("SAVE");
    let file = work.file(name);
    std::fs::copy(src.dir().join("dump.rdb"), &file).expect("copy dump.rdb");
    file
}

fn assert_copied(src: &Server, dst: &Server) {
    let source = data::snapshot_all(&mut src.conn());
    let target = data::snapshot_all(&mut dst.conn());
    assert!(!source.is_empty());
    data::assert_same(&source, &target, 2_000);
}

/// Item 4: a value over the target's proto-max-bulk-len, with CONFIG denied to the target user so
/// ferry cannot read the limit up front: recognised at the first refusal, not retried. A 2 MiB
/// value's refusal is usually read as a reply; a 24 MiB value's is seen as a reset connection
/// (the server closes it while ferry is still sending), which ferry then asks the target about.
#[test]
fn oversized_value_behind_blocked_config_fails_fast() {
    for (mib, reset) in [(2, false), (24, true)] {
        let dst = Server::start(Version::V7_0, small_bulk_limit());
        deny_config(&mut dst.conn());
        let target = format!("rediss://writer:writer-pass@127.0.0.1:{}", dst.port);
        oversized_value_case(mib, reset, &target);
        let big: bool = redis::cmd("EXISTS")
            .arg("big\x01one")
            .query(&mut dst.conn())
            .unwrap();
        assert!(!big, "the oversized key was written");
    }
}

/// The same into a cluster target (ElastiCache denies CONFIG to every user).
#[test]
fn oversized_value_into_cluster_behind_blocked_config_fails_fast() {
    let dst = Cluster::start_with(Version::V7_0, small_bulk_limit());
    for node in &dst.nodes {
        deny_config(&mut node.conn());
    }
    let target = format!(
        "rediss://writer:writer-pass@127.0.0.1:{}",
        dst.nodes[0].port
    );
    oversized_value_case(24, true, &target);
    let big: bool = redis::cmd("EXISTS")
        .arg("big\x01one")
        .query(&mut dst.conn())
        .unwrap();
    assert!(!big, "the oversized key was written");
}

/// TLS, password, and the smallest proto-max-bulk-len Redis 7.0 accepts (1mb).
fn small_bulk_limit() -> ServerOpts {
    ServerOpts {
        tls: true,
        password: Some(PASSWORD.into()),
        extra_args: vec!["--proto-max-bulk-len".into(), "1mb".into()],
        ..ServerOpts::default()
    }
}

/// ACL user `writer` (password `writer-pass`) that may do anything but CONFIG.
fn deny_config(conn: &mut redis::Connection) {
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "writer",
            "on",
            ">writer-pass",
            "~*",
            "+@all",
            "-config",
        ])
        .query(conn)
        .unwrap();
}

/// Migrates 200 small keys and one of `mib` MiB into `target` and checks the refusal: fast, naming
/// key, size and setting, and seen from a lost connection when `reset`.
fn oversized_value_case(mib: usize, reset: bool, target: &str) {
    let src = Server::plain(Version::V6_2);
    let mut c = src.conn();
    data::seed_bulk(&mut c, 0, 200, "small:");
    // Random bytes: DUMP compresses repetitive strings with LZF, and this value must stay big.
    let value: Vec<u8> = (0..mib << 20).map(|_| rand::random::<u8>()).collect();
    let _: () = redis::cmd("SET")
        .arg("big\x01one")
        .arg(value)
        .query(&mut c)
        .unwrap();
    let dumped: Vec<u8> = redis::cmd("DUMP").arg("big\x01one").query(&mut c).unwrap();
    let work = Workdir::new();
    let started = Instant::now();
    // The RESTORE path's refusal is what this tests: big-key chunks (bigkeys.rs) would write
    // the value in pieces and meet "string exceeds maximum allowed size" instead.
    let migrate = work.ferry("migrate").from(&src).target(target).target_ca();
    let run = migrate
        .args(&["--retry-for", "60", "--big-key-bytes", "0"])
        .run();
    let took = started.elapsed();
    assert_refused(
        &run,
        &[
            "\"big\\x01one\"",
            &dumped.len().to_string(),
            "proto-max-bulk-len",
            "invalid bulk length",
        ],
    );
    assert!(!run.text().contains("writer-pass"));
    if reset {
        assert!(
            run.stderr
                .contains("asking the target whether it takes values that large"),
            "the refusal was not recognised from a lost connection:\n{}",
            run.text()
        );
    }
    // A bound, not a benchmark: retrying the value would go on for --retry-for (60 s).
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} to give up:\n{}",
        run.text()
    );
}

/// Item 5: a --report path that cannot be written is refused before any work, for migrate and
/// verify, and the probe leaves nothing behind.
#[test]
fn unusable_report_path_is_refused_before_work() {
    let src = rich_source();
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let missing = work.file("no-such-dir/report.json");
    let dir = work.path().to_string_lossy().into_owned();
    let cases: [(&str, &str); 3] = [
        (&dir, "is a directory"),
        (missing.to_str().unwrap(), "does not exist"),
        // A read-only place even for root (the tests may run as root, who can write any file).
        ("/proc/ferry-report.json", "cannot create a file in /proc"),
    ];
    let before: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    for (report, needle) in cases {
        for command in ["migrate", "verify"] {
            let mut cmd = bare(&work, &[command]);
            cmd.args([
                "--source",
                &src.url(),
                "--target",
                &dst.url(),
                "--target-cacert",
                &ca(),
                "--report",
                report,
            ]);
            let run = run_bare(cmd);
            assert_refused(&run, &["--report", needle, "Nothing was done"]);
            // Refused before work: no connection made, no verification summary printed.
            assert!(
                !run.stderr.contains("ferry: verify:") && !run.stderr.contains("checkpoint"),
                "{command} worked before refusing:\n{}",
                run.text()
            );
            assert_eq!(target_keys(&dst), 0, "{command} wrote to the target");
        }
    }
    let after: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "a file was left behind");
}

/// Item 7: --rdb names what a path is when it is not a file.
#[test]
fn rdb_path_that_is_not_a_file_is_named() {
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let dir = work.path().to_string_lossy().into_owned();
    for (path, needle) in [
        (dir.as_str(), "is a directory"),
        ("/dev/null", "is a character device"),
    ] {
        let run = work.ferry("migrate").args(&["--rdb", path]).to(&dst).run();
        assert_refused(&run, &[path, needle]);
        assert!(!run.text().contains("no such file"), "{}", run.text());
    }
    assert_eq!(target_keys(&dst), 0);
}

/// Item 7: a gzip-compressed RDB file is unpacked into a spool (path and size printed, deleted
/// at the end) and copied exactly; then verified from the same file.
#[test]
fn gzip_rdb_file_is_copied() {
    use std::io::Write;
    let src = rich_source();
    let work = Workdir::new();
    let rdb = save(&src, &work, "dump.rdb");
    let gz = work.file("backup.rdb.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&rdb).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let size = std::fs::metadata(&rdb).unwrap().len();
    let dst = Server::tls_target(Version::V7_0);
    let from_gz = |cmd| {
        work.ferry(cmd)
            .args(&["--rdb", gz.to_str().unwrap()])
            .to(&dst)
    };
    let run = from_gz("migrate").run();
    assert_eq!(run.code, 0, "{}", run.text());
    let spool = spool_path(&run);
    assert!(
        run.stderr.contains(&format!("{size} bytes")),
        "{}",
        run.text()
    );
    assert!(
        !spool.exists(),
        "the spool {} was left behind",
        spool.display()
    );
    assert_copied(&src, &dst);
    let run = from_gz("verify").run();
    assert_eq!(run.code, 0, "{}", run.text());
}

/// The spool named in "… spooled into PATH (…": checks that it is printed.
fn spool_path(run: &Run) -> PathBuf {
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains(" spooled into "))
        .unwrap_or_else(|| panic!("no spool line:\n{}", run.text()));
    let rest = line.split(" spooled into ").nth(1).unwrap();
    PathBuf::from(rest.split(" (").next().unwrap())
}

/// Item 7: `--rdb -` reads the file from standard input; a rerun with the same bytes is the same
/// job (its checkpoint says done), other bytes are another job.
#[test]
fn rdb_from_standard_input_and_named_pipe() {
    let src = rich_source();
    let work = Workdir::new();
    let rdb = save(&src, &work, "dump.rdb");
    let dst = Server::tls_target(Version::V7_0);
    let args = [
        "migrate",
        "--rdb",
        "-",
        "--target",
        &dst.url(),
        "--target-cacert",
        &ca(),
    ];
    let stdin_run = |args: &[&str], file: &Path| {
        let (mut cmd, report) = work.command(args);
        cmd.stdin(std::fs::File::open(file).unwrap());
        finish(cmd.output().unwrap(), &report)
    };
    let run = stdin_run(&args, &rdb);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stderr.contains("standard input spooled into"),
        "{}",
        run.text()
    );
    assert_eq!(run.report.as_ref().unwrap()["source"], "rdb:standard input");
    assert_copied(&src, &dst);
    let run = stdin_run(&args, &rdb);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stderr.contains("already completed"), "{}", run.text());
    // Other bytes on standard input: another job (a new checkpoint), here refused because the
    // target already holds its keys.
    let _: () = redis::cmd("SET")
        .arg("added")
        .arg("1")
        .query(&mut src.conn())
        .unwrap();
    let other = save(&src, &work, "other.rdb");
    let run = stdin_run(&args, &other);
    assert!(!run.stderr.contains("already completed"), "{}", run.text());
    assert_refused(&run, &["already holds"]);
    let _: () = redis::cmd("DEL")
        .arg("added")
        .query(&mut src.conn())
        .unwrap();

    // A named pipe, as `--rdb <(zcat backup.rdb.gz)` gives: read once, spooled like stdin.
    let dst2 = Server::tls_target(Version::V7_0);
    let fifo = work.file("pipe.rdb");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    let (fifo2, rdb2) = (fifo.clone(), rdb.clone());
    let writer = std::thread::spawn(move || {
        let bytes = std::fs::read(rdb2).unwrap();
        std::fs::write(fifo2, bytes).unwrap();
    });
    let run = work
        .ferry("migrate")
        .args(&["--rdb", fifo.to_str().unwrap()])
        .to(&dst2)
        .run();
    writer.join().unwrap();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stderr.contains("spooled into"), "{}", run.text());
    assert_copied(&src, &dst2);
}

/// Item 8a/8b: no colour codes when stderr is not a terminal; RUST_LOG works, FERRY_LOG wins,
/// both documented in --help.
#[test]
fn logs_plain_and_filtered_by_rust_log_or_ferry_log() {
    let src = rich_source();
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let migrate = work.migrate(&src, &dst);
    let migrate = migrate.args(&["--on-conflict", "replace", "--no-verify"]);
    // The preflight's info line: "source redis://… (Redis 6.2.…), target …".
    let info_line = "(Redis 6.2";
    let run = migrate.run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stderr.contains(info_line), "{}", run.stderr);
    assert!(
        !run.stderr.contains("\x1b["),
        "colour codes in a piped log:\n{:?}",
        run.stderr
    );
    let quiet = migrate.env("RUST_LOG", "error");
    let run = quiet.run();
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        !run.stderr.contains(info_line),
        "RUST_LOG ignored:\n{}",
        run.stderr
    );
    let run = quiet.env("FERRY_LOG", "info").run();
    assert!(
        run.stderr.contains(info_line),
        "FERRY_LOG lost:\n{}",
        run.stderr
    );
    for help in [&["--help"][..], &["migrate", "--help"][..]] {
        let out = bare(&work, help).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("RUST_LOG") && text.contains("FERRY_LOG"),
            "{help:?}:\n{text}"
        );
    }
}

/// Item 8c: verify's progress counts each pass against the keys of one side, so no figure
/// exceeds the total, also while a re-read pass lists every key again.
#[test]
fn verify_progress_figures_are_honest() {
    const KEYS: u64 = 400_000;
    let src = Server::plain(Version::V6_2);
    let dst = Server::plain(Version::V6_2);
    // The same keys with values of another size: every bucket differs, so pass 2 re-reads all.
    let populate = |s: &Server, size: u32| {
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(KEYS)
            .arg("k")
            .arg(size)
            .query(&mut s.conn())
            .unwrap();
    };
    populate(&src, 10);
    populate(&dst, 12);
    let work = Workdir::new();
    let run = work
        .between("verify", &src, &dst)
        .args(&["--progress", "log", "--log-every", "1", "--rounds", "0"])
        .run();
    assert_eq!(run.code, 1, "{}", run.text());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("listed source"))
        .collect();
    assert!(!lines.is_empty(), "no progress line:\n{}", run.stderr);
    for line in &lines {
        for side in ["source ", "target "] {
            let at = line.find(side).expect("side in progress line") + side.len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let n: u64 = digits.parse().expect("a count after the side");
            assert!(
                n <= KEYS,
                "{side}count exceeds the {KEYS} keys of a side: {line}"
            );
        }
    }
    // A line printed after the counts went down (the re-read pass began) says which pass it is.
    // Whether a 1 s tick lands in the second pass at all depends on the machine's speed, so
    // only the labelling is asserted, not that such a line exists.
    let listed = |l: &str| -> u64 {
        ["source ", "target "]
            .iter()
            .filter_map(|side| {
                let at = l.find(side)? + side.len();
                l[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    let mut high = 0;
    let mut second = false;
    for line in &lines {
        let n = listed(line);
        second |= n < high;
        high = high.max(n);
        if second {
            assert!(line.contains("re-read pass"), "unlabelled pass: {line}");
        }
    }
}

/// Item 8d: a wrong password is blamed on where it came from (the file, the variable), never
/// shown. Item 8e: a password in the URL and in the environment is refused as ambiguous.
#[test]
fn password_source_is_named_and_ambiguity_refused() {
    let src = rich_source();
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let plain = format!("rediss://127.0.0.1:{}", dst.port);
    let file = work.file("target.pass");
    std::fs::write(&file, "wrong-file-pass\n").unwrap();
    let base = work.ferry("migrate").from(&src).target_ca();
    let run = base
        .clone()
        .target(&plain)
        .args(&["--target-password-file", file.to_str().unwrap()])
        .run();
    assert_refused(
        &run,
        &[
            "authentication to the target",
            file.to_str().unwrap(),
            "--target-password-file",
        ],
    );
    assert!(!run.text().contains("wrong-file-pass"));
    assert!(
        !run.text().contains("FERRY_TARGET_PASSWORD"),
        "{}",
        run.text()
    );
    let run = base
        .clone()
        .target(&plain)
        .env("FERRY_TARGET_PASSWORD", "wrong-env-pass")
        .run();
    assert_refused(
        &run,
        &["authentication to the target", "FERRY_TARGET_PASSWORD"],
    );
    assert!(!run.text().contains("wrong-env-pass"));

    // The right password in the URL, another in the environment: refused, not guessed.
    let run = base
        .target(&dst.url())
        .env("FERRY_TARGET_PASSWORD", "other-env-pass")
        .run();
    assert_refused(&run, &["given twice", "URL", "FERRY_TARGET_PASSWORD"]);
    assert!(!run.text().contains("other-env-pass"));
    assert_eq!(target_keys(&dst), 0);
}

/// Item 8f: `--db 99` is checked on the source (live: SELECT; file: its DBs) and the source is
/// named, before anything is written.
#[test]
fn missing_db_is_blamed_on_the_source() {
    let src = rich_source();
    let dst = Server::tls_target(Version::V7_0);
    let work = Workdir::new();
    let run = work
        .between("migrate", &src, &dst)
        .args(&["--db", "0,99"])
        .run();
    assert_refused(
        &run,
        &["--db 99", "the source", "no database 99", "0 to 15"],
    );
    assert!(!run.text().contains("the target"), "{}", run.text());
    assert_eq!(target_keys(&dst), 0);
    let run = work
        .between("verify", &src, &dst)
        .args(&["--db", "99"])
        .run();
    assert_refused(&run, &["--db 99", "the source", "no database 99"]);
    assert!(!run.text().contains("the target"), "{}", run.text());

    let rdb = save(&src, &work, "dump.rdb");
    let run = work
        .ferry("migrate")
        .args(&["--rdb", rdb.to_str().unwrap()])
        .to(&dst)
        .args(&["--db", "7"])
        .run();
    assert_refused(
        &run,
        &[
            "--db 7",
            rdb.to_str().unwrap(),
            "database 7",
            "with keys: 0",
        ],
    );
    assert_eq!(target_keys(&dst), 0);
    let run = work
        .ferry("verify")
        .args(&["--rdb", rdb.to_str().unwrap()])
        .to(&dst)
        .args(&["--db", "7"])
        .run();
    assert_refused(&run, &["--db 7", "database 7", "with keys: 0"]);

    // A DB the source has but the target does not: the target, and the flag, are named.
    let run = work
        .between("migrate", &src, &dst)
        .args(&["--db-map", "0:40", "--fresh"])
        .run();
    assert_refused(&run, &["--db-map 0:40", "the target", "no database 40"]);
    assert_eq!(target_keys(&dst), 0);
}
