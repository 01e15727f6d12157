//! A live side: the source or the target read from a running server or cluster.
//!
//! A [`LiveSide`] is a list of [`Node`]s (`live_node.rs` reads one server): one for a standalone
//! server, one per master for a cluster. A cluster's keys are listed node by node (DB 0 only,
//! skipping nodes that own none of the wanted buckets) and re-read on the master that owns their
//! slot — which is also their bucket.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;

use super::bucket::{bucket_of, BUCKETS};
pub use super::live_node::{LiveOptions, Node};
use super::side::{Side, StreamStats, Visit, Want};
use super::state::KeyState;
use crate::endpoint::cluster::{self, Addr, AddrMap, Cluster};
use crate::endpoint::retry::retrying;
use crate::endpoint::{info, Server};
use crate::stop::Stop;

/// A live standalone server or cluster.
pub struct LiveSide {
    side: &'static str,
    name: String,
    product: String,
    nodes: Vec<Node>,
    /// For a cluster: the index in `nodes` of the master serving each slot (`u16::MAX`: none).
    /// Empty for a standalone server.
    owners: Vec<u16>,
    /// `--partition` on a cluster: per node, whether it serves a slot of the share (the others
    /// are neither listed nor read, so N workers list the cluster once between them). Empty:
    /// every node.
    in_share: Vec<bool>,
    listed: Arc<AtomicU64>,
}

impl LiveSide {
    /// Connects to `server`; for a cluster node, discovers the masters (addresses rewritten by
    /// `map`) and connects to each. Measures every node's clock. Opening only reads, so each of
    /// its steps (INFO, the cluster's topology, each node's clock and size probe) is retried
    /// alone on a new connection when the connection is lost (for `--retry-for`): what was
    /// learned stays learned, so a connection killed every few ms still lets the open progress
    /// one round trip at a time (tests/stalls.rs kills them every 10 ms).
    pub async fn open(
        server: Server,
        map: &AddrMap,
        opts: LiveOptions,
    ) -> anyhow::Result<LiveSide> {
        let side = server.endpoint.side.name();
        let info = retrying(opts.retry_for, || async {
            info::read(&mut server.connect().await?).await
        })
        .await?;
        let listed = Arc::new(AtomicU64::new(0));
        let name = server.endpoint.to_string();
        if !info.cluster {
            let node = Node::new(server, Some(info.version()), opts, listed.clone()).await?;
            return Ok(LiveSide {
                side,
                name,
                product: info.product(),
                nodes: vec![node],
                owners: Vec::new(),
                in_share: Vec::new(),
                listed,
            });
        }
        let connected = Addr::new(&server.endpoint.host, server.endpoint.port);
        let topology = retrying(opts.retry_for, || async {
            cluster::topology_of(&mut server.connect().await?, &connected).await
        })
        .await?;
        if topology.masters.is_empty() {
            anyhow::bail!("the {side} {name} is a cluster node but no master serves any slot");
        }
        let gaps = topology.uncovered();
        if !gaps.is_empty() {
            tracing::warn!(
                "no master of the {side} cluster serves slots {}: keys in them cannot be read",
                cluster::ranges_text(&gaps)
            );
        }
        let in_share = match &opts.share {
            Some(share) => topology
                .masters
                .iter()
                .map(|m| {
                    m.slots
                        .iter()
                        .any(|&(a, b)| (a..=b).any(|s| share.has_slot(s)))
                })
                .collect(),
            None => Vec::new(),
        };
        let cl = Cluster::new(server, map.clone());
        let mut nodes = Vec::with_capacity(topology.masters.len());
        let mut owners = vec![u16::MAX; BUCKETS];
        for (i, m) in topology.masters.iter().enumerate() {
            let node_server = cl.server(&m.addr);
            let node = Node::new(node_server, None, opts.clone(), listed.clone()).await;
            nodes.push(node.with_context(|| {
                format!(
                    "the {side} cluster announces master {} at {} (map it with --{side}-map-addr if it is not reachable from here)",
                    m.short_id(),
                    m.addr
                )
            })?);
            for &(a, b) in &m.slots {
                for slot in a..=b {
                    if let Some(o) = owners.get_mut(usize::from(slot)) {
                        *o = i as u16;
                    }
                }
            }
        }
        Ok(LiveSide {
            side,
            name,
            product: format!("{}, cluster of {} masters", info.product(), nodes.len()),
            nodes,
            owners,
            in_share,
            listed,
        })
    }

    /// True if node `i` serves a slot of the `--partition` share (or there is no share).
    fn in_share(&self, i: usize) -> bool {
        self.in_share.get(i).copied().unwrap_or(true)
    }

    /// The node serving `bucket`.
    fn owner(&self, bucket: u16) -> Option<usize> {
        if self.owners.is_empty() {
            return Some(0);
        }
        match self.owners.get(usize::from(bucket)) {
            Some(&o) if o != u16::MAX => Some(usize::from(o)),
            _ => None,
        }
    }

    /// True if node `i` serves a bucket `want` selects (and of the share, with `--partition`).
    fn serves_wanted(&self, i: usize, want: &Want) -> bool {
        if !self.in_share(i) {
            return false;
        }
        match want {
            Want::All => true,
            Want::Buckets(_) if self.owners.is_empty() => true,
            Want::Buckets(set) => self
                .owners
                .iter()
                .zip(set.iter())
                .any(|(&o, &w)| w && usize::from(o) == i),
        }
    }
}

impl Side for LiveSide {
    fn side_name(&self) -> &'static str {
        self.side
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn product(&self) -> Option<String> {
        Some(self.product.clone())
    }

    fn progress(&self) -> Arc<AtomicU64> {
        self.listed.clone()
    }

    async fn keyspace(&self) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
        let mut out: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.in_share(*i));
        for (_, node) in nodes {
            for (db, (keys, ttl)) in node.keyspace().await? {
                let e = out.entry(db).or_default();
                e.0 += keys;
                e.1 += ttl;
            }
        }
        Ok(out)
    }

    async fn stream<V: Visit>(
        &self,
        db: u32,
        want: Want,
        mut visitor: V,
        stop: Stop,
    ) -> anyhow::Result<(V, StreamStats)> {
        let mut stats = StreamStats::default();
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.serves_wanted(i, &want) {
                continue;
            }
            let (v, s) = node.stream(db, want.clone(), visitor, stop.clone()).await?;
            visitor = v;
            stats.add(s);
        }
        Ok((visitor, stats))
    }

    async fn fetch(
        &self,
        db: u32,
        keys: &[Bytes],
    ) -> anyhow::Result<(Vec<Option<KeyState>>, StreamStats)> {
        if let [node] = self.nodes.as_slice() {
            return node.fetch(db, keys).await;
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let bucket = bucket_of(k);
            let owner = self.owner(bucket).with_context(|| {
                format!(
                    "no master of the {} cluster serves slot {bucket} (key {})",
                    self.side,
                    crate::display::escape_key(k)
                )
            })?;
            groups.entry(owner).or_default().push(i);
        }
        let mut out = vec![None; keys.len()];
        let mut stats = StreamStats::default();
        for (node, idx) in groups {
            let Some(n) = self.nodes.get(node) else {
                continue;
            };
            let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
            let (states, s) = n.fetch(db, &ks).await?;
            stats.add(s);
            for (i, st) in idx.into_iter().zip(states) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = st;
                }
            }
        }
        Ok((out, stats))
    }

    async fn random_keys(&self, db: u32, n: u64) -> anyhow::Result<Vec<Bytes>> {
        let per_node = n.div_ceil(self.nodes.len().max(1) as u64);
        let mut out = Vec::new();
        for node in &self.nodes {
            out.extend(node.random_keys(db, per_node).await?);
        }
        Ok(out)
    }
}
