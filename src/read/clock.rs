//! Clocks: this machine's, and how far a server's is from it.
//!
//! Expiries are absolute (Unix ms). A server's `TIME` gives its clock; comparing or writing an
//! expiry read on one server against another needs each server's skew from this machine, so it
//! is measured here, one way, for every use (the copy's TTLs, verification, the checks).

use crate::endpoint::{Connection, Reply};

/// A bracket at most this wide (ms) is taken as is. A PTTL round trip of a few thousand keys
/// takes well under a millisecond of server time, so a wider one means the server stalled.
pub const NARROW_MS: i64 = 25;

/// Re-reads of a wide bracket's TTLs before ferry accepts the narrowest it got.
pub const REREADS: usize = 4;

/// This machine's clock in Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The server's clock minus this machine's, in ms: a `TIME` bracketed by two readings of this
/// machine's clock, taken again while the round trip is wider than [`NARROW_MS`] (a server
/// that stalled while answering would move every expiry compared or written by the stall), at
/// most [`REREADS`] more times, keeping the narrowest. Used by the copy and by verification.
pub async fn clock_skew(conn: &mut Connection) -> anyhow::Result<i64> {
    let mut best: Option<(i64, i64)> = None; // (width, skew)
    for _ in 0..=REREADS {
        let before = now_ms();
        let reply = conn.cmd(&[b"TIME".as_slice()]).await?;
        let after = now_ms();
        let server = parse_time_ms(&reply).ok_or_else(|| {
            anyhow::anyhow!(
                "the {} {} did not answer TIME: {reply:?}",
                conn.side(),
                conn.endpoint()
            )
        })?;
        let width = after - before;
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, server - (before + after) / 2));
        }
        if width <= NARROW_MS {
            break;
        }
    }
    Ok(best.map_or(0, |(_, skew)| skew))
}

/// Parses a `TIME` reply (`[seconds, microseconds]`) into Unix milliseconds.
pub fn parse_time_ms(reply: &Reply) -> Option<i64> {
    let Reply::Array(Some(parts)) = reply else {
        return None;
    };
    let num = |r: &Reply| -> Option<i64> { std::str::from_utf8(r.as_bytes()?).ok()?.parse().ok() };
    let secs = num(parts.first()?)?;
    let micros = num(parts.get(1)?)?;
    Some(secs * 1000 + micros / 1000)
}
