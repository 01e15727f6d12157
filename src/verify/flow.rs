//! One verification from start to end, whatever reads the sides: open the live sides, pick the
//! databases, compare them (first comparison, then the re-checks), fill the report and finish it.
//! `mod.rs` (`ferry verify`, after `migrate`), `file_side.rs` (`--rdb`) and `listed.rs`
//! (`--keys-from`) all run it; follow's reconciliation and cutover open their sides here too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::first_round::first_round;
use super::listed::listed_round;
use super::live_side::{LiveOptions, LiveSide};
use super::options::Options;
use super::progress::Ticker;
use super::rechecks::{recheck, Candidate, Tally, MAX_TRACKED};
use super::report::{print_summary, Difference, VerifyReport, LIST_LIMIT};
use super::sample::sample_round;
use super::side::Side;
use crate::endpoint::Server;
use crate::job::Job;
use crate::partition::KeyShare;
use crate::report::Status;
use crate::stop::Stop;
use crate::throttle::{Limits, Throttles};

/// Runs the verification after a copy between `source` and the job's target, over `pairs`
/// (only `share`'s keys when set); says so with `announce`, prints the summary and returns the
/// report.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn after_copy(
    source: &Server,
    job: &Job,
    pairs: &[(u32, u32)],
    share: Option<Arc<KeyShare>>,
    opts: &Options,
    limits: Limits,
    announce: &str,
    stop: &Stop,
) -> VerifyReport {
    let mut report = VerifyReport::new(
        source.endpoint.to_string(),
        job.target.endpoint.to_string(),
        opts.tolerance_ms,
        opts.rounds,
    );
    let started = Instant::now();
    eprintln!("ferry: {announce} (skip with --no-verify)");
    let work = async {
        let throttles = Arc::new(Throttles::new(limits, stop.clone()));
        let (src, dst) = open_sides(source, job, throttles, share).await?;
        compare_sides(src, dst, pairs, opts, stop, &mut report).await
    };
    let result = abandoned_after_signal(stop.or_abandon(work).await);
    finish(&mut report, result, started, stop);
    print_summary(&report);
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

/// Opens both live sides; only the source's readers are held to `throttles`; with `share`,
/// only that share's keys are compared.
pub(crate) async fn open_sides(
    source: &Server,
    job: &Job,
    throttles: Arc<Throttles>,
    share: Option<Arc<KeyShare>>,
) -> anyhow::Result<(Arc<LiveSide>, Arc<LiveSide>)> {
    let opts = live_options(job, None, share);
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

/// The settings of a live side of `job`: its tuning, held to `throttles`, only `share`'s keys.
pub(crate) fn live_options(
    job: &Job,
    throttles: Option<Arc<Throttles>>,
    share: Option<Arc<KeyShare>>,
) -> LiveOptions {
    LiveOptions {
        scan_count: job.tuning.scan_count,
        batch_bytes: job.tuning.batch_bytes,
        retry_for: job.retry_for(),
        throttles,
        share,
        big_key_bytes: job.tuning.big_key_bytes,
    }
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
    let mut tally = Tally::default();
    let (ks, kt) = tokio::try_join!(src.keyspace(), dst.keyspace())?;
    let total = pairs
        .iter()
        .map(|(db, tdb)| {
            let a = ks.get(db).map_or(0, |k| k.0);
            let b = kt.get(tdb).map_or(0, |k| k.0);
            a.max(b)
        })
        .sum();
    let ticker = Ticker::start(
        opts.progress,
        opts.log_every,
        total,
        src.progress(),
        dst.progress(),
    );
    let candidates = first_comparison(&src, &dst, pairs, opts, stop, &mut tally, report).await?;
    drop(ticker);
    let (left, rounds_run) = recheck(
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

    fill_totals(report, &tally, left, pairs);
    Ok(())
}

/// Closes `report`: the error of a failed run, timings, peak memory, the metrics gauge.
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

/// The first comparison of `pairs` in the mode `opts` asks for (listed keys, a sample, or every
/// key: first round); fills the report's per-DB counts and returns the keys that differ.
async fn first_comparison<S: Side, T: Side>(
    src: &Arc<S>,
    dst: &Arc<T>,
    pairs: &[(u32, u32)],
    opts: &Options,
    stop: &Stop,
    tally: &mut Tally,
    report: &mut VerifyReport,
) -> anyhow::Result<Vec<Candidate>> {
    Ok(match (opts.sample, &opts.listed) {
        (_, Some(lists)) => {
            report.mode = "listed";
            let (dbs, candidates) =
                listed_round(src, dst, pairs, lists, opts.tolerance_ms, stop, tally).await?;
            report.dbs = dbs;
            candidates
        }
        (Some(n), None) => {
            report.mode = "sample";
            let s = sample_round(src, dst, pairs, n, opts.tolerance_ms, stop, tally).await?;
            report.dbs = s.dbs;
            report.sample = Some(s.info);
            s.candidates
        }
        (None, None) => {
            let f = first_round(src, dst, pairs, opts.tolerance_ms, stop, tally).await?;
            report.dbs = f.dbs;
            report.buckets = Some(f.buckets);
            report.totals.listed = f.listed;
            f.candidates
        }
    })
}

/// Totals, the listed differences, notes and status, from what is `left` after the re-checks.
fn fill_totals(
    report: &mut VerifyReport,
    tally: &Tally,
    mut left: Vec<Candidate>,
    pairs: &[(u32, u32)],
) {
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
    report.differences_truncated = t.differences as usize > left.len().min(LIST_LIMIT);
    report.differences = left
        .iter()
        .take(LIST_LIMIT)
        .filter_map(|c| {
            let &(db, tdb) = pairs.get(c.pair)?;
            Some(Difference::new(db, tdb, &c.key, c.kind, c.detail.clone()))
        })
        .collect();
    if t.not_rechecked > 0 {
        report.notes.push(format!(
            "{} differences beyond the first {} were counted but not re-checked or listed",
            t.not_rechecked, MAX_TRACKED
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
}
