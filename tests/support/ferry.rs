//! Running the real `ferry` binary from integration tests.
//!
//! [`Workdir::ferry`] / [`Workdir::migrate`] / [`Workdir::migrate_file`] / [`Workdir::between`]
//! build one invocation (a [`Ferry`]) so that a test states only what differs from the usual
//! source, target and CA, adding its own flags ([`Ferry::fresh`], [`Ferry::batch_bytes`], …);
//! [`Ferry::spawn`] starts it in the background (a [`Running`]: wait for a moment, signal, kill,
//! collect); [`kill_runs`] is the kill-and-resume loop of the crash tests. Uses `servers` for
//! URLs and the test CA.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The outcome of one `ferry` run.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything printed on stderr.
    pub stderr: String,
    /// Everything printed on stdout.
    pub stdout: String,
    /// The parsed `--report` file, when one was written.
    pub report: Option<serde_json::Value>,
}

impl Run {
    /// stderr and stdout together, for assertions on messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stderr, self.stdout)
    }

    /// Fails the test unless the output (stderr and stdout) contains `needle`; prints it.
    pub fn assert_says(&self, needle: &str) {
        let text = self.text();
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    /// A number from the report, e.g. `num("keys.written")`.
    pub fn num(&self, path: &str) -> i64 {
        let mut v = self.report.as_ref().expect("no report written");
        for part in path.split('.') {
            v = &v[part];
        }
        v.as_i64()
            .unwrap_or_else(|| panic!("report field {path} is not a number: {v}"))
    }
}

/// A working directory for one test's checkpoints and reports.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A fresh temporary directory.
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file path inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `Command` for `ferry ARGS` running in this directory, with a fresh report path appended
    /// as `--report`.
    pub fn command(&self, args: &[&str]) -> (Command, PathBuf) {
        let report = self.file(&format!("report-{}.json", rand::random::<u32>()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.current_dir(self.path())
            .args(args)
            .arg("--report")
            .arg(&report)
            .env_remove("FERRY_SOURCE_PASSWORD")
            .env_remove("FERRY_TARGET_PASSWORD")
            .stdin(Stdio::null());
        (cmd, report)
    }

    /// Runs `ferry ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs `ferry ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let (mut cmd, report) = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("cannot run the ferry binary");
        finish(out, &report)
    }
}

/// Collects an `Output` and the report file into a `Run`.
pub fn finish(out: Output, report: &Path) -> Run {
    let report = std::fs::read(report)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("report is not JSON"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        report,
    }
}

/// One `ferry` invocation, built up so that each test states only what differs from the usual
/// `ferry COMMAND --source … --target … --target-cacert CA`: start from [`Workdir::ferry`], add
/// what the test is about, then [`Ferry::run`] (exit code, output and the parsed `--report`) or
/// [`Ferry::command`] to spawn it.
#[derive(Clone)]
pub struct Ferry<'w> {
    work: &'w Workdir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A side ferry can be pointed at: a standalone [`Server`](super::servers::Server) or a
/// [`Cluster`](super::servers::Cluster) (its seed URL; ferry discovers the rest).
pub trait Endpoint {
    /// The URL ferry is given (with the password, as a user would type it).
    fn url(&self) -> String;
    /// Whether it speaks TLS (then the test CA is passed).
    fn tls(&self) -> bool;
}

impl Endpoint for super::servers::Server {
    fn url(&self) -> String {
        super::servers::Server::url(self)
    }

    fn tls(&self) -> bool {
        self.tls
    }
}

impl Endpoint for super::servers::Cluster {
    fn url(&self) -> String {
        super::servers::Cluster::url(self)
    }

    fn tls(&self) -> bool {
        self.tls
    }
}

impl Workdir {
    /// `ferry COMMAND` in this directory, nothing else yet.
    pub fn ferry(&self, command: &str) -> Ferry<'_> {
        Ferry {
            work: self,
            args: vec![command.to_string()],
            env: Vec::new(),
        }
    }

    /// `ferry migrate --source SRC --target DST`, with the test CA for a TLS side.
    pub fn migrate(&self, src: &impl Endpoint, dst: &impl Endpoint) -> Ferry<'_> {
        self.between("migrate", src, dst)
    }

    /// `ferry migrate --rdb FILE --target DST`, with the test CA for a TLS target.
    pub fn migrate_file(&self, file: &Path, dst: &impl Endpoint) -> Ferry<'_> {
        self.ferry("migrate").rdb(file).to(dst)
    }

    /// `ferry COMMAND --source SRC --target DST`, with the test CA for a TLS side.
    pub fn between(&self, command: &str, src: &impl Endpoint, dst: &impl Endpoint) -> Ferry<'_> {
        self.ferry(command).from(src).to(dst)
    }
}

impl<'w> Ferry<'w> {
    /// `--source URL`.
    pub fn source(self, url: &str) -> Self {
        self.args(&["--source", url])
    }

    /// `--target URL`.
    pub fn target(self, url: &str) -> Self {
        self.args(&["--target", url])
    }

    /// `--source` of `server` (and `--source-cacert` with the test CA when it speaks TLS).
    pub fn from(self, server: &impl Endpoint) -> Self {
        let s = self.source(&server.url());
        if server.tls() {
            s.source_ca()
        } else {
            s
        }
    }

    /// `--target` of `server` (and `--target-cacert` with the test CA when it speaks TLS).
    pub fn to(self, server: &impl Endpoint) -> Self {
        let s = self.target(&server.url());
        if server.tls() {
            s.target_ca()
        } else {
            s
        }
    }

    /// `--target-cacert` with the test CA.
    pub fn target_ca(self) -> Self {
        let ca = super::servers::ca_cert();
        self.args(&["--target-cacert", &ca.to_string_lossy()])
    }

    /// `--source-cacert` with the test CA.
    pub fn source_ca(self) -> Self {
        let ca = super::servers::ca_cert();
        self.args(&["--source-cacert", &ca.to_string_lossy()])
    }

    /// `--rdb PATH`: an RDB file as the source.
    pub fn rdb(self, path: &Path) -> Self {
        self.args(&["--rdb", &path.to_string_lossy()])
    }

    /// `--progress MODE` (`none`, `log`, `json`).
    pub fn progress(self, mode: &str) -> Self {
        self.args(&["--progress", mode])
    }

    /// `--partition I/N`: this worker's share of the job.
    pub fn partition(self, i: u32, n: u32) -> Self {
        self.args(&["--partition", &format!("{i}/{n}")])
    }

    /// `--checkpoint PATH` (relative paths are inside the work directory).
    pub fn checkpoint(self, path: &str) -> Self {
        self.args(&["--checkpoint", path])
    }

    /// `--no-verify`: no verification after the copy.
    pub fn no_verify(self) -> Self {
        self.arg("--no-verify")
    }

    /// `--fresh`: ignore an existing checkpoint.
    pub fn fresh(self) -> Self {
        self.arg("--fresh")
    }

    /// `--on-conflict POLICY` (`fail`, `skip`, `replace`).
    pub fn on_conflict(self, policy: &str) -> Self {
        self.args(&["--on-conflict", policy])
    }

    /// `--db N`: copy only this DB.
    pub fn db(self, n: u32) -> Self {
        self.args(&["--db", &n.to_string()])
    }

    /// `--writers N`.
    pub fn writers(self, n: u32) -> Self {
        self.args(&["--writers", &n.to_string()])
    }

    /// `--batch-keys N`.
    pub fn batch_keys(self, n: u64) -> Self {
        self.args(&["--batch-keys", &n.to_string()])
    }

    /// `--batch-bytes N`.
    pub fn batch_bytes(self, n: u64) -> Self {
        self.args(&["--batch-bytes", &n.to_string()])
    }

    /// `--big-key-bytes N` (0: big keys off).
    pub fn big_key_bytes(self, n: u64) -> Self {
        self.args(&["--big-key-bytes", &n.to_string()])
    }

    /// `--rounds N`: verification rounds.
    pub fn rounds(self, n: u32) -> Self {
        self.args(&["--rounds", &n.to_string()])
    }

    /// The `side`'s password (`source` or `target`) in `FERRY_<SIDE>_PASSWORD`.
    pub fn password_env(self, side: &str, password: &str) -> Self {
        let var = format!("FERRY_{}_PASSWORD", side.to_uppercase());
        self.env(&var, password)
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// More arguments, as typed.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The `Command` (in the work directory, with a fresh `--report` path) and that path.
    pub fn command(&self) -> (Command, PathBuf) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (mut cmd, report) = self.work.command(&args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        (cmd, report)
    }

    /// Runs it to completion.
    pub fn run(&self) -> Run {
        let (mut cmd, report) = self.command();
        let out = cmd.output().expect("cannot run the ferry binary");
        finish(out, &report)
    }

    /// Starts it in the background, stdout and stderr piped (collected by [`Running::wait`]).
    pub fn spawn(&self) -> Running {
        self.spawn_with(Stdio::piped)
    }

    /// Starts it in the background with its output discarded: a run that is to be killed, and
    /// must not stall on a full pipe meanwhile.
    pub fn spawn_quiet(&self) -> Running {
        self.spawn_with(Stdio::null)
    }

    fn spawn_with(&self, io: fn() -> Stdio) -> Running {
        let (mut cmd, report) = self.command();
        let child = cmd.stdout(io()).stderr(io()).spawn().expect("start ferry");
        Running { child, report }
    }
}

/// A `ferry` started by [`Ferry::spawn`].
pub struct Running {
    /// The process (stdout and stderr are pipes; a test may take one to read it live).
    pub child: Child,
    report: PathBuf,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Sends it signal `name` (`INT`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Polls `cond` every `poll` until it holds; fails the test if ferry exits first or `limit`
    /// passes (`what` names the moment waited for).
    pub fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        poll: Duration,
        mut cond: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            assert!(Instant::now() < deadline, "no {what} within {limit:?}");
            assert!(!self.exited(), "ferry exited before {what}");
            if cond() {
                return;
            }
            std::thread::sleep(poll);
        }
    }

    /// Waits (polling every 10 ms, at most `limit`) until DB 0 of `server` holds `n` keys:
    /// ferry is writing.
    pub fn until_keys(&mut self, server: &super::servers::Server, n: i64, limit: Duration) {
        let what = format!("{n} keys written");
        self.wait_until(&what, limit, Duration::from_millis(10), || {
            server.dbsize() >= n
        });
    }

    /// SIGKILLs it (a crash: nothing more is saved) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL ferry");
        self.child.wait().expect("reap ferry");
    }

    /// Waits for it to exit and collects its outcome.
    pub fn wait(self) -> Run {
        let out = self
            .child
            .wait_with_output()
            .expect("collect ferry's output");
        finish(out, &self.report)
    }

    /// [`Running::wait`] for at most `limit`: the outcome and the moment it exited. Past
    /// `limit` ferry is killed and the test fails with what it printed.
    pub fn wait_within(mut self, limit: Duration) -> (Run, Instant) {
        let deadline = Instant::now() + limit;
        while !self.exited() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "ferry still ran {}s later (killed); it printed:\n{}",
                    limit.as_secs(),
                    self.wait().text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let exited = Instant::now();
        (self.wait(), exited)
    }
}

/// Sends signal `name` (`STOP`, `CONT`, `INT`, `TERM`, …) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// When [`kill_runs`] kills one run.
#[derive(Debug, Clone, Copy)]
pub enum KillAt {
    /// After a random pause of up to this many ms (start-up, preflight, first batches).
    Early(u64),
    /// Once `reached(point, started)` holds.
    Point(i64),
}

/// The kill-and-resume loop: runs `ferry` once per entry of `at`, SIGKILLing each run at
/// its moment (`reached` is polled every `poll`; a run that makes no progress for 90 s fails the
/// test). Returns how many runs were killed while `unfinished()` still held, i.e. mid-copy.
pub fn kill_runs(
    ferry: &Ferry,
    at: &[KillAt],
    poll: Duration,
    mut reached: impl FnMut(i64, std::time::SystemTime) -> bool,
    mut unfinished: impl FnMut() -> bool,
) -> usize {
    use rand::Rng;
    use std::time::SystemTime;
    let mut rng = rand::rng();
    let mut kills = 0;
    for (i, point) in at.iter().enumerate() {
        let started = SystemTime::now();
        let mut run = ferry.spawn_quiet();
        match *point {
            KillAt::Early(ms) => std::thread::sleep(Duration::from_millis(rng.random_range(0..ms))),
            KillAt::Point(p) => {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !reached(p, started) && !run.exited() {
                    assert!(Instant::now() < deadline, "run {i} made no progress");
                    std::thread::sleep(poll);
                }
            }
        }
        if !run.exited() {
            run.kill();
            if unfinished() {
                kills += 1;
            }
        }
    }
    kills
}
