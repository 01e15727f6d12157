//! Progress: a bar on a terminal, plain periodic log lines (or JSON lines) for job runners, and
//! the metrics (`metrics.rs`), fed from the same totals.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::counts::Counts;
use crate::report::human_bytes;
use crate::throttle::{self, Throttles};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Always log lines.
    Log,
    /// One JSON object per line on stderr, every `--log-every` (for job runners).
    Json,
    /// Nothing until the summary.
    None,
}

/// Shows how far the copy has got.
pub struct Progress {
    bar: Option<ProgressBar>,
    log_every: Option<Duration>,
    last_log: Instant,
    started: Instant,
    total: u64,
    /// Counting bytes of an RDB file (`Counts::file_bytes`) instead of keys.
    file: bool,
    /// `--progress json`: the log lines are JSON objects.
    json: bool,
    /// The source's throttles, whose state is shown.
    throttles: Option<Arc<Throttles>>,
}

impl Progress {
    /// Starts showing progress towards `total` keys (0 when unknown).
    pub fn new(mode: ProgressMode, log_every: Duration, total: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = matches!(mode, ProgressMode::Bar) || (mode == ProgressMode::Auto && tty);
        let json = mode == ProgressMode::Json;
        let log = matches!(mode, ProgressMode::Log | ProgressMode::Json)
            || (mode == ProgressMode::Auto && !tty);
        let bar = bar.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} keys {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            log_every: log.then_some(log_every),
            last_log: Instant::now(),
            started: Instant::now(),
            total,
            file: false,
            json,
            throttles: None,
        }
    }

    /// Shows what holds the reading back (`--max-keys-per-sec` and the like).
    pub fn with_throttles(mut self, throttles: Arc<Throttles>) -> Progress {
        self.throttles = Some(throttles);
        self
    }

    fn throttle(&self) -> throttle::State {
        self.throttles
            .as_ref()
            .map_or(throttle::State::Free, |t| t.state())
    }

    /// Starts showing progress through an RDB file of `size` bytes: a file's keys come in file
    /// order, so the bytes read say how far along it is however the keys are sized.
    pub fn for_file(mode: ProgressMode, log_every: Duration, size: u64) -> Progress {
        let mut p = Progress::new(mode, log_every, size);
        p.file = true;
        if let Some(bar) = &p.bar {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} of the file {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
        p
    }

    /// Updates the display with the counts so far.
    pub fn update(&mut self, c: &Counts) {
        let done = if self.file { c.file_bytes } else { c.scanned };
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = if self.file { c.written } else { done } as f64 / elapsed;
        let held = self.throttle();
        if let Some(m) = crate::metrics::get() {
            m.observe(c);
            m.set_throttle(held);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(done));
            bar.set_position(done);
            let held = match held {
                throttle::State::Free => String::new(),
                s => format!(" (held back: {})", s.name()),
            };
            bar.set_message(format!("{} {:.0} keys/s{held}", human_bytes(c.bytes), rate));
        }
        if let Some(every) = self.log_every {
            if self.last_log.elapsed() >= every {
                self.last_log = Instant::now();
                if self.json {
                    eprintln!("{}", self.json_line(c, rate, held));
                } else {
                    let held = match held {
                        throttle::State::Free => String::new(),
                        s => format!(", held back: {}", s.name()),
                    };
                    eprintln!("{}{held}", self.line(c, rate));
                }
            }
        }
    }

    /// One `--progress json` line.
    fn json_line(&self, c: &Counts, rate: f64, held: throttle::State) -> String {
        serde_json::json!({
            "phase": "copy",
            "elapsed_ms": self.started.elapsed().as_millis() as u64,
            "total": self.total,
            "total_unit": if self.file { "file_bytes" } else { "keys" },
            "scanned": c.scanned,
            "written": c.written,
            "bytes": c.bytes,
            "file_bytes": c.file_bytes,
            "expired_skipped": c.expired_skipped,
            "vanished": c.vanished,
            "conflicts": c.conflicts,
            "keys_per_sec": rate.round() as u64,
            "throttle": held.name(),
        })
        .to_string()
    }

    fn line(&self, c: &Counts, rate: f64) -> String {
        if self.file {
            let pct = 100.0 * c.file_bytes as f64 / self.total.max(1) as f64;
            let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
            let byte_rate = c.file_bytes as f64 / elapsed;
            let eta = if byte_rate > 0.0 && self.total > c.file_bytes {
                format!(
                    ", ETA {:.0}s",
                    (self.total - c.file_bytes) as f64 / byte_rate
                )
            } else {
                String::new()
            };
            return format!(
                "ferry: progress: {} of {} of the file ({pct:.0}%), {} keys written ({}), {rate:.0} keys/s{eta}",
                human_bytes(c.file_bytes),
                human_bytes(self.total),
                c.written,
                human_bytes(c.bytes),
            );
        }
        let pct = if self.total > 0 {
            format!(" ({:.0}%)", 100.0 * c.scanned as f64 / self.total as f64)
        } else {
            String::new()
        };
        let eta = if rate > 0.0 && self.total > c.scanned {
            format!(", ETA {:.0}s", (self.total - c.scanned) as f64 / rate)
        } else {
            String::new()
        };
        format!(
            "ferry: progress: {}/{} keys{pct}, {} written, {} written, {:.0} keys/s{eta}",
            c.scanned,
            self.total,
            c.written,
            human_bytes(c.bytes),
            rate
        )
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
