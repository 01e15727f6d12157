//! Checks made before the first write: who the servers are (standalone or cluster, and then
//! which masters), their clocks, the DB plan, and conflicts.
//!
//! Anything that would make the copy fail half-way and can be known up front is checked here, so
//! that a refusal leaves the target untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use crate::cli::OnConflict;
use crate::endpoint::cluster::{self, ranges_text, Addr, AddrMap, Cluster, Topology};
use crate::endpoint::info::{self, ServerInfo};
use crate::endpoint::{ConnError, Connection, Endpoint, Pipeline, Reply, Server};
use crate::report::escape_key;
use crate::retry::Link;
use crate::sink::route::{KeyedCommands, Router};
use crate::source::scan::parse_scan;

/// How many conflicting keys an error names.
const NAMED_CONFLICTS: usize = 5;

/// Reads `INFO` and refuses servers ferry cannot use in this role.
pub async fn inspect(conn: &mut Connection, server: &Server) -> anyhow::Result<ServerInfo> {
    let info = info::read(conn).await?;
    let side = server.endpoint.side.name();
    // A cluster node may be a replica: ferry writes to the masters it discovers, not to it.
    if side == "target" && info.role == "slave" && !info.cluster {
        anyhow::bail!(
            "the target {} is a read-only replica (role:slave); point --target at the primary endpoint",
            server.endpoint
        );
    }
    Ok(info)
}

/// A side as ferry found it: one server, or a cluster and its masters.
#[derive(Clone)]
pub enum Layout {
    /// A standalone server (or a primary with replicas).
    Standalone(Server),
    /// A Redis Cluster, reached through the node the user named.
    Cluster {
        /// How to reach its nodes.
        cluster: Cluster,
        /// Its masters at start.
        topology: Topology,
    },
}

/// What preflight learned about one side.
pub struct SideInfo {
    /// `INFO` of the node the user named.
    pub info: ServerInfo,
    /// Standalone or cluster.
    pub layout: Layout,
    /// Keys per DB (summed over the masters of a cluster).
    pub keyspace: BTreeMap<u32, u64>,
}

impl SideInfo {
    /// True for a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.layout, Layout::Cluster { .. })
    }

    /// "Redis 7.0.15" or "Redis 7.0.15, cluster of 3 masters".
    pub fn describe(&self) -> String {
        match &self.layout {
            Layout::Standalone(_) => self.info.product(),
            Layout::Cluster { topology, .. } => format!(
                "{}, cluster of {} masters",
                self.info.product(),
                topology.masters.len()
            ),
        }
    }
}

/// Reads `INFO`; for a cluster node, discovers the masters, checks that each is reachable with
/// the same credentials and TLS settings, and (for a target) that every slot is served.
pub async fn examine(
    conn: &mut Connection,
    server: &Server,
    map: &AddrMap,
) -> anyhow::Result<SideInfo> {
    let info = inspect(conn, server).await?;
    let side = server.endpoint.side.name();
    if !info.cluster {
        if !map.is_empty() {
            tracing::warn!(
                "--{side}-map-addr is ignored: the {side} {} is not a cluster node",
                server.endpoint
            );
        }
        return Ok(SideInfo {
            keyspace: info.keyspace.clone(),
            info,
            layout: Layout::Standalone(server.clone()),
        });
    }
    let cluster = Cluster::new(server.clone(), map.clone());
    let connected = Addr::new(&server.endpoint.host, server.endpoint.port);
    let topology = cluster::topology_of(conn, &connected).await?;
    if topology.masters.is_empty() {
        anyhow::bail!(
            "the {side} {} is a cluster node (cluster_enabled:1) but no master serves any slot: create the cluster first",
            server.endpoint
        );
    }
    let gaps = topology.uncovered();
    if !gaps.is_empty() {
        let gaps = ranges_text(&gaps);
        if side == "target" {
            anyhow::bail!(
                "no master of the target cluster ({}) serves slots {gaps}; every slot needs a master before \
                 ferry writes (is a master down, or the cluster not fully created? see CLUSTER INFO)",
                server.endpoint
            );
        }
        tracing::warn!(
            "no master of the source cluster ({}) serves slots {gaps}: keys in them cannot be read",
            server.endpoint
        );
    }
    let mut keyspace: BTreeMap<u32, u64> = BTreeMap::new();
    for m in &topology.masters {
        let node = cluster.server(&m.addr);
        let mut c = node.connect().await.with_context(|| {
            format!(
                "the {side} cluster announces master {} (slots {}) at {}{}",
                m.short_id(),
                m.slots_text(),
                m.addr,
                if map.is_empty() {
                    format!("; if that address is not reachable from here, map it with --{side}-map-addr ANNOUNCED=REACHABLE")
                } else {
                    String::new()
                }
            )
        })?;
        for (db, n) in info::read(&mut c).await?.keyspace {
            *keyspace.entry(db).or_insert(0) += n;
        }
    }
    tracing::info!(
        "the {side} is a cluster: {}",
        topology
            .masters
            .iter()
            .map(|m| format!("{} {} slots {}", m.short_id(), m.addr, m.slots_text()))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(SideInfo {
        info,
        layout: Layout::Cluster { cluster, topology },
        keyspace,
    })
}

/// Refuses DB selections the target cannot take: a cluster has only DB 0, and two source DBs
/// written into one target DB overwrite each other's keys unless a conflict policy says how.
/// `pairs` is (source DB, target DB) for every DB to copy.
pub fn check_db_plan(
    pairs: &[(u32, u32)],
    source: &SideInfo,
    target: &SideInfo,
    target_ep: &Endpoint,
    on_conflict: OnConflict,
) -> anyhow::Result<()> {
    if source.is_cluster() {
        if let Some((db, _)) = pairs.iter().find(|(db, _)| *db != 0) {
            anyhow::bail!("--db {db}: the source is a Redis Cluster, which has only DB 0");
        }
    }
    if target.is_cluster() {
        let wrong: Vec<String> = pairs
            .iter()
            .filter(|(_, t)| *t != 0)
            .map(|(s, t)| {
                let keys = source.keyspace.get(s).copied().unwrap_or(0);
                format!("source DB {s} ({keys} keys) would go to DB {t}")
            })
            .collect();
        if !wrong.is_empty() {
            let first = pairs
                .iter()
                .find(|(_, t)| *t != 0)
                .map(|p| p.0)
                .unwrap_or(0);
            anyhow::bail!(
                "the target {target_ep} is a Redis Cluster, which has only DB 0, but {}. Say where each source DB \
                 goes with --db-map, e.g. --db-map {first}:0 (add --on-conflict replace or skip when several DBs \
                 share DB 0), or copy one DB at a time with --db {first} --db-map {first}:0",
                wrong.join(", ")
            );
        }
    }
    let mut into: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(s, t) in pairs {
        into.entry(t).or_default().push(s);
    }
    if on_conflict == OnConflict::Fail {
        if let Some((t, dbs)) = into.iter().find(|(_, dbs)| dbs.len() > 1) {
            let list: Vec<String> = dbs.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "source DBs {} would all be written into target DB {t}, where keys with the same name overwrite \
                 each other. Nothing was written. Pass --on-conflict replace (the copy written last wins) or \
                 --on-conflict skip (the first one wins), or copy them one at a time with --db",
                list.join(", ")
            );
        }
    }
    Ok(())
}

/// Refuses databases a standalone server does not have (`SELECT n` fails when n is not below
/// its `databases` setting), naming the server, the DB and the flag that chose it, before
/// anything is written. Cluster sides are checked by [`check_db_plan`] (only DB 0).
pub async fn check_dbs_exist(
    conn: &mut Connection,
    dbs: &[u32],
    flag: &dyn Fn(u32) -> String,
) -> anyhow::Result<()> {
    for &db in dbs {
        let reply = conn
            .cmd(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
            .await?;
        let Some(err) = reply.error() else { continue };
        let count = conn
            .cmd(&[b"CONFIG".as_slice(), b"GET", b"databases"])
            .await
            .ok()
            .and_then(|r| match r {
                Reply::Array(Some(items)) => items.get(1)?.to_text()?.parse::<u32>().ok(),
                _ => None,
            });
        let has = match count {
            Some(n) => format!("it has databases 0 to {}", n.saturating_sub(1)),
            None => "see `databases` in its configuration".to_string(),
        };
        anyhow::bail!(
            "{}: the {} {} has no database {db} (SELECT {db}: {}); {has}. Nothing was written",
            flag(db),
            conn.side(),
            conn.endpoint(),
            err.trim_end_matches('.')
        );
    }
    // Leave the connection where it was (SELECT succeeded on every DB above).
    conn.cmd(&[b"SELECT".as_slice(), conn.db().to_string().as_bytes()])
        .await?;
    Ok(())
}

/// [`check_dbs_exist`] on a new connection to `server`, unless it is a cluster node.
pub async fn check_dbs_on(
    server: &Server,
    dbs: &[u32],
    flag: &dyn Fn(u32) -> String,
) -> anyhow::Result<()> {
    let mut conn = server.connect().await?;
    if info::read(&mut conn).await?.cluster {
        return Ok(());
    }
    check_dbs_exist(&mut conn, dbs, flag).await
}

/// The target as the `--on-conflict fail` check sees it: where to ask whether keys exist.
// One per run: the size of a variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Probe {
    /// A standalone target.
    Standalone(Link),
    /// A cluster target: `EXISTS` routed by slot.
    Cluster(Router),
}

impl Probe {
    /// The target, for messages.
    pub(crate) fn endpoint(&self) -> String {
        match self {
            Probe::Standalone(c) => c.endpoint(),
            Probe::Cluster(r) => format!("cluster {}", r.cluster().seed().endpoint),
        }
    }

    /// Keys in `db` (summed over the masters of a cluster).
    pub(crate) async fn dbsize(&mut self, db: u32) -> anyhow::Result<u64> {
        match self {
            Probe::Standalone(c) => {
                c.select(db);
                Ok(c.cmd(&[b"DBSIZE".as_slice()]).await?.as_int().unwrap_or(0) as u64)
            }
            Probe::Cluster(r) => Ok(r
                .on_each_master(&[b"DBSIZE".as_slice()])
                .await?
                .iter()
                .map(|(_, reply)| reply.as_int().unwrap_or(0) as u64)
                .sum()),
        }
    }

    /// Whether each of `keys` exists in `db`.
    pub(crate) async fn exists(&mut self, db: u32, keys: &[Bytes]) -> anyhow::Result<Vec<bool>> {
        let replies = match self {
            Probe::Standalone(c) => {
                c.select(db);
                let mut p = Pipeline::new();
                for k in keys {
                    p.cmd(&[b"EXISTS".as_slice(), k]);
                }
                c.run(&p).await?
            }
            Probe::Cluster(r) => r.run(&Exists(keys)).await?,
        };
        Ok(replies.iter().map(|r| r.as_int() == Some(1)).collect())
    }
}

/// `EXISTS key` for each key, routable through a cluster.
struct Exists<'a>(&'a [Bytes]);

impl KeyedCommands for Exists<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.0[i]
    }

    fn encode(&self, i: usize, p: &mut Pipeline) {
        p.cmd(&[b"EXISTS".as_slice(), &self.0[i]]);
    }
}

/// The target's `proto-max-bulk-len`, when CONFIG is allowed (managed services often block it:
/// then `None`). A lost connection is an error, for the caller to retry.
pub async fn max_bulk_len(conn: &mut Connection) -> Result<Option<u64>, ConnError> {
    let reply = conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", b"proto-max-bulk-len"])
        .await?;
    Ok(match reply {
        Reply::Array(Some(items)) => items
            .get(1)
            .and_then(Reply::to_text)
            .and_then(|t| t.parse().ok()),
        _ => None,
    })
}

/// For `--on-conflict fail`: refuses when any source key already exists in its target DB.
///
/// Free when the target DBs are empty (the usual case). Otherwise every key of every source
/// server (the standalone server, or each master of a cluster) is checked with pipelined
/// `EXISTS` (routed by slot on a cluster target), before anything is written. A lost
/// connection on either side is retried for `retry_for` (SCAN cursors survive a reconnect).
pub async fn check_conflicts(
    sources: &[Server],
    target: &mut Probe,
    dbs: &[(u32, u32)],
    scan_count: u32,
    retry_for: Duration,
    share: Option<&crate::partition::KeyShare>,
) -> anyhow::Result<()> {
    let mut found = Conflicts::default();
    for &(db, tdb) in dbs {
        if target.dbsize(tdb).await? == 0 {
            continue;
        }
        for source in sources {
            let mut conn = Link::new(source.clone(), retry_for);
            conn.select(db);
            let count = scan_count.to_string();
            let mut cursor = 0u64;
            loop {
                let reply = conn
                    .cmd(&[
                        b"SCAN".as_slice(),
                        cursor.to_string().as_bytes(),
                        b"COUNT",
                        count.as_bytes(),
                    ])
                    .await?;
                let (next, mut keys) = parse_scan(reply)
                    .with_context(|| format!("SCAN on the source {}", source.endpoint))?;
                // `--partition`: other workers' keys are theirs to check (and to write).
                if let Some(share) = share {
                    keys.retain(|k| share.contains(k));
                }
                if !keys.is_empty() {
                    let exists = target.exists(tdb, &keys).await?;
                    found.add(tdb, &keys, &exists);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    found.refuse_if_any(&target.endpoint(), "the source's keys")
}

/// What a conflict check found: how many source keys exist on the target, and the first few.
#[derive(Debug, Default)]
pub(crate) struct Conflicts {
    total: u64,
    named: Vec<(u32, Bytes)>,
}

impl Conflicts {
    /// Records the keys of `keys` (in target DB `tdb`) that `exists` says are on the target.
    pub(crate) fn add(&mut self, tdb: u32, keys: &[Bytes], exists: &[bool]) {
        for (k, _) in keys.iter().zip(exists).filter(|(_, &e)| e) {
            self.total += 1;
            if self.named.len() < NAMED_CONFLICTS {
                self.named.push((tdb, k.clone()));
            }
        }
    }

    /// Refuses to start, naming a few keys, when any were found; `whose` says whose keys they
    /// are ("the source's keys", "the file's keys").
    pub(crate) fn refuse_if_any(&self, target: &str, whose: &str) -> anyhow::Result<()> {
        if self.total == 0 {
            return Ok(());
        }
        let named: Vec<String> = self
            .named
            .iter()
            .map(|(db, k)| format!("{} (db {db})", escape_key(k)))
            .collect();
        anyhow::bail!(
            "the target {target} already holds {} of {whose}, e.g. {}. Nothing was written. \
             Rerun with --on-conflict replace to overwrite them, --on-conflict skip to keep the target's copies, \
             or empty the target first",
            self.total,
            named.join(", ")
        )
    }
}
