//! The RDB format: values as Redis serializes them in DUMP payloads and `.rdb` files.
//!
//! Layers, bottom up:
//! - primitives: [`cursor`] (bounds-checked slice reads), [`length`] (length encoding),
//!   [`string`] (raw / int / LZF strings, with [`lzf`]), [`score`] (doubles), [`crc64`],
//!   [`payload`] (DUMP payload footer);
//! - encoded blobs: [`ziplist`], [`listpack`], [`intset`], [`zipmap`], plus value structures
//!   [`stream`], [`hash_ttl`] (hash field expiry), [`module`], [`function`] (libraries);
//! - [`decode`]: payload / raw value → logical [`value::Value`] (verification, re-encoding);
//! - [`walk`]: finds where a value ends without decoding it (the migrate path);
//! - [`reader`]: streaming `.rdb` file reader producing [`crate::record::Record`]s;
//! - [`encode`]: logical value → payload for a given target RDB version;
//! - [`writer`]: a small `.rdb` file writer (tests, benchmarks, fixtures).
//!
//! It owns the format only: no network, no files but the `Read`/`Write` it is handed, and nothing
//! of the crate above it except [`crate::record::Record`], the reader's output.

pub mod crc64;
pub mod cursor;
pub mod decode;
pub mod elements;
pub mod encode;
pub mod error;
pub mod function;
pub mod hash_ttl;
pub mod intset;
pub mod length;
pub mod listpack;
pub mod lzf;
pub mod module;
pub mod payload;
pub mod reader;
pub mod score;
pub mod stream;
pub mod string;
pub mod types;
pub mod value;
pub mod walk;
pub mod writer;
pub mod ziplist;
pub mod zipmap;

#[cfg(test)]
mod proptests;

pub use decode::{decode_payload, decode_value};
pub use error::RdbError;
pub use reader::{Item, RdbReader};
