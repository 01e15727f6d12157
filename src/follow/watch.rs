//! The keyspace watcher: finds source changes that publish no event.
//!
//! `FLUSHDB`, `FLUSHALL` and `SWAPDB` change many keys and publish no keyspace event, so a
//! follower that trusted events alone would leave the flushed keys on the target forever. Every
//! second the watcher reads, on its own connection, `INFO commandstats` (a call of any of the
//! three is a gap) and `INFO keyspace`: a database's key count can change by at most one per
//! event (a write creates or removes at most one key of it), so a count that moved by more than
//! the events received for that database (counted after a barrier, so every event published
//! before the `INFO` is in) means changes without events — a gap. Either way the follower runs a
//! reconciliation pass, which finds exactly what changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::events::Subscription;
use super::state::Shared;
use crate::endpoint::info::parse_keyspace;
use crate::endpoint::{Connection, Pipeline, Server};
use crate::stop::Stop;

/// Commands that change keys without an event.
const SILENT: [&str; 3] = ["cmdstat_flushdb:", "cmdstat_flushall:", "cmdstat_swapdb:"];

/// One reading of the source.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Calls of FLUSHDB, FLUSHALL and SWAPDB so far.
    silent: u64,
    /// Keys per followed DB.
    keys: BTreeMap<u32, u64>,
    /// Events received per followed DB just before the INFO was sent: every one of them was
    /// published before the INFO ran (they arrived before it was sent).
    events_before: BTreeMap<u32, u64>,
    /// Events received per followed DB after a barrier that followed the INFO: every event
    /// published before the INFO ran is counted (and perhaps a few after).
    events: BTreeMap<u32, u64>,
}

/// Watches until `stop` (see the module doc).
pub async fn run(server: Server, shared: Arc<Shared>, sub: Arc<Subscription>, stop: Stop) {
    let mut conn: Option<Connection> = None;
    let mut last: Option<Sample> = None;
    let mut p = Pipeline::new();
    p.cmd(&[b"INFO".as_slice(), b"commandstats"]);
    p.cmd(&[b"INFO".as_slice(), b"keyspace"]);
    while !stop.is_raised() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if conn.is_none() {
            match server.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!("follow: the keyspace watcher cannot connect yet: {e}");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let events_before: BTreeMap<u32, u64> = shared
            .dbs
            .iter()
            .map(|&db| (db, shared.events_of(db)))
            .collect();
        let replies = match c.run(&p).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("follow: the keyspace watcher lost its connection: {e}");
                conn = None;
                last = None;
                continue;
            }
        };
        let text = |i: usize| replies.get(i).and_then(|r| r.to_text()).unwrap_or_default();
        let keyspace = parse_keyspace(&text(1));
        let mut now = Sample {
            silent: silent_calls(&text(0)),
            events_before,
            ..Sample::default()
        };
        // Every event published before the INFO is counted once the barrier returns.
        if !sub.barrier(Duration::from_secs(10)).await {
            last = None;
            continue;
        }
        for &db in &shared.dbs {
            now.keys.insert(db, keyspace.get(&db).map_or(0, |k| k.0));
            now.events.insert(db, shared.events_of(db));
        }
        if let Some(before) = &last {
            if let Some(reason) = silent_change(before, &now) {
                shared.gap(reason);
            }
        }
        last = Some(now);
    }
}

/// Calls of FLUSHDB, FLUSHALL and SWAPDB so far.
fn silent_calls(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter(|l| SILENT.iter().any(|p| l.starts_with(p)))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Why the source changed without events between two samples, if it did.
fn silent_change(before: &Sample, now: &Sample) -> Option<String> {
    if now.silent > before.silent {
        return Some(
            "FLUSHDB, FLUSHALL or SWAPDB ran on the source (they publish no events)".into(),
        );
    }
    for (db, &keys) in &now.keys {
        let was = before.keys.get(db).copied().unwrap_or(0);
        // At least every event published between the two INFOs (see `Sample`).
        let events = now
            .events
            .get(db)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.events_before.get(db).copied().unwrap_or(0));
        if keys.abs_diff(was) > events {
            return Some(format!(
                "db {db} of the source went from {was} to {keys} keys with only {events} events"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_and_counts_without_events_are_gaps() {
        let stats = "cmdstat_get:calls=5,usec=1\r\ncmdstat_flushdb:calls=2,usec=3\r\ncmdstat_swapdb:calls=1,usec=1\r\n";
        assert_eq!(silent_calls(stats), 3);
        let s = |silent, keys: u64, events: u64| Sample {
            silent,
            keys: [(0, keys)].into(),
            events_before: [(0, events)].into(),
            events: [(0, events)].into(),
        };
        assert!(silent_change(&s(0, 10, 0), &s(0, 12, 2)).is_none());
        assert!(silent_change(&s(0, 10, 0), &s(0, 5, 5)).is_none());
        assert!(silent_change(&s(0, 10, 0), &s(0, 0, 3)).is_some());
        assert!(silent_change(&s(0, 10, 0), &s(1, 10, 0)).is_some());
    }
}
