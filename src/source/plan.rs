//! Which streams a live source is read as, and where each one resumes.
//!
//! A standalone source is one stream per DB (`host:port/dbN`). A cluster source is one stream per
//! master, named by the master's node id *and* its slot ranges:
//! `cluster:<node id>:<ranges>/db0`. Both parts matter on resume, because a SCAN cursor is only
//! meaningful on the node that issued it, over the keyspace it had:
//!
//! - same id, same ranges as a checkpointed stream → continue from its cursor;
//! - otherwise (a failover promoted a replica, or slots were resharded) → the master's slots are
//!   scanned again from cursor 0 on the node that serves them now, and ferry says so. Writes are
//!   idempotent, so rescanning costs time, never correctness;
//! - except when every slot of the master was already completed by earlier streams: then there
//!   is nothing left to copy from it.
//!
//! SCAN only promises to return the keys a node holds for the whole scan. If the *source* is
//! resharded while ferry reads it, a key can move from a node not yet scanned to one already
//! scanned and be missed; and a reader whose master is demoted while its connection stays open
//! would continue a cursor on another node's keyspace. So after the copy the source topology is
//! read again ([`changed_during_run`]): masters whose slot set changed, and masters scanned in
//! this run that are no longer master of their slots, lose their checkpoint entries, the run
//! ends with an error, and the rerun scans those slots again on their current masters.

use std::collections::BTreeMap;

use crate::endpoint::cluster::{merge_ranges, ranges_text, short_id, Cluster, Master, Topology};
use crate::endpoint::Server;

use super::Position;

/// Inclusive slot ranges.
type Ranges = Vec<(u16, u16)>;

/// One stream to read (or already finished).
pub struct StreamPlan {
    /// Checkpoint key.
    pub name: String,
    /// The server to SCAN.
    pub server: Server,
    /// The DB on it.
    pub db: u32,
    /// Where to start: `None` from the beginning, or a checkpointed position.
    pub resume: Option<Position>,
    /// For a cluster master: its node id (checked on connect).
    pub node_id: Option<String>,
}

impl StreamPlan {
    /// True when the stream has nothing left to read.
    pub fn is_done(&self) -> bool {
        self.resume == Some(Position::Done)
    }
}

/// Streams of a standalone source: one per DB.
pub fn standalone(
    server: &Server,
    dbs: &[u32],
    checkpoint: &BTreeMap<String, Position>,
) -> Vec<StreamPlan> {
    dbs.iter()
        .map(|&db| {
            let name = format!("{}:{}/db{db}", server.endpoint.host, server.endpoint.port);
            StreamPlan {
                resume: checkpoint.get(&name).copied(),
                name,
                server: server.clone(),
                db,
                node_id: None,
            }
        })
        .collect()
}

/// The checkpoint name of a cluster master's stream.
pub fn cluster_stream_name(m: &Master) -> String {
    format!("cluster:{}:{}/db0", m.id, m.slots_text())
}

/// Node id and slot ranges of a cluster stream name.
fn parse_cluster_name(name: &str) -> Option<(&str, Ranges)> {
    let rest = name.strip_prefix("cluster:")?.strip_suffix("/db0")?;
    let (id, ranges) = rest.rsplit_once(':')?;
    let ranges = ranges
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let s = r.parse().ok()?;
                Some((s, s))
            }
        })
        .collect::<Option<Ranges>>()?;
    Some((id, ranges))
}

fn covers(outer: &[(u16, u16)], inner: &[(u16, u16)]) -> bool {
    inner
        .iter()
        .all(|&(a, b)| outer.iter().any(|&(x, y)| x <= a && b <= y))
}

fn overlaps(a: &[(u16, u16)], b: &[(u16, u16)]) -> bool {
    a.iter()
        .any(|&(x, y)| b.iter().any(|&(p, q)| x <= q && p <= y))
}

/// Streams of a cluster source: one per master, DB 0. Returns the plans and the notes to show
/// the user (what changed since the checkpoint and what is rescanned).
pub fn cluster(
    cluster: &Cluster,
    topology: &Topology,
    checkpoint: &BTreeMap<String, Position>,
) -> (Vec<StreamPlan>, Vec<String>) {
    let previous: Vec<(&str, Ranges, Position)> = checkpoint
        .iter()
        .filter_map(|(name, pos)| {
            let (id, ranges) = parse_cluster_name(name)?;
            Some((id, ranges, *pos))
        })
        .collect();
    let done_slots = merge_ranges(
        previous
            .iter()
            .filter(|(_, _, p)| *p == Position::Done)
            .flat_map(|(_, r, _)| r.iter().copied())
            .collect(),
    );
    let mut notes = Vec::new();
    let plans = topology
        .masters
        .iter()
        .map(|m| {
            let name = cluster_stream_name(m);
            let server = cluster.server(&m.addr);
            let mut resume = checkpoint.get(&name).copied();
            if resume.is_none() && !previous.is_empty() {
                let before: Vec<String> = previous
                    .iter()
                    .filter(|(_, r, _)| overlaps(r, &m.slots))
                    .map(|(id, r, p)| {
                        let state = match p {
                            Position::Done => "done".to_string(),
                            Position::Cursor(c) => format!("at cursor {c}"),
                            Position::Offset(o) => format!("at offset {o}"),
                        };
                        format!("master {} slots {} {state}", short_id(id), ranges_text(r))
                    })
                    .collect();
                if covers(&done_slots, &m.slots) {
                    resume = Some(Position::Done);
                    notes.push(format!(
                        "slots {} are now served by master {} ({}); they were fully copied before ({}), nothing to rescan",
                        m.slots_text(),
                        m.short_id(),
                        server.endpoint,
                        before.join("; ")
                    ));
                } else {
                    let why = if before.is_empty() {
                        "the checkpoint holds no valid position for them (their slots moved during an earlier run)"
                            .to_string()
                    } else {
                        format!(
                            "the source cluster changed since the checkpoint, which had {}, and a SCAN cursor is \
                             only valid on the node that issued it",
                            before.join("; ")
                        )
                    };
                    notes.push(format!(
                        "slots {} (master {}, {}) are scanned again from the start: {why}. Keys already copied \
                         are rewritten with the same values",
                        m.slots_text(),
                        m.short_id(),
                        server.endpoint,
                    ));
                }
            }
            StreamPlan {
                name,
                server,
                db: 0,
                resume,
                node_id: Some(m.id.clone()),
            }
        })
        .collect();
    (plans, notes)
}

/// Masters of `before` whose keys may have been missed: their exact slot set is served by no
/// master of `after` (slots moved), or — for masters whose id is in `scanned` (read during this
/// run) — it is now served by another node (a failover).
pub fn changed_during_run<'a>(
    before: &'a Topology,
    after: &Topology,
    scanned: &[String],
) -> Vec<&'a Master> {
    before
        .masters
        .iter()
        .filter(|m| {
            let same_slots = after.masters.iter().find(|n| n.slots == m.slots);
            match same_slots {
                None => true,
                Some(n) => n.id != m.id && scanned.contains(&m.id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::cluster::{Addr, AddrMap};
    use crate::endpoint::{url, Side};

    fn master(id: &str, port: u16, slots: Vec<(u16, u16)>) -> Master {
        Master {
            id: id.into(),
            addr: Addr::new("127.0.0.1", port),
            slots,
        }
    }

    fn seed() -> Cluster {
        let ep = url::parse("redis://127.0.0.1:7000", Side::Source, None).unwrap();
        Cluster::new(
            Server {
                endpoint: ep,
                tls: None,
                answer_timeout: std::time::Duration::from_secs(1),
            },
            AddrMap::default(),
        )
    }

    #[test]
    fn names_round_trip() {
        let m = master("abc", 1, vec![(0, 5460), (10923, 10923)]);
        let name = cluster_stream_name(&m);
        assert_eq!(name, "cluster:abc:0-5460,10923/db0");
        assert_eq!(
            parse_cluster_name(&name),
            Some(("abc", vec![(0, 5460), (10923, 10923)]))
        );
    }

    #[test]
    fn resumes_same_master_and_rescans_after_failover() {
        let old = Topology {
            masters: vec![
                master("aaa", 7000, vec![(0, 8191)]),
                master("bbb", 7001, vec![(8192, 16383)]),
            ],
        };
        let mut cp = BTreeMap::new();
        cp.insert(cluster_stream_name(&old.masters[0]), Position::Cursor(77));
        cp.insert(cluster_stream_name(&old.masters[1]), Position::Cursor(5));
        // Unchanged: both resume.
        let (plans, notes) = cluster(&seed(), &old, &cp);
        assert_eq!(plans[0].resume, Some(Position::Cursor(77)));
        assert_eq!(plans[1].resume, Some(Position::Cursor(5)));
        assert!(notes.is_empty());
        // bbb failed over to ccc: its slots restart from 0, with a note.
        let new = Topology {
            masters: vec![
                master("aaa", 7000, vec![(0, 8191)]),
                master("ccc", 7002, vec![(8192, 16383)]),
            ],
        };
        let (plans, notes) = cluster(&seed(), &new, &cp);
        assert_eq!(plans[0].resume, Some(Position::Cursor(77)));
        assert_eq!(plans[1].resume, None);
        assert_eq!(plans[1].node_id.as_deref(), Some("ccc"));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("8192-16383") && notes[0].contains("from the start"));
    }

    #[test]
    fn changes_during_a_run_are_found() {
        let before = Topology {
            masters: vec![
                master("aaa", 7000, vec![(0, 8191)]),
                master("bbb", 7001, vec![(8192, 16383)]),
            ],
        };
        // Failover: new id, same slots.
        let failover = Topology {
            masters: vec![
                master("aaa", 7000, vec![(0, 8191)]),
                master("ccc", 7002, vec![(8192, 16383)]),
            ],
        };
        // A master that was complete before this run: its keys stayed with its slots.
        assert!(changed_during_run(&before, &failover, &["aaa".into()]).is_empty());
        // One read during this run: its cursor may have continued on another node.
        let changed = changed_during_run(&before, &failover, &["bbb".into()]);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, "bbb");
        let moved = Topology {
            masters: vec![
                master("aaa", 7000, vec![(0, 8000)]),
                master("bbb", 7001, vec![(8001, 16383)]),
            ],
        };
        assert_eq!(changed_during_run(&before, &moved, &[]).len(), 2);
    }

    #[test]
    fn completed_slots_are_not_rescanned() {
        let mut cp = BTreeMap::new();
        cp.insert(
            cluster_stream_name(&master("bbb", 7001, vec![(8192, 16383)])),
            Position::Done,
        );
        let new = Topology {
            masters: vec![master("ccc", 7002, vec![(8192, 16383)])],
        };
        let (plans, notes) = cluster(&seed(), &new, &cp);
        assert!(plans[0].is_done());
        assert!(notes[0].contains("nothing to rescan"));
        // A master that took over done and unfinished slots is rescanned.
        cp.insert(
            cluster_stream_name(&master("aaa", 7000, vec![(0, 8191)])),
            Position::Cursor(9),
        );
        let merged = Topology {
            masters: vec![master("ccc", 7002, vec![(0, 16383)])],
        };
        let (plans, _) = cluster(&seed(), &merged, &cp);
        assert_eq!(plans[0].resume, None);
    }
}
