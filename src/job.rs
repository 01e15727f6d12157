//! A job: the command line resolved into endpoints, TLS, DB selection and a fingerprint.
//!
//! This is the "high-level" stage after `cli.rs`: password files are read, certificates loaded,
//! combinations checked, so that everything after it can assume a consistent plan. The
//! fingerprint names the job in its checkpoint: a rerun of the same command matches it, a
//! different command does not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{EndpointArgs, OnConflict, ReadTuningArgs, SelectionArgs, TuningArgs};
use crate::endpoint::cluster::AddrMap;
use crate::endpoint::tls::{self, TlsOptions};
use crate::endpoint::{url, PasswordOrigin, Secret, Server, Side};
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
    /// `--retry-for`, in seconds (see [`Job::retry_for`]).
    pub retry_for: u64,
    /// `--threads`.
    pub threads: Option<u16>,
    /// `--big-key-bytes`: keys above this are copied and verified in chunks (0: never).
    pub big_key_bytes: u64,
}

impl From<&ReadTuningArgs> for Tuning {
    /// A reading command's knobs; the writing ones keep their defaults (nothing is written).
    fn from(read: &ReadTuningArgs) -> Tuning {
        Tuning {
            scan_count: read.scan_count,
            batch_keys: crate::cli::DEFAULT_BATCH_KEYS,
            batch_bytes: read.batch_bytes,
            writers: crate::cli::DEFAULT_WRITERS,
            retry_for: read.retry_for,
            threads: read.threads,
            big_key_bytes: read.big_key_bytes,
        }
    }
}

impl From<&TuningArgs> for Tuning {
    fn from(args: &TuningArgs) -> Tuning {
        Tuning {
            batch_keys: args.batch_keys,
            writers: args.writers,
            ..Tuning::from(&args.read)
        }
    }
}

impl Job {
    /// `--retry-for`: how long a lost connection is retried before the run gives up.
    pub fn retry_for(&self) -> Duration {
        Duration::from_secs(self.tuning.retry_for)
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

    /// Resolves endpoints, passwords, TLS and DB selection; `tuning` is a command's
    /// [`TuningArgs`] or [`ReadTuningArgs`].
    pub fn resolve(
        ep: &EndpointArgs,
        sel: &SelectionArgs,
        tuning: impl Into<Tuning>,
    ) -> anyhow::Result<Job> {
        let tuning = tuning.into();
        let source = match (&ep.source, &ep.rdb) {
            (Some(raw), None) => {
                let password = password_from(Side::Source, ep.source_password_file.as_deref())?;
                let endpoint = url::parse(raw, Side::Source, password)?;
                let tls = TlsOptions {
                    cacert: ep.source_cacert.clone(),
                    cert: ep.source_cert.clone(),
                    key: ep.source_key.clone(),
                    sni: ep.source_sni.clone(),
                    insecure: ep.source_insecure,
                };
                SourceSpec::Live(server(endpoint, &tls, &tuning)?)
            }
            (None, Some(path)) => SourceSpec::Rdb(RdbInput::new(path)?),
            _ => anyhow::bail!("give the source as --source URL or --rdb FILE"),
        };
        let password = password_from(Side::Target, ep.target_password_file.as_deref())?;
        let endpoint = url::parse(&ep.target, Side::Target, password)?;
        let tls = TlsOptions {
            cacert: ep.target_cacert.clone(),
            cert: ep.target_cert.clone(),
            key: ep.target_key.clone(),
            sni: ep.target_sni.clone(),
            insecure: ep.target_insecure,
        };
        let target = server(endpoint, &tls, &tuning)?;
        if let SourceSpec::Live(src) = &source {
            if src.endpoint.host == target.endpoint.host
                && src.endpoint.port == target.endpoint.port
            {
                anyhow::bail!("--source and --target are the same server ({}); ferry copies between two servers", target.endpoint);
            }
        }
        if tuning.writers == 0 || tuning.batch_keys == 0 || tuning.scan_count == 0 {
            anyhow::bail!("--writers, --batch-keys and --scan-count must be at least 1");
        }
        let mut dbs = sel.db.clone();
        dbs.sort_unstable();
        dbs.dedup();
        Ok(Job {
            source,
            target,
            dbs,
            db_map: parse_db_map(&sel.db_map)?,
            tuning,
            source_addr_map: AddrMap::parse(&ep.source_map_addr, "--source-map-addr")?,
            target_addr_map: AddrMap::parse(&ep.target_map_addr, "--target-map-addr")?,
            partition: sel.partition,
            keys_from: None,
        })
    }

    /// The target DB for source DB `db`.
    pub fn target_db(&self, db: u32) -> u32 {
        self.db_map.get(&db).copied().unwrap_or(db)
    }

    /// Spools an `--rdb` input that must be (standard input, a pipe, a gzip file): call once
    /// after [`Job::resolve`], before the identity is taken. Nothing to do for a live source.
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

    /// A short hex id of [`Job::identity`], used in the default checkpoint name.
    pub fn fingerprint(&self, on_conflict: OnConflict) -> String {
        let text = self.identity(on_conflict).to_string();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

fn server(endpoint: url::Endpoint, opts: &TlsOptions, tuning: &Tuning) -> anyhow::Result<Server> {
    let flag = endpoint.side.name();
    let tls = if endpoint.tls {
        if opts.insecure {
            tracing::warn!(
                "!!! --{flag}-insecure: the {flag}'s TLS certificate is NOT verified. Anyone on the \
                 network path can impersonate {} and read the data and the password. Use \
                 --{flag}-cacert instead outside of tests. !!!",
                endpoint
            );
        }
        Some(tls::build(opts, flag)?)
    } else {
        let given =
            opts.cacert.is_some() || opts.cert.is_some() || opts.sni.is_some() || opts.insecure;
        if given {
            anyhow::bail!(
                "TLS flags were given for the {flag}, but its URL {endpoint} is plain redis://; use rediss:// to connect with TLS"
            );
        }
        None
    };
    Ok(Server {
        endpoint,
        tls,
        answer_timeout: crate::retry::answer_timeout(Duration::from_secs(tuning.retry_for)),
    })
}

/// The password from `--*-password-file` or `FERRY_*_PASSWORD`, with where it came from. Both
/// at once are refused as ambiguous (and `url::parse` refuses either with a URL password).
fn password_from(
    side: Side,
    file: Option<&Path>,
) -> anyhow::Result<Option<(Secret, PasswordOrigin)>> {
    let var = format!("FERRY_{}_PASSWORD", side.name().to_uppercase());
    let env = std::env::var(&var).ok().filter(|s| !s.is_empty());
    if let Some(path) = file {
        if env.is_some() {
            anyhow::bail!(
                "the {side} password is given twice: in --{side}-password-file {} and in the environment \
                 variable {var}. Give it in one place only (unset {var}, or drop the flag)",
                path.display(),
                side = side.name()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "--{}-password-file {}: cannot read the file",
                side.name(),
                path.display()
            )
        })?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            anyhow::bail!(
                "--{}-password-file {}: the file is empty",
                side.name(),
                path.display()
            );
        }
        let origin = PasswordOrigin::File(
            format!("--{}-password-file", side.name()),
            path.to_path_buf(),
        );
        return Ok(Some((Secret::new(line), origin)));
    }
    Ok(env.map(|pw| (Secret::new(pw), PasswordOrigin::Env(var))))
}

fn parse_db_map(items: &[String]) -> anyhow::Result<BTreeMap<u32, u32>> {
    let mut map = BTreeMap::new();
    for item in items {
        let parsed = item.split_once(':').and_then(|(s, t)| {
            Some((s.trim().parse::<u32>().ok()?, t.trim().parse::<u32>().ok()?))
        });
        let Some((s, t)) = parsed else {
            anyhow::bail!("--db-map {item:?}: expected SOURCE_DB:TARGET_DB, e.g. 3:0");
        };
        if map.insert(s, t).is_some() {
            anyhow::bail!("--db-map maps source DB {s} twice");
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_map_parses_and_rejects() {
        let m = parse_db_map(&["3:0".into(), "1:2".into()]).unwrap();
        assert_eq!(m.get(&3), Some(&0));
        assert!(parse_db_map(&["x".into()]).is_err());
        assert!(parse_db_map(&["1:0".into(), "1:2".into()]).is_err());
    }
}
