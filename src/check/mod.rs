//! `ferry check`: would `ferry migrate` with these flags work? Asked before anything is written.
//!
//! An operator runs it from a job runner before the real job (or before a maintenance window),
//! so every problem that can be known up front is reported at once, as one row per check
//! (`ok` / `warn` / `fail`, what was found, what to do), instead of the first one found
//! stopping the job half-way. The exit code gates the job: 0 ready, 1 warnings only, 2 something
//! would fail.
//!
//! It only reads. On both sides it sends commands without side effects on the data (INFO, TIME,
//! SCAN, RANDOMKEY, PTTL, DUMP, EXISTS, DBSIZE, MEMORY USAGE, CONFIG GET, ACL WHOAMI/DRYRUN,
//! CLUSTER SLOTS/NODES); SELECT changes only the connection.
//!
//! May call: `endpoint`, `read` (clock skew, SCAN), `job`, `source` (RDB file summaries, plans),
//! `sink`, `follow` (notification settings), `partition`, `report`, `retry`, `stop`, `cli`, and
//! `migrate` (its phase).
//!
//! The checks, one file per group:
//! - `connect.rs`: reachability, TLS and authentication of each side, and its layout
//!   (standalone or cluster; every master reachable; slot coverage; failing nodes; replica
//!   target);
//! - `cert.rs`: the TLS certificates' expiry dates (warn under 30 days);
//! - `acl.rs`: the rights for every command ferry sends (`ACL DRYRUN` on 7.0+, else trying the
//!   read-only ones on the source);
//! - `layout.rs`: the DB plan against the target (a cluster has only DB 0) and keys already on
//!   the target against `--on-conflict`;
//! - `capacity.rs`: the data size against the target's `maxmemory`, `maxmemory-policy`,
//!   `maxclients`;
//! - `keys.rs`: the biggest keys (sampled) against the target's `proto-max-bulk-len`;
//! - `server.rs`: versions (re-encoding), clock skew;
//! - `notify.rs`: keyspace notifications for `--follow`.
//!
//! What the rows build on, shared with the commands: `side.rs` (what a side is: standalone or a
//! cluster's masters), `dbs.rs` (the DB plan, DBs that exist), `conflicts.rs` (keys already on
//! the target).
//!
//! `gate.rs` runs the same checks at the start of `migrate` and `verify`, before anything is
//! written: a failing row stops the run, a warning is printed and the run goes on.
//!
//! The layers, each calling only those below it (no file of `check` calls this one, which only
//! declares them and holds `ferry check`'s report):
//! ```text
//!  mod.rs        `ferry check`: run, its report, the table
//!  gate.rs       the same checks at the start of migrate and verify
//!  sequence.rs   the checks in priority order (`run_checks`)
//!  acl.rs … notify.rs   the checks, one file per group (above; notify.rs asks acl.rs, acl.rs
//!                keys.rs, capacity.rs layout.rs, never the other way)
//!  sides.rs      the source as the checks hold it (live or a file); what they leave a run with
//!  connect.rs    a side reached: its nodes, their connections and INFO, its layout
//!  purpose.rs    what a run asks the checks: the job, for which command, how they run
//!  row.rs        one row of the result (`Check`) and its `Status`
//!  side.rs, dbs.rs, conflicts.rs   shared with the commands
//! ```

mod acl;
mod capacity;
mod cert;
mod conflicts;
mod connect;
mod dbs;
mod gate;
mod keys;
mod layout;
pub mod notify;
mod purpose;
mod row;
mod sequence;
mod server;
mod side;
mod sides;

use std::time::Instant;

use serde::Serialize;

pub use conflicts::{check_conflicts, Probe};
pub(crate) use conflicts::{Conflicts, Exists};
pub use dbs::{check_db_plan, check_dbs_exist, check_dbs_on, shared_target, target_db_flag};
pub use gate::{gate, Gated};
pub use keys::max_bulk_len;
pub use purpose::{Gate, Purpose};
pub use row::{Check, Status};
pub use side::{examine, inspect, Layout, SideInfo};

use crate::plan::{CheckPlan, Refused};
use sequence::run_checks;

/// The JSON document of `ferry check --report`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// The worst status of any check.
    pub status: Status,
    /// Source, without password.
    pub source: String,
    /// Target, without password.
    pub target: String,
    /// Every check, in the order made.
    pub checks: Vec<Check>,
    /// Wall time of the checks.
    pub elapsed_ms: u64,
}

/// Runs every check and returns the result (never panics on bad input: it becomes a row).
pub async fn run(check: &CheckPlan) -> CheckReport {
    let started = Instant::now();
    let mut checks = Vec::new();
    let job = async {
        let mut job = check.job.clone();
        // `--rdb -` and gzip files are spooled to a plain file first, as migrate does.
        job.prepare_source(&crate::stop::Stop::new()).await?;
        anyhow::Ok(job)
    };
    match job.await {
        Ok(job) => {
            let asked = Gate {
                job: &job,
                purpose: Purpose::Check,
                on_conflict: check.on_conflict,
                conflicts: true,
                copied_keys: 0,
                follow: check.follow,
                insecure: check.job.insecure,
                file: None,
                skip_key_errors: false,
            };
            run_checks(&asked, &mut checks).await;
        }
        Err(e) => checks.push(command_line_failed(&e)),
    }
    CheckReport {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        source: check.names.source.clone(),
        target: check.names.target.clone(),
        checks,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

/// The report of a `ferry check` whose command line could not become a plan: one failed row.
pub fn refused(refused: Refused) -> CheckReport {
    CheckReport {
        status: Status::Fail,
        source: refused.names.source,
        target: refused.names.target,
        checks: vec![command_line_failed(&refused.error)],
        elapsed_ms: 0,
    }
}

/// The row of a command line that does not resolve (or an `--rdb` input that cannot be read).
fn command_line_failed(e: &anyhow::Error) -> Check {
    Check::fail(
        "command line",
        format!("{e:#}"),
        "fix the flags as the detail says",
    )
}

/// Prints the checks as a table on stdout, and a one-line verdict.
pub fn print_table(report: &CheckReport) {
    let rows: Vec<[&str; 4]> = report
        .checks
        .iter()
        .map(|c| {
            [
                c.name.as_str(),
                c.status.label(),
                c.detail.as_str(),
                if c.fix.is_empty() { "-" } else { &c.fix },
            ]
        })
        .collect();
    let header = ["CHECK", "STATUS", "DETAIL", "WHAT TO DO"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let line = |r: [&str; 4]| format!("{:w0$}  {:w1$}  {}  |  {}", r[0], r[1], r[2], r[3]);
    println!("{}", line(header));
    for r in rows {
        println!("{}", line(r));
    }
    let verdict = match report.status {
        Status::Ok => "ready: every check passed",
        Status::Warn => "ready, with warnings: read them before you migrate",
        Status::Fail => "NOT ready: migrate would fail or lose data (see the FAIL rows)",
    };
    println!("\n{verdict} ({} checks)", report.checks.len());
}
