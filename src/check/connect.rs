//! Can ferry reach each side, over TLS as asked, and log in? And what is there: one server or a
//! cluster, whose masters must all be reachable and serve every slot.
//!
//! Connection failures reuse `Server::connect`'s classified errors (`ConnError`), whose own hint
//! becomes the row's "what to do"; none of them carries a password.

use std::collections::BTreeMap;

use super::row::Check;
use super::side::{Layout, SideInfo};
use crate::endpoint::cluster::{self, ranges_text, Addr, AddrMap, Cluster, Topology, SLOTS};
use crate::endpoint::info::{self, ServerInfo};
use crate::endpoint::{ConnError, Connection, Reply, Server, Side};

/// One server ferry talks to on a side: the standalone server, or one master of a cluster.
pub(crate) struct Node {
    /// How to reach it.
    pub server: Server,
    /// An open connection.
    pub conn: Connection,
    /// Its `INFO`.
    pub info: ServerInfo,
    /// Slots it serves (a cluster master), empty for a standalone server.
    pub slots: Vec<(u16, u16)>,
}

impl Node {
    /// Share of the cluster's slots it serves (1 for a standalone server).
    pub fn share(&self) -> f64 {
        if self.slots.is_empty() {
            return 1.0;
        }
        let n: u32 = self.slots.iter().map(|&(a, b)| u32::from(b - a) + 1).sum();
        f64::from(n) / f64::from(SLOTS)
    }

    /// "127.0.0.1:7000" for a cluster master, "" for a standalone server.
    pub fn label(&self) -> String {
        if self.slots.is_empty() {
            String::new()
        } else {
            format!(
                " {}:{}",
                self.server.endpoint.host, self.server.endpoint.port
            )
        }
    }
}

/// A side as `ferry check` found it.
pub(crate) struct Probed {
    /// What the run goes on with: the named node's INFO, the layout, keys per DB.
    pub side: SideInfo,
    /// The standalone server, or every reachable master.
    pub nodes: Vec<Node>,
}

impl Probed {
    /// `source` or `target`.
    pub fn name(&self) -> &'static str {
        match &self.side.layout {
            Layout::Standalone(s) => s.endpoint.side.name(),
            Layout::Cluster { cluster, .. } => cluster.side(),
        }
    }

    /// Every server the side's data lives on (for the conflict check).
    pub fn servers(&self) -> Vec<Server> {
        self.nodes.iter().map(|n| n.server.clone()).collect()
    }
}

/// Connects to a side and examines it, adding rows to `out`; `None` when it cannot be used.
pub(crate) async fn probe(
    server: &Server,
    map: &AddrMap,
    insecure: bool,
    out: &mut Vec<Check>,
) -> Option<Probed> {
    let side = server.endpoint.side.name();
    let name = format!("{side}: connection");
    let mut conn = match server.connect().await {
        Ok(c) => c,
        Err(e) => {
            out.push(conn_failure(&name, &e));
            return None;
        }
    };
    // Every check only reads: a command lost with its connection is sent again.
    conn.resend_reads(server);
    let info = match info::read(&mut conn).await {
        Ok(i) => i,
        Err(e) => {
            let fix = "the ACL user needs +info (ferry reads INFO to plan the job)";
            out.push(Check::fail(&name, format!("{e:#}"), fix).caused_by(&e));
            return None;
        }
    };
    let user = server.endpoint.user.as_deref().unwrap_or("default");
    let how = match (&server.tls, insecure) {
        (None, _) => "plain TCP".to_string(),
        (Some(_), false) => "TLS, certificate and host name verified".to_string(),
        (Some(_), true) => "TLS".to_string(),
    };
    out.push(Check::ok(
        &name,
        format!(
            "{} at {} ({how}), logged in as {user}",
            info.product(),
            server.endpoint
        ),
    ));
    if insecure {
        out.push(Check::warn(
            format!("{side}: TLS certificate"),
            format!("not verified (--{side}-insecure): anyone on the network path can impersonate the {side}"),
            format!("pass the CA that signed it with --{side}-cacert FILE"),
        ));
    }
    if server.endpoint.side == Side::Target && info.role == "slave" && !info.cluster {
        out.push(Check::fail(
            "target: role",
            format!("{} is a read-only replica (role:slave)", server.endpoint),
            "point --target at the primary endpoint",
        ));
        return None;
    }
    if !info.cluster {
        let node = Node {
            server: server.clone(),
            conn,
            info: info.clone(),
            slots: Vec::new(),
        };
        return Some(Probed {
            side: SideInfo {
                keyspace: info.keyspace.clone(),
                info,
                layout: Layout::Standalone(server.clone()),
            },
            nodes: vec![node],
        });
    }
    probe_cluster(server, map, conn, info, out).await
}

/// The row for a `Server::connect` failure: what happened, and the error's own hint as what to do.
fn conn_failure(name: &str, e: &ConnError) -> Check {
    let (detail, fix) = match e {
        ConnError::Tls { side, ep, detail, hint } => {
            (format!("TLS handshake with the {side} {ep} failed: {detail}"), hint.clone())
        }
        ConnError::Auth { side, ep, detail, hint } => {
            (format!("authentication to the {side} {ep} failed: {detail}"), hint.clone())
        }
        ConnError::Connect { side, ep, detail } => (
            format!("cannot connect to the {side} {ep}: {detail}"),
            "check the host and port, and that this machine can reach it (security groups, firewall)".into(),
        ),
        ConnError::Lost { .. } | ConnError::Stalled { .. } => (e.to_string(), super::row::LOST_FIX.into()),
        ConnError::Protocol { .. } => (e.to_string(), "check that it is a Redis server, and whether it needs rediss:// (TLS)".into()),
    };
    Check::fail(name, detail, fix).caused_by_conn(e)
}

/// A cluster: its masters, slot coverage, failing nodes, and a connection to every master.
async fn probe_cluster(
    server: &Server,
    map: &AddrMap,
    mut conn: Connection,
    info: ServerInfo,
    out: &mut Vec<Check>,
) -> Option<Probed> {
    let side = server.endpoint.side.name();
    let name = format!("{side}: cluster");
    let connected = Addr::new(&server.endpoint.host, server.endpoint.port);
    let topology = match cluster::topology_of(&mut conn, &connected).await {
        Ok(t) => t,
        Err(e) => {
            out.push(
                Check::fail(
                    &name,
                    format!("{e:#}"),
                    "grant the ACL user +cluster|slots, or check the cluster's health (CLUSTER INFO)",
                )
                .caused_by(&e),
            );
            return None;
        }
    };
    let gaps = topology.uncovered();
    if topology.masters.is_empty() {
        out.push(Check::fail(
            &name,
            format!(
                "{} is a cluster node, but no master serves any slot",
                server.endpoint
            ),
            "create the cluster first (redis-cli --cluster create)",
        ));
        return None;
    } else if !gaps.is_empty() {
        let detail = format!(
            "no master serves slots {} ({} of {SLOTS})",
            ranges_text(&gaps),
            gaps.iter().map(|&(a, b)| u32::from(b - a) + 1).sum::<u32>()
        );
        out.push(if server.endpoint.side == Side::Target {
            Check::fail(&name, detail, "assign every slot to a master before migrating (CLUSTER ADDSLOTS, or redis-cli --cluster fix); is a master down?")
        } else {
            Check::warn(&name, format!("{detail}: keys in them cannot be read"), "assign the slots or bring their master back (CLUSTER INFO)")
        });
    } else {
        out.push(Check::ok(
            &name,
            format!(
                "all {SLOTS} slots served by {} masters",
                topology.masters.len()
            ),
        ));
    }
    failing_nodes(&mut conn, side, out).await;
    let cl = Cluster::new(server.clone(), map.clone());
    let (nodes, keyspace) = connect_masters(&cl, &topology, map, out).await;
    Some(Probed {
        side: SideInfo {
            info,
            layout: Layout::Cluster {
                cluster: cl,
                topology,
            },
            keyspace,
        },
        nodes,
    })
}

/// A connection and the INFO of every master; a row for each that cannot be reached.
async fn connect_masters(
    cl: &Cluster,
    topology: &Topology,
    map: &AddrMap,
    out: &mut Vec<Check>,
) -> (Vec<Node>, BTreeMap<u32, u64>) {
    let side = cl.side();
    let mut nodes = Vec::new();
    let mut keyspace: BTreeMap<u32, u64> = BTreeMap::new();
    for m in &topology.masters {
        let node = cl.server(&m.addr);
        let row = format!("{side}: master {}", m.addr);
        let mut c = match node.connect().await {
            Ok(c) => c,
            Err(e) => {
                let mut row = conn_failure(&row, &e);
                if map.is_empty() {
                    row.fix = format!("{}; if the announced address is not reachable from here, map it with --{side}-map-addr ANNOUNCED=REACHABLE", row.fix);
                }
                out.push(row);
                continue;
            }
        };
        c.resend_reads(&node);
        match info::read(&mut c).await {
            Ok(i) => {
                for (db, n) in &i.keyspace {
                    *keyspace.entry(*db).or_insert(0) += n;
                }
                nodes.push(Node {
                    server: node,
                    conn: c,
                    info: i,
                    slots: m.slots.clone(),
                });
            }
            Err(e) => out.push(
                Check::fail(
                    row,
                    format!("{e:#}"),
                    "the ACL user needs +info on every node",
                )
                .caused_by(&e),
            ),
        }
    }
    (nodes, keyspace)
}

/// Nodes flagged `fail` or `fail?` in `CLUSTER NODES`: a failed master's slots are
/// unreachable (fail); a failed replica only lowers redundancy (warn).
async fn failing_nodes(conn: &mut Connection, side: &str, out: &mut Vec<Check>) {
    let name = format!("{side}: cluster nodes");
    let reply = conn.cmd(&[b"CLUSTER".as_slice(), b"NODES"]).await;
    let text = match &reply {
        Ok(Reply::Error(e)) => {
            out.push(Check::warn(
                &name,
                format!("CLUSTER NODES refused: {e}"),
                "grant the ACL user +cluster|nodes to have failing nodes checked",
            ));
            return;
        }
        Ok(r) => r.to_text().unwrap_or_default(),
        Err(e) => {
            out.push(Check::warn(&name, e.to_string(), "run the check again"));
            return;
        }
    };
    let (masters, replicas) = failing(&text);
    if !masters.is_empty() {
        out.push(Check::fail(
            &name,
            format!("master(s) flagged as failing: {}", masters.join(", ")),
            "bring them back or let a replica take over (CLUSTER INFO, CLUSTER NODES) before migrating",
        ));
    } else if !replicas.is_empty() {
        out.push(Check::warn(
            &name,
            format!("replica(s) flagged as failing: {}", replicas.join(", ")),
            "the copy does not need them, but the cluster has less redundancy; check them",
        ));
    } else {
        let n = text.lines().filter(|l| !l.trim().is_empty()).count();
        out.push(Check::ok(&name, format!("{n} nodes, none failing")));
    }
}

/// (failing masters, failing replicas) in `CLUSTER NODES` text, as `host:port`.
fn failing(text: &str) -> (Vec<String>, Vec<String>) {
    let mut masters = Vec::new();
    let mut replicas = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if flags.iter().any(|f| *f == "fail" || *f == "fail?") {
            let addr = addr.split('@').next().unwrap_or(addr).to_string();
            if flags.contains(&"master") {
                masters.push(addr);
            } else {
                replicas.push(addr);
            }
        }
    }
    (masters, replicas)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_failing_nodes() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001 master,fail - 0 0 2 connected 5461-10922\n\
                    c3 127.0.0.1:7002@17002 slave,fail? a1 0 0 1 connected\n\
                    d4 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383\n";
        let (masters, replicas) = super::failing(text);
        assert_eq!(masters, vec!["127.0.0.1:7001".to_string()]);
        assert_eq!(replicas, vec!["127.0.0.1:7002".to_string()]);
    }
}
