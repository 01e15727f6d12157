//! The end-of-run report: a human summary on stderr and, with `--report`, the same as JSON.
//!
//! Reports are read by people deciding on a cutover and by job runners, so they say plainly what
//! happened, never contain a password, and escape binary key names.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::counts::Counts;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything copied (and verified equal, when verification ran).
    Ok,
    /// Copied, but verification found differences.
    Mismatch,
    /// Stopped by a signal; resumable.
    Interrupted,
    /// Stopped by an error.
    Error,
}

impl Status {
    /// The process exit code for this status.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Mismatch => 1,
            Status::Interrupted | Status::Error => 2,
        }
    }
}

/// The JSON report of `ferry migrate`.
#[derive(Debug, Serialize)]
pub struct MigrateReport {
    /// How the run ended.
    pub status: Status,
    /// Source, without password.
    pub source: String,
    /// Target, without password.
    pub target: String,
    /// True when this run continued from a checkpoint.
    pub resumed: bool,
    /// Key counts over the whole job (all runs sharing the checkpoint).
    pub keys: KeyCounts,
    /// Key and payload bytes written, whole job.
    pub bytes: u64,
    /// The most any expiry written may be off from the source's, in ms, whole job: half the
    /// widest clock bracket around a PTTL read (0 for an RDB file, whose expiries are exact;
    /// see `read/expiry.rs`).
    pub expiry_uncertainty_ms: u64,
    /// Wall time of this run.
    pub elapsed_ms: u64,
    /// Checkpoint file used.
    pub checkpoint: Option<String>,
    /// `--on-key-error skip`: the dead-letter file (keys refused by the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// The error, when status is `error`.
    pub error: Option<String>,
    /// The verification result, when it ran.
    pub verify: Option<serde_json::Value>,
    /// Things the user should know about this run (RDB file source: what was skipped or
    /// re-encoded, and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// ferry's own peak resident memory over this run (Linux; `None` elsewhere), so a user
    /// sizing the machine that runs the job has the figure.
    pub peak_rss_bytes: Option<u64>,
    /// `--follow`: what the follower did (events, re-copies, reconciliation passes, gaps, lag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<serde_json::Value>,
    /// `--follow`: the cutover's verdict and evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutover: Option<serde_json::Value>,
    /// `--partition`: which share of which job this report is (read by `ferry report merge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<ShareOf>,
}

/// This process's peak resident set size so far (`VmHWM` of `/proc/self/status`, Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Key counters as reported.
#[derive(Debug, Default, Serialize)]
pub struct KeyCounts {
    /// Keys listed by the source.
    pub scanned: u64,
    /// Keys written to the target (whole job).
    pub written: u64,
    /// Keys written by this run alone.
    pub written_this_run: u64,
    /// Keys skipped because their TTL ran out before they could be written.
    pub expired_skipped: u64,
    /// Keys that disappeared from the source between SCAN and DUMP.
    pub vanished: u64,
    /// Keys that already existed on the target.
    pub conflicts: u64,
    /// RDB file source: keys re-encoded for a target with an older RDB version.
    pub reencoded: u64,
    /// RDB file source: keys holding an empty collection, skipped as Redis skips them on load.
    pub empty_skipped: u64,
    /// RDB file source: module keys skipped with `--skip-modules`.
    pub modules_skipped: u64,
    /// Keys over `--big-key-bytes`, copied in chunks (also counted in `written`).
    pub big_keys: u64,
    /// `--on-key-error skip`: keys the target refused, written to the dead-letter file instead.
    pub dead_lettered: u64,
}

impl KeyCounts {
    /// Builds the counters from job totals and this run's writes.
    pub fn from_counts(total: &Counts, written_this_run: u64) -> KeyCounts {
        KeyCounts {
            scanned: total.scanned,
            written: total.written,
            written_this_run,
            expired_skipped: total.expired_skipped,
            vanished: total.vanished,
            conflicts: total.conflicts,
            reencoded: total.reencoded,
            empty_skipped: total.empty_skipped,
            modules_skipped: total.modules_skipped,
            big_keys: total.big_keys,
            dead_lettered: total.dead_lettered,
        }
    }
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(path: &Path, report: &T) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(report)?;
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

/// Refuses a `--report` path that could not be written at the end: a directory, a path whose
/// directory is missing, an existing read-only file, or a directory where no file can be
/// created (probed by creating and removing a temporary file there, so nothing is left behind).
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    check_writable_as(path, "--report")
}

/// [`check_writable`] for the file of option `flag` (named in the messages).
pub fn check_writable_as(path: &Path, flag: &str) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        anyhow::bail!(
            "{flag} {shown} is a directory; give a file path, e.g. {shown}/{}",
            if flag == "--report" {
                "ferry-report.json"
            } else {
                "ferry-dead-letter.jsonl"
            }
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "{flag} {shown}: the directory {} does not exist; create it or give another path",
            dir.display()
        );
    }
    if path.exists() {
        // Opening for append changes nothing in the file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("{flag} {shown}: the file exists but cannot be written"))?;
        return Ok(());
    }
    let probe = dir.join(format!(".ferry-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| {
            format!(
                "{flag} {shown}: cannot create a file in {}; give a path in a writable directory",
                dir.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub use crate::display::{escape_key, human_bytes};

/// What identifies a worker's report, written into it by `migrate` and `verify` with
/// `--partition` (the `partition` field).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareOf {
    /// `migrate` or `verify`.
    pub command: String,
    /// The job without its partition (source, target, DBs; see [`crate::job::Job::whole_job_id`]).
    pub job: String,
    /// The share, `0..count`.
    pub index: u32,
    /// Number of shares.
    pub count: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_binary() {
        assert_eq!(escape_key(b"a\x00\xff\"b"), r#""a\x00\xff\"b""#);
    }
}
