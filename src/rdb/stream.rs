//! Streams (types 15, 19, 21): listpack nodes of entries plus consumer-group state.
//!
//! A stream value is: a count of nodes, each a 16-byte big-endian master ID (ms, seq) and a
//! listpack; then length and last ID; from v2 (type 19) the first ID, max deleted ID and
//! entries-added counter; then consumer groups, each with its last delivered ID, (v2+) entries
//! read, its pending-entries list (raw 16-byte IDs, delivery time ms, delivery count) and its
//! consumers (name, seen time, (v3) active time, and the IDs of the pending entries they own).
//!
//! Inside a node listpack the first entry is the *master entry* (valid count, deleted count,
//! master field names, 0) and each following entry is `flags, ms-diff, seq-diff`, then either
//! just the values (flag SAMEFIELDS: same fields as the master) or a field count and
//! field/value pairs, then the entry's element count. Entries flagged DELETED are tombstones.
//!
//! [`StreamData`] keeps everything the format stores so a stream can be re-encoded for an older
//! target without losing more than the older format cannot express; it converts into the
//! logical [`Stream`](super::value::Stream).

use super::cursor::{safe_capacity, Cursor};
use super::error::{RdbError, Result};
use super::length::{read_length, write_length};
use super::listpack::{self, Elem};
use super::string::{read_bytes, read_string, write_raw};
use super::types;
use super::value::{Stream, StreamGroup, StreamId};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;
/// Entries per listpack node when encoding (Redis' `stream-node-max-entries` default).
const NODE_MAX_ENTRIES: usize = 100;

/// One stream entry: its ID and field/value pairs.
pub type StreamEntry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);

/// A stream with all the metadata the RDB format stores.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamData {
    /// Live entries in ID order.
    pub entries: Vec<StreamEntry>,
    /// Number of entries as stored (should equal `entries.len()`).
    pub length: u64,
    /// Last generated ID.
    pub last_id: StreamId,
    /// First entry ID (v2+; derived for v1).
    pub first_id: StreamId,
    /// Highest deleted ID (v2+; 0-0 for v1).
    pub max_deleted_id: StreamId,
    /// Entries ever added (v2+; the length for v1).
    pub entries_added: u64,
    /// Consumer groups.
    pub groups: Vec<GroupData>,
}

/// One consumer group with its stored metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupData {
    /// Group name.
    pub name: Vec<u8>,
    /// Last delivered ID.
    pub last_delivered: StreamId,
    /// Entries read counter (v2+); `None` when the format did not store it.
    pub entries_read: Option<u64>,
    /// Pending entries in stored order.
    pub pending: Vec<PendingEntry>,
    /// Consumers in stored order.
    pub consumers: Vec<ConsumerData>,
}

/// One pending entry of a group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PendingEntry {
    /// Entry ID.
    pub id: StreamId,
    /// Last delivery time, Unix ms.
    pub delivery_time: i64,
    /// Delivery count.
    pub delivery_count: u64,
    /// Owning consumer (from the consumer PELs), if any consumer claims it.
    pub consumer: Option<Vec<u8>>,
}

/// One consumer of a group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumerData {
    /// Consumer name.
    pub name: Vec<u8>,
    /// Seen time, Unix ms.
    pub seen_time: i64,
    /// Active time, Unix ms (v3; the seen time before).
    pub active_time: i64,
}

impl From<StreamData> for Stream {
    fn from(d: StreamData) -> Stream {
        Stream {
            entries: d.entries,
            last_id: d.last_id,
            groups: d
                .groups
                .into_iter()
                .map(|g| StreamGroup {
                    name: g.name,
                    last_delivered: g.last_delivered,
                    pending: g
                        .pending
                        .into_iter()
                        .map(|p| (p.id, p.consumer.unwrap_or_default(), p.delivery_count))
                        .collect(),
                    consumers: g.consumers.into_iter().map(|c| c.name).collect(),
                })
                .collect(),
        }
    }
}

impl StreamData {
    /// Full stream data from a logical stream, filling what the logical form lacks with
    /// documented defaults: length and entries-added = number of entries, first ID = first
    /// entry's ID, max deleted ID = 0-0, entries-read unknown, delivery/seen/active times 0.
    pub fn from_logical(s: &Stream) -> StreamData {
        StreamData {
            entries: s.entries.clone(),
            length: s.entries.len() as u64,
            last_id: s.last_id,
            first_id: s.entries.first().map(|e| e.0).unwrap_or_default(),
            max_deleted_id: StreamId::default(),
            entries_added: s.entries.len() as u64,
            groups: s
                .groups
                .iter()
                .map(|g| GroupData {
                    name: g.name.clone(),
                    last_delivered: g.last_delivered,
                    entries_read: None,
                    pending: g
                        .pending
                        .iter()
                        .map(|(id, consumer, count)| PendingEntry {
                            id: *id,
                            delivery_time: 0,
                            delivery_count: *count,
                            consumer: (!consumer.is_empty() || g.consumers.contains(consumer))
                                .then(|| consumer.clone()),
                        })
                        .collect(),
                    consumers: g
                        .consumers
                        .iter()
                        .map(|c| ConsumerData {
                            name: c.clone(),
                            seen_time: 0,
                            active_time: 0,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

pub(crate) fn id_from_raw(raw: &[u8], at: u64, what: &'static str) -> Result<StreamId> {
    let a: [u8; 16] = raw
        .try_into()
        .map_err(|_| RdbError::corrupt(at, what, format!("{} bytes, expected 16", raw.len())))?;
    let (ms, seq) = a.split_at(8);
    Ok(StreamId {
        ms: u64::from_be_bytes(ms.try_into().unwrap_or_default()),
        seq: u64::from_be_bytes(seq.try_into().unwrap_or_default()),
    })
}

fn id_to_raw(id: StreamId) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&id.ms.to_be_bytes());
    a[8..].copy_from_slice(&id.seq.to_be_bytes());
    a
}

pub(crate) fn read_id(cur: &mut Cursor<'_>, what: &'static str) -> Result<StreamId> {
    Ok(StreamId {
        ms: read_length(cur, what)?,
        seq: read_length(cur, what)?,
    })
}

/// Iterator over a node's listpack elements with error positions.
struct Elems<'a> {
    items: std::vec::IntoIter<Elem<'a>>,
}

impl<'a> Elems<'a> {
    fn next(&mut self, what: &'static str) -> Result<Elem<'a>> {
        self.items
            .next()
            .ok_or_else(|| RdbError::corrupt(0, "stream listpack", format!("missing {what}")))
    }
    fn int(&mut self, what: &'static str) -> Result<i64> {
        let e = self.next(what)?;
        e.as_int().ok_or_else(|| {
            RdbError::corrupt(0, "stream listpack", format!("{what} is not an integer"))
        })
    }
    fn count(&mut self, what: &'static str) -> Result<usize> {
        let n = self.int(what)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.items.len())
            .ok_or_else(|| RdbError::corrupt(0, "stream listpack", format!("bad {what} {n}")))
    }
}

/// Decode the entries of one node listpack (offsets in errors are relative to the listpack).
pub(crate) fn decode_node(master: StreamId, lp: &[u8], out: &mut Vec<StreamEntry>) -> Result<()> {
    let parsed = listpack::parse(lp)?;
    let mut it = Elems {
        items: parsed.into_iter(),
    };
    let valid = it.int("master entry count")?;
    let deleted = it.int("master deleted count")?;
    let nf = it.count("master field count")?;
    let mut master_fields = Vec::with_capacity(nf);
    for _ in 0..nf {
        master_fields.push(it.next("master field")?.to_vec());
    }
    if it.int("master entry terminator")? != 0 {
        return Err(RdbError::corrupt(
            0,
            "stream listpack",
            "master entry terminator is not 0",
        ));
    }
    let (mut seen_valid, mut seen_deleted) = (0i64, 0i64);
    while it.items.len() > 0 {
        let flags = it.int("entry flags")?;
        let ms_diff = it.int("entry ms-diff")?;
        let seq_diff = it.int("entry seq-diff")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms_diff as u64),
            seq: master.seq.wrapping_add(seq_diff as u64),
        };
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            for f in &master_fields {
                fields.push((f.clone(), it.next("entry value")?.to_vec()));
            }
        } else {
            let n = it.count("entry field count")?;
            for _ in 0..n {
                let f = it.next("entry field")?.to_vec();
                let v = it.next("entry value")?.to_vec();
                fields.push((f, v));
            }
        }
        it.int("entry lp-count")?;
        if flags & FLAG_DELETED != 0 {
            seen_deleted += 1;
        } else {
            seen_valid += 1;
            out.push((id, fields));
        }
    }
    if seen_valid != valid || seen_deleted != deleted {
        return Err(RdbError::corrupt(
            0,
            "stream listpack",
            format!(
                "master entry says {valid} valid / {deleted} deleted, found {seen_valid} / {seen_deleted}"
            ),
        ));
    }
    Ok(())
}

/// Decode a stream value of type `t` (15, 19 or 21).
pub fn decode(cur: &mut Cursor<'_>, t: u8) -> Result<StreamData> {
    let v2 = t >= types::STREAM_LISTPACKS_2;
    let v3 = t >= types::STREAM_LISTPACKS_3;
    let nodes = read_length(cur, "stream node count")?;
    cur.check_count(nodes, 2, "stream node count")?;
    let mut d = StreamData::default();
    for _ in 0..nodes {
        let key_at = cur.offset();
        let key = read_string(cur, "stream node master ID")?;
        let master = id_from_raw(&key.bytes, key_at, "stream node master ID")?;
        let lp = read_string(cur, "stream node listpack")?;
        decode_node(master, &lp.bytes, &mut d.entries).map_err(|e| lp.map_inner_err(e))?;
    }
    d.length = read_length(cur, "stream length")?;
    d.last_id = read_id(cur, "stream last ID")?;
    if v2 {
        d.first_id = read_id(cur, "stream first ID")?;
        d.max_deleted_id = read_id(cur, "stream max deleted ID")?;
        d.entries_added = read_length(cur, "stream entries added")?;
    } else {
        d.first_id = d.entries.first().map(|e| e.0).unwrap_or_default();
        d.entries_added = d.length;
    }
    let ngroups = read_length(cur, "stream group count")?;
    cur.check_count(ngroups, 4, "stream group count")?;
    for _ in 0..ngroups {
        d.groups.push(decode_group(cur, v2, v3)?);
    }
    Ok(d)
}

/// One consumer group: its PEL, consumers and their pending IDs (`v2`: stream type 19+, with
/// entries-read; `v3`: type 21+, with consumer active times).
pub(crate) fn decode_group(cur: &mut Cursor<'_>, v2: bool, v3: bool) -> Result<GroupData> {
    let mut g = GroupData {
        name: read_bytes(cur, "consumer group name")?,
        last_delivered: read_id(cur, "consumer group last ID")?,
        ..GroupData::default()
    };
    if v2 {
        g.entries_read = Some(read_length(cur, "consumer group entries read")?);
    }
    let npel = read_length(cur, "group PEL size")?;
    cur.check_count(npel, 17, "group PEL size")?;
    g.pending.reserve(safe_capacity(npel, cur.remaining()));
    for _ in 0..npel {
        let at = cur.offset();
        let raw = cur.take(16, "PEL entry ID")?;
        g.pending.push(PendingEntry {
            id: id_from_raw(raw, at, "PEL entry ID")?,
            delivery_time: cur.i64_le("PEL delivery time")?,
            delivery_count: read_length(cur, "PEL delivery count")?,
            consumer: None,
        });
    }
    // Where each pending ID is (a PEL can hold millions: no linear search per consumer ID).
    let index: std::collections::HashMap<StreamId, usize> = g
        .pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i))
        .collect();
    let ncons = read_length(cur, "consumer count")?;
    cur.check_count(ncons, 10, "consumer count")?;
    for _ in 0..ncons {
        let name = read_bytes(cur, "consumer name")?;
        let seen_time = cur.i64_le("consumer seen time")?;
        let active_time = if v3 {
            cur.i64_le("consumer active time")?
        } else {
            seen_time
        };
        let n = read_length(cur, "consumer PEL size")?;
        cur.check_count(n, 16, "consumer PEL size")?;
        for _ in 0..n {
            let at = cur.offset();
            let id = id_from_raw(cur.take(16, "consumer PEL ID")?, at, "consumer PEL ID")?;
            match index.get(&id).and_then(|&i| g.pending.get_mut(i)) {
                Some(p) => p.consumer = Some(name.clone()),
                None => {
                    return Err(RdbError::corrupt(
                        at,
                        "consumer PEL",
                        format!("ID {}-{} is not in the group PEL", id.ms, id.seq),
                    ))
                }
            }
        }
        g.consumers.push(ConsumerData {
            name,
            seen_time,
            active_time,
        });
    }
    Ok(g)
}

/// Encode a stream as type `t` (15, 19 or 21) value bytes.
pub fn encode(d: &StreamData, t: u8) -> Result<Vec<u8>> {
    let v2 = t >= types::STREAM_LISTPACKS_2;
    let v3 = t >= types::STREAM_LISTPACKS_3;
    let mut out = Vec::new();
    let chunks: Vec<_> = d.entries.chunks(NODE_MAX_ENTRIES).collect();
    write_length(&mut out, chunks.len() as u64);
    for chunk in chunks {
        let Some((master_id, _)) = chunk.first() else {
            continue;
        };
        write_raw(&mut out, &id_to_raw(*master_id));
        write_raw(&mut out, &encode_node(chunk)?);
    }
    write_length(&mut out, d.length);
    write_length(&mut out, d.last_id.ms);
    write_length(&mut out, d.last_id.seq);
    if v2 {
        write_length(&mut out, d.first_id.ms);
        write_length(&mut out, d.first_id.seq);
        write_length(&mut out, d.max_deleted_id.ms);
        write_length(&mut out, d.max_deleted_id.seq);
        write_length(&mut out, d.entries_added);
    }
    write_length(&mut out, d.groups.len() as u64);
    for g in &d.groups {
        encode_group(&mut out, g, v2, v3)?;
    }
    Ok(out)
}

/// One node's listpack: the master entry (the first entry's fields), then every entry as a
/// delta from the master ID, with the fields left out when they are the master's.
fn encode_node(chunk: &[StreamEntry]) -> Result<Vec<u8>> {
    let Some((master_id, master_fields)) = chunk.first() else {
        return Ok(Vec::new());
    };
    let names: Vec<&[u8]> = master_fields.iter().map(|(f, _)| f.as_slice()).collect();
    let mut lp = listpack::Writer::new();
    lp.push_int(chunk.len() as i64);
    lp.push_int(0);
    lp.push_int(names.len() as i64);
    for n in &names {
        lp.push_str(n);
    }
    lp.push_int(0);
    for (id, fields) in chunk {
        if *id < *master_id {
            return Err(RdbError::Encode(
                "stream entries are not in ID order".into(),
            ));
        }
        let same =
            fields.len() == names.len() && fields.iter().zip(&names).all(|((f, _), n)| f == n);
        lp.push_int(if same { FLAG_SAMEFIELDS } else { 0 });
        lp.push_int(id.ms.wrapping_sub(master_id.ms) as i64);
        lp.push_int(id.seq.wrapping_sub(master_id.seq) as i64);
        if same {
            for (_, v) in fields {
                lp.push_str(v);
            }
            lp.push_int(fields.len() as i64 + 3);
        } else {
            lp.push_int(fields.len() as i64);
            for (f, v) in fields {
                lp.push_str(f);
                lp.push_str(v);
            }
            lp.push_int(fields.len() as i64 * 2 + 4);
        }
    }
    if lp.byte_len() > u32::MAX as usize {
        return Err(RdbError::Encode("stream node larger than 4 GiB".into()));
    }
    Ok(lp.finish())
}

/// One consumer group: its cursor, its pending entries, then its consumers with the IDs each
/// owns (every pending entry's consumer must be one of them).
fn encode_group(out: &mut Vec<u8>, g: &GroupData, v2: bool, v3: bool) -> Result<()> {
    write_raw(out, &g.name);
    write_length(out, g.last_delivered.ms);
    write_length(out, g.last_delivered.seq);
    if v2 {
        // Unknown entries-read is stored as Redis' SCG_INVALID_ENTRIES_READ (-1).
        write_length(out, g.entries_read.unwrap_or(u64::MAX));
    }
    write_length(out, g.pending.len() as u64);
    for p in &g.pending {
        out.extend_from_slice(&id_to_raw(p.id));
        out.extend_from_slice(&p.delivery_time.to_le_bytes());
        write_length(out, p.delivery_count);
    }
    for p in &g.pending {
        if let Some(c) = &p.consumer {
            if !g.consumers.iter().any(|k| &k.name == c) {
                return Err(RdbError::Encode(format!(
                    "pending entry {}-{} belongs to consumer {:?} that is not in group {:?}",
                    p.id.ms,
                    p.id.seq,
                    String::from_utf8_lossy(c),
                    String::from_utf8_lossy(&g.name)
                )));
            }
        }
    }
    write_length(out, g.consumers.len() as u64);
    for c in &g.consumers {
        write_raw(out, &c.name);
        out.extend_from_slice(&c.seen_time.to_le_bytes());
        if v3 {
            out.extend_from_slice(&c.active_time.to_le_bytes());
        }
        let owned: Vec<&PendingEntry> = g
            .pending
            .iter()
            .filter(|p| p.consumer.as_ref() == Some(&c.name))
            .collect();
        write_length(out, owned.len() as u64);
        for p in owned {
            out.extend_from_slice(&id_to_raw(p.id));
        }
    }
    Ok(())
}
