//! Endpoints: where a server is, how to reach it securely, and connections to it.
//!
//! Owns URLs and passwords (`url.rs`, `secret.rs`), TLS (`tls.rs`), RESP (`resp.rs`), what an
//! error reply means (`error_kind.rs`), connections (`conn.rs`) and retrying them when lost
//! (`retry.rs`), what a server says about itself (`info.rs`), cluster discovery (`cluster.rs`),
//! which master serves a key (`slot.rs`, `slot_map.rs`), commands routed through a cluster's
//! redirections (`route.rs`) and a target's refusal of values over its bulk limit
//! (`bulk_limit.rs`). It calls no other part of ferry but `display` (printing keys and sizes):
//! every other part calls it, never the other way round.

pub mod bulk_limit;
pub mod cluster;
pub mod conn;
pub mod error_kind;
pub mod info;
pub mod layout;
pub mod resp;
pub mod retry;
pub mod route;
pub mod secret;
pub mod server;
pub mod slot;
pub mod slot_map;
pub mod tls;
pub mod url;

pub use conn::{ConnError, Connection, Pipeline};
pub use error_kind::{Denied, ErrorKind};
pub use resp::Reply;
pub use secret::Secret;
pub use server::Server;
pub use url::{Endpoint, PasswordOrigin, Side};
