//! Cluster helpers for the integration tests: seed many keys across slots, read a whole cluster
//! back master by master, and move slots between masters while ferry writes.
//!
//! `data::seed_bulk` pipelines through one connection, which a cluster refuses (a pipeline's
//! keys must live on one node), so bulk seeding here goes through redis-rs's cluster pipeline,
//! which splits by slot. Reading back uses plain per-node connections and `data::snapshot`, so
//! what ferry wrote is checked by an independent client, not by ferry's own routing.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::process::Output;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::cluster::{cluster_pipe, ClusterConnection};

use super::data::{self, KeyState};
use super::servers::{Cluster, Server};

/// Key `i` of `seed_bulk_cluster(.., prefix)`. Every third key carries a hash tag (`{g0}`..`{g6}`),
/// so seven slots hold many keys each, and the others spread over all slots.
pub fn cluster_key(prefix: &str, i: usize) -> String {
    if i % 3 == 0 {
        format!("{{g{}}}{prefix}{i:08}", i % 7)
    } else {
        format!("{prefix}{i:08}")
    }
}

/// Writes `n` keys through a cluster connection, 1000 per cluster pipeline: strings, hashes,
/// lists, sets and zsets in turn, about a third with a TTL of 10–60 minutes. Returns `n`.
pub fn seed_bulk_cluster(conn: &mut ClusterConnection, n: usize, prefix: &str) -> usize {
    let mut rng = StdRng::seed_from_u64(0x005e_edc1_u64 ^ n as u64);
    for start in (0..n).step_by(1000) {
        let mut p = cluster_pipe();
        for i in start..(start + 1000).min(n) {
            let k = cluster_key(prefix, i);
            let items = rng.random_range(1..=6usize);
            match i % 5 {
                0 => {
                    p.cmd("SET")
                        .arg(&k)
                        .arg(format!("value-{i}-{}", "x".repeat(i % 50)))
                        .ignore();
                }
                1 => {
                    p.cmd("HMSET").arg(&k);
                    for f in 0..items {
                        p.arg(format!("f{f}")).arg(format!("v{i}-{f}"));
                    }
                    p.ignore();
                }
                2 => {
                    p.cmd("RPUSH").arg(&k);
                    for e in 0..items {
                        p.arg(format!("e{}", i * 10 + e));
                    }
                    p.ignore();
                }
                3 => {
                    p.cmd("SADD").arg(&k);
                    for e in 0..items {
                        p.arg(i * 10 + e);
                    }
                    p.ignore();
                }
                _ => {
                    p.cmd("ZADD").arg(&k);
                    for e in 0..items {
                        p.arg(rng.random_range(-1000..1000) as f64 / 8.0)
                            .arg(format!("m{e}"));
                    }
                    p.ignore();
                }
            }
            if rng.random_bool(1.0 / 3.0) {
                p.cmd("PEXPIRE")
                    .arg(&k)
                    .arg(rng.random_range(600_000..3_600_000u64))
                    .ignore();
            }
        }
        p.query::<()>(conn).expect("seed_bulk_cluster pipeline");
    }
    n
}

/// Rich data (every type, TTLs, binary keys) twice — once spread over slots, once under one
/// hash tag — plus `bulk` mixed keys ([`seed_bulk_cluster`]), through a cluster connection.
pub fn seed_cluster(c: &Cluster, bulk: usize) {
    let mut conn = c.conn();
    let caps = data::Caps::for_version(c.version.name());
    data::seed_rich(&mut conn, 0, "rich:", &caps);
    data::seed_rich(&mut conn, 0, "{tagged}rich:", &caps);
    seed_bulk_cluster(&mut conn, bulk, "bulk:");
}

/// Every key of the cluster (DB 0 of each node), read node by node. Panics if a key is on two
/// nodes.
pub fn snapshot_cluster(c: &Cluster) -> BTreeMap<Vec<u8>, KeyState> {
    let mut conns: Vec<redis::Connection> = c.nodes.iter().map(Server::conn).collect();
    data::snapshot_nodes(&mut conns)
}

/// Keys in the whole cluster.
pub fn cluster_dbsize(c: &Cluster) -> u64 {
    c.nodes.iter().map(dbsize).sum()
}

/// `DBSIZE` of one server (DB 0).
pub fn dbsize(s: &Server) -> u64 {
    s.dbsize() as u64
}

/// The node id of a cluster node (`CLUSTER MYID`).
pub fn node_id(s: &Server) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut s.conn())
        .expect("CLUSTER MYID")
}

/// Who serves what: `(first slot, last slot, master port)` from `CLUSTER SLOTS`, sorted.
pub fn slot_layout(c: &Cluster) -> Vec<(i64, i64, i64)> {
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut c.nodes[0].conn())
        .expect("CLUSTER SLOTS");
    let int = |v: Option<&redis::Value>| match v {
        Some(redis::Value::Int(i)) => *i,
        _ => -1,
    };
    let mut out: Vec<(i64, i64, i64)> = slots
        .iter()
        .filter_map(|entry| {
            let redis::Value::Array(parts) = entry else {
                return None;
            };
            let port = match parts.get(2) {
                Some(redis::Value::Array(m)) => int(m.get(1)),
                _ => -1,
            };
            Some((int(parts.first()), int(parts.get(1)), port))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Moves `slots` slots (with their keys) from node `from` to node `to` with the 7.0
/// `redis-cli --cluster reshard` (MIGRATE … REPLACE, so a key ferry already wrote on the
/// importing side does not stop the move). Returns redis-cli's output; panics if it fails.
pub fn reshard(c: &Cluster, from: usize, to: usize, slots: u32) -> Output {
    let (from_id, to_id) = (node_id(&c.nodes[from]), node_id(&c.nodes[to]));
    let seed = c.nodes[from].addr();
    let out = c.nodes[from]
        .cli_command()
        .args(["--cluster", "reshard", &seed])
        .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
        .args(["--cluster-slots", &slots.to_string()])
        .args([
            "--cluster-yes",
            "--cluster-replace",
            "--cluster-pipeline",
            "20",
        ])
        .output()
        .expect("run redis-cli --cluster reshard");
    assert!(
        out.status.success(),
        "reshard {slots} slots from node {from} to {to} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `CLUSTER KEYSLOT key`.
pub fn key_slot(c: &Cluster, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut c.nodes[0].conn())
        .expect("CLUSTER KEYSLOT")
}

/// The index in `c.nodes` of the master serving `slot`.
pub fn owner_of(c: &Cluster, slot: u16) -> usize {
    let port = slot_layout(c)
        .into_iter()
        .find(|&(a, b, _)| a <= slot as i64 && slot as i64 <= b)
        .map(|(_, _, p)| p)
        .expect("slot served");
    c.nodes
        .iter()
        .position(|n| n.port as i64 == port)
        .expect("owner is one of the nodes")
}

/// Opens a slot migration by hand (what `redis-cli --cluster reshard` does first for each slot):
/// `to` IMPORTING from `from`, `from` MIGRATING to `to`. Until [`finish_slot_migration`], `from`
/// answers `ASK` for keys of the slot it does not hold.
pub fn begin_slot_migration(c: &Cluster, slot: u16, from: usize, to: usize) {
    let (from_id, to_id) = (node_id(&c.nodes[from]), node_id(&c.nodes[to]));
    let setslot = |node: usize, state: &str, id: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(id)
            .query::<()>(&mut c.nodes[node].conn())
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state} on node {node}: {e}"));
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);
}

/// Moves the keys of `slot` still on `from` to `to` (MIGRATE … REPLACE), then assigns the slot
/// to `to` on every node.
pub fn finish_slot_migration(c: &Cluster, slot: u16, from: usize, to: usize) {
    let to_id = node_id(&c.nodes[to]);
    let mut src = c.nodes[from].conn();
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query(&mut src)
            .expect("CLUSTER GETKEYSINSLOT");
        if keys.is_empty() {
            break;
        }
        let mut m = redis::cmd("MIGRATE");
        m.arg("127.0.0.1")
            .arg(c.nodes[to].port)
            .arg("")
            .arg(0)
            .arg(10_000)
            .arg("REPLACE");
        if let Some(pw) = &c.password {
            m.arg("AUTH").arg(pw);
        }
        m.arg("KEYS").arg(&keys);
        m.query::<()>(&mut src).expect("MIGRATE");
    }
    for node in std::iter::once(to).chain((0..c.nodes.len()).filter(|&n| n != to)) {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&to_id)
            .query::<()>(&mut c.nodes[node].conn())
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} NODE on node {node}: {e}"));
    }
}

/// `CLUSTER COUNTKEYSINSLOT slot` on one node.
pub fn keys_in_slot(s: &Server, slot: u16) -> u64 {
    redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut s.conn())
        .expect("CLUSTER COUNTKEYSINSLOT")
}
