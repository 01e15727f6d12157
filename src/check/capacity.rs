//! Will the data fit, and stay? The source's data size against the target's `maxmemory` (per
//! master of a cluster, by its share of the slots), the target's `maxmemory-policy`, and room
//! for ferry's connections under `maxclients` on both sides.
//!
//! A full target refuses RESTOREs (the job stops half-way); worse, a target with an evicting
//! policy accepts them and silently drops other keys to make room, copied ones included, which
//! only verification would notice. The data size is `used_memory_dataset` (4.0+; else
//! `used_memory`) of the source, scaled to the DBs copied: an estimate, hence the 1.3x headroom.

use super::connect::Probed;
use super::row::{Check, Status};
use super::sides::Source;
use crate::job::Job;
use crate::report::human_bytes;

/// Below this much room per byte of data, warn.
const HEADROOM: f64 = 1.3;

/// Connections ferry opens to each source server (two readers, verify, the conflict check).
const SOURCE_CONNECTIONS: u64 = 4;

/// The source's data size against each target master's free `maxmemory`. Of a resumed run
/// (`copied` keys already written) only the rest needs room; of a `--partition` worker, only
/// its share.
pub(crate) fn memory(src: &Source, dst: &Probed, job: &Job, copied: u64, out: &mut Vec<Check>) {
    let name = "target: maxmemory";
    let pairs = super::layout::pairs(src, job);
    let (need, keys, what) = match src {
        Source::Live(s) => {
            let total_keys: u64 = s.side.keyspace.values().sum();
            let copied_keys: u64 = pairs
                .iter()
                .filter_map(|(db, _)| s.side.keyspace.get(db))
                .sum();
            let data: u64 = s
                .nodes
                .iter()
                .map(|n| n.info.used_memory_dataset.unwrap_or(n.info.used_memory))
                .sum();
            let part = if total_keys == 0 {
                0.0
            } else {
                copied_keys as f64 / total_keys as f64
            };
            (
                (data as f64 * part) as u64,
                copied_keys,
                "source data in memory",
            )
        }
        Source::File(f) => {
            let total: u64 = f.dbs.values().map(|d| d.keys).sum();
            let file_keys: u64 = pairs
                .iter()
                .filter_map(|(db, _)| f.dbs.get(db))
                .map(|d| d.keys)
                .sum();
            let part = if total == 0 {
                0.0
            } else {
                file_keys as f64 / total as f64
            };
            (
                (f.size as f64 * part) as u64,
                file_keys,
                "RDB file size (in memory the data takes more)",
            )
        }
    };
    let (need, what) = still_to_copy(need, keys, copied, job, what);
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    for node in &dst.nodes {
        let i = &node.info;
        if i.maxmemory == 0 {
            parts.push(format!("target{}: no maxmemory", node.label()));
            continue;
        }
        let share = (need as f64 * node.share()) as u64;
        let room = i.maxmemory.saturating_sub(i.used_memory);
        status = status.max(fit(share, room));
        parts.push(format!(
            "target{}: maxmemory {}, {} used, room {} for ~{}",
            node.label(),
            human_bytes(i.maxmemory),
            human_bytes(i.used_memory),
            human_bytes(room),
            human_bytes(share)
        ));
    }
    let detail = format!("{what} ~{}; {}", human_bytes(need), parts.join("; "));
    let fix = format!(
        "raise maxmemory on the target to at least {:.1}x the data (CONFIG SET maxmemory, or a bigger instance), or copy fewer DBs",
        HEADROOM
    );
    out.push(match status {
        Status::Ok => Check::ok(name, detail),
        Status::Warn => Check::warn(
            name,
            format!("{detail}: less than {HEADROOM}x headroom"),
            fix,
        ),
        Status::Fail => Check::fail(name, format!("{detail}: the data does not fit"), fix),
    });
}

/// The part of `need` bytes (of `keys` keys) this run still writes: a `--partition` worker
/// writes its share, a resumed run what it has not `copied` yet. Returns it with its wording.
fn still_to_copy(need: u64, keys: u64, copied: u64, job: &Job, what: &str) -> (u64, String) {
    let (mut need, mut keys, mut what) = (need, keys, what.to_string());
    if let Some(p) = job.partition {
        need /= u64::from(p.count.max(1));
        keys /= u64::from(p.count.max(1));
        what = format!("{what}, share {p} of it");
    }
    if copied > 0 && keys > 0 {
        let left = keys.saturating_sub(copied);
        need = (need as f64 * left as f64 / keys as f64) as u64;
        what = format!("{what}, less the {copied} keys already copied (resuming)");
    }
    (need, what)
}

/// Whether `need` bytes fit in `room`: fail when not, warn under [`HEADROOM`] times.
fn fit(need: u64, room: u64) -> Status {
    if need > room {
        Status::Fail
    } else if need as f64 * HEADROOM > room as f64 {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// `maxmemory-policy` other than `noeviction`: evicting copied keys is silent data loss.
pub(crate) fn eviction(dst: &Probed, out: &mut Vec<Check>) {
    let name = "target: maxmemory-policy";
    let fix = "set it to noeviction for the migration: CONFIG SET maxmemory-policy noeviction (then a full target refuses writes instead of dropping keys)";
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    for node in &dst.nodes {
        let label = node.label();
        match node.info.maxmemory_policy.as_deref() {
            Some("noeviction") => parts.push(format!("noeviction{label}")),
            Some(p) if node.info.maxmemory > 0 => {
                status = status.max(Status::Fail);
                parts.push(format!(
                    "{p}{label} with maxmemory {}: when full, the target evicts keys, silently dropping copied ones",
                    human_bytes(node.info.maxmemory)
                ));
            }
            Some(p) => {
                status = status.max(Status::Warn);
                parts.push(format!("{p}{label}: no maxmemory now, but if one is set the target will evict (drop) copied keys"));
            }
            None => {
                status = status.max(Status::Warn);
                parts.push(format!("unknown{label} (not in INFO)"));
            }
        }
    }
    let detail = parts.join("; ");
    out.push(match status {
        Status::Ok => Check::ok(name, detail),
        Status::Warn => Check::warn(name, detail, fix),
        Status::Fail => Check::fail(name, detail, fix),
    });
}

/// `connected_clients` plus ferry's connections against `maxclients` (when CONFIG is allowed).
pub(crate) async fn clients(side: &mut Probed, role: Role<'_>, out: &mut Vec<Check>) {
    let (who, needed) = match role {
        Role::Source => ("source", SOURCE_CONNECTIONS),
        // One connection per writer to each master, plus the conflict check and verify's.
        Role::Target(job) => ("target", job.tuning.writers as u64 + 2),
    };
    let name = format!("{who}: maxclients");
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    for node in side.nodes.iter_mut() {
        let label = node.label();
        let Some(max) = config_get(&mut node.conn, "maxclients")
            .await
            .and_then(|v| v.parse::<u64>().ok())
        else {
            parts.push(format!("not checked{label} (CONFIG GET refused)"));
            continue;
        };
        let used = node.info.connected_clients;
        let s = if used + needed > max {
            Status::Fail
        } else if (used + needed) * 10 > max * 9 {
            Status::Warn
        } else {
            Status::Ok
        };
        status = status.max(s);
        parts.push(format!(
            "{used} of {max} connections in use{label}, ferry adds {needed}"
        ));
    }
    let detail = parts.join("; ");
    let fix = format!(
        "raise maxclients on the {who} (CONFIG SET maxclients), or run with fewer --writers"
    );
    out.push(match status {
        Status::Ok => Check::ok(name, detail),
        Status::Warn => Check::warn(name, format!("{detail}: close to the limit"), fix),
        Status::Fail => Check::fail(name, format!("{detail}: over the limit"), fix),
    });
}

/// Which side a check is about.
pub(crate) enum Role<'a> {
    /// The source.
    Source,
    /// The target, with the job (for how many connections ferry opens).
    Target(&'a Job),
}

/// `CONFIG GET name` on one server; `None` when refused (managed services often block CONFIG).
async fn config_get(conn: &mut crate::endpoint::Connection, name: &str) -> Option<String> {
    let reply = conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", name.as_bytes()])
        .await
        .ok()?;
    match reply {
        crate::endpoint::Reply::Array(Some(items)) => items.get(1)?.to_text(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{fit, Status};

    #[test]
    fn fits_with_headroom() {
        assert_eq!(fit(10, 9), Status::Fail);
        assert_eq!(fit(10, 12), Status::Warn);
        assert_eq!(fit(10, 13), Status::Ok);
        assert_eq!(fit(0, 0), Status::Ok);
    }
}
