//! ferry: move a live Redis dataset into a new TLS-enabled one, and prove nothing was lost.
//!
//! # How a key travels
//! ```text
//!  source/scan.rs    SCAN page ─► TIME + PTTLs + TIME + DUMPs (pipelined) ─► Record {db, key, payload, expire_at_ms}
//!                    (read/: the read layer — read/expiry.rs: each expiry exact within its TIME bracket;
//!                     the same reads for verify, follow and the checks)
//!                    (bigkey/size.rs: the next page's sizes probed with its SCAN; keys over --big-key-bytes
//!                     are not DUMPed but handed on as BigKeys with the page's last batch)
//!  source/rdb_file.rs  …or an RDB file (--rdb), checked whole before the first write ─► the same Records
//!                      (source/rdb_input.rs: stdin, pipes and gzip files spooled to a file first;
//!                      values over --big-key-bytes are skipped, handed on as BigKeys of the file)
//!  pipeline.rs       Records in Batches ─► bounded queue ─► N writers
//!  sink/restore.rs   RESTORE key <abs ms> payload ABSTTL [REPLACE] (one round trip per batch)
//!  sink/chunked.rs   …then each big key of the batch: chunks (bigkey/read.rs; a file's: bigkey/file.rs over
//!                    rdb/elements.rs, read element by element from its offset) ─► temporary key in its slot
//!                    (bigkey/write.rs) ─► MULTI RENAME + PEXPIREAT EXEC, before the batch is acknowledged
//!                    (endpoint/bulk_limit.rs: a value over proto-max-bulk-len is a final refusal)
//!                    (sink/key_error.rs: with --on-key-error skip a key's own refusal goes to the
//!                    dead-letter file, dead_letter.rs, before its batch is acknowledged;
//!                    migrate/keys_from.rs is the source that copies such a list later, --keys-from)
//!  checkpoint.rs     acknowledged batches ─► per-stream position and counts (counts.rs), saved atomically
//!  verify/           both sides ─► canonical digests ─► report, exit code gates the cutover
//!  follow/           --follow: keyspace events ─► dirty keys ─► re-read + RESTORE/DEL; after any gap a
//!                    reconciliation pass (verify's bucket digests); `ferry cutover` ─► GO/NO-GO
//! ```
//! `cli.rs` is what the user typed (the only module that knows clap); `resolve.rs` turns it into
//! the command's plan (`plan.rs`: the `job.rs` job with passwords, TLS, DBs and fingerprint, the
//! policies of `policy.rs`, durations, limits, output), which is all the commands below see;
//! `check/` checks the servers before anything is written: `ferry check` prints every check a
//! job can fail as a table, and `migrate` and `verify` run the same checks as their gate
//! (`check/gate.rs`) before their first write.
//!
//! `migrate` is one flow over a pluggable source (`migrate/flow.rs`, `migrate/source.rs`):
//! ```text
//!  open the source ─► checkpoint ─► gate ─► source ready ─► conflict check ─► checkpoint saved
//!  (live.rs | from_file.rs | keys_from.rs)     (DBs, share, totals, clock skews)
//!  ─► before the copy (--follow subscribes; a file's functions load) ─► writers (migrate/writers.rs)
//!  ─► copy (pipeline.rs, the source's readers) ─► --follow (follow/) | --reconcile ─► verification ─► report
//! ```
//! `throttle.rs` caps the load on the source (`--max-keys-per-sec`, `--max-bytes-per-sec`,
//! `--source-latency-ms`); `metrics.rs` serves Prometheus metrics (`--metrics-addr`).
//! `endpoint/` holds URLs, TLS, RESP and connections. Every message names endpoints without
//! their password (see `endpoint/secret.rs`).
//!
//! Either side may be a Redis Cluster, named by any one node: `endpoint/cluster.rs` discovers
//! the masters, `source/plan.rs` makes one SCAN stream per source master (checkpointed by node id
//! and slot ranges), and `sink/cluster.rs` splits each batch by hash slot (`endpoint/slot_map.rs`) into
//! one pipeline per target master, with `endpoint/route.rs` following MOVED/ASK and retrying
//! TRYAGAIN/CLUSTERDOWN.
//!
//! `--partition I/N` (`partition.rs`) splits one job into N disjoint shares run by separate
//! worker processes (a Kubernetes Indexed Job, `deploy/kubernetes/`); `report_merge.rs` joins
//! their reports. `threads.rs` picks the runtime's thread count (`--threads`).

pub mod bigkey;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod counts;
pub mod dead_letter;
pub mod display;
pub mod endpoint;
pub mod follow;
pub mod job;
pub mod metrics;
pub mod migrate;
pub mod partition;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod rdb;
pub mod read;
pub mod record;
pub mod report;
pub mod report_merge;
pub mod resolve;
pub mod sink;
pub mod source;
pub mod stop;
pub mod threads;
pub mod throttle;
pub mod verify;
