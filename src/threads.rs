//! `--threads`: how many runtime threads drive one worker's readers and writers.
//!
//! Without the flag, a worker uses the cores it may run on (`available_parallelism`, which
//! follows the process's CPU affinity and a container's cgroup CPU quota), capped by the number
//! of source streams it reads at once: one per source master of its share, one per DB of a
//! standalone source (`ferry verify`: its two sides). A thread beyond that has no reader of its
//! own to run; readers are where ferry's CPU goes (parsing DUMP replies), the writers' encoding
//! rides along. One thread is the current-thread runtime, which has no cross-thread wake-ups
//! and costs the least CPU; it is what a one-stream job or a one-core pod gets.
//!
//! The stream count needs the source's layout, which is only known after connecting, while the
//! runtime must exist first: a short probe on a throw-away current-thread runtime reads it
//! (one connection, `INFO` and the cluster topology; a few ms). A probe that fails (the source
//! unreachable, bad flags) falls back to one thread: the run itself then reports the error.

use std::time::Duration;

use crate::check::{self, Layout};
use crate::job::SourceSpec;
use crate::partition::Share;
use crate::plan::MigratePlan;

/// Streams `ferry verify` reads at once: the source and the target, each in its own task.
pub const VERIFY_STREAMS: usize = 2;

/// How long the start-up probe of the source may take before one thread is used.
const PROBE_FOR: Duration = Duration::from_secs(10);

/// The cores this process may run on (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread count: `given` (`--threads`), else `cores` capped by `streams` (at least 1).
pub fn choose(given: Option<u16>, cores: usize, streams: usize) -> usize {
    match given {
        Some(n) => usize::from(n).max(1),
        None => cores.min(streams).max(1),
    }
}

/// `ferry migrate`'s thread count: `--threads`, else the default (see the module doc).
pub fn for_migrate(plan: &MigratePlan) -> usize {
    // An RDB file is one stream (parsed on blocking threads whatever the runtime), and a probe
    // must not touch it (`--rdb -` is standard input).
    let given = plan.job.tuning.threads;
    let rdb = matches!(plan.job.source, SourceSpec::Rdb(_));
    if given.is_some() || cores() <= 1 || rdb {
        return choose(given, cores(), 1);
    }
    let probe = async {
        tokio::time::timeout(PROBE_FOR, source_streams(plan))
            .await
            .ok()
            .flatten()
    };
    let streams = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(probe));
    let threads = choose(None, cores(), streams.unwrap_or(1));
    tracing::info!(
        "--threads {threads}: {} core(s) available, {} source stream(s)",
        cores(),
        streams.map_or_else(|| "unknown".to_string(), |n| n.to_string())
    );
    threads
}

/// How many streams the copy of this worker's share reads at once (`None`: unknown).
async fn source_streams(plan: &MigratePlan) -> Option<usize> {
    let job = &plan.job;
    let SourceSpec::Live(source) = &job.source else {
        return Some(1);
    };
    let mut conn = source.connect().await.ok()?;
    let info = check::examine(&mut conn, source, &job.source_addr_map)
        .await
        .ok()?;
    let dbs: Vec<u32> = if job.dbs.is_empty() {
        info.keyspace.keys().copied().collect()
    } else {
        job.dbs.clone()
    };
    let (layout, dbs) = match job.partition {
        Some(p) => {
            let share = Share::resolve(p, &info.layout, &dbs);
            (share.layout(&info.layout), share.dbs)
        }
        None => (info.layout, dbs),
    };
    Some(match layout {
        Layout::Cluster { topology, .. } => topology.masters.len(),
        Layout::Standalone(_) => dbs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_capped_by_streams_unless_given() {
        assert_eq!(choose(None, 8, 2), 2);
        assert_eq!(choose(None, 2, 6), 2);
        assert_eq!(choose(None, 4, 0), 1);
        assert_eq!(choose(Some(3), 2, 1), 3);
    }
}
