//! A minimal `.rdb` file writer.
//!
//! ferry never writes RDB files in production; this exists to generate test fixtures and
//! benchmark inputs of any size with exact control over the bytes (header, AUX fields, SELECTDB,
//! expiries, keys with raw value bytes, EOF and the CRC64 trailer).

use std::io::Write;

use super::crc64::Crc64;
use super::error::{RdbError, Result};
use super::length::write_length;
use super::payload;
use super::string::write_raw;
use super::types;

/// Writes an RDB file to `W`, checksumming as it goes.
#[derive(Debug)]
pub struct RdbWriter<W: Write> {
    out: W,
    crc: Crc64,
    version: u16,
    scratch: Vec<u8>,
}

impl<W: Write> RdbWriter<W> {
    /// Write the header: `REDIS%04d` for versions ≤ 79, `VALKEY%03d` from 80.
    pub fn new(out: W, version: u16) -> Result<Self> {
        let mut w = RdbWriter {
            out,
            crc: Crc64::new(),
            version,
            scratch: Vec::new(),
        };
        let magic = if version >= 80 {
            format!("VALKEY{version:03}")
        } else {
            format!("REDIS{version:04}")
        };
        w.put(magic.as_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.crc.update(b);
        self.out
            .write_all(b)
            .map_err(|source| RdbError::Io { offset: 0, source })
    }

    fn flush_scratch(&mut self) -> Result<()> {
        let s = std::mem::take(&mut self.scratch);
        let r = self.put(&s);
        self.scratch = s;
        self.scratch.clear();
        r
    }

    /// An AUX field.
    pub fn aux(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.scratch.push(types::OP_AUX);
        write_raw(&mut self.scratch, key);
        write_raw(&mut self.scratch, value);
        self.flush_scratch()
    }

    /// SELECTDB.
    pub fn select_db(&mut self, db: u32) -> Result<()> {
        self.scratch.push(types::OP_SELECTDB);
        write_length(&mut self.scratch, u64::from(db));
        self.flush_scratch()
    }

    /// RESIZEDB.
    pub fn resize_db(&mut self, db_size: u64, expires_size: u64) -> Result<()> {
        self.scratch.push(types::OP_RESIZEDB);
        write_length(&mut self.scratch, db_size);
        write_length(&mut self.scratch, expires_size);
        self.flush_scratch()
    }

    /// A FUNCTION2 library.
    pub fn function(&mut self, code: &[u8]) -> Result<()> {
        self.scratch.push(types::OP_FUNCTION2);
        write_raw(&mut self.scratch, code);
        self.flush_scratch()
    }

    /// A function library in the format of Redis 7.0-rc1/rc2 (opcode 246): name, engine,
    /// optional description, code.
    pub fn function_pre_ga(
        &mut self,
        name: &[u8],
        engine: &[u8],
        description: Option<&[u8]>,
        code: &[u8],
    ) -> Result<()> {
        self.scratch.push(types::OP_FUNCTION_PRE_GA);
        write_raw(&mut self.scratch, name);
        write_raw(&mut self.scratch, engine);
        write_length(&mut self.scratch, u64::from(description.is_some()));
        if let Some(d) = description {
            write_raw(&mut self.scratch, d);
        }
        write_raw(&mut self.scratch, code);
        self.flush_scratch()
    }

    /// A key with raw value bytes of type `type_byte` and an optional absolute expiry in ms.
    pub fn key(
        &mut self,
        key: &[u8],
        type_byte: u8,
        value: &[u8],
        expire_at_ms: Option<i64>,
    ) -> Result<()> {
        if let Some(ms) = expire_at_ms {
            if self.version >= 3 {
                self.scratch.push(types::OP_EXPIRETIME_MS);
                self.scratch.extend_from_slice(&ms.to_le_bytes());
            } else {
                self.scratch.push(types::OP_EXPIRETIME);
                self.scratch
                    .extend_from_slice(&((ms / 1000) as i32).to_le_bytes());
            }
        }
        self.scratch.push(type_byte);
        write_raw(&mut self.scratch, key);
        self.flush_scratch()?;
        self.put(value)
    }

    /// A key from a DUMP payload (its type byte and value bytes; the footer is dropped).
    pub fn key_from_payload(
        &mut self,
        key: &[u8],
        payload_bytes: &[u8],
        expire_at_ms: Option<i64>,
    ) -> Result<()> {
        let (t, v, _) = payload::split(payload_bytes)?;
        self.key(key, t, v, expire_at_ms)
    }

    /// Write EOF and (RDB 5+) the CRC64 trailer; returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.put(&[types::OP_EOF])?;
        if self.version >= 5 {
            let crc = self.crc.state();
            self.out
                .write_all(&crc.to_le_bytes())
                .map_err(|source| RdbError::Io { offset: 0, source })?;
        }
        Ok(self.out)
    }
}
