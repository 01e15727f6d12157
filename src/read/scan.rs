//! SCAN: the command and its reply, for every reader that lists a server's keys (the copy's
//! source reader, verification's live nodes, the sample's small databases).

use anyhow::Context;
use bytes::Bytes;

use crate::endpoint::{ErrorKind, Pipeline, Reply};

/// Appends `SCAN cursor COUNT count` to `p`.
pub fn ask(p: &mut Pipeline, cursor: u64, count: u32) {
    let mut cur = itoa::Buffer::new();
    let mut n = itoa::Buffer::new();
    p.cmd(&[
        b"SCAN".as_slice(),
        cur.format(cursor).as_bytes(),
        b"COUNT",
        n.format(count).as_bytes(),
    ]);
}

/// `SCAN cursor COUNT count` as one command's arguments.
pub fn command(cursor: u64, count: u32) -> [Vec<u8>; 4] {
    [
        b"SCAN".to_vec(),
        cursor.to_string().into_bytes(),
        b"COUNT".to_vec(),
        count.to_string().into_bytes(),
    ]
}

/// Parses a SCAN reply into the next cursor and the keys.
pub fn parse_scan(reply: Reply) -> anyhow::Result<(u64, Vec<Bytes>)> {
    if let Some(err) = reply.error() {
        let hint = if matches!(ErrorKind::of(err), ErrorKind::NoPerm(_)) {
            " (the ACL user needs +scan)"
        } else {
            ""
        };
        anyhow::bail!("the server refused SCAN: {err}{hint}");
    }
    let Reply::Array(Some(parts)) = reply else {
        anyhow::bail!("unexpected SCAN reply {reply:?}");
    };
    let Ok([cursor, keys]) = <[Reply; 2]>::try_from(parts) else {
        anyhow::bail!("unexpected SCAN reply shape");
    };
    let cursor = cursor
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .context("SCAN cursor is not a number")?;
    let Reply::Array(Some(keys)) = keys else {
        anyhow::bail!("unexpected SCAN key list");
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Reply::Bulk(Some(b)) => Ok(b),
            other => Err(anyhow::anyhow!("unexpected key in SCAN reply: {other:?}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((cursor, keys))
}
