//! What the user typed: the command line, parsed by clap.
//!
//! This is the "low-level" stage (in ripgrep's terms): flags exactly as given, no I/O.
//! `resolve.rs` turns it into a plan (`plan.rs`), reading password files and certificates and
//! checking combinations; nothing else reads these types. The values of `--on-conflict`,
//! `--on-key-error` and `--progress` are parsed straight into the plain enums of `policy.rs`
//! and `progress.rs` (a table each: name, help, value).

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::error::{Error, ErrorKind};
use clap::{Arg, Args, Parser, Subcommand};

use crate::endpoint::tls::TlsOptions;
use crate::policy::{OnConflict, OnKeyError};
use crate::progress::ProgressMode;

/// Move a Redis dataset from an old server or cluster into a new (TLS) one, and prove nothing
/// was lost.
///
/// ferry reads every key with SCAN + PTTL + DUMP from the source (or from an RDB file) and
/// writes it with RESTORE … ABSTTL to the target, in parallel pipelined batches, keeping each
/// key's expiry to the millisecond. It keeps a checkpoint so a rerun of the same command resumes
/// where a crashed run stopped, and verifies both sides key by key before you cut over.
///
/// Passwords: in the URL (rediss://user:PASSWORD@host:port), in FERRY_SOURCE_PASSWORD /
/// FERRY_TARGET_PASSWORD, or in a file (--source-password-file / --target-password-file).
/// They are never printed.
///
/// Exit codes: 0 done (and verified equal); 1 done, but verification found differences;
/// 2 error or interrupted (rerun the same command to resume).
#[derive(Debug, Parser)]
#[command(after_help = ENV_HELP, after_long_help = FERRY_LONG_HELP)]
#[command(name = "ferry", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The environment variables ferry reads, as a literal so that `concat!` can append it to the
/// examples of each command's long help.
macro_rules! env_help {
    () => {
        "Environment:
  FERRY_SOURCE_PASSWORD, FERRY_TARGET_PASSWORD
          Passwords. Give each in one place only: the URL, this variable or --*-password-file.
  FERRY_LOG, RUST_LOG
          Log filter, e.g. FERRY_LOG=debug [default: info]. FERRY_LOG wins when both are set.
  TMPDIR
          Where --rdb - (standard input), a named pipe or a gzip-compressed --rdb file is
          spooled first; it needs room for the whole uncompressed file [default: /tmp]."
    };
}

/// The environment variables ferry reads, shown at the end of every `-h`.
pub const ENV_HELP: &str = env_help!();

/// The end of `ferry --help`: a typical session, then the environment.
const FERRY_LONG_HELP: &str = concat!(
    "Examples:
  # Will it work? (writes nothing; exit 0 ready, 1 warnings, 2 would fail)
  ferry check --source redis://old:6379 --target rediss://new:6379 --target-cacert ca.pem

  # Copy every non-empty DB, verify, and keep a report (rerun the same command to resume)
  FERRY_TARGET_PASSWORD=… ferry migrate --source redis://old:6379 \\
      --target rediss://app@new:6379 --target-cacert ca.pem --report migrate.json

  # Compare both sides again later, without writing
  ferry verify --source redis://old:6379 --target rediss://new:6379 --target-cacert ca.pem

",
    env_help!()
);

/// The end of `ferry migrate --help`.
const MIGRATE_LONG_HELP: &str = concat!(
    "Examples:
  # Live source, TLS target with its own CA, a JSON report
  FERRY_TARGET_PASSWORD=… ferry migrate --source redis://old:6379 \\
      --target rediss://app@new:6379 --target-cacert ca.pem --report migrate.json

  # DBs 0 and 3 only, source DB 3 written into target DB 1, gentle on the source
  ferry migrate --source redis://old:6379 --target rediss://new:6379 \\
      --db 0,3 --db-map 3:1 --max-keys-per-sec 20000 --source-latency-ms 5

  # From a backup file (gzip or `-` for standard input also work)
  ferry migrate --rdb dump.rdb --target rediss://new:6379 --on-conflict replace

  # Keep following the live source after the copy, until `ferry cutover`
  ferry migrate --source redis://old:6379 --target rediss://new:6379 --follow \\
      --checkpoint job.checkpoint.json

",
    env_help!()
);

/// The end of `ferry verify --help`.
const VERIFY_LONG_HELP: &str = concat!(
    "Examples:
  # Every key of both sides, TTLs within 2 s
  ferry verify --source redis://old:6379 --target rediss://new:6379 --ttl-tolerance 2000

  # A quick look at about 10 000 random keys per DB
  ferry verify --source redis://old:6379 --target rediss://new:6379 --sample 10000

  # A backup file against the target it was loaded into
  ferry verify --rdb dump.rdb --target rediss://new:6379 --report verify.json

",
    env_help!()
);

/// The end of `ferry check --help`.
const CHECK_LONG_HELP: &str = concat!(
    "Examples:
  # The same source, target and selection flags as the migrate to come
  ferry check --source redis://old:6379 --target rediss://new:6379 --db 0,3 \\
      --on-conflict replace --report check.json

",
    env_help!()
);

/// ferry's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every key (value and TTL) from the source into the target, then verify.
    #[command(after_help = ENV_HELP, after_long_help = MIGRATE_LONG_HELP)]
    Migrate(MigrateArgs),
    /// Compare source and target key by key (counts, logical checksums, TTLs) without writing.
    #[command(after_help = ENV_HELP, after_long_help = VERIFY_LONG_HELP)]
    Verify(VerifyArgs),
    /// Ask the follower (`migrate --follow`) of a checkpoint to cut over: quiet or paused source,
    /// drain, verify; exit 0 GO, 1 NO-GO, 2 error.
    Cutover(CutoverArgs),
    /// Check, without writing anything, whether `migrate` with the same flags would work.
    ///
    /// Prints one row per check (ok, warn or fail, what was found, what to do). Exit codes:
    /// 0 ready; 1 warnings only; 2 something would fail.
    #[command(after_help = ENV_HELP, after_long_help = CHECK_LONG_HELP)]
    Check(CheckArgs),
    /// Work with JSON reports (`ferry report merge`).
    #[command(subcommand)]
    Report(ReportCommand),
}

/// Flags of `ferry check`: the source, target and selection flags of `migrate`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub job: JobArgs,

    /// The `--on-conflict` the migration will use: with `fail`, keys of the source already on
    /// the target make the check fail.
    #[arg(long, value_parser = Choose(ON_CONFLICT), default_value = "fail", help_heading = "Target")]
    pub on_conflict: OnConflict,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Also check what `migrate --follow` needs: the source's keyspace notifications.
    #[arg(long, conflicts_with = "rdb")]
    pub follow: bool,

    /// With --follow: ferry would turn the notifications on itself (CONFIG SET); checks that
    /// the source allows it.
    #[arg(long, requires = "follow")]
    pub enable_notifications: bool,

    /// Also write the checks as a JSON document here.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<PathBuf>,
}

/// `ferry report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Combine the --report files of the workers of a --partition job into one: totals summed,
    /// status the worst (exit code as for one run). Refuses reports of different jobs or
    /// commands, and a set missing a share.
    Merge(MergeArgs),
}

/// Flags of `ferry report merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The workers' JSON reports (one per share).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Write the merged report here [default: standard output].
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Flags of `ferry migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub job: JobArgs,

    /// What to do with keys that already exist on the target.
    ///
    /// fail: check before writing anything and stop, naming the first offending keys.
    /// replace: overwrite them. skip: keep the target's copy and count it.
    #[arg(long, value_parser = Choose(ON_CONFLICT), default_value = "fail", help_heading = "Target")]
    pub on_conflict: OnConflict,

    /// Checkpoint file kept during the run, for resuming [default: ./ferry-<job id>.checkpoint.json].
    #[arg(long, value_name = "PATH", help_heading = "Checkpoint")]
    pub checkpoint: Option<PathBuf>,

    /// Ignore an existing checkpoint and start from the beginning.
    #[arg(long, help_heading = "Checkpoint")]
    pub fresh: bool,

    /// Skip the verification that runs after the copy.
    #[arg(long, help_heading = "Verification")]
    pub no_verify: bool,

    /// --rdb: do not copy the file's function libraries (by default they are loaded on the
    /// target with FUNCTION LOAD, which needs Redis 7.0+ or Valkey).
    #[arg(long, help_heading = "Selection")]
    pub skip_functions: bool,

    /// --rdb: skip module data (keys of module types and module aux data) instead of stopping
    /// because the target cannot load it.
    #[arg(long, help_heading = "Selection")]
    pub skip_modules: bool,

    /// What to do with a key the target refuses for a reason of that key alone (its ACL user
    /// may not write the key's name, the value is over proto-max-bulk-len, the payload is one
    /// the target cannot load).
    ///
    /// stop: stop the job with exit 2, naming the key and the reason. skip: write the key to the
    /// --dead-letter file, go on with the others, and end with exit 1 (copy them later with
    /// --keys-from once the cause is fixed). Failures that are not one key's fault (connection
    /// lost, out of memory, wrong password, a cluster or server not ready) always stop or retry.
    #[arg(long, value_parser = Choose(ON_KEY_ERROR), default_value = "stop")]
    pub on_key_error: OnKeyError,

    /// --on-key-error skip: where the skipped keys are written, one JSON object per line (db,
    /// key, key_hex, type, size, cause, reason, time) [default: next to the checkpoint,
    /// <checkpoint name>.dead-letter.jsonl]. Kept across resumes; started afresh with a new job.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// Copy only the keys listed in FILE: a --dead-letter file (each line's db and key_hex), or
    /// a plain list, one key per line, of DB 0 or of the single --db given (a line is the key's
    /// bytes as they are; a line in double quotes is read as ferry prints keys, \xNN for any
    /// byte, \\ and \" — the form for keys that hold a newline or are not UTF-8). A key no
    /// longer on the source is counted as vanished. Live source only.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rdb", "follow", "reconcile", "partition"])]
    pub keys_from: Option<PathBuf>,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub verify: VerifyTuning,

    #[command(flatten)]
    pub follow: FollowArgs,
}

/// Flags of `migrate --follow`.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Follow")]
pub struct FollowArgs {
    /// After the copy, keep the target in step with the live source (keyspace events, and
    /// reconciliation passes whenever events may have been lost) until `ferry cutover`.
    #[arg(long, conflicts_with = "rdb")]
    pub follow: bool,

    /// --follow: seconds between reconciliation passes [default: 300 with keyspace events, as a
    /// safety net; 5 without, where passes are how changes are found].
    #[arg(long, value_name = "SECS", requires = "follow")]
    pub reconcile_every: Option<u64>,

    /// --follow: most keys waiting to be re-read (and remembered for the cutover's verification);
    /// beyond it a reconciliation pass finds them instead.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub dirty_budget: usize,

    /// Without --follow, on a rerun: re-copy or delete only the keys that differ (one
    /// reconciliation pass: bucket digests of both sides), then verify — the way to bring the
    /// target up to date after the source changed during the copy.
    #[arg(long, conflicts_with_all = ["follow", "rdb"])]
    pub reconcile: bool,

    /// --follow: when the source's keyspace notifications are off, turn them on (CONFIG SET
    /// notify-keyspace-events, adding "EA") instead of following by reconciliation passes alone.
    #[arg(long, requires = "follow")]
    pub enable_notifications: bool,
}

/// Flags of `ferry cutover`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The checkpoint file of the running `ferry migrate --follow`. Repeat it for the workers of
    /// a --partition job: every follower is asked at once, and the verdict is GO only when each
    /// of them answers GO for its share.
    #[arg(long, value_name = "PATH", required = true)]
    pub checkpoint: Vec<PathBuf>,

    /// Seconds to wait for the source to go quiet (no write for --quiet seconds, nothing left
    /// to copy) before answering NO-GO (the follower goes on following).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,

    /// Seconds without a source write that count as quiet.
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub quiet: u64,

    /// Pause the source's writes (CLIENT PAUSE … WRITE, Redis 6.2+) for at most SECS instead of
    /// waiting for the application to stop writing. After GO the pause lasts until its end.
    #[arg(long, value_name = "SECS")]
    pub pause_source: Option<u64>,

    /// Verify every key, even when the follower can prove which keys may differ.
    #[arg(long)]
    pub full_verify: bool,

    /// Write the verdict as JSON here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Flags of `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub job: JobArgs,

    #[command(flatten)]
    pub verify: VerifyTuning,

    /// Check only about N randomly chosen keys per database (a quick check; reported as a sample).
    #[arg(long, value_name = "N", help_heading = "Verification")]
    pub sample: Option<u64>,

    /// Only the reading knobs: verify writes nothing.
    #[command(flatten)]
    pub tuning: ReadTuningArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Verification settings shared by `migrate` and `verify`.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Verification")]
pub struct VerifyTuning {
    /// How far a key's TTL may differ between the two sides, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub ttl_tolerance: u64,

    /// Re-check differing keys this many times (a live source keeps changing) before reporting.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,

    /// Pause between verification rounds, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub round_pause: u64,
}

/// What every command that reads keys is about: the two sides, and which databases.
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    #[command(flatten)]
    pub endpoints: EndpointArgs,

    #[command(flatten)]
    pub selection: SelectionArgs,
}

/// Where to read and write, and how to connect securely.
#[derive(Debug, Args, Clone)]
pub struct EndpointArgs {
    /// Source server: redis://[user[:password]@]host:port (rediss:// for TLS).
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "rdb",
        help_heading = "Source"
    )]
    pub source: Option<String>,

    /// Read the source from an RDB file instead of a live server. A gzip-compressed file is
    /// unpacked to a temporary file first; `-` reads the file from standard input (spooled to a
    /// temporary file, since the file is checked whole before the first write).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "source",
        help_heading = "Source"
    )]
    pub rdb: Option<PathBuf>,

    /// Target server: rediss://[user[:password]@]host:port (redis:// for plain TCP).
    #[arg(long, value_name = "URL", help_heading = "Target")]
    pub target: String,

    // Declared after --target so that `--help` lists the headings Source, Target, TLS in that
    // order, and each side's TLS flags together.
    #[command(flatten)]
    pub source_conn: SourceConnArgs,

    #[command(flatten)]
    pub target_conn: TargetConnArgs,
}

/// Declares one side's connection flags, which source and target have alike but for their
/// names and a few words of help: `--<side>-password-file`, the five TLS flags and
/// `--<side>-map-addr`. clap names a flag after its field, so the two sides cannot share one
/// struct; each gets its own, with the ids `<side>_cacert` … that `requires` and clap's error
/// messages use. (Help given as `help = …` keeps no trailing period, like clap's doc comments.)
macro_rules! conn_args {
    (
        $(#[$doc:meta])*
        $name:ident, $side:literal, heading = $heading:literal,
        insecure = $insecure:literal,
        map_addr = $map_addr:literal $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Args, Clone)]
        pub struct $name {
            #[arg(
                id = concat!($side, "_password_file"),
                long = concat!($side, "-password-file"),
                value_name = "FILE",
                help_heading = $heading,
                help = concat!(
                    "Read the ", $side, " password from this file (first line), instead of the ",
                    "URL or env (give it in one place only)"
                )
            )]
            pub password_file: Option<PathBuf>,

            #[arg(
                id = concat!($side, "_cacert"),
                long = concat!($side, "-cacert"),
                value_name = "FILE",
                help_heading = "TLS",
                help = concat!(
                    "CA certificate(s) (PEM) that signed the ", $side,
                    "'s TLS certificate [default: system store]"
                )
            )]
            pub cacert: Option<PathBuf>,

            #[arg(
                id = concat!($side, "_cert"),
                long = concat!($side, "-cert"),
                value_name = "FILE",
                requires = concat!($side, "_key"),
                help_heading = "TLS",
                help = concat!(
                    "Client certificate (PEM) for a ", $side, " that requires mutual TLS"
                )
            )]
            pub cert: Option<PathBuf>,

            #[arg(
                id = concat!($side, "_key"),
                long = concat!($side, "-key"),
                value_name = "FILE",
                requires = concat!($side, "_cert"),
                help_heading = "TLS",
                help = concat!("Private key (PEM) of --", $side, "-cert")
            )]
            pub key: Option<PathBuf>,

            #[arg(
                id = concat!($side, "_sni"),
                long = concat!($side, "-sni"),
                value_name = "NAME",
                help_heading = "TLS",
                help = concat!(
                    "Name to send (SNI) and check the ", $side,
                    "'s certificate against, instead of the URL host"
                )
            )]
            pub sni: Option<String>,

            #[arg(
                id = concat!($side, "_insecure"),
                long = concat!($side, "-insecure"),
                help_heading = "TLS",
                help = $insecure
            )]
            pub insecure: bool,

            #[arg(
                id = concat!($side, "_map_addr"),
                long = concat!($side, "-map-addr"),
                value_name = "ANNOUNCED=REACHABLE",
                value_delimiter = ',',
                help_heading = $heading,
                help = $map_addr
            )]
            pub map_addr: Vec<String>,
        }

        impl $name {
            /// This side's TLS flags, as typed.
            pub fn tls(&self) -> TlsOptions {
                TlsOptions {
                    cacert: self.cacert.clone(),
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    sni: self.sni.clone(),
                    insecure: self.insecure,
                }
            }
        }
    };
}

conn_args! {
    /// How to reach the source: password file, TLS, cluster node addresses.
    SourceConnArgs, "source", heading = "Source",
    insecure = "DANGEROUS: do not verify the source's TLS certificate",
    map_addr = "Source cluster: connect to the node the cluster announces as ANNOUNCED \
        (host:port) at REACHABLE (host:port) instead, e.g. through a tunnel (repeatable, or \
        comma-separated)",
}

conn_args! {
    /// How to reach the target: password file, TLS, cluster node addresses.
    TargetConnArgs, "target", heading = "Target",
    insecure = "DANGEROUS: do not verify the target's TLS certificate (anyone in the path can \
        read the data and the password)",
    map_addr = "Target cluster: connect to the node the cluster announces as ANNOUNCED \
        (host:port) at REACHABLE (host:port) instead (repeatable, or comma-separated). TLS \
        certificates are still checked against the announced name (or --target-sni)",
}

/// Which databases to copy, and where to.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Selection")]
pub struct SelectionArgs {
    /// Databases to copy, comma-separated [default: every non-empty database].
    #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
    pub db: Vec<u32>,

    /// Write source database S into target database T (repeatable, or comma-separated S:T).
    #[arg(long, value_name = "S:T", value_delimiter = ',')]
    pub db_map: Vec<String>,

    /// Do only share I of a job split into N disjoint shares (0 ≤ I < N), one per worker
    /// process: by cluster masters or slots, by DB, else by key hash (docs/kubernetes.md).
    #[arg(long, value_name = "I/N", value_parser = crate::partition::parse)]
    pub partition: Option<crate::partition::Partition>,
}

/// `--batch-keys` when not given (and for `verify`, which writes nothing).
pub const DEFAULT_BATCH_KEYS: usize = 5000;

/// `--writers` when not given (and for `verify`, which writes nothing).
pub const DEFAULT_WRITERS: usize = 4;

/// Throughput knobs of the commands that write (`migrate`, `check`). The defaults suit most jobs.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Tuning")]
pub struct TuningArgs {
    /// The knobs of reading, shared with `verify`.
    #[command(flatten)]
    pub read: ReadTuningArgs,

    /// Most keys per RESTORE batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_KEYS, value_name = "N")]
    pub batch_keys: usize,

    /// Parallel writer connections to the target.
    #[arg(long, default_value_t = DEFAULT_WRITERS, value_name = "N")]
    pub writers: usize,
}

/// Throughput knobs of reading, for every command that reads keys. The defaults suit most jobs.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Tuning")]
pub struct ReadTuningArgs {
    /// Keys asked for per SCAN page (fetched with PTTL+DUMP in pipelined chunks, two in flight).
    /// 5000 measured ~10% faster than 1000 (docs/benchmarks.md).
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pub scan_count: u32,

    /// Most payload bytes per RESTORE batch and per DUMP round trip. Memory in flight is about
    /// this × (3 × writers + 3): ~30 MiB with the defaults, whatever the sizes of the values.
    #[arg(long, default_value_t = 2 << 20, value_name = "BYTES")]
    pub batch_bytes: usize,

    /// Keys larger than this (estimated before reading them: MEMORY USAGE, or type lengths on
    /// Redis 3.2) are never DUMPed whole: they are copied in chunks of about --batch-bytes into a
    /// temporary key renamed in place with its expiry (the source never blocks on one big DUMP,
    /// memory stays bounded). Lowered to the target's proto-max-bulk-len when that is smaller.
    /// 0 turns big-key detection off (every key is DUMPed, as before). The probe is one more
    /// command per key (measured on 1M small keys: source CPU +36 %, ~0.7 µs a key; keys/s -39 %
    /// on a loaded 2-core machine, docs/benchmarks.md): 0 when the data is known to hold none.
    /// With --rdb: values over this many bytes in the file are read element by element from it,
    /// never held whole (no probe is needed there).
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    pub big_key_bytes: u64,

    /// How long to keep retrying a lost connection before giving up, in seconds.
    ///
    /// Also bounds every wait for a server: a connect, TLS handshake, write or read that gets no
    /// answer for half of this (at least 1 s; 30 s by default) counts as a lost connection and is
    /// retried, and a server that stays silent makes ferry stop about SECS after it went quiet
    /// (exit 2; rerun the same command to resume). Raise it for servers that may pause longer
    /// (a huge RESTORE or DUMP, a failover).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub retry_for: u64,

    /// Threads driving readers and writers [default: the cores this process may use, capped by
    /// the source streams it reads at once: one per source master of its share, one per DB of a
    /// standalone source; 2 for verify]. 1 runs everything on one thread, which costs the least
    /// CPU: use it where ferry shares its cores with the servers (docs/benchmarks.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// How hard ferry may work the source (a live one; one budget per source server).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Tuning")]
pub struct LimitArgs {
    /// Read at most N keys per second from each source server (each master of a cluster).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_keys_per_sec: Option<u64>,

    /// Read at most N bytes of values per second from each source server.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bytes_per_sec: Option<u64>,

    /// Slow down while the source takes longer than MS milliseconds to answer a PING (watched
    /// every 100 ms on a connection of its own), and speed up again when it recovers.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub source_latency_ms: Option<u64>,
}

/// How results are shown.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Write a JSON report here when done (also on error). Checked before any work: its
    /// directory must exist and be writable.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Progress display: a bar on a terminal, periodic log lines otherwise.
    #[arg(long, value_parser = Choose(PROGRESS), default_value = "auto")]
    pub progress: ProgressMode,

    /// Seconds between progress log lines when not on a terminal.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub log_every: u64,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (and /healthz) while running.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The values of a flag that picks one of a few (`--on-conflict`, `--on-key-error`,
/// `--progress`): each as typed, its help (listed by `--help`, no trailing period) and the plain
/// value it stands for, so that nothing past this file sees a clap type.
type Choices<T> = &'static [(&'static str, &'static str, T)];

/// `--on-conflict` values.
#[rustfmt::skip]
const ON_CONFLICT: Choices<OnConflict> = &[
    ("fail", "Refuse to start when target keys would be overwritten", OnConflict::Fail),
    ("replace", "Overwrite target keys", OnConflict::Replace),
    ("skip", "Keep the target's keys", OnConflict::Skip),
];

/// `--on-key-error` values.
#[rustfmt::skip]
const ON_KEY_ERROR: Choices<OnKeyError> = &[
    ("stop", "Stop the job, naming the key and the reason (exit 2)", OnKeyError::Stop),
    ("skip", "Write the key to the dead-letter file and go on (exit 1 at the end)",
        OnKeyError::Skip),
];

/// `--progress` values.
#[rustfmt::skip]
const PROGRESS: Choices<ProgressMode> = &[
    ("auto", "A bar when stderr is a terminal, log lines otherwise", ProgressMode::Auto),
    ("bar", "Always a bar", ProgressMode::Bar),
    ("log", "Always log lines", ProgressMode::Log),
    ("json", "One JSON object per line on stderr, every --log-every seconds (for job runners)",
        ProgressMode::Json),
    ("none", "Nothing until the summary", ProgressMode::None),
];

/// Parses one of its [`Choices`] into the plain value: clap checks the name (and words its
/// errors and `--help`) as for any list of possible values.
#[derive(Clone)]
struct Choose<T: 'static>(Choices<T>);

impl<T: Copy + Send + Sync + 'static> TypedValueParser for Choose<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, Error> {
        let names = self.0.iter().map(|&(name, ..)| name);
        let name = PossibleValuesParser::new(names).parse_ref(cmd, arg, value)?;
        // The name was checked against the same list just above.
        self.0
            .iter()
            .find(|&&(n, ..)| n == name)
            .map(|&(.., v)| v)
            .ok_or_else(|| Error::new(ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let values = self.0.iter();
        Some(Box::new(
            values.map(|&(name, help, _)| PossibleValue::new(name).help(help)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks (unique ids, valid `requires`/`conflicts_with`, headings).
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `verify --help` offers only what verify uses: it writes nothing, so no writer knobs.
    #[test]
    fn verify_has_no_writer_flags() {
        let cmd = Cli::command();
        let verify = cmd
            .find_subcommand("verify")
            .expect("verify is a subcommand");
        let longs: Vec<&str> = verify
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        for writer_only in [
            "writers",
            "batch-keys",
            "on-conflict",
            "checkpoint",
            "fresh",
        ] {
            assert!(
                !longs.contains(&writer_only),
                "verify offers --{writer_only}"
            );
        }
        for read in [
            "scan-count",
            "batch-bytes",
            "retry-for",
            "threads",
            "ttl-tolerance",
        ] {
            assert!(longs.contains(&read), "verify lost --{read}");
        }
    }

    /// Each name of a choice flag parses into its plain value; no flag gives the default; a
    /// name not in the table is refused with the list.
    #[test]
    fn choices_parse_into_plain_values() {
        let migrate = |extra: &[&str]| {
            let base = [
                "ferry",
                "migrate",
                "--source",
                "redis://a:1",
                "--target",
                "redis://b:2",
            ];
            let args = base.iter().chain(extra).copied();
            match Cli::try_parse_from(args).map(|cli| cli.command) {
                Ok(Command::Migrate(m)) => Ok((m.on_conflict, m.on_key_error, m.output.progress)),
                Ok(other) => panic!("not migrate: {other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let defaults = (OnConflict::Fail, OnKeyError::Stop, ProgressMode::Auto);
        assert_eq!(migrate(&[]), Ok(defaults));
        for &(name, _, value) in ON_CONFLICT {
            let got = migrate(&["--on-conflict", name]).map(|m| m.0);
            assert_eq!(got, Ok(value), "--on-conflict {name}");
        }
        for &(name, _, value) in ON_KEY_ERROR {
            let got = migrate(&["--on-key-error", name]).map(|m| m.1);
            assert_eq!(got, Ok(value), "--on-key-error {name}");
        }
        for &(name, _, value) in PROGRESS {
            let got = migrate(&["--progress", name]).map(|m| m.2);
            assert_eq!(got, Ok(value), "--progress {name}");
        }
        let refused = migrate(&["--progress", "loud"]).expect_err("an unknown mode is refused");
        assert!(
            refused.contains("[possible values: auto, bar, log, json, none]"),
            "{refused}"
        );
    }

    /// Every flag of `migrate --help` sits under a heading (source, target, TLS, …).
    #[test]
    fn migrate_flags_are_grouped() {
        let cmd = Cli::command();
        let migrate = cmd
            .find_subcommand("migrate")
            .expect("migrate is a subcommand");
        let loose: Vec<&str> = migrate
            .get_arguments()
            .filter(|a| a.get_help_heading().is_none())
            .filter_map(|a| a.get_long())
            .filter(|l| !["help", "version"].contains(l))
            .collect();
        assert!(loose.is_empty(), "flags without a heading: {loose:?}");
    }
}
