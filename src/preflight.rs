//! Checks made before the first write: who the servers are, their clocks, and conflicts.
//!
//! Anything that would make the copy fail half-way and can be known up front is checked here, so
//! that a refusal leaves the target untouched.

use anyhow::Context;

use crate::endpoint::info::{self, ServerInfo};
use crate::endpoint::{Connection, Pipeline, Reply, Server};
use crate::report::escape_key;
use crate::source::scan::parse_time_ms;

/// How many conflicting keys an error names.
const NAMED_CONFLICTS: usize = 5;

/// Reads `INFO` and refuses servers ferry cannot use in this role.
pub async fn inspect(conn: &mut Connection, server: &Server) -> anyhow::Result<ServerInfo> {
    let info = info::read(conn).await?;
    let side = server.endpoint.side.name();
    if info.cluster {
        anyhow::bail!(
            "the {side} {} is a Redis Cluster node (cluster_enabled:1); this ferry copies between standalone servers only",
            server.endpoint
        );
    }
    if side == "target" && info.role == "slave" {
        anyhow::bail!(
            "the target {} is a read-only replica (role:slave); point --target at the primary endpoint",
            server.endpoint
        );
    }
    Ok(info)
}

/// This server's clock minus ours, in ms.
pub async fn clock_skew(conn: &mut Connection) -> anyhow::Result<i64> {
    let reply = conn.cmd(&[b"TIME".as_slice()]).await?;
    let server_ms = parse_time_ms(&reply).with_context(|| {
        format!(
            "the {} {} did not answer TIME: {reply:?}",
            conn.side(),
            conn.endpoint()
        )
    })?;
    Ok(server_ms - crate::sink::now_ms())
}

/// The target's `proto-max-bulk-len`, when CONFIG is allowed (managed services often block it).
pub async fn max_bulk_len(conn: &mut Connection) -> Option<u64> {
    let reply = conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", b"proto-max-bulk-len"])
        .await
        .ok()?;
    match reply {
        Reply::Array(Some(items)) => items.get(1)?.to_text()?.parse().ok(),
        _ => None,
    }
}

/// For `--on-conflict fail`: refuses when any source key already exists in its target DB.
///
/// Free when the target DBs are empty (the usual case). Otherwise every source key is checked
/// with a pipelined EXISTS, before anything is written.
pub async fn check_conflicts(
    source: &Server,
    target: &mut Connection,
    dbs: &[(u32, u32)],
    scan_count: u32,
) -> anyhow::Result<()> {
    let mut found: Vec<(u32, bytes::Bytes)> = Vec::new();
    let mut total = 0u64;
    let mut src: Option<Connection> = None;
    for &(db, tdb) in dbs {
        target.select(tdb).await?;
        let size = target
            .cmd(&[b"DBSIZE".as_slice()])
            .await?
            .as_int()
            .unwrap_or(0);
        if size == 0 {
            continue;
        }
        let conn = match &mut src {
            Some(c) => c,
            None => src.insert(source.connect().await?),
        };
        conn.select(db).await?;
        let mut cursor = "0".to_string();
        loop {
            let reply = conn
                .cmd(&[
                    b"SCAN".as_slice(),
                    cursor.as_bytes(),
                    b"COUNT",
                    scan_count.to_string().as_bytes(),
                ])
                .await?;
            let Reply::Array(Some(parts)) = reply else {
                anyhow::bail!("the source refused SCAN: {reply:?}");
            };
            cursor = parts
                .first()
                .and_then(Reply::to_text)
                .unwrap_or_else(|| "0".into());
            let keys: Vec<bytes::Bytes> = match parts.get(1) {
                Some(Reply::Array(Some(k))) => k
                    .iter()
                    .filter_map(|r| r.as_bytes().map(bytes::Bytes::copy_from_slice))
                    .collect(),
                _ => Vec::new(),
            };
            let mut p = Pipeline::new();
            for k in &keys {
                p.cmd(&[b"EXISTS".as_slice(), k]);
            }
            if !p.is_empty() {
                for (k, r) in keys.iter().zip(target.run(&p).await?) {
                    if r.as_int() == Some(1) {
                        total += 1;
                        if found.len() < NAMED_CONFLICTS {
                            found.push((tdb, k.clone()));
                        }
                    }
                }
            }
            if cursor == "0" {
                break;
            }
        }
    }
    if total > 0 {
        let named: Vec<String> = found
            .iter()
            .map(|(db, k)| format!("{} (db {db})", escape_key(k)))
            .collect();
        anyhow::bail!(
            "the target {} already holds {total} of the source's keys, e.g. {}. Nothing was written. \
             Rerun with --on-conflict replace to overwrite them, --on-conflict skip to keep the target's copies, \
             or empty the target first",
            target.endpoint(),
            named.join(", ")
        );
    }
    Ok(())
}
