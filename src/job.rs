//! A job: endpoints, TLS, DB selection, tuning, and the fingerprint that names it.
//!
//! `resolve.rs` builds it from the command line (password files read, certificates loaded,
//! combinations checked), so that everything after it can assume a consistent job. The
//! fingerprint names the job in its checkpoint: a rerun of the same command matches it, a
//! different command does not. May call: endpoint (types), source::rdb_input, partition
//! (the `--partition` type), policy, report (a share's entry).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::endpoint::cluster::AddrMap;
use crate::endpoint::Server;
use crate::policy::OnConflict;
use crate::report::ShareOf;
use crate::source::rdb_input::RdbInput;

/// Where the keys come from.
#[derive(Clone)]
pub enum SourceSpec {
    /// A live server or cluster.
    Live(Server),
    /// An RDB file (spooled first when it is a stream or gzip-compressed).
    Rdb(RdbInput),
}

/// The resolved plan for one run.
#[derive(Clone)]
pub struct Job {
    /// Where keys are read.
    pub source: SourceSpec,
    /// Where keys are written.
    pub target: Server,
    /// DBs chosen with `--db` (empty: every non-empty DB).
    pub dbs: Vec<u32>,
    /// `--db-map`: source DB → target DB (unlisted DBs keep their number).
    pub db_map: BTreeMap<u32, u32>,
    /// Throughput knobs.
    pub tuning: Tuning,
    /// `--source-map-addr`: where to reach source cluster nodes announced elsewhere.
    pub source_addr_map: AddrMap,
    /// `--target-map-addr`: where to reach target cluster nodes announced elsewhere.
    pub target_addr_map: AddrMap,
    /// `--partition I/N`: this worker's share of the job.
    pub partition: Option<crate::partition::Partition>,
    /// (`--source-insecure`, `--target-insecure`): TLS certificates not verified, which the
    /// checks warn about.
    pub insecure: (bool, bool),
    /// `migrate --keys-from`: a digest of the list's contents, which makes the copy of those
    /// keys a job of its own (own checkpoint), set by `migrate.rs`.
    pub keys_from: Option<String>,
}

/// Throughput knobs as the run uses them, whichever command gave them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `--scan-count`: keys asked for per SCAN page.
    pub scan_count: u32,
    /// `--batch-keys`: most keys per RESTORE batch.
    pub batch_keys: usize,
    /// `--batch-bytes`: most payload bytes per RESTORE batch and per DUMP round trip.
    pub batch_bytes: usize,
    /// `--writers`: parallel writer connections to the target.
    pub writers: usize,
    /// `--retry-for` (see [`Job::retry_for`]).
    pub retry_for: Duration,
    /// `--threads`.
    pub threads: Option<u16>,
    /// `--big-key-bytes`: keys above this are copied and verified in chunks (0: never).
    pub big_key_bytes: u64,
}

impl Job {
    /// `--retry-for`: how long a lost connection is retried before the run gives up.
    pub fn retry_for(&self) -> Duration {
        self.tuning.retry_for
    }

    /// Refuses the flags that only mean something for a live source (load limits,
    /// `--partition`) when the source is an RDB file; `command` is `migrate` or `verify`.
    pub fn refuse_live_only(
        &self,
        limits: &crate::throttle::Limits,
        command: &str,
    ) -> anyhow::Result<()> {
        if !matches!(self.source, SourceSpec::Rdb(_)) {
            return Ok(());
        }
        if limits.any() {
            anyhow::bail!(
                "--max-keys-per-sec, --max-bytes-per-sec and --source-latency-ms limit the load \
                 on a live source; with --rdb ferry reads a file and there is none to protect. \
                 Leave them out"
            );
        }
        if self.partition.is_some() {
            anyhow::bail!(
                "--partition needs a live --source: an RDB file is read whole by one process \
                 (run one {command} for it)"
            );
        }
        Ok(())
    }

    /// The target DB for source DB `db`.
    pub fn target_db(&self, db: u32) -> u32 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }

    /// Spools an `--rdb` input that must be (standard input, a pipe, a gzip file): call once
    /// after the job is resolved (`resolve.rs`), before the identity is taken. Nothing to do for
    /// a live source.
    pub async fn prepare_source(&mut self, stop: &crate::stop::Stop) -> anyhow::Result<()> {
        match &mut self.source {
            SourceSpec::Rdb(input) => input.prepare(stop).await,
            SourceSpec::Live(_) => Ok(()),
        }
    }

    /// A stable description of everything that changes what this job writes, without secrets.
    pub fn identity(&self, on_conflict: OnConflict) -> serde_json::Value {
        let source = match &self.source {
            SourceSpec::Live(s) => serde_json::json!({ "live": s.endpoint.to_string() }),
            SourceSpec::Rdb(input) => input.identity(),
        };
        let mut id = serde_json::json!({
            "source": source,
            "target": self.target.endpoint.to_string(),
            "dbs": self.dbs,
            "db_map": self.db_map.iter().map(|(s, t)| format!("{s}:{t}")).collect::<Vec<_>>(),
            "on_conflict": on_conflict,
        });
        // Each share is its own job (own default checkpoint); unpartitioned jobs keep their id.
        if let (Some(p), Some(map)) = (self.partition, id.as_object_mut()) {
            map.insert("partition".into(), p.to_string().into());
        }
        if let (Some(k), Some(map)) = (&self.keys_from, id.as_object_mut()) {
            map.insert("keys_from".into(), k.clone().into());
        }
        id
    }

    /// The id of the whole job a share belongs to: what every worker of one split job has alike
    /// (source, target, DB selection and mapping), whatever its share or command.
    pub fn whole_job_id(&self) -> String {
        let mut id = self.identity(OnConflict::Fail);
        if let Some(map) = id.as_object_mut() {
            map.remove("partition");
            map.remove("on_conflict");
        }
        format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(id.to_string().as_bytes())
        )
    }

    /// What a worker's report says about its share `p` (`--partition`), for `ferry report
    /// merge`; `command` is `migrate` or `verify`.
    pub fn share_of(&self, command: &str, p: crate::partition::Partition) -> ShareOf {
        ShareOf {
            command: command.into(),
            job: self.whole_job_id(),
            index: p.index,
            count: p.count,
        }
    }

    /// A short hex id of [`Job::identity`], used in the default checkpoint name.
    pub fn fingerprint(&self, on_conflict: OnConflict) -> String {
        let text = self.identity(on_conflict).to_string();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}
