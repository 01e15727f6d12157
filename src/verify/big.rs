//! Big keys on a live side: found before any DUMP, read in chunks, digested incrementally.
//!
//! A `DUMP` of a 200 MB string made verification hold ~627 MB and blocked the source for the
//! whole serialization. A side with `--big-key-bytes` set (the same flag and probe as the copy,
//! `bigkey/size.rs`) asks the size of each page of keys first (`MEMORY USAGE` on 4.0+; on 3.2
//! the encoding, and for non-compact values their length and a sampled element size); the keys
//! over the threshold are read with the big-key reader (`bigkey/read.rs`) in chunks of about
//! `--batch-bytes` and folded into the same canonical digest a DUMP would give
//! (`chunk_digest.rs`), so either side may take either path. Their expiry is read after the
//! value with the same `TIME, PTTL, TIME` bracket as every other key (`read/expiry.rs`).
//!
//! A key written to while it is read ([`ReadError::Changed`]) is read again, a few times; if it
//! keeps changing, the last read stands and the comparison's later rounds judge it, as they do a
//! small key that changes between its two sides' reads.

use bytes::Bytes;

use super::chunk_digest::ChunkDigest;
use super::state::KeyState;
use crate::bigkey::read::{ChunkReader, ReadError};
use crate::bigkey::{size, Kind};
use crate::endpoint::route::{KeyedCommands, Router};
use crate::endpoint::{Connection, Pipeline, Reply};
use crate::read::expiry::{self, Expiry};

/// Reads of a key that keeps changing before the last one is taken as it is.
const ATTEMPTS: usize = 3;

/// Smallest and largest chunk budget, whatever `--batch-bytes` says.
const MIN_BUDGET: usize = 1024;
const MAX_BUDGET: usize = 64 << 20;

/// How one server's big keys are found and read.
#[derive(Debug, Clone, Copy)]
pub struct BigKeys {
    /// How this server is asked for sizes.
    pub probe: size::Probe,
    /// Keys estimated above this many bytes are read in chunks.
    pub threshold: u64,
    /// Bytes per chunk.
    pub budget: usize,
}

impl BigKeys {
    /// The settings for the server on `conn` (its version picks the probe: read with INFO
    /// unless `version` is known); `None` when `--big-key-bytes 0` turned detection off.
    pub async fn for_server(
        conn: &mut Connection,
        version: Option<(u32, u32)>,
        big_key_bytes: u64,
        batch_bytes: usize,
    ) -> anyhow::Result<Option<BigKeys>> {
        if big_key_bytes == 0 {
            return Ok(None);
        }
        let version = match version {
            Some(v) => v,
            None => crate::endpoint::info::read(conn).await?.version(),
        };
        Ok(Some(BigKeys {
            probe: size::Probe::choose(conn, version).await?,
            threshold: big_key_bytes,
            budget: batch_bytes.clamp(MIN_BUDGET, MAX_BUDGET),
        }))
    }
}

/// What reading one big key gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigRead {
    /// Gone (deleted or expired) by the time it was read.
    Gone,
    /// Its state (expiry on the server's clock) and the bytes read.
    Read(KeyState, usize),
    /// It turned into a type that is never chunked (a module's): read it with DUMP.
    Dump,
}

/// Big-key detection for a reader that DUMPs the keys it is handed (the follower, `--keys-from`):
/// the probe is chosen on the first connection it sees, then every batch of keys is split into
/// the small ones to DUMP and the big ones to copy in chunks.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    /// Keys estimated above this many bytes are big.
    threshold: u64,
    /// Bytes per chunk when they are read.
    budget: usize,
    /// The probe, once asked.
    probe: Option<BigKeys>,
}

impl Detector {
    /// Detection of keys over `threshold` bytes, read in chunks of `budget`.
    pub fn new(threshold: u64, budget: usize) -> Detector {
        Detector {
            threshold,
            budget,
            probe: None,
        }
    }

    /// Splits `keys` of `db` (selected on `conn`) into the small ones and the big ones.
    pub async fn split(
        &mut self,
        conn: &mut Connection,
        db: u32,
        keys: &[Bytes],
    ) -> anyhow::Result<(Vec<Bytes>, Vec<crate::bigkey::BigKey>)> {
        let probe = self.probe(conn).await?;
        let kinds = classify_on(On::Conn(conn), &probe, keys).await?;
        Ok(split_by(db, keys, kinds))
    }

    /// [`Detector::split`] for a cluster source: each key is sized on the master of its slot
    /// (the router follows MOVED and ASK).
    pub async fn split_routed(
        &mut self,
        router: &mut Router,
        db: u32,
        keys: &[Bytes],
    ) -> anyhow::Result<(Vec<Bytes>, Vec<crate::bigkey::BigKey>)> {
        let probe = match self.probe {
            Some(p) => p,
            None => {
                // Asked of the master of the probe's key: another node would answer MOVED.
                let server = router.server_for(size::PROBE_KEY).ok_or_else(|| {
                    anyhow::anyhow!("no master of the source cluster serves the slot of the size probe's key (CLUSTERDOWN?)")
                })?;
                self.probe(&mut server.connect().await?).await?
            }
        };
        let kinds = classify_on(On::Cluster(router), &probe, keys).await?;
        Ok(split_by(db, keys, kinds))
    }

    /// The probe, asked on `conn` the first time.
    async fn probe(&mut self, conn: &mut Connection) -> anyhow::Result<BigKeys> {
        if let Some(p) = self.probe {
            return Ok(p);
        }
        let asked = BigKeys::for_server(conn, None, self.threshold, self.budget).await?;
        Ok(*self
            .probe
            .insert(asked.ok_or_else(|| anyhow::anyhow!("internal error: big keys off"))?))
    }
}

/// `keys` of `db` split by their `kinds` (`Some`: big) into the small ones and the big ones.
fn split_by(
    db: u32,
    keys: &[Bytes],
    kinds: Vec<Option<Kind>>,
) -> (Vec<Bytes>, Vec<crate::bigkey::BigKey>) {
    let mut small = Vec::with_capacity(keys.len());
    let mut big = Vec::new();
    for (key, kind) in keys.iter().zip(kinds) {
        match kind {
            Some(kind) => big.push(crate::bigkey::BigKey {
                db,
                key: key.clone(),
                kind,
                estimate: 0,
            }),
            None => small.push(key.clone()),
        }
    }
    (small, big)
}

/// Where a size probe is sent: one server (its DB selected), or a cluster's masters by slot.
pub enum On<'a> {
    /// One server's connection.
    Conn(&'a mut Connection),
    /// A cluster, each key's commands on the master of its slot.
    Cluster(&'a mut Router),
}

impl On<'_> {
    async fn run(&mut self, cmds: &impl KeyedCommands) -> anyhow::Result<Vec<Reply>> {
        match self {
            On::Conn(conn) => {
                let mut p = Pipeline::new();
                for i in 0..cmds.count() {
                    cmds.encode(i, &mut p);
                }
                Ok(conn.run(&p).await?)
            }
            On::Cluster(router) => router.run(cmds).await,
        }
    }
}

/// The size probe of some keys, one command at a time (`size::ask`).
struct Probes<'a> {
    probe: size::Probe,
    keys: &'a [Bytes],
}

impl KeyedCommands for Probes<'_> {
    fn count(&self) -> usize {
        self.keys.len() * self.probe.commands_per_key()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.keys[i / self.probe.commands_per_key()]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        let per = self.probe.commands_per_key();
        size::ask_part(p, self.probe, &self.keys[i / per], i % per);
    }
}

/// The second probe of the keys the first could not decide (`size::ask_details`).
struct Details<'a>(Vec<&'a Bytes>);

impl KeyedCommands for Details<'_> {
    fn count(&self) -> usize {
        self.0.len() * size::DETAIL_COMMANDS
    }

    fn key(&self, i: usize) -> &[u8] {
        self.0[i / size::DETAIL_COMMANDS]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        let per = size::DETAIL_COMMANDS;
        size::ask_detail(p, self.0[i / per], i % per);
    }
}

/// Which of `keys` (in the DB selected on `conn`) are big, and their kinds: one round trip, and
/// a second for the keys the first cannot decide.
pub async fn classify(
    conn: &mut Connection,
    big: &BigKeys,
    keys: &[Bytes],
) -> anyhow::Result<Vec<Option<Kind>>> {
    classify_on(On::Conn(conn), big, keys).await
}

/// [`classify`] on a server or a cluster.
pub async fn classify_on(
    mut on: On<'_>,
    big: &BigKeys,
    keys: &[Bytes],
) -> anyhow::Result<Vec<Option<Kind>>> {
    let malformed = || anyhow::anyhow!("fewer replies than commands to the size probe");
    let probes = Probes {
        probe: big.probe,
        keys,
    };
    let replies = on.run(&probes).await?;
    let verdicts = size::read(
        &mut replies.into_iter(),
        big.probe,
        keys.len(),
        big.threshold,
    )
    .ok_or_else(malformed)?;
    let mut out = vec![None; keys.len()];
    let mut checks = Vec::new();
    for (i, v) in verdicts.into_iter().enumerate() {
        match v {
            size::Verdict::Small => {}
            size::Verdict::Big(kind, _) => out[i] = Some(kind),
            size::Verdict::Check { size } => checks.push((i, size)),
        }
    }
    if checks.is_empty() {
        return Ok(out);
    }
    let asked = Details(checks.iter().map(|(i, _)| &keys[*i]).collect());
    let mut replies = on.run(&asked).await?.into_iter();
    for (i, known) in checks {
        match size::read_details(&mut replies, known).ok_or_else(malformed)? {
            Some((kind, estimate)) if estimate > big.threshold => out[i] = Some(kind),
            _ => {}
        }
    }
    Ok(out)
}

/// Reads `key`, a `kind` when classified, in chunks of `big.budget` bytes and digests it.
pub async fn read(
    conn: &mut Connection,
    big: &BigKeys,
    key: &Bytes,
    mut kind: Kind,
) -> Result<BigRead, ReadError> {
    let mut attempt = 0;
    let (digest, bytes) = loop {
        attempt += 1;
        let mut reader = ChunkReader::new(key.clone(), kind, big.budget);
        let mut digest = ChunkDigest::new(kind);
        let mut bytes = 0usize;
        let outcome = loop {
            match reader.next(conn).await {
                Ok(Some(chunk)) => {
                    bytes += chunk.size();
                    digest.add(&chunk);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) => break (digest, bytes),
            Err(ReadError::Vanished) => return Ok(BigRead::Gone),
            Err(ReadError::TypeChanged(None)) => return Ok(BigRead::Dump),
            Err(ReadError::TypeChanged(Some(now))) if attempt < ATTEMPTS => kind = now,
            Err(ReadError::Changed { .. }) if attempt < ATTEMPTS => {}
            // Still changing: this read stands, the later rounds judge it.
            Err(ReadError::Changed { .. }) => break (digest, bytes),
            Err(e) => return Err(e),
        }
    };
    let expire_at_ms = match expiry_of(conn, key).await? {
        Expiry::Gone => return Ok(BigRead::Gone),
        Expiry::Never => None,
        Expiry::At(ms) => Some(ms),
    };
    let state = KeyState {
        kind: digest.kind(),
        digest: digest.finish(),
        expire_at_ms,
    };
    Ok(BigRead::Read(state, bytes))
}

/// The key's absolute expiry on the server's clock: `TIME, PTTL, TIME`, read again while the
/// bracket is wide (see `read/expiry.rs`).
async fn expiry_of(conn: &mut Connection, key: &Bytes) -> Result<Expiry, ReadError> {
    let mut p = Pipeline::new();
    expiry::ask(&mut p, std::iter::once(&key[..]));
    let replies = conn.run(&p).await?;
    let (bracket, ttls) = expiry::read(&mut replies.into_iter(), 1).map_err(|e| match e {
        expiry::ReadError::Refused { error, .. } => ReadError::Refused {
            command: "PTTL",
            error,
        },
        expiry::ReadError::Malformed(what) => ReadError::Malformed {
            command: "TIME/PTTL",
            what: what.to_string(),
        },
    })?;
    let expiries = if expiry::needs_reread(&bracket, &ttls) {
        let keys = std::slice::from_ref(key);
        match expiry::settle(conn, keys, bracket, &ttls).await {
            Ok(e) => e,
            Err(e) => match e.downcast::<crate::endpoint::ConnError>() {
                Ok(c) => return Err(ReadError::Conn(c)),
                Err(e) => {
                    return Err(ReadError::Malformed {
                        command: "PTTL",
                        what: e.to_string(),
                    })
                }
            },
        }
    } else {
        expiry::Expiries::new(&bracket, &ttls)
    };
    Ok(expiries.each.first().copied().unwrap_or(Expiry::Gone))
}
