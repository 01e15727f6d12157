//! Prometheus metrics (`--metrics-addr HOST:PORT`): `/metrics` in the text format, `/healthz`.
//!
//! A job runner or a Kubernetes pod is watched by scraping, not by reading logs, so ferry
//! exposes its counters while it runs. The registry is process-wide (one job per process), set
//! up once by [`serve`]; everything else calls [`get`] and does nothing when metrics are off, so
//! a run without `--metrics-addr` pays nothing. The counters are fed from the same totals the
//! progress display shows (`progress.rs`), so the two never disagree.
//!
//! The HTTP side is a few lines on tokio rather than a web framework: two fixed paths, GET only,
//! one short response per connection.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::counts::Counts;
use crate::throttle;

/// The phases of a job, in order; `ferry_phase{phase}` is 1 for the current one.
pub const PHASES: [&str; 5] = ["preflight", "copy", "verify", "follow", "done"];

type Labels = Vec<(String, String)>;

/// ferry's metrics.
pub struct Metrics {
    registry: Registry,
    keys_scanned: Counter,
    keys_written: Counter,
    bytes_written: Counter,
    keys_skipped: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    phase: Family<Labels, Gauge>,
    throttle: Family<Labels, Gauge>,
    differences: Gauge,
    /// The totals last seen, to turn totals into counter increments.
    seen: Mutex<Counts>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, when `--metrics-addr` is on.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Sets the `phase` gauge when metrics are served (else nothing).
pub fn set_phase(phase: &str) {
    if let Some(m) = get() {
        m.set_phase(phase);
    }
}

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            keys_scanned: Counter::default(),
            keys_written: Counter::default(),
            bytes_written: Counter::default(),
            keys_skipped: Family::default(),
            errors: Family::default(),
            phase: Family::default(),
            throttle: Family::default(),
            differences: Gauge::default(),
            seen: Mutex::new(Counts::default()),
            registry: Registry::default(),
        };
        registry.register(
            "ferry_keys_scanned",
            "Keys listed on the source (whole job, resumed runs included)",
            m.keys_scanned.clone(),
        );
        registry.register(
            "ferry_keys_written",
            "Keys written to the target (whole job)",
            m.keys_written.clone(),
        );
        registry.register(
            "ferry_bytes_written",
            "Key and value bytes written to the target (whole job)",
            m.bytes_written.clone(),
        );
        registry.register(
            "ferry_keys_skipped",
            "Keys not written, by reason (expired, vanished, conflict, empty, module, dead_letter)",
            m.keys_skipped.clone(),
        );
        registry.register(
            "ferry_errors",
            "Failures ferry retried or stopped on, by kind",
            m.errors.clone(),
        );
        registry.register(
            "ferry_phase",
            "1 for the phase the job is in (preflight, copy, verify, follow, done)",
            m.phase.clone(),
        );
        registry.register(
            "ferry_throttle",
            "1 for what holds the reading back (none, rate-limit, source-latency)",
            m.throttle.clone(),
        );
        registry.register(
            "ferry_verify_differences",
            "Differences the last verification found",
            m.differences.clone(),
        );
        for p in PHASES {
            m.phase.get_or_create(&label("phase", p)).set(0);
        }
        for s in [
            throttle::State::Free,
            throttle::State::Limited,
            throttle::State::Slowed,
        ] {
            m.throttle.get_or_create(&label("state", s.name())).set(0);
        }
        Metrics { registry, ..m }
    }

    /// Feeds the job's totals so far (counters move by what changed since the last call).
    pub fn observe(&self, totals: &Counts) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let up = |c: &Counter, now: u64, before: u64| {
            if now > before {
                c.inc_by(now - before);
            }
        };
        up(&self.keys_scanned, totals.scanned, seen.scanned);
        up(&self.keys_written, totals.written, seen.written);
        up(&self.bytes_written, totals.bytes, seen.bytes);
        for (reason, now, before) in [
            ("expired", totals.expired_skipped, seen.expired_skipped),
            ("vanished", totals.vanished, seen.vanished),
            ("conflict", totals.conflicts, seen.conflicts),
            ("empty", totals.empty_skipped, seen.empty_skipped),
            ("module", totals.modules_skipped, seen.modules_skipped),
            ("dead_letter", totals.dead_lettered, seen.dead_lettered),
        ] {
            up(
                &self.keys_skipped.get_or_create(&label("reason", reason)),
                now,
                before,
            );
        }
        *seen = *totals;
    }

    /// The job entered `phase` (one of [`PHASES`]).
    pub fn set_phase(&self, phase: &str) {
        for p in PHASES {
            self.phase
                .get_or_create(&label("phase", p))
                .set(i64::from(p == phase));
        }
    }

    /// What holds the reading back now.
    pub fn set_throttle(&self, state: throttle::State) {
        for s in [
            throttle::State::Free,
            throttle::State::Limited,
            throttle::State::Slowed,
        ] {
            self.throttle
                .get_or_create(&label("state", s.name()))
                .set(i64::from(s == state));
        }
    }

    /// The differences the last verification found.
    pub fn set_differences(&self, n: u64) {
        self.differences.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one failure of `kind` (e.g. `connection`, `tryagain`).
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&label("kind", kind)).inc();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Starts serving metrics on `addr` (fails at once, naming the address, when it cannot listen).
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on --metrics-addr {addr}: is the port free and the address this machine's?")
    })?;
    if METRICS.set(Metrics::new()).is_err() {
        anyhow::bail!("metrics are already being served");
    }
    tracing::info!("metrics: http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(answer(conn));
        }
    });
    Ok(())
}

/// Answers one HTTP request (GET /metrics or /healthz) and closes the connection.
async fn answer(mut conn: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            get().map(Metrics::render).unwrap_or_default(),
        ),
        (b"GET", b"/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /healthz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_become_counters() {
        let m = Metrics::new();
        let mut c = Counts {
            scanned: 10,
            written: 8,
            bytes: 800,
            vanished: 2,
            ..Counts::default()
        };
        m.observe(&c);
        c.written = 9;
        c.scanned = 11;
        m.observe(&c);
        m.set_phase("copy");
        m.set_throttle(throttle::State::Limited);
        m.error("connection");
        let text = m.render();
        for want in [
            "ferry_keys_scanned_total 11",
            "ferry_keys_written_total 9",
            "ferry_bytes_written_total 800",
            "ferry_keys_skipped_total{reason=\"vanished\"} 2",
            "ferry_phase{phase=\"copy\"} 1",
            "ferry_phase{phase=\"verify\"} 0",
            "ferry_throttle{state=\"rate-limit\"} 1",
            "ferry_errors_total{kind=\"connection\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
