//! Real Redis / Valkey servers for integration tests.
//!
//! Every test starts its own servers on free loopback ports, as direct children of the test
//! process (not daemonized), each with its own temporary `--dir`; dropping a [`Server`] kills it.
//! Binaries and test certificates come from `scripts/test-servers.sh install`, found under
//! `$FERRY_SERVERS` (default `~/.cache/ferry-servers`): `bin/<version>/redis-server`,
//! `bin/<version>/redis-cli` and `tls/*.crt|key`.
//!
//! ```ignore
//! let src = Server::plain(Version::V3_2);
//! let dst = Server::tls_target(Version::V7_0);     // TLS, password "ferry-test-pass"
//! let mut c = src.conn();                          // redis-rs sync connection (RESP2)
//! let cluster = Cluster::start(Version::V7_0, true);
//! let mut cc = cluster.conn();
//! ```
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ClientTlsConfig, TlsCertificates};

/// Password of TLS servers started by [`Server::tls_target`] and [`Cluster::start`] with TLS.
pub const TEST_PASSWORD: &str = "ferry-test-pass";
/// The only name in the `sni.crt` certificate ([`CertKind::Sni`]).
pub const SNI_NAME: &str = "target.ferry.test";

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: u32 = 5;

/// A server version the suite runs. Sources are the old plain-TCP servers, targets the new ones
/// (which also speak TLS). The order is the release order (Redis 8.0 last), so `>=` compares
/// feature levels among Redis versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V3_2,
    /// Built only when `../shared/redis-src/redis-4.0.14.tar.gz` exists: see [`Version::is_installed`].
    V4_0,
    V5_0,
    V6_0,
    V6_2,
    V7_0,
    /// Valkey 8.0.
    Valkey8,
    Valkey8_1,
    V8_0,
}

impl Version {
    /// The directory name under `$FERRY_SERVERS/bin/`: "3.2", "4.0", "5.0", "6.0", "6.2", "7.0",
    /// "valkey8", "valkey8.1", "8.0".
    pub fn name(&self) -> &'static str {
        match self {
            Version::V3_2 => "3.2",
            Version::V4_0 => "4.0",
            Version::V5_0 => "5.0",
            Version::V6_0 => "6.0",
            Version::V6_2 => "6.2",
            Version::V7_0 => "7.0",
            Version::Valkey8 => "valkey8",
            Version::Valkey8_1 => "valkey8.1",
            Version::V8_0 => "8.0",
        }
    }

    /// For people: "Redis 3.2", "Valkey 8.1".
    pub fn label(&self) -> String {
        match self {
            Version::Valkey8 => "Valkey 8.0".to_string(),
            Version::Valkey8_1 => "Valkey 8.1".to_string(),
            v => format!("Redis {}", v.name()),
        }
    }

    /// Old servers most tests migrate from (plain TCP only). 4.0 is not here (it may not be
    /// installed); the version matrix (`tests/matrix.rs`) covers it.
    pub fn all_sources() -> Vec<Version> {
        vec![Version::V3_2, Version::V5_0, Version::V6_0, Version::V6_2]
    }

    /// New servers most tests migrate into (TLS-capable). Valkey 8.1 and Redis 8.0 are covered by
    /// the version matrix (`tests/matrix.rs`).
    pub fn all_targets() -> Vec<Version> {
        vec![Version::V7_0, Version::Valkey8]
    }

    pub fn all() -> Vec<Version> {
        let mut v = Self::all_sources();
        v.extend(Self::all_targets());
        v
    }

    /// Whether `scripts/test-servers.sh install` left a server binary for this version (4.0 is
    /// skipped when its source tarball is absent).
    pub fn is_installed(&self) -> bool {
        server_path(*self).exists() && cli_path(*self).exists()
    }

    /// Whether this build was compiled with TLS support.
    pub fn supports_tls(&self) -> bool {
        matches!(
            self,
            Version::V7_0 | Version::Valkey8 | Version::Valkey8_1 | Version::V8_0
        )
    }

    pub fn is_valkey(&self) -> bool {
        matches!(self, Version::Valkey8 | Version::Valkey8_1)
    }

    /// The RDB format version its `DUMP` payloads carry.
    pub fn rdb_version(&self) -> u16 {
        match self {
            Version::V3_2 => 7,
            Version::V4_0 => 8,
            Version::V5_0 | Version::V6_0 | Version::V6_2 => 9,
            Version::V7_0 => 10,
            Version::Valkey8 | Version::Valkey8_1 => 11,
            Version::V8_0 => 12,
        }
    }

    /// Streams exist from 5.0 on.
    pub fn has_streams(&self) -> bool {
        *self >= Version::V5_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which certificate a TLS server presents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertKind {
    /// `server.crt`: SAN `DNS:localhost, IP:127.0.0.1, IP:::1`.
    #[default]
    Server,
    /// `sni.crt`: SAN only `DNS:target.ferry.test` ([`SNI_NAME`]), to test `--target-sni`.
    Sni,
}

#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    /// Serve TLS only (`--port 0 --tls-port P`); targets only (see [`Version::supports_tls`]).
    pub tls: bool,
    /// `--requirepass` (and `--masterauth`).
    pub password: Option<String>,
    /// Require client certificates (`--tls-auth-clients yes`); implies nothing unless `tls`.
    pub mtls: bool,
    pub cert: CertKind,
    /// `--maxmemory`, e.g. "10mb".
    pub maxmemory: Option<String>,
    /// Appended to the command line, e.g. `["--proto-max-bulk-len", "1mb"]`.
    pub extra_args: Vec<String>,
}

impl ServerOpts {
    /// TLS with the default test password.
    pub fn tls() -> ServerOpts {
        ServerOpts {
            tls: true,
            password: Some(TEST_PASSWORD.to_string()),
            ..ServerOpts::default()
        }
    }

    /// TLS + password + required client certificates ([`client_cert`] / [`client_key`]).
    pub fn mtls() -> ServerOpts {
        ServerOpts {
            mtls: true,
            ..ServerOpts::tls()
        }
    }
}

/// One running server, killed on drop.
pub struct Server {
    pub version: Version,
    pub port: u16,
    pub tls: bool,
    pub password: Option<String>,
    opts: ServerOpts,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    /// Starts a server on a free port and waits until it answers PING (and is the process we
    /// started). Panics with the log's tail if it does not come up.
    pub fn start(version: Version, opts: ServerOpts) -> Server {
        require_binaries(version);
        if opts.tls {
            assert!(
                version.supports_tls(),
                "Redis {version} is built without TLS; use 7.0, valkey8, valkey8.1 or 8.0 for TLS servers"
            );
            require_certs();
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = tempfile::Builder::new()
                .prefix(&format!("ferry-redis-{version}-"))
                .tempdir()
                .expect("create a temporary directory for the server");
            let mut server = Server {
                version,
                port: free_port(),
                tls: opts.tls,
                password: opts.password.clone(),
                opts: opts.clone(),
                dir,
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::PortTaken) if attempt < START_ATTEMPTS => continue,
                Err(e) => panic!("{}", e.describe(&server)),
            }
        }
    }

    /// A plain-TCP server without password.
    pub fn plain(version: Version) -> Server {
        Server::start(version, ServerOpts::default())
    }

    /// A TLS server with password [`TEST_PASSWORD`] and the `server.crt` certificate.
    pub fn tls_target(version: Version) -> Server {
        Server::start(version, ServerOpts::tls())
    }

    /// `redis://127.0.0.1:PORT`, `redis://:PW@127.0.0.1:PORT` or `rediss://:PW@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!(
                "{}://:{}@127.0.0.1:{}",
                self.scheme(),
                url_encode(pw),
                self.port
            ),
            None => self.url_without_password(),
        }
    }

    /// `redis://127.0.0.1:PORT` or `rediss://127.0.0.1:PORT`.
    pub fn url_without_password(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    /// A redis-rs client: password from the URL; for TLS the test CA as the only root, plus the
    /// client certificate for mutual-TLS servers. Not for [`CertKind::Sni`] servers (their
    /// certificate does not name 127.0.0.1): use [`Server::cli`] on those.
    pub fn client(&self) -> redis::Client {
        assert!(
            !(self.tls && self.opts.cert == CertKind::Sni),
            "the server on port {} presents sni.crt (only {SNI_NAME}); redis-rs cannot verify it \
             on 127.0.0.1 — use Server::cli, which passes --sni",
            self.port
        );
        if self.tls {
            redis::Client::build_with_tls(self.url(), tls_certificates(self.opts.mtls))
        } else {
            redis::Client::open(self.url())
        }
        .expect("build a redis client for the test server")
    }

    /// A fresh sync connection (RESP2).
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| {
                panic!(
                    "connect to {self}: {e} (log: {})",
                    self.log_path().display()
                )
            })
    }

    /// `DBSIZE` of DB 0, on a fresh connection.
    pub fn dbsize(&self) -> i64 {
        redis::cmd("DBSIZE")
            .query(&mut self.conn())
            .expect("DBSIZE")
    }

    /// `DBSIZE` of DB `db`, on a fresh connection.
    pub fn dbsize_of(&self, db: u32) -> i64 {
        let mut c = self.conn();
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).expect("SELECT");
        redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE")
    }

    /// Keys in every DB (the `keys=` of `INFO keyspace`), on a fresh connection.
    pub fn total_keys(&self) -> i64 {
        self.keys_per_db().values().sum()
    }

    /// Keys per DB, empty DBs left out (`INFO keyspace`), on a fresh connection.
    pub fn keys_per_db(&self) -> BTreeMap<u32, i64> {
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query(&mut self.conn())
            .expect("INFO keyspace");
        // Lines like `db3:keys=200,expires=40,avg_ttl=0`.
        info.lines()
            .filter_map(|l| {
                let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
                let keys = rest.strip_prefix("keys=")?.split(',').next()?;
                Some((db.parse().ok()?, keys.trim().parse().ok()?))
            })
            .collect()
    }

    /// Runs the 7.0 `redis-cli` against this server (TLS, password, client certificate and SNI
    /// as needed) and returns its stdout. Panics if it exits non-zero.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command()
            .args(args)
            .output()
            .expect("run the 7.0 redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?} against {self} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `redis-cli` (7.0) command with this server's connection flags, ready for `.args(...)`.
    pub fn cli_command(&self) -> Command {
        let mut c = Command::new(cli_path(Version::V7_0));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.tls {
            c.arg("--tls").arg("--cacert").arg(ca_cert());
            if self.opts.mtls {
                c.arg("--cert")
                    .arg(client_cert())
                    .arg("--key")
                    .arg(client_key());
            }
            if self.opts.cert == CertKind::Sni {
                c.args(["--sni", SNI_NAME]);
            }
        }
        if let Some(pw) = &self.password {
            c.arg("--no-auth-warning").env("REDISCLI_AUTH", pw);
        }
        c.stdin(Stdio::null());
        c
    }

    /// The server's `--dir`: `SAVE` writes `dump.rdb` here, and a restart loads it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the server (SIGKILL: like a crash, nothing is saved) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port with the same dir and
    /// options (a `dump.rdb` left by `SAVE` is loaded). Panics if the port was taken meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old socket can linger for a moment after a kill.
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("restart: {}", e.describe(self)),
            }
        }
    }

    fn args(&self) -> Vec<String> {
        let dir = self.dir.path().to_str().expect("temp dir path is UTF-8");
        let mut a: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.into(),
            "--logfile".into(),
            self.log_path().to_str().expect("UTF-8 path").into(),
            "--daemonize".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ];
        let port = self.port.to_string();
        if self.opts.tls {
            let (crt, key) = match self.opts.cert {
                CertKind::Server => ("server.crt", "server.key"),
                CertKind::Sni => ("sni.crt", "sni.key"),
            };
            let tls = tls_dir();
            let p = |f: &str| tls.join(f).to_str().expect("UTF-8 path").to_string();
            a.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                p(crt),
                "--tls-key-file".into(),
                p(key),
                "--tls-ca-cert-file".into(),
                p("ca.crt"),
                "--tls-auth-clients".into(),
                if self.opts.mtls { "yes" } else { "no" }.into(),
            ]);
        } else {
            a.extend(["--port".into(), port]);
        }
        if let Some(pw) = &self.opts.password {
            a.extend([
                "--requirepass".into(),
                pw.clone(),
                "--masterauth".into(),
                pw.clone(),
            ]);
        }
        if let Some(mm) = &self.opts.maxmemory {
            a.extend(["--maxmemory".into(), mm.clone()]);
        }
        a.extend(self.opts.extra_args.iter().cloned());
        a
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let out = fs::File::create(self.dir.path().join("stdout.log"))
            .expect("create the server's stdout.log");
        let err = out.try_clone().expect("clone a file handle");
        let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(server_path(self.version))
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        self.child = Some(child);
        let res = self.wait_ready(log_start);
        if res.is_err() {
            self.stop();
        }
        res
    }

    /// Polls until PING answers PONG and `INFO server` names our process.
    fn wait_ready(&mut self, log_start: u64) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log = self.log_since(log_start);
                let port_taken = [
                    "Address already in use",
                    "Could not create server",
                    "Failed listening",
                ];
                if port_taken.iter().any(|m| log.contains(m)) {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Exited(status.to_string()));
            }
            let last = match self.probe() {
                Ok(pid) if Some(pid) == self.pid() => return Ok(()),
                // Another process answers on our port: ours will fail to bind and exit.
                Ok(pid) => format!("port answered by process {pid}, not ours"),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(StartError::NotReady(last));
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// PING + `INFO server` → `process_id`.
    fn probe(&self) -> Result<u32, String> {
        let info = if self.tls && self.opts.cert == CertKind::Sni {
            let out = self
                .cli_command()
                .args(["info", "server"])
                .output()
                .map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            let mut c = self
                .client()
                .get_connection_with_timeout(Duration::from_millis(500))
                .map_err(|e| e.to_string())?;
            let pong: String = redis::cmd("PING")
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            if pong != "PONG" {
                return Err(format!("PING answered {pong:?}"));
            }
            redis::cmd("INFO")
                .arg("server")
                .query(&mut c)
                .map_err(|e| e.to_string())?
        };
        info_field(&info, "process_id")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no process_id in INFO: {}", first_line(&info)))
    }

    fn log_since(&self, offset: u64) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.log_path()) {
            let _ = f.seek(SeekFrom::Start(offset));
            let _ = f.read_to_string(&mut s);
        }
        if let Ok(o) = fs::read_to_string(self.dir.path().join("stdout.log")) {
            s.push_str(&o);
        }
        s
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log_since(0);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.url_without_password())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- {self}: last lines of {} ---\n{}",
                self.log_path().display(),
                self.log_tail(15)
            );
        }
        self.stop();
    }
}

enum StartError {
    Spawn(String),
    PortTaken,
    Exited(String),
    NotReady(String),
}

impl StartError {
    fn describe(&self, s: &Server) -> String {
        let what = match self {
            StartError::Spawn(e) => {
                format!("could not run {}: {e}", server_path(s.version).display())
            }
            StartError::PortTaken => "its port stayed taken by another process".to_string(),
            StartError::Exited(st) => format!("it exited ({st})"),
            StartError::NotReady(last) => {
                format!("it did not answer within {READY_TIMEOUT:?} (last: {last})")
            }
        };
        format!(
            "Redis {} on port {} did not start: {what}\nlog: {}\n{}",
            s.version,
            s.port,
            s.log_path().display(),
            s.log_tail(20)
        )
    }
}

/// Three masters (no replicas), slots spread by the 7.0 `redis-cli --cluster create`.
pub struct Cluster {
    pub version: Version,
    pub tls: bool,
    pub password: Option<String>,
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Plain without password, or TLS with [`TEST_PASSWORD`].
    pub fn start(version: Version, tls: bool) -> Cluster {
        let opts = if tls {
            ServerOpts::tls()
        } else {
            ServerOpts::default()
        };
        Cluster::start_with(version, opts)
    }

    /// Each node gets `opts` plus the cluster flags. Waits until every node reports
    /// `cluster_state:ok` and knows all three nodes.
    pub fn start_with(version: Version, opts: ServerOpts) -> Cluster {
        Cluster::start_masters(version, opts, 3)
    }

    /// A cluster of `masters` masters (no replicas), slots split evenly by `redis-cli`.
    pub fn start_masters(version: Version, opts: ServerOpts, masters: usize) -> Cluster {
        assert!(opts.cert == CertKind::Server, "clusters use server.crt");
        let nodes: Vec<Server> = (0..masters)
            .map(|_| {
                let mut o = opts.clone();
                o.extra_args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .map(String::from),
                );
                if o.tls {
                    o.extra_args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                }
                Server::start(version, o)
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(Server::addr).collect();
        let out = nodes[0]
            .cli_command()
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create {addrs:?} ({version}) failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            version,
            tls: opts.tls,
            password: opts.password,
            nodes,
        };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info: Result<String, String> = node
                    .client()
                    .get_connection_with_timeout(Duration::from_secs(1))
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .map_err(|e| e.to_string());
                let last = match info {
                    Ok(i)
                        if info_field(&i, "cluster_state") == Some("ok")
                            && info_field(&i, "cluster_known_nodes")
                                == Some(self.nodes.len().to_string().as_str()) =>
                    {
                        break
                    }
                    Ok(i) | Err(i) => i,
                };
                assert!(
                    Instant::now() < deadline,
                    "cluster node {node} not ok after {CLUSTER_TIMEOUT:?}:\n{last}\nlog: {}",
                    node.log_path().display()
                );
                sleep(Duration::from_millis(50));
            }
        }
    }

    /// The first node's URL (a seed; ferry discovers the rest).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    pub fn url_without_password(&self) -> String {
        self.nodes[0].url_without_password()
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// A redis-rs cluster client seeded with every node (TLS: test CA as root).
    pub fn client(&self) -> ClusterClient {
        let b = ClusterClient::builder(self.urls());
        let b = if self.tls {
            b.certs(tls_certificates(false))
        } else {
            b
        };
        b.build().expect("build a redis cluster client")
    }

    pub fn conn(&self) -> ClusterConnection {
        self.client().get_connection().unwrap_or_else(|e| {
            panic!(
                "connect to the {} cluster at {}: {e}",
                self.version,
                self.url_without_password()
            )
        })
    }

    /// The node serving `key`'s slot (by `CLUSTER KEYSLOT` + `CLUSTER NODES` on node 0).
    pub fn node_for_key(&self, key: &[u8]) -> &Server {
        let mut c = self.nodes[0].conn();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT");
        let slots: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut c)
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|entry| {
                let redis::Value::Array(mut parts) = entry else {
                    panic!("CLUSTER SLOTS entry is not an array")
                };
                let rest = parts.split_off(2);
                let n = |v: &redis::Value| match v {
                    redis::Value::Int(i) => *i as u16,
                    other => panic!("CLUSTER SLOTS: unexpected {other:?}"),
                };
                (n(&parts[0]), n(&parts[1]), rest)
            })
            .collect();
        for (lo, hi, rest) in slots {
            if (lo..=hi).contains(&slot) {
                let Some(redis::Value::Array(master)) = rest.first() else {
                    panic!("CLUSTER SLOTS: no master for {lo}-{hi}")
                };
                let port = match master.get(1) {
                    Some(redis::Value::Int(p)) => *p as u16,
                    other => panic!("CLUSTER SLOTS: unexpected port {other:?}"),
                };
                return self
                    .nodes
                    .iter()
                    .find(|n| n.port == port)
                    .expect("slot owner is one of our nodes");
            }
        }
        panic!("slot {slot} is not served by any node")
    }
}

// ---------------------------------------------------------------- paths

/// `$FERRY_SERVERS`, default `~/.cache/ferry-servers` (absolute).
pub fn servers_dir() -> PathBuf {
    let p = match std::env::var_os("FERRY_SERVERS") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/ferry-servers"),
    };
    std::path::absolute(&p).unwrap_or(p)
}

pub fn tls_dir() -> PathBuf {
    servers_dir().join("tls")
}

pub fn ca_cert() -> PathBuf {
    tls_dir().join("ca.crt")
}

/// A CA that signed none of the servers' certificates.
pub fn other_ca_cert() -> PathBuf {
    tls_dir().join("other-ca.crt")
}

pub fn client_cert() -> PathBuf {
    tls_dir().join("client.crt")
}

pub fn client_key() -> PathBuf {
    tls_dir().join("client.key")
}

pub fn server_path(version: Version) -> PathBuf {
    servers_dir()
        .join("bin")
        .join(version.name())
        .join("redis-server")
}

pub fn cli_path(version: Version) -> PathBuf {
    servers_dir()
        .join("bin")
        .join(version.name())
        .join("redis-cli")
}

fn require_binaries(version: Version) {
    for p in [
        server_path(version),
        cli_path(version),
        cli_path(Version::V7_0),
    ] {
        assert!(
            p.exists(),
            "{} is missing: run scripts/test-servers.sh install (FERRY_SERVERS={})",
            p.display(),
            servers_dir().display()
        );
    }
}

fn require_certs() {
    assert!(
        ca_cert().exists(),
        "{} is missing: run scripts/test-servers.sh install",
        ca_cert().display()
    );
}

/// Test CA as the only root; the client certificate too when `mtls`.
pub fn tls_certificates(mtls: bool) -> TlsCertificates {
    let read = |p: PathBuf| fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    TlsCertificates {
        client_tls: mtls.then(|| ClientTlsConfig {
            client_cert: read(client_cert()),
            client_key: read(client_key()),
        }),
        root_cert: Some(read(ca_cert())),
    }
}

// ---------------------------------------------------------------- ports

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// A port `p` in 20000..30000 where both `p` and `p + 10000` (the cluster bus) are free right
/// now. A per-process offset (from the pid) plus a process-wide counter keeps parallel tests and
/// parallel test binaries apart; the bind probe skips ports in use. A remaining race (another
/// process binds it before the server does) is handled by [`Server::start`] retrying.
pub fn free_port() -> u16 {
    let offset = std::process::id().wrapping_mul(7919) % 10_000;
    for _ in 0..10_000 {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let p = 20_000 + ((offset + n.wrapping_mul(7)) % 10_000) as u16;
        if port_free(p) && port_free(p + 10_000) {
            return p;
        }
    }
    panic!("no free port pair in 20000..30000 / 30000..40000")
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

// ---------------------------------------------------------------- small helpers

/// The value of `name:` in an INFO-style reply.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim_end_matches('\r')
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
