//! Facts about the servers themselves: versions (will DUMP payloads need re-encoding?), clocks
//! (expiries are computed across them) and keyspace notifications (what a live follow mode
//! would need).

use super::connect::Probed;
use super::{config_get, Check};
use crate::source::rdb_file::target_rdb_version;

/// Clock skew beyond which expiries computed across the two clocks deserve a look.
const SKEW_WARN_MS: i64 = 2000;

/// Versions of both sides, and whether payloads are re-encoded for the target.
pub(crate) fn versions(src: &Probed, dst: &Probed, out: &mut Vec<Check>) {
    let (s, t) = (&src.side.info, &dst.side.info);
    let detail = format!("{} → {}", src.side.describe(), dst.side.describe());
    let detail = match (target_rdb_version(s), target_rdb_version(t)) {
        (Some(a), Some(b)) if a > b => format!(
            "{detail}: DUMP payloads (RDB {a}) are newer than the target loads (RDB {b}); ferry re-encodes them, which costs CPU"
        ),
        _ => format!("{detail}: the target loads the source's DUMP payloads as they are"),
    };
    out.push(Check::ok("versions", detail));
}

/// Each side's clock against this machine's.
pub(crate) async fn clocks(src: &mut Probed, dst: &mut Probed, out: &mut Vec<Check>) {
    clock(src, out).await;
    clock(dst, out).await;
}

/// The target's clock only (an RDB file source has none).
pub(crate) async fn clocks_target(dst: &mut Probed, out: &mut Vec<Check>) {
    clock(dst, out).await;
}

async fn clock(side: &mut Probed, out: &mut Vec<Check>) {
    let name = format!("{}: clock", side.name());
    let Some(node) = side.nodes.first_mut() else {
        return;
    };
    out.push(match crate::source::expiry::clock_skew(&mut node.conn).await {
        Ok(ms) if ms.abs() > SKEW_WARN_MS => Check::warn(
            name,
            format!("{ms} ms off this machine's clock"),
            "sync the clocks (NTP); ferry corrects expiries for the skew it measures, but a clock that moves during the job shifts them",
        ),
        Ok(ms) => Check::ok(name, format!("{ms} ms off this machine's clock")),
        Err(e) => Check::fail(name, format!("{e:#}"), "the ACL user needs +time"),
    });
}

/// `notify-keyspace-events` on the source: only a live follow mode (not in this version of
/// ferry) would need them, so this is information, never a warning.
pub(crate) async fn notifications(src: &mut Probed, out: &mut Vec<Check>) {
    let name = "source: keyspace notifications";
    let Some(node) = src.nodes.first_mut() else {
        return;
    };
    let detail = match config_get(&mut node.conn, "notify-keyspace-events").await {
        None => "unknown (CONFIG GET refused); this version of ferry copies a snapshot and does not need them".to_string(),
        Some(v) if v.is_empty() => "off; this version of ferry copies a snapshot and does not need them".to_string(),
        Some(v) => format!("on ({v}); this version of ferry does not use them"),
    };
    out.push(Check::ok(name, detail));
}
