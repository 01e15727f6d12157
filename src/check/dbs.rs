//! Where the keys go: the DB plan against both sides (a cluster has only DB 0; several source
//! DBs into one target DB need a conflict policy) and whether each chosen DB exists on a
//! standalone server (`SELECT n` fails when n is not below its `databases` setting). Known
//! before the first write, so a refusal leaves the target untouched.

use std::collections::BTreeMap;

use super::side::SideInfo;
use crate::endpoint::info;
use crate::endpoint::{Connection, Endpoint, Reply, Server};
use crate::policy::OnConflict;

/// Refuses DB selections the target cannot take: a cluster has only DB 0, and two source DBs
/// written into one target DB overwrite each other's keys unless a conflict policy says how.
/// `pairs` is (source DB, target DB) for every DB to copy.
pub fn check_db_plan(
    pairs: &[(u32, u32)],
    source: &SideInfo,
    target: &SideInfo,
    target_ep: &Endpoint,
    on_conflict: OnConflict,
) -> anyhow::Result<()> {
    if source.is_cluster() {
        if let Some((db, _)) = pairs.iter().find(|(db, _)| *db != 0) {
            anyhow::bail!("--db {db}: the source is a Redis Cluster, which has only DB 0");
        }
    }
    if target.is_cluster() {
        let wrong: Vec<String> = pairs
            .iter()
            .filter(|(_, t)| *t != 0)
            .map(|(s, t)| {
                let keys = source.keyspace.get(s).copied().unwrap_or(0);
                format!("source DB {s} ({keys} keys) would go to DB {t}")
            })
            .collect();
        if !wrong.is_empty() {
            let first = pairs
                .iter()
                .find(|(_, t)| *t != 0)
                .map(|p| p.0)
                .unwrap_or(0);
            anyhow::bail!(
                "the target {target_ep} is a Redis Cluster, which has only DB 0, but {}. Say where each source DB \
                 goes with --db-map, e.g. --db-map {first}:0 (add --on-conflict replace or skip when several DBs \
                 share DB 0), or copy one DB at a time with --db {first} --db-map {first}:0",
                wrong.join(", ")
            );
        }
    }
    if on_conflict == OnConflict::Fail {
        if let Some((t, dbs)) = shared_target(pairs) {
            let list: Vec<String> = dbs.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "source DBs {} would all be written into target DB {t}, where keys with the same name overwrite \
                 each other. Nothing was written. Pass --on-conflict replace (the copy written last wins) or \
                 --on-conflict skip (the first one wins), or copy them one at a time with --db",
                list.join(", ")
            );
        }
    }
    Ok(())
}

/// The first target DB that several source DBs of `pairs` (source DB, target DB) would be
/// written into, with those source DBs: their keys of the same name overwrite each other.
pub fn shared_target(pairs: &[(u32, u32)]) -> Option<(u32, Vec<u32>)> {
    let mut into: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(s, t) in pairs {
        into.entry(t).or_default().push(s);
    }
    into.into_iter().find(|(_, dbs)| dbs.len() > 1)
}

/// Refuses databases a standalone server does not have (`SELECT n` fails when n is not below
/// its `databases` setting), naming the server, the DB and the flag that chose it, before
/// anything is written. Cluster sides are checked by [`check_db_plan`] (only DB 0).
pub async fn check_dbs_exist(
    conn: &mut Connection,
    dbs: &[u32],
    flag: &dyn Fn(u32) -> String,
) -> anyhow::Result<()> {
    for &db in dbs {
        let reply = conn
            .cmd(&[b"SELECT".as_slice(), db.to_string().as_bytes()])
            .await?;
        let Some(err) = reply.error() else { continue };
        let count = conn
            .cmd(&[b"CONFIG".as_slice(), b"GET", b"databases"])
            .await
            .ok()
            .and_then(|r| match r {
                Reply::Array(Some(items)) => items.get(1)?.to_text()?.parse::<u32>().ok(),
                _ => None,
            });
        let has = match count {
            Some(n) => format!("it has databases 0 to {}", n.saturating_sub(1)),
            None => "see `databases` in its configuration".to_string(),
        };
        anyhow::bail!(
            "{}: the {} {} has no database {db} (SELECT {db}: {}); {has}. Nothing was written",
            flag(db),
            conn.side(),
            conn.endpoint(),
            err.trim_end_matches('.')
        );
    }
    // Leave the connection where it was (SELECT succeeded on every DB above).
    conn.cmd(&[b"SELECT".as_slice(), conn.db().to_string().as_bytes()])
        .await?;
    Ok(())
}

/// [`check_dbs_exist`] on a new connection to `server`, unless it is a cluster node.
pub async fn check_dbs_on(
    server: &Server,
    dbs: &[u32],
    flag: &dyn Fn(u32) -> String,
) -> anyhow::Result<()> {
    let mut conn = server.connect().await?;
    if info::read(&mut conn).await?.cluster {
        return Ok(());
    }
    check_dbs_exist(&mut conn, dbs, flag).await
}

/// The flag that sends keys into target DB `t`, for messages: `--db-map S:T` or `--db T`.
pub fn target_db_flag(pairs: &[(u32, u32)], t: u32) -> String {
    match pairs.iter().find(|p| p.1 == t) {
        Some(&(s, t)) if s != t => format!("--db-map {s}:{t}"),
        _ => format!("--db {t}"),
    }
}
