//! Running the real `ferry` binary from integration tests.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
