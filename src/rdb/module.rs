//! Module values (type 7, "module2") and module auxiliary data.
//!
//! A module value starts with a 64-bit module id: nine 6-bit characters of the module type name
//! (from `A-Za-z0-9-_`) and a 10-bit encoding version. What follows is written by the module, but
//! since RDB 8 every field is annotated with an opcode (1 signed int, 2 unsigned int, 3 float,
//! 4 double, 5 string; 0 ends the value), so the value can be skipped and copied without the
//! module. Its content stays opaque: ferry keeps the raw bytes and the module name.

use super::cursor::Cursor;
use super::error::{RdbError, Result};
use super::length;
use super::string;

const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Module serialization opcode: end of value.
pub const OPCODE_EOF: u64 = 0;
/// Module serialization opcode: signed integer.
pub const OPCODE_SINT: u64 = 1;
/// Module serialization opcode: unsigned integer.
pub const OPCODE_UINT: u64 = 2;
/// Module serialization opcode: 4-byte float.
pub const OPCODE_FLOAT: u64 = 3;
/// Module serialization opcode: 8-byte double.
pub const OPCODE_DOUBLE: u64 = 4;
/// Module serialization opcode: string.
pub const OPCODE_STRING: u64 = 5;

/// The module type name and encoding version packed in a module id.
pub fn name_from_id(id: u64) -> (String, u16) {
    let mut name = String::with_capacity(9);
    for i in 0..9 {
        let shift = 64 - 6 * (i + 1);
        let idx = ((id >> shift) & 63) as usize;
        name.push(char::from(CHARSET.get(idx).copied().unwrap_or(b'?')));
    }
    (name, (id & 1023) as u16)
}

/// Skip the annotated fields of a module value up to and including its EOF opcode.
pub fn skip_annotated(cur: &mut Cursor<'_>) -> Result<()> {
    loop {
        let at = cur.offset();
        match length::read_length(cur, "module value opcode")? {
            OPCODE_EOF => return Ok(()),
            OPCODE_SINT | OPCODE_UINT => {
                length::read_length(cur, "module integer")?;
            }
            OPCODE_FLOAT => {
                cur.take(4, "module float")?;
            }
            OPCODE_DOUBLE => {
                cur.take(8, "module double")?;
            }
            OPCODE_STRING => {
                string::read_string(cur, "module string")?;
            }
            other => {
                return Err(RdbError::corrupt(
                    at,
                    "module value",
                    format!("unknown module opcode {other}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdb_test_module_id() {
        // module.rdb in librdb: module id 0xb5eb2dfffadd6c01 is "test__rdb" version 1.
        assert_eq!(
            name_from_id(0xb5eb_2dff_fadd_6c01),
            ("test__rdb".to_string(), 1)
        );
    }
}
