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
mod server;
mod side;

use std::time::Instant;

use serde::Serialize;

pub use conflicts::{check_conflicts, Probe};
pub(crate) use conflicts::{Conflicts, Exists};
pub use dbs::{check_db_plan, check_dbs_exist, check_dbs_on, shared_target, target_db_flag};
pub use gate::{gate, Gate, Gated};
pub use keys::max_bulk_len;
pub use side::{examine, inspect, Layout, SideInfo};

use crate::job::{Job, SourceSpec};
use crate::plan::{CheckPlan, Refused};
use crate::policy::OnConflict;
use crate::source::rdb_file::FileSummary;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine for the migration.
    Ok,
    /// The migration would run, but something deserves a look.
    Warn,
    /// The migration would fail or lose data.
    Fail,
}

impl Status {
    /// 0 ready, 1 warnings only, 2 something would fail.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    /// "ok", "warn" or "FAIL", as the table shows it.
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of the result: what was checked, how it went, what was found, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked, e.g. "target: maxmemory".
    pub name: String,
    /// ok, warn or fail.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when ok).
    pub fix: String,
    /// What a failure came from when a connection failed: the gate of a run tries again then.
    #[serde(skip)]
    pub(crate) lost: Lost,
}

/// Whether a failed row came from a connection that failed, which a retry may not meet again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Not a connection failure: the answer stands.
    #[default]
    No,
    /// Nothing accepted the connection: a wrong address at first contact, a restart later.
    Refused,
    /// A connection was lost or the server stalled.
    Dropped,
}

/// What to do about a check that lost its connection.
pub(crate) const LOST_FIX: &str = "check the server's health and network, then run the check again";

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, "")
    }

    /// A warning.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, detail, fix)
    }

    /// A failure.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, detail, fix)
    }

    /// The row, marked as caused by `e` when `e` is a connection failure.
    pub(crate) fn caused_by(self, e: &anyhow::Error) -> Check {
        match e.downcast_ref::<crate::endpoint::ConnError>() {
            Some(c) => self.caused_by_conn(c),
            None => self,
        }
    }

    /// The row, marked as caused by the connection failure `e`. A lost or silent connection
    /// says nothing about what the row checks (an ACL, a setting), so its "what to do" is the
    /// connection's, not the check's.
    pub(crate) fn caused_by_conn(mut self, e: &crate::endpoint::ConnError) -> Check {
        use crate::endpoint::ConnError;
        self.lost = match e {
            ConnError::Connect { .. } => Lost::Refused,
            ConnError::Lost { .. } | ConnError::Stalled { .. } => Lost::Dropped,
            _ => Lost::No,
        };
        if self.lost == Lost::Dropped {
            self.fix = LOST_FIX.into();
        }
        self
    }

    /// "name: detail | what to do: fix", the row as one line of a log.
    pub fn line(&self) -> String {
        if self.fix.is_empty() {
            format!("{}: {}", self.name, self.detail)
        } else {
            format!("{}: {} | what to do: {}", self.name, self.detail, self.fix)
        }
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
            lost: Lost::No,
        }
    }
}

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
    let plan = Plan {
        purpose: Purpose::Check,
        on_conflict: check.on_conflict,
        conflicts: true,
        copied_keys: 0,
        follow: check.follow,
        insecure: check.job.insecure,
        file: None,
        skip_key_errors: false,
    };
    match job.await {
        Ok(job) => {
            run_checks(&plan, &job, &mut checks).await;
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

/// Which command the checks are for: what it sends decides which rows apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `ferry check`: every row, as `migrate` would need them.
    Check,
    /// The gate of `ferry migrate`.
    Migrate,
    /// The gate of `ferry verify`: it only reads, so no capacity, conflict or RESTORE rows.
    Verify,
}

/// How the checks run, beyond the job.
pub(crate) struct Plan {
    /// For which command.
    pub purpose: Purpose,
    /// The `--on-conflict` of the run.
    pub on_conflict: OnConflict,
    /// Look the source's keys up on the target (`--on-conflict fail`); false on a resume
    /// whose checkpoint says the check passed (the target then holds ferry's own keys).
    pub conflicts: bool,
    /// Keys already copied by the run being resumed: they need no more room on the target.
    pub copied_keys: u64,
    /// `None` without `--follow`, else whether `--enable-notifications` was given.
    pub follow: Option<bool>,
    /// `--source-insecure`, `--target-insecure`.
    pub insecure: (bool, bool),
    /// `--on-key-error skip`: a key the target will refuse is set aside, not a failure.
    pub skip_key_errors: bool,
    /// An RDB file the caller already examined (else the checks examine it).
    pub file: Option<FileSummary>,
}

/// What the checks learned that a run goes on with.
#[derive(Default)]
pub(crate) struct Facts {
    /// The source's clock skew, ms (live source, when TIME answered).
    pub source_skew_ms: Option<i64>,
    /// The target's clock skew, ms.
    pub target_skew_ms: Option<i64>,
    /// The target's `proto-max-bulk-len`, when CONFIG GET is allowed.
    pub max_bulk: Option<u64>,
}

/// Both sides as the checks left them (`None`: a side that could not be used, with a fail row).
pub(crate) struct Sides {
    /// The source: a live side or an examined file.
    pub src: Option<Source>,
    /// The target.
    pub dst: Option<connect::Probed>,
    /// What the run goes on with.
    pub facts: Facts,
}

/// The checks in priority order; a side that cannot be reached skips the checks that need it.
/// Each side's own checks run side by side (rows kept in order): every run pays for them.
pub(crate) async fn run_checks(plan: &Plan, job: &Job, out: &mut Vec<Check>) -> Sides {
    let mut facts = Facts::default();
    let (mut src_rows, mut dst_rows) = (Vec::new(), Vec::new());
    let source = async {
        match (&job.source, &plan.file) {
            (SourceSpec::Live(server), _) => {
                connect::probe(server, &job.source_addr_map, plan.insecure.0, &mut src_rows)
                    .await
                    .map(Source::Live)
            }
            (SourceSpec::Rdb(_), Some(summary)) => Some(Source::File(summary.clone())),
            (SourceSpec::Rdb(input), None) => {
                layout::examine_file(input.path(), job, &mut src_rows)
                    .await
                    .map(Source::File)
            }
        }
    };
    let target = connect::probe(
        &job.target,
        &job.target_addr_map,
        plan.insecure.1,
        &mut dst_rows,
    );
    let (mut src, dst) = tokio::join!(source, target);
    out.append(&mut src_rows);
    out.append(&mut dst_rows);
    let Some(mut dst) = dst else {
        return Sides {
            src,
            dst: None,
            facts,
        };
    };
    if let Some(Source::Live(s)) = &src {
        cert::expiry(s, out);
    }
    cert::expiry(&dst, out);
    let writes = plan.purpose != Purpose::Verify;
    if let Some(Source::Live(s)) = &src {
        server::versions(s, &dst, out);
    }
    // The sample gives both ACL checks real key names (key patterns are checked on them).
    let sample = match &mut src {
        Some(Source::Live(s)) => keys::sample(s, job).await,
        _ => keys::Sample::default(),
    };
    let source = async {
        if let Some(Source::Live(s)) = &mut src {
            acl::source(s, job, &sample, &mut src_rows).await;
        }
    };
    let target = acl::target(&mut dst, job, &sample, writes, &mut dst_rows);
    tokio::join!(source, target);
    out.append(&mut src_rows);
    out.append(&mut dst_rows);
    if let Some(src) = &mut src {
        layout::plan(src, &mut dst, job, plan, out).await;
        if writes {
            capacity::memory(src, &dst, job, plan.copied_keys, out);
            capacity::eviction(&dst, out);
        }
    }
    let source = async {
        if let Some(Source::Live(s)) = &mut src {
            capacity::clients(s, Role::Source, &mut src_rows).await;
        }
    };
    let target = capacity::clients(&mut dst, Role::Target(job), &mut dst_rows);
    tokio::join!(source, target);
    out.append(&mut src_rows);
    out.append(&mut dst_rows);
    bulk_clocks_notifications(&mut src, &mut dst, job, plan, &sample, &mut facts, out).await;
    Sides {
        src,
        dst: Some(dst),
        facts,
    }
}

/// The last rows, which depend on the source's kind: the target's `proto-max-bulk-len` against
/// the biggest sampled keys, clock skews, and keyspace notifications for `--follow`.
async fn bulk_clocks_notifications(
    src: &mut Option<Source>,
    dst: &mut connect::Probed,
    job: &Job,
    plan: &Plan,
    sample: &keys::Sample,
    facts: &mut Facts,
    out: &mut Vec<Check>,
) {
    let writes = plan.purpose != Purpose::Verify;
    let (mut src_rows, mut dst_rows) = (Vec::new(), Vec::new());
    match src {
        Some(Source::Live(s)) => {
            if writes {
                let tolerated = job.tuning.big_key_bytes > 0 || plan.skip_key_errors;
                facts.max_bulk = keys::bulk_len(s, sample, dst, tolerated, out).await;
            }
            let (a, b) = tokio::join!(
                server::clock(s, &mut src_rows),
                server::clock(dst, &mut dst_rows)
            );
            (facts.source_skew_ms, facts.target_skew_ms) = (a, b);
            out.append(&mut src_rows);
            out.append(&mut dst_rows);
            if plan.purpose == Purpose::Check || plan.follow.is_some() {
                notify::notifications(s, plan.follow, out).await;
            }
        }
        Some(Source::File(_)) => {
            if let Some(node) = dst.nodes.first_mut() {
                facts.max_bulk = keys::max_bulk_len(&mut node.conn).await.ok().flatten();
            }
            facts.target_skew_ms = server::clock(dst, out).await;
        }
        None => {}
    }
}

/// The source as the checks see it.
pub(crate) enum Source {
    /// A live server or cluster, connected.
    Live(connect::Probed),
    /// An RDB file, examined whole.
    File(crate::source::rdb_file::FileSummary),
}

/// Which side a check is about.
pub(crate) enum Role<'a> {
    /// The source.
    Source,
    /// The target, with the job (for how many connections ferry opens).
    Target(&'a Job),
}

/// `CONFIG GET name` on one server; `None` when refused (managed services often block CONFIG).
pub(crate) async fn config_get(
    conn: &mut crate::endpoint::Connection,
    name: &str,
) -> Option<String> {
    let reply = conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", name.as_bytes()])
        .await
        .ok()?;
    match reply {
        crate::endpoint::Reply::Array(Some(items)) => items.get(1)?.to_text(),
        _ => None,
    }
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
