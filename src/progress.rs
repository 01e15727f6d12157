//! Progress: a bar on a terminal, plain periodic log lines for job runners.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ProgressMode;
use crate::report::human_bytes;
use crate::source::Counts;

/// Shows how far the copy has got.
pub struct Progress {
    bar: Option<ProgressBar>,
    log_every: Option<Duration>,
    last_log: Instant,
    started: Instant,
    total: u64,
    /// Counting bytes of an RDB file (`Counts::file_bytes`) instead of keys.
    file: bool,
}

impl Progress {
    /// Starts showing progress towards `total` keys (0 when unknown).
    pub fn new(mode: ProgressMode, log_every: Duration, total: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = matches!(mode, ProgressMode::Bar) || (mode == ProgressMode::Auto && tty);
        let log = matches!(mode, ProgressMode::Log) || (mode == ProgressMode::Auto && !tty);
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
        }
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
        if let Some(bar) = &self.bar {
            bar.set_length(self.total.max(done));
            bar.set_position(done);
            bar.set_message(format!("{} {:.0} keys/s", human_bytes(c.bytes), rate));
        }
        if let Some(every) = self.log_every {
            if self.last_log.elapsed() >= every {
                self.last_log = Instant::now();
                eprintln!("{}", self.line(c, rate));
            }
        }
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
