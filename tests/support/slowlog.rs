//! A test server's SLOWLOG: which commands ferry sent to the source, and how long each ran
//! there. The big-key tests read it to show that a big key was read in chunks and never
//! DUMPed, and that no command of ferry's blocked the source for long. Only the tests change the
//! slowlog settings (on the test's own servers); ferry never does.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;

/// One SLOWLOG entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id: later commands have higher ids.
    pub id: i64,
    /// How long the command ran on the server, in microseconds.
    pub micros: i64,
    /// The command and its arguments, as logged.
    pub args: Vec<Vec<u8>>,
}

impl Entry {
    /// The command's name, upper case.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Whether this is command `name` (any case) on `key`.
    pub fn is(&self, name: &str, key: &str) -> bool {
        self.name().eq_ignore_ascii_case(name)
            && self.args.get(1).map(Vec::as_slice) == Some(key.as_bytes())
    }

    /// Whether its arguments are exactly `args` (any case).
    pub fn matches(&self, args: &[&str]) -> bool {
        self.args.len() == args.len()
            && self
                .args
                .iter()
                .zip(args)
                .all(|(a, b)| a.eq_ignore_ascii_case(b.as_bytes()))
    }

    /// Its first three words, each cut at 40 bytes, for messages.
    pub fn words(&self) -> String {
        let words: Vec<String> = self
            .args
            .iter()
            .take(3)
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
            .collect();
        words.join(" ")
    }
}

/// Has `c`'s server log every command that runs longer than `micros` µs (0: every command),
/// keeping up to a million entries.
pub fn log_slower_than(c: &mut redis::Connection, micros: u64) {
    for (name, value) in [
        ("slowlog-log-slower-than", micros.to_string()),
        ("slowlog-max-len", "1000000".to_string()),
    ] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(c)
            .expect("CONFIG SET");
    }
}

/// Logs every command over `micros` µs from now on: the settings, then an empty log.
pub fn start(c: &mut redis::Connection, micros: u64) {
    log_slower_than(c, micros);
    reset(c);
}

/// Empties the slowlog.
pub fn reset(c: &mut redis::Connection) {
    let () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query(c)
        .expect("SLOWLOG RESET");
}

/// Every entry, newest first, the test's own SLOWLOG and CONFIG commands left out.
pub fn entries(c: &mut redis::Connection) -> Vec<Entry> {
    let raw: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1_000_000)
        .query(c)
        .expect("SLOWLOG GET");
    raw.iter()
        .filter_map(|e| {
            let redis::Value::Array(fields) = e else {
                return None;
            };
            let (Some(redis::Value::Int(id)), Some(redis::Value::Int(micros))) =
                (fields.first(), fields.get(2))
            else {
                return None;
            };
            let Some(redis::Value::Array(args)) = fields.get(3) else {
                return None;
            };
            let args = args
                .iter()
                .map(|a| match a {
                    redis::Value::BulkString(b) => b.clone(),
                    other => format!("{other:?}").into_bytes(),
                })
                .collect();
            Some(Entry {
                id: *id,
                micros: *micros,
                args,
            })
        })
        .filter(|e| !matches!(e.name().as_str(), "SLOWLOG" | "CONFIG"))
        .collect()
}

/// The commands on `key`, counted by name (upper case).
pub fn counts_on(c: &mut redis::Connection, key: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in entries(c) {
        if e.args.get(1).map(Vec::as_slice) == Some(key.as_bytes()) {
            *out.entry(e.name()).or_default() += 1;
        }
    }
    out
}

/// The slowest commands first: (microseconds, first words).
pub fn slowest(c: &mut redis::Connection) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = entries(c).iter().map(|e| (e.micros, e.words())).collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out
}
