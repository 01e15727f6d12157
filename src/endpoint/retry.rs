//! Retrying lost connections: growing pauses within the `--retry-for` budget, then a clear error.
//!
//! Every phase after the checks before writing — the conflict check, the copy's readers and
//! writers, verification — survives a server restart, a killed connection or a network blip by
//! reconnecting and redoing its current step; only after `--retry-for` seconds of failures does
//! the job stop, and the checkpoint makes a rerun resume. A server that stops answering without
//! closing the connection counts the same way: each wait is bounded by [`answer_timeout`], and
//! the budget counts from the start of the silence, so a stalled server ends the job about
//! `--retry-for` after it stopped answering.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{ConnError, Connection, Pipeline, Reply, Server};

/// Longest pause between attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// How long any one wait for a server (connect, TLS handshake, a write, a read) may last before
/// the connection counts as lost: half of `--retry-for`, so that one reconnect still fits in the
/// budget, and at least a second. Generous by default (30 s), because a `RESTORE` of a huge value
/// or a `DUMP` on a busy server can legitimately take seconds.
pub fn answer_timeout(retry_for: Duration) -> Duration {
    (retry_for / 2).max(Duration::from_secs(1))
}

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
    /// `err` is a lost connection ([`ConnError`]) or any other transient refusal, such as a
    /// cluster's `TRYAGAIN` / `CLUSTERDOWN` while slots move or a node restarts. For a server
    /// that went silent, the budget counts from the start of its silence.
    pub async fn wait<E: Into<anyhow::Error>>(&mut self, err: E) -> anyhow::Result<()> {
        let err: anyhow::Error = err.into();
        let silent = err
            .downcast_ref::<ConnError>()
            .and_then(ConnError::silent_for)
            .unwrap_or_default();
        let first = *self.first_failure.get_or_insert_with(|| {
            Instant::now()
                .checked_sub(silent)
                .unwrap_or_else(Instant::now)
        });
        self.attempts += 1;
        let elapsed = first.elapsed();
        if elapsed >= self.budget {
            return Err(err.context(format!(
                "gave up after {} attempt(s) over {}s (--retry-for {}): rerun the same command once the \
                 server answers again (a copy resumes from its checkpoint), or raise --retry-for if it needs longer",
                self.attempts,
                elapsed.as_secs(),
                self.budget.as_secs()
            )));
        }
        // The last pause ends with the budget, so the last attempt comes before giving up.
        let pause = self.delay.min(self.budget - elapsed);
        tracing::warn!(
            "{err}; retrying in {} ms (attempt {}, giving up {}s after the first failure: --retry-for)",
            pause.as_millis(),
            self.attempts,
            self.budget.as_secs()
        );
        tokio::time::sleep(pause).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Ok(())
    }
}

/// True for errors a reconnect may fix: a lost, refused or stalled connection.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConnError>()
        .is_some_and(ConnError::is_transient)
}

/// Runs `attempt` until it succeeds, retrying transient connection failures ([`is_transient`])
/// with a [`Backoff`] of `budget`; other errors are returned at once. Each attempt must redo its
/// step from scratch (open its own connections), so use it for steps that only read.
///
/// For the first contact with a server: a first attempt that cannot connect at all (nothing
/// listens there: a wrong host or port) is reported at once; only a server reached once, or
/// one that accepts connections but stalls, is waited for.
pub async fn retrying<T, F, Fut>(budget: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::new(budget);
    let mut first = true;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if first && matches!(e.downcast_ref(), Some(ConnError::Connect { .. })) => {
                return Err(e)
            }
            Err(e) if is_transient(&e) => backoff.wait(e).await?,
            Err(e) => return Err(e),
        }
        first = false;
    }
}

/// A connection to one server for steps that only read (the conflict check): opened on first
/// use, and opened again — with its DB selected again — when lost, for up to `budget` per
/// command. Re-sending is safe because nothing sent through it writes.
pub struct Link {
    server: Server,
    conn: Option<Connection>,
    db: u32,
    budget: Duration,
}

impl Link {
    /// A link to `server` (connects lazily).
    pub fn new(server: Server, budget: Duration) -> Link {
        Link {
            server,
            conn: None,
            db: 0,
            budget,
        }
    }

    /// The server, for messages (no password).
    pub fn endpoint(&self) -> String {
        self.server.endpoint.to_string()
    }

    /// Makes `db` the DB of every later command (a standalone server).
    pub fn select(&mut self, db: u32) {
        self.db = db;
    }

    /// Runs `p` and returns its replies, reconnecting on a lost connection.
    pub async fn run(&mut self, p: &Pipeline) -> anyhow::Result<Vec<Reply>> {
        let mut backoff = Backoff::new(self.budget);
        loop {
            let result = async {
                let conn = match &mut self.conn {
                    Some(c) => c,
                    None => self.conn.insert(self.server.connect().await?),
                };
                conn.select(self.db).await?;
                Ok(conn.run(p).await?)
            }
            .await;
            match result {
                Ok(replies) => return Ok(replies),
                Err(e) if is_transient(&e) => {
                    self.conn = None;
                    backoff.wait(e).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one command.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> anyhow::Result<Reply> {
        let mut p = Pipeline::new();
        p.cmd(args);
        let mut replies = self.run(&p).await?;
        Ok(replies.pop().unwrap_or(Reply::Bulk(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_timeout_is_half_the_budget_and_at_least_a_second() {
        assert_eq!(
            answer_timeout(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            answer_timeout(Duration::from_secs(0)),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn a_silence_counts_against_the_budget() {
        let stalled = || ConnError::Stalled {
            side: "target",
            ep: "redis://h:1".into(),
            what: "the reply to PING".into(),
            waited: Duration::from_secs(3),
            limit: Duration::from_secs(3),
        };
        let mut b = Backoff::new(Duration::from_secs(5));
        assert!(b.wait(stalled()).await.is_ok());
        let mut b = Backoff::new(Duration::from_secs(3));
        let err = b.wait(stalled()).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("redis://h:1") && text.contains("--retry-for 3"),
            "{text}"
        );
    }
}
