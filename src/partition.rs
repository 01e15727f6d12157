//! `--partition I/N`: one job split into N disjoint shares, one per worker process, whose union
//! is the whole job — with no coordinator: every worker computes the same split on its own.
//!
//! The split depends only on what every worker sees alike — the source's cluster topology, the
//! list of DBs — never on key counts, which change while workers start at slightly different
//! times:
//!
//! - **Cluster source, at least N masters:** masters sorted by their first slot, master `j` of
//!   `M` goes to share `j·N/M` (contiguous groups, sizes differing by at most one). Each worker
//!   SCANs only its own masters; nothing is filtered per key. Hash slots spread keys evenly, so
//!   equal master counts mean roughly equal key counts.
//! - **Cluster source, fewer masters than N:** the 16384 slots are cut into N equal ranges
//!   (share `i` holds slots `i·16384/N … (i+1)·16384/N − 1`). A worker SCANs every master that
//!   serves one of its slots and reads values (PTTL + DUMP) only of keys in its slots: the SCAN is
//!   repeated by the workers sharing a master, the values are read once.
//! - **Standalone source, at least N DBs** (the `--db` list, or the source's non-empty DBs): DB
//!   number `k`-th in ascending order goes to share `k mod N`. Give `--db` explicitly when a DB may
//!   become empty or non-empty while the workers start, so that every worker sees the same list.
//! - **Standalone source, fewer DBs:** by key hash, `xxh3(key) mod N`. Every worker SCANs the
//!   whole keyspace (N times the SCAN traffic of one run) but reads values and writes only its
//!   share's keys, which is where the time goes.
//!
//! A reshard of the source between the workers' starts would give them different splits; the
//! post-copy topology check of each worker (see `source/plan.rs`) reports it and the whole
//! `verify` that ends a split job would find any key missed. Verification with `--partition`
//! filters both sides by the same share, so extra target keys of the share are found too. On a
//! cluster (either side) it lists only the masters serving a slot of the share and reads values
//! of its share's keys only, so the N verifications list each side once between them (the
//! report's `totals.listed`); a standalone side split by key hash is listed whole by every
//! worker, like the copy.

use std::fmt;
use std::sync::Arc;

use crate::endpoint::cluster::{Topology, SLOTS};
use crate::endpoint::layout::Layout;
use crate::endpoint::slot::key_slot;

/// `--partition I/N`: this worker's share index and the number of shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    /// This share, `0..count`.
    pub index: u32,
    /// How many shares the job is split into (at least 1).
    pub count: u32,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `I/N` (clap value parser).
pub fn parse(text: &str) -> Result<Partition, String> {
    let usage = "expected I/N with N ≥ 1 and 0 ≤ I < N, e.g. 0/4 for the first of four workers (in a Kubernetes Indexed Job: $(JOB_COMPLETION_INDEX)/N)";
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: {usage}"))?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {i:?} is not a share number; {usage}"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {n:?} is not a number of shares; {usage}"))?;
    if count == 0 {
        return Err(format!(
            "{text:?}: the number of shares must be at least 1; {usage}"
        ));
    }
    if index >= count {
        return Err(format!(
            "{text:?}: share {index} does not exist, shares are numbered 0 to {}; {usage}",
            count - 1
        ));
    }
    Ok(Partition { index, count })
}

/// Which keys belong to a share, key by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyShare {
    /// Keys whose hash slot is set in this bitmap (one bit per slot).
    Slots(Vec<u64>),
    /// Keys with `xxh3(key) mod count == index`.
    Hash(Partition),
}

impl KeyShare {
    /// The slots `lo..=hi`.
    fn slot_ranges(ranges: &[(u16, u16)]) -> KeyShare {
        let mut bits = vec![0u64; usize::from(SLOTS) / 64];
        for &(lo, hi) in ranges {
            for s in lo..=hi {
                if let Some(w) = bits.get_mut(usize::from(s) / 64) {
                    *w |= 1 << (s % 64);
                }
            }
        }
        KeyShare::Slots(bits)
    }

    /// True when `slot` is in a slot share (always for a hash share).
    pub fn has_slot(&self, slot: u16) -> bool {
        match self {
            KeyShare::Slots(bits) => bits
                .get(usize::from(slot) / 64)
                .is_some_and(|w| w & (1 << (slot % 64)) != 0),
            KeyShare::Hash(_) => true,
        }
    }

    /// True when `key` belongs to the share.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyShare::Slots(_) => self.has_slot(key_slot(key)),
            KeyShare::Hash(p) => {
                xxhash_rust::xxh3::xxh3_64(key) % u64::from(p.count) == u64::from(p.index)
            }
        }
    }
}

/// What one worker does of a job: its DBs, its masters, and the per-key filters.
#[derive(Debug, Clone)]
pub struct Share {
    /// The partition it was computed for.
    pub partition: Partition,
    /// How the job was split, for the log.
    pub how: String,
    /// The source DBs of this share (a subset of the job's, kept in order).
    pub dbs: Vec<u32>,
    /// Cluster source: the masters this worker SCANs (a subset of the topology).
    pub topology: Option<Topology>,
    /// Keys the readers keep (`None`: every key of the share's streams is in the share).
    pub read_filter: Option<Arc<KeyShare>>,
    /// Keys of the share, on any server (`None`: every key of the share's DBs); what a
    /// verification and the conflict check look at.
    pub keys: Option<Arc<KeyShare>>,
}

impl Share {
    /// The share of partition `p` of a job over `dbs` of a source laid out as `layout`.
    pub fn resolve(p: Partition, layout: &Layout, dbs: &[u32]) -> Share {
        match layout {
            Layout::Cluster { topology, .. } => cluster(p, topology, dbs),
            Layout::Standalone(_) => standalone(p, dbs),
        }
    }

    /// This share's part of `keys` (the keys of its DBs on the whole source), for progress.
    pub fn estimate(&self, keys: u64, full: &Layout) -> u64 {
        match (&self.topology, full, &self.read_filter) {
            (Some(mine), Layout::Cluster { topology, .. }, None) => {
                keys * mine.masters.len() as u64 / topology.masters.len().max(1) as u64
            }
            (_, _, Some(_)) => keys / u64::from(self.partition.count),
            _ => keys,
        }
    }

    /// The source as this worker reads it: a cluster with only the share's masters.
    pub fn layout(&self, full: &Layout) -> Layout {
        match (full, &self.topology) {
            (Layout::Cluster { cluster, .. }, Some(t)) => Layout::Cluster {
                cluster: cluster.clone(),
                topology: t.clone(),
            },
            _ => full.clone(),
        }
    }
}

fn cluster(p: Partition, topology: &Topology, dbs: &[u32]) -> Share {
    let m = topology.masters.len();
    let n = p.count as usize;
    let mut masters = topology.masters.clone();
    masters.sort_by_key(|m| m.slots.first().copied());
    if m >= n {
        let kept: Vec<_> = masters
            .into_iter()
            .enumerate()
            .filter(|(j, _)| j * n / m == p.index as usize)
            .map(|(_, m)| m)
            .collect();
        let slots: Vec<(u16, u16)> = kept.iter().flat_map(|m| m.slots.iter().copied()).collect();
        return Share {
            partition: p,
            how: format!(
                "cluster source with {m} masters over {n} shares: share {p} SCANs masters {}",
                kept.iter()
                    .map(|m| m.short_id().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            dbs: dbs.to_vec(),
            topology: Some(Topology { masters: kept }),
            read_filter: None,
            keys: Some(Arc::new(KeyShare::slot_ranges(&slots))),
        };
    }
    let lo = (p.index as usize * usize::from(SLOTS) / n) as u16;
    let hi = ((p.index as usize + 1) * usize::from(SLOTS) / n - 1) as u16;
    let keys = Arc::new(KeyShare::slot_ranges(&[(lo, hi)]));
    let kept: Vec<_> = masters
        .into_iter()
        .filter(|m| m.slots.iter().any(|&(a, b)| a <= hi && lo <= b))
        .collect();
    Share {
        partition: p,
        how: format!(
            "cluster source with {m} masters over {n} shares: share {p} holds slots {lo}-{hi}; \
             it SCANs {} master(s) and reads the values of its slots only",
            kept.len()
        ),
        dbs: dbs.to_vec(),
        topology: Some(Topology { masters: kept }),
        read_filter: Some(keys.clone()),
        keys: Some(keys),
    }
}

fn standalone(p: Partition, dbs: &[u32]) -> Share {
    let n = p.count as usize;
    if dbs.len() >= n {
        let mine: Vec<u32> = dbs
            .iter()
            .enumerate()
            .filter(|(k, _)| k % n == p.index as usize)
            .map(|(_, &db)| db)
            .collect();
        return Share {
            partition: p,
            how: format!(
                "standalone source with {} DBs over {n} shares: share {p} copies DBs {mine:?}",
                dbs.len()
            ),
            dbs: mine,
            topology: None,
            read_filter: None,
            keys: None,
        };
    }
    let keys = Arc::new(KeyShare::Hash(p));
    Share {
        partition: p,
        how: format!(
            "standalone source with {} DB(s), fewer than {n} shares: split by key hash; share {p} \
             SCANs every key but reads and writes only its own",
            dbs.len()
        ),
        dbs: dbs.to_vec(),
        topology: None,
        read_filter: Some(keys.clone()),
        keys: Some(keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::cluster::{Addr, Master};

    fn master(id: &str, lo: u16, hi: u16) -> Master {
        Master {
            id: id.into(),
            addr: Addr::new("127.0.0.1", 7000 + lo),
            slots: vec![(lo, hi)],
        }
    }

    fn topo(m: usize) -> Topology {
        let masters = (0..m)
            .rev()
            .map(|j| {
                let lo = (j * usize::from(SLOTS) / m) as u16;
                let hi = ((j + 1) * usize::from(SLOTS) / m - 1) as u16;
                master(&format!("m{j}"), lo, hi)
            })
            .collect();
        Topology { masters }
    }

    #[test]
    fn parses_and_explains() {
        assert_eq!(parse("2/3"), Ok(Partition { index: 2, count: 3 }));
        assert!(parse("3/3").unwrap_err().contains("0 to 2"));
        assert!(parse("0/0").unwrap_err().contains("at least 1"));
        assert!(parse("x/3").unwrap_err().contains("not a share number"));
        assert!(parse("3").unwrap_err().contains("I/N"));
    }

    /// Every slot and every key lands in exactly one share, for any master and share count.
    #[test]
    fn cluster_shares_are_disjoint_and_whole() {
        for m in 1..8 {
            for n in 1..8 {
                let t = topo(m);
                let shares: Vec<Share> = (0..n)
                    .map(|i| cluster(Partition { index: i, count: n }, &t, &[0]))
                    .collect();
                for slot in 0..SLOTS {
                    let owners: Vec<&Share> = shares
                        .iter()
                        .filter(|s| s.keys.as_ref().is_some_and(|k| k.has_slot(slot)))
                        .collect();
                    assert_eq!(owners.len(), 1, "slot {slot}, {m} masters, {n} shares");
                    // The owner SCANs the master serving the slot, and keeps the slot's keys.
                    let s = owners[0];
                    let topo = s.topology.as_ref().unwrap();
                    assert!(topo
                        .masters
                        .iter()
                        .any(|m| m.slots[0].0 <= slot && slot <= m.slots[0].1));
                    assert!(s.read_filter.as_ref().is_none_or(|f| f.has_slot(slot)));
                }
            }
        }
    }

    #[test]
    fn standalone_by_db_then_by_hash() {
        let by_db: Vec<Vec<u32>> = (0..2)
            .map(|i| standalone(Partition { index: i, count: 2 }, &[0, 3, 5]).dbs)
            .collect();
        assert_eq!(by_db, vec![vec![0, 5], vec![3]]);
        let shares: Vec<Share> = (0..3)
            .map(|i| standalone(Partition { index: i, count: 3 }, &[0]))
            .collect();
        for k in 0..1000u32 {
            let key = format!("key:{k}");
            let n = shares
                .iter()
                .filter(|s| s.read_filter.as_ref().unwrap().contains(key.as_bytes()))
                .count();
            assert_eq!(n, 1);
        }
    }
}
