//! File source: the keys of an `.rdb` file (`ferry migrate --rdb FILE`), as batches for the same
//! writers a live source feeds.
//!
//! ```text
//!  examine()    whole file, before anything is written: structure + CRC64, keys per DB, functions,
//!               module data, whether every payload can be made loadable by the target
//!  read_file()  blocking RdbReader on a spawn_blocking thread ─► Batch{records, Position::Offset}
//!               ─► bounded queue ─► writers (RESTORE … ABSTTL) ─► Tracker ─► checkpoint
//! ```
//!
//! # Why a whole-file check before the first write
//! The reader hands out records long before it reaches the CRC64 at the end of the file, and a
//! flipped bit inside a value is found *only* there (the target's `RESTORE` checks the payload
//! CRC, which the reader computes afresh from the damaged bytes, and `sanitize-dump-payload` is
//! off by default, so a damaged ziplist can be loaded and crash the target later). Copying first
//! and checking at the end would leave a half-written, possibly poisoned target. So
//! [`examine`] reads the whole file first (sequential reads and a structural walk, no decoding:
//! about disk speed) and nothing is written unless it is sound. Files without a checksum (RDB < 5,
//! or `rdbchecksum no`) get every value decoded instead, the only check left. The same pass
//! gives exact key counts, the function libraries and module data to decide about, and — when
//! the target's RDB version is older than the file's — proves that every value can be
//! re-encoded, so that, too, fails before the first write and not half-way.
//!
//! # Positions
//! Every batch carries [`Position::Offset`] with the reader's
//! [`ResumeState`](crate::rdb::reader::ResumeState) taken right after its last item (byte
//! offset, header, current DB, running CRC64), so a rerun seeks there and continues, and still
//! verifies the whole file's CRC at the end. A batch never spans two DBs (the writers `SELECT`
//! once per batch). The checkpoint is only valid for the same file: `Job::identity` fingerprints
//! it with its size and mtime.
//!
//! # What is not a key
//! Keys whose expiry already passed (on this machine's clock: a file has no other) are skipped
//! and counted as `expired_skipped`; keys holding an empty collection (which Redis itself drops
//! on load and `RESTORE` refuses) as `empty_skipped`. Function libraries, module values and module
//! aux data are decided on by the caller from [`FileSummary`] before the copy starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Batch, Position};
use crate::bigkey::{BigKey, BigSource};
use crate::counts::Counts;
use crate::display::{escape_key, human_bytes};
use crate::endpoint::info::ServerInfo;
use crate::rdb::encode::{target_accepts, transcode_payload};
use crate::rdb::reader::{BigValue, Header, KeyRecord, ReaderOptions, ResumeState};
use crate::rdb::{types, Item, RdbError, RdbReader};
use crate::record::Record;
use crate::stop::Stop;

/// Name of the file's stream in the checkpoint.
pub const STREAM: &str = "rdb";

impl std::fmt::Display for ResumeState {
    /// A resume state prints as its byte offset (checkpoint notes, messages).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.offset)
    }
}

/// The highest RDB version a server loads in `RESTORE`, from its `INFO` (`None`: unknown, send
/// payloads as they are and let the server decide).
pub fn target_rdb_version(info: &ServerInfo) -> Option<u16> {
    let num = |s: &str| -> Option<u32> { s.parse().ok() };
    if let Some(v) = &info.valkey_version {
        let major = v.split('.').next().and_then(num)?;
        return Some(if major >= 9 { 80 } else { 11 });
    }
    let (major, minor) = info.version();
    Some(match (major, minor) {
        (0, _) | (1, _) => return None,
        (2, 0..=5) => 4,
        (2, _) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5, _) | (6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        _ => 12,
    })
}

/// Counts of one DB of the file, as of the check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Keys that will be written (not expired, not empty).
    pub keys: u64,
    /// Of those, keys with an expiry.
    pub with_ttl: u64,
    /// Keys whose expiry had already passed.
    pub expired: u64,
    /// Keys holding an empty collection.
    pub empty: u64,
}

/// What [`examine`] found in a file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its header.
    pub header: Header,
    /// The `redis-ver` / `valkey-ver` AUX field: who wrote it.
    pub writer: Option<String>,
    /// The stored CRC64 (verified), `None` when the file has none.
    pub checksum: Option<u64>,
    /// Per DB.
    pub dbs: BTreeMap<u32, DbStats>,
    /// Function libraries (FUNCTION2): name and code.
    pub functions: Vec<(String, Vec<u8>)>,
    /// The libraries of `functions` stored by a Redis 7.0 release candidate (names), rebuilt
    /// as Redis 7.0 loads them (see [`crate::rdb::function`]).
    pub pre_ga_functions: Vec<String>,
    /// Modules that stored aux data (global data outside keys).
    pub module_aux: BTreeSet<String>,
    /// Module value types holding keys (of the selected DBs), with their key counts.
    pub module_keys: BTreeMap<String, u64>,
    /// Where each DB section starts (state right after its SELECTDB), in file order.
    pub sections: Vec<(u32, ResumeState)>,
    /// Keys of the selected DBs that will be re-encoded for the target.
    pub reencode: u64,
}

impl FileSummary {
    /// "RDB 11 file written by valkey 8.0.2, 4.1 MiB".
    pub fn describe(&self) -> String {
        format!(
            "RDB {} file{}, {}",
            self.header.version,
            self.writer
                .as_ref()
                .map(|w| format!(" written by {w}"))
                .unwrap_or_default(),
            human_bytes(self.size)
        )
    }

    /// Keys to write in `dbs` (all DBs when `None`).
    pub fn keys_in(&self, dbs: Option<&BTreeSet<u32>>) -> u64 {
        self.dbs
            .iter()
            .filter(|(db, _)| dbs.is_none_or(|s| s.contains(db)))
            .map(|(_, s)| s.keys)
            .sum()
    }
}

/// How the file is read for a copy.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Most keys per batch.
    pub batch_keys: usize,
    /// Most payload bytes per batch.
    pub batch_bytes: usize,
    /// DBs to copy (`None`: all).
    pub dbs: Option<BTreeSet<u32>>,
    /// The target's RDB version, when known: payloads it cannot load are re-encoded for it.
    pub target_rdb: Option<u16>,
    /// Skip module keys (`--skip-modules`) instead of writing them.
    pub skip_modules: bool,
    /// Values over this many encoded bytes are never held: the reader skips them and the
    /// writers copy them element by element from the file (`None`: `--big-key-bytes 0`).
    pub big_value_bytes: Option<u64>,
}

impl FileOptions {
    fn wants(&self, db: u32) -> bool {
        self.dbs.as_ref().is_none_or(|s| s.contains(&db))
    }
}

/// Refuses `--db` choices the file has no keys in, naming the file and the DBs it has.
pub fn check_selected_dbs(
    path: &Path,
    selected: &[u32],
    present: &BTreeSet<u32>,
) -> anyhow::Result<()> {
    let missing: Vec<String> = selected
        .iter()
        .filter(|db| !present.contains(db))
        .map(u32::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let has: Vec<String> = present.iter().map(u32::to_string).collect();
    anyhow::bail!(
        "--db {}: the file {} holds no keys in database {} (its databases with keys: {}). Nothing was written",
        missing.join(","),
        path.display(),
        missing.join(", "),
        if has.is_empty() { "none".to_string() } else { has.join(", ") }
    )
}

/// Turns a reader error into a message that names the file, the offset and what it means.
pub fn damaged(path: &Path, e: RdbError) -> anyhow::Error {
    let p = path.display();
    match e {
        RdbError::BadMagic { .. } => anyhow::anyhow!(
            "--rdb {p} is not an RDB file ({e}); give the dump.rdb a Redis or Valkey server wrote with SAVE/BGSAVE"
        ),
        RdbError::Io { .. } => anyhow::anyhow!("--rdb {p}: cannot read the file: {e}"),
        RdbError::CrcMismatch { .. } => anyhow::anyhow!(
            "--rdb {p} is damaged: its CRC64 checksum does not match its contents ({e}). Every record \
             before the checksum parsed, so the damage is inside values: the file was changed after the \
             server wrote it (a partial or failed copy, a disk or transfer error). Copy it again from the server"
        ),
        RdbError::UnsupportedVersion { .. } => {
            anyhow::anyhow!("--rdb {p}: {e}; this ferry reads RDB versions 1-12 and Valkey 80-81")
        }
        RdbError::Truncated { .. } | RdbError::LengthPastEnd { .. } => anyhow::anyhow!(
            "--rdb {p} is truncated or damaged: {e} (the file is {} long). Was it copied while the server \
             was still writing it, or only partly?",
            std::fs::metadata(path)
                .map(|m| human_bytes(m.len()))
                .unwrap_or_else(|_| "?".into())
        ),
        other => anyhow::anyhow!("--rdb {p} is damaged: {other}"),
    }
}

/// Opens `path` for reading from the start, or from a saved state.
pub fn open(
    path: &Path,
    at: Option<ResumeState>,
    validate_values: bool,
) -> anyhow::Result<RdbReader<File>> {
    open_with(path, at, validate_values, None)
}

/// [`open`], handing out values over `big_value_bytes` as [`Item::BigValue`] without reading
/// them into memory.
pub fn open_with(
    path: &Path,
    at: Option<ResumeState>,
    validate_values: bool,
    big_value_bytes: Option<u64>,
) -> anyhow::Result<RdbReader<File>> {
    let mut file = File::open(path)
        .map_err(|e| anyhow::anyhow!("--rdb {}: cannot open the file: {e}", path.display()))?;
    let size = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("--rdb {}: cannot read its size: {e}", path.display()))?
        .len();
    if size == 0 {
        anyhow::bail!(
            "--rdb {} is empty (0 bytes): not an RDB file (was it copied while the server was still writing it?)",
            path.display()
        );
    }
    let opts = ReaderOptions {
        known_size: Some(size),
        validate_values,
        big_value_bytes,
        ..ReaderOptions::default()
    };
    match at {
        None => RdbReader::with_options(file, opts).map_err(|e| damaged(path, e)),
        Some(state) => {
            if state.offset > size {
                anyhow::bail!(
                    "--rdb {}: the checkpoint continues at offset {} but the file has only {size} bytes",
                    path.display(),
                    state.offset
                );
            }
            file.seek(SeekFrom::Start(state.offset)).map_err(|e| {
                anyhow::anyhow!(
                    "--rdb {}: cannot seek to {}: {e}",
                    path.display(),
                    state.offset
                )
            })?;
            RdbReader::resume(file, state, opts).map_err(|e| damaged(path, e))
        }
    }
}

/// True for a module value type byte (6: pre-GA, 7: module2).
pub fn is_module(record: &Record) -> bool {
    matches!(
        record.payload.first(),
        Some(&types::MODULE_2) | Some(&types::MODULE_PRE_GA)
    )
}

/// The module type name of a module value payload ("ReJSON-RL").
pub fn module_name(record: &Record) -> String {
    let body = record.payload.get(1..).unwrap_or(&[]);
    let mut cur = crate::rdb::cursor::Cursor::new(body, 0);
    match crate::rdb::length::read_length(&mut cur, "module id") {
        Ok(id) => crate::rdb::module::name_from_id(id).0,
        Err(_) => "unknown".into(),
    }
}

/// The library name in a function library's code (`#!lua name=mylib`).
pub fn library_name(code: &[u8]) -> String {
    let first = code.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(first);
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .map(str::to_string)
        .unwrap_or_else(|| format!("(unnamed: {})", line.chars().take(40).collect::<String>()))
}

/// True when an expiry (Unix ms) has passed on this machine's clock.
fn expired(at: Option<i64>, now: impl FnOnce() -> i64) -> bool {
    // The clock is read only for keys that have an expiry.
    at.is_some_and(|at| at <= now())
}

/// Reads the whole file once before anything is written (see the module docs): checks its
/// structure and CRC64 (decoding every value when it has no CRC), counts keys per DB, collects
/// functions and module data, and — when `target_rdb` cannot load the file's version — re-encodes
/// every key of the selected DBs once to prove it can be. Blocking; checks `stop` as it goes.
pub fn examine(path: &Path, opts: &FileOptions, stop: &Stop) -> anyhow::Result<FileSummary> {
    let started = Instant::now();
    let first = examine_pass(path, opts, stop, false)?;
    let summary = if first.checksum.is_none() {
        // No CRC to rely on: the values themselves are the only evidence.
        examine_pass(path, opts, stop, true)?
    } else {
        first
    };
    tracing::debug!("examined {} in {:?}", path.display(), started.elapsed());
    Ok(summary)
}

fn examine_pass(
    path: &Path,
    opts: &FileOptions,
    stop: &Stop,
    validate_values: bool,
) -> anyhow::Result<FileSummary> {
    let mut reader = open_with(path, None, validate_values, opts.big_value_bytes)?;
    // Its records are counted, never restored (a re-encoding check reads a zero CRC as none).
    reader.skip_payload_checksums();
    let header = reader.header();
    if header.version < 5 && !validate_values {
        // RDB < 5 never has a checksum: decode everything from the start.
        return examine_pass(path, opts, stop, true);
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let reencode_for = opts
        .target_rdb
        .filter(|&t| !target_accepts(header.version, t));
    let mut s = FileSummary {
        path: path.to_path_buf(),
        size,
        header,
        writer: None,
        checksum: None,
        dbs: BTreeMap::new(),
        functions: Vec::new(),
        pre_ga_functions: Vec::new(),
        module_aux: BTreeSet::new(),
        module_keys: BTreeMap::new(),
        sections: Vec::new(),
        reencode: 0,
    };
    let mut section_db: Option<u32> = None;
    let mut pending_start = Some(reader.resume_state());
    let mut last_log = Instant::now();
    let mut n = 0u64;
    let now = crate::read::clock::now_ms();
    loop {
        n += 1;
        if n % 4096 == 0 {
            check_in(path, stop, &mut last_log, reader.offset(), size)?;
        }
        let item = reader.next_item().map_err(|e| damaged(path, e))?;
        let Some(item) = item else {
            anyhow::bail!(
                "--rdb {}: the reader stopped before the end of the file",
                path.display()
            );
        };
        match item {
            Item::End { checksum } => {
                s.checksum = checksum;
                return Ok(s);
            }
            Item::SelectDb(_) => {
                section_db = None;
                pending_start = Some(reader.resume_state());
            }
            Item::BigValue(v) => {
                let sections = (&mut section_db, &mut pending_start);
                if s.count_key(v.db, v.expire_at_ms, now, sections) && validate_values {
                    // No checksum: the value is decoded (element by element) to check it.
                    let mut file = File::open(path)?;
                    file.seek(SeekFrom::Start(v.offset))?;
                    let file = std::io::BufReader::new(file);
                    crate::rdb::elements::check(file, v.type_byte, v.offset, v.len)
                        .map_err(|e| damaged(path, e))?;
                }
            }
            Item::Record(kr) => {
                let KeyRecord { record, .. } = *kr;
                let db = record.db;
                let sections = (&mut section_db, &mut pending_start);
                if !s.count_key(db, record.expire_at_ms, now, sections) || !opts.wants(db) {
                    continue;
                }
                if is_module(&record) {
                    *s.module_keys.entry(module_name(&record)).or_default() += 1;
                    if opts.skip_modules {
                        continue;
                    }
                }
                if let Some(target) = reencode_for {
                    transcode_payload(&record.payload, target)
                        .map_err(|e| cannot_reencode(path, &record, header.version, target, e))?;
                    s.reencode += 1;
                }
            }
            other => s.note(other),
        }
    }
}

/// Every few thousand items of the whole-file check: stops when asked, and says how far it is
/// every 10 s.
fn check_in(
    path: &Path,
    stop: &Stop,
    last_log: &mut Instant,
    offset: u64,
    size: u64,
) -> anyhow::Result<()> {
    if stop.is_raised() {
        anyhow::bail!("stopped while checking --rdb {}", path.display());
    }
    if last_log.elapsed() >= Duration::from_secs(10) {
        *last_log = Instant::now();
        eprintln!(
            "ferry: checking {}: {} of {}",
            path.display(),
            human_bytes(offset),
            human_bytes(size)
        );
    }
    Ok(())
}

impl FileSummary {
    /// Notes what an item other than a key, a DB switch or the end says about the file: its
    /// writer, function libraries, module data, empty keys.
    fn note(&mut self, item: Item) {
        match item {
            Item::Aux { key, value } => {
                if key == b"redis-ver" || key == b"valkey-ver" {
                    let who = if key == b"valkey-ver" {
                        "valkey"
                    } else {
                        "redis"
                    };
                    self.writer = Some(format!("{who} {}", String::from_utf8_lossy(&value)));
                }
            }
            Item::Function(code) => self.functions.push((library_name(&code), code)),
            Item::FunctionPreGa {
                name, engine, code, ..
            } => {
                // Rebuilt the way Redis 7.0 loads it, then migrated like any library.
                let code = crate::rdb::function::pre_ga_library(&name, &engine, &code);
                let name = library_name(&code);
                self.pre_ga_functions.push(name.clone());
                self.functions.push((name, code));
            }
            Item::ModuleAux { module_name, .. } => {
                self.module_aux.insert(module_name);
            }
            Item::EmptyKey { db, .. } => {
                self.dbs.entry(db).or_default().empty += 1;
            }
            Item::ResizeDb { .. } | Item::SlotInfo { .. } | Item::SlotImport { .. } => {}
            // Handled by `examine_pass` itself.
            Item::End { .. } | Item::SelectDb(_) | Item::BigValue(_) | Item::Record(_) => {}
        }
    }

    /// Counts a key of `db` (a section starts at its first key); false when it expired.
    fn count_key(
        &mut self,
        db: u32,
        expire_at_ms: Option<i64>,
        now: i64,
        (section_db, pending_start): (&mut Option<u32>, &mut Option<ResumeState>),
    ) -> bool {
        if *section_db != Some(db) {
            *section_db = Some(db);
            if let Some(start) = pending_start.take() {
                self.sections.push((db, start));
            }
        }
        let stats = self.dbs.entry(db).or_default();
        if expired(expire_at_ms, || now) {
            stats.expired += 1;
            return false;
        }
        stats.keys += 1;
        if expire_at_ms.is_some() {
            stats.with_ttl += 1;
        }
        true
    }
}

fn cannot_reencode(path: &Path, rec: &Record, from: u16, to: u16, e: RdbError) -> anyhow::Error {
    anyhow::anyhow!(
        "--rdb {}: key {} (db {}) cannot be written for the target: the file is RDB {from}, the target \
         loads RDB {to} and up, and re-encoding the value failed: {e}. Nothing was written. Migrate into a \
         target running the same or a newer version than the server that wrote the file",
        path.display(),
        escape_key(&rec.key),
        rec.db
    )
}

/// One file stream to read, from the start or a checkpointed state.
#[derive(Debug, Clone)]
pub struct FileTask {
    /// Stream index (for batches and the checkpoint).
    pub stream: usize,
    /// The file.
    pub path: PathBuf,
    /// Where to continue (`None`: from the start).
    pub resume: Option<ResumeState>,
}

/// Reads the file into `tx` on a blocking thread, stopping cleanly (without sending the batch
/// being filled) when `stop` is raised.
pub async fn read_file(
    task: FileTask,
    opts: FileOptions,
    tx: mpsc::Sender<Batch>,
    stop: Stop,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || read_blocking(&task, &opts, &tx, &stop))
        .await
        .map_err(|e| anyhow::anyhow!("the RDB file reader thread failed: {e}"))?
}

/// The batch being filled.
struct Pending {
    stream: usize,
    seq: u64,
    records: Vec<Record>,
    bytes: usize,
    scanned: u64,
    noted: Counts,
    /// File offset where the batch's items start.
    from: u64,
    /// Big values (copied element by element from the file), with where they are.
    big: Vec<BigKey>,
    big_values: Vec<BigValue>,
    path: Arc<PathBuf>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.scanned == 0 && self.big.is_empty()
    }

    fn is_full(&self, opts: &FileOptions) -> bool {
        self.scanned >= opts.batch_keys as u64 || self.bytes >= opts.batch_bytes
    }

    /// Adds a big value: copied in chunks by the writer, from the file.
    fn push_big(&mut self, v: BigValue) {
        let Some(kind) = crate::bigkey::file::kind_of(v.type_byte) else {
            return;
        };
        self.big.push(BigKey {
            db: v.db,
            key: Bytes::from(v.key.clone()),
            kind,
            estimate: v.len,
        });
        self.big_values.push(v);
    }

    /// Sends what was gathered, ending at `at` (file offset) with `position`; false when the
    /// receiver has gone (the job is stopping).
    fn send(&mut self, tx: &mpsc::Sender<Batch>, at: u64, position: Position) -> bool {
        let mut noted = std::mem::take(&mut self.noted);
        noted.file_bytes = at.saturating_sub(self.from);
        let batch = Batch {
            stream: self.stream,
            seq: self.seq,
            records: std::mem::take(&mut self.records),
            position: Some(position),
            scanned: std::mem::take(&mut self.scanned),
            vanished: 0,
            noted,
            big: std::mem::take(&mut self.big),
            big_source: (!self.big_values.is_empty()).then(|| BigSource::File {
                path: self.path.clone(),
                values: std::mem::take(&mut self.big_values),
            }),
        };
        self.seq += 1;
        self.bytes = 0;
        self.from = at;
        tx.blocking_send(batch).is_ok()
    }
}

fn read_blocking(
    task: &FileTask,
    opts: &FileOptions,
    tx: &mpsc::Sender<Batch>,
    stop: &Stop,
) -> anyhow::Result<()> {
    let path = &task.path;
    let mut reader = open_with(path, task.resume, false, opts.big_value_bytes)?;
    let version = reader.header().version;
    let reencode_for = opts.target_rdb.filter(|&t| !target_accepts(version, t));
    let mut p = Pending {
        stream: task.stream,
        seq: 0,
        records: Vec::with_capacity(opts.batch_keys.min(4096)),
        bytes: 0,
        scanned: 0,
        noted: Counts::default(),
        from: task.resume.map_or(0, |r| r.offset),
        big: Vec::new(),
        big_values: Vec::new(),
        path: Arc::new(path.clone()),
    };
    let changed = |e: RdbError| {
        damaged(path, e).context(
            "the file changed since it was checked at the start of this run; keys before this point are written",
        )
    };
    loop {
        if stop.is_raised() {
            return Ok(());
        }
        let Some(item) = reader.next_item().map_err(changed)? else {
            anyhow::bail!(
                "--rdb {}: the reader stopped before the end of the file",
                path.display()
            );
        };
        match item {
            Item::End { .. } => {
                let at = reader.offset();
                p.send(tx, at, Position::Done);
                return Ok(());
            }
            Item::SelectDb(_) => {
                if !p.is_empty() {
                    let state = reader.resume_state();
                    if !p.send(tx, state.offset, Position::Offset(state)) {
                        return Ok(());
                    }
                }
                continue;
            }
            Item::EmptyKey { db, .. } if opts.wants(db) => {
                p.scanned += 1;
                p.noted.empty_skipped += 1;
            }
            Item::BigValue(v) if opts.wants(v.db) => {
                p.scanned += 1;
                if expired(v.expire_at_ms, crate::read::clock::now_ms) {
                    p.noted.expired_skipped += 1;
                } else {
                    p.push_big(*v);
                    // Alone at the end of its batch: a crash restarts only this value.
                    let state = reader.resume_state();
                    if !p.send(tx, state.offset, Position::Offset(state)) {
                        return Ok(());
                    }
                    continue;
                }
            }
            Item::Record(kr) => {
                let KeyRecord { mut record, .. } = *kr;
                if !opts.wants(record.db) {
                    continue;
                }
                p.scanned += 1;
                if expired(record.expire_at_ms, crate::read::clock::now_ms) {
                    p.noted.expired_skipped += 1;
                } else if opts.skip_modules && is_module(&record) {
                    p.noted.modules_skipped += 1;
                } else {
                    if let Some(target) = reencode_for {
                        record.payload = transcode_payload(&record.payload, target)
                            .map_err(|e| cannot_reencode(path, &record, version, target, e))?;
                        p.noted.reencoded += 1;
                    }
                    p.bytes += record.size();
                    p.records.push(record);
                }
            }
            _ => {}
        }
        if p.is_full(opts) {
            let state = reader.resume_state();
            if !p.send(tx, state.offset, Position::Offset(state)) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::Value;
    use crate::rdb::writer::RdbWriter;

    fn opts() -> FileOptions {
        FileOptions {
            batch_keys: 3,
            batch_bytes: 1 << 20,
            dbs: None,
            target_rdb: None,
            skip_modules: false,
            big_value_bytes: None,
        }
    }

    /// db 0: k0..k6 (k2 expired, k4 with a TTL); db 3: x, an empty list, a function.
    fn sample_file(dir: &Path, version: u16) -> PathBuf {
        let path = dir.join("dump.rdb");
        let mut w = RdbWriter::new(Vec::new(), version).unwrap();
        w.aux(b"redis-ver", b"7.0.15").unwrap();
        w.function(b"#!lua name=mylib\nredis.register_function('f', function() return 1 end)")
            .unwrap();
        w.select_db(0).unwrap();
        let future = crate::read::clock::now_ms() + 3_600_000;
        for i in 0..7 {
            let v = Value::String(format!("v{i}").into_bytes());
            let p = crate::rdb::encode::encode_value(&v, version).unwrap();
            let ttl = match i {
                2 => Some(1_000),
                4 => Some(future),
                _ => None,
            };
            w.key_from_payload(format!("k{i}").as_bytes(), &p, ttl)
                .unwrap();
        }
        w.select_db(3).unwrap();
        let set = Value::Set(vec![b"a".to_vec(), b"b".to_vec()]);
        let p = crate::rdb::encode::encode_value(&set, version).unwrap();
        w.key_from_payload(b"x", &p, None).unwrap();
        // An empty plain list (type 1, length 0).
        w.key(b"empty", types::LIST, &[0], None).unwrap();
        let bytes = w.finish().unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn collect(task: FileTask, opts: FileOptions) -> Vec<Batch> {
        let (tx, mut rx) = mpsc::channel(1000);
        read_blocking(&task, &opts, &tx, &Stop::new()).unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.push(b);
        }
        out
    }

    #[test]
    fn examine_counts_and_finds_functions() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 10);
        let s = examine(&path, &opts(), &Stop::new()).unwrap();
        assert_eq!(s.header.version, 10);
        assert!(s.checksum.is_some());
        assert_eq!(s.writer.as_deref(), Some("redis 7.0.15"));
        assert_eq!(
            s.dbs[&0],
            DbStats {
                keys: 6,
                with_ttl: 1,
                expired: 1,
                empty: 0
            }
        );
        assert_eq!(s.dbs[&3].keys, 1);
        assert_eq!(s.dbs[&3].empty, 1);
        assert_eq!(s.functions.len(), 1);
        assert_eq!(s.functions[0].0, "mylib");
        assert_eq!(s.sections.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(s.keys_in(None), 7);
        assert_eq!(s.reencode, 0);
    }

    /// Libraries of a Redis 7.0 release candidate (opcode 246) become ordinary libraries, rebuilt
    /// as Redis 7.0 loads them, and are named as such.
    #[test]
    fn examine_rebuilds_pre_ga_functions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rc.rdb");
        let mut w = RdbWriter::new(Vec::new(), 10).unwrap();
        let code = b"redis.register_function('f1', function() return 1 end)";
        w.function_pre_ga(b"rclib", b"LUA", Some(b"a description"), code)
            .unwrap();
        w.function(b"#!lua name=galib\nredis.register_function('f2', function() return 2 end)")
            .unwrap();
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let s = examine(&path, &opts(), &Stop::new()).unwrap();
        let mut want = b"#!LUA name=rclib\n".to_vec();
        want.extend_from_slice(code);
        assert_eq!(s.functions[0], ("rclib".to_string(), want));
        assert_eq!(s.functions[1].0, "galib");
        assert_eq!(s.pre_ga_functions, ["rclib"]);
    }

    #[test]
    fn batches_split_by_db_and_size_and_resume_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 10);
        let task = FileTask {
            stream: 0,
            path: path.clone(),
            resume: None,
        };
        let batches = collect(task.clone(), opts());
        let mut total = Counts::default();
        for b in &batches {
            let dbs: BTreeSet<u32> = b.records.iter().map(|r| r.db).collect();
            assert!(dbs.len() <= 1, "a batch spans DBs");
            total.scanned += b.scanned;
            total.add(&b.noted);
        }
        assert_eq!(total.scanned, 9);
        assert_eq!(total.expired_skipped, 1);
        assert_eq!(total.empty_skipped, 1);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(total.file_bytes, size);
        assert_eq!(batches.last().unwrap().position, Some(Position::Done));
        let keys: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.key.to_vec()))
            .collect();
        assert_eq!(keys.len(), 7);

        // Resume after the first batch: exactly the rest, same file bytes in total.
        let Some(Position::Offset(state)) = batches[0].position else {
            panic!("first batch has no offset");
        };
        let rest = collect(
            FileTask {
                resume: Some(state),
                ..task
            },
            opts(),
        );
        let rest_keys: Vec<Vec<u8>> = rest
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.key.to_vec()))
            .collect();
        let first_keys = batches[0].records.len();
        assert_eq!(rest_keys, keys[first_keys..].to_vec());
        let rest_bytes: u64 = rest.iter().map(|b| b.noted.file_bytes).sum();
        assert_eq!(rest_bytes + batches[0].noted.file_bytes, size);
    }

    /// A value over `big_value_bytes` is located, not read: it ends its batch as a big key of
    /// the file (its position after it), its chunks rebuild it exactly, an expired one is
    /// skipped, the check counts it, and a resume after it reads only what follows.
    #[test]
    fn big_values_travel_as_file_big_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.rdb");
        let mut w = RdbWriter::new(Vec::new(), 10).unwrap();
        w.select_db(0).unwrap();
        let list: Vec<Vec<u8>> = (0..5000).map(|i| format!("e{i}").into_bytes()).collect();
        let big = crate::rdb::encode::encode_value(&Value::List(list.clone()), 10).unwrap();
        let small = crate::rdb::encode::encode_value(&Value::String(b"v".to_vec()), 10).unwrap();
        let future = crate::read::clock::now_ms() + 3_600_000;
        w.key_from_payload(b"a", &small, None).unwrap();
        w.key_from_payload(b"big", &big, Some(future)).unwrap();
        w.key_from_payload(b"gone", &big, Some(1_000)).unwrap();
        w.key_from_payload(b"z", &small, None).unwrap();
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let o = FileOptions {
            batch_keys: 100,
            big_value_bytes: Some(1_000),
            ..opts()
        };
        let s = examine(&path, &o, &Stop::new()).unwrap();
        assert_eq!(s.dbs[&0].keys, 3);
        assert_eq!(s.dbs[&0].expired, 1);
        let task = FileTask {
            stream: 0,
            path: path.clone(),
            resume: None,
        };
        let batches = collect(task.clone(), o.clone());
        let first = &batches[0];
        assert_eq!(first.records.len(), 1);
        assert_eq!(&first.big[0].key[..], b"big");
        assert_eq!(first.big[0].kind, crate::bigkey::Kind::List);
        let Some(BigSource::File { values, .. }) = &first.big_source else {
            panic!("no file source: {:?}", first.big_source);
        };
        assert_eq!(values[0].expire_at_ms, Some(future));
        let mut chunks = crate::bigkey::file::FileChunks::open(&path, &values[0], 4096).unwrap();
        let mut got = Vec::new();
        while let Some(c) = chunks.next_chunk().unwrap() {
            let crate::bigkey::Chunk::List(v) = c else {
                panic!("not a list chunk: {c:?}");
            };
            assert!(v.len() < 5000, "a chunk of the whole value");
            got.extend(v.into_iter().map(|b| b.to_vec()));
        }
        assert_eq!(got, list);
        let total: u64 = batches.iter().map(|b| b.noted.expired_skipped).sum();
        assert_eq!(total, 1);
        let big_keys: usize = batches.iter().map(|b| b.big.len()).sum();
        assert_eq!(big_keys, 1);
        // Resume after the big value's batch: only the rest.
        let Some(Position::Offset(state)) = first.position else {
            panic!("no position after the big value");
        };
        assert!(state.offset > values[0].offset + values[0].len - 1);
        let rest = collect(
            FileTask {
                resume: Some(state),
                ..task
            },
            o,
        );
        let keys: Vec<&[u8]> = rest
            .iter()
            .flat_map(|b| b.records.iter().map(|r| &r.key[..]))
            .collect();
        assert_eq!(keys, [b"z".as_slice()]);
        assert!(rest.iter().all(|b| b.big.is_empty()));
    }

    /// A file without a checksum gets its big values decoded (element by element) by the
    /// check too: damaged LZF data inside one stops the job before anything is written.
    #[test]
    fn big_values_of_a_file_without_checksum_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nocrc.rdb");
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i} ").into_bytes())
            .collect();
        let c = ::lzf::compress(&text).unwrap();
        let mut raw = vec![0xC3];
        crate::rdb::length::write_length(&mut raw, c.len() as u64);
        crate::rdb::length::write_length(&mut raw, text.len() as u64);
        let data_at = raw.len();
        raw.extend_from_slice(&c);
        let write = |raw: &[u8]| {
            let mut w = RdbWriter::new(Vec::new(), 10).unwrap();
            w.select_db(0).unwrap();
            w.key(b"s", types::STRING, raw, None).unwrap();
            let mut bytes = w.finish().unwrap();
            // A stored checksum of 0: written with `rdbchecksum no`.
            let n = bytes.len();
            bytes[n - 8..].fill(0);
            std::fs::write(&path, bytes).unwrap();
        };
        let o = FileOptions {
            big_value_bytes: Some(1_000),
            ..opts()
        };
        write(&raw);
        let s = examine(&path, &o, &Stop::new()).unwrap();
        assert_eq!((s.checksum, s.dbs[&0].keys), (None, 1));
        // A back-reference as the very first instruction: only decoding finds it.
        raw[data_at] = 0xE0;
        write(&raw);
        let e = examine(&path, &o, &Stop::new()).unwrap_err().to_string();
        assert!(e.contains("LZF") && e.contains("offset"), "{e}");
    }

    #[test]
    fn newer_file_is_reencoded_for_an_older_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 11);
        let o = FileOptions {
            target_rdb: Some(10),
            batch_keys: 100,
            ..opts()
        };
        let s = examine(&path, &o, &Stop::new()).unwrap();
        assert_eq!(s.reencode, 7);
        let batches = collect(
            FileTask {
                stream: 0,
                path,
                resume: None,
            },
            o,
        );
        let mut reencoded = 0;
        for b in &batches {
            reencoded += b.noted.reencoded;
            for r in &b.records {
                assert_eq!(r.payload_rdb_version(), Some(10));
            }
        }
        assert_eq!(reencoded, 7);
    }

    #[test]
    fn only_selected_dbs() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 9);
        let o = FileOptions {
            dbs: Some([3].into_iter().collect()),
            ..opts()
        };
        let batches = collect(
            FileTask {
                stream: 0,
                path,
                resume: None,
            },
            o,
        );
        let keys: Vec<&[u8]> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| &r.key[..]))
            .collect();
        assert_eq!(keys, [b"x".as_slice()]);
    }

    #[test]
    fn damage_is_reported_with_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path(), 10);
        let good = std::fs::read(&path).unwrap();
        // Truncated.
        std::fs::write(&path, &good[..good.len() - 30]).unwrap();
        let e = examine(&path, &opts(), &Stop::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated") && e.contains("offset"), "{e}");
        // A flipped byte inside a string value: only the CRC finds it.
        let mut bad = good.clone();
        let at = good.windows(2).position(|w| w == b"v3").unwrap() + 1;
        bad[at] = b'X';
        std::fs::write(&path, &bad).unwrap();
        let e = examine(&path, &opts(), &Stop::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("CRC64") && e.contains("offset"), "{e}");
        // Wrong magic.
        let mut bad = good.clone();
        bad[0] = b'X';
        std::fs::write(&path, &bad).unwrap();
        let e = examine(&path, &opts(), &Stop::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not an RDB file") && e.contains("offset 0"),
            "{e}"
        );
    }

    #[test]
    fn rdb_versions_from_info() {
        let info = |v: &str, valkey: Option<&str>| ServerInfo {
            redis_version: v.into(),
            valkey_version: valkey.map(Into::into),
            ..ServerInfo::default()
        };
        assert_eq!(target_rdb_version(&info("7.0.15", None)), Some(10));
        assert_eq!(target_rdb_version(&info("7.2.4", None)), Some(11));
        assert_eq!(target_rdb_version(&info("7.4.1", None)), Some(12));
        assert_eq!(target_rdb_version(&info("6.2.14", None)), Some(9));
        assert_eq!(target_rdb_version(&info("3.2.12", None)), Some(7));
        assert_eq!(target_rdb_version(&info("7.2.4", Some("8.0.2"))), Some(11));
        assert_eq!(target_rdb_version(&info("7.2.4", Some("9.0.0"))), Some(80));
        assert_eq!(target_rdb_version(&info("", None)), None);
    }

    #[test]
    fn library_names() {
        assert_eq!(library_name(b"#!lua name=mylib\nreturn 1"), "mylib");
        assert!(library_name(b"garbage").starts_with("(unnamed"));
    }
}
