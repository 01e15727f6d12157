//! The verification report: a human summary on stderr and, with `--report`, JSON.
//!
//! It is what a person reads before cutting over, so it puts the counts of both sides side by
//! side, says plainly whether the two are equal, names each difference (kind, database, escaped
//! key, what differs), and says when the check was only a sample. Keys are escaped with
//! [`crate::display::escape_key`]; endpoints are shown without password.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::display::escape_key;
use crate::report::Status;

/// How many differences the JSON report lists (all are counted).
pub const LIST_LIMIT: usize = 10_000;

/// How many differences the human summary names.
const PRINT_LIMIT: usize = 20;

/// What kind of difference a key shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// Different types.
    Type,
    /// Same type, different content.
    Value,
    /// Same content, TTLs differ beyond the tolerance (or one side has none).
    Ttl,
}

impl DiffKind {
    /// Every kind, in report order.
    pub const ALL: [DiffKind; 5] = [
        DiffKind::Missing,
        DiffKind::Extra,
        DiffKind::Type,
        DiffKind::Value,
        DiffKind::Ttl,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Type => "type",
            DiffKind::Value => "value",
            DiffKind::Ttl => "ttl",
        }
    }
}

/// One key that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Source database.
    pub db: u32,
    /// Target database (differs from `db` with `--db-map`).
    pub target_db: u32,
    /// The key, escaped (printable ASCII as is, other bytes as `\xNN`, in quotes).
    pub key: String,
    /// What differs.
    pub kind: DiffKind,
    /// Details, e.g. "source hash, target string" or "expiry differs by 10000 ms".
    pub detail: String,
}

impl Difference {
    /// Builds a difference for a raw key.
    pub fn new(db: u32, target_db: u32, key: &[u8], kind: DiffKind, detail: String) -> Difference {
        Difference {
            db,
            target_db,
            key: escape_key(key),
            kind,
            detail,
        }
    }
}

/// Counts of one side of one database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SideCounts {
    /// Keys.
    pub keys: u64,
    /// Keys with a TTL.
    pub with_ttl: u64,
    /// Keys per type (`string`, `list`, `set`, `hash`, `zset`, `stream`, `module`,
    /// `undecodable`); types without keys are left out. In a sample, counts of the sampled keys.
    pub types: BTreeMap<String, u64>,
}

impl SideCounts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &SideCounts) {
        self.keys += other.keys;
        self.with_ttl += other.with_ttl;
        for (k, n) in &other.types {
            *self.types.entry(k.clone()).or_default() += n;
        }
    }
}

/// Both sides of one database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbCounts {
    /// Source database.
    pub db: u32,
    /// Target database.
    pub target_db: u32,
    /// Source counts.
    pub source: SideCounts,
    /// Target counts.
    pub target: SideCounts,
}

/// What `--sample` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleInfo {
    /// Keys asked for per database and side (`--sample N`).
    pub requested_per_db: u64,
    /// Distinct keys compared, over every database.
    pub keys_checked: u64,
}

/// Totals of the whole verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Source counts over every database (exact key and TTL counts; in a sample, types of the
    /// sampled keys only).
    pub source: SideCounts,
    /// Target counts over every database.
    pub target: SideCounts,
    /// Keys compared key by key (in a full run: keys of re-read buckets; in a sample: the sample).
    pub keys_compared: u64,
    /// Keys that differ in the end.
    pub differences: u64,
    /// Differences per kind.
    pub by_kind: BTreeMap<DiffKind, u64>,
    /// Keys that differed at first and were equal (or gone on both sides) when checked again:
    /// writes to a live source, not losses.
    pub settled_on_recheck: u64,
    /// Keys present on one side only because their TTL ran out during verification.
    pub expired_during_verify: u64,
    /// Keys whose DUMP payload ferry could not decode (compared by raw bytes; listed in `notes`).
    pub undecodable: u64,
    /// Key reads done in chunks because the key was over `--big-key-bytes` (both sides, every
    /// pass): never DUMPed.
    pub big_keys_read: u64,
    /// Differences found but not re-checked because there were too many to track (counted, and
    /// as differences, from the first comparison).
    pub not_rechecked: u64,
    /// Keys each side listed (SCAN) in the first pass of a full run.
    pub listed: Listed,
}

/// Keys listed per side. With `--partition` on a cluster only the share's masters are listed,
/// so the workers' figures add up to one listing of each side, not N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Keys SCANned on the source.
    pub source: u64,
    /// Keys SCANned on the target.
    pub target: u64,
}

/// Bucket statistics of a full run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BucketStats {
    /// Buckets compared (16384 per database).
    pub compared: u64,
    /// Buckets whose aggregates differed and were re-read key by key.
    pub reread: u64,
    /// Extra SCAN passes made to re-read them with bounded memory.
    pub reread_passes: u64,
}

/// The result of `ferry verify`, or of the verification at the end of `ferry migrate`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// `ok` (equal), `mismatch` (differences), `interrupted` or `error`.
    pub status: Status,
    /// `full` or `sample`.
    pub mode: &'static str,
    /// Source, without password.
    pub source: String,
    /// Target, without password.
    pub target: String,
    /// Server products, when known ("Redis 6.2.14 → Valkey 8.0.1").
    pub servers: Option<String>,
    /// Present when only a sample was checked.
    pub sample: Option<SampleInfo>,
    /// TTL tolerance used, in ms.
    pub ttl_tolerance_ms: u64,
    /// Rounds allowed (`--rounds`).
    pub rounds: u32,
    /// Rounds actually run (later rounds run only while keys still differ).
    pub rounds_run: u32,
    /// Per database counts.
    pub dbs: Vec<DbCounts>,
    /// Totals.
    pub totals: Totals,
    /// Bucket statistics (full runs).
    pub buckets: Option<BucketStats>,
    /// The differing keys, up to [`LIST_LIMIT`].
    pub differences: Vec<Difference>,
    /// True when more differences exist than are listed.
    pub differences_truncated: bool,
    /// Remarks: undecodable keys, skipped re-checks.
    pub notes: Vec<String>,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Keys read per second over both sides' larger key count.
    pub keys_per_sec: u64,
    /// This process's peak resident memory when the verification ended (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// The error, when status is `error` or `interrupted`.
    pub error: Option<String>,
    /// `--partition`: which share of which job this report is (read by `ferry report merge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<crate::report::ShareOf>,
}

impl VerifyReport {
    /// An empty report for the given endpoints.
    pub fn new(source: String, target: String, tolerance_ms: u64, rounds: u32) -> VerifyReport {
        VerifyReport {
            status: Status::Error,
            mode: "full",
            source,
            target,
            servers: None,
            sample: None,
            ttl_tolerance_ms: tolerance_ms,
            rounds,
            rounds_run: 0,
            dbs: Vec::new(),
            totals: Totals::default(),
            buckets: None,
            differences: Vec::new(),
            differences_truncated: false,
            notes: Vec::new(),
            elapsed_ms: 0,
            keys_per_sec: 0,
            peak_rss_bytes: None,
            error: None,
            partition: None,
        }
    }

    /// The report as a JSON value (for `ferry migrate`'s report).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

/// Prints the human summary on stderr.
pub fn print_summary(r: &VerifyReport) {
    for line in summary_lines(r) {
        eprintln!("ferry: verify: {line}");
    }
}

/// The human summary, one line per element.
pub fn summary_lines(r: &VerifyReport) -> Vec<String> {
    let mut out = Vec::new();
    let servers = r
        .servers
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    out.push(format!("{} → {}{servers}", r.source, r.target));
    if let Some(s) = &r.sample {
        out.push(format!(
            "SAMPLE ONLY: {} random keys per database and side were asked for, {} distinct keys compared; \
             keys not in the sample were NOT checked (run without --sample for a full verification)",
            s.requested_per_db, s.keys_checked
        ));
    }
    if !r.dbs.is_empty() {
        db_table(r, &mut out);
    }
    verdict_lines(r, &mut out);
    for note in &r.notes {
        out.push(format!("note: {note}"));
    }
    out
}

/// Keys and TTLs per database side by side, then the types.
fn db_table(r: &VerifyReport, out: &mut Vec<String>) {
    out.push(format!(
        "{:<8} {:>12} {:>12} {:>12} {:>12}",
        "db", "source keys", "target keys", "source ttl", "target ttl"
    ));
    for d in &r.dbs {
        let name = if d.db == d.target_db {
            d.db.to_string()
        } else {
            format!("{}→{}", d.db, d.target_db)
        };
        out.push(format!(
            "{:<8} {:>12} {:>12} {:>12} {:>12}",
            name, d.source.keys, d.target.keys, d.source.with_ttl, d.target.with_ttl
        ));
    }
    let types: Vec<String> = type_names(&r.totals.source, &r.totals.target)
        .into_iter()
        .map(|t| {
            let n = |c: &SideCounts| c.types.get(&t).copied().unwrap_or(0);
            format!("{t} {}/{}", n(&r.totals.source), n(&r.totals.target))
        })
        .collect();
    if !types.is_empty() {
        let what = if r.sample.is_some() {
            "types in the sample (source/target)"
        } else {
            "types (source/target)"
        };
        out.push(format!("{what}: {}", types.join(", ")));
    }
}

/// What else the run saw (buckets re-read, keys settled or expired, …), as `; a; b`, or empty.
fn extras(r: &VerifyReport) -> String {
    let t = &r.totals;
    let mut extras = Vec::new();
    if let Some(b) = &r.buckets {
        extras.push(format!(
            "{} of {} buckets re-read key by key",
            b.reread, b.compared
        ));
    }
    for (n, what) in [
        (
            t.settled_on_recheck,
            "keys changed on the source and settled on re-check",
        ),
        (
            t.expired_during_verify,
            "keys expired during verification (not losses)",
        ),
        (
            t.undecodable,
            "keys could not be decoded (compared by raw bytes)",
        ),
        (t.big_keys_read, "big-key reads in chunks (no DUMP)"),
    ] {
        if n > 0 {
            extras.push(format!("{n} {what}"));
        }
    }
    if extras.is_empty() {
        String::new()
    } else {
        format!("; {}", extras.join("; "))
    }
}

/// The verdict line (EQUAL, DIFFERENT with the first differences, or NOT VERIFIED).
fn verdict_lines(r: &VerifyReport, out: &mut Vec<String>) {
    let t = &r.totals;
    let extras = extras(r);
    let secs = r.elapsed_ms as f64 / 1000.0;
    let in_sample = if r.sample.is_some() {
        " (in the sample)"
    } else {
        ""
    };
    match r.status {
        Status::Ok => out.push(format!(
            "EQUAL{in_sample}: {} keys on each side, {} round(s), {secs:.1}s ({} keys/s){extras}",
            t.source.keys, r.rounds_run, r.keys_per_sec
        )),
        Status::Mismatch => {
            let kinds: Vec<String> = t
                .by_kind
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect();
            out.push(format!(
                "DIFFERENT{in_sample}: {} keys differ ({}) after {} round(s), {secs:.1}s{extras}",
                t.differences,
                kinds.join(", "),
                r.rounds_run
            ));
            difference_lines(r, out);
        }
        Status::Interrupted | Status::Error => out.push(format!(
            "NOT VERIFIED: {}",
            r.error.as_deref().unwrap_or("stopped")
        )),
    }
}

/// The first [`PRINT_LIMIT`] differences, and how many more there are.
fn difference_lines(r: &VerifyReport, out: &mut Vec<String>) {
    for d in r.differences.iter().take(PRINT_LIMIT) {
        let db = if d.db == d.target_db {
            format!("db {}", d.db)
        } else {
            format!("db {}→{}", d.db, d.target_db)
        };
        out.push(format!(
            "  {:<7} {db} {} {}",
            d.kind.name(),
            d.key,
            d.detail
        ));
    }
    let shown = PRINT_LIMIT.min(r.differences.len());
    if r.totals.differences as usize > shown {
        out.push(format!(
            "  … and {} more (--report FILE lists the first {LIST_LIMIT}, with totals by kind)",
            r.totals.differences as usize - shown
        ));
    }
}

fn type_names(a: &SideCounts, b: &SideCounts) -> Vec<String> {
    let mut names: Vec<String> = a.types.keys().chain(b.types.keys()).cloned().collect();
    let order = |n: &String| {
        crate::verify::digest::Kind::ALL
            .iter()
            .position(|k| k.name() == n)
            .unwrap_or(usize::MAX)
    };
    names.sort_by_key(order);
    names.dedup();
    names
}
