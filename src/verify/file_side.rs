//! An RDB file as the source side of a verification (`ferry verify --rdb FILE`, and the check at
//! the end of `ferry migrate --rdb FILE`).
//!
//! A file is a [`Side`] like a live server: its records are `(db, key, payload, expiry)` already,
//! so they go through the same [`KeyState::from_payload`] and the same bucket comparison. What is
//! different:
//! - **Opening** reads the whole file once (`source::rdb_file::examine`: structure, CRC64, key
//!   counts per DB, and where each DB's section starts), so a damaged file is reported before any
//!   comparison, and the keyspace counts are exact.
//! - **Streaming a DB** seeks to that DB's sections and reads only them, on a blocking thread.
//! - **Re-reads** (`fetch`, `random_keys`) read the DB's sections again: a file does not change,
//!   so a re-check gives the same answer, at the cost of one sequential read of the DB.
//! - **Big values** (over `--big-key-bytes` in the file) are not read whole: their digest is
//!   folded from the chunks the copy reads (`bigkey/file.rs`, `chunk_digest.rs`), one chunk in
//!   memory at a time, and equals the digest of the same value read whole.
//! - **Expiry** is the file's absolute expiry, taken to be on this machine's clock (a file has no
//!   other); keys whose expiry has passed are not there, as on a server. Keys holding an empty
//!   collection are not there either (Redis drops them when it loads a file, and `migrate --rdb`
//!   skips them).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rand::Rng;

use super::bucket::bucket_of;
use super::chunk_digest::ChunkDigest;
use super::digest::{digest_raw_payload, Kind};
use super::flow::{self, compare_sides};
use super::live_side::LiveSide;
use super::options::Options;
use super::report::{print_summary, VerifyReport};
use super::side::{Entry, Side, StreamStats, Visit, Want};
use super::state::KeyState;
use crate::bigkey::file::FileChunks;
use crate::job::Job;
use crate::plan::MigratePlan;
use crate::rdb::reader::{BigValue, ResumeState};
use crate::rdb::Item;
use crate::source::rdb_file::{self, FileOptions};
use crate::stop::Stop;

/// An RDB file, read for verification.
pub struct FileSide {
    path: PathBuf,
    product: String,
    /// Where each DB's sections start.
    sections: Vec<(u32, ResumeState)>,
    keyspace: BTreeMap<u32, (u64, u64)>,
    listed: Arc<AtomicU64>,
    /// Values over this many encoded bytes are digested in chunks (`None`: all read whole).
    big: Option<BigValues>,
}

/// How a file's big values are read: over `threshold` bytes, in chunks of `budget`.
#[derive(Debug, Clone, Copy)]
struct BigValues {
    threshold: u64,
    budget: usize,
}

/// One live key of the file: its value as a DUMP payload or, when big, where it is in the file.
struct FileKey {
    db: u32,
    key: Bytes,
    expire_at_ms: Option<i64>,
    value: FileValue,
}

/// A key's value as the file reader handed it out.
enum FileValue {
    /// Read whole, as a DUMP payload.
    Payload(Bytes),
    /// Over the threshold: read in chunks when it is compared.
    Big(Box<BigValue>),
}

impl FileKey {
    /// The key's state for the comparison, and why its value could not be decoded if so.
    fn state(&self, path: &Path, big: Option<BigValues>) -> (KeyState, Option<String>) {
        let value = match &self.value {
            FileValue::Payload(p) => return KeyState::from_payload(p, self.expire_at_ms),
            FileValue::Big(v) => v,
        };
        let budget = big.map_or(1 << 20, |b| b.budget);
        match big_digest(path, value, budget) {
            Ok(digest) => (
                KeyState {
                    kind: digest.kind(),
                    digest: digest.finish(),
                    expire_at_ms: self.expire_at_ms,
                },
                None,
            ),
            Err(e) => (
                KeyState {
                    kind: Kind::Undecodable,
                    digest: digest_raw_payload(&self.key),
                    expire_at_ms: self.expire_at_ms,
                },
                Some(format!("{e:#}")),
            ),
        }
    }
}

/// Folds the digest of a big value from its chunks, read from the file one at a time.
fn big_digest(path: &Path, value: &BigValue, budget: usize) -> anyhow::Result<ChunkDigest> {
    let mut chunks = FileChunks::open(path, value, budget)?;
    let kind = crate::bigkey::file::kind_of(value.type_byte)
        .ok_or_else(|| anyhow::anyhow!("type {} is not read in chunks", value.type_byte))?;
    let mut digest = ChunkDigest::new(kind);
    while let Some(chunk) = chunks.next_chunk()? {
        digest.add(&chunk);
    }
    Ok(digest)
}

impl FileSide {
    /// Checks the whole file and learns its layout; values over the job's `--big-key-bytes`
    /// will be digested in chunks of about `--batch-bytes`.
    pub async fn open(path: &Path, job: &Job, stop: &Stop) -> anyhow::Result<FileSide> {
        let big = (job.tuning.big_key_bytes > 0).then(|| BigValues {
            threshold: job.tuning.big_key_bytes,
            budget: job.tuning.batch_bytes.clamp(1024, 64 << 20),
        });
        let opts = FileOptions {
            batch_keys: 1,
            batch_bytes: 1,
            dbs: None,
            target_rdb: None,
            skip_modules: false,
            big_value_bytes: big.map(|b| b.threshold),
        };
        let (p, s) = (path.to_path_buf(), stop.clone());
        let summary = tokio::task::spawn_blocking(move || rdb_file::examine(&p, &opts, &s))
            .await
            .map_err(|e| anyhow::anyhow!("the file check failed: {e}"))??;
        Ok(FileSide {
            path: path.to_path_buf(),
            product: summary.describe(),
            sections: summary.sections.clone(),
            keyspace: summary
                .dbs
                .iter()
                .map(|(&db, s)| (db, (s.keys, s.with_ttl)))
                .collect(),
            listed: Arc::new(AtomicU64::new(0)),
            big,
        })
    }

    /// Runs `f` on a blocking thread over every live key of `db`; `f` returns false to stop.
    async fn each_key<T: Send + 'static>(
        &self,
        db: u32,
        state: T,
        f: impl FnMut(&mut T, FileKey) -> bool + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = self.path.clone();
        let starts: Vec<ResumeState> = self
            .sections
            .iter()
            .filter(|(d, _)| *d == db)
            .map(|(_, s)| *s)
            .collect();
        let big = self.big.map(|b| b.threshold);
        tokio::task::spawn_blocking(move || each_key_blocking(&path, &starts, big, state, f))
            .await
            .map_err(|e| anyhow::anyhow!("the RDB file reader thread failed: {e}"))?
    }
}

fn each_key_blocking<T>(
    path: &Path,
    starts: &[ResumeState],
    big: Option<u64>,
    mut state: T,
    mut f: impl FnMut(&mut T, FileKey) -> bool,
) -> anyhow::Result<T> {
    for &start in starts {
        let mut reader = rdb_file::open_with(path, Some(start), false, big)?;
        loop {
            let item = reader.next_item().map_err(|e| rdb_file::damaged(path, e))?;
            let key = match item {
                None | Some(Item::End { .. }) | Some(Item::SelectDb(_)) => break,
                Some(Item::Record(kr)) => {
                    let rec = kr.record;
                    FileKey {
                        db: rec.db,
                        key: rec.key,
                        expire_at_ms: rec.expire_at_ms,
                        value: FileValue::Payload(rec.payload),
                    }
                }
                Some(Item::BigValue(v)) => FileKey {
                    db: v.db,
                    key: Bytes::from(v.key.clone()),
                    expire_at_ms: v.expire_at_ms,
                    value: FileValue::Big(v),
                },
                Some(_) => continue,
            };
            let now = crate::read::clock::now_ms();
            if key.expire_at_ms.is_some_and(|at| at <= now) {
                continue;
            }
            if !f(&mut state, key) {
                return Ok(state);
            }
        }
    }
    Ok(state)
}

impl Side for FileSide {
    fn side_name(&self) -> &'static str {
        "source"
    }

    fn name(&self) -> String {
        format!("rdb:{}", self.path.display())
    }

    fn product(&self) -> Option<String> {
        Some(self.product.clone())
    }

    fn progress(&self) -> Arc<AtomicU64> {
        self.listed.clone()
    }

    async fn keyspace(&self) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
        Ok(self.keyspace.clone())
    }

    async fn stream<V: Visit>(
        &self,
        db: u32,
        want: Want,
        visitor: V,
        stop: Stop,
    ) -> anyhow::Result<(V, StreamStats)> {
        let listed = self.listed.clone();
        let (path, big) = (self.path.clone(), self.big);
        let mut n = 0u64;
        self.each_key(
            db,
            (visitor, StreamStats::default()),
            move |(visitor, stats), rec| {
                n += 1;
                if n % 1024 == 0 && stop.is_raised() {
                    return false;
                }
                stats.listed += 1;
                listed.fetch_add(1, Ordering::Relaxed);
                let bucket = bucket_of(&rec.key);
                if want.wants(bucket) {
                    stats.read += 1;
                    let (state, err) = rec.state(&path, big);
                    if let Some(err) = err {
                        stats.note_undecodable("source", rec.db, &rec.key, &err);
                    }
                    visitor.visit(Entry {
                        key: rec.key,
                        bucket,
                        state,
                    });
                }
                true
            },
        )
        .await
    }

    async fn fetch(
        &self,
        db: u32,
        keys: &[Bytes],
    ) -> anyhow::Result<(Vec<Option<KeyState>>, StreamStats)> {
        let index: HashMap<Bytes, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let out = vec![None; keys.len()];
        let want = index.len();
        let (path, big) = (self.path.clone(), self.big);
        let (out, stats, _, _) = self
            .each_key(
                db,
                (out, StreamStats::default(), index, 0usize),
                move |(out, stats, index, found), rec| {
                    if let Some(&i) = index.get(&rec.key) {
                        stats.read += 1;
                        let (state, err) = rec.state(&path, big);
                        if let Some(err) = err {
                            stats.note_undecodable("source", rec.db, &rec.key, &err);
                        }
                        if let Some(slot) = out.get_mut(i) {
                            if slot.is_none() {
                                *found += 1;
                            }
                            *slot = Some(state);
                        }
                    }
                    *found < want
                },
            )
            .await?;
        Ok((out, stats))
    }

    async fn random_keys(&self, db: u32, n: u64) -> anyhow::Result<Vec<Bytes>> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        // Reservoir sampling over one read of the DB.
        let (sample, _) = self
            .each_key(
                db,
                (Vec::<Bytes>::new(), 0u64),
                move |(sample, seen), rec| {
                    *seen += 1;
                    if sample.len() < n {
                        sample.push(rec.key);
                    } else {
                        let j = rand::rng().random_range(0..*seen);
                        if let Some(slot) = usize::try_from(j).ok().and_then(|j| sample.get_mut(j))
                        {
                            *slot = rec.key;
                        }
                    }
                    true
                },
            )
            .await?;
        Ok(sample)
    }
}

/// Opens the file as the source side and the job's target as a live side.
async fn open_sides(
    path: &Path,
    job: &Job,
    stop: &Stop,
) -> anyhow::Result<(Arc<FileSide>, Arc<LiveSide>)> {
    let target = flow::live_options(job, None, None);
    let (src, dst) = tokio::try_join!(
        FileSide::open(path, job, stop),
        LiveSide::open(job.target.clone(), &job.target_addr_map, target)
    )?;
    Ok((Arc::new(src), Arc::new(dst)))
}

/// `ferry verify --rdb FILE`: compares the file with the target over the job's DBs (every DB
/// either side has, by default).
pub async fn verify_file(
    path: &Path,
    job: &Job,
    opts: &Options,
    stop: &Stop,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let (src, dst) = open_sides(path, job, stop).await?;
    report.source = src.name();
    report.target = dst.name();
    if !job.dbs.is_empty() {
        let present = src.keyspace().await?.into_keys().collect();
        rdb_file::check_selected_dbs(path, &job.dbs, &present)?;
    }
    let pairs = if job.dbs.is_empty() {
        flow::default_pairs(&src, &dst, job).await?
    } else {
        job.dbs.iter().map(|&db| (db, job.target_db(db))).collect()
    };
    compare_sides(src, dst, &pairs, opts, stop, report).await
}

/// The verification at the end of `ferry migrate --rdb`: prints its summary, returns its report.
pub async fn after_migrate(
    path: &Path,
    job: &Job,
    db_pairs: &[(u32, u32)],
    plan: &MigratePlan,
    stop: &Stop,
) -> VerifyReport {
    let opts = Options::new(&plan.verify, &plan.output, None);
    let mut report = VerifyReport::new(
        format!("rdb:{}", path.display()),
        job.target.endpoint.to_string(),
        opts.tolerance_ms,
        opts.rounds,
    );
    let started = Instant::now();
    eprintln!("ferry: verifying the target against the file (skip with --no-verify)");
    let result = async {
        let (src, dst) = open_sides(path, job, stop).await?;
        compare_sides(src, dst, db_pairs, &opts, stop, &mut report).await
    }
    .await;
    flow::finish(&mut report, result, started, stop);
    print_summary(&report);
    report
}
