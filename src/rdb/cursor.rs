//! A bounds-checked reader over a byte slice.
//!
//! All in-memory decoding (DUMP payloads, ziplists, listpacks, ...) goes through this type so
//! that no decoder ever indexes a slice directly: every read checks the remaining length first
//! and fails with a [`RdbError::Truncated`] naming the offset, instead of panicking. The cursor
//! carries a `base` so that offsets in errors are positions in the enclosing input.

use super::error::{RdbError, Result};

/// Reads bytes from a slice, tracking the position for error messages.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`, whose first byte sits at `base` in the enclosing input.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Cursor { buf, pos: 0, base }
    }

    /// Offset of the next byte, in the enclosing input.
    pub fn offset(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }

    /// Position of the next byte within this cursor's slice.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// The bytes consumed since position `start` (a value of [`Cursor::pos`]).
    pub fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consume one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => Err(self.truncated(what)),
        }
    }

    /// Consume `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = self
                    .buf
                    .get(self.pos..end)
                    .ok_or_else(|| self.truncated(what))?;
                self.pos = end;
                Ok(s)
            }
            None => Err(RdbError::LengthPastEnd {
                offset: self.offset(),
                len: n as u64,
                remaining: self.remaining() as u64,
                what,
            }),
        }
    }

    /// Consume `n` bytes where `n` came from the input as a u64.
    pub fn take_u64(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n, what),
            Err(_) => Err(RdbError::LengthPastEnd {
                offset: self.offset(),
                len: n,
                remaining: self.remaining() as u64,
                what,
            }),
        }
    }

    /// Consume exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Little-endian u16.
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u32.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u64.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Little-endian signed 24-bit integer (ziplist and listpack entries).
    pub fn i24_le(&mut self, what: &'static str) -> Result<i64> {
        let [a, b, c] = self.array(what)?;
        Ok(i64::from(i32::from_le_bytes([0, a, b, c]) >> 8))
    }

    /// Little-endian i64.
    pub fn i64_le(&mut self, what: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Fail unless `count` items of at least `min_size` bytes each can still fit; used before
    /// looping over a count read from the input, so a forged count fails fast.
    pub fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<()> {
        let need = count.saturating_mul(min_size);
        if need > self.remaining() as u64 {
            return Err(RdbError::LengthPastEnd {
                offset: self.offset(),
                len: count,
                remaining: self.remaining() as u64,
                what,
            });
        }
        Ok(())
    }

    /// A truncation error at the current position.
    pub fn truncated(&self, what: &'static str) -> RdbError {
        RdbError::Truncated {
            offset: self.offset(),
            expected: what.into(),
        }
    }
}

/// A capacity that is safe to pre-allocate for `count` items read from input with `remaining`
/// bytes left: never more than the input could possibly hold.
pub fn safe_capacity(count: u64, remaining: usize) -> usize {
    usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(remaining)
        .min(1 << 20)
}
