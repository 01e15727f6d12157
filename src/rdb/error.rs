//! Errors from parsing, decoding and encoding RDB data.
//!
//! Every parse error names the byte offset where the problem was found and what the parser was
//! expecting there, because the people who read these messages are holding a multi-gigabyte file
//! and need to know *where* to look (`xxd -s OFFSET`). Offsets are absolute file offsets for the
//! streaming reader and offsets within the payload for DUMP payload decoding. Problems inside an
//! LZF-compressed blob are reported at the offset of the compressed string, with the position
//! inside the decompressed blob in the message.

use std::borrow::Cow;

/// Everything that can go wrong reading or writing RDB data.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// The underlying reader failed.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        /// Bytes consumed before the failure.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input ended in the middle of something.
    #[error("truncated input at offset {offset}: expected {expected}")]
    Truncated {
        /// Where the missing bytes should have started.
        offset: u64,
        /// What was being read.
        expected: Cow<'static, str>,
    },
    /// The file does not start with `REDIS` or `VALKEY` followed by a version number.
    #[error(
        "wrong magic at offset 0: expected \"REDIS\" or \"VALKEY\" and a version, found {found:?}"
    )]
    BadMagic {
        /// The first bytes of the input, lossily printed.
        found: String,
    },
    /// The RDB version (file header or payload footer) is not one this parser understands.
    #[error("unsupported RDB version {version} at offset {offset}")]
    UnsupportedVersion {
        /// Where the version was read.
        offset: u64,
        /// The version found.
        version: u32,
    },
    /// An opcode or value type byte that is not known (for this RDB version / magic).
    #[error("unknown opcode or type byte 0x{byte:02x} ({byte}) at offset {offset}")]
    UnknownType {
        /// Offset of the byte.
        offset: u64,
        /// The byte.
        byte: u8,
    },
    /// A length or count claims more bytes than the input has left.
    #[error(
        "length {len} at offset {offset} runs past the end of the input \
         ({remaining} bytes remain) while reading {what}"
    )]
    LengthPastEnd {
        /// Offset of the length field (or of the data it announces).
        offset: u64,
        /// The length or count read.
        len: u64,
        /// Bytes left in the input at that point.
        remaining: u64,
        /// What the length belongs to.
        what: &'static str,
    },
    /// The stored CRC64 does not match the bytes.
    #[error("CRC64 mismatch at offset {offset}: stored {stored:#018x}, computed {computed:#018x}")]
    CrcMismatch {
        /// Offset of the stored checksum.
        offset: u64,
        /// Checksum found in the data.
        stored: u64,
        /// Checksum computed over the data.
        computed: u64,
    },
    /// An LZF-compressed string that does not decompress to its declared length.
    #[error("bad LZF string at offset {offset}: {reason}")]
    BadLzf {
        /// Offset of the compressed string's header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A structure that is internally inconsistent.
    #[error("corrupt {what} at offset {offset}: {reason}")]
    Corrupt {
        /// Offset of the bad byte(s).
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Valid data in a form this crate does not handle (e.g. a pre-GA module value).
    #[error("unsupported at offset {offset}: {what}")]
    Unsupported {
        /// Where the unsupported construct starts.
        offset: u64,
        /// What it is.
        what: String,
    },
    /// A value cannot be written in the requested form.
    #[error("cannot encode value: {0}")]
    Encode(String),
}

/// `$with` for the variants that carry an `offset` field (bound to `$offset`), `$without` for
/// the others. Written once so that a new variant is added in one place.
macro_rules! by_offset {
    ($err:expr, $offset:ident => $with:expr, $without:expr) => {
        match $err {
            RdbError::Io { $offset, .. }
            | RdbError::Truncated { $offset, .. }
            | RdbError::UnsupportedVersion { $offset, .. }
            | RdbError::UnknownType { $offset, .. }
            | RdbError::LengthPastEnd { $offset, .. }
            | RdbError::CrcMismatch { $offset, .. }
            | RdbError::BadLzf { $offset, .. }
            | RdbError::Corrupt { $offset, .. }
            | RdbError::Unsupported { $offset, .. } => $with,
            RdbError::BadMagic { .. } | RdbError::Encode(_) => $without,
        }
    };
}

impl RdbError {
    /// The byte offset the error refers to, if it has one (a bad header is at offset 0).
    pub fn offset(&self) -> Option<u64> {
        let magic = matches!(self, RdbError::BadMagic { .. });
        by_offset!(self, offset => Some(*offset), magic.then_some(0))
    }

    /// Shorthand for [`RdbError::Corrupt`].
    pub(crate) fn corrupt(offset: u64, what: &'static str, reason: impl Into<String>) -> Self {
        RdbError::Corrupt {
            offset,
            what,
            reason: reason.into(),
        }
    }

    /// Shift every offset by `base` (used when a blob parsed on its own sits at `base` in the
    /// enclosing input).
    pub(crate) fn rebase(mut self, base: u64) -> Self {
        by_offset!(&mut self, offset => *offset = offset.saturating_add(base), ());
        self
    }
}

/// Result alias for this module.
pub type Result<T, E = RdbError> = std::result::Result<T, E>;
