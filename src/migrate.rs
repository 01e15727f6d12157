//! `ferry migrate`: one flow (`flow.rs`) over a pluggable source (`source.rs`).
//!
//! ```text
//!  flow.rs     job ─► open the source ─► checkpoint ─► gate (check::gate) ─► source ready
//!              ─► conflict check ─► writers (writers.rs) ─► copy (pipeline.rs) ─► follow or
//!              reconcile ─► verification ─► status and report
//!  source.rs   what the flow asks a source (DBs, totals, readers, clock skew, progress, the gate's
//!              and the conflict check's inputs, how to verify), answered by:
//!    live.rs       a live server or cluster (SCAN + DUMP; --follow, --partition, big keys)
//!    from_file.rs  an RDB file (--rdb), checked whole before the first write
//!    keys_from.rs  the keys a file lists (--keys-from), read on the live source
//!  writers.rs  the target as the writers see it, the same for every source
//!  step.rs     what the flow and the sources hand each other (the run, the checkpoint's
//!              wording, the copy's readers)
//! ```
//! Each part calls only those below it in that list (`flow.rs` calls `source.rs`, which calls
//! the kinds of source; all of them call `writers.rs` and `step.rs`), and none calls this file.
//! This file holds what the flow shares with the rest of ferry: the report's frame and the
//! summary printed at the end.
//!
//! May call: `check` (the gate), `checkpoint`, `pipeline` (the copy), `source`, `sink`, `bigkey`,
//! `verify`, `follow`, `endpoint`, `job`, `plan`, `policy`, `partition`, `progress`, `metrics`,
//! `read`, `record`, `report`, `dead_letter`, `retry`, `throttle`, `stop`.

mod flow;
mod from_file;
mod keys_from;
mod live;
mod source;
mod step;
mod writers;

use std::time::Instant;

use crate::plan::{MigratePlan, Names, Refused};
use crate::report::{human_bytes, KeyCounts, MigrateReport, Status};
use crate::stop::Stop;

/// Runs `ferry migrate` and returns its report (never panics on bad input; errors land in it).
pub async fn run(plan: &MigratePlan, stop: Stop) -> MigrateReport {
    let started = Instant::now();
    let mut report = new_report(&plan.names);
    // After a signal, a phase stuck on a server that does not answer is abandoned (the copy
    // saves its checkpoint first, see `pipeline.rs`).
    match stop
        .clone()
        .or_abandon(flow::run(plan, stop.clone(), &mut report))
        .await
    {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            report.status = if stop.was_interrupted() {
                Status::Interrupted
            } else {
                Status::Error
            };
            report.error = Some(format!("{e:#}"));
        }
        None => interrupted(&mut report),
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.peak_rss_bytes = crate::report::peak_rss_bytes();
    report
}

/// The report of a command line that could not become a plan: nothing was done.
pub fn refused(refused: Refused) -> MigrateReport {
    let mut report = new_report(&refused.names);
    report.error = Some(format!("{:#}", refused.error));
    report.peak_rss_bytes = crate::report::peak_rss_bytes();
    report
}

/// A report that names both sides and says nothing happened yet (status `error` until set).
fn new_report(names: &Names) -> MigrateReport {
    MigrateReport {
        status: Status::Error,
        source: names.source.clone(),
        target: names.target.clone(),
        resumed: false,
        keys: KeyCounts::default(),
        bytes: 0,
        expiry_uncertainty_ms: 0,
        elapsed_ms: 0,
        checkpoint: None,
        dead_letter: None,
        error: None,
        verify: None,
        notes: Vec::new(),
        peak_rss_bytes: None,
        follow: None,
        cutover: None,
        partition: None,
    }
}

/// The report of a run abandoned after a signal while a server did not answer.
fn interrupted(report: &mut MigrateReport) {
    report.status = Status::Interrupted;
    report.error = Some(match &report.checkpoint {
        Some(cp) => format!(
            "interrupted while waiting for a server; the checkpoint {cp} holds every acknowledged batch: \
             rerun the same command to resume"
        ),
        None => "interrupted before the copy started; nothing was written".to_string(),
    });
}

/// Prints the human summary of a migrate run on stderr.
pub fn print_summary(r: &MigrateReport) {
    let secs = r.elapsed_ms as f64 / 1000.0;
    let rate = if secs > 0.0 {
        r.keys.written_this_run as f64 / secs
    } else {
        0.0
    };
    match r.status {
        Status::Ok | Status::Mismatch => eprintln!(
            "ferry: copied {} keys ({}) from {} to {} in {secs:.1}s ({rate:.0} keys/s this run)",
            r.keys.written,
            human_bytes(r.bytes),
            r.source,
            r.target
        ),
        Status::Interrupted => eprintln!("ferry: interrupted."),
        Status::Error => {}
    }
    if r.keys.scanned > 0 || r.status != Status::Error {
        eprintln!(
        "ferry: keys: scanned {}, written {} ({} this run), expired before copy {}, vanished {}, conflicts kept {}",
        r.keys.scanned, r.keys.written, r.keys.written_this_run, r.keys.expired_skipped, r.keys.vanished, r.keys.conflicts
    );
        if r.keys.dead_lettered > 0 {
            eprintln!(
                "ferry: keys: {} refused by the target and dead-lettered (not copied)",
                r.keys.dead_lettered
            );
        }
        if r.keys.reencoded > 0 {
            eprintln!(
                "ferry: keys: {} re-encoded for the target's older RDB version",
                r.keys.reencoded
            );
        }
    }
    for note in &r.notes {
        eprintln!("ferry: note: {note}");
    }
    if let Some(e) = &r.error {
        eprintln!("ferry: error: {e}");
    }
}
