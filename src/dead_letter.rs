//! The dead-letter file of `--on-key-error skip`, and the key lists `--keys-from` reads.
//!
//! One JSON object per line, one line per key the target refused for a reason of its own
//! (`sink/key_error.rs`):
//! `{"db":0,"target_db":0,"key":"\"secret:1\"","key_hex":"7365637265743a31","type":"string",
//! "size":17,"cause":"acl_denied","reason":"NOPERM No permissions to access a key",
//! "time":"2026-11-30T20:01:02.345Z"}`. `key` is the key as ferry prints it (`escape_key`) for
//! people; `key_hex` is its exact bytes, which `--keys-from` reads back. `reason` is the target's
//! error text (a server never echoes a password in it). Lines are appended and fsynced before the
//! batch holding the key is acknowledged. A key refused again after a crash (its batch was not
//! yet acknowledged) may appear twice; `--keys-from` reads each key once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use bytes::Bytes;

use crate::display::escape_key;
use crate::read::clock::now_ms;
use crate::record::Record;

/// Why a key was refused for a reason of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The target's ACL user may not write this key name (a key pattern, `NOPERM`).
    AclDenied,
    /// The value is larger than the target's `proto-max-bulk-len`.
    TooLarge,
    /// The target cannot load this payload (`Bad data format`, a payload version or checksum it
    /// refuses, a module type it does not have).
    BadPayload,
    /// The value cannot be expressed in the target's RDB version (re-encoding failed).
    NotRepresentable,
}

impl Cause {
    /// A stable name, for the dead-letter file and the `reason` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Cause::AclDenied => "acl_denied",
            Cause::TooLarge => "too_large",
            Cause::BadPayload => "bad_payload",
            Cause::NotRepresentable => "not_representable",
        }
    }
}

/// One refused key, as written to the file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Letter {
    /// Source DB.
    pub db: u32,
    /// The DB it was written into on the target.
    pub target_db: u32,
    /// The key as ferry prints it (printable ASCII, `\xNN` for other bytes), quoted.
    pub key: String,
    /// The key's exact bytes, hex.
    pub key_hex: String,
    /// The value's type (from the payload's type byte).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Serialized size of the value (DUMP payload bytes).
    pub size: u64,
    /// Why it was refused (see [`Cause::name`]).
    pub cause: &'static str,
    /// The target's error text.
    pub reason: String,
    /// When it was refused, UTC (RFC 3339).
    pub time: String,
}

impl Letter {
    /// The letter for `rec`, refused on target DB `tdb`.
    pub fn of(rec: &Record, tdb: u32, cause: Cause, reason: &str) -> Letter {
        Letter {
            db: rec.db,
            target_db: tdb,
            key: escape_key(&rec.key),
            key_hex: hex(&rec.key),
            kind: value_type(&rec.payload),
            size: rec.payload.len() as u64,
            cause: cause.name(),
            reason: reason.to_string(),
            time: rfc3339_utc(now_ms()),
        }
    }
}

impl Letter {
    /// The letter for big key `key` of source DB `db` (copied in chunks, never DUMPed: its
    /// `kind` is the probed type name and `size` its estimate), refused on target DB `tdb`.
    pub fn of_big(
        (db, key): (u32, &[u8]),
        (kind, size): (&'static str, u64),
        tdb: u32,
        cause: Cause,
        reason: &str,
    ) -> Letter {
        Letter {
            db,
            target_db: tdb,
            key: escape_key(key),
            key_hex: hex(key),
            kind,
            size,
            cause: cause.name(),
            reason: reason.to_string(),
            time: rfc3339_utc(now_ms()),
        }
    }
}

/// The dead-letter file: opened on the first letter, appended to, fsynced per batch.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetters {
    /// The file at `path`, refused now when it could not be written later. `new_job`: the job
    /// starts afresh (no checkpoint to resume), so letters of an earlier job there are removed;
    /// a resumed job appends to the letters of its earlier runs, which its checkpoint counts.
    pub fn prepare(path: &Path, new_job: bool) -> anyhow::Result<DeadLetters> {
        crate::report::check_writable_as(path, "--dead-letter")?;
        if new_job && path.exists() {
            std::fs::remove_file(path).with_context(|| {
                format!(
                    "--dead-letter {}: cannot remove the letters of an earlier job",
                    path.display()
                )
            })?;
        }
        Ok(DeadLetters {
            path: path.to_path_buf(),
            file: Mutex::new(None),
        })
    }

    /// Where the letters go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `letters` and waits until they are on disk.
    pub fn append(&self, letters: &[Letter]) -> anyhow::Result<()> {
        let what = || format!("cannot write the dead-letter file {}", self.path.display());
        let mut guard = self
            .file
            .lock()
            .map_err(|_| anyhow::anyhow!("the dead-letter file's lock is poisoned"))?;
        if guard.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(what)?;
            *guard = Some(f);
        }
        let file = guard.as_mut().ok_or_else(|| anyhow::anyhow!(what()))?;
        let mut text = Vec::new();
        for l in letters {
            serde_json::to_writer(&mut text, l)?;
            text.push(b'\n');
        }
        file.write_all(&text).with_context(what)?;
        file.sync_data().with_context(what)
    }
}

/// The default dead-letter file: beside the checkpoint, named after it.
pub fn default_path(checkpoint: &Path) -> PathBuf {
    let name = checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".checkpoint.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    checkpoint.with_file_name(format!("{stem}.dead-letter.jsonl"))
}

/// Reads a `--keys-from` file: dead-letter lines (`{…}`: their `db` and `key_hex`), quoted lines
/// (ferry's escaping) or plain lines (the key's bytes), the last two in DB `plain_db`. Each
/// (db, key) once, in file order; blank lines are ignored.
pub fn read_key_list(path: &Path, plain_db: u32) -> anyhow::Result<Vec<(u32, Bytes)>> {
    let text = std::fs::read(path)
        .with_context(|| format!("--keys-from {}: cannot read the file", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = parse_line(line, plain_db).with_context(|| {
            format!(
                "--keys-from {} line {}: not a dead-letter line, a quoted key or a key",
                path.display(),
                n + 1
            )
        })?;
        if seen.insert(entry.clone()) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn parse_line(line: &[u8], plain_db: u32) -> anyhow::Result<(u32, Bytes)> {
    match line.first() {
        Some(b'{') => {
            let v: serde_json::Value = serde_json::from_slice(line)?;
            let db = v["db"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| anyhow::anyhow!("it has no \"db\" number"))?;
            let hex_key = v["key_hex"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("it has no \"key_hex\""))?;
            Ok((db, Bytes::from(unhex(hex_key)?)))
        }
        Some(b'"') if line.len() >= 2 && line.ends_with(b"\"") => {
            Ok((plain_db, Bytes::from(unescape(&line[1..line.len() - 1])?)))
        }
        _ => Ok((plain_db, Bytes::copy_from_slice(line))),
    }
}

/// The inverse of `escape_key` without its quotes: `\xNN`, `\\`, `\"`.
fn unescape(s: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        match s.get(i + 1) {
            Some(b'\\') | Some(b'"') => {
                out.push(s[i + 1]);
                i += 2;
            }
            Some(b'x') if i + 4 <= s.len() => {
                let hex = std::str::from_utf8(&s[i + 2..i + 4])?;
                out.push(u8::from_str_radix(hex, 16).context("bad \\xNN escape")?);
                i += 4;
            }
            _ => anyhow::bail!("a backslash must start \\xNN, \\\\ or \\\""),
        }
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        anyhow::bail!("\"key_hex\" has an odd number of digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("\"key_hex\" is not hex"))
        })
        .collect()
}

/// The logical type of a DUMP payload, from its type byte.
fn value_type(payload: &[u8]) -> &'static str {
    use crate::rdb::types::{type_name, Flavor};
    let Some(&t) = payload.first() else {
        return "unknown";
    };
    let version = (payload.len() >= 10)
        .then(|| u16::from_le_bytes([payload[payload.len() - 10], payload[payload.len() - 9]]));
    let name = type_name(t, Flavor::from_version(version.unwrap_or(0)));
    match name.split('-').next().unwrap_or(name) {
        "zset2" => "zset",
        "module" | "module2" => "module",
        "valkey" => "hash",
        "stream" => "stream",
        "hash" => "hash",
        "list" => "list",
        "set" => "set",
        "zset" => "zset",
        "string" => "string",
        _ => "unknown",
    }
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, proleptic Gregorian).
fn rfc3339_utc(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_time() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(1_796_083_262_345), "2026-12-01T00:01:02.345Z");
    }

    #[test]
    fn key_lines_round_trip() {
        let key: &[u8] = b"a\x00\xff\"b\\c\nd";
        let rec = Record {
            db: 3,
            key: Bytes::copy_from_slice(key),
            payload: Bytes::from_static(b"\x00\x01x"),
            expire_at_ms: None,
        };
        let letter = Letter::of(
            &rec,
            0,
            Cause::AclDenied,
            "NOPERM No permissions to access a key",
        );
        let line = serde_json::to_vec(&letter).unwrap();
        assert_eq!(
            parse_line(&line, 9).unwrap(),
            (3, Bytes::copy_from_slice(key))
        );
        let quoted = escape_key(key);
        assert_eq!(
            parse_line(quoted.as_bytes(), 5).unwrap(),
            (5, Bytes::copy_from_slice(key))
        );
        assert_eq!(
            parse_line(b"plain:key", 1).unwrap().1,
            Bytes::from_static(b"plain:key")
        );
        assert!(parse_line(b"\"bad\\q\"", 0).is_err());
    }
}
