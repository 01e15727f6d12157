//! Following a live source after the copy (`ferry migrate --follow`), until `ferry cutover`.
//!
//! May call: `read` (re-reading dirty keys like the copy does), `endpoint`, `sink` (writing
//! them), `verify` (reconciliation and cutover re-checks), `check`, `checkpoint`, `job`,
//! `partition`, `record`, `report`, `retry`, `stop`, `throttle`, `cli`.
//!
//! # The flow
//! ```text
//!  setup.rs      notifications checked (every master), subscriptions, watchers, heartbeat file
//!  events.rs     PSUBSCRIBE __keyevent@*__:* on the source, BEFORE the first SCAN
//!                  │ every event: (db, key) ─► state.rs: dirty set (dirty.rs, bounded, deduplicated)
//!                  │                                      + ledger (ledger.rs: keys that may differ)
//!                  │ connection lost/killed, dirty set full ─► gap
//!  watch.rs      INFO commandstats/keyspace every second: FLUSHDB/FLUSHALL/SWAPDB or a key count
//!                  that moved more than the events explain ─► gap
//!  migrate.rs    the copy, as without --follow (dirty keys only pile up meanwhile)
//!  follower.rs   then, until a cutover request: take dirty keys ─► apply.rs: TIME+PTTL+DUMP on
//!                  the source ─► RESTORE … ABSTTL REPLACE, or DEL, on the target (in order)
//!  reconcile.rs  after the copy, after every gap, and every --reconcile-every: bucket digests of
//!                  both sides (verify/first_round.rs) ─► the keys of differing buckets are marked dirty
//!  cutover.rs    `ferry cutover` ─► a request file next to the checkpoint ─► the follower's verdict
//!  handover.rs   the follower's side: quiet (or CLIENT PAUSE) ─► drain ─► verify the ledger's keys
//!                  (or everything after a gap) ─► GO / NO-GO, exit 0 / 1
//! ```
//! This file only declares the parts and re-exports what `migrate` and `main` call; none of
//! them calls it. `follower.rs` runs the loop over the others; `handover.rs` adds the cutover
//! steps to its `Follower`; `cutover.rs` (the request and verdict files), `reconcile.rs`,
//! `apply.rs`, `setup.rs` and the event parts below them name no part above them.
//! A cluster source has one subscription and one keyspace watcher per master (events are local
//! to a node); keys are re-read on the master owning their slot; a change of masters makes the
//! follower fall back to reconciliation passes (see `Follower::check_topology` in `follower.rs`).
//!
//! With `--partition I/N` a worker follows its share only: it subscribes to its share's servers
//! (`Context::layout`), ignores events of keys of other shares (`state.rs`), and its passes and
//! cutover compare its share only (listing only the masters serving it). `ferry cutover` names
//! every worker's checkpoint and is GO only when each worker is (`cutover.rs`).
//!
//! Without usable notifications (off, or `CONFIG` blocked so nobody can tell) the same loop runs
//! with reconciliation passes alone, one every `--reconcile-every` seconds (5 by default), and a
//! cutover always verifies everything.
//!
//! # Why an older read never overwrites a newer one, and a deleted key never comes back
//! 1. One task writes to the target: the applier takes a chunk of dirty keys, reads them on the
//!    source, writes what it read, and only then takes the next chunk. So the target receives a
//!    key's reads in the order they were made; the last write of a key is its latest read.
//! 2. A key is removed from the dirty set when its chunk is taken. An event that arrives after
//!    that queues it again, so it is read again *after* the read in flight (and written after it).
//! 3. An event is published when its write executes, so an event received before a key was taken
//!    belongs to a write that executed before the read was sent: the read sees that write or a
//!    later one.
//! 4. So every source write W of key K is followed by a read of K that executes after W and whose
//!    result is written after every earlier read of K. A `DEL` racing a read in flight queues K
//!    again; the next read finds K gone and deletes it on the target last: it never comes back.
//! 5. The copy's own writes all land before the first follow write (dirty keys are only applied
//!    once the copy is finished), so they are "earlier reads" too.
//!
//! What 1–5 cannot see (lost events, FLUSHDB) is a gap, and a gap is followed by a reconciliation
//! pass that compares everything and marks what differs dirty: correctness never rests on pub/sub.

pub mod apply;
pub mod cutover;
pub mod dirty;
pub mod events;
mod follower;
mod handover;
pub mod ledger;
pub mod reconcile;
pub mod setup;
pub mod state;
pub mod watch;

pub use follower::{reconcile_once, run, Context, Stats};
pub use setup::{prepare, Setup};
