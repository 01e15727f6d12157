//! The RDB format: values as Redis serializes them in DUMP payloads and `.rdb` files.

pub mod value;
