//! The checks of `ferry check`, run at the start of `migrate` and `verify`, before anything is
//! written.
//!
//! One set of checks for both, so that what `ferry check` promises is what the run enforces: a
//! failing row stops the run before its first write (exit 2), printing the failing rows in the
//! words `ferry check` uses (check, what was found, what to do); a warning is printed and the run
//! goes on. The rows that `migrate` needs to go on (each side's layout, clock skews, the
//! target's `proto-max-bulk-len`) come back in [`Gated`], so the run does not ask again.
//!
//! Cheap on purpose, since every run pays it: a handful of round trips per server (INFO, TIME,
//! CONFIG GET, one pipeline of `RANDOMKEY` and one of `MEMORY USAGE`, `ACL DRYRUN`). Only the
//! conflict check can read the whole source (when the target DBs are not empty and
//! `--on-conflict fail`), as it did before the gate; a resumed run whose checkpoint says it passed
//! skips it, since the target then holds ferry's own keys.

use std::time::Instant;

use super::{run_checks, Check, Lost, Plan, Purpose, SideInfo, Source, Status};
use crate::endpoint::retry::Backoff;
use crate::job::Job;
use crate::policy::OnConflict;
use crate::source::rdb_file::FileSummary;

/// What a run asks the gate, beyond the job.
pub struct Gate<'a> {
    /// The job, resolved from the command line.
    pub job: &'a Job,
    /// `Purpose::Migrate` or `Purpose::Verify`.
    pub purpose: super::Purpose,
    /// The run's `--on-conflict`.
    pub on_conflict: OnConflict,
    /// Look the source's keys up on the target (false when the checkpoint says it passed).
    pub conflicts: bool,
    /// Keys already copied by the run being resumed.
    pub copied_keys: u64,
    /// `None` without `--follow`, else whether `--enable-notifications` was given.
    pub follow: Option<bool>,
    /// `--source-insecure`, `--target-insecure`.
    pub insecure: (bool, bool),
    /// The RDB file source, already examined by the caller.
    pub file: Option<&'a FileSummary>,
    /// `--on-key-error skip`: a key the target will refuse is set aside, not a failure.
    pub skip_key_errors: bool,
}

/// What the gate learned, for the run to go on with.
pub struct Gated {
    /// The live source (`None` for an RDB file).
    pub source: Option<SideInfo>,
    /// The target.
    pub target: SideInfo,
    /// The source's clock skew, ms (0 for a file: its expiries are taken as this machine's).
    pub source_skew_ms: i64,
    /// The target's clock skew, ms.
    pub target_skew_ms: i64,
    /// The target's `proto-max-bulk-len`, when CONFIG GET is allowed.
    pub max_bulk: Option<u64>,
    /// The warnings, one line each (already printed), for the report's notes.
    pub warnings: Vec<String>,
}

/// Runs the checks; `Err` (naming every failing row) when one fails, before anything is written.
pub async fn gate(g: Gate<'_>) -> anyhow::Result<Gated> {
    let started = Instant::now();
    let plan = Plan {
        purpose: g.purpose,
        on_conflict: g.on_conflict,
        conflicts: g.conflicts,
        copied_keys: g.copied_keys,
        follow: g.follow,
        insecure: g.insecure,
        file: g.file.cloned(),
        skip_key_errors: g.skip_key_errors,
    };
    // The checks only read, so a connection lost on the way redoes them all on new
    // connections, within --retry-for (as every other phase); a first contact that nothing
    // accepts is a wrong address, reported at once.
    let mut backoff = Backoff::new(g.job.tuning.retry_for);
    let mut first = true;
    let (rows, sides) = loop {
        let mut rows = Vec::new();
        let sides = run_checks(&plan, g.job, &mut rows).await;
        let failed: Vec<&Check> = rows.iter().filter(|c| c.status == Status::Fail).collect();
        if failed.is_empty() {
            break (rows, sides);
        }
        let error = anyhow::anyhow!("{}", refusal(&failed, g.purpose));
        let retry = failed.iter().any(|c| match c.lost {
            Lost::Dropped => true,
            Lost::Refused => !first,
            Lost::No => false,
        });
        if !retry {
            return Err(error);
        }
        drop(sides);
        backoff.wait(error).await?;
        first = false;
    };
    tracing::debug!(
        "{} checks before writing in {} ms",
        rows.len(),
        started.elapsed().as_millis()
    );
    let warnings: Vec<String> = rows
        .iter()
        .filter(|c| c.status == Status::Warn)
        .map(Check::line)
        .collect();
    for w in &warnings {
        eprintln!("ferry: warning: {w}");
    }
    let Some(dst) = sides.dst else {
        anyhow::bail!("the target could not be examined; run `ferry check` with the same flags");
    };
    let source = match sides.src {
        Some(Source::Live(p)) => Some(p.side),
        _ => None,
    };
    Ok(Gated {
        source,
        target: dst.side,
        source_skew_ms: sides.facts.source_skew_ms.unwrap_or(0),
        target_skew_ms: sides.facts.target_skew_ms.unwrap_or(0),
        max_bulk: sides.facts.max_bulk,
        warnings,
    })
}

/// The error of a run the checks stopped: every failing row, as `ferry check` words it.
fn refusal(failed: &[&Check], purpose: Purpose) -> String {
    let what = match purpose {
        Purpose::Verify => "nothing was verified",
        _ => "nothing was written",
    };
    let rows: Vec<String> = failed.iter().map(|c| format!("  {}", c.line())).collect();
    format!(
        "{} check{} failed before the run started, so {what}:\n{}\n(`ferry check` with the same flags shows every check)",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
        rows.join("\n")
    )
}
