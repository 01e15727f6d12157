//! Facts about the servers themselves: versions (will DUMP payloads need re-encoding?) and
//! clocks (expiries are computed across them).

use super::connect::Probed;
use super::row::Check;
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

/// One side's clock against this machine's; returns the skew (ms), which the copy corrects
/// expiries by.
pub(crate) async fn clock(side: &mut Probed, out: &mut Vec<Check>) -> Option<i64> {
    let name = format!("{}: clock", side.name());
    let node = side.nodes.first_mut()?;
    let skew = crate::read::clock::clock_skew(&mut node.conn).await;
    out.push(match &skew {
        Ok(ms) if ms.abs() > SKEW_WARN_MS => Check::warn(
            name,
            format!("{ms} ms off this machine's clock"),
            "sync the clocks (NTP); ferry corrects expiries for the skew it measures, but a clock that moves during the job shifts them",
        ),
        Ok(ms) => Check::ok(name, format!("{ms} ms off this machine's clock")),
        Err(e) => Check::fail(name, format!("{e:#}"), "the ACL user needs +time").caused_by(e),
    });
    skew.ok()
}
