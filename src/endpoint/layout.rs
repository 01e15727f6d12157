//! What a side is laid out as: one server, or a Redis Cluster and its masters.
//!
//! Learned by `check/side.rs` (`INFO`, `CLUSTER SLOTS`) before anything is written; here, apart
//! from the checks, so that the partition's shares and the readers can name it without
//! depending on `check/`. Plain data over `server.rs` and `cluster.rs`; calls nothing else.

use super::cluster::{Cluster, Topology};
use super::Server;

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

impl Layout {
    /// Every server the side's data lives on: the server, or each master of the cluster.
    pub fn servers(&self) -> Vec<Server> {
        match self {
            Layout::Standalone(s) => vec![s.clone()],
            Layout::Cluster { cluster, topology } => topology
                .masters
                .iter()
                .map(|m| cluster.server(&m.addr))
                .collect(),
        }
    }
}
