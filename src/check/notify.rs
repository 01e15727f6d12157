//! Keyspace notifications on the source, for `--follow`.
//!
//! `migrate --follow` follows by keyspace events only when every master publishes the classes
//! it needs ([`probe`] here decides, `follow/setup.rs` acts); otherwise it follows by
//! reconciliation passes alone, each of which reads both sides — a real cost on production,
//! worth knowing before the job. With `--enable-notifications` ferry turns them on itself
//! (`CONFIG SET`), and stops before the copy when the server refuses: that refusal is knowable
//! up front on 7.0+ (`ACL DRYRUN`), not on older servers without changing the setting.
//! Managed services (ElastiCache) often refuse `CONFIG` altogether: the setting is then unknown
//! and must be set in the service's parameter group.

use super::acl::may_run;
use super::connect::Probed;
use super::row::Check;
use crate::endpoint::{Connection, Reply};

/// What the source's `notify-keyspace-events` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// Key-event notifications of every class that changes keys.
    On,
    /// Off or missing classes; the text says what is set.
    Off(String),
    /// `CONFIG GET` is refused (renamed, ACL, a managed service): unknown.
    Unknown(String),
}

/// The classes needed: key events (`E`) of generic, string, list, set, hash, zset, expired and
/// evicted (`A`, or each of `g$lshzxe`), and stream (`t`) from 5.0 on.
pub fn sufficient(flags: &str, streams: bool) -> bool {
    if !flags.contains('E') {
        return false;
    }
    if flags.contains('A') {
        return true;
    }
    let needed = if streams { "g$lshzxet" } else { "g$lshzxe" };
    needed.chars().all(|c| flags.contains(c))
}

/// Reads `notify-keyspace-events` (never changes it).
pub async fn probe(conn: &mut Connection, streams: bool) -> Notify {
    let reply = match conn
        .cmd(&[b"CONFIG".as_slice(), b"GET", b"notify-keyspace-events"])
        .await
    {
        Ok(r) => r,
        Err(e) => return Notify::Unknown(e.to_string()),
    };
    if let Some(err) = reply.error() {
        return Notify::Unknown(err.to_string());
    }
    let flags = match &reply {
        Reply::Array(Some(parts)) => parts.get(1).and_then(Reply::to_text).unwrap_or_default(),
        _ => String::new(),
    };
    if sufficient(&flags, streams) {
        Notify::On
    } else {
        Notify::Off(flags)
    }
}

/// The one line that says how to turn notifications on.
pub fn how_to_enable() -> &'static str {
    "set notify-keyspace-events to KEA (at least Eg$lshzxet): CONFIG SET notify-keyspace-events KEA \
     on a self-hosted server (or rerun with --enable-notifications to let ferry do it), or the \
     notify-keyspace-events parameter of the cluster's parameter group on ElastiCache"
}

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
        match probe(&mut node.conn, streams).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert!(sufficient("AKE", true));
        assert!(sufficient("Eg$lshzxet", true));
        assert!(!sufficient("Eg$lshzxe", true));
        assert!(sufficient("Eg$lshzxe", false));
        assert!(!sufficient("KA", true));
        assert!(!sufficient("", true));
    }
}
