//! What `--rdb` names, made into a regular file that ferry can read more than once.
//!
//! The file is read several times: checked whole before the first write (`rdb_file::examine`),
//! then copied, then verified, and a rerun seeks to its checkpointed offset. A regular file is
//! used in place. Two other inputs that backups come as are copied ("spooled") into a temporary
//! file first, whose path and size are printed:
//! - a gzip-compressed file (recognised by its magic bytes `1f 8b`, whatever its name), unpacked;
//! - standard input (`--rdb -`) or a named pipe (e.g. `--rdb <(…)`), which can be read only once
//!   (unpacked too when gzip-compressed).
//!
//! The spool lives in `TMPDIR` (default `/tmp`), needs room for the uncompressed file, and is
//! deleted when ferry ends. A spooled input's job identity is its content (xxh3-64 and size of the
//! uncompressed bytes), not a path or a time: a resume cannot re-read a stream, so the rerun
//! spools it again and continues from the checkpoint only when the same bytes arrive; other bytes
//! are another job, whose checkpoint does not match (see docs/rdb.md).
//!
//! Anything else that exists (a directory, a device, a socket) is refused with what it is.

use std::fs::{File, FileType};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::display::human_bytes;
use crate::stop::Stop;

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Bytes read per step while spooling (the stop flag is checked between steps).
const SPOOL_CHUNK: usize = 1 << 20;

/// How `--rdb` reaches its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file, read in place (or unpacked when gzip-compressed).
    File,
    /// Standard input (`-`) or a named pipe: read once, into a spool.
    Stream,
}

/// A spooled copy of the input, deleted when the last clone of the job is dropped.
struct Spool {
    path: tempfile::TempPath,
    xxh3: u64,
    /// Bytes written (uncompressed).
    size: u64,
    /// The input was gzip-compressed.
    gzip: bool,
}

/// `--rdb` as ferry reads it.
#[derive(Clone)]
pub struct RdbInput {
    given: PathBuf,
    kind: InputKind,
    spool: Option<Arc<Spool>>,
}

impl RdbInput {
    /// What the user gave, checked to be something ferry can read (no I/O beyond `stat`).
    pub fn new(given: &Path) -> anyhow::Result<RdbInput> {
        let shown = given.display();
        if given.as_os_str() == "-" {
            return Ok(RdbInput {
                given: given.to_path_buf(),
                kind: InputKind::Stream,
                spool: None,
            });
        }
        let meta = match std::fs::metadata(given) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("--rdb {shown}: no such file")
            }
            Err(e) => anyhow::bail!("--rdb {shown}: cannot read it: {e}"),
        };
        let kind = match describe_type(&meta.file_type()) {
            None => InputKind::File,
            Some("a named pipe (FIFO)") => InputKind::Stream,
            Some(what) => anyhow::bail!(
                "--rdb {shown} is {what}, not an RDB file; give the dump.rdb file a server wrote with \
                 SAVE/BGSAVE (gzip-compressed is fine), or - to read it from standard input"
            ),
        };
        Ok(RdbInput {
            given: given.to_path_buf(),
            kind,
            spool: None,
        })
    }

    /// Spools the input when it must be (a stream, or a gzip-compressed file) and prints where.
    /// Blocking I/O runs on a blocking thread; a signal stops it (nothing is written then).
    pub async fn prepare(&mut self, stop: &Stop) -> anyhow::Result<()> {
        if self.spool.is_some() {
            return Ok(());
        }
        let gzip = self.kind == InputKind::File && starts_with_gzip(&self.given)?;
        if self.kind == InputKind::File && !gzip {
            return Ok(());
        }
        let (given, kind, s) = (self.given.clone(), self.kind, stop.clone());
        let spool = tokio::task::spawn_blocking(move || spool(&given, kind, &s))
            .await
            .map_err(|e| anyhow::anyhow!("spooling --rdb failed: {e}"))??;
        eprintln!(
            "ferry: {} spooled into {} ({}, {} bytes{}); it is deleted when ferry ends",
            self.name(),
            spool.path.display(),
            human_bytes(spool.size),
            spool.size,
            if spool.gzip {
                ", unpacked from gzip"
            } else {
                ""
            }
        );
        self.spool = Some(Arc::new(spool));
        Ok(())
    }

    /// The regular file to read: the spool when there is one.
    pub fn path(&self) -> &Path {
        match &self.spool {
            Some(s) => &s.path,
            None => &self.given,
        }
    }

    /// What the user gave, for messages: "standard input" for `-`.
    pub fn name(&self) -> String {
        if self.given.as_os_str() == "-" {
            "standard input".to_string()
        } else {
            self.given.display().to_string()
        }
    }

    /// This input's part of the job identity: a spooled input by its content, a file in place
    /// by its path, size and modification time (a file rewritten within the same second is
    /// another file, hence milliseconds).
    pub fn identity(&self) -> serde_json::Value {
        if let Some(s) = &self.spool {
            return serde_json::json!({
                "rdb_content": { "xxh3": format!("{:016x}", s.xxh3), "size": s.size },
            });
        }
        let p = &self.given;
        let meta = std::fs::metadata(p).ok();
        serde_json::json!({
            "rdb": p.canonicalize().unwrap_or_else(|_| p.clone()).display().to_string(),
            "size": meta.as_ref().map(|m| m.len()),
            "mtime_ms": meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
        })
    }
}

/// What a path that is not a regular file is, in words (`None` for a regular file).
fn describe_type(t: &FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn starts_with_gzip(path: &Path) -> anyhow::Result<bool> {
    let mut magic = [0u8; 2];
    let mut f =
        File::open(path).with_context(|| format!("--rdb {}: cannot open it", path.display()))?;
    let mut got = 0;
    while got < 2 {
        match f.read(&mut magic[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => anyhow::bail!("--rdb {}: cannot read it: {e}", path.display()),
        }
    }
    Ok(magic == GZIP_MAGIC)
}

/// Copies the input (unpacked when it starts with the gzip magic) into a new temporary file,
/// hashing the bytes written.
fn spool(given: &Path, kind: InputKind, stop: &Stop) -> anyhow::Result<Spool> {
    let name = if given.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        given.display().to_string()
    };
    let raw: Box<dyn Read + Send> = if given.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        if kind == InputKind::Stream {
            eprintln!("ferry: reading the named pipe {name} until its writer closes it");
        }
        Box::new(File::open(given).with_context(|| format!("--rdb {name}: cannot open it"))?)
    };
    let mut raw = BufReader::with_capacity(SPOOL_CHUNK, raw);
    let gzip = raw
        .fill_buf()
        .with_context(|| format!("--rdb {name}: cannot read it"))?
        .starts_with(&GZIP_MAGIC);
    let mut input: Box<dyn Read> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let dir = std::env::temp_dir();
    let room = "set TMPDIR to a directory with room for the whole uncompressed file";
    let file = tempfile::Builder::new()
        .prefix("ferry-rdb-")
        .suffix(".rdb")
        .tempfile_in(&dir)
        .with_context(|| {
            format!(
                "--rdb {name}: cannot create a temporary file in {} to unpack it into; {room}",
                dir.display()
            )
        })?;
    let (mut out, path) = file.into_parts();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; SPOOL_CHUNK];
    let mut size = 0u64;
    loop {
        if stop.is_raised() {
            anyhow::bail!("interrupted while reading --rdb {name}; nothing was written");
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if gzip => anyhow::bail!(
                "--rdb {name} is gzip-compressed but cannot be unpacked after {} ({e}): is it truncated \
                 or damaged? Nothing was written",
                human_bytes(size)
            ),
            Err(e) => anyhow::bail!("--rdb {name}: cannot read it: {e}"),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).with_context(|| {
            format!(
                "--rdb {name}: cannot write the temporary file {} after {}; {room}",
                path.display(),
                human_bytes(size)
            )
        })?;
        size += n as u64;
    }
    out.flush()
        .with_context(|| format!("cannot write the temporary file {}", path.display()))?;
    Ok(Spool {
        path,
        xxh3: hasher.digest(),
        size,
        gzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_a_path_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = RdbInput::new(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = RdbInput::new(Path::new("/dev/null"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("character device"), "{err}");
        let err = RdbInput::new(&dir.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    #[tokio::test]
    async fn gzip_is_unpacked_and_identified_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let plain = b"REDIS0009 not really an rdb, but bytes".to_vec();
        let gz = dir.path().join("dump.rdb.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let mut input = RdbInput::new(&gz).unwrap();
        input.prepare(&Stop::new()).await.unwrap();
        assert_ne!(input.path(), gz.as_path());
        assert_eq!(std::fs::read(input.path()).unwrap(), plain);
        let id = input.identity().to_string();
        assert!(
            id.contains("rdb_content") && !id.contains("dump.rdb.gz"),
            "{id}"
        );
        let spooled = input.path().to_path_buf();
        drop(input);
        assert!(!spooled.exists(), "the spool outlived the input");
    }
}
