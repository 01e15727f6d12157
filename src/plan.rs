//! The resolved plan of each command: what was typed, as the commands use it.
//!
//! `cli.rs` is what the user typed (clap types); `resolve.rs` turns it into one of these plans
//! (the job's endpoints, TLS and DBs resolved, durations as [`Duration`], policies as plain
//! enums, limits as the throttle takes them). Everything below `main.rs` takes its command's
//! plan and never sees clap. Plain data: this module may name the job, the policies, the
//! progress mode and the throttle's limits, and calls nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::job::Job;
use crate::policy::{OnConflict, OnKeyError};
use crate::progress::ProgressMode;
use crate::throttle::Limits;

/// The source and target as a report names them before the job is resolved (no password).
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// The source URL (redacted), `rdb:FILE`, or empty (see each command).
    pub source: String,
    /// The target URL (redacted).
    pub target: String,
}

/// How results are shown (`--report`, `--progress`, `--log-every`, `--metrics-addr`).
#[derive(Debug, Clone)]
pub struct Output {
    /// `--report`: where the JSON report goes.
    pub report: Option<PathBuf>,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--log-every`, as given (0 allowed: each user decides its floor).
    pub log_every: Duration,
    /// `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
}

/// How a verification compares (`--ttl-tolerance`, `--rounds`, `--round-pause`).
#[derive(Debug, Clone, Copy)]
pub struct VerifySettings {
    /// `--ttl-tolerance`, in milliseconds (compared with TTLs in ms).
    pub ttl_tolerance_ms: u64,
    /// `--rounds`, as given.
    pub rounds: u32,
    /// `--round-pause`.
    pub round_pause: Duration,
}

/// `migrate --follow` and `--reconcile`.
#[derive(Debug, Clone, Copy)]
pub struct FollowSettings {
    /// `--follow`: keep the target in step after the copy, until `ferry cutover`.
    pub follow: bool,
    /// `--reconcile-every` (`None`: the follower's default).
    pub reconcile_every: Option<Duration>,
    /// `--dirty-budget`: most keys waiting to be re-read.
    pub dirty_budget: usize,
    /// `--reconcile`: one reconciliation pass instead of the copy's verification.
    pub reconcile: bool,
    /// `--enable-notifications`: turn the source's keyspace notifications on.
    pub enable_notifications: bool,
}

/// `ferry migrate`, resolved.
#[derive(Clone)]
pub struct MigratePlan {
    /// The job as resolved (the flow prepares its own copy, see `migrate/flow.rs`).
    pub job: Job,
    /// How the report names both sides until the job's source is opened.
    pub names: Names,
    /// `--on-conflict`.
    pub on_conflict: OnConflict,
    /// `--on-key-error`.
    pub on_key_error: OnKeyError,
    /// `--checkpoint` (`None`: named after the job's fingerprint).
    pub checkpoint: Option<PathBuf>,
    /// `--fresh`: ignore an existing checkpoint.
    pub fresh: bool,
    /// `--no-verify`: skip the verification after the copy.
    pub no_verify: bool,
    /// `--skip-functions` (`--rdb`).
    pub skip_functions: bool,
    /// `--skip-modules` (`--rdb`).
    pub skip_modules: bool,
    /// `--dead-letter` (`None`: beside the checkpoint).
    pub dead_letter: Option<PathBuf>,
    /// `--keys-from`: copy only the keys this file lists.
    pub keys_from: Option<PathBuf>,
    /// `--max-keys-per-sec`, `--max-bytes-per-sec`, `--source-latency-ms`.
    pub limits: Limits,
    /// How results are shown.
    pub output: Output,
    /// The verification after the copy.
    pub verify: VerifySettings,
    /// `--follow` and `--reconcile`.
    pub follow: FollowSettings,
}

/// `ferry verify`, resolved.
#[derive(Clone)]
pub struct VerifyPlan {
    /// The job (its writing knobs keep their defaults: verify writes nothing).
    pub job: Job,
    /// How the report names both sides until they are opened.
    pub names: Names,
    /// How the sides are compared.
    pub verify: VerifySettings,
    /// `--sample N`: about N random keys per DB.
    pub sample: Option<u64>,
    /// The load limits on a live source.
    pub limits: Limits,
    /// How results are shown.
    pub output: Output,
}

/// `ferry check`, resolved.
#[derive(Clone)]
pub struct CheckPlan {
    /// The job the checks are for.
    pub job: Job,
    /// How the report names both sides.
    pub names: Names,
    /// The `--on-conflict` the migration will use.
    pub on_conflict: OnConflict,
    /// `--follow`: `Some(--enable-notifications)`, else `None`.
    pub follow: Option<bool>,
    /// `--report`.
    pub report: Option<PathBuf>,
}

/// `ferry cutover`, resolved.
#[derive(Debug, Clone)]
pub struct CutoverPlan {
    /// `--checkpoint`: the followers' checkpoints (one per `--partition` worker).
    pub checkpoints: Vec<PathBuf>,
    /// `--timeout`: how long to wait for a quiet source.
    pub timeout: Duration,
    /// `--quiet`: how long without a source write counts as quiet.
    pub quiet: Duration,
    /// `--pause-source`: pause the source's writes for at most this long.
    pub pause_source: Option<Duration>,
    /// `--full-verify`.
    pub full_verify: bool,
    /// `--report`.
    pub report: Option<PathBuf>,
}

/// A command line that could not become a plan (a bad URL, an unreadable password file, a
/// certificate that does not load, …): what its report still says, and why.
#[derive(Debug)]
pub struct Refused {
    /// How the report names both sides.
    pub names: Names,
    /// The verification settings a verify report shows.
    pub verify: VerifySettings,
    /// What was wrong, and what to do.
    pub error: anyhow::Error,
}
