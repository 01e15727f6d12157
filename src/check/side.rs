//! What a side is: one server, or a Redis Cluster and its masters — learned from `INFO` (and
//! `CLUSTER SLOTS`) before anything is written, and used by every command to plan its
//! connections. Servers ferry cannot use in a role (a read-only replica as the target, a target
//! cluster with slots nobody serves) are refused here.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::endpoint::cluster::{self, ranges_text, Addr, AddrMap, Cluster};
use crate::endpoint::info::{self, ServerInfo};
use crate::endpoint::{Connection, Server, Side};

pub use crate::endpoint::layout::Layout;

/// Reads `INFO` and refuses servers ferry cannot use in this role.
pub async fn inspect(conn: &mut Connection, server: &Server) -> anyhow::Result<ServerInfo> {
    let info = info::read(conn).await?;
    // A cluster node may be a replica: ferry writes to the masters it discovers, not to it.
    if server.endpoint.side == Side::Target && info.role == "slave" && !info.cluster {
        anyhow::bail!(
            "the target {} is a read-only replica (role:slave); point --target at the primary endpoint",
            server.endpoint
        );
    }
    Ok(info)
}

/// What the checks learned about one side.
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
        if server.endpoint.side == Side::Target {
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
