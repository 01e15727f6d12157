//! Durable resume state: for each stream (source node + DB), the position up to which every key
//! has been acknowledged by the target.
//!
//! Batches are acknowledged out of order (several writers run in parallel), so the [`Tracker`]
//! only moves a stream's position forward when a batch *and every batch before it* are done. The
//! file is replaced atomically (write a temp file, fsync, rename, fsync the directory) and carries
//! a checksum, so a crash mid-write leaves the previous checkpoint, and a damaged file is reported
//! rather than silently ignored. It also records the job's identity (no secrets): a rerun of the
//! same command resumes, a different command refuses to reuse it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::counts::Counts;
use crate::source::Position;

/// Format version of the checkpoint file.
const FORMAT: u32 = 1;

/// The saved state of a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// File format version.
    pub format: u32,
    /// The job's fingerprint (see `Job::fingerprint`).
    pub job_id: String,
    /// The job's identity, for people and for the "different job" message.
    pub job: serde_json::Value,
    /// Position of each stream, by name (`host:port/dbN`, `rdb`).
    pub streams: BTreeMap<String, Position>,
    /// Counts over the acknowledged part of the job.
    pub totals: Counts,
    /// The `--on-conflict fail` check passed before the first write of this job.
    pub conflict_check_passed: bool,
    /// Every stream finished.
    pub completed: bool,
    /// Unix ms of the last save.
    pub updated_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    checksum: String,
    checkpoint: serde_json::Value,
}

impl Checkpoint {
    /// A fresh checkpoint for job `job_id`.
    pub fn new(job_id: String, job: serde_json::Value) -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            job_id,
            job,
            streams: BTreeMap::new(),
            totals: Counts::default(),
            conflict_check_passed: false,
            completed: false,
            updated_ms: 0,
        }
    }

    /// Loads `path`; `Ok(None)` when there is no file.
    pub fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the checkpoint {}", path.display()))
            }
        };
        let corrupt = |why: String| {
            anyhow::anyhow!(
                "the checkpoint {} is corrupt ({why}). It cannot be trusted to resume from: \
                 rerun with --fresh to start over (keys already copied are overwritten with the same values), \
                 or delete the file",
                path.display()
            )
        };
        let disk: OnDisk = serde_json::from_slice(&data)
            .map_err(|e| corrupt(format!("not valid checkpoint JSON: {e}")))?;
        if checksum(&disk.checkpoint) != disk.checksum {
            return Err(corrupt(
                "checksum mismatch: the file was modified or partly written".into(),
            ));
        }
        let cp: Checkpoint = serde_json::from_value(disk.checkpoint)
            .map_err(|e| corrupt(format!("unexpected content: {e}")))?;
        if cp.format != FORMAT {
            anyhow::bail!(
                "the checkpoint {} has format {} but this ferry reads format {FORMAT}; use the ferry version that wrote it, or --fresh",
                path.display(),
                cp.format
            );
        }
        Ok(Some(cp))
    }

    /// Writes the checkpoint atomically and durably.
    pub fn save(&mut self, path: &Path) -> anyhow::Result<()> {
        self.updated_ms = crate::read::clock::now_ms();
        let value = serde_json::to_value(&*self)?;
        let disk = OnDisk {
            checksum: checksum(&value),
            checkpoint: value,
        };
        let bytes = serde_json::to_vec_pretty(&disk)?;
        write_atomic(path, &bytes)
            .with_context(|| format!("cannot save the checkpoint {}", path.display()))
    }
}

fn checksum(v: &serde_json::Value) -> String {
    format!(
        "xxh3:{:016x}",
        xxhash_rust::xxh3::xxh3_64(v.to_string().as_bytes())
    )
}

/// Replaces `path` with `bytes`: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// Orders acknowledgements per stream and advances positions only over contiguous batches.
pub struct Tracker {
    streams: Vec<StreamTrack>,
}

struct StreamTrack {
    name: String,
    next_seq: u64,
    /// Acknowledged batches that arrived before an earlier one.
    early: BTreeMap<u64, (Option<Position>, Counts)>,
    position: Option<Position>,
    counts: Counts,
}

impl Tracker {
    /// A tracker over `streams` (name and resume position), each starting at sequence 0.
    pub fn new(streams: Vec<(String, Option<Position>)>) -> Tracker {
        Tracker {
            streams: streams
                .into_iter()
                .map(|(name, position)| StreamTrack {
                    name,
                    next_seq: 0,
                    early: BTreeMap::new(),
                    position,
                    counts: Counts::default(),
                })
                .collect(),
        }
    }

    /// Records that batch `seq` of `stream` is fully written.
    pub fn ack(&mut self, stream: usize, seq: u64, position: Option<Position>, counts: Counts) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        s.early.insert(seq, (position, counts));
        while let Some((pos, c)) = s.early.remove(&s.next_seq) {
            s.next_seq += 1;
            s.counts.add(&c);
            if pos.is_some() {
                s.position = pos;
            }
        }
    }

    /// Committed positions by stream name (streams not yet started are absent).
    pub fn positions(&self) -> BTreeMap<String, Position> {
        self.streams
            .iter()
            .filter_map(|s| s.position.map(|p| (s.name.clone(), p)))
            .collect()
    }

    /// Counts of the committed batches of this run.
    pub fn committed(&self) -> Counts {
        let mut total = Counts::default();
        for s in &self.streams {
            total.add(&s.counts);
        }
        total
    }

    /// True when every stream reached [`Position::Done`].
    pub fn all_done(&self) -> bool {
        self.streams
            .iter()
            .all(|s| s.position == Some(Position::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> Counts {
        Counts {
            written: n,
            ..Counts::default()
        }
    }

    #[test]
    fn position_moves_only_over_contiguous_acks() {
        let mut t = Tracker::new(vec![("a".into(), None)]);
        t.ack(0, 1, Some(Position::Cursor(20)), c(1));
        assert!(t.positions().is_empty(), "batch 0 not yet acked");
        t.ack(0, 0, None, c(1));
        assert_eq!(t.positions()["a"], Position::Cursor(20));
        t.ack(0, 3, Some(Position::Done), c(1));
        assert_eq!(t.positions()["a"], Position::Cursor(20));
        t.ack(0, 2, None, c(1));
        assert_eq!(t.positions()["a"], Position::Done);
        assert_eq!(t.committed().written, 4);
        assert!(t.all_done());
    }

    #[test]
    fn save_load_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::new("id".into(), serde_json::json!({"target": "x"}));
        cp.streams.insert("h:1/db0".into(), Position::Cursor(42));
        cp.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(loaded, cp);
        let text = std::fs::read_to_string(&path).unwrap().replace("42", "43");
        std::fs::write(&path, text).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("--fresh"), "{err}");
        std::fs::write(&path, "{\"checks").unwrap();
        assert!(Checkpoint::load(&path)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
    }
}
