//! Verification: proof that the target holds what the source holds.
//!
//! `ferry verify` runs it on its own; `ferry migrate` runs it after the copy (unless
//! `--no-verify`). It compares, for every database pair, every key's presence, type, logical
//! content and TTL, in both directions, and exits 0 only when nothing differs.
//!
//! # How
//! ```text
//!  side.rs     a side: a live server or every master of a cluster (node.rs: a SCAN lister and
//!              3 readers, each page one pipelined TIME + PTTL + DUMP round trip), or an RDB
//!              file (file.rs, --rdb)
//!  state.rs    payload → decoded Value (rdb::decode, any RDB version) → KeyState {kind, digest, expiry}
//!  big.rs      keys over --big-key-bytes (probed per page like the copy, bigkey/size.rs) are
//!              never DUMPed: read in chunks (bigkey/read.rs), digested by chunk_digest.rs to the
//!              same digest a DUMP would give, so memory and source stalls stay bounded
//!  digest.rs   canonical digest: order kept where Redis keeps it (lists, streams), not elsewhere
//!  bucket.rs   pass 1: per-(db, hash slot) counts + order-independent sums, two TTL grids
//!  passes.rs   buckets that differ → pass 2: both sides listed again, only those buckets read,
//!              key by key (compare.rs)
//!  rounds.rs   keys that differ are read again, --round-pause later, up to --rounds comparisons
//!  sample.rs   --sample N: RANDOMKEY on both sides instead of passes 1 and 2
//!  listed.rs   migrate --keys-from: only the listed keys, read by name on both sides
//!  report.rs   counts side by side, differences by kind, JSON
//! ```
//!
//! # Why this shape
//! - **Decoded, not byte-compared.** A 3.2 source and a Valkey 8 target encode the same hash
//!   differently (zipmap/ziplist vs listpack, text vs binary scores), so DUMP bytes differ even
//!   when nothing was lost. Decoding the payload (one `DUMP` per key, the same call on every
//!   version) and hashing a canonical form compares what clients see. `1` and `1.0` as scores
//!   agree; a set in another order agrees; a list in another order does not.
//! - **Streamed independently, compared by bucket.** Each side is read by its own task into
//!   16384 aggregates per database (one per cluster hash slot); equal buckets are done without
//!   ever pairing keys, so the equal case uses constant memory (~1.2 MB per database and side),
//!   not O(dataset). Only buckets that differ are read again, key by key, and only their keys are
//!   held (bounded: see `passes.rs`). Hash slots make a bucket meaningful on clusters too.
//! - **TTLs within a tolerance.** Expiries are absolute (`TIME + PTTL`, each side's clock skew
//!   removed) and agree within `--ttl-tolerance`; bucket sums hash expiries on two offset grids so
//!   that any drift beyond the tolerance always flags the bucket, while a drift of a few ms almost
//!   never does — and when it does, the exact re-read clears it (see `bucket.rs`). A TTL on one
//!   side only is always a difference.
//! - **Live sources.** Differences are re-checked in later rounds and reported only if they
//!   persist; keys that expired between the two reads are counted as expired, not lost.
//! - **A side is a stream.** The comparison needs only [`side::Side`]: list `(db, key, payload,
//!   expiry)` and re-read keys by name. A live server is one; an RDB file (`--rdb`) can be another.

pub mod big;
pub mod bucket;
pub mod chunk_digest;
pub mod compare;
pub mod digest;
pub mod file;
pub mod listed;
pub mod node;
pub mod passes;
pub mod progress;
pub mod report;
pub mod rounds;
pub mod sample;
pub mod share;
pub mod side;
pub mod state;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use report::{print_summary, DiffKind, Difference, VerifyReport};
use side::{LiveOptions, LiveSide, Side};

use crate::cli::{MigrateArgs, OutputArgs, ProgressMode, VerifyArgs, VerifyTuning};
use crate::endpoint::Server;
use crate::job::{Job, SourceSpec};
use crate::partition::KeyShare;
use crate::report::Status;
use crate::stop::Stop;
use crate::throttle::Throttles;

/// How a verification runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--ttl-tolerance`, ms.
    pub tolerance_ms: u64,
    /// `--rounds` (at least 1).
    pub rounds: u32,
    /// `--round-pause`.
    pub round_pause: Duration,
    /// `--sample N`.
    pub sample: Option<u64>,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--log-every`.
    pub log_every: Duration,
    /// `migrate --keys-from`: compare only these keys (by source DB), see `listed.rs`.
    pub listed: Option<Arc<listed::KeyLists>>,
}

impl Options {
    /// From the shared flags.
    pub fn new(tuning: &VerifyTuning, output: &OutputArgs, sample: Option<u64>) -> Options {
        Options {
            tolerance_ms: tuning.ttl_tolerance,
            rounds: tuning.rounds.max(1),
            round_pause: Duration::from_millis(tuning.round_pause),
            sample,
            progress: output.progress,
            log_every: Duration::from_secs(output.log_every.max(1)),
            listed: None,
        }
    }
}

/// Runs `ferry verify`. Never panics on bad input: errors land in the report (status `error`).
pub async fn run(args: &VerifyArgs, stop: Stop) -> VerifyReport {
    let opts = Options::new(&args.verify, &args.output, args.sample);
    let mut report = VerifyReport::new(
        args.endpoints
            .source
            .as_deref()
            .map(crate::endpoint::url::redact)
            .unwrap_or_default(),
        crate::endpoint::url::redact(&args.endpoints.target),
        opts.tolerance_ms,
        opts.rounds,
    );
    let started = Instant::now();
    crate::migrate::set_phase("verify");
    let work = async {
        let mut job = Job::resolve(&args.endpoints, &args.selection, &args.tuning)?;
        let limits = args.limits.limits();
        job.refuse_live_only(&limits, "verify")?;
        job.prepare_source(&stop).await?;
        // The checks of `ferry check` that apply to a reading job (reach, TLS, login, ACL
        // rights, DBs, clocks; for a file, its soundness), before the first read: a failing
        // row stops here.
        crate::check::gate(crate::check::Gate {
            job: &job,
            purpose: crate::check::Purpose::Verify,
            on_conflict: crate::cli::OnConflict::Replace,
            conflicts: false,
            copied_keys: 0,
            follow: None,
            insecure: (
                args.endpoints.source_insecure,
                args.endpoints.target_insecure,
            ),
            file: None,
            skip_key_errors: false,
        })
        .await?;
        let source = match &job.source {
            SourceSpec::Live(s) => s.clone(),
            SourceSpec::Rdb(input) => {
                return file::verify_file(input.path(), &job, &opts, &stop, &mut report).await
            }
        };
        let pairs: Vec<(u32, u32)> = job.dbs.iter().map(|&db| (db, job.target_db(db))).collect();
        let share = match job.partition {
            Some(p) if opts.sample.is_some() => anyhow::bail!(
                "--sample cannot be combined with --partition {p}: sample the whole job in one verify instead"
            ),
            Some(p) => Some(share::of_source(p, &source, &job).await?),
            None => None,
        };
        report.partition = job
            .partition
            .map(|p| crate::partition::share_of("verify", &job, p));
        let keys = share.as_ref().and_then(|s| s.share.keys.clone());
        let throttles = Arc::new(Throttles::new(limits, stop.clone()));
        let (src, dst) = open_sides(&source, &job, throttles, keys).await?;
        report.source = src.name();
        report.target = dst.name();
        let mut pairs = if pairs.is_empty() {
            default_pairs(&src, &dst, &job).await?
        } else {
            pairs
        };
        if let Some(s) = &share {
            share::restrict_pairs(s, &mut pairs);
        }
        compare_sides(src, dst, &pairs, &opts, &stop, &mut report).await
    };
    let result = abandoned_after_signal(stop.or_abandon(work).await);
    finish(&mut report, result, started, &stop);
    report
}

/// A verification abandoned after a signal (a server did not answer) becomes an error.
pub(crate) fn abandoned_after_signal(result: Option<anyhow::Result<()>>) -> anyhow::Result<()> {
    result.unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "interrupted while waiting for a server; nothing was verified to the end"
        ))
    })
}

/// Runs the verification at the end of `ferry migrate` between the servers just copied, prints
/// its summary, and returns its report.
pub async fn after_migrate(
    source: &Server,
    job: &Job,
    db_pairs: &[(u32, u32)],
    share: Option<Arc<KeyShare>>,
    args: &MigrateArgs,
    stop: &Stop,
) -> VerifyReport {
    let opts = Options::new(&args.verify, &args.output, None);
    let mut report = VerifyReport::new(
        source.endpoint.to_string(),
        job.target.endpoint.to_string(),
        opts.tolerance_ms,
        opts.rounds,
    );
    let started = Instant::now();
    eprintln!("ferry: verifying the target against the source (skip with --no-verify)");
    let work = async {
        let throttles = Arc::new(Throttles::new(args.limits.limits(), stop.clone()));
        let (src, dst) = open_sides(source, job, throttles, share).await?;
        compare_sides(src, dst, db_pairs, &opts, stop, &mut report).await
    };
    let result = abandoned_after_signal(stop.or_abandon(work).await);
    finish(&mut report, result, started, stop);
    print_summary(&report);
    report
}

/// Opens both live sides; only the source's readers are held to `throttles`; with `share`,
/// only that share's keys are compared.
pub(crate) async fn open_sides(
    source: &Server,
    job: &Job,
    throttles: Arc<Throttles>,
    share: Option<Arc<KeyShare>>,
) -> anyhow::Result<(Arc<LiveSide>, Arc<LiveSide>)> {
    let opts = LiveOptions {
        scan_count: job.tuning.scan_count,
        batch_bytes: job.tuning.batch_bytes,
        retry_for: job.retry_for(),
        throttles: None,
        share,
        big_key_bytes: job.tuning.big_key_bytes,
    };
    let source_opts = LiveOptions {
        throttles: Some(throttles),
        ..opts.clone()
    };
    let (src, dst) = tokio::try_join!(
        LiveSide::open(source.clone(), &job.source_addr_map, source_opts),
        LiveSide::open(job.target.clone(), &job.target_addr_map, opts)
    )?;
    Ok((Arc::new(src), Arc::new(dst)))
}

/// Every non-empty database of either side, as (source db, target db) pairs.
pub(crate) async fn default_pairs<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    job: &Job,
) -> anyhow::Result<Vec<(u32, u32)>> {
    let (ks, kt) = tokio::try_join!(src.keyspace(), dst.keyspace())?;
    let mut dbs: BTreeSet<u32> = ks
        .iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(db, _)| *db)
        .collect();
    for (&tdb, &(n, _)) in &kt {
        if n == 0 {
            continue;
        }
        // The source DB that maps to this target DB: an explicit --db-map entry, else the same
        // number unless that number is mapped elsewhere.
        let mapped = job.db_map.iter().find(|(_, &t)| t == tdb).map(|(&s, _)| s);
        match mapped {
            Some(s) => {
                dbs.insert(s);
            }
            None if !job.db_map.contains_key(&tdb) => {
                dbs.insert(tdb);
            }
            None => {}
        }
    }
    Ok(dbs.into_iter().map(|db| (db, job.target_db(db))).collect())
}

/// Compares two sides over `pairs` and fills `report` (counts, differences, status).
pub async fn compare_sides<S: Side, T: Side>(
    src: Arc<S>,
    dst: Arc<T>,
    pairs: &[(u32, u32)],
    opts: &Options,
    stop: &Stop,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    report.servers = match (src.product(), dst.product()) {
        (Some(a), Some(b)) => Some(format!("{a} → {b}")),
        _ => None,
    };
    let mut tally = rounds::Tally::default();
    let (ks, kt) = tokio::try_join!(src.keyspace(), dst.keyspace())?;
    let total = pairs
        .iter()
        .map(|(db, tdb)| {
            let a = ks.get(db).map_or(0, |k| k.0);
            let b = kt.get(tdb).map_or(0, |k| k.0);
            a.max(b)
        })
        .sum();
    let ticker = progress::Ticker::start(
        opts.progress,
        opts.log_every,
        total,
        src.progress(),
        dst.progress(),
    );
    let candidates = match (opts.sample, &opts.listed) {
        (_, Some(lists)) => {
            report.mode = "listed";
            let (dbs, candidates) = listed::listed_round(
                &src,
                &dst,
                pairs,
                lists,
                opts.tolerance_ms,
                stop,
                &mut tally,
            )
            .await?;
            report.dbs = dbs;
            candidates
        }
        (Some(n), None) => {
            report.mode = "sample";
            let s = sample::sample_round(&src, &dst, pairs, n, opts.tolerance_ms, stop, &mut tally)
                .await?;
            report.dbs = s.dbs;
            report.sample = Some(s.info);
            s.candidates
        }
        (None, None) => {
            let f =
                passes::first_round(&src, &dst, pairs, opts.tolerance_ms, stop, &mut tally).await?;
            report.dbs = f.dbs;
            report.buckets = Some(f.buckets);
            report.totals.listed = f.listed;
            f.candidates
        }
    };
    drop(ticker);
    let (mut left, rounds_run) = rounds::recheck(
        &src,
        &dst,
        pairs,
        candidates,
        opts.rounds,
        opts.round_pause,
        opts.tolerance_ms,
        stop,
        &mut tally,
    )
    .await?;
    report.rounds_run = rounds_run;

    // Totals and the listed differences.
    for d in &report.dbs {
        report.totals.source.add(&d.source);
        report.totals.target.add(&d.target);
    }
    left.sort_by(|a, b| (a.pair, a.kind, &a.key).cmp(&(b.pair, b.kind, &b.key)));
    let t = &mut report.totals;
    t.keys_compared = tally.keys_compared;
    t.settled_on_recheck = tally.settled;
    t.expired_during_verify = tally.expired;
    t.undecodable = tally.undecodable;
    t.big_keys_read = tally.big;
    t.not_rechecked = tally.untracked.values().sum();
    for c in &left {
        *t.by_kind.entry(c.kind).or_default() += 1;
    }
    for (k, n) in &tally.untracked {
        *t.by_kind.entry(*k).or_default() += n;
    }
    t.differences = t.by_kind.values().sum();
    report.differences_truncated = t.differences as usize > left.len().min(report::LIST_LIMIT);
    report.differences = left
        .iter()
        .take(report::LIST_LIMIT)
        .filter_map(|c| {
            let &(db, tdb) = pairs.get(c.pair)?;
            Some(Difference::new(db, tdb, &c.key, c.kind, c.detail.clone()))
        })
        .collect();
    if t.not_rechecked > 0 {
        report.notes.push(format!(
            "{} differences beyond the first {} were counted but not re-checked or listed",
            t.not_rechecked,
            passes::MAX_TRACKED
        ));
    }
    for e in &tally.undecodable_examples {
        report
            .notes
            .push(format!("could not decode (compared by raw bytes): {e}"));
    }
    report.status = if report.totals.differences > 0 {
        Status::Mismatch
    } else {
        Status::Ok
    };
    Ok(())
}

pub(crate) fn finish(
    report: &mut VerifyReport,
    result: anyhow::Result<()>,
    started: Instant,
    stop: &Stop,
) {
    if let Err(e) = result {
        report.status = if stop.was_interrupted() {
            Status::Interrupted
        } else {
            Status::Error
        };
        report.error = Some(format!("{e:#}"));
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.peak_rss_bytes = crate::report::peak_rss_bytes();
    if let Some(m) = crate::metrics::get() {
        m.set_differences(report.totals.differences);
    }
    let keys = report.totals.source.keys.max(report.totals.target.keys);
    report.keys_per_sec = (keys * 1000).checked_div(report.elapsed_ms).unwrap_or(0);
}
