//! Hash slots: which of a cluster's 16384 slots a key lives in, and which master serves it.
//!
//! ferry routes every write itself instead of sending it anywhere and following redirections:
//! grouping a batch by owner turns it into one pipeline per master, which is what makes a
//! cluster target as fast as a standalone one. The slot function is Redis's own
//! (`slot.rs`).

use crate::endpoint::cluster::{Addr, Topology, SLOTS};

/// No master known for a slot.
const NONE: u16 = u16::MAX;

/// For every slot, the announced address of the master serving it.
#[derive(Debug, Clone)]
pub struct SlotMap {
    /// Index into `nodes` per slot, or `NONE`.
    owner: Vec<u16>,
    nodes: Vec<Addr>,
}

impl SlotMap {
    /// The map a topology describes.
    pub fn new(topology: &Topology) -> SlotMap {
        let mut map = SlotMap {
            owner: vec![NONE; SLOTS as usize],
            nodes: Vec::new(),
        };
        for m in &topology.masters {
            for &(a, b) in &m.slots {
                for slot in a..=b.min(SLOTS - 1) {
                    map.set(slot, &m.addr);
                }
            }
        }
        map
    }

    /// The master serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&Addr> {
        let i = *self.owner.get(slot as usize)?;
        self.nodes.get(i as usize)
    }

    /// Records that `addr` serves `slot` (after a `MOVED`).
    pub fn set(&mut self, slot: u16, addr: &Addr) {
        let i = match self.nodes.iter().position(|n| n == addr) {
            Some(i) => i,
            None => {
                self.nodes.push(addr.clone());
                self.nodes.len() - 1
            }
        };
        if let Some(o) = self.owner.get_mut(slot as usize) {
            *o = i as u16;
        }
    }

    /// Every address the map has seen (masters, and nodes named by redirections).
    pub fn nodes(&self) -> &[Addr] {
        &self.nodes
    }

    /// Addresses serving at least one slot now.
    pub fn masters(&self) -> Vec<Addr> {
        let mut used = vec![false; self.nodes.len()];
        for &o in &self.owner {
            if let Some(u) = used.get_mut(o as usize) {
                *u = true;
            }
        }
        self.nodes
            .iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(a, _)| a.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::cluster::Master;

    #[test]
    fn map_follows_topology_and_moves() {
        let t = Topology {
            masters: vec![
                Master {
                    id: "a".into(),
                    addr: Addr::new("h", 1),
                    slots: vec![(0, 8191)],
                },
                Master {
                    id: "b".into(),
                    addr: Addr::new("h", 2),
                    slots: vec![(8192, 16383)],
                },
            ],
        };
        let mut m = SlotMap::new(&t);
        assert_eq!(m.owner(0), Some(&Addr::new("h", 1)));
        assert_eq!(m.owner(16383), Some(&Addr::new("h", 2)));
        m.set(5, &Addr::new("h", 3));
        assert_eq!(m.owner(5), Some(&Addr::new("h", 3)));
        assert_eq!(m.masters().len(), 3);
        assert_eq!(m.owner(16384), None);
    }
}
