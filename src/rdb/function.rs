//! Function libraries stored in RDB files, as the code `FUNCTION LOAD` takes.
//!
//! Redis 7.0 GA and later store a library as one string (opcode 245, FUNCTION2) whose first line
//! names the engine and the library (`#!lua name=mylib`). The release candidates 7.0-rc1 and
//! 7.0-rc2 stored the name, the engine, an optional description and the code apart (opcode 246);
//! Redis 7.0.x still loads such files by rebuilding that first line in front of the code and
//! dropping the description (which no released server keeps). ferry does the same, so a
//! library from a release candidate is migrated like any other.

/// The `FUNCTION LOAD` code of a library stored in the pre-GA format (opcode 246): the
/// `#!<engine> name=<name>` line, then the stored code. The description is not part of it.
pub fn pre_ga_library(name: &[u8], engine: &[u8], code: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + engine.len() + code.len() + 9);
    out.extend_from_slice(b"#!");
    out.extend_from_slice(engine);
    out.extend_from_slice(b" name=");
    out.extend_from_slice(name);
    out.push(b'\n');
    out.extend_from_slice(code);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_ga_library_gets_the_ga_first_line() {
        let code = b"redis.register_function('f', function() return 1 end)";
        let lib = pre_ga_library(b"mylib", b"LUA", code);
        assert_eq!(
            lib,
            b"#!LUA name=mylib\nredis.register_function('f', function() return 1 end)".to_vec()
        );
    }

    /// Opcode 246 written the way 7.0-rc1/rc2 wrote it reads back field by field, with and
    /// without a description, between keys and before a FUNCTION2 library.
    #[test]
    fn pre_ga_opcode_reads_back() {
        use crate::rdb::reader::{read_all, Item};
        use crate::rdb::{types, writer::RdbWriter};
        let mut w = RdbWriter::new(Vec::new(), 10).unwrap();
        w.function_pre_ga(b"lib1", b"LUA", Some(b"about lib1"), b"code 1")
            .unwrap();
        w.function_pre_ga(b"lib2", b"lua", None, b"code 2").unwrap();
        w.function(b"#!lua name=lib3\ncode 3").unwrap();
        w.select_db(0).unwrap();
        w.key(b"k", types::STRING, &[1, b'v'], None).unwrap();
        let items = read_all(&w.finish().unwrap()).unwrap();
        let pre_ga =
            |name: &[u8], engine: &[u8], desc: Option<&[u8]>, code: &[u8]| Item::FunctionPreGa {
                name: name.to_vec(),
                engine: engine.to_vec(),
                description: desc.map(<[u8]>::to_vec),
                code: code.to_vec(),
            };
        assert_eq!(
            items[0],
            pre_ga(b"lib1", b"LUA", Some(b"about lib1"), b"code 1")
        );
        assert_eq!(items[1], pre_ga(b"lib2", b"lua", None, b"code 2"));
        assert_eq!(
            items[2],
            Item::Function(b"#!lua name=lib3\ncode 3".to_vec())
        );
        assert!(matches!(items[4], Item::Record(_)), "{items:?}");
        assert!(matches!(items[5], Item::End { checksum: Some(_) }));
    }
}
