//! One connection to one Redis server: connect, TLS, AUTH, and pipelined round trips.
//!
//! Everything ferry sends goes through [`Connection::run`]: a whole [`Pipeline`] is written at
//! once and its replies read back in order. Errors are classified here, once, into what the user
//! must fix (TLS, password, ACL) and what a retry can fix (a dropped connection), and every
//! message names the endpoint (never its password) and what to do.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, Reply};
use super::url::Endpoint;
use super::Server;

/// How long a TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may stay silent while we wait for replies. Generous, because a
/// `RESTORE` of a huge value or a `DUMP` on a busy server can legitimately take seconds.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why talking to a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to the {side} {ep}: {detail}. Check the host and port, and that this machine can reach it (security groups, firewall)")]
    Connect {
        side: &'static str,
        ep: String,
        detail: String,
    },
    /// TLS handshake failed: certificate, name or protocol mismatch.
    #[error("TLS handshake with the {side} {ep} failed: {detail}. {hint}")]
    Tls {
        side: &'static str,
        ep: String,
        detail: String,
        hint: String,
    },
    /// The server refused our credentials, or needs some we did not give.
    #[error("authentication to the {side} {ep} failed: {detail}. {hint}")]
    Auth {
        side: &'static str,
        ep: String,
        detail: String,
        hint: String,
    },
    /// The connection broke while in use; a reconnect may succeed.
    #[error("connection to the {side} {ep} was lost: {detail}")]
    Lost {
        side: &'static str,
        ep: String,
        detail: String,
    },
    /// The server sent bytes that are not RESP (or we spoke plain text to a TLS port).
    #[error("the {side} {ep} sent an invalid reply ({detail}); is it a Redis server, and does it need rediss:// (TLS)?")]
    Protocol {
        side: &'static str,
        ep: String,
        detail: String,
    },
}

impl ConnError {
    /// True when reconnecting and trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnError::Connect { .. } | ConnError::Lost { .. })
    }
}

/// A batch of commands sent in one write.
#[derive(Default)]
pub struct Pipeline {
    buf: BytesMut,
    count: usize,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends one command.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Pipeline {
        resp::encode_command(&mut self.buf, args);
        self.count += 1;
        self
    }

    /// Appends `RESTORE key ttl payload ABSTTL [REPLACE]` (see [`resp::encode_restore`]).
    pub fn restore(&mut self, key: &[u8], ttl: &[u8], payload: &[u8], replace: bool) {
        resp::encode_restore(&mut self.buf, key, ttl, payload, replace);
        self.count += 1;
    }

    /// Appends `cmd key` for each of `keys` (see [`resp::encode_key_commands`]).
    pub fn per_key<'a>(
        &mut self,
        cmd: resp::KeyCommand,
        keys: impl ExactSizeIterator<Item = &'a [u8]>,
    ) {
        self.count += keys.len();
        resp::encode_key_commands(&mut self.buf, cmd, keys);
    }

    /// Number of commands queued.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no command is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Empties the pipeline, keeping its buffer for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }
}

/// An open, authenticated connection.
pub struct Connection {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    side: &'static str,
    ep: String,
    /// The DB currently selected on this connection.
    db: u32,
    /// The server's TLS certificate (DER), for `ferry check`'s expiry check.
    peer_cert: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl Connection {
    /// Connects, does the TLS handshake if the URL says `rediss://`, authenticates and PINGs.
    pub async fn connect(server: &Server) -> Result<Connection, ConnError> {
        let ep = &server.endpoint;
        let side = ep.side.name();
        let shown = ep.to_string();
        let addr = format!("{}:{}", ep.host, ep.port);
        let connect_err = |detail: String| ConnError::Connect {
            side,
            ep: shown.clone(),
            detail,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| connect_err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut peer_cert = None;
        let io: Box<dyn Io> = match &server.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = tls.server_name(&ep.host).map_err(|e| ConnError::Tls {
                    side,
                    ep: shown.clone(),
                    detail: e.to_string(),
                    hint: format!("Check --{side}-sni"),
                })?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ConnError::Tls {
                        side,
                        ep: shown.clone(),
                        detail: "no handshake answer within 10s".into(),
                        hint: "Is this a TLS port? Use redis:// for a plain-TCP server".into(),
                    })?
                    .map_err(|e| tls_error(side, &shown, e))?;
                peer_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|c| c.clone().into_owned());
                Box::new(stream)
            }
        };
        let mut conn = Connection {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            side,
            ep: shown,
            db: 0,
            peer_cert,
        };
        conn.login(ep).await?;
        Ok(conn)
    }

    async fn login(&mut self, ep: &Endpoint) -> Result<(), ConnError> {
        let side = self.side;
        let env = format!("FERRY_{}_PASSWORD", side.to_uppercase());
        let mut p = Pipeline::new();
        if let Some(pw) = &ep.password {
            match &ep.user {
                Some(user) => p.cmd(&[b"AUTH", user.as_bytes(), pw.expose().as_bytes()]),
                None => p.cmd(&[b"AUTH", pw.expose().as_bytes()]),
            };
        }
        p.cmd(&[b"PING"]);
        let replies = self.run(&p).await.map_err(|e| match e {
            // A plain-TCP client talking to a TLS port is disconnected on its first bytes.
            ConnError::Lost { detail, .. } if !ep.tls => ConnError::Protocol {
                side,
                ep: self.ep.clone(),
                detail: format!("connection closed on the first command ({detail})"),
            },
            other => other,
        })?;
        for reply in &replies {
            let Some(err) = reply.error() else { continue };
            let upper = err.to_ascii_uppercase();
            if upper.contains("WITHOUT ANY PASSWORD CONFIGURED")
                || upper.contains("NO PASSWORD IS SET")
            {
                tracing::warn!(
                    "the {side} {} has no password configured, but one was given; continuing without",
                    self.ep
                );
                continue;
            }
            let hint = if upper.starts_with("NOAUTH") {
                format!("The server requires a password: put it in the URL (redis://:PASSWORD@host) or in {env}")
            } else if upper.starts_with("WRONGPASS") || upper.contains("INVALID PASSWORD") {
                format!("Check the user name and password (URL or {env})")
            } else if upper.starts_with("NOPERM") {
                "The ACL user lacks a permission ferry needs".into()
            } else {
                "Check the credentials".into()
            };
            return Err(ConnError::Auth {
                side,
                ep: self.ep.clone(),
                detail: err.trim_end_matches('.').to_string(),
                hint,
            });
        }
        Ok(())
    }

    /// Sends every command of `p` in one write and reads all replies, in order.
    /// Error replies from the server are returned as [`Reply::Error`], not as `Err`.
    pub async fn run(&mut self, p: &Pipeline) -> Result<Vec<Reply>, ConnError> {
        self.send(p).await?;
        let mut replies = Vec::with_capacity(p.count);
        self.recv_into(p.count, &mut replies).await?;
        Ok(replies)
    }

    /// Writes every command of `p` without waiting for replies: the caller reads them later
    /// with [`Connection::recv_into`] or [`Connection::recv_statuses`], in the order sent.
    /// Sending the next pipeline before reading the previous one's replies keeps the server
    /// busy while ferry handles those replies.
    pub async fn send(&mut self, p: &Pipeline) -> Result<(), ConnError> {
        let result = async {
            self.io.write_all(&p.buf).await?;
            self.io.flush().await
        }
        .await;
        result.map_err(|e| self.lost(e.to_string()))
    }

    /// Reads the next `count` replies (of commands already sent) into `out`, in order.
    pub async fn recv_into(&mut self, count: usize, out: &mut Vec<Reply>) -> Result<(), ConnError> {
        let mut got = 0;
        while got < count {
            match resp::parse_reply(&mut self.rbuf) {
                Ok(Some(reply)) => {
                    out.push(reply);
                    got += 1;
                }
                Ok(None) => self.fill().await?,
                Err(e) => return Err(self.protocol(e)),
            }
        }
        Ok(())
    }

    /// Reads the next `count` replies, expected to be `+OK` (the answer to a `RESTORE`), and
    /// calls `other(i, reply)` for each that is not, `i` counting from 0. The usual `+OK` is
    /// recognised and skipped without building a reply.
    pub async fn recv_statuses(
        &mut self,
        count: usize,
        mut other: impl FnMut(usize, Reply),
    ) -> Result<(), ConnError> {
        let mut i = 0;
        while i < count {
            if self.rbuf.starts_with(b"+OK\r\n") {
                self.rbuf.advance(5);
                i += 1;
                continue;
            }
            match resp::parse_reply(&mut self.rbuf) {
                Ok(Some(reply)) => {
                    other(i, reply);
                    i += 1;
                }
                Ok(None) => self.fill().await?,
                Err(e) => return Err(self.protocol(e)),
            }
        }
        Ok(())
    }

    /// Reads more bytes from the server into the read buffer.
    async fn fill(&mut self) -> Result<(), ConnError> {
        // Reads return what has arrived (~13 KB on average on loopback, measured), so a larger
        // buffer saves no syscalls; 64 KB keeps the chunks that payloads pin small.
        // Replies are split off this buffer without copying, so each payload keeps its whole
        // allocation alive. After a big reply grew it, later small payloads split from the same
        // allocation would keep megabytes alive for a few bytes each: start a fresh buffer.
        if self.rbuf.capacity() > 4 * READ_CHUNK && self.rbuf.len() < READ_CHUNK {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK);
            fresh.extend_from_slice(&self.rbuf);
            self.rbuf = fresh;
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout(READ_IDLE_TIMEOUT, self.io.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(self.lost(format!("no reply for {}s", READ_IDLE_TIMEOUT.as_secs()))),
            Ok(Err(e)) => Err(self.lost(e.to_string())),
            Ok(Ok(0)) => Err(self.lost("the server closed the connection".into())),
            Ok(Ok(_)) => Ok(()),
        }
    }

    fn lost(&self, detail: String) -> ConnError {
        ConnError::Lost {
            side: self.side,
            ep: self.ep.clone(),
            detail,
        }
    }

    fn protocol(&self, e: resp::ProtocolError) -> ConnError {
        ConnError::Protocol {
            side: self.side,
            ep: self.ep.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs one command.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, ConnError> {
        let mut p = Pipeline::new();
        p.cmd(args);
        let mut replies = self.run(&p).await?;
        Ok(replies.pop().unwrap_or(Reply::Bulk(None)))
    }

    /// Selects `db` if it is not selected already. Only for standalone servers.
    pub async fn select(&mut self, db: u32) -> anyhow::Result<()> {
        if self.db == db {
            return Ok(());
        }
        let reply = self
            .cmd(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
            .await?;
        if let Some(err) = reply.error() {
            anyhow::bail!("the {} {} refused SELECT {db}: {err}", self.side, self.ep);
        }
        self.db = db;
        Ok(())
    }

    /// The DB this connection has selected.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// Records that a pipeline run through [`Connection::run`] selected `db`.
    pub fn note_selected(&mut self, db: u32) {
        self.db = db;
    }

    /// The endpoint, for messages (no password).
    pub fn endpoint(&self) -> &str {
        &self.ep
    }

    /// The server's TLS certificate (DER), when connected with TLS.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_cert.as_deref()
    }

    /// `source` or `target`.
    pub fn side(&self) -> &'static str {
        self.side
    }
}

fn tls_error(side: &'static str, ep: &str, e: io::Error) -> ConnError {
    let detail = e.to_string();
    let lower = detail.to_ascii_lowercase();
    let hint = if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        format!("The server's certificate is not signed by a trusted CA: pass the CA with --{side}-cacert FILE (or, only for a test, --{side}-insecure)")
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!("The certificate does not name this host: connect with the name in the certificate, or set --{side}-sni NAME")
    } else if lower.contains("expired") {
        "The server's certificate has expired (or this machine's clock is wrong)".into()
    } else if lower.contains("corrupt message")
        || lower.contains("invalidcontenttype")
        || lower.contains("invalid content type")
        || lower.contains("eof")
    {
        "Is this port plain TCP? Use redis:// for a server without TLS".into()
    } else {
        "Check the TLS flags (--{side}-cacert, --{side}-cert/--{side}-key, --{side}-sni)"
            .replace("{side}", side)
    };
    ConnError::Tls {
        side,
        ep: ep.to_string(),
        detail,
        hint,
    }
}
