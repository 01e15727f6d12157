//! The checks in priority order (`run_checks`), shared by `ferry check` and the gate of
//! `migrate` and `verify`: each side is probed, then every group of rows runs on what the probe
//! found; a side that cannot be reached skips the checks that need it.
//!
//! May call: every check of `check` (`connect`, `layout`, `cert`, `server`, `keys`, `acl`,
//! `capacity`, `notify`), and `row`, `purpose`, `sides` for what they share; `job`.

use super::capacity::{self, Role};
use super::connect;
use super::purpose::{Gate, Purpose};
use super::row::Check;
use super::sides::{Facts, Sides, Source};
use super::{acl, cert, keys, layout, notify, server};
use crate::job::{Job, SourceSpec};

/// The checks in priority order; a side that cannot be reached skips the checks that need it.
/// Each side's own checks run side by side (rows kept in order): every run pays for them.
pub(crate) async fn run_checks(plan: &Gate<'_>, out: &mut Vec<Check>) -> Sides {
    let job = plan.job;
    let mut facts = Facts::default();
    let (mut src_rows, mut dst_rows) = (Vec::new(), Vec::new());
    let source = async {
        match (&job.source, &plan.file) {
            (SourceSpec::Live(server), _) => {
                connect::probe(server, &job.source_addr_map, plan.insecure.0, &mut src_rows)
                    .await
                    .map(Source::Live)
            }
            (SourceSpec::Rdb(_), Some(summary)) => Some(Source::File((*summary).clone())),
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
    plan: &Gate<'_>,
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
