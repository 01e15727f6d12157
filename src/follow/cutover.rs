//! `ferry cutover`: asking the running follower to cut over, and the follower's side of it.
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
//! # The follower's cutover
//! 1. Quiet: with `--pause-source S`, `CLIENT PAUSE S*1000 WRITE` (Redis 6.2+; the server ends
//!    the pause by itself, so it never exceeds S); otherwise wait until no event came for
//!    `--quiet` seconds and nothing is dirty (up to `--timeout`).
//! 2. Drain: a barrier on the subscription (every event published so far is in), then every
//!    dirty key applied.
//! 3. Verify: when the ledger is usable (events flowed without a gap since the last clean
//!    reconciliation pass, see `ledger.rs`) only its keys are compared, so the pause does not
//!    grow with the dataset; otherwise (or with `--full-verify`) a full pass. Keys that differ
//!    are re-applied and compared again, up to `--rounds` comparisons.
//! 4. GO (exit 0) when nothing differs and nothing was dirtied meanwhile; NO-GO (exit 1) naming
//!    the keys that still differ; 2 on error. A paused source stays paused after GO until the
//!    pause ends (the window to switch the application); after NO-GO it is unpaused at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dirty::DbKey;
use super::{unlimited, Follower};
use crate::checkpoint::write_atomic;
use crate::plan::CutoverPlan;
use crate::read::clock::now_ms;
use crate::verify::rechecks::{recheck_once, Candidate, Tally};
use crate::verify::DiffKind;

/// A heartbeat older than this means the follower is gone.
const STALE_MS: i64 = 10_000;

/// Keys a verdict names.
const NAMED: usize = 20;

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
    fn error(id: &str, msg: String) -> Verdict {
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

impl Follower {
    /// The follower's side of a cutover (see the module doc).
    pub(crate) async fn cutover(&mut self, req: &Request) -> Verdict {
        let mut v = Verdict {
            id: req.id.clone(),
            requested_at_ms: now_ms(),
            ..Verdict::default()
        };
        let pause = match req.pause_source_secs {
            Some(secs) => match self.pause_source(secs).await {
                Ok(()) => Some((Instant::now(), Duration::from_secs(secs))),
                // Nothing changed yet: the follower goes on following.
                Err(e) => {
                    return Verdict {
                        still_following: true,
                        ..Verdict::error(&req.id, format!("{e:#}; the follower goes on following"))
                    }
                }
            },
            None => None,
        };
        let result = self.cutover_paused(req, pause, &mut v).await;
        if let Err(e) = result {
            v = Verdict {
                requested_at_ms: v.requested_at_ms,
                ..Verdict::error(&req.id, format!("{e:#}"))
            };
        }
        v.decided_at_ms = now_ms();
        if let Some((at, len)) = pause {
            v.paused_ms = Some(at.elapsed().as_millis() as u64);
            if v.code == 0 {
                let left = len.saturating_sub(at.elapsed());
                v.pause_ends_at_ms = Some(now_ms() + left.as_millis() as i64);
                v.lines.push(format!(
                    "the source's writes were paused for {:.1} s so far and stay paused {:.1} s more (--pause-source): switch the application now",
                    at.elapsed().as_secs_f64(),
                    left.as_secs_f64()
                ));
            } else {
                self.unpause_source().await;
                v.lines.push(format!(
                    "the source's writes were paused for {:.1} s, and are unpaused",
                    at.elapsed().as_secs_f64()
                ));
            }
        }
        v
    }

    async fn cutover_paused(
        &mut self,
        req: &Request,
        pause: Option<(Instant, Duration)>,
        v: &mut Verdict,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        // 1 + 2: quiet, drained.
        let quiet = self.wait_quiet(req, pause.is_some(), v).await?;
        v.quiet_wait_ms = started.elapsed().as_millis() as u64;
        if !quiet {
            return Ok(());
        }
        let verifying = Instant::now();
        // 3: what to verify, then compare.
        let (incremental, to_check) = self.keys_to_verify(req, v).await?;
        let Some(round) = self.compare_rounds(to_check, incremental, v).await? else {
            return Ok(());
        };
        if let Some((at, len)) = pause {
            if at.elapsed() > len {
                v.code = 1;
                v.verdict = "NO-GO".into();
                v.lines.push(format!(
                    "NO-GO: the verification took longer than the {} s pause, so the source may have been written \
                     after it; rerun ferry cutover with a longer --pause-source",
                    len.as_secs()
                ));
                return Ok(());
            }
        }
        v.code = 0;
        v.verdict = "GO".into();
        v.rounds = round;
        v.verify_ms = verifying.elapsed().as_millis() as u64;
        v.lines.push(format!(
            "GO: the target equals the source ({} verification of {} keys in {:.2} s, {} round{}; {})",
            v.verification,
            v.keys_verified,
            v.verify_ms as f64 / 1000.0,
            round,
            if round == 1 { "" } else { "s" },
            if pause.is_some() {
                "writes paused".to_string()
            } else if self.reliable {
                format!(
                    "no source write for {} s, after waiting {:.1} s",
                    req.quiet_secs,
                    v.quiet_wait_ms as f64 / 1000.0
                )
            } else {
                "the source's keyspace events are not used, so quiet was not checked".to_string()
            }
        ));
        Ok(())
    }

    /// Drains until the source is quiet (no event for `--quiet` seconds, nothing dirty); at once
    /// when `paused` or without usable events. False (with a NO-GO in `v`) after `--timeout`.
    async fn wait_quiet(
        &mut self,
        req: &Request,
        paused: bool,
        v: &mut Verdict,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(req.timeout_secs);
        loop {
            self.drain().await?;
            if paused || !self.reliable {
                return Ok(true);
            }
            let last = self
                .shared
                .last_event_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let quiet_ms = now_ms() - last;
            if self.shared.marks().dirty.is_empty() && quiet_ms >= (req.quiet_secs * 1000) as i64 {
                return Ok(true);
            }
            if Instant::now() > deadline {
                v.code = 1;
                v.verdict = "NO-GO".into();
                v.still_following = true;
                v.lines.push(format!(
                    "NO-GO: the source did not go quiet within {} s (last event {} ms ago, {} keys dirty). Stop the \
                     application's writes, or use --pause-source SECS; the follower goes on following",
                    req.timeout_secs,
                    quiet_ms,
                    self.shared.marks().dirty.len()
                ));
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The keys to compare: the ledger's when it proves the rest equal (incremental), else those
    /// a full pass found different (already re-copied).
    async fn keys_to_verify(
        &mut self,
        req: &Request,
        v: &mut Verdict,
    ) -> anyhow::Result<(bool, Vec<DbKey>)> {
        let incremental = self.reliable && !req.full_verify && self.shared.marks().ledger.usable();
        if incremental {
            v.verification = "incremental".into();
            let keys = self.shared.marks().ledger.keys().unwrap_or_default();
            return Ok((true, keys));
        }
        v.verification = "full".into();
        let outcome = super::reconcile::pass(
            self.source.clone(),
            self.job.clone(),
            self.pairs.clone(),
            self.share.clone(),
            self.tolerance_ms,
            self.stop.clone(),
        )
        .await?;
        self.stats.note_pass(&outcome);
        v.keys_verified = outcome.keys_total;
        self.apply(&outcome.differing).await?;
        Ok((false, outcome.differing))
    }

    /// Compares `to_check` (plus whatever gets dirty meanwhile) on both sides, re-copying what
    /// differs, up to `--rounds` comparisons. `Some(rounds)` when everything agreed and nothing
    /// was written meanwhile; `None` with a NO-GO naming keys in `v`.
    async fn compare_rounds(
        &mut self,
        mut to_check: Vec<DbKey>,
        incremental: bool,
        v: &mut Verdict,
    ) -> anyhow::Result<Option<u32>> {
        let (src, dst) =
            crate::verify::open_sides(&self.source, &self.job, unlimited(), self.share.clone())
                .await?;
        let mut tally = Tally::default();
        let mut round = 0;
        loop {
            round += 1;
            to_check.extend(self.drain().await?);
            to_check.sort();
            to_check.dedup();
            if incremental {
                v.keys_verified = v.keys_verified.max(to_check.len() as u64);
            }
            let cands = self.candidates(&to_check);
            let still = recheck_once(
                &src,
                &dst,
                &self.pairs,
                cands,
                self.tolerance_ms,
                &mut tally,
            )
            .await?;
            let settled = self.barrier().await && self.shared.marks().dirty.is_empty();
            if still.is_empty() && settled {
                return Ok(Some(round));
            }
            if round >= self.rounds {
                self.no_go(&still, settled, round, v);
                return Ok(None);
            }
            to_check = still
                .iter()
                .filter_map(|c| Some((self.pairs.get(c.pair)?.0, c.key.clone())))
                .collect();
            self.apply(&to_check).await?;
            tokio::time::sleep(self.round_pause).await;
        }
    }

    /// `keys` as verification candidates (by database pair).
    fn candidates(&self, keys: &[DbKey]) -> Vec<Candidate> {
        keys.iter()
            .filter_map(|(db, key)| {
                Some(Candidate {
                    pair: self.pairs.iter().position(|p| p.0 == *db)?,
                    key: key.clone(),
                    kind: DiffKind::Value,
                    detail: String::new(),
                    expiry: None,
                })
            })
            .collect()
    }

    /// Fills `v` with a NO-GO naming the first keys of `still`.
    fn no_go(&self, still: &[Candidate], settled: bool, round: u32, v: &mut Verdict) {
        v.code = 1;
        v.verdict = "NO-GO".into();
        v.rounds = round;
        v.differences = still
            .iter()
            .take(NAMED)
            .map(|c| {
                let db = self.pairs.get(c.pair).map_or(0, |p| p.0);
                format!(
                    "db {db} key {}: {} ({})",
                    crate::report::escape_key(&c.key),
                    c.kind.name(),
                    c.detail
                )
            })
            .collect();
        v.lines.push(format!(
            "NO-GO: {} keys still differ after {round} comparisons{}",
            still.len(),
            if settled {
                ""
            } else {
                " (and the source is still being written)"
            }
        ));
        v.lines
            .extend(v.differences.iter().map(|d| format!("  {d}")));
    }
}
