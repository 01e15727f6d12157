//! Backoff for lost connections: retry with growing pauses, then fail with a clear message.
//!
//! Both the SCAN reader and the RESTORE writer survive a server restart or a network blip by
//! reconnecting and redoing their current step; only after `--retry-for` seconds of failures does
//! the job stop, and the checkpoint makes a rerun resume.

use std::time::{Duration, Instant};

/// Retry state of one task.
pub struct Backoff {
    budget: Duration,
    first_failure: Option<Instant>,
    delay: Duration,
    attempts: u32,
}

impl Backoff {
    /// Retries for at most `budget` after the first failure.
    pub fn new(budget: Duration) -> Backoff {
        Backoff {
            budget,
            first_failure: None,
            delay: Duration::from_millis(100),
            attempts: 0,
        }
    }

    /// Called after a success: the next failure starts a fresh budget.
    pub fn reset(&mut self) {
        self.first_failure = None;
        self.delay = Duration::from_millis(100);
        self.attempts = 0;
    }

    /// Waits before the next attempt, or gives up with `err` once the budget is spent.
    ///
    /// `err` is a lost connection ([`ConnError`](crate::endpoint::ConnError)) or any other transient refusal, such as a
    /// cluster's `TRYAGAIN` / `CLUSTERDOWN` while slots move or a node restarts.
    pub async fn wait<E: Into<anyhow::Error>>(&mut self, err: E) -> anyhow::Result<()> {
        let err: anyhow::Error = err.into();
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        self.attempts += 1;
        if first.elapsed() >= self.budget {
            return Err(err.context(format!(
                "gave up after {} attempts over {}s (--retry-for); rerun the same command to resume from the checkpoint",
                self.attempts,
                first.elapsed().as_secs()
            )));
        }
        tracing::warn!(
            "{err}; retrying in {} ms (attempt {})",
            self.delay.as_millis(),
            self.attempts
        );
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        Ok(())
    }
}
