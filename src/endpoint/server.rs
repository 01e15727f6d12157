//! One server's connection settings: where it is, with which credentials and TLS, and how long
//! its silence is tolerated. Connections are opened from it (`conn.rs`).

use super::tls;
use super::url::Endpoint;

/// Everything needed to open a connection to one server.
#[derive(Clone)]
pub struct Server {
    /// Address and credentials.
    pub endpoint: Endpoint,
    /// TLS settings, present for `rediss://`.
    pub tls: Option<tls::TlsSetup>,
    /// Longest silence accepted from the server on any wait (connect, handshake, a write, a
    /// read) before the connection counts as lost: [`crate::endpoint::retry::answer_timeout`].
    pub answer_timeout: std::time::Duration,
}

impl Server {
    /// The same server settings at another address (a discovered cluster node).
    pub fn at(&self, host: &str, port: u16) -> Server {
        Server {
            endpoint: self.endpoint.with_addr(host, port),
            tls: self.tls.clone(),
            answer_timeout: self.answer_timeout,
        }
    }
}
