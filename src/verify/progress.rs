//! Progress of a verification: keys listed on each side, as a bar on a terminal or periodic log
//! lines in a job runner, in the same modes as the copy (`--progress`, `--log-every`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::progress::ProgressMode;

/// A background task that shows progress until dropped.
pub struct Ticker {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Ticker {
    /// Starts showing the two counters against `total` (the larger side's key count; 0 if
    /// unknown). Pass 1 lists every key once per side; a re-read pass lists them again and
    /// starts by resetting both counters to 0, which the ticker shows as the next pass.
    pub fn start(
        mode: ProgressMode,
        log_every: Duration,
        total: u64,
        source: Arc<AtomicU64>,
        target: Arc<AtomicU64>,
    ) -> Ticker {
        let tty = std::io::stderr().is_terminal();
        let want_bar = mode == ProgressMode::Bar || (mode == ProgressMode::Auto && tty);
        let json = mode == ProgressMode::Json;
        let want_log = matches!(mode, ProgressMode::Log | ProgressMode::Json)
            || (mode == ProgressMode::Auto && !tty);
        let bar = want_bar.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} verify [{elapsed_precise}] {wide_bar} {pos}/{len} keys {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let shown = bar.clone();
        let task = (want_bar || want_log).then(|| {
            tokio::spawn(async move {
                let every = if want_bar {
                    Duration::from_millis(250)
                } else {
                    log_every.max(Duration::from_secs(1))
                };
                let (mut pass, mut last, mut pass_started) = (1u32, 0u64, Instant::now());
                let mut last_tick = Instant::now();
                loop {
                    tokio::time::sleep(every).await;
                    let (s, t) = (
                        source.load(Ordering::Relaxed),
                        target.load(Ordering::Relaxed),
                    );
                    if s.max(t) < last {
                        // The pass began after the previous tick: a rate from then is a floor.
                        pass += 1;
                        pass_started = last_tick;
                    }
                    last = s.max(t);
                    last_tick = Instant::now();
                    let rate = s.max(t) as f64 / pass_started.elapsed().as_secs_f64().max(0.001);
                    let label = if pass == 1 {
                        String::new()
                    } else {
                        format!("re-read pass {}: ", pass - 1)
                    };
                    match &shown {
                        Some(b) => {
                            b.set_length(total.max(s.max(t)));
                            b.set_position(s.min(t));
                            b.set_message(format!("{label}(source {s}, target {t}) {rate:.0} keys/s"));
                        }
                        None if json => eprintln!(
                            "{}",
                            serde_json::json!({
                                "phase": "verify",
                                "pass": pass,
                                "source_listed": s,
                                "target_listed": t,
                                "total": total,
                                "keys_per_sec": rate.round() as u64,
                            })
                        ),
                        None => eprintln!(
                            "ferry: verify: {label}listed source {s} and target {t} keys, of ~{total} on each side, {rate:.0} keys/s"
                        ),
                    }
                }
            })
        });
        Ticker { task, bar }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
