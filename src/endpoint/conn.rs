//! One connection to one Redis server: connect, TLS, AUTH, and pipelined round trips.
//!
//! Everything ferry sends goes through [`Connection::run`]: a whole [`Pipeline`] is written at
//! once and its replies read back in order. Errors are classified here, once, into what the user
//! must fix (TLS, password, ACL) and what a retry can fix (a dropped connection), and every
//! message names the endpoint (never its password) and what to do.
//!
//! Every wait on the network — connect, TLS handshake, each write and each read — is bounded by
//! the server's answer timeout ([`Server::answer_timeout`], derived from `--retry-for`), so a
//! server that stops answering (paused, overloaded, a dead network path) becomes a
//! [`ConnError::Stalled`] that the callers retry like a lost connection, never a hang. While
//! ferry waits, a warning every few seconds says for whom and for what.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error_kind::ErrorKind;
use super::resp::{self, Reply};
use super::server::Server;
use super::url::Endpoint;

/// How often a wait that lasts says so in the log: a third of the answer timeout, between 1 s
/// and 5 s, so that even a short `--retry-for` shows what ferry waits for before it gives up.
fn notice_every(limit: Duration) -> Duration {
    (limit / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// A TLS handshake still unanswered after this long makes ferry check, on a second connection,
/// whether the port speaks plain RESP (a `rediss://` URL for a plain server): only to name the
/// mistake at once instead of waiting out the answer timeout.
const PLAIN_PROBE_AFTER: Duration = Duration::from_secs(1);

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// The fewest bytes any RESP2 reply takes on the wire (`:0\r\n` is 4; 3 leaves room for an
/// empty status line), for the lower bound of what a server still owes (see [`LowWater`]).
const MIN_REPLY_BYTES: usize = 3;

/// Below this many owed bytes the low-water mark is left at 1: not worth a system call.
const LOWAT_MIN: usize = 16 * 1024;

/// The highest low-water mark set, well under the socket's receive buffer.
const LOWAT_MAX: usize = 256 * 1024;

/// A quiet wait shorter than this is not worth its two system calls and a timer.
const QUIET_MIN: Duration = Duration::from_millis(2);

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
    /// The connection is open but the server stopped answering (paused, overloaded, or the
    /// network path died without a reset); a reconnect may succeed.
    #[error("the {side} {ep} did not answer for {} while ferry waited for {what} (answer timeout {}: half of --retry-for, at least 1s)", secs(*waited), secs(*limit))]
    Stalled {
        side: &'static str,
        ep: String,
        what: String,
        waited: Duration,
        limit: Duration,
    },
}

impl ConnError {
    /// True when reconnecting and trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnError::Connect { .. } | ConnError::Lost { .. } | ConnError::Stalled { .. }
        )
    }

    /// For a stalled server: how long it had been silent when ferry gave up on the connection.
    /// A retry budget counts from the start of that silence, not from its detection.
    pub fn silent_for(&self) -> Option<Duration> {
        match self {
            ConnError::Stalled { waited, .. } => Some(*waited),
            _ => None,
        }
    }
}

/// A batch of commands sent in one write.
#[derive(Default)]
pub struct Pipeline {
    buf: BytesMut,
    count: usize,
    /// Name of the first command, for "waiting for the replies to …" messages.
    head: &'static str,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends one command.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Pipeline {
        if self.count == 0 {
            self.head = args.first().map_or("", |a| command_name(a.as_ref()));
        }
        resp::encode_command(&mut self.buf, args);
        self.count += 1;
        self
    }

    /// Appends `RESTORE key ttl payload ABSTTL [REPLACE]` (see [`resp::encode_restore`]).
    pub fn restore(&mut self, key: &[u8], ttl: &[u8], payload: &[u8], replace: bool) {
        if self.count == 0 {
            self.head = "RESTORE";
        }
        resp::encode_restore(&mut self.buf, key, ttl, payload, replace);
        self.count += 1;
    }

    /// Appends `cmd key` for each of `keys` (see [`resp::encode_key_commands`]).
    pub fn per_key<'a>(
        &mut self,
        cmd: resp::KeyCommand,
        keys: impl ExactSizeIterator<Item = &'a [u8]>,
    ) {
        if self.count == 0 {
            self.head = cmd.name();
        }
        self.count += keys.len();
        resp::encode_key_commands(&mut self.buf, cmd, keys);
    }

    /// Appends `PTTL key`, `DUMP key` for each of `keys` (see [`resp::encode_pttl_dump_pairs`]).
    pub fn pttl_dump_pairs<'a>(&mut self, keys: impl ExactSizeIterator<Item = &'a [u8]>) {
        if self.count == 0 {
            self.head = "PTTL";
        }
        self.count += 2 * keys.len();
        resp::encode_pttl_dump_pairs(&mut self.buf, keys);
    }

    /// Appends only the start of `ECHO <len bytes>`: the bulk's length line without its bytes.
    /// A server checks that length against `proto-max-bulk-len` as soon as it reads the line,
    /// so this asks whether it takes a value of `len` bytes without sending one
    /// (`bulk_limit.rs`). The connection is unusable afterwards.
    pub fn bulk_header_only(&mut self, len: u64) {
        self.buf.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$");
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        self.count += 1;
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
        self.head = "";
    }

    /// "the reply to PING" or "the replies to 5000 commands (RESTORE …)", for messages.
    fn describe(&self) -> String {
        match self.count {
            1 => format!("the reply to {}", self.head),
            n => format!("the replies to {n} commands ({} …)", self.head),
        }
    }
}

/// The name of a command ferry sends, as a static string (messages only).
fn command_name(arg: &[u8]) -> &'static str {
    const KNOWN: &[&str] = &[
        "AUTH",
        "PING",
        "SELECT",
        "INFO",
        "TIME",
        "SCAN",
        "PTTL",
        "DUMP",
        "RESTORE",
        "EXISTS",
        "DBSIZE",
        "CONFIG",
        "CLUSTER",
        "RANDOMKEY",
        "ASKING",
        "FUNCTION",
        "TYPE",
    ];
    KNOWN
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(arg))
        .copied()
        .unwrap_or("a command")
}

/// An open, authenticated connection.
pub struct Connection {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    side: &'static str,
    ep: String,
    /// The DB currently selected on this connection.
    db: u32,
    /// Longest silence accepted from the server (see [`Server::answer_timeout`]).
    limit: Duration,
    /// What the replies being read answer, for messages ("the reply to PING").
    awaiting: String,
    /// The server's TLS certificate (DER), for `ferry check`'s expiry check.
    peer_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Replies of commands sent and not read yet: what the server still owes.
    owed: usize,
    /// When ferry is woken for more of those replies.
    lowat: LowWater,
    /// Set for a connection that only reads ([`Connection::resend_reads`]): the server to
    /// connect to again when the connection is lost under a [`Connection::run`].
    resend: Option<Box<Server>>,
}

/// How many times one [`Connection::run`] of a read-only connection is sent again on a new
/// connection after a loss, before the loss is the caller's: a connection killed now and then
/// costs a reconnect, not the whole step (without it, one run of `tests/stalls.rs` under
/// connections killed every 10 ms saw 9 gate attempts in a row fail, 21 s of its 60 s
/// `--retry-for`, each on one lost round trip of ~15).
const RESENDS: u32 = 3;

/// The receive low-water mark (`SO_RCVLOWAT`) of a plain TCP connection: the kernel wakes
/// ferry only once that many bytes are waiting (or the peer closed, or the buffer is under
/// pressure), instead of at every segment the server writes.
///
/// Why: a live copy's reader is woken by every write of the source (16–60 KB each, one per
/// pass of its event loop), ~60 % of the ~10,000 wake-ups of 1M keys, and each wake-up (epoll,
/// a context switch) cost more of ferry's CPU than parsing the data it brought. The mark is
/// always a lower bound of what the server must still send — [`MIN_REPLY_BYTES`] per reply
/// owed, counting every round trip in flight — so it can delay a read but never wait for bytes
/// that will not come. Not bounded so on TLS, where bytes already read may sit undecrypted in
/// the TLS layer (a record of up to 16 KB) and the bound would be too loose to matter; there
/// the mark only serves [`Connection::wait_quietly`].
#[derive(Debug)]
struct LowWater {
    /// The socket, `None` when the mark is not used (a platform without it).
    fd: Option<std::os::fd::RawFd>,
    /// True for plain TCP: marks from the bytes owed.
    plain: bool,
    /// The mark set now (1: the default, wake at the first byte).
    set: usize,
}

impl LowWater {
    /// Sets the mark for `owed` bytes still to come (rounded down to a power of two, so it
    /// changes a few times per round trip, not at every read).
    fn expect(&mut self, owed: usize) {
        let owed = if self.plain { owed } else { 0 };
        self.mark(if owed < LOWAT_MIN {
            1
        } else {
            1 << owed.min(LOWAT_MAX).ilog2()
        });
    }

    fn mark(&mut self, want: usize) {
        let Some(fd) = self.fd else { return };
        if want == self.set {
            return;
        }
        if set_rcvlowat(fd, want).is_ok() {
            self.set = want;
        } else {
            // Never expected; back to the default for good.
            let _ = set_rcvlowat(fd, 1);
            self.fd = None;
        }
    }
}

#[cfg(target_os = "linux")]
fn set_rcvlowat(fd: std::os::fd::RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is the open socket of the connection that owns this `LowWater` (both are
    // dropped together), and setsockopt reads `len` bytes from `v`, which outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&v).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_rcvlowat(_fd: std::os::fd::RawFd, _bytes: usize) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

impl Server {
    /// Opens a new connection.
    pub async fn connect(&self) -> Result<Connection, ConnError> {
        Connection::connect(self).await
    }
}

impl Connection {
    /// Connects, does the TLS handshake if the URL says `rediss://`, authenticates and PINGs.
    pub async fn connect(server: &Server) -> Result<Connection, ConnError> {
        let ep = &server.endpoint;
        let mut conn = Connection::open(server).await?;
        match conn.login(ep).await {
            Ok(()) => Ok(conn),
            // A plain-TCP client talking to a TLS port is disconnected on its first bytes; so
            // is one whose connection was killed (CLIENT KILL, a restart) during the login. A
            // second attempt tells them apart.
            Err(ConnError::Lost { .. }) if !ep.tls => {
                let mut conn = Connection::open(server).await?;
                conn.login(ep).await.map_err(|e| match e {
                    ConnError::Lost { side, ep, detail } => ConnError::Protocol {
                        side,
                        ep,
                        detail: format!("connection closed on the first command, twice ({detail})"),
                    },
                    other => other,
                })?;
                Ok(conn)
            }
            Err(e) => Err(e),
        }
    }

    /// Connects and does the TLS handshake if the URL says `rediss://`.
    async fn open(server: &Server) -> Result<Connection, ConnError> {
        let ep = &server.endpoint;
        let side = ep.side.name();
        let shown = ep.to_string();
        let addr = format!("{}:{}", ep.host, ep.port);
        let limit = server.answer_timeout;
        let connect_err = |detail: String| ConnError::Connect {
            side,
            ep: shown.clone(),
            detail,
        };
        let tcp = tokio::time::timeout(limit, TcpStream::connect(&addr))
            .await
            .map_err(|_| connect_err(format!("no answer within {}", secs(limit))))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut peer_cert = None;
        let lowat = LowWater {
            fd: cfg!(target_os = "linux").then(|| std::os::fd::AsRawFd::as_raw_fd(&tcp)),
            plain: server.tls.is_none(),
            set: 1,
        };
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
                let handshake = connector.connect(name, tcp);
                let waited = bounded(side, &shown, limit, "the TLS handshake", handshake);
                // A silent handshake is a stalled server — or a plain-TCP one, which waits for
                // a command line: a plain `PING` on a second connection tells them apart.
                let stream = tokio::select! {
                    r = waited => r?.map_err(|e| tls_error(side, &shown, e))?,
                    () = answers_plain_resp(&addr, limit) => return Err(ConnError::Tls {
                        side,
                        ep: shown.clone(),
                        detail: "it did not answer the TLS handshake, but answered a plain-text PING on the same port".into(),
                        hint: "This port speaks plain TCP: use redis:// for a server without TLS".into(),
                    }),
                };
                peer_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|c| c.clone().into_owned());
                Box::new(stream)
            }
        };
        let conn = Connection {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            side,
            ep: shown,
            db: 0,
            limit,
            awaiting: String::new(),
            peer_cert,
            owed: 0,
            lowat,
            resend: None,
        };
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
        let replies = self.run(&p).await?;
        for reply in &replies {
            let Some(err) = reply.error() else { continue };
            let kind = ErrorKind::of(err);
            if kind == ErrorKind::NoPasswordSet {
                tracing::warn!(
                    "the {side} {} has no password configured, but one was given; continuing without",
                    self.ep
                );
                continue;
            }
            let hint = if kind == ErrorKind::NoAuth {
                format!("The server requires a password: put it in the URL (redis://:PASSWORD@host), in {env} or in a file named by --{side}-password-file")
            } else if kind == ErrorKind::WrongPass {
                match &ep.password_origin {
                    Some(origin) => {
                        format!("Check the user name and the password (taken from {origin})")
                    }
                    None => format!(
                        "Check the user name and password (URL, {env} or --{side}-password-file)"
                    ),
                }
            } else if matches!(kind, ErrorKind::NoPerm(_)) {
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
    /// A connection made with [`Connection::resend_reads`] sends `p` again on a new connection
    /// (its DB selected again) when this one is lost, up to [`RESENDS`] times.
    pub async fn run(&mut self, p: &Pipeline) -> Result<Vec<Reply>, ConnError> {
        let mut resent = 0;
        loop {
            match self.run_once(p).await {
                Err(e @ ConnError::Lost { .. }) if self.resend.is_some() && resent < RESENDS => {
                    resent += 1;
                    tracing::debug!(
                        "{e}; sending its {} command(s) again on a new connection",
                        p.count
                    );
                    self.reopen().await?;
                }
                done => return done,
            }
        }
    }

    async fn run_once(&mut self, p: &Pipeline) -> Result<Vec<Reply>, ConnError> {
        self.send(p).await?;
        let mut replies = Vec::with_capacity(p.count);
        self.recv_into(p.count, &mut replies).await?;
        Ok(replies)
    }

    /// Marks this connection as one that only reads (`ferry check`, the gate): a command lost
    /// with the connection is sent again on a new one to `server` (see [`Connection::run`]).
    /// Never for a connection that writes: a write may have run before the loss.
    pub fn resend_reads(&mut self, server: &Server) {
        self.resend = Some(Box::new(server.clone()));
    }

    /// Replaces a lost connection with a new one to the same server, the same DB selected.
    async fn reopen(&mut self) -> Result<(), ConnError> {
        let Some(server) = self.resend.take() else {
            return Ok(());
        };
        // Boxed: connecting logs in through `run`, which calls this.
        let mut fresh = Box::pin(Connection::connect(&server)).await?;
        // u32::MAX: the DB is unknown (a pipeline selected one itself); the new one is at 0.
        if self.db != 0 && self.db != u32::MAX {
            let mut p = Pipeline::new();
            p.cmd(&[b"SELECT".as_slice(), self.db.to_string().as_bytes()]);
            let replies = fresh.run_once(&p).await?;
            if let Some(err) = replies.first().and_then(Reply::error) {
                return Err(ConnError::Protocol {
                    side: self.side,
                    ep: self.ep.clone(),
                    detail: format!("SELECT {} refused on a new connection: {err}", self.db),
                });
            }
            fresh.db = self.db;
        }
        fresh.resend = Some(server);
        *self = fresh;
        Ok(())
    }

    /// Writes every command of `p` without waiting for replies: the caller reads them later
    /// with [`Connection::recv_into`] or [`Connection::recv_statuses`], in the order sent.
    /// Sending the next pipeline before reading the previous one's replies keeps the server
    /// busy while ferry handles those replies.
    pub async fn send(&mut self, p: &Pipeline) -> Result<(), ConnError> {
        self.awaiting = p.describe();
        self.owed += p.count;
        let what = format!(
            "room to send {} (the server stopped reading)",
            self.awaiting
        );
        // Each write is bounded, not the whole pipeline: a big value on a slow link takes as
        // long as it takes, as long as the server keeps reading.
        let mut sent = 0;
        while sent < p.buf.len() {
            let write = self.io.write(&p.buf[sent..]);
            match bounded(self.side, &self.ep, self.limit, &what, write).await? {
                Ok(0) => return Err(self.lost("the server closed the connection".into())),
                Ok(n) => sent += n,
                Err(e) => return Err(self.io_error(e)),
            }
        }
        let flush = self.io.flush();
        let flushed = bounded(self.side, &self.ep, self.limit, &what, flush).await?;
        flushed.map_err(|e| self.io_error(e))
    }

    /// Sleeps `d` without being woken by the server's replies meanwhile (they wait in the
    /// socket; see [`LowWater`]), then reads as usual. For a writer whose target needs a while
    /// to run a batch: read at the end instead of at every burst of `+OK`s (one per ~100
    /// RESTOREs the target runs), each of which woke ferry.
    pub async fn wait_quietly(&mut self, d: Duration) {
        if d < QUIET_MIN || self.lowat.fd.is_none() {
            return;
        }
        self.lowat.mark(LOWAT_MAX);
        tokio::time::sleep(d).await;
        // Lowering the mark wakes the reader at once if replies are waiting (the kernel checks).
        // Dropped before this line (a job abandoned mid-sleep), the next read resets it.
        self.lowat.mark(1);
    }

    /// Reads the next `count` replies (of commands already sent) into `out`, in order.
    pub async fn recv_into(&mut self, count: usize, out: &mut Vec<Reply>) -> Result<(), ConnError> {
        let mut got = 0;
        while got < count {
            match resp::parse_reply(&mut self.rbuf) {
                Ok(Some(reply)) => {
                    out.push(reply);
                    got += 1;
                    self.owed = self.owed.saturating_sub(1);
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
                self.owed = self.owed.saturating_sub(1);
                continue;
            }
            match resp::parse_reply(&mut self.rbuf) {
                Ok(Some(reply)) => {
                    other(i, reply);
                    i += 1;
                    self.owed = self.owed.saturating_sub(1);
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
        // The reply being read needs at least one more byte, each later one its minimum.
        let owed = 1 + MIN_REPLY_BYTES * self.owed.saturating_sub(1);
        self.lowat.expect(owed);
        let read = self.io.read_buf(&mut self.rbuf);
        match bounded(self.side, &self.ep, self.limit, &self.awaiting, read).await? {
            Err(e) => Err(self.io_error(e)),
            Ok(0) => Err(self.lost("the server closed the connection".into())),
            Ok(_) => Ok(()),
        }
    }

    /// A failed read or write: TLS refusals that arrive after the handshake (TLS 1.3 sends a
    /// missing client certificate's alert then) are for the user to fix; the rest is a loss.
    fn io_error(&self, e: io::Error) -> ConnError {
        if e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("alert") {
            return tls_error(self.side, &self.ep, e);
        }
        self.lost(e.to_string())
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

/// `2.5s`, `30s`: a duration in seconds for messages.
pub fn secs(d: Duration) -> String {
    let tenths = d.as_millis() / 100;
    if tenths % 10 == 0 {
        format!("{}s", tenths / 10)
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

/// Waits for `io` for at most `limit`, saying every [`notice_every`] that it still waits for
/// `what`; a server silent for `limit` is [`ConnError::Stalled`].
async fn bounded<T>(
    side: &'static str,
    ep: &str,
    limit: Duration,
    what: &str,
    io: impl Future<Output = io::Result<T>>,
) -> Result<io::Result<T>, ConnError> {
    tokio::pin!(io);
    let start = Instant::now();
    let every = notice_every(limit);
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ConnError::Stalled {
                side,
                ep: ep.to_string(),
                what: what.to_string(),
                waited: start.elapsed(),
                limit,
            });
        }
        match tokio::time::timeout(left.min(every), &mut io).await {
            Ok(result) => return Ok(result),
            Err(_) if start.elapsed() < limit => tracing::warn!(
                "waiting for the {side} {ep} to answer ({} so far, waiting for {what}; ferry gives up on the connection after {})",
                secs(start.elapsed()),
                secs(limit)
            ),
            Err(_) => {}
        }
    }
}

/// Resolves only if, after [`PLAIN_PROBE_AFTER`], a new plain-TCP connection to `addr` answers
/// `PING` with RESP (`+PONG`, or an error such as `-NOAUTH`): the port is not TLS. Otherwise
/// (a TLS server, a stalled one, no answer within `limit`) it never resolves.
async fn answers_plain_resp(addr: &str, limit: Duration) {
    tokio::time::sleep(PLAIN_PROBE_AFTER).await;
    let probe = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        let n = tcp.read(&mut first).await.ok()?;
        (n == 1 && matches!(first[0], b'+' | b'-')).then_some(())
    };
    match tokio::time::timeout(limit, probe).await {
        Ok(Some(())) => {}
        _ => std::future::pending().await,
    }
}

fn tls_error(side: &'static str, ep: &str, e: io::Error) -> ConnError {
    // Closed or reset before the handshake finished: the server dropped the connection (a
    // restart, a `CLIENT KILL`, overload) — a plain-TCP server would answer or wait instead.
    if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ) {
        return ConnError::Lost {
            side,
            ep: ep.to_string(),
            detail: format!("closed during the TLS handshake ({e})"),
        };
    }
    let detail = e.to_string();
    let lower = detail.to_ascii_lowercase();
    let hint = if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        format!("The server's certificate is not signed by a trusted CA: pass the CA with --{side}-cacert FILE (or, only for a test, --{side}-insecure)")
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!("The certificate does not name this host: connect with the name in the certificate, or set --{side}-sni NAME")
    } else if lower.contains("certificaterequired") || lower.contains("certificate required") {
        format!("The server requires a client certificate (mutual TLS): pass --{side}-cert and --{side}-key")
    } else if lower.contains("expired") {
        "The server's certificate has expired (or this machine's clock is wrong)".into()
    } else if lower.contains("corrupt message")
        || lower.contains("invalidcontenttype")
        || lower.contains("invalid content type")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_server_is_stalled_after_the_limit() {
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        let started = Instant::now();
        let read = ours.read_buf(&mut buf);
        let err = bounded(
            "target",
            "rediss://h:1",
            Duration::from_secs(1),
            "the reply to PING",
            read,
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(err.is_transient());
        assert!(err.silent_for().unwrap() >= Duration::from_secs(1));
        let text = err.to_string();
        assert!(
            text.contains("the target rediss://h:1 did not answer for 1s")
                && text.contains("the reply to PING")
                && text.contains("answer timeout 1s"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_plain_probe_recognises_resp_and_waits_on_silence() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"+PONG\r\n").await;
            }
        });
        let limit = Duration::from_secs(5);
        let probe = tokio::time::timeout(Duration::from_secs(4), answers_plain_resp(&addr, limit));
        assert!(probe.await.is_ok(), "a RESP answer is a plain port");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let probe = tokio::time::timeout(Duration::from_secs(2), answers_plain_resp(&addr, limit));
        assert!(probe.await.is_err(), "silence proves nothing");
    }

    #[test]
    fn seconds_for_messages() {
        assert_eq!(secs(Duration::from_millis(2500)), "2.5s");
        assert_eq!(secs(Duration::from_secs(30)), "30s");
    }
}
