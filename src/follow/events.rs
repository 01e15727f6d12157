//! The subscription: keyspace events of the source, turned into dirty keys.
//!
//! ferry subscribes with `PSUBSCRIBE __keyevent@*__:*` before the first SCAN, so every write
//! that the copy may miss has an event. A keyevent message names the event in its channel
//! (`__keyevent@3__:del`) and carries the key as its payload; whatever the event (set, del,
//! expired, evicted, rename_from, move_to, …) the key is only marked dirty: the follower re-reads
//! it and writes what it finds, or deletes it on the target when it is gone. So no event needs
//! interpreting, and a missed interpretation cannot lose data.
//!
//! Pub/sub delivers at most once: a dropped or killed connection (or an output buffer overflow,
//! which makes the server drop the client) loses the events sent meanwhile, silently. Every such
//! loss is reported to [`Shared::gap`], which schedules a reconciliation pass — twice: when the
//! connection is lost, and again once subscribed again, because only a pass that *starts* after
//! the new subscription is up can see every write of the window (one started in between may read
//! a key before a write whose event was lost). A `PING` every
//! second keeps the connection checked; its reply also serves as a *barrier*: a write whose
//! event was published before the server answered the `PING` has been marked dirty when
//! [`Subscription::barrier`] returns (replies on one connection arrive in order).
//!
//! Without notifications (`notify-keyspace-events` lacks the classes needed) no event comes, and
//! the follower follows by reconciliation passes alone; see `check::notify::probe`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::state::Shared;
use crate::endpoint::{Connection, Pipeline, Reply, Server};
use crate::stop::Stop;

/// The pattern subscribed to.
const PATTERN: &[u8] = b"__keyevent@*__:*";

/// A `PING` unanswered for this long means the connection is dead.
const PING_DEADLINE: Duration = Duration::from_secs(15);

/// A running subscription.
pub struct Subscription {
    barriers: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// Subscribes (returning once the server confirmed it), then follows in a task.
    pub async fn start(server: Server, shared: Arc<Shared>, stop: Stop) -> anyhow::Result<Self> {
        let conn = subscribe(&server).await?;
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(server, conn, shared, rx, stop));
        Ok(Subscription { barriers: tx, task })
    }

    /// Waits until every event published before now has been marked dirty (see the module
    /// doc). Returns false when the connection was lost meanwhile (a gap is recorded then).
    pub async fn barrier(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.barriers.send(tx).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(server: &Server) -> anyhow::Result<Connection> {
    let mut conn = server.connect().await?;
    let reply = conn.cmd(&[b"PSUBSCRIBE".as_slice(), PATTERN]).await?;
    if let Some(err) = reply.error() {
        anyhow::bail!(
            "the source {} refused PSUBSCRIBE: {err} (the ACL user needs +psubscribe and &* for --follow)",
            server.endpoint
        );
    }
    Ok(conn)
}

/// What woke the loop.
enum Wake {
    Reply(Result<Reply, crate::endpoint::ConnError>),
    Tick,
    Barrier(Option<oneshot::Sender<()>>),
}

async fn run(
    server: Server,
    conn: Connection,
    shared: Arc<Shared>,
    mut barriers: mpsc::Receiver<oneshot::Sender<()>>,
    stop: Stop,
) {
    let mut conn = Some(conn);
    // PINGs sent, oldest first: when sent, and who waits for the reply (none for a keepalive).
    let mut pings: VecDeque<(Instant, Option<oneshot::Sender<()>>)> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ping = Pipeline::new();
    ping.cmd(&[b"PING"]);
    let mut replies = Vec::with_capacity(1);
    while !stop.is_raised() {
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match subscribe(&server).await {
                Ok(c) => {
                    conn = Some(c);
                    // The loss window ends only now: a pass that started while the subscription
                    // was down may have read keys before writes whose events were lost, so it
                    // must not count as clean. A second gap makes the follower run another pass.
                    shared.gap(format!(
                        "subscribed again to the source {}'s events; writes since the loss are reconciled",
                        server.endpoint
                    ));
                }
                Err(e) => tracing::warn!("follow: cannot subscribe again yet: {e:#}"),
            }
            continue;
        };
        replies.clear();
        let wake = tokio::select! {
            r = c.recv_into(1, &mut replies) => Wake::Reply(r.map(|()| replies.pop().unwrap_or(Reply::Bulk(None)))),
            _ = tick.tick() => Wake::Tick,
            b = barriers.recv() => Wake::Barrier(b),
        };
        let lost = match wake {
            Wake::Reply(Ok(reply)) => {
                if on_message(reply, &shared) {
                    if let Some((_, Some(w))) = pings.pop_front() {
                        let _ = w.send(());
                    }
                }
                None
            }
            Wake::Reply(Err(e)) => Some(e.to_string()),
            Wake::Tick => {
                let late = pings
                    .front()
                    .is_some_and(|(at, _)| at.elapsed() > PING_DEADLINE);
                if late {
                    Some(format!("no PING reply for {}s", PING_DEADLINE.as_secs()))
                } else {
                    pings.push_back((Instant::now(), None));
                    c.send(&ping).await.err().map(|e| e.to_string())
                }
            }
            Wake::Barrier(None) => return,
            Wake::Barrier(Some(w)) => {
                pings.push_back((Instant::now(), Some(w)));
                c.send(&ping).await.err().map(|e| e.to_string())
            }
        };
        if let Some(why) = lost {
            conn = None;
            // Waiters see their sender dropped: the barrier failed.
            pings.clear();
            shared.gap(format!(
                "the subscription to the source's events was lost ({why})"
            ));
        }
    }
}

/// Handles one message; true for the reply to a `PING`.
fn on_message(reply: Reply, shared: &Shared) -> bool {
    let Reply::Array(Some(parts)) = reply else {
        return false;
    };
    let kind = parts.first().and_then(Reply::as_bytes).unwrap_or_default();
    if kind.eq_ignore_ascii_case(b"pong") {
        return true;
    }
    if kind == b"pmessage" {
        let channel = parts.get(2).and_then(Reply::as_bytes).unwrap_or_default();
        if let (Some(db), Some(key)) = (channel_db(channel), parts.get(3).and_then(Reply::as_bytes))
        {
            shared.event(db, key);
        }
    }
    false
}

/// The DB of a key-event channel: `__keyevent@3__:del` → 3.
fn channel_db(channel: &[u8]) -> Option<u32> {
    let rest = channel.strip_prefix(b"__keyevent@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels() {
        assert_eq!(channel_db(b"__keyevent@3__:del"), Some(3));
        assert_eq!(channel_db(b"__keyevent@12__:expired"), Some(12));
        assert_eq!(channel_db(b"__keyspace@3__:k"), None);
    }
}
