//! `ferry cutover`: asking the running follower to cut over, and how the request and the
//! verdict travel between them.
//!
//! # Finding the follower
//! Through files next to its checkpoint `CP` — no socket, no port, nothing to secure beyond the
//! directory the checkpoint already lives in:
//! - `CP.follow.json`: the follower's heartbeat (pid, lag), rewritten every second. Missing or
//!   stale (> 10 s): no follower runs, and `ferry cutover` says so instead of waiting forever.
//! - `CP.cutover-request.json`: written by `ferry cutover` (atomically); the follower polls for it
//!   every 200 ms, removes it and cuts over.
//! - `CP.cutover-result.json`: the follower's verdict, with the request's id; `ferry cutover`
//!   prints it and exits with its code.
//!
//! With several `--checkpoint`s (the followers of a `--partition` job) every follower gets the
//! request at once and answers for its share; the verdicts are combined into one, GO only when
//! every follower said GO.
//!
//! The follower's side of a request (quiet, drain, verify, verdict) is `handover.rs`.
//!
//! May call: `checkpoint` (atomic writes), `plan` (`ferry cutover`'s flags). Nothing else of
//! `follow`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::plan::CutoverPlan;
use crate::read::clock::now_ms;

/// A heartbeat older than this means the follower is gone.
const STALE_MS: i64 = 10_000;

/// What `ferry cutover` asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Matches the verdict to the request.
    pub id: String,
    /// How long to wait for a quiet source, in seconds.
    pub timeout_secs: u64,
    /// `--pause-source`: pause the source's writes for at most this many seconds.
    pub pause_source_secs: Option<u64>,
    /// `--full-verify`.
    pub full_verify: bool,
    /// `--quiet`: seconds without events that make the source quiet.
    pub quiet_secs: u64,
    /// Unix ms when it was made: a follower ignores requests older than itself.
    pub created_ms: i64,
}

/// The follower's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// The request's id.
    pub id: String,
    /// 0 GO, 1 NO-GO, 2 error.
    pub code: i32,
    /// "GO", "NO-GO" or "ERROR".
    pub verdict: String,
    /// What to tell the operator, one line each.
    pub lines: Vec<String>,
    /// "incremental" (the ledger's keys) or "full".
    pub verification: String,
    /// Keys compared by the final verification.
    pub keys_verified: u64,
    /// Keys that still differ (the first few, escaped), for a NO-GO.
    pub differences: Vec<String>,
    /// Verification rounds run.
    pub rounds: u32,
    /// How long the follower waited for the source to be quiet, ms.
    pub quiet_wait_ms: u64,
    /// How long the drain and the verification took, ms (the write pause a cutover costs once
    /// the application stopped writing).
    pub verify_ms: u64,
    /// How long writes were paused until the verdict, ms (with --pause-source).
    pub paused_ms: Option<u64>,
    /// Unix ms at which the source's pause ends by itself (after a GO).
    pub pause_ends_at_ms: Option<i64>,
    /// Unix ms of the request and of the verdict.
    pub requested_at_ms: i64,
    /// Unix ms of the verdict.
    pub decided_at_ms: i64,
    /// True when the follower went on following (the source never went quiet).
    pub still_following: bool,
    /// With several `--checkpoint`s: each follower's own verdict, in their order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Verdict>,
}

impl Verdict {
    /// An error verdict (exit 2) saying `msg`.
    pub(super) fn error(id: &str, msg: String) -> Verdict {
        Verdict {
            id: id.to_string(),
            code: 2,
            verdict: "ERROR".into(),
            lines: vec![msg],
            ..Verdict::default()
        }
    }
}

fn sibling(cp: &Path, suffix: &str) -> PathBuf {
    let mut name = cp.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    cp.with_file_name(name)
}

/// The follower's heartbeat file.
pub fn heartbeat_path(cp: &Path) -> PathBuf {
    sibling(cp, ".follow.json")
}

/// Where `ferry cutover` leaves its request.
pub fn request_path(cp: &Path) -> PathBuf {
    sibling(cp, ".cutover-request.json")
}

/// Where the follower leaves its verdict.
pub fn result_path(cp: &Path) -> PathBuf {
    sibling(cp, ".cutover-result.json")
}

/// Takes a pending request made after `since_ms`, if any (a malformed or older one is removed
/// and reported).
pub fn take_request(cp: &Path, since_ms: i64) -> Option<Request> {
    let path = request_path(cp);
    let data = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    match serde_json::from_slice::<Request>(&data) {
        Ok(r) if r.created_ms >= since_ms => Some(r),
        Ok(_) => {
            tracing::warn!("follow: ignoring a cutover request made before this follower started");
            None
        }
        Err(e) => {
            tracing::warn!(
                "follow: ignoring the malformed cutover request {}: {e}",
                path.display()
            );
            None
        }
    }
}

/// Runs `ferry cutover`: asks the follower of every `--checkpoint` (one per `--partition`
/// worker) at once and waits for all their verdicts; several verdicts are combined, GO only when
/// every follower answered GO.
pub async fn command(plan: &CutoverPlan) -> Verdict {
    let id = format!("{}-{}", std::process::id(), now_ms());
    let cps = &plan.checkpoints;
    for (i, cp) in cps.iter().enumerate() {
        if let Err(e) = request(cp, &id, plan) {
            // Nobody acts on part of a cutover: withdraw the requests already made.
            for cp in &cps[..i] {
                let _ = std::fs::remove_file(request_path(cp));
            }
            return Verdict::error(&id, e);
        }
        eprintln!(
            "ferry: cutover requested from the follower of {}; waiting for its verdict",
            cp.display()
        );
    }
    let mut verdicts: Vec<Option<Verdict>> = vec![None; cps.len()];
    while verdicts.iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (cp, slot) in cps.iter().zip(verdicts.iter_mut()) {
            if slot.is_none() {
                *slot = poll(cp, &id);
            }
        }
    }
    let verdicts: Vec<Verdict> = verdicts.into_iter().flatten().collect();
    match verdicts.as_slice() {
        [one] => one.clone(),
        _ => combine(&id, cps, verdicts),
    }
}

/// Ok when the follower of `cp` has reported within [`STALE_MS`].
fn alive(cp: &Path) -> Result<(), String> {
    let hb = heartbeat_path(cp);
    let text = std::fs::read(&hb).map_err(|_| {
        format!(
            "no follower is running for the checkpoint {} (no heartbeat file {}): start `ferry migrate … --follow --checkpoint {}` first",
            cp.display(),
            hb.display(),
            cp.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    let age = now_ms() - v["updated_ms"].as_i64().unwrap_or(0);
    if age > STALE_MS {
        return Err(format!(
            "the follower of the checkpoint {} last reported {} s ago ({}): it is not running. Rerun the same \
             `ferry migrate … --follow` command (it reconciles and follows on), then ferry cutover again",
            cp.display(),
            age / 1000,
            hb.display()
        ));
    }
    Ok(())
}

/// Leaves the request `id` for the follower of `cp`, if one runs.
fn request(cp: &Path, id: &str, plan: &CutoverPlan) -> Result<(), String> {
    alive(cp)?;
    let req = Request {
        id: id.to_string(),
        timeout_secs: plan.timeout.as_secs(),
        pause_source_secs: plan.pause_source.map(|d| d.as_secs()),
        full_verify: plan.full_verify,
        quiet_secs: plan.quiet.as_secs(),
        created_ms: now_ms(),
    };
    let _ = std::fs::remove_file(result_path(cp));
    serde_json::to_vec(&req)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(write_atomic(&request_path(cp), &b)?))
        .map_err(|e| {
            format!(
                "cannot write the cutover request next to {}: {e}",
                cp.display()
            )
        })
}

/// The verdict of the follower of `cp` for request `id`, once there is one (or an error once
/// the follower is gone).
fn poll(cp: &Path, id: &str) -> Option<Verdict> {
    let result = result_path(cp);
    if let Ok(data) = std::fs::read(&result) {
        if let Ok(v) = serde_json::from_slice::<Verdict>(&data) {
            if v.id == id {
                let _ = std::fs::remove_file(&result);
                return Some(v);
            }
        }
    }
    alive(cp).err().map(|e| {
        // Nobody will answer: a follower started later must not act on this request.
        let _ = std::fs::remove_file(request_path(cp));
        Verdict::error(id, format!("no verdict: {e}"))
    })
}

/// One verdict for the followers of `cps` (the workers of a `--partition` job): the worst code;
/// each follower's lines prefixed with its checkpoint.
fn combine(id: &str, cps: &[PathBuf], all: Vec<Verdict>) -> Verdict {
    let code = all.iter().map(|v| v.code).max().unwrap_or(2);
    let mut v = Verdict {
        id: id.to_string(),
        code,
        verdict: match code {
            0 => "GO",
            1 => "NO-GO",
            _ => "ERROR",
        }
        .into(),
        verification: if all.iter().all(|v| v.verification == "incremental") {
            "incremental".into()
        } else {
            "full".into()
        },
        still_following: all.iter().all(|v| v.still_following),
        ..Verdict::default()
    };
    for (cp, one) in cps.iter().zip(&all) {
        let name = cp.display();
        v.lines
            .extend(one.lines.iter().map(|l| format!("[{name}] {l}")));
        v.differences
            .extend(one.differences.iter().map(|d| format!("[{name}] {d}")));
        v.keys_verified += one.keys_verified;
        v.rounds = v.rounds.max(one.rounds);
        v.quiet_wait_ms = v.quiet_wait_ms.max(one.quiet_wait_ms);
        v.verify_ms = v.verify_ms.max(one.verify_ms);
        v.paused_ms = v.paused_ms.max(one.paused_ms);
        v.pause_ends_at_ms = match (v.pause_ends_at_ms, one.pause_ends_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        v.decided_at_ms = v.decided_at_ms.max(one.decided_at_ms);
        v.requested_at_ms = match v.requested_at_ms {
            0 => one.requested_at_ms,
            t => t.min(one.requested_at_ms),
        };
    }
    let go = all.iter().filter(|v| v.code == 0).count();
    v.lines.push(if go == all.len() {
        format!(
            "GO: all {} followers answered GO: the target equals the source",
            all.len()
        )
    } else {
        let ended: Vec<String> = cps
            .iter()
            .zip(&all)
            .filter(|(_, v)| !v.still_following)
            .map(|(cp, _)| cp.display().to_string())
            .collect();
        format!(
            "{}: {} of {} followers answered GO. Followers that gave a verdict stopped following ({}): rerun \
             their `ferry migrate … --follow` (each reconciles its share and follows on), then ferry cutover \
             again with every --checkpoint",
            v.verdict,
            go,
            all.len(),
            if ended.is_empty() {
                "none".to_string()
            } else {
                ended.join(", ")
            }
        )
    });
    v.shares = all;
    v
}

/// Prints a verdict's lines on stderr.
pub fn print_verdict(v: &Verdict) {
    for line in &v.lines {
        eprintln!("ferry: cutover: {line}");
    }
}

/// Writes the verdict where `ferry cutover` looks for it.
pub fn answer(cp: &Path, v: &Verdict) {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => {
            if let Err(e) = write_atomic(&result_path(cp), &b) {
                tracing::warn!("follow: cannot write the cutover verdict: {e}");
            }
        }
        Err(e) => tracing::warn!("follow: cannot encode the cutover verdict: {e}"),
    }
}
