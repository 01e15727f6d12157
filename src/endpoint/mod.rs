//! Endpoints: where a server is, how to reach it securely, and connections to it.
//!
//! Owns URLs and passwords (`url.rs`, `secret.rs`), TLS (`tls.rs`), RESP (`resp.rs`), what an
//! error reply means (`error_kind.rs`), connections (`conn.rs`), what a server says about itself
//! (`info.rs`) and cluster discovery (`cluster.rs`). It calls no other part of ferry: every
//! other part calls it, never the other way round.

pub mod cluster;
pub mod conn;
pub mod error_kind;
pub mod info;
pub mod layout;
pub mod resp;
pub mod secret;
pub mod server;
pub mod slot;
pub mod tls;
pub mod url;

pub use conn::{ConnError, Connection, Pipeline};
pub use error_kind::{Denied, ErrorKind};
pub use resp::Reply;
pub use secret::Secret;
pub use server::Server;
pub use url::{Endpoint, PasswordOrigin, Side};
