//! Keyspace notifications on the source, for `--follow`.
//!
//! `migrate --follow` follows by keyspace events only when every master publishes the classes
//! it needs (`follow/events.rs` decides, `follow/setup.rs` acts); otherwise it follows by
//! reconciliation passes alone, each of which reads both sides — a real cost on production,
//! worth knowing before the job. With `--enable-notifications` ferry turns them on itself
//! (`CONFIG SET`), and stops before the copy when the server refuses: that refusal is knowable
//! up front on 7.0+ (`ACL DRYRUN`), not on older servers without changing the setting.
//! Managed services (ElastiCache) often refuse `CONFIG` altogether: the setting is then unknown
//! and must be set in the service's parameter group.

use super::acl::may_run;
use super::connect::Probed;
use super::Check;
use crate::follow::events::{self, how_to_enable, Notify};

/// The row: ok when ferry can follow by events, a warning when it would fall back to
/// reconciliation passes, a failure when `--enable-notifications` would be refused.
/// `follow` is `None` without `--follow`, else whether `--enable-notifications` was given.
pub(crate) async fn notifications(src: &mut Probed, follow: Option<bool>, out: &mut Vec<Check>) {
    let name = "source: keyspace notifications";
    let streams = src.side.info.version() >= (5, 0);
    let mut off = Vec::new();
    let mut unknown = Vec::new();
    let mut refused = Vec::new();
    let mut untested = Vec::new();
    let mut seen = Vec::new();
    for node in src.nodes.iter_mut() {
        let label = node.label();
        match events::probe(&mut node.conn, streams).await {
            Notify::On => seen.push(format!("on{label}")),
            Notify::Unknown(why) => unknown.push(format!("{}{label}", why.trim())),
            Notify::Off(flags) => {
                off.push(format!("notify-keyspace-events={flags:?}{label}"));
                if follow == Some(true) {
                    let set: [&[u8]; 4] = [b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"];
                    match may_run(node, &set).await {
                        Ok(None) => {}
                        Ok(Some(words)) => refused.push(format!("{}{label}", words.trim())),
                        Err(why) => untested.push(format!("{why}{label}")),
                    }
                }
            }
        }
    }
    let Some(enable) = follow else {
        let detail = match (off.is_empty(), unknown.is_empty()) {
            (true, true) => format!("{}; only --follow uses them", seen.join(", ")),
            (false, _) => format!(
                "off or incomplete ({}); only --follow needs them",
                off.join(", ")
            ),
            (true, false) => format!(
                "unknown (CONFIG GET refused: {}); only --follow needs them",
                unknown.join(", ")
            ),
        };
        out.push(Check::ok(name, detail));
        return;
    };
    let fallback = "--follow would follow by reconciliation passes alone (each reads both sides) instead of by events";
    out.push(if !refused.is_empty() {
        Check::fail(
            name,
            format!("{}, and --enable-notifications would be refused: CONFIG SET {}", off.join(", "), refused.join("; ")),
            format!("grant the source user +config|set, or drop --enable-notifications and {}", how_to_enable()),
        )
    } else if !off.is_empty() && enable {
        let detail = if untested.is_empty() {
            format!("{}; --enable-notifications will add the classes --follow needs (CONFIG SET is allowed)", off.join(", "))
        } else {
            format!(
                "{}; --enable-notifications will try CONFIG SET, which cannot be checked without changing the setting ({}): if the server refuses it, migrate stops before the copy",
                off.join(", "),
                untested.join("; ")
            )
        };
        if untested.is_empty() {
            Check::ok(name, detail)
        } else {
            Check::warn(name, detail, format!("make sure the source user may run CONFIG SET, or {}", how_to_enable()))
        }
    } else if !off.is_empty() {
        Check::warn(name, format!("off or incomplete ({}): {fallback}", off.join(", ")), format!("to follow by events, {}", how_to_enable()))
    } else if !unknown.is_empty() {
        let also = if enable { "; --enable-notifications cannot set it either" } else { "" };
        Check::warn(
            name,
            format!("unknown: CONFIG GET refused ({}), as on managed services: {fallback}{also}", unknown.join("; ")),
            format!("let the source user run CONFIG GET (+config|get) so ferry can read the setting, and {}", how_to_enable()),
        )
    } else {
        Check::ok(name, format!("{}: --follow follows by keyspace events", seen.join(", ")))
    });
}
