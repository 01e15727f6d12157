//! Endpoints: where a server is, how to reach it securely, and connections to it.

pub mod cluster;
pub mod conn;
pub mod error_kind;
pub mod info;
pub mod resp;
pub mod secret;
pub mod tls;
pub mod url;

pub use conn::{ConnError, Connection, Pipeline};
pub use error_kind::{Denied, ErrorKind};
pub use resp::Reply;
pub use secret::Secret;
pub use url::{Endpoint, PasswordOrigin, Side};

/// Everything needed to open a connection to one server.
#[derive(Clone)]
pub struct Server {
    /// Address and credentials.
    pub endpoint: Endpoint,
    /// TLS settings, present for `rediss://`.
    pub tls: Option<tls::TlsSetup>,
    /// Longest silence accepted from the server on any wait (connect, handshake, a write, a
    /// read) before the connection counts as lost: [`crate::retry::answer_timeout`].
    pub answer_timeout: std::time::Duration,
}

impl Server {
    /// Opens a new connection.
    pub async fn connect(&self) -> Result<Connection, ConnError> {
        Connection::connect(self).await
    }

    /// The same server settings at another address (a discovered cluster node).
    pub fn at(&self, host: &str, port: u16) -> Server {
        Server {
            endpoint: self.endpoint.with_addr(host, port),
            tls: self.tls.clone(),
            answer_timeout: self.answer_timeout,
        }
    }
}
