//! How a verification runs: the settings every kind of verification (full, sample, listed; live
//! or file side) takes from the command line.

use std::sync::Arc;
use std::time::Duration;

use super::listed::KeyLists;
use crate::cli::{OutputArgs, ProgressMode, VerifyTuning};

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
    /// From the shared flags.
    pub fn new(tuning: &VerifyTuning, output: &OutputArgs, sample: Option<u64>) -> Options {
        Options {
            tolerance_ms: tuning.ttl_tolerance,
            rounds: tuning.rounds.max(1),
            round_pause: Duration::from_millis(tuning.round_pause),
            sample,
            progress: output.progress,
            log_every: Duration::from_secs(output.log_every.max(1)),
            listed: None,
        }
    }
}
