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
//! - `server.rs`: versions (re-encoding), clock skew, keyspace notifications.
//!
//! Failures that `migrate` reports as errors are the same here, reused from `preflight.rs`
//! where it has them (DB plan, conflicts, clock skew, bulk length).

mod acl;
mod capacity;
mod cert;
mod connect;
mod keys;
mod layout;
mod server;

use std::time::Instant;

use serde::Serialize;

use crate::cli::CheckArgs;
use crate::job::{Job, SourceSpec};

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
}

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
pub async fn run(args: &CheckArgs) -> CheckReport {
    let started = Instant::now();
    let mut checks = Vec::new();
    let source = match (&args.endpoints.source, &args.endpoints.rdb) {
        (Some(url), _) => crate::endpoint::url::redact(url),
        (None, Some(path)) => format!("rdb:{}", path.display()),
        (None, None) => String::new(),
    };
    let target = crate::endpoint::url::redact(&args.endpoints.target);
    let job = async {
        let mut job = Job::resolve(&args.endpoints, &args.selection, &args.tuning)?;
        // `--rdb -` and gzip files are spooled to a plain file first, as migrate does.
        job.prepare_source(&crate::stop::Stop::new()).await?;
        anyhow::Ok(job)
    };
    match job.await {
        Ok(job) => run_checks(args, &job, &mut checks).await,
        Err(e) => checks.push(Check::fail(
            "command line",
            format!("{e:#}"),
            "fix the flags as the detail says",
        )),
    }
    CheckReport {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        source,
        target,
        checks,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

/// The checks in priority order; a side that cannot be reached skips the checks that need it.
async fn run_checks(args: &CheckArgs, job: &Job, out: &mut Vec<Check>) {
    let ep = &args.endpoints;
    let mut src = match &job.source {
        SourceSpec::Live(server) => {
            connect::probe(server, &job.source_addr_map, ep.source_insecure, out)
                .await
                .map(Source::Live)
        }
        SourceSpec::Rdb(input) => layout::examine_file(input.path(), job, out)
            .await
            .map(Source::File),
    };
    let dst = connect::probe(&job.target, &job.target_addr_map, ep.target_insecure, out).await;
    let Some(mut dst) = dst else { return };
    if let Some(Source::Live(s)) = &src {
        cert::expiry(s, out);
    }
    cert::expiry(&dst, out);
    let sample = match &mut src {
        Some(Source::Live(s)) => {
            server::versions(s, &dst, out);
            let sample = keys::sample(s, job).await;
            acl::source(s, &sample, out).await;
            sample
        }
        _ => keys::Sample::default(),
    };
    acl::target(&mut dst, job, &sample, out).await;
    let Some(mut src) = src else { return };
    layout::plan(&src, &dst, job, args.on_conflict, out).await;
    capacity::memory(&src, &dst, job, out);
    capacity::eviction(&dst, out);
    if let Source::Live(s) = &mut src {
        capacity::clients(s, Role::Source, out).await;
    }
    capacity::clients(&mut dst, Role::Target(job), out).await;
    if let Source::Live(s) = &mut src {
        keys::bulk_len(s, &sample, &mut dst, out).await;
        server::clocks(s, &mut dst, out).await;
        server::notifications(s, out).await;
    } else {
        server::clocks_target(&mut dst, out).await;
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
