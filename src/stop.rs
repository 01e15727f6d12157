//! A shared "please stop" flag, raised by Ctrl-C / SIGTERM or by a failing task.
//!
//! Readers check it between pages; writers keep draining what is already queued, so a stop
//! after an error ends with every in-flight batch acknowledged and the checkpoint saved. A
//! signal must end the run within a second or two even when a server stopped answering, so
//! whatever waits on the network also listens for [`Stop::interrupted`]: the copy gives its
//! batches in flight [`DRAIN_GRACE`] to be acknowledged, then abandons the rest (they are not in
//! the checkpoint, so a rerun writes them again), and [`Stop::or_abandon`] bounds every other
//! phase.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// After a signal, how long the copy waits for batches already sent to be acknowledged.
pub const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// After a signal, how long a phase may take to wind down before it is abandoned.
pub const PHASE_GRACE: Duration = Duration::from_millis(1200);

/// Cloneable stop flag.
#[derive(Clone, Default)]
pub struct Stop {
    raised: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    signal: Arc<Notify>,
}

impl Stop {
    /// A lowered flag.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every task to stop.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
    }

    /// Asks every task to stop because the user sent a signal.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.raise();
        self.signal.notify_waiters();
    }

    /// True once someone asked to stop.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// True when the stop came from a signal.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Resolves once the user sent a signal (at once if one came already).
    pub async fn interrupted(&self) {
        loop {
            let notified = self.signal.notified();
            tokio::pin!(notified);
            // Registered before the check, so a signal between the two is not missed.
            notified.as_mut().enable();
            if self.was_interrupted() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work`; after a signal it gets [`PHASE_GRACE`] to finish on its own (it sees the
    /// raised flag), then it is dropped — with its connections — and `None` is returned.
    pub async fn or_abandon<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let deadline = async {
            self.interrupted().await;
            tokio::time::sleep(PHASE_GRACE).await;
        };
        tokio::select! {
            biased;
            out = work => Some(out),
            () = deadline => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_abandons_a_stuck_phase() {
        let stop = Stop::new();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.interrupt();
        });
        let started = std::time::Instant::now();
        let out = stop.or_abandon(std::future::pending::<()>()).await;
        assert!(out.is_none());
        assert!(started.elapsed() < PHASE_GRACE + Duration::from_secs(2));
        // Already interrupted: `interrupted` resolves at once.
        stop.interrupted().await;
    }
}
