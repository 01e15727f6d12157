//! A shared "please stop" flag, raised by Ctrl-C / SIGTERM or by a failing task.
//!
//! Readers check it between pages; writers keep draining what is already queued, so a stop
//! always ends with every in-flight batch acknowledged and the checkpoint saved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cloneable stop flag.
#[derive(Clone, Default)]
pub struct Stop {
    raised: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
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
    }

    /// True once someone asked to stop.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// True when the stop came from a signal.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}
