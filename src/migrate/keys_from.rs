//! `ferry migrate --keys-from FILE`: copy just the keys a file lists — typically the
//! dead-letter file of an earlier `--on-key-error skip` run, once the cause is fixed.
//!
//! The keys are read on the live source exactly as the copy reads them (`TIME, PTTL, DUMP …,
//! TIME`, `read/expiry.rs`; through the cluster router for a cluster source) and written by the
//! same writers, so `--on-conflict`, `--on-key-error`, `--db-map` and the report behave as in a
//! full copy. A key no longer on the source is counted as vanished (nothing is deleted on the
//! target).
//!
//! It is a job of its own: the file's contents are part of the job's identity (see
//! `Job::keys_from`), so it has its own checkpoint, whose position per DB is the number of that
//! DB's listed keys already acknowledged; a rerun of the same command resumes there, and the
//! checkpoint of the full job it came from is left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::flow::{CheckpointWording, Run};
use super::source::CopyPlan;
use super::writers::Target;
use crate::bigkey::{BigKey, BigSource};
use crate::check::{Conflicts, Layout, SideInfo};
use crate::checkpoint::{Checkpoint, Tracker};
use crate::counts::Counts;
use crate::endpoint::retry::Backoff;
use crate::endpoint::route::Router;
use crate::endpoint::{Connection, Server};
use crate::job::Job;
use crate::pipeline::ReaderFactory;
use crate::plan::MigratePlan;
use crate::progress::Progress;
use crate::read::expiry::{self, KeyRead};
use crate::record::Record;
use crate::report::MigrateReport;
use crate::sink::options::Clocks;
use crate::source::{Batch, Position};
use crate::stop::Stop;
use crate::verify::big::Detector;

/// Keys per source round trip (and per batch). Listed keys are few; a small chunk keeps the
/// memory of big values in flight small.
const CHUNK: usize = 100;

/// The keys of one `--keys-from` file, by source DB, in file order.
pub struct KeyList {
    /// Source DB → its keys.
    pub by_db: BTreeMap<u32, Vec<Bytes>>,
    /// Lines of DBs left out by `--db`.
    pub left_out: usize,
}

impl KeyList {
    /// Reads `path`: plain lines belong to the single `--db` (DB 0 without one); with `--db`,
    /// dead-letter lines of other DBs are left out.
    pub fn read(path: &std::path::Path, dbs: &[u32]) -> anyhow::Result<KeyList> {
        let plain_db = match dbs {
            [] => 0,
            [db] => *db,
            _ => anyhow::bail!(
                "--keys-from with several --db: give one --db (the DB of plain key lines), or none for DB 0"
            ),
        };
        let mut list = KeyList {
            by_db: BTreeMap::new(),
            left_out: 0,
        };
        for (db, key) in crate::dead_letter::read_key_list(path, plain_db)? {
            if !dbs.is_empty() && !dbs.contains(&db) {
                list.left_out += 1;
                continue;
            }
            list.by_db.entry(db).or_default().push(key);
        }
        Ok(list)
    }

    /// Keys listed, all DBs.
    pub fn len(&self) -> usize {
        self.by_db.values().map(Vec::len).sum()
    }

    /// True when no key is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `--keys-from` list, before the checks.
pub(super) struct OpenedList {
    server: Server,
    list: KeyList,
}

/// A `--keys-from` list ready to copy.
pub(super) struct Listed {
    server: Server,
    /// The source's layout (a cluster's keys are read through its router).
    layout: Layout,
    /// The source's clock skew, for a cluster's reads.
    clocks: Clocks,
    /// The listed keys by source DB; kept for the verification of the same keys.
    lists: Arc<BTreeMap<u32, Vec<Bytes>>>,
    /// Which listed keys are big, copied in chunks, not DUMPed (`None`: off).
    big: Option<Detector>,
}

impl OpenedList {
    /// Reads the list at `path`, whose contents become part of the job's identity (so it has a
    /// checkpoint of its own).
    pub fn open(
        plan: &MigratePlan,
        job: &mut Job,
        path: &std::path::Path,
        server: Server,
    ) -> anyhow::Result<OpenedList> {
        let list = KeyList::read(path, &job.dbs)?;
        job.keys_from = Some(digest(&list));
        refuse_same_file(plan)?;
        Ok(OpenedList { server, list })
    }

    /// After the gate: the source's layout (from `sinfo`) and clocks; notes on what the list
    /// holds.
    pub fn ready(self, sinfo: SideInfo, target: &Target, report: &mut MigrateReport) -> Listed {
        let OpenedList { server, list } = self;
        if list.is_empty() {
            report.notes.push(
                "the --keys-from file lists no keys (of the DBs selected): nothing to copy"
                    .to_string(),
            );
        }
        if list.left_out > 0 {
            report.notes.push(format!(
                "{} listed keys of other DBs than --db were left out",
                list.left_out
            ));
        }
        Listed {
            server,
            layout: sinfo.layout,
            clocks: target.clocks,
            lists: Arc::new(list.by_db),
            big: None,
        }
    }
}

/// Checkpoint messages for a list: a changed file is another job.
pub(super) const WORDING: CheckpointWording = CheckpointWording {
    mismatch_hint:
        " A --keys-from job is named by the file's contents: a changed file is another job.",
    position: |_| String::new(),
};

impl Listed {
    /// Big listed keys (`--big-key-bytes` not 0) are copied in chunks as the copy's are (a
    /// cluster's on the master of their slot): a key dead-lettered by an earlier run may be
    /// one. Returns how the writers copy them.
    pub fn big_keys(
        &mut self,
        run: &Run<'_>,
        target: &Target,
        job_id: &str,
    ) -> Option<crate::sink::options::BigOptions> {
        let opts = target.big_copy(run.job, job_id)?;
        self.big = Some(Detector::new(opts.threshold, opts.budget));
        Some(opts)
    }

    /// `--on-conflict fail`: refuses to start when any listed key is on the target already.
    pub async fn check_conflicts(&self, run: &Run<'_>, target: &Target) -> anyhow::Result<()> {
        let mut probe = super::writers::probe(target, run.job.retry_for());
        let mut found = Conflicts::default();
        for (&db, keys) in self.lists.iter() {
            let tdb = run.job.target_db(db);
            for chunk in keys.chunks(1000) {
                let exists = probe.exists(tdb, chunk).await?;
                found.add(tdb, chunk, &exists);
            }
        }
        found.refuse_if_any(&probe.endpoint(), "the listed keys")
    }

    /// One reader per DB of the list, from its checkpointed position.
    pub fn copy_plan(&self, run: &Run<'_>, cp: &Checkpoint) -> CopyPlan {
        let names: Vec<String> = self
            .lists
            .keys()
            .map(|db| format!("keys-from db {db}"))
            .collect();
        let resume: Vec<Option<Position>> =
            names.iter().map(|n| cp.streams.get(n).copied()).collect();
        let tracker = Tracker::new(names.iter().cloned().zip(resume.iter().copied()).collect());
        let retry_for = run.job.retry_for();
        let make = || KeyReader::new(&self.server, &self.layout, self.clocks, retry_for, self.big);
        let readers = list_readers((*self.lists).clone(), resume, make, run.stop);
        let total = self.lists.values().map(Vec::len).sum::<usize>() as u64;
        let plan = run.plan;
        let progress = Progress::new(plan.output.progress, plan.output.log_every, total);
        CopyPlan {
            readers,
            parallel: 1,
            tracker,
            progress,
        }
    }

    /// The verification of the listed keys.
    pub async fn verify(&self, run: &Run<'_>) -> crate::verify::VerifyReport {
        let lists = self.lists.clone();
        crate::verify::after_keys_from(&self.server, run.job, lists, run.plan, run.stop).await
    }

    /// Keys no longer on the source, and that only the listed keys were looked at.
    pub fn note_before_status(&self, plan: &MigratePlan, report: &mut MigrateReport) {
        if report.keys.vanished > 0 {
            report.notes.push(format!(
                "{} listed keys were no longer on the source (deleted or expired): counted as vanished, nothing written for them",
                report.keys.vanished
            ));
        }
        let done = if plan.no_verify {
            "copied"
        } else {
            "copied and verified"
        };
        report.notes.push(format!(
            "only the listed keys were {done}: to check the whole target against the source, run ferry verify \
             with the same --source, --target and DB flags"
        ));
    }
}

/// One reader per DB of the list still to do, from its checkpointed position (`resume`, in
/// the tracker's stream order).
fn list_readers(
    by_db: BTreeMap<u32, Vec<Bytes>>,
    resume: Vec<Option<Position>>,
    make: impl Fn() -> KeyReader,
    stop: &Stop,
) -> Vec<ReaderFactory> {
    let mut readers: Vec<ReaderFactory> = Vec::new();
    for (stream, ((db, keys), at)) in by_db.into_iter().zip(resume).enumerate() {
        let start = match at {
            Some(Position::Done) => continue,
            Some(Position::Cursor(c)) => c as usize,
            _ => 0,
        };
        let (reader, stop) = (make(), stop.clone());
        let task = ListTask {
            stream,
            db,
            keys,
            start,
        };
        readers.push(Box::new(move |tx| {
            Box::pin(read_list(reader, task, tx, stop))
        }));
    }
    readers
}

/// Refuses `--dead-letter` naming the `--keys-from` file: a new job empties its dead-letter
/// file, which would destroy the list being copied.
fn refuse_same_file(plan: &MigratePlan) -> anyhow::Result<()> {
    let (Some(from), Some(to)) = (&plan.keys_from, &plan.dead_letter) else {
        return Ok(());
    };
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "--dead-letter {} is the --keys-from file: give the keys refused again another file",
            to.display()
        );
    }
    Ok(())
}

/// What reading a chunk of listed keys gave.
struct ListRead {
    /// The keys read with DUMP (all but the big ones).
    small: Vec<Bytes>,
    /// Each small key's payload and expiry (`None`: gone).
    each: Vec<Option<KeyRead>>,
    /// How exact the expiries are, ms.
    uncertainty_ms: u64,
    /// The big keys, copied in chunks by the writer.
    bigs: Vec<BigKey>,
}

/// The listed keys of one DB, from index `start` on (the checkpointed position).
struct ListTask {
    stream: usize,
    db: u32,
    keys: Vec<Bytes>,
    start: usize,
}

/// Reads listed keys on the source: one connection, or the cluster's masters by slot.
// One per DB of the list: the size of a variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum KeyReader {
    Standalone {
        server: Server,
        conn: Option<Connection>,
        retry_for: Duration,
        /// Which keys are big.
        big: Option<Detector>,
    },
    Cluster {
        router: Box<Router>,
        ep: String,
        skew_ms: i64,
        /// Which keys are big, and where they are read (`None`: off).
        big: Option<(Detector, BigSource)>,
    },
}

impl KeyReader {
    /// Where the big keys are read from: the server, or a cluster's masters by slot.
    fn big_source(&self) -> Option<BigSource> {
        match self {
            KeyReader::Standalone { server, .. } => Some(BigSource::Server(server.clone())),
            KeyReader::Cluster { big, .. } => big.as_ref().map(|(_, s)| s.clone()),
        }
    }

    fn new(
        source: &Server,
        layout: &Layout,
        clocks: Clocks,
        retry_for: Duration,
        big: Option<Detector>,
    ) -> KeyReader {
        match layout {
            Layout::Standalone(server) => KeyReader::Standalone {
                server: server.clone(),
                conn: None,
                retry_for,
                big,
            },
            Layout::Cluster { cluster, topology } => {
                let router = || Router::new(cluster.clone(), topology, retry_for);
                // The writers read big keys through a router of their own, shared.
                let shared = || BigSource::Cluster(Arc::new(tokio::sync::Mutex::new(router())));
                KeyReader::Cluster {
                    router: Box::new(router()),
                    ep: source.endpoint.to_string(),
                    skew_ms: clocks.source_skew_ms,
                    big: big.map(|d| (d, shared())),
                }
            }
        }
    }

    /// The small keys with their payload and expiry (`None`: gone), how exact the expiries
    /// are, and the big keys, never DUMPed.
    async fn read(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<ListRead> {
        match self {
            KeyReader::Standalone {
                server,
                conn,
                retry_for,
                big,
            } => {
                let ep = server.endpoint.to_string();
                let mut backoff = Backoff::new(*retry_for);
                loop {
                    let attempt = async {
                        let c = match conn {
                            Some(c) => c,
                            None => conn.insert(server.connect().await?),
                        };
                        c.select(db).await?;
                        let (small, bigs) = match big {
                            Some(detector) => detector.split(c, db, keys).await?,
                            None => (keys.to_vec(), Vec::new()),
                        };
                        let read = expiry::read_keys(c, &small)
                            .await
                            .map_err(|e| crate::follow::apply::read_error(&ep, db, keys, e))?;
                        Ok::<_, anyhow::Error>(ListRead {
                            small,
                            each: read.each,
                            uncertainty_ms: read.uncertainty_ms,
                            bigs,
                        })
                    }
                    .await;
                    match attempt {
                        Ok(read) => return Ok(read),
                        Err(e) if crate::endpoint::retry::is_transient(&e) => {
                            *conn = None;
                            backoff.wait(e).await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            KeyReader::Cluster {
                router,
                ep,
                skew_ms,
                big,
            } => {
                let (small, bigs) = match big {
                    Some((detector, _)) => detector.split_routed(router, db, keys).await?,
                    None => (keys.to_vec(), Vec::new()),
                };
                let each =
                    crate::follow::apply::read_routed(router, ep, db, &small, *skew_ms).await?;
                Ok(ListRead {
                    small,
                    each,
                    uncertainty_ms: 0,
                    bigs,
                })
            }
        }
    }
}

/// Sends the batches of `task`: one per chunk of keys, each carrying the position after it.
async fn read_list(
    mut reader: KeyReader,
    task: ListTask,
    tx: mpsc::Sender<Batch>,
    stop: Stop,
) -> anyhow::Result<()> {
    let ListTask {
        stream,
        db,
        keys,
        start,
    } = task;
    let keys = Arc::new(keys);
    let mut seq = 0;
    let mut at = start.min(keys.len());
    loop {
        if stop.is_raised() {
            return Ok(());
        }
        let end = (at + CHUNK).min(keys.len());
        let chunk = &keys[at..end];
        let ListRead {
            small,
            each: reads,
            uncertainty_ms,
            bigs,
        } = reader.read(db, chunk).await?;
        let big_source = (!bigs.is_empty()).then(|| reader.big_source()).flatten();
        let mut batch = Batch {
            stream,
            seq,
            records: Vec::with_capacity(chunk.len()),
            position: Some(if end == keys.len() {
                Position::Done
            } else {
                Position::Cursor(end as u64)
            }),
            scanned: chunk.len() as u64,
            vanished: 0,
            big: bigs,
            big_source,
            noted: Counts {
                expiry_uncertainty_ms: uncertainty_ms,
                ..Counts::default()
            },
        };
        for (key, read) in small.iter().zip(reads) {
            match read {
                Some(KeyRead {
                    payload,
                    expire_at_ms,
                }) => batch.records.push(Record {
                    db,
                    key: key.clone(),
                    payload,
                    expire_at_ms,
                }),
                None => batch.vanished += 1,
            }
        }
        if tx.send(batch).await.is_err() || end == keys.len() {
            return Ok(());
        }
        seq += 1;
        at = end;
    }
}

/// The identity of a key list: a hash of its (db, key) entries in order.
pub fn digest(list: &KeyList) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (db, keys) in &list.by_db {
        for k in keys {
            h.update(&db.to_le_bytes());
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
        }
    }
    format!("{:016x}", h.digest())
}
