//! Redis Cluster topology: which masters exist, which slots each serves, and how to reach them.
//!
//! The user names a cluster by any one node's URL. ferry asks that node for `CLUSTER SLOTS` and
//! connects to every master it lists with the same credentials and TLS settings. `CLUSTER SLOTS`
//! rather than `CLUSTER NODES`, because its addresses are the ones the cluster also puts in
//! `MOVED`/`ASK` redirections (with Redis 7's `cluster-preferred-endpoint-type` they may be host
//! names), so a redirect lands on a connection ferry already holds. Every version ferry meets
//! (3.2.6 and later) includes node ids in it; for older ones the address stands in for the id.
//!
//! Addresses a cluster announces are not always reachable from where ferry runs (NAT, a tunnel, a
//! container network): `--source-map-addr` / `--target-map-addr ANNOUNCED=REACHABLE` rewrite them.
//! TLS certificates are still checked against a name the cluster or the user vouches for (see
//! [`Cluster::server`]), never against the rewritten address alone.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use anyhow::Context;

use super::{Connection, ErrorKind, Reply, Server};

/// Number of hash slots in every Redis Cluster.
pub const SLOTS: u16 = 16384;

/// A node address as `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Addr {
    /// A new address.
    pub fn new(host: impl Into<String>, port: u16) -> Addr {
        Addr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `[v6]:port` or `v6:port` (the last colon separates the port, as in
    /// `MOVED` replies).
    pub fn parse(s: &str) -> Option<Addr> {
        let (host, port) = s.trim().rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| Addr::new(host, port))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `--*-map-addr ANNOUNCED=REACHABLE`: where to really connect for an announced address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrMap(BTreeMap<Addr, Addr>);

impl AddrMap {
    /// Parses the flag values (`flag` names the flag in errors).
    pub fn parse(items: &[String], flag: &str) -> anyhow::Result<AddrMap> {
        let mut map = BTreeMap::new();
        for item in items {
            let parsed = item
                .split_once('=')
                .and_then(|(a, r)| Some((Addr::parse(a)?, Addr::parse(r)?)));
            let Some((announced, reachable)) = parsed else {
                anyhow::bail!(
                    "{flag} {item:?}: expected ANNOUNCED_HOST:PORT=REACHABLE_HOST:PORT, e.g. 10.0.1.5:6379=localhost:16379"
                );
            };
            if map.insert(announced.clone(), reachable).is_some() {
                anyhow::bail!("{flag} maps {announced} twice");
            }
        }
        Ok(AddrMap(map))
    }

    /// Where to connect for `announced`.
    pub fn reachable<'a>(&'a self, announced: &'a Addr) -> &'a Addr {
        self.0.get(announced).unwrap_or(announced)
    }

    /// True when no address is mapped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One master and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Node id (40 hex characters), or `addr:<host:port>` when the server does not report ids.
    pub id: String,
    /// Announced address.
    pub addr: Addr,
    /// Slot ranges, inclusive, sorted and merged.
    pub slots: Vec<(u16, u16)>,
}

impl Master {
    /// The ranges as `0-5460,10923`.
    pub fn slots_text(&self) -> String {
        ranges_text(&self.slots)
    }

    /// The id shortened for messages (Redis tools show the first 8 characters too).
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The first 8 characters of a node id.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `0-5460,10923-16383` (a single slot as `10923`).
pub fn ranges_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Sorts and merges adjacent or overlapping ranges.
pub fn merge_ranges(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The masters of a cluster, as one node sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Masters that serve at least one slot, sorted by their first slot.
    pub masters: Vec<Master>,
}

impl Topology {
    /// Slot ranges no master serves.
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let served = merge_ranges(
            self.masters
                .iter()
                .flat_map(|m| m.slots.iter().copied())
                .collect(),
        );
        let mut gaps = Vec::new();
        let mut next = 0u16;
        for (a, b) in served {
            if a > next {
                gaps.push((next, a - 1));
            }
            next = b.saturating_add(1);
        }
        if next < SLOTS {
            gaps.push((next, SLOTS - 1));
        }
        gaps
    }

    /// Parses a `CLUSTER SLOTS` reply. `connected` replaces an empty announced host (a node
    /// that does not know its own IP reports "").
    pub fn from_slots_reply(reply: &Reply, connected: &Addr) -> anyhow::Result<Topology> {
        let Reply::Array(Some(ranges)) = reply else {
            anyhow::bail!("unexpected CLUSTER SLOTS reply {reply:?}");
        };
        let mut masters: BTreeMap<String, Master> = BTreeMap::new();
        for range in ranges {
            let Reply::Array(Some(parts)) = range else {
                anyhow::bail!("unexpected CLUSTER SLOTS entry {range:?}");
            };
            let slot = |i: usize| -> anyhow::Result<u16> {
                let n = parts
                    .get(i)
                    .and_then(Reply::as_int)
                    .context("CLUSTER SLOTS entry without slot numbers")?;
                u16::try_from(n)
                    .ok()
                    .filter(|&s| s < SLOTS)
                    .with_context(|| format!("CLUSTER SLOTS names slot {n}, beyond 16383"))
            };
            let (start, end) = (slot(0)?, slot(1)?);
            let Some(Reply::Array(Some(node))) = parts.get(2) else {
                anyhow::bail!("CLUSTER SLOTS entry {start}-{end} has no master");
            };
            let host = node.first().and_then(Reply::to_text).unwrap_or_default();
            let host = if host.is_empty() || host == "?" {
                connected.host.clone()
            } else {
                host
            };
            let port = node
                .get(1)
                .and_then(Reply::as_int)
                .and_then(|p| u16::try_from(p).ok())
                .with_context(|| format!("CLUSTER SLOTS entry {start}-{end} has no port"))?;
            let addr = Addr::new(host, port);
            let id = node
                .get(2)
                .and_then(Reply::to_text)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("addr:{addr}"));
            masters
                .entry(id.clone())
                .or_insert_with(|| Master {
                    id,
                    addr,
                    slots: Vec::new(),
                })
                .slots
                .push((start.min(end), start.max(end)));
        }
        let mut masters: Vec<Master> = masters
            .into_values()
            .map(|mut m| {
                m.slots = merge_ranges(std::mem::take(&mut m.slots));
                m
            })
            .collect();
        masters.sort_by_key(|m| m.slots.first().copied());
        Ok(Topology { masters })
    }
}

/// A cluster as ferry reaches it: the node the user named, and the address rewrites.
#[derive(Clone)]
pub struct Cluster {
    seed: Server,
    map: AddrMap,
}

impl Cluster {
    /// A cluster reached through `seed` (any node), with announced addresses rewritten by `map`.
    pub fn new(seed: Server, map: AddrMap) -> Cluster {
        Cluster { seed, map }
    }

    /// The node the user named.
    pub fn seed(&self) -> &Server {
        &self.seed
    }

    /// `source` or `target`.
    pub fn side(&self) -> &'static str {
        self.seed.endpoint.side.name()
    }

    /// Settings for the node announced at `addr`: the user's credentials and TLS settings, at the
    /// reachable address.
    ///
    /// The TLS name checked is, in order: `--*-sni` if given; the announced host when it is a
    /// host name; otherwise (an announced IP) the host name the user gave in the URL, if it is one;
    /// else the IP. So certificates issued for DNS names (as managed services do) are checked
    /// against a name, even when nodes announce IPs or an address is rewritten.
    pub fn server(&self, addr: &Addr) -> Server {
        let reach = self.map.reachable(addr);
        let mut server = self.seed.at(&reach.host, reach.port);
        if let Some(tls) = &mut server.tls {
            if tls.sni.is_none() {
                let seed_host = &self.seed.endpoint.host;
                let name = if !is_ip(&addr.host) {
                    addr.host.clone()
                } else if !is_ip(seed_host) {
                    seed_host.clone()
                } else {
                    addr.host.clone()
                };
                if name != reach.host {
                    tls.sni = Some(name);
                }
            }
        }
        server
    }

    /// Asks the seed node, then each of `known` (addresses from an earlier view), for the
    /// topology; the first node that answers wins.
    pub async fn discover(&self, known: &[Addr]) -> anyhow::Result<Topology> {
        let mut tried: Vec<String> = Vec::new();
        let mut last_err: Option<anyhow::Error> = None;
        let mut candidates: Vec<Option<&Addr>> = vec![None];
        candidates.extend(known.iter().map(Some));
        for cand in candidates {
            let server = match cand {
                None => self.seed.clone(),
                Some(a) => self.server(a),
            };
            let shown = server.endpoint.to_string();
            if tried.contains(&shown) {
                continue;
            }
            tried.push(shown);
            let result = async {
                let mut conn = server.connect().await?;
                let connected = Addr::new(&server.endpoint.host, server.endpoint.port);
                topology_of(&mut conn, &connected).await
            }
            .await;
            match result {
                Ok(t) if !t.masters.is_empty() => return Ok(t),
                Ok(_) => {
                    last_err = Some(anyhow::anyhow!(
                        "the {} {} reports no master serving slots (is the cluster created?)",
                        self.side(),
                        server.endpoint
                    ))
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no node to ask"))
            .context(format!(
                "cannot read the {} cluster's topology (asked {})",
                self.side(),
                tried.join(", ")
            )))
    }
}

/// Reads `CLUSTER SLOTS` on an open connection.
pub async fn topology_of(conn: &mut Connection, connected: &Addr) -> anyhow::Result<Topology> {
    let reply = conn.cmd(&[b"CLUSTER".as_slice(), b"SLOTS"]).await?;
    if let Some(err) = reply.error() {
        let hint = if matches!(ErrorKind::of(err), ErrorKind::NoPerm(_)) {
            " (the ACL user needs +cluster|slots)"
        } else {
            ""
        };
        anyhow::bail!(
            "the {} {} refused CLUSTER SLOTS: {err}{hint}",
            conn.side(),
            conn.endpoint()
        );
    }
    Topology::from_slots_reply(&reply, connected)
        .with_context(|| format!("CLUSTER SLOTS of the {} {}", conn.side(), conn.endpoint()))
}

/// What a node says about itself in `CLUSTER NODES` (its `myself` line, present in every
/// version; `CLUSTER MYID` is missing from some old builds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Myself {
    /// Node id.
    pub id: String,
    /// Flagged `master`.
    pub master: bool,
    /// A slot of this node is being migrated away or imported (`[slot->-id]` / `[slot-<-id]`).
    pub migrating: bool,
}

/// Asks the node behind `conn` who it is.
pub async fn whoami(conn: &mut Connection) -> anyhow::Result<Myself> {
    let reply = conn.cmd(&[b"CLUSTER".as_slice(), b"NODES"]).await?;
    if let Some(err) = reply.error() {
        anyhow::bail!(
            "the {} {} refused CLUSTER NODES: {err}",
            conn.side(),
            conn.endpoint()
        );
    }
    let text = reply.to_text().unwrap_or_default();
    parse_myself(&text).with_context(|| {
        format!(
            "the {} {} sent CLUSTER NODES without a `myself` line",
            conn.side(),
            conn.endpoint()
        )
    })
}

/// The `myself` line of `CLUSTER NODES` text.
pub fn parse_myself(text: &str) -> Option<Myself> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags: Vec<&str> = fields.get(2)?.split(',').collect();
        flags.contains(&"myself").then(|| Myself {
            id: fields[0].to_string(),
            master: flags.contains(&"master"),
            migrating: fields.iter().skip(8).any(|f| f.starts_with('[')),
        })
    })
}

fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    fn entry(a: i64, b: i64, host: &str, port: i64, id: Option<&str>) -> Reply {
        let mut node = vec![bulk(host), Reply::Int(port)];
        if let Some(id) = id {
            node.push(bulk(id));
        }
        Reply::Array(Some(vec![
            Reply::Int(a),
            Reply::Int(b),
            Reply::Array(Some(node)),
        ]))
    }

    #[test]
    fn parses_cluster_slots_and_merges_ranges() {
        let reply = Reply::Array(Some(vec![
            entry(5461, 10922, "10.0.0.2", 7001, Some("bbbbbbbbbb")),
            entry(0, 5460, "", 7000, Some("aaaaaaaaaa")),
            entry(10923, 16000, "10.0.0.3", 7002, None),
            entry(16001, 16383, "10.0.0.3", 7002, None),
        ]));
        let t = Topology::from_slots_reply(&reply, &Addr::new("seed.example", 7000)).unwrap();
        assert_eq!(t.masters.len(), 3);
        assert_eq!(t.masters[0].addr, Addr::new("seed.example", 7000));
        assert_eq!(t.masters[0].short_id(), "aaaaaaaa");
        assert_eq!(t.masters[2].id, "addr:10.0.0.3:7002");
        assert_eq!(t.masters[2].slots, vec![(10923, 16383)]);
        assert!(t.uncovered().is_empty());
    }

    #[test]
    fn finds_uncovered_slots() {
        let t = Topology {
            masters: vec![Master {
                id: "a".into(),
                addr: Addr::new("h", 1),
                slots: vec![(1, 100), (200, 300)],
            }],
        };
        assert_eq!(
            ranges_text(&t.uncovered()),
            "0,101-199,301-16383".to_string()
        );
    }

    #[test]
    fn parses_addresses_and_maps() {
        assert_eq!(Addr::parse("::1:6379"), Some(Addr::new("::1", 6379)));
        assert_eq!(Addr::parse("[::1]:6379"), Some(Addr::new("::1", 6379)));
        assert_eq!(Addr::parse("h:x"), None);
        assert_eq!(Addr::new("::1", 1).to_string(), "[::1]:1");
        let m = AddrMap::parse(&["10.0.0.1:6379=localhost:16379".into()], "--x").unwrap();
        assert_eq!(
            m.reachable(&Addr::new("10.0.0.1", 6379)),
            &Addr::new("localhost", 16379)
        );
        assert!(AddrMap::parse(&["nope".into()], "--x").is_err());
    }

    #[test]
    fn reads_myself_line() {
        let text = "e1 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922\n\
                    f2 127.0.0.1:7000 myself,master - 0 0 1 connected 0-5460\n";
        let me = parse_myself(text).unwrap();
        assert_eq!(
            (me.id.as_str(), me.master, me.migrating),
            ("f2", true, false)
        );
        let text = "f2 :7000@17000 myself,slave e1 0 0 1 connected\n";
        assert!(!parse_myself(text).unwrap().master);
        let text = "f2 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [93->-e1]\n";
        assert!(parse_myself(text).unwrap().migrating);
    }
}
