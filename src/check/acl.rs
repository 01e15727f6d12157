//! ACL rights for every command ferry will send, on each side, found before the job starts
//! instead of when the copy first sends the command.
//!
//! On 7.0+ servers `ACL DRYRUN <user> <command> <args>` answers for any command without running
//! it (the user from `ACL WHOAMI`). DRYRUN needs the right to run `ACL` itself, which an
//! application user often lacks; then, and on older servers, ferry learns what it can without
//! side effects: it runs the read-only commands it uses for real (on the source: SCAN, TIME,
//! INFO, RANDOMKEY, PTTL of a sampled key, DUMP of an absent one), and a NOPERM (or "unknown command", for a
//! renamed one) names the command. Whether the target allows `RESTORE` cannot be learned that
//! way without writing, so it is reported as unchecked (a warning).
//!
//! Every master of a cluster is asked: ACLs are per node.

use bytes::Bytes;

use super::connect::{Node, Probed};
use super::keys::Sample;
use super::Check;
use crate::endpoint::{Denied, ErrorKind, Pipeline, Reply};
use crate::job::Job;

/// A key name for commands when no real key was sampled.
const PLACEHOLDER_KEY: &[u8] = b"ferry:check:absent";

/// One command as ferry sends it.
type Cmd = Vec<Bytes>;

fn cmd(parts: &[&[u8]]) -> Cmd {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Key name for the commands that need a consumer group or a member as well.
const PLACEHOLDER_NAME: &[u8] = b"ferry-check";

/// The read commands of the big-key reader (`bigkey/size.rs`, `bigkey/read.rs`), used on the
/// source by the copy and on both sides by verify when `--big-key-bytes` is not 0; each bounded
/// to one element here. Only those the server's `version` has (an absent command would read as
/// renamed away).
fn big_key_reads(version: (u32, u32), key: &[u8]) -> Vec<Cmd> {
    let mut cmds = vec![
        cmd(&[b"TYPE", key]),
        cmd(&[b"OBJECT", b"ENCODING", key]),
        cmd(&[b"STRLEN", key]),
        cmd(&[b"GETRANGE", key, b"0", b"0"]),
        cmd(&[b"LLEN", key]),
        cmd(&[b"LRANGE", key, b"0", b"0"]),
        cmd(&[b"SCARD", key]),
        cmd(&[b"SRANDMEMBER", key, b"1"]),
        cmd(&[b"SSCAN", key, b"0", b"COUNT", b"1"]),
        cmd(&[b"ZCARD", key]),
        cmd(&[b"ZRANGE", key, b"0", b"0", b"WITHSCORES"]),
        cmd(&[b"ZSCAN", key, b"0", b"COUNT", b"1"]),
        cmd(&[b"HLEN", key]),
        cmd(&[b"HSCAN", key, b"0", b"COUNT", b"1"]),
    ];
    if version >= (4, 0) {
        cmds.push(cmd(&[b"MEMORY", b"USAGE", key]));
    }
    if version >= (5, 0) {
        cmds.extend([
            cmd(&[b"XLEN", key]),
            cmd(&[b"XRANGE", key, b"-", b"+", b"COUNT", b"1"]),
            cmd(&[b"XINFO", b"STREAM", key]),
            cmd(&[b"XINFO", b"GROUPS", key]),
            cmd(&[b"XINFO", b"CONSUMERS", key, PLACEHOLDER_NAME]),
            cmd(&[b"XPENDING", key, PLACEHOLDER_NAME, b"-", b"+", b"1"]),
        ]);
    }
    cmds
}

/// The write commands of the big-key writer (`bigkey/write.rs`, `sink/chunked.rs`) on the target.
fn big_key_writes(key: &[u8]) -> Vec<Cmd> {
    let name = PLACEHOLDER_NAME;
    vec![
        cmd(&[b"WATCH", key]),
        cmd(&[b"UNWATCH"]),
        cmd(&[b"DEL", key]),
        cmd(&[b"APPEND", key, b"v"]),
        cmd(&[b"RPUSH", key, b"v"]),
        cmd(&[b"SADD", key, b"v"]),
        cmd(&[b"ZADD", key, b"1", b"v"]),
        cmd(&[b"HSET", key, b"f", b"v"]),
        cmd(&[b"XADD", key, b"1-1", b"f", b"v"]),
        cmd(&[b"XSETID", key, b"1-1"]),
        cmd(&[b"XGROUP", b"CREATE", key, name, b"0"]),
        cmd(&[b"XCLAIM", key, name, name, b"0", b"1-1"]),
        cmd(&[b"PEXPIRE", key, b"1000"]),
        cmd(&[b"MULTI"]),
        cmd(&[b"RENAME", key, key]),
        cmd(&[b"PEXPIREAT", key, b"1"]),
        cmd(&[b"PERSIST", key]),
        cmd(&[b"EXEC"]),
    ]
}

/// The commands ferry sends to the source (copy and verify).
fn source_commands(cluster: bool, db: u32, key: &[u8], big: Option<(u32, u32)>) -> Vec<Cmd> {
    let mut cmds = vec![
        cmd(&[b"INFO", b"keyspace"]),
        cmd(&[b"TIME"]),
        cmd(&[b"SCAN", b"0", b"COUNT", b"1"]),
        cmd(&[b"RANDOMKEY"]),
        cmd(&[b"PTTL", key]),
        cmd(&[b"DUMP", key]),
    ];
    if let Some(version) = big {
        cmds.extend(big_key_reads(version, key));
    }
    if cluster {
        cmds.push(cmd(&[b"CLUSTER", b"SLOTS"]));
        cmds.push(cmd(&[b"CLUSTER", b"NODES"]));
    } else {
        cmds.insert(0, cmd(&[b"SELECT", db.to_string().as_bytes()]));
    }
    cmds
}

/// The commands ferry sends to the target (conflict check, copy, verify): the reads, and the
/// writes when the run `writes` (verify only reads); the big-key ones when `big` (the target's
/// version).
fn target_commands(
    cluster: bool,
    dbs: &[u32],
    key: &[u8],
    writes: bool,
    big: Option<(u32, u32)>,
) -> (Vec<Cmd>, Vec<Cmd>) {
    let mut cmds = vec![
        cmd(&[b"INFO"]),
        cmd(&[b"TIME"]),
        cmd(&[b"DBSIZE"]),
        cmd(&[b"EXISTS", key]),
        cmd(&[b"SCAN", b"0", b"COUNT", b"1"]),
        cmd(&[b"PTTL", key]),
        cmd(&[b"DUMP", key]),
    ];
    if cluster {
        cmds.push(cmd(&[b"CLUSTER", b"SLOTS"]));
        cmds.push(cmd(&[b"CLUSTER", b"NODES"]));
    } else {
        for db in dbs {
            cmds.insert(0, cmd(&[b"SELECT", db.to_string().as_bytes()]));
        }
    }
    if let Some(version) = big {
        cmds.extend(big_key_reads(version, key));
    }
    let mut written = Vec::new();
    if writes {
        written.push(cmd(&[
            b"RESTORE", key, b"0", b"payload", b"ABSTTL", b"REPLACE",
        ]));
        if big.is_some() {
            written.extend(big_key_writes(key));
        }
    }
    (cmds, written)
}

/// What one node allows.
enum Rights {
    /// Every command was judged; these were denied: (command, server's words).
    Judged {
        denied: Vec<(String, String)>,
        how: &'static str,
    },
    /// Only the read-only commands were tried; `why` says why not all of them.
    Partial {
        denied: Vec<(String, String)>,
        why: String,
    },
}

/// Checks the source's rights on every master.
pub(crate) async fn source(src: &mut Probed, job: &Job, sample: &Sample, out: &mut Vec<Check>) {
    let cluster = src.side.is_cluster();
    let big = job.tuning.big_key_bytes > 0;
    let first_db = src.side.keyspace.keys().next().copied().unwrap_or(0);
    let mut results = Vec::new();
    for (i, node) in src.nodes.iter_mut().enumerate() {
        let (db, key) = match sample.key_of(i) {
            Some((db, k)) => (db, k.to_vec()),
            None => (first_db, PLACEHOLDER_KEY.to_vec()),
        };
        let version = big.then(|| node.info.version());
        let cmds = source_commands(cluster, db, &key, version);
        let rights = match dryrun(node, &cmds).await {
            Ok(r) => r,
            Err(why) => Rights::Partial {
                denied: try_for_real(node, &cmds).await,
                why,
            },
        };
        results.push((node.label(), rights));
    }
    let user = login_user(src);
    report("source", &user, results, &[], out);
}

/// Checks the target's rights on every master (RESTORE only when the command `writes`).
pub(crate) async fn target(
    dst: &mut Probed,
    job: &Job,
    sample: &Sample,
    writes: bool,
    out: &mut Vec<Check>,
) {
    let cluster = dst.side.is_cluster();
    let mut dbs: Vec<u32> = job.dbs.iter().map(|&db| job.target_db(db)).collect();
    if dbs.is_empty() {
        dbs.push(0);
    }
    dbs.sort_unstable();
    dbs.dedup();
    let key = sample
        .any()
        .map(|k| k.to_vec())
        .unwrap_or_else(|| PLACEHOLDER_KEY.to_vec());
    let big = job.tuning.big_key_bytes > 0;
    let mut results = Vec::new();
    let mut unchecked: Vec<String> = Vec::new();
    for node in dst.nodes.iter_mut() {
        let version = big.then(|| node.info.version());
        let (reads, writes) = target_commands(cluster, &dbs, &key, writes, version);
        let all: Vec<Cmd> = reads.iter().chain(&writes).cloned().collect();
        let rights = match dryrun(node, &all).await {
            Ok(r) => r,
            // Writes are never tried for real: they are reported unchecked.
            Err(why) => Rights::Partial {
                denied: try_for_real(node, &reads).await,
                why,
            },
        };
        for c in &writes {
            let name = command_name(c);
            if !unchecked.contains(&name) {
                unchecked.push(name);
            }
        }
        results.push((node.label(), rights));
    }
    let user = login_user(dst);
    let unchecked: Vec<&str> = unchecked.iter().map(String::as_str).collect();
    report("target", &user, results, &unchecked, out);
}

/// Asks `ACL DRYRUN` about each command; `Err` says why it cannot be used.
async fn dryrun(node: &mut Node, cmds: &[Cmd]) -> Result<Rights, String> {
    if node.info.version() < (7, 0) {
        return Err(format!("{} has no ACL DRYRUN (7.0+)", node.info.product()));
    }
    let who = node
        .conn
        .cmd(&[b"ACL".as_slice(), b"WHOAMI"])
        .await
        .map_err(|e| e.to_string())?;
    let user = match who {
        Reply::Error(e) => return Err(format!("ACL WHOAMI refused: {e}")),
        other => other.to_text().unwrap_or_else(|| "default".into()),
    };
    let mut p = Pipeline::new();
    for c in cmds {
        let mut args: Vec<&[u8]> = vec![b"ACL", b"DRYRUN", user.as_bytes()];
        args.extend(c.iter().map(|a| a.as_ref()));
        p.cmd(&args);
    }
    let replies = node.conn.run(&p).await.map_err(|e| e.to_string())?;
    let mut denied = Vec::new();
    for (c, r) in cmds.iter().zip(replies) {
        match r {
            Reply::Status(_) => {}
            Reply::Error(e) => return Err(format!("ACL DRYRUN refused: {e}")),
            other => denied.push((command_name(c), other.to_text().unwrap_or_default())),
        }
    }
    Ok(Rights::Judged {
        denied,
        how: "ACL DRYRUN",
    })
}

/// Runs the (read-only) commands for real; returns those refused by ACL or renamed away.
///
/// `DUMP` is sent for an absent key: the sampled key may be a value of hundreds of megabytes,
/// which a rights check must not make the server serialize (PTTL of the sampled key still tries
/// the key patterns). A key-pattern refusal of that absent key says nothing about real keys.
async fn try_for_real(node: &mut Node, cmds: &[Cmd]) -> Vec<(String, String)> {
    let cmds: Vec<Cmd> = cmds
        .iter()
        .map(|c| match c.first() {
            Some(name) if name.eq_ignore_ascii_case(b"DUMP") => cmd(&[b"DUMP", PLACEHOLDER_KEY]),
            _ => c.clone(),
        })
        .collect();
    let mut p = Pipeline::new();
    for c in &cmds {
        p.cmd(c);
    }
    let Ok(replies) = node.conn.run(&p).await else {
        return Vec::new();
    };
    // SELECTs in the pipeline changed the connection's DB: say so, so later use selects again.
    node.conn.note_selected(u32::MAX);
    cmds.iter()
        .zip(replies)
        .filter_map(|(c, r)| {
            let e = r.error()?;
            let kind = ErrorKind::of(e);
            let absent_key = c.get(1).is_some_and(|k| k.as_ref() == PLACEHOLDER_KEY);
            if absent_key && kind == ErrorKind::NoPerm(Denied::Key) {
                return None;
            }
            matches!(kind, ErrorKind::NoPerm(_) | ErrorKind::UnknownCommand)
                .then(|| (command_name(c), e.to_string()))
        })
        .collect()
}

/// Whether an `ACL DRYRUN` answer (a bulk text, not an error reply: see `ErrorKind` for those)
/// names the key (outside the user's key patterns), not the command.
fn is_key_pattern_denial(words: &str) -> bool {
    words.contains("to access") && words.contains(" key")
}

/// "DUMP", or "CLUSTER SLOTS" for a command with a subcommand.
fn command_name(c: &Cmd) -> String {
    let name = String::from_utf8_lossy(&c[0]).to_ascii_uppercase();
    match name.as_str() {
        "CLUSTER" | "ACL" | "CONFIG" | "MEMORY" | "OBJECT" | "XINFO" | "XGROUP" => {
            let sub = c
                .get(1)
                .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
            format!("{name} {}", sub.unwrap_or_default())
        }
        _ => name,
    }
}

/// The user ferry logs in as on a side (`default` without a user in the URL).
fn login_user(side: &Probed) -> String {
    side.nodes
        .first()
        .and_then(|n| n.server.endpoint.user.clone())
        .unwrap_or_else(|| "default".into())
}

/// The rows for one side; `unchecked` are the commands a partial check cannot try.
fn report(
    side: &str,
    user: &str,
    results: Vec<(String, Rights)>,
    unchecked: &[&str],
    out: &mut Vec<Check>,
) {
    let name = format!("{side}: ACL rights");
    let mut denied: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut keys_denied: Vec<String> = Vec::new();
    let mut how = "ACL DRYRUN";
    for (node, rights) in results {
        let list = match rights {
            Rights::Judged { denied, how: h } => {
                how = h;
                denied
            }
            Rights::Partial { denied, why } => {
                partial.push(format!("{why}{node}"));
                how = "running the read-only commands";
                denied
            }
        };
        for (c, words) in list {
            // A key pattern that denies the key asked about is not a missing right: the
            // command runs on the keys the patterns allow, and the others are refused one
            // by one (which `--on-key-error skip` sets aside).
            if is_key_pattern_denial(&words) {
                keys_denied.push(format!("{c}{node}: {}", words.trim()));
                continue;
            }
            denied.push(format!("{c}{node}: {}", words.trim()));
            if !names.contains(&c) {
                names.push(c);
            }
        }
    }
    if !keys_denied.is_empty() {
        out.push(Check::warn(
            format!("{side}: ACL key patterns"),
            format!(
                "the user's key patterns do not cover every key: {}",
                keys_denied.join("; ")
            ),
            format!(
                "keys outside the patterns will be refused: widen them (ACL SETUSER {user} ~*), or \
                 copy the rest with --on-key-error skip and the refused ones later with --keys-from"
            ),
        ));
    }
    if !denied.is_empty() {
        let grants: Vec<String> = names
            .iter()
            .map(|c| format!("+{}", c.to_ascii_lowercase().replace(' ', "|")))
            .collect();
        out.push(Check::fail(
            &name,
            format!("may not run {}: {}", names.join(", "), denied.join("; ")),
            format!(
                "grant them: ACL SETUSER {user} {} (or use a user that has them); a renamed command must be restored",
                grants.join(" ")
            ),
        ));
    }
    if !partial.is_empty() && !unchecked.is_empty() {
        out.push(Check::warn(
            match unchecked {
                [only] => format!("{side}: ACL rights ({only})"),
                [first, ..] => format!("{side}: ACL rights ({first} and the big-key writes)"),
                [] => format!("{side}: ACL rights"),
            },
            format!(
                "not checked: {} cannot be tried without writing, and {}",
                unchecked.join(", "),
                partial.join("; ")
            ),
            format!(
                "make sure the user may run {} (ACL GETUSER), or grant it the right to run ACL DRYRUN",
                unchecked.join(", ")
            ),
        ));
    }
    if denied.is_empty() {
        out.push(Check::ok(
            &name,
            format!("every command ferry sends is allowed (checked by {how})"),
        ));
    }
}

/// Whether the node's user may run `parts` (by `ACL DRYRUN`): `Ok(None)` allowed,
/// `Ok(Some(words))` denied, `Err(why)` when that cannot be known without running it.
pub(crate) async fn may_run(node: &mut Node, parts: &[&[u8]]) -> Result<Option<String>, String> {
    match dryrun(node, &[cmd(parts)]).await? {
        Rights::Judged { denied, .. } => Ok(denied.into_iter().next().map(|(_, w)| w)),
        Rights::Partial { why, .. } => Err(why),
    }
}
