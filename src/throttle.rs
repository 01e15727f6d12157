//! Load limits on the source: keys/s, bytes/s, and slowing down while the source is slow.
//!
//! The source is production, so an operator must be able to cap what ferry asks of it. Every
//! reader of one source server (a standalone server, or one master of a cluster) shares one
//! [`Throttle`]: a token bucket in keys and one in bytes, refilled at `--max-keys-per-sec` and
//! `--max-bytes-per-sec`. A reader takes the keys of a round trip *before* sending it (the
//! bucket may go into debt, so a big round trip is paid for by waiting before the next one) and
//! pays the bytes once the replies have arrived (a value's size is only known then). The
//! average over any second stays at the limit; no round trip is ever split or refused.
//!
//! `--source-latency-ms`: a watcher PINGs the server every [`WATCH_EVERY`] on a connection of
//! its own. A PING waits behind whatever the server is doing — ferry's own DUMPs included — so
//! its round trip is the latency the application sees. While it is above the limit, the keys/s
//! allowed is halved every tick (down to [`FLOOR_KEYS_PER_SEC`]); while below, it grows by half
//! every tick until it is back at the rate ferry read at when the source became slow, and then
//! lets go. Ferry backs off fast and returns carefully, settling near the load the source takes.
//!
//! With no limit set there is no throttle at all: readers do not even take a lock.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock: real time in a run, and a clock tests can pause and move.
use tokio::time::Instant;

use crate::endpoint::Server;
use crate::stop::Stop;

/// How often the latency watcher PINGs the source.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The slowest the latency watcher makes ferry read, in keys/s.
pub const FLOOR_KEYS_PER_SEC: f64 = 100.0;

/// Debt a bucket may not run ahead into: at most this much time of the rate is granted at once
/// after an idle spell.
const BURST: Duration = Duration::from_millis(50);

/// The limits the user set (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// `--max-keys-per-sec`.
    pub keys_per_sec: Option<u64>,
    /// `--max-bytes-per-sec`.
    pub bytes_per_sec: Option<u64>,
    /// `--source-latency-ms`.
    pub latency_ms: Option<u64>,
}

impl Limits {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.keys_per_sec.is_some() || self.bytes_per_sec.is_some() || self.latency_ms.is_some()
    }
}

/// What is holding ferry back right now, for progress lines and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing: ferry reads as fast as it can.
    Free,
    /// Waiting for the keys/s or bytes/s budget.
    Limited,
    /// Slowed down because the source's latency is above `--source-latency-ms`.
    Slowed,
}

impl State {
    /// The name shown in progress and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Free => "none",
            State::Limited => "rate-limit",
            State::Slowed => "source-latency",
        }
    }

    fn from_u8(n: u8) -> State {
        match n {
            1 => State::Limited,
            2 => State::Slowed,
            _ => State::Free,
        }
    }
}

/// One token bucket.
#[derive(Debug)]
struct Bucket {
    /// Tokens available (negative: debt to wait off).
    tokens: f64,
}

impl Bucket {
    fn refill(&mut self, rate: f64, elapsed: f64) {
        self.tokens = (self.tokens + rate * elapsed).min(rate * BURST.as_secs_f64());
    }
}

#[derive(Debug)]
struct Buckets {
    keys: Bucket,
    bytes: Bucket,
    last: Instant,
    /// The keys/s the latency watcher allows (`None`: it does not bind).
    slowed_to: Option<f64>,
    /// The keys/s ferry read at when the source became slow: where slowing stops.
    slowed_from: f64,
    /// Keys taken since the watcher last looked, to know the rate it is slowing down from.
    taken_since_tick: u64,
}

/// The shared budget of one source server's readers.
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    buckets: Mutex<Buckets>,
    state: AtomicU8,
}

impl Throttle {
    /// A throttle enforcing `limits`.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            buckets: Mutex::new(Buckets {
                keys: Bucket { tokens: 0.0 },
                bytes: Bucket { tokens: 0.0 },
                last: Instant::now(),
                slowed_to: None,
                slowed_from: 0.0,
                taken_since_tick: 0,
            }),
            state: AtomicU8::new(State::Free as u8),
        }
    }

    /// What holds ferry back now.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// The keys/s in force: the user's limit, or lower while the source is slow.
    fn keys_rate(&self, b: &Buckets) -> Option<f64> {
        let user = self.limits.keys_per_sec.map(|n| n as f64);
        match (user, b.slowed_to) {
            (Some(u), Some(s)) => Some(u.min(s)),
            (u, s) => u.or(s),
        }
    }

    /// Waits until `keys` more keys may be read, then takes them.
    pub async fn take_keys(&self, keys: usize) {
        let mut waited = false;
        loop {
            let wait = {
                let Ok(mut b) = self.buckets.lock() else {
                    return;
                };
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.last = now;
                let keys_rate = self.keys_rate(&b);
                if let Some(rate) = keys_rate {
                    b.keys.refill(rate, elapsed);
                }
                if let Some(rate) = self.limits.bytes_per_sec {
                    b.bytes.refill(rate as f64, elapsed);
                }
                let short_keys = keys_rate
                    .filter(|_| b.keys.tokens < 0.0)
                    .map(|rate| -b.keys.tokens / rate);
                let short_bytes = self
                    .limits
                    .bytes_per_sec
                    .filter(|_| b.bytes.tokens < 0.0)
                    .map(|rate| -b.bytes.tokens / rate as f64);
                match short_keys.into_iter().chain(short_bytes).reduce(f64::max) {
                    None => {
                        if keys_rate.is_some() {
                            b.keys.tokens -= keys as f64;
                        }
                        b.taken_since_tick += keys as u64;
                        if b.slowed_to.is_none() && !waited {
                            self.set_state(State::Free);
                        }
                        return;
                    }
                    Some(secs) => secs,
                }
            };
            waited = true;
            if self.state() != State::Slowed {
                self.set_state(State::Limited);
            }
            // Re-check at least every tick: the latency watcher may change the rate.
            tokio::time::sleep(Duration::from_secs_f64(wait).min(WATCH_EVERY)).await;
        }
    }

    /// Pays for `bytes` read (taken after the fact: a value's size is known once it arrived).
    pub fn pay_bytes(&self, bytes: usize) {
        if self.limits.bytes_per_sec.is_none() {
            return;
        }
        if let Ok(mut b) = self.buckets.lock() {
            b.bytes.tokens -= bytes as f64;
        }
    }

    /// One tick of the latency watcher: the source answered a PING in `latency`.
    fn observe_latency(&self, latency: Duration, limit: Duration, tick: Duration) {
        let Ok(mut b) = self.buckets.lock() else {
            return;
        };
        let taken = std::mem::take(&mut b.taken_since_tick) as f64;
        let recent_rate = taken / tick.as_secs_f64().max(0.001);
        if latency > limit {
            let from = match b.slowed_to {
                Some(s) => s,
                None => {
                    b.slowed_from = recent_rate.max(FLOOR_KEYS_PER_SEC * 2.0);
                    b.slowed_from
                }
            };
            b.slowed_to = Some((from / 2.0).max(FLOOR_KEYS_PER_SEC));
            self.set_state(State::Slowed);
        } else if let Some(s) = b.slowed_to {
            let grown = s * 1.5;
            // Let go once back at the rate it slowed down from (or at the user's limit).
            let ceiling = self
                .limits
                .keys_per_sec
                .map_or(b.slowed_from, |u| b.slowed_from.min(u as f64));
            b.slowed_to = (grown < ceiling).then_some(grown);
            if b.slowed_to.is_none() {
                self.set_state(State::Free);
            }
        }
    }
}

/// Watches `server`'s latency for `throttle` until `stop` is raised; returns at once when no
/// latency limit is set. A failed PING counts as a slow one (the readers report the failure).
pub async fn watch_latency(server: Server, throttle: Arc<Throttle>, stop: Stop) {
    let Some(limit) = throttle.limits.latency_ms.map(Duration::from_millis) else {
        return;
    };
    let mut conn = None;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    while !stop.is_raised() {
        tick.tick().await;
        let started = Instant::now();
        let answered = async {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(server.connect().await.ok()?),
            };
            c.cmd(&[b"PING".as_slice()]).await.ok()
        };
        // A PING that takes longer than a few limits is slow enough to know.
        let ok = tokio::time::timeout(limit * 4 + WATCH_EVERY, answered)
            .await
            .ok()
            .flatten()
            .is_some();
        if !ok {
            conn = None;
        }
        let latency = if ok { started.elapsed() } else { limit * 4 };
        throttle.observe_latency(latency, limit, last.elapsed());
        last = Instant::now();
    }
}

/// The throttles of a job: one per source server, shared by its readers.
pub struct Throttles {
    limits: Limits,
    /// Ends the latency watchers.
    stop: Stop,
    by_server: Mutex<Vec<(String, Arc<Throttle>)>>,
}

impl std::fmt::Debug for Throttles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttles")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Throttles {
    /// Throttles enforcing `limits` (none at all when no limit is set) until `stop`.
    pub fn new(limits: Limits, stop: Stop) -> Throttles {
        Throttles {
            limits,
            stop,
            by_server: Mutex::new(Vec::new()),
        }
    }

    /// The throttle of `server` (created, with its latency watcher, on first use); `None` when
    /// no limit is set. Call it inside the runtime (the watcher is a task).
    pub fn for_server(&self, server: &Server) -> Option<Arc<Throttle>> {
        if !self.limits.any() {
            return None;
        }
        let key = format!("{}:{}", server.endpoint.host, server.endpoint.port);
        let mut all = self.by_server.lock().ok()?;
        if let Some((_, t)) = all.iter().find(|(k, _)| *k == key) {
            return Some(t.clone());
        }
        let t = Arc::new(Throttle::new(self.limits));
        if self.limits.latency_ms.is_some() {
            tokio::spawn(watch_latency(server.clone(), t.clone(), self.stop.clone()));
        }
        all.push((key, t.clone()));
        Some(t)
    }

    /// The state of the most held-back server.
    pub fn state(&self) -> State {
        let Ok(all) = self.by_server.lock() else {
            return State::Free;
        };
        all.iter()
            .map(|(_, t)| t.state())
            .max_by_key(|s| *s as u8)
            .unwrap_or(State::Free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keys_per_second_is_the_average_rate() {
        let t = Throttle::new(Limits {
            keys_per_sec: Some(10_000),
            ..Limits::default()
        });
        let start = tokio::time::Instant::now();
        for _ in 0..40 {
            t.take_keys(1_000).await;
        }
        // 40,000 keys at 10,000/s: the first round trip is free, the rest wait off the debt.
        let secs = start.elapsed().as_secs_f64();
        assert!((3.8..=4.2).contains(&secs), "{secs}");
        assert_eq!(t.state(), State::Limited);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_paid_after_the_fact() {
        let t = Throttle::new(Limits {
            bytes_per_sec: Some(1_000_000),
            ..Limits::default()
        });
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            t.take_keys(10).await;
            t.pay_bytes(1_000_000);
        }
        let secs = start.elapsed().as_secs_f64();
        assert!((3.9..=4.2).contains(&secs), "{secs}");
    }

    #[test]
    fn slow_source_halves_then_recovers() {
        let t = Throttle::new(Limits {
            latency_ms: Some(20),
            ..Limits::default()
        });
        let tick = Duration::from_millis(100);
        let limit = Duration::from_millis(20);
        if let Ok(mut b) = t.buckets.lock() {
            b.taken_since_tick = 8_000; // 80,000 keys/s
        }
        t.observe_latency(Duration::from_millis(80), limit, tick);
        assert_eq!(t.state(), State::Slowed);
        let rate = |t: &Throttle| t.buckets.lock().ok().and_then(|b| b.slowed_to);
        assert_eq!(rate(&t), Some(40_000.0));
        t.observe_latency(Duration::from_millis(80), limit, tick);
        assert_eq!(rate(&t), Some(20_000.0));
        for _ in 0..100 {
            t.observe_latency(Duration::from_millis(80), limit, tick);
        }
        assert_eq!(rate(&t), Some(FLOOR_KEYS_PER_SEC));
        // Fast again: grows back, then lets go.
        for _ in 0..100 {
            if let Ok(mut b) = t.buckets.lock() {
                b.taken_since_tick = b.slowed_to.map_or(0, |r| (r / 10.0) as u64);
            }
            t.observe_latency(Duration::from_millis(1), limit, tick);
        }
        assert_eq!(rate(&t), None);
        assert_eq!(t.state(), State::Free);
    }
}
