//! Verification: proof that the target holds what the source holds.
//!
//! `ferry verify` runs it on its own; `ferry migrate` runs it after the copy (unless
//! `--no-verify`). It compares, for every database pair, every key's presence, type, logical
//! content and TTL, in both directions, and exits 0 only when nothing differs.
//!
//! # Layers
//! Each file calls only files of the layers below it; nothing here imports `mod.rs`. Outside
//! verify/, the sides read through `read` (TIME/PTTL/DUMP, SCAN, clocks, refusals), `endpoint`,
//! `bigkey` (big keys in chunks) and `rdb`/`source::rdb_file` (decoding, the file side); the entry
//! layer also calls `job`, `check` (the gate), `partition`, `throttle`, `metrics`, `report` and
//! `cli` (flags, until issue #12 item 2's plan replaces them).
//! ```text
//!  entry       mod.rs        `ferry verify`, and the checks after `migrate` / `migrate --keys-from`:
//!                            resolve the job, run the gate, pick the sides and the databases
//!              file_side.rs  …and `--rdb`: the file side against the live target (verify_file,
//!                            after_migrate)
//!  flow        flow.rs       one verification start to end: open the live sides, the first
//!                            comparison, the re-checks, totals into the report
//!  comparison  first_round.rs  a full run's first comparison: pass 1 streams both sides into
//!                            per-(db, hash slot) bucket sums (bucket.rs); buckets that differ →
//!                            pass 2: both sides listed again, only those buckets read, key by key
//!              sample.rs     --sample N: RANDOMKEY on both sides instead of the first round
//!              listed.rs     migrate --keys-from: only the listed keys, read by name on both sides
//!              rechecks.rs   keys that differ are read again, --round-pause later, up to --rounds
//!                            comparisons (also follow's cutover re-checks)
//!  sides       side.rs       what a side (the source or the target) answers: the `Side` trait,
//!                            and what its stream yields (Entry, Visit, Want, StreamStats)
//!              live_side.rs  a live side: a server, or every master of a cluster
//!              live_node.rs  one server of a live side: a SCAN lister and 3 readers, each page one
//!                            pipelined TIME + PTTL + DUMP round trip (the read layer, `crate::read`)
//!              file_side.rs  a file side: an RDB file (--rdb)
//!              big.rs        keys over --big-key-bytes (probed per page like the copy,
//!                            bigkey/size.rs) are never DUMPed: read in chunks (bigkey/read.rs),
//!                            digested by chunk_digest.rs to the same digest a DUMP would give
//!  values      state.rs      payload → decoded Value (rdb::decode, any RDB version) → KeyState
//!                            {kind, digest, expiry}
//!              digest.rs     canonical digest: order kept where Redis keeps it (lists, streams)
//!              chunk_digest.rs  the same digest, folded chunk by chunk
//!              bucket.rs     per-(db, hash slot) counts + order-independent sums, two TTL grids
//!              compare.rs    one key's two states, and two maps of keys, compared exactly
//!  leaves      options.rs    the settings of a run; report.rs  counts side by side, differences by
//!                            kind, JSON, the summary; progress.rs  keys listed, as a bar or log
//!                            lines; share.rs  --partition's share, on both sides
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
//!   held (bounded: see `first_round.rs`). Hash slots make a bucket meaningful on clusters too.
//! - **TTLs within a tolerance.** Expiries are absolute (`TIME + PTTL`, each side's clock skew
//!   removed) and agree within `--ttl-tolerance`; bucket sums hash expiries on two offset grids so
//!   that any drift beyond the tolerance always flags the bucket, while a drift of a few ms almost
//!   never does — and when it does, the exact re-read clears it (see `bucket.rs`). A TTL on one
//!   side only is always a difference.
//! - **Live sources.** Differences are re-checked in later rounds and reported only if they
//!   persist; keys that expired between the two reads are counted as expired, not lost.
//! - **A side is a stream.** The comparison needs only [`side::Side`]: list `(db, key, payload,
//!   expiry)` and re-read keys by name. A live side is one; an RDB file (`--rdb`) is another.
//!   "Side" means the source or the target everywhere in ferry (`endpoint::Side`).
//!
//! May call: `endpoint` (connections, routing), `read` (the same TIME/PTTL/DUMP reads as the
//! copy), `rdb` (decoding payloads and files), `bigkey` (a big key's chunks and size), `source`
//! (SCAN streams, a file's layout), `check` (the gate), `partition`, `throttle`, `progress`,
//! `metrics`, `report`, `plan`/`policy`/`job` (what was asked), `stop`, `display`. Not `sink`:
//! verification only reads, on both sides.

pub mod big;
pub mod bucket;
pub mod chunk_digest;
pub mod compare;
pub mod digest;
pub mod file_side;
pub mod first_round;
pub mod flow;
pub mod listed;
pub mod live_node;
pub mod live_side;
pub mod options;
pub mod progress;
pub mod rechecks;
pub mod report;
pub mod sample;
pub mod share;
pub mod side;
pub mod state;

use std::sync::Arc;
use std::time::Instant;

pub(crate) use flow::open_sides;
use flow::{abandoned_after_signal, compare_sides, default_pairs, finish};
pub use options::Options;
pub use report::{print_summary, DiffKind, Difference, VerifyReport};
use side::Side;

use crate::endpoint::Server;
use crate::job::{Job, SourceSpec};
use crate::partition::KeyShare;
use crate::plan::{MigratePlan, Refused, VerifyPlan};
use crate::stop::Stop;
use crate::throttle::Throttles;

/// Runs `ferry verify`. Never panics on bad input: errors land in the report (status `error`).
pub async fn run(plan: &VerifyPlan, stop: Stop) -> VerifyReport {
    let opts = Options::new(&plan.verify, &plan.output, plan.sample);
    let mut report = VerifyReport::new(
        plan.names.source.clone(),
        plan.names.target.clone(),
        opts.tolerance_ms,
        opts.rounds,
    );
    let started = Instant::now();
    crate::metrics::set_phase("verify");
    let work = async {
        let mut job = plan.job.clone();
        let limits = plan.limits;
        job.refuse_live_only(&limits, "verify")?;
        job.prepare_source(&stop).await?;
        // The checks of `ferry check` that apply to a reading job (reach, TLS, login, ACL
        // rights, DBs, clocks; for a file, its soundness), before the first read: a failing
        // row stops here.
        crate::check::gate(crate::check::Gate {
            job: &job,
            purpose: crate::check::Purpose::Verify,
            on_conflict: crate::policy::OnConflict::Replace,
            conflicts: false,
            copied_keys: 0,
            follow: None,
            insecure: job.insecure,
            file: None,
            skip_key_errors: false,
        })
        .await?;
        let source = match &job.source {
            SourceSpec::Live(s) => s.clone(),
            SourceSpec::Rdb(input) => {
                return file_side::verify_file(input.path(), &job, &opts, &stop, &mut report).await
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
        report.partition = job.partition.map(|p| job.share_of("verify", p));
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

/// The report of a `ferry verify` whose command line could not become a plan.
pub fn refused(refused: Refused) -> VerifyReport {
    let Refused {
        names,
        verify,
        error,
    } = refused;
    let mut report = VerifyReport::new(
        names.source,
        names.target,
        verify.ttl_tolerance_ms,
        verify.rounds.max(1),
    );
    finish(&mut report, Err(error), Instant::now(), &Stop::new());
    report
}

/// Runs the verification at the end of `ferry migrate` between the servers just copied, prints
/// its summary, and returns its report.
pub async fn after_migrate(
    source: &Server,
    job: &Job,
    db_pairs: &[(u32, u32)],
    share: Option<Arc<KeyShare>>,
    plan: &MigratePlan,
    stop: &Stop,
) -> VerifyReport {
    let opts = Options::new(&plan.verify, &plan.output, None);
    let announce = "verifying the target against the source";
    let limits = plan.limits;
    flow::after_copy(source, job, db_pairs, share, &opts, limits, announce, stop).await
}

/// Verifies the keys of `lists` between `source` and the job's target after a `--keys-from`
/// copy (see `listed.rs`); prints its summary and returns its report.
pub async fn after_keys_from(
    source: &Server,
    job: &Job,
    lists: Arc<listed::KeyLists>,
    plan: &MigratePlan,
    stop: &Stop,
) -> VerifyReport {
    let mut opts = Options::new(&plan.verify, &plan.output, None);
    opts.listed = Some(lists.clone());
    let pairs: Vec<(u32, u32)> = lists.keys().map(|&db| (db, job.target_db(db))).collect();
    let announce = "verifying the listed keys on both sides";
    let limits = plan.limits;
    flow::after_copy(source, job, &pairs, None, &opts, limits, announce, stop).await
}
