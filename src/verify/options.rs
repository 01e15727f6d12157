//! How a verification runs: the settings every kind of verification (full, sample, listed; live
//! or file side) takes from the command's plan.

use std::sync::Arc;
use std::time::Duration;

use super::listed::KeyLists;
use crate::plan::{Output, VerifySettings};
use crate::progress::ProgressMode;

/// How a verification runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--ttl-tolerance`, ms.
    pub tolerance_ms: u64,
    /// `--rounds` (at least 1).
    pub rounds: u32,
    /// `--round-pause`.
    pub round_pause: Duration,
    /// `--sample N`.
    pub sample: Option<u64>,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--log-every`.
    pub log_every: Duration,
    /// `migrate --keys-from`: compare only these keys (by source DB), see `listed.rs`.
    pub listed: Option<Arc<KeyLists>>,
}

impl Options {
    /// From the plan's shared settings.
    pub fn new(verify: &VerifySettings, output: &Output, sample: Option<u64>) -> Options {
        Options {
            tolerance_ms: verify.ttl_tolerance_ms,
            rounds: verify.rounds.max(1),
            round_pause: verify.round_pause,
            sample,
            progress: output.progress,
            log_every: output.log_every.max(Duration::from_secs(1)),
            listed: None,
        }
    }
}
