//! Where the keys would go: the DB plan against the target (a cluster has only DB 0; several
//! DBs into one need a conflict policy; every DB must exist on a standalone server) and keys
//! already on the target against `--on-conflict` — as rows, from `dbs.rs` and `conflicts.rs`.
//!
//! With `--rdb`, the file is examined whole first (structure, checksum, every key) exactly as
//! `migrate --rdb` does before writing, which also gives its DBs and key counts.

use std::path::Path;

use super::conflicts::{check_conflicts, Probe};
use super::connect::Probed;
use super::dbs::{check_db_plan, check_dbs_exist};
use super::side::{Layout, SideInfo};
use super::{Check, Plan, Purpose, Source};
use crate::endpoint::route::Router;
use crate::job::Job;
use crate::partition::Share;
use crate::policy::OnConflict;
use crate::source::rdb_file::{self, FileOptions, FileSummary};
use crate::stop::Stop;

/// Examines an RDB file source; `None` (with a fail row) when it cannot be used.
pub(crate) async fn examine_file(
    path: &Path,
    job: &Job,
    out: &mut Vec<Check>,
) -> Option<FileSummary> {
    let opts = FileOptions {
        batch_keys: job.tuning.batch_keys,
        batch_bytes: job.tuning.batch_bytes,
        dbs: (!job.dbs.is_empty()).then(|| job.dbs.iter().copied().collect()),
        target_rdb: None,
        skip_modules: false,
        big_value_bytes: (job.tuning.big_key_bytes > 0).then_some(job.tuning.big_key_bytes),
    };
    let p = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || rdb_file::examine(&p, &opts, &Stop::new()))
        .await
        .map_err(|e| anyhow::anyhow!("the file check failed: {e}"))
        .and_then(|r| r);
    let name = "source: RDB file";
    match result {
        Ok(s) => {
            out.push(Check::ok(
                name,
                format!("{}: {}", path.display(), s.describe()),
            ));
            Some(s)
        }
        Err(e) => {
            out.push(Check::fail(
                name,
                format!("{e:#}"),
                "give a complete, readable RDB file (a fresh BGSAVE or backup)",
            ));
            None
        }
    }
}

/// (source DB, target DB) for every DB the job would copy.
pub(crate) fn pairs(src: &Source, job: &Job) -> Vec<(u32, u32)> {
    let dbs: Vec<u32> = if !job.dbs.is_empty() {
        job.dbs.clone()
    } else {
        match src {
            Source::Live(s) => s.side.keyspace.keys().copied().collect(),
            Source::File(f) => f
                .dbs
                .iter()
                .filter(|(_, s)| s.keys + s.empty > 0)
                .map(|(db, _)| *db)
                .collect(),
        }
    };
    dbs.iter().map(|&db| (db, job.target_db(db))).collect()
}

/// The DB plan, the DBs on each side, and the conflict check.
pub(crate) async fn plan(
    src: &mut Source,
    dst: &mut Probed,
    job: &Job,
    plan: &Plan,
    out: &mut Vec<Check>,
) {
    let pairs = pairs(src, job);
    // verify only reads: DBs sharing a target DB are compared, not overwritten.
    let on_conflict = match plan.purpose {
        Purpose::Verify => OnConflict::Replace,
        _ => plan.on_conflict,
    };
    let file_side;
    let source_side = match src {
        Source::Live(s) => &s.side,
        // A file is never a cluster; check_db_plan only needs the source's layout and keys per
        // DB, so the file stands as a standalone server with the file's key counts.
        Source::File(f) => {
            file_side = SideInfo {
                info: Default::default(),
                layout: Layout::Standalone(job.target.clone()),
                keyspace: f.dbs.iter().map(|(db, s)| (*db, s.keys)).collect(),
            };
            &file_side
        }
    };
    let name = "DB layout";
    match check_db_plan(
        &pairs,
        source_side,
        &dst.side,
        &job.target.endpoint,
        on_conflict,
    ) {
        Ok(()) => {
            let shown: Vec<String> = pairs
                .iter()
                .map(|(s, t)| {
                    format!(
                        "DB {s} ({} keys) → DB {t}",
                        source_side.keyspace.get(s).copied().unwrap_or(0)
                    )
                })
                .collect();
            let detail = if shown.is_empty() {
                "the source has no keys".to_string()
            } else {
                shown.join(", ")
            };
            if let Err(e) = dbs_exist(src, dst, job, &pairs).await {
                let fix =
                    "choose DBs the server has (--db, --db-map), or raise its `databases` setting";
                out.push(Check::fail(name, format!("{e:#}"), fix).caused_by(&e));
                return;
            }
            out.push(Check::ok(name, detail));
        }
        Err(e) => {
            let fix = if let Some((s, _)) = pairs
                .iter()
                .find(|(_, t)| *t != 0)
                .filter(|_| dst.side.is_cluster())
            {
                format!("add --db-map {s}:0 (the target is a cluster: DB 0 only)")
            } else if source_side.is_cluster() {
                "leave out --db: a cluster source has only DB 0".into()
            } else {
                "pass --on-conflict replace or skip, or copy one DB at a time with --db".into()
            };
            out.push(Check::fail(name, format!("{e:#}"), fix));
            // The conflict check needs a valid plan.
            return;
        }
    }
    if plan.purpose != Purpose::Verify {
        conflicts(src, dst, job, &pairs, plan, out).await;
    }
}

/// Every DB of the plan exists on each standalone side (the source first: a DB it lacks is the
/// user's choice to correct, not the target's fault).
async fn dbs_exist(
    src: &mut Source,
    dst: &mut Probed,
    job: &Job,
    pairs: &[(u32, u32)],
) -> anyhow::Result<()> {
    if let Source::Live(s) = src {
        if !s.side.is_cluster() && !job.dbs.is_empty() {
            if let Some(node) = s.nodes.first_mut() {
                let dbs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                check_dbs_exist(&mut node.conn, &dbs, &|db| format!("--db {db}")).await?;
            }
        }
    }
    if !dst.side.is_cluster() {
        if let Some(node) = dst.nodes.first_mut() {
            let tdbs: Vec<u32> = pairs.iter().map(|p| p.1).collect();
            let flag = |t| crate::check::target_db_flag(pairs, t);
            check_dbs_exist(&mut node.conn, &tdbs, &flag).await?;
        }
    }
    Ok(())
}

/// Keys already on the target against `--on-conflict`.
async fn conflicts(
    src: &Source,
    dst: &Probed,
    job: &Job,
    pairs: &[(u32, u32)],
    plan: &Plan,
    out: &mut Vec<Check>,
) {
    let name = "target: existing keys";
    let retry_for = job.retry_for();
    let mut probe = match &dst.side.layout {
        Layout::Standalone(server) => {
            Probe::Standalone(crate::endpoint::retry::Link::new(server.clone(), retry_for))
        }
        Layout::Cluster { cluster, topology } => {
            Probe::Cluster(Router::new(cluster.clone(), topology, retry_for))
        }
    };
    let mut held = Vec::new();
    for &(_, t) in pairs {
        match probe.dbsize(t).await {
            Ok(0) => {}
            Ok(n) => held.push(format!("DB {t} holds {n} keys")),
            Err(e) => {
                out.push(Check::warn(
                    name,
                    format!("{e:#}"),
                    "grant the target user +dbsize",
                ));
                return;
            }
        }
    }
    held.dedup();
    if held.is_empty() {
        out.push(Check::ok(name, "the target DBs are empty"));
        return;
    }
    let held = held.join(", ");
    match (plan.on_conflict, src) {
        (OnConflict::Fail, _) if !plan.conflicts => out.push(Check::ok(
            name,
            format!("{held}; the checkpoint of the run being resumed says none was the source's when it started"),
        )),
        (OnConflict::Fail, Source::Live(s)) => {
            let (servers, filter, pairs) = match job.partition {
                // `--partition`: other workers' keys are theirs to check (and to write).
                Some(p) => {
                    let dbs: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                    let share = Share::resolve(p, &s.side.layout, &dbs);
                    let mine: Vec<(u32, u32)> =
                        pairs.iter().copied().filter(|(db, _)| share.dbs.contains(db)).collect();
                    (share.layout(&s.side.layout).servers(), share.read_filter, mine)
                }
                None => (s.servers(), None, pairs.to_vec()),
            };
            match check_conflicts(
                &servers,
                &mut probe,
                &pairs,
                job.tuning.scan_count,
                retry_for,
                filter.as_deref(),
            )
            .await {
                Ok(()) => out.push(Check::ok(name, format!("{held}, none of them the source's"))),
                Err(e) => out.push(Check::fail(
                    name,
                    format!("{e:#}"),
                    "pass --on-conflict replace (overwrite) or skip (keep the target's copies), or empty the target",
                ).caused_by(&e)),
            }
        }
        (OnConflict::Fail, Source::File(_)) if plan.purpose == Purpose::Migrate => out.push(Check::ok(
            name,
            format!("{held}; every key of the file is looked up on the target before the first write"),
        )),
        (OnConflict::Fail, Source::File(_)) => out.push(Check::warn(
            name,
            format!("{held}; whether any is one of the file's keys is checked by migrate before it writes"),
            "empty the target, or pass --on-conflict replace or skip",
        )),
        (OnConflict::Replace, _) => out.push(Check::ok(name, format!("{held}; --on-conflict replace overwrites those the source also has"))),
        (OnConflict::Skip, _) => out.push(Check::ok(name, format!("{held}; --on-conflict skip keeps the target's copies"))),
    }
}
