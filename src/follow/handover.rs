//! The follower's side of a cutover (`ferry cutover` and its files are `cutover.rs`): methods
//! of [`Follower`], which its loop calls when a request comes.
//!
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
//!
//! May call: `follow::follower` (the follower it is a part of), `follow::cutover` (the request
//! and the verdict), `follow::reconcile`, `follow::dirty`, `verify` (the rechecks), `report`.

use std::time::{Duration, Instant};

use super::cutover::{Request, Verdict};
use super::dirty::DbKey;
use super::follower::Follower;
use super::reconcile::unlimited;
use crate::read::clock::now_ms;
use crate::verify::rechecks::{recheck_once, Candidate, Tally};
use crate::verify::DiffKind;

/// Keys a verdict names.
const NAMED: usize = 20;

impl Follower {
    /// The follower's side of a cutover (see the module doc).
    pub(super) async fn cutover(&mut self, req: &Request) -> Verdict {
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
        let outcome = self.reconcile_pass().await?;
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

    /// `CLIENT PAUSE ms WRITE` on the source, every master of a cluster (6.2+).
    async fn pause_source(&mut self, secs: u64) -> anyhow::Result<()> {
        if self.source_version < (6, 2) {
            anyhow::bail!(
                "--pause-source needs Redis 6.2+ on the source (CLIENT PAUSE … WRITE); before 6.2 a pause stops reads \
                 too, so nothing could be verified. Stop the application's writes and run ferry cutover without it"
            );
        }
        let ms = (secs * 1000).to_string();
        for m in &self.masters {
            let mut c = m.connect().await?;
            let reply = c
                .cmd(&[b"CLIENT".as_slice(), b"PAUSE", ms.as_bytes(), b"WRITE"])
                .await?;
            if let Some(e) = reply.error() {
                anyhow::bail!(
                    "the source {} refused CLIENT PAUSE: {e} (the ACL user needs +client|pause, or stop the \
                     application's writes and run ferry cutover without --pause-source)",
                    m.endpoint
                );
            }
        }
        eprintln!("ferry: cutover: the source's writes are paused for at most {secs} s");
        Ok(())
    }

    /// `CLIENT UNPAUSE` (best effort: the pause ends by itself anyway).
    async fn unpause_source(&mut self) {
        for m in &self.masters {
            if let Ok(mut c) = m.connect().await {
                let _ = c.cmd(&[b"CLIENT".as_slice(), b"UNPAUSE"]).await;
            }
        }
    }
}
