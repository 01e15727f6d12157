//! Streaming `.rdb` file reader.
//!
//! Reads any [`std::io::Read`] through its own buffer and yields one [`Item`] at a time, so at
//! most one value is in memory however large the file. Values are *not decoded*: the reader walks
//! each value's structure (see [`walk`](super::walk)) only to find where it ends, copying its
//! bytes verbatim into a DUMP payload (`type | raw value | file RDB version | CRC64`) ready for
//! `RESTORE`. Every length is checked against the bytes left (when the file size is known)
//! before anything is allocated, reads of unknown size grow their buffers gradually, and all
//! arithmetic on lengths is checked, so corrupt or hostile input produces an [`RdbError`] naming
//! the offset, never a panic or a giant allocation.
//!
//! The file CRC64 is computed on the fly and checked at the EOF opcode (a stored zero means the
//! writer disabled checksums). Because records are handed out before the trailer is seen, a
//! consumer that must not act on a corrupt file should treat the final [`Item::End`] (or an error)
//! as the verdict.
//!
//! # Resuming
//!
//! [`RdbReader::offset`] is the number of bytes consumed; between two calls to
//! [`RdbReader::next_item`] the reader always sits on an item boundary. A checkpoint stores
//! [`RdbReader::resume_state`] taken right after the last acknowledged record (offset, header,
//! current DB and the running CRC64); [`RdbReader::resume`] continues from a reader positioned at
//! that offset (e.g. a `File` after `seek`), and still verifies the whole-file CRC at the end.

use std::io::{ErrorKind, Read};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::crc64::Crc64;
use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::module;
use super::string;
use super::types::{self, Flavor};
use super::walk::{self, RawInput};
use crate::record::Record;

const BUF_SIZE: usize = 256 * 1024;
/// Growth step for reads whose size cannot be checked against a known file size.
const UNCHECKED_CHUNK: usize = 16 * 1024 * 1024;

/// What the file header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// RDB version from the header.
    pub version: u16,
    /// True for `VALKEY` magic (Valkey 9+ numbering), false for `REDIS`.
    pub valkey_magic: bool,
}

impl Header {
    /// The type-numbering flavor this header implies.
    pub fn flavor(&self) -> Flavor {
        if self.valkey_magic {
            Flavor::Valkey
        } else {
            Flavor::Redis
        }
    }

    /// Parse the 9-byte header (`REDIS0011`, `VALKEY080`).
    pub fn parse(magic: &[u8; 9]) -> Result<Header> {
        let bad = || RdbError::BadMagic {
            found: String::from_utf8_lossy(magic).into_owned(),
        };
        let (valkey, digits) = if let Some(d) = magic.strip_prefix(b"REDIS") {
            (false, d)
        } else if let Some(d) = magic.strip_prefix(b"VALKEY") {
            (true, d)
        } else {
            return Err(bad());
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let version = digits
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        let ok = if valkey {
            u16::try_from(version).is_ok_and(|v| types::VALKEY_VERSIONS.contains(&v))
        } else {
            (1..=u32::from(types::MAX_REDIS_VERSION)).contains(&version)
        };
        if !ok {
            return Err(RdbError::UnsupportedVersion { offset: 5, version });
        }
        Ok(Header {
            version: version as u16,
            valkey_magic: valkey,
        })
    }
}

/// Where to continue reading a file: saved after an item, restored with [`RdbReader::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    /// File offset of the next item.
    pub offset: u64,
    /// The file header.
    pub header: Header,
    /// The DB selected at that point.
    pub db: u32,
    /// CRC64 of bytes `0..offset`.
    pub crc: u64,
}

/// Reader settings.
#[derive(Debug, Clone, Default)]
pub struct ReaderOptions {
    /// Total file size, if known: every length is checked against it before reading.
    pub known_size: Option<u64>,
    /// Skip the file CRC64 check at the end.
    pub skip_crc_check: bool,
    /// Refuse values whose raw bytes exceed this size (a clear error instead of a huge buffer).
    pub max_value_bytes: Option<u64>,
    /// Also decode every value (catches corrupt ziplists, listpacks, LZF data before the target
    /// sees them, at roughly the cost of a full decode).
    pub validate_values: bool,
    /// A value over this many encoded bytes that can be read element by element
    /// ([`elements::streamable`](super::elements::streamable)) is not held: it is skipped and
    /// handed out as [`Item::BigValue`], to be read from the file in pieces.
    pub big_value_bytes: Option<u64>,
    /// Leave the CRC64 footer of each record's payload zero instead of computing it: for a pass
    /// that only looks at the keys and never restores them (a target refuses such a payload).
    /// The file's own CRC64 is still checked.
    pub skip_payload_checksum: bool,
}

/// A value too big to hold, skipped by the reader: where it is, to read it element by element
/// (see [`elements`](super::elements)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigValue {
    /// DB of the key.
    pub db: u32,
    /// Key name.
    pub key: Vec<u8>,
    /// Value type byte.
    pub type_byte: u8,
    /// File offset of the value's first byte (after the type byte and the key).
    pub offset: u64,
    /// Encoded bytes of the value in the file.
    pub len: u64,
    /// Absolute expiry in Unix ms.
    pub expire_at_ms: Option<i64>,
}

/// One key read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The key as a DUMP payload (footer version = the file's RDB version).
    pub record: Record,
    /// LRU idle seconds from an IDLE opcode (for `RESTORE ... IDLETIME`).
    pub lru_idle: Option<u64>,
    /// LFU counter from a FREQ opcode (for `RESTORE ... FREQ`).
    pub lfu_freq: Option<u8>,
}

/// One item of an RDB file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An AUX field (`redis-ver`, `ctime`, `lua`, ...).
    Aux {
        /// Field name.
        key: Vec<u8>,
        /// Field value.
        value: Vec<u8>,
    },
    /// Following keys belong to this DB.
    SelectDb(u32),
    /// Size hint for the current DB.
    ResizeDb {
        /// Keys in the DB.
        db_size: u64,
        /// Keys with an expiry.
        expires_size: u64,
    },
    /// A key.
    Record(Box<KeyRecord>),
    /// A key whose value is over [`ReaderOptions::big_value_bytes`]: not read, only located.
    BigValue(Box<BigValue>),
    /// A key holding an empty collection, which Redis skips on load (and RESTORE rejects).
    EmptyKey {
        /// DB of the key.
        db: u32,
        /// Key name.
        key: Vec<u8>,
        /// Value type byte.
        type_byte: u8,
    },
    /// A function library (FUNCTION2, Redis 7.0 GA+): the library source code.
    Function(Vec<u8>),
    /// A function from Redis 7.0 release candidates.
    FunctionPreGa {
        /// Function name.
        name: Vec<u8>,
        /// Engine name.
        engine: Vec<u8>,
        /// Description, if stored.
        description: Option<Vec<u8>>,
        /// Code.
        code: Vec<u8>,
    },
    /// Module auxiliary data.
    ModuleAux {
        /// Module id.
        module_id: u64,
        /// Module type name from the id.
        module_name: String,
        /// When it was written (before/after keys).
        when: u64,
        /// Raw bytes after the module id (when opcode, when, annotated fields, EOF).
        raw: Vec<u8>,
    },
    /// Cluster slot size hint.
    SlotInfo {
        /// Slot.
        slot_id: u64,
        /// Keys in the slot.
        slot_size: u64,
        /// Keys with expiry in the slot.
        expires_slot_size: u64,
    },
    /// Valkey 9 in-progress slot import.
    SlotImport {
        /// Job name.
        job_name: Vec<u8>,
        /// Slot ranges (inclusive).
        ranges: Vec<(u64, u64)>,
    },
    /// End of file; `checksum` is the stored CRC64 (`None` before RDB 5 or when zero), already
    /// verified unless checking was disabled.
    End {
        /// Stored checksum.
        checksum: Option<u64>,
    },
}

/// Buffered byte source that counts offsets and checksums everything it hands out.
struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Absolute offset of `buf[pos]`.
    offset: u64,
    crc: Crc64,
    crc_pos: usize,
    known_size: Option<u64>,
}

impl<R: Read> Source<R> {
    fn new(inner: R, offset: u64, crc: Crc64, known_size: Option<u64>) -> Self {
        Source {
            inner,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset,
            crc,
            crc_pos: 0,
            known_size,
        }
    }

    fn hash_consumed(&mut self) {
        if let Some(s) = self.buf.get(self.crc_pos..self.pos) {
            self.crc.update(s);
        }
        self.crc_pos = self.pos;
    }

    fn read_inner(&mut self, into: &mut [u8]) -> Result<usize> {
        loop {
            match self.inner.read(into) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RdbError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
    }

    /// Refill an exhausted buffer; returns false at end of input.
    fn fill(&mut self) -> Result<bool> {
        self.hash_consumed();
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_inner(&mut buf);
        self.buf = buf;
        let n = r?;
        self.pos = 0;
        self.crc_pos = 0;
        self.end = n;
        Ok(n > 0)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8> {
        if self.pos >= self.end && !self.fill()? {
            return Err(RdbError::Truncated {
                offset: self.offset,
                expected: what.into(),
            });
        }
        let b = self
            .buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| RdbError::Truncated {
                offset: self.offset,
                expected: what.into(),
            })?;
        self.pos += 1;
        self.offset += 1;
        Ok(b)
    }

    fn remaining(&self) -> Option<u64> {
        self.known_size.map(|k| k.saturating_sub(self.offset))
    }

    /// `Err` when fewer than `n` bytes are left in a file of known size (a truncated file, or a
    /// corrupt length), before anything is read or allocated.
    fn check_room(&self, n: u64, what: &'static str) -> Result<()> {
        match self.remaining() {
            Some(rem) if n > rem => Err(RdbError::LengthPastEnd {
                offset: self.offset,
                len: n,
                remaining: rem,
                what,
            }),
            _ => Ok(()),
        }
    }

    /// Append exactly `n` bytes to `out`.
    fn read_into(&mut self, out: &mut Vec<u8>, n: u64, what: &'static str) -> Result<()> {
        self.check_room(n, what)?;
        let mut left = usize::try_from(n).map_err(|_| RdbError::LengthPastEnd {
            offset: self.offset,
            len: n,
            remaining: self.remaining().unwrap_or(0),
            what,
        })?;
        if self.known_size.is_some() {
            out.reserve(left);
        }
        while left > 0 {
            if self.pos < self.end {
                let take = left.min(self.end - self.pos);
                let chunk = self.buf.get(self.pos..self.pos + take).unwrap_or(&[]);
                out.extend_from_slice(chunk);
                self.pos += take;
                self.offset += take as u64;
                left -= take;
                continue;
            }
            if left >= BUF_SIZE {
                // Large read: go straight into `out`, checksumming what arrives.
                self.hash_consumed();
                let step = left.min(UNCHECKED_CHUNK);
                let old = out.len();
                out.resize(old + step, 0);
                let got = {
                    let dst = out.get_mut(old..).unwrap_or(&mut []);
                    self.read_inner(dst)
                };
                let got = match got {
                    Ok(g) => g,
                    Err(e) => {
                        out.truncate(old);
                        return Err(e);
                    }
                };
                out.truncate(old + got);
                if got == 0 {
                    return Err(RdbError::Truncated {
                        offset: self.offset,
                        expected: format!("{left} more bytes of {what}").into(),
                    });
                }
                if let Some(s) = out.get(old..) {
                    self.crc.update(s);
                }
                self.offset += got as u64;
                left -= got;
                continue;
            }
            if !self.fill()? {
                return Err(RdbError::Truncated {
                    offset: self.offset,
                    expected: format!("{left} more bytes of {what}").into(),
                });
            }
        }
        Ok(())
    }

    /// Consume `n` bytes without keeping them (they are still checksummed).
    fn skip(&mut self, n: u64, what: &'static str) -> Result<()> {
        self.check_room(n, what)?;
        let mut left = n;
        while left > 0 {
            if self.pos < self.end {
                let take = (self.end - self.pos).min(usize::try_from(left).unwrap_or(usize::MAX));
                self.pos += take;
                self.offset += take as u64;
                left -= take as u64;
            } else if !self.fill()? {
                return Err(RdbError::Truncated {
                    offset: self.offset,
                    expected: format!("{left} more bytes of {what}").into(),
                });
            }
        }
        Ok(())
    }

    fn crc_state(&mut self) -> u64 {
        self.hash_consumed();
        self.crc.state()
    }
}

/// A [`RawInput`] over the file source that appends everything to `out` — or, once a big
/// value passed `spill`'s threshold, keeps only the few bytes the walker looks at.
struct Capture<'s, R> {
    src: &'s mut Source<R>,
    out: &'s mut Vec<u8>,
    limit: Option<u64>,
    base_len: usize,
    spill: Option<Spill>,
}

/// How a big value is walked without being kept.
struct Spill {
    /// Value bytes after which it is no longer kept.
    threshold: u64,
    /// Set once past the threshold: `out` was emptied, bytes are counted and skipped.
    active: bool,
    /// Value bytes walked in all.
    total: u64,
    /// The last small read (length bytes, a blob header the walker peeks at).
    scratch: Vec<u8>,
}

/// Reads up to this size are kept in [`Spill::scratch`] (lengths, tiny blobs).
const SPILL_KEEP: u64 = 64;

impl<R: Read> Capture<'_, R> {
    /// Value bytes consumed so far.
    fn walked(&self) -> u64 {
        match &self.spill {
            Some(s) if s.active => s.total,
            _ => (self.out.len() - self.base_len) as u64,
        }
    }

    /// True once the value is being skipped (after this read of `n` bytes, too).
    fn spilling(&mut self, n: u64) -> bool {
        let have = self.walked();
        let Some(s) = &mut self.spill else {
            return false;
        };
        if !s.active && have.saturating_add(n) > s.threshold {
            s.active = true;
            s.total = have;
            self.out.truncate(self.base_len);
            self.out.shrink_to_fit();
        }
        s.active
    }
}

impl<R: Read> RawInput for Capture<'_, R> {
    fn byte(&mut self, what: &'static str) -> Result<u8> {
        let b = self.src.byte(what)?;
        match &mut self.spill {
            Some(s) if s.active => s.total += 1,
            _ => self.out.push(b),
        }
        Ok(b)
    }

    fn bytes(&mut self, n: u64, what: &'static str) -> Result<usize> {
        if self.spilling(n) {
            let Some(s) = &mut self.spill else {
                return Ok(0);
            };
            s.total = s.total.saturating_add(n);
            s.scratch.clear();
            if n <= SPILL_KEEP {
                self.src.read_into(&mut s.scratch, n, what)?;
            } else {
                self.src.skip(n, what)?;
            }
            return Ok(0);
        }
        if let Some(limit) = self.limit {
            let have = (self.out.len() - self.base_len) as u64;
            if have.saturating_add(n) > limit {
                return Err(RdbError::Unsupported {
                    offset: self.src.offset,
                    what: format!("value larger than the {limit}-byte limit"),
                });
            }
        }
        let start = self.out.len();
        self.src.read_into(self.out, n, what)?;
        Ok(start)
    }

    fn captured(&self) -> &[u8] {
        match &self.spill {
            Some(s) if s.active => &s.scratch,
            _ => self.out,
        }
    }

    fn offset(&self) -> u64 {
        self.src.offset
    }

    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()> {
        if let Some(rem) = self.src.remaining() {
            if count.saturating_mul(min_size) > rem {
                return Err(RdbError::LengthPastEnd {
                    offset: self.src.offset,
                    len: count,
                    remaining: rem,
                    what,
                });
            }
        }
        Ok(())
    }
}

/// Streaming RDB reader; see the module docs.
pub struct RdbReader<R> {
    src: Source<R>,
    header: Header,
    db: u32,
    opts: ReaderOptions,
    done: bool,
    /// Reused for the raw bytes of every string and value read (see [`SCRATCH_KEEP`]).
    scratch: Vec<u8>,
}

/// The scratch buffer is kept for the next item only up to this capacity, so one big value
/// does not pin its size for the rest of the file. Why a scratch at all: `--rdb` of 1M small
/// keys spent ~35 % of its CPU in malloc/realloc/free, ~6 allocator calls per key (a fresh
/// `Vec` per string grown by `push`, a payload grown twice then shrunk, a `Bytes` header for
/// each payload whose capacity was not exact).
const SCRATCH_KEEP: usize = 64 * 1024;

impl<R> std::fmt::Debug for RdbReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdbReader")
            .field("header", &self.header)
            .field("offset", &self.src.offset)
            .field("db", &self.db)
            .finish()
    }
}

impl<R: Read> RdbReader<R> {
    /// Start reading a file from its first byte.
    pub fn new(inner: R) -> Result<Self> {
        Self::with_options(inner, ReaderOptions::default())
    }

    /// Start reading a file from its first byte, with options.
    pub fn with_options(inner: R, opts: ReaderOptions) -> Result<Self> {
        let mut src = Source::new(inner, 0, Crc64::new(), opts.known_size);
        let mut magic = [0u8; 9];
        for i in 0..magic.len() {
            match src.byte("9-byte RDB header (magic + version)") {
                Ok(b) => magic[i] = b,
                Err(e @ RdbError::Truncated { .. }) => {
                    let got = magic.get(..i).unwrap_or(&[]);
                    let plausible = |m: &[u8]| {
                        let n = got.len().min(m.len());
                        got.get(..n) == m.get(..n)
                    };
                    if plausible(b"REDIS") || plausible(b"VALKEY") {
                        return Err(e);
                    }
                    return Err(RdbError::BadMagic {
                        found: String::from_utf8_lossy(got).into_owned(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let header = Header::parse(&magic)?;
        Ok(RdbReader {
            src,
            header,
            db: 0,
            opts,
            done: false,
            scratch: Vec::new(),
        })
    }

    /// Continue reading at an item boundary saved with [`RdbReader::resume_state`]; `inner` must
    /// be positioned at `state.offset`. `opts.known_size` is still the size of the whole file.
    pub fn resume(inner: R, state: ResumeState, opts: ReaderOptions) -> Result<Self> {
        if state.offset < 9 {
            return Err(RdbError::corrupt(
                state.offset,
                "resume state",
                "offset is inside the header",
            ));
        }
        let src = Source::new(
            inner,
            state.offset,
            Crc64::resume(state.crc),
            opts.known_size,
        );
        Ok(RdbReader {
            src,
            header: state.header,
            db: state.db,
            opts,
            done: false,
            scratch: Vec::new(),
        })
    }

    /// From now on, records' payloads get a zero CRC64 (see
    /// [`ReaderOptions::skip_payload_checksum`]).
    pub fn skip_payload_checksums(&mut self) {
        self.opts.skip_payload_checksum = true;
    }

    /// The file header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Bytes consumed so far (after an item: the offset where the next item starts).
    pub fn offset(&self) -> u64 {
        self.src.offset
    }

    /// The DB selected by the last SELECTDB (0 before any).
    pub fn current_db(&self) -> u32 {
        self.db
    }

    /// Everything needed to resume at the current offset.
    pub fn resume_state(&mut self) -> ResumeState {
        ResumeState {
            offset: self.src.offset,
            header: self.header,
            db: self.db,
            crc: self.src.crc_state(),
        }
    }

    /// A [`Capture`] appending to `out`, of which the first `base_len` bytes are not value bytes
    /// (they do not count against `--max-value-bytes`).
    fn capture<'s>(&'s mut self, out: &'s mut Vec<u8>, base_len: usize) -> Capture<'s, R> {
        Capture {
            src: &mut self.src,
            out,
            limit: self.opts.max_value_bytes,
            base_len,
            spill: None,
        }
    }

    /// The scratch buffer, emptied, to capture into (give it back with [`Self::keep_scratch`]).
    fn take_scratch(&mut self) -> Vec<u8> {
        let mut raw = std::mem::take(&mut self.scratch);
        raw.clear();
        raw
    }

    fn keep_scratch(&mut self, raw: Vec<u8>) {
        if raw.capacity() <= SCRATCH_KEEP {
            self.scratch = raw;
        }
    }

    /// A string, as an exactly sized `Vec` (so `Bytes::from` needs no extra allocation).
    fn read_str(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let mut raw = self.take_scratch();
        let base = self.src.offset;
        let read = walk::string(&mut self.capture(&mut raw, 0), what).and_then(|_| {
            let mut cur = Cursor::new(&raw, base);
            string::read_bytes(&mut cur, what)
        });
        self.keep_scratch(raw);
        read
    }

    fn read_len(&mut self, what: &'static str) -> Result<u64> {
        let mut raw = self.take_scratch();
        let mut cap = self.capture(&mut raw, 0);
        // A length is at most 9 bytes, not a value: the value size limit does not apply.
        cap.limit = None;
        let len = walk::plain_len(&mut cap, what);
        self.keep_scratch(raw);
        len
    }

    /// Exactly `N` bytes (fixed-size fields: expiry times, the CRC64 trailer).
    fn read_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        for slot in &mut b {
            *slot = self.src.byte(what)?;
        }
        Ok(b)
    }

    /// Read the next item; `Ok(None)` after [`Item::End`] or after an error.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let r = self.read_item();
        if !matches!(r, Ok(Some(ref i)) if !matches!(i, Item::End { .. })) {
            self.done = true;
        }
        r
    }

    /// One item: the opcodes that describe the next key are gathered into a [`KeyMeta`], every
    /// other opcode is read by a function of its own.
    fn read_item(&mut self) -> Result<Option<Item>> {
        let mut meta = KeyMeta::default();
        loop {
            let at = self.src.offset;
            let op = self.src.byte("opcode or value type")?;
            let flavor = self.header.flavor();
            if self.read_key_meta(op, &mut meta)? {
                continue;
            }
            let is_value = types::is_value_type(op, flavor);
            if meta.pending && !is_value {
                return Err(RdbError::corrupt(
                    at,
                    "key metadata",
                    format!("expiry/LRU/LFU opcode followed by opcode 0x{op:02x} instead of a key"),
                ));
            }
            let item = match op {
                types::OP_EOF => self.read_eof()?,
                types::OP_SELECTDB => self.read_select_db(at)?,
                types::OP_RESIZEDB => self.read_resize_db()?,
                types::OP_AUX => self.read_aux()?,
                types::OP_SLOT_INFO => self.read_slot_info()?,
                types::OP_SLOT_IMPORT if flavor == Flavor::Valkey => self.read_slot_import()?,
                types::OP_FUNCTION2 => Item::Function(self.read_str("FUNCTION2 library code")?),
                types::OP_FUNCTION_PRE_GA => self.read_function_pre_ga()?,
                types::OP_MODULE_AUX => self.read_module_aux()?,
                t if is_value => self.read_key(t, flavor, meta)?,
                other => {
                    return Err(RdbError::UnknownType {
                        offset: at,
                        byte: other,
                    })
                }
            };
            return Ok(Some(item));
        }
    }

    /// The opcodes in front of a key (expiry, LRU, LFU, RAM LRU hint): records what `op` says
    /// in `meta` and returns true, or returns false when `op` is not one of them.
    fn read_key_meta(&mut self, op: u8, meta: &mut KeyMeta) -> Result<bool> {
        match op {
            types::OP_EXPIRETIME => {
                let b = self.read_array("4-byte expire time (seconds)")?;
                meta.expire_at_ms = Some(i64::from(i32::from_le_bytes(b)) * 1000);
            }
            types::OP_EXPIRETIME_MS => {
                let b = self.read_array("8-byte expire time (ms)")?;
                meta.expire_at_ms = Some(i64::from_le_bytes(b));
            }
            types::OP_IDLE => meta.lru_idle = Some(self.read_len("LRU idle time")?),
            types::OP_FREQ => meta.lfu_freq = Some(self.src.byte("LFU frequency")?),
            types::OP_ENTERPRISE_RAM_LRU => {
                self.read_len("Redis Enterprise RAM LRU hint")?;
            }
            _ => return Ok(false),
        }
        meta.pending = true;
        Ok(true)
    }

    /// EOF: the stored CRC64 (RDB 5+), checked against the running one unless disabled.
    fn read_eof(&mut self) -> Result<Item> {
        let computed = self.src.crc_state();
        if self.header.version < 5 {
            return Ok(Item::End { checksum: None });
        }
        let crc_at = self.src.offset;
        let stored = u64::from_le_bytes(self.read_array("8-byte CRC64 after EOF")?);
        if stored == 0 {
            return Ok(Item::End { checksum: None });
        }
        if !self.opts.skip_crc_check && stored != computed {
            return Err(RdbError::CrcMismatch {
                offset: crc_at,
                stored,
                computed,
            });
        }
        Ok(Item::End {
            checksum: Some(stored),
        })
    }

    fn read_select_db(&mut self, at: u64) -> Result<Item> {
        let db = self.read_len("SELECTDB number")?;
        let db = u32::try_from(db).map_err(|_| {
            RdbError::corrupt(at, "SELECTDB", format!("DB number {db} is too large"))
        })?;
        self.db = db;
        Ok(Item::SelectDb(db))
    }

    fn read_resize_db(&mut self) -> Result<Item> {
        Ok(Item::ResizeDb {
            db_size: self.read_len("RESIZEDB db size")?,
            expires_size: self.read_len("RESIZEDB expires size")?,
        })
    }

    fn read_aux(&mut self) -> Result<Item> {
        Ok(Item::Aux {
            key: self.read_str("AUX key")?,
            value: self.read_str("AUX value")?,
        })
    }

    fn read_slot_info(&mut self) -> Result<Item> {
        Ok(Item::SlotInfo {
            slot_id: self.read_len("SLOT_INFO slot id")?,
            slot_size: self.read_len("SLOT_INFO slot size")?,
            expires_slot_size: self.read_len("SLOT_INFO expires size")?,
        })
    }

    fn read_slot_import(&mut self) -> Result<Item> {
        let job_name = self.read_str("SLOT_IMPORT job name")?;
        let n = self.read_len("SLOT_IMPORT range count")?;
        if let Some(rem) = self.src.remaining() {
            if n.saturating_mul(2) > rem {
                return Err(RdbError::LengthPastEnd {
                    offset: self.src.offset,
                    len: n,
                    remaining: rem,
                    what: "SLOT_IMPORT range count",
                });
            }
        }
        let mut ranges = Vec::new();
        for _ in 0..n {
            let a = self.read_len("SLOT_IMPORT range start")?;
            let b = self.read_len("SLOT_IMPORT range end")?;
            ranges.push((a, b));
        }
        Ok(Item::SlotImport { job_name, ranges })
    }

    /// A library as Redis 7.0-rc1/rc2 stored it (see [`super::function`]).
    fn read_function_pre_ga(&mut self) -> Result<Item> {
        let name = self.read_str("pre-GA function name")?;
        let engine = self.read_str("pre-GA function engine")?;
        let has_desc = self.read_len("pre-GA function description flag")?;
        let description = if has_desc != 0 {
            Some(self.read_str("pre-GA function description")?)
        } else {
            None
        };
        let code = self.read_str("pre-GA function code")?;
        Ok(Item::FunctionPreGa {
            name,
            engine,
            description,
            code,
        })
    }

    /// Module aux data: kept raw (when opcode, when, the module's annotated fields, EOF).
    fn read_module_aux(&mut self) -> Result<Item> {
        let module_id = self.read_len("MODULE_AUX module id")?;
        let mut raw = Vec::new();
        let mut cap = self.capture(&mut raw, 0);
        let wo_at = cap.offset();
        let when_opcode = walk::plain_len(&mut cap, "MODULE_AUX when opcode")?;
        if when_opcode != module::OPCODE_UINT {
            return Err(RdbError::corrupt(
                wo_at,
                "MODULE_AUX",
                format!("when opcode {when_opcode}, expected 2"),
            ));
        }
        let when = walk::plain_len(&mut cap, "MODULE_AUX when")?;
        walk::module_fields(&mut cap)?;
        let (module_name, _) = module::name_from_id(module_id);
        Ok(Item::ModuleAux {
            module_id,
            module_name,
            when,
            raw,
        })
    }

    /// A key of value type `t`: its value bytes copied verbatim into a DUMP payload.
    fn read_key(&mut self, t: u8, flavor: Flavor, meta: KeyMeta) -> Result<Item> {
        let key = self.read_str("key")?;
        let value_at = self.src.offset;
        let mut raw = self.take_scratch();
        raw.push(t);
        let spill_at = self
            .opts
            .big_value_bytes
            .filter(|_| super::elements::streamable(t));
        let mut cap = self.capture(&mut raw, 1);
        cap.spill = spill_at.map(|threshold| Spill {
            threshold,
            active: false,
            total: 0,
            scratch: Vec::new(),
        });
        let walked = walk::value(&mut cap, t, flavor);
        let big = cap.spill.as_ref().filter(|s| s.active).map(|s| s.total);
        if !matches!(walked, Ok(false)) || big.is_some() {
            // Not a payload: an error, an empty key, or a big value left in the file.
            self.keep_scratch(raw);
            let empty = walked?;
            if let (Some(len), false) = (big, empty) {
                return Ok(Item::BigValue(Box::new(BigValue {
                    db: self.db,
                    key,
                    type_byte: t,
                    offset: value_at,
                    len,
                    expire_at_ms: meta.expire_at_ms,
                })));
            }
            return Ok(Item::EmptyKey {
                db: self.db,
                key,
                type_byte: t,
            });
        }
        if self.opts.validate_values {
            let value = raw.get(1..).unwrap_or(&[]);
            let checked = super::decode::decode_value_with(t, value, flavor);
            if let Err(e) = checked {
                self.keep_scratch(raw);
                return Err(e.rebase(value_at));
            }
        }
        let payload = self.payload(raw);
        let record = Record {
            db: self.db,
            key: Bytes::from(key),
            payload: Bytes::from(payload),
            expire_at_ms: meta.expire_at_ms,
        };
        Ok(Item::Record(Box::new(KeyRecord {
            record,
            lru_idle: meta.lru_idle,
            lfu_freq: meta.lfu_freq,
        })))
    }

    /// The DUMP payload of a value captured in `raw` (type byte and value bytes): the value, the
    /// RDB version and the CRC64, in an exactly sized `Vec`. A small value is copied out of
    /// the scratch buffer (one allocation); a big one is moved (no copy of megabytes).
    fn payload(&mut self, mut raw: Vec<u8>) -> Vec<u8> {
        let version = self.header.version.to_le_bytes();
        let mut payload = if raw.len() > SCRATCH_KEEP {
            raw.reserve_exact(10);
            raw
        } else {
            let mut p = Vec::with_capacity(raw.len() + 10);
            p.extend_from_slice(&raw);
            self.keep_scratch(raw);
            p
        };
        payload.extend_from_slice(&version);
        // On 1M ~100-byte values the payload CRC64s were ~18 % of `--rdb`'s CPU (short inputs
        // are the slow case of the folding CRC), half of it in the whole-file check.
        let crc = if self.opts.skip_payload_checksum {
            0
        } else {
            super::crc64::checksum(&payload)
        };
        payload.extend_from_slice(&crc.to_le_bytes());
        // `Bytes` keeps the whole allocation, and growing by doubling can leave a large value
        // with nearly as much unused room again: give it back.
        if payload.capacity() > payload.len() + payload.len() / 4 + 64 {
            payload.shrink_to_fit();
        }
        payload
    }
}

/// What the opcodes in front of a key said about it.
#[derive(Debug, Default, Clone, Copy)]
struct KeyMeta {
    /// Absolute expiry in Unix ms.
    expire_at_ms: Option<i64>,
    /// LRU idle seconds.
    lru_idle: Option<u64>,
    /// LFU counter.
    lfu_freq: Option<u8>,
    /// A metadata opcode was read: a key must follow.
    pending: bool,
}

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Read a whole file, collecting every item (tests and small files only).
pub fn read_all(bytes: &[u8]) -> Result<Vec<Item>> {
    let opts = ReaderOptions {
        known_size: Some(bytes.len() as u64),
        ..ReaderOptions::default()
    };
    RdbReader::with_options(bytes, opts)?.collect()
}
