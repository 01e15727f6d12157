//! `ferry report merge FILES…`: the reports of the N workers of a `--partition` job as one, so a
//! final step can gate the cutover on all of them at once.
//!
//! Reports are merged as JSON (they are what the workers left behind, possibly written by a
//! ferry of the same version on other machines): counters are summed, per-DB figures summed by
//! DB pair, listed differences concatenated, durations and expiry uncertainties take the worst,
//! and the status is the worst of all. It refuses reports that are not shares of one job and
//! command, and a set that is missing a share or holds one twice: a merged "ok" then always
//! means every share of the job reported ok.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::report::{ShareOf, Status};

/// Fields whose merged value is the largest, not the sum.
const MAX_FIELDS: [&str; 6] = [
    "elapsed_ms",
    "expiry_uncertainty_ms",
    "peak_rss_bytes",
    "ttl_tolerance_ms",
    "rounds",
    "rounds_run",
];

/// Reads and merges the reports at `paths`. Returns the merged report and its status.
pub fn merge_files(paths: &[PathBuf]) -> anyhow::Result<(Value, Status)> {
    let mut reports = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read the report {}", path.display()))?;
        let v: Value = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is not a ferry JSON report (written with --report)",
                path.display()
            )
        })?;
        reports.push((path.display().to_string(), v));
    }
    merge(&reports)
}

/// Merges `(name, report)` pairs (see the module docs).
pub fn merge(reports: &[(String, Value)]) -> anyhow::Result<(Value, Status)> {
    let shares = check_shares(reports)?;
    let first = &shares[0];
    let mut status = Status::Ok;
    let mut merged = Map::new();
    let mut workers = Vec::new();
    for ((name, r), share) in reports.iter().zip(&shares) {
        let s = status_of(name, r)?;
        status = worst(status, s);
        workers.push(serde_json::json!({
            "index": share.index,
            "report": name,
            "status": r.get("status"),
            "error": r.get("error"),
            "checkpoint": r.get("checkpoint"),
        }));
        let Value::Object(obj) = r else { continue };
        for (k, v) in obj {
            match k.as_str() {
                "status" | "error" | "partition" | "checkpoint" | "resumed" => {}
                _ => match merged.get_mut(k) {
                    Some(acc) => combine(k, acc, v),
                    None => {
                        merged.insert(k.clone(), v.clone());
                    }
                },
            }
        }
    }
    // A nested verification that some workers skipped (--no-verify) proves nothing for them.
    if first.command == "migrate" {
        let all_verified = reports
            .iter()
            .all(|(_, r)| r.get("verify").is_some_and(|v| !v.is_null()));
        if !all_verified {
            merged.insert("verify".into(), Value::Null);
        }
    }
    merged.insert("status".into(), serde_json::to_value(status)?);
    let errors: Vec<String> = reports
        .iter()
        .zip(&shares)
        .filter_map(|((_, r), s)| {
            let e = r.get("error")?.as_str()?;
            Some(format!("share {}/{}: {e}", s.index, s.count))
        })
        .collect();
    merged.insert(
        "error".into(),
        if errors.is_empty() {
            Value::Null
        } else {
            errors.join("; ").into()
        },
    );
    merged.insert(
        "merged".into(),
        serde_json::json!({
            "command": first.command,
            "job": first.job,
            "shares": first.count,
            "workers": workers,
        }),
    );
    Ok((Value::Object(merged), status))
}

/// Each report's share; refuses mixed jobs or commands, duplicates and missing shares.
fn check_shares(reports: &[(String, Value)]) -> anyhow::Result<Vec<ShareOf>> {
    if reports.is_empty() {
        anyhow::bail!("give the reports of every worker to merge");
    }
    let mut shares = Vec::with_capacity(reports.len());
    for (name, r) in reports {
        let share: ShareOf = match r.get("partition") {
            Some(p) if !p.is_null() => serde_json::from_value(p.clone()).with_context(|| {
                format!("{name}: its \"partition\" field is not one ferry writes")
            })?,
            _ => {
                let why = match r.get("error").and_then(Value::as_str) {
                    Some(e) => format!(" (its run failed before the job was resolved: {e})"),
                    None => String::new(),
                };
                anyhow::bail!(
                    "{name} is not the report of a --partition run{why}; merge the reports written by \
                     `ferry migrate|verify --partition I/N --report FILE`"
                )
            }
        };
        shares.push(share);
    }
    let first = shares[0].clone();
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for ((name, _), s) in reports.iter().zip(&shares) {
        if s.command != first.command {
            anyhow::bail!(
                "{name} is a `{}` report but {} is a `{}` report; merge the reports of one command",
                s.command,
                reports[0].0,
                first.command
            );
        }
        if s.job != first.job || s.count != first.count {
            anyhow::bail!(
                "{name} belongs to another job than {} (job {} in {} shares vs job {} in {} shares: \
                 another source, target, DB selection or share count)",
                reports[0].0,
                s.job,
                s.count,
                first.job,
                first.count
            );
        }
        if let Some(other) = seen.insert(s.index, name) {
            anyhow::bail!(
                "share {}/{} is given twice ({other} and {name}); give each worker's latest report once",
                s.index,
                s.count
            );
        }
    }
    let missing: Vec<String> = (0..first.count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the reports of share(s) {} are missing: every share must have run (rerun the missing \
             index, see docs/kubernetes.md) before the job can be judged",
            missing.join(", ")
        );
    }
    Ok(shares)
}

fn status_of(name: &str, r: &Value) -> anyhow::Result<Status> {
    Ok(match r.get("status").and_then(Value::as_str) {
        Some("ok") => Status::Ok,
        Some("mismatch") => Status::Mismatch,
        Some("interrupted") => Status::Interrupted,
        Some("error") => Status::Error,
        other => anyhow::bail!("{name}: unknown status {other:?}"),
    })
}

/// The worse of two statuses: error, interrupted, mismatch, ok.
pub fn worst(a: Status, b: Status) -> Status {
    let rank = |s: Status| match s {
        Status::Ok => 0,
        Status::Mismatch => 1,
        Status::Interrupted => 2,
        Status::Error => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Folds `v` (field `key` of another report) into `acc`.
fn combine(key: &str, acc: &mut Value, v: &Value) {
    match (acc, v) {
        (Value::Number(a), Value::Number(b)) => {
            let (x, y) = (a.as_u64().unwrap_or(0), b.as_u64().unwrap_or(0));
            let r = if MAX_FIELDS.contains(&key) {
                x.max(y)
            } else {
                x + y
            };
            *a = r.into();
        }
        (Value::Bool(a), Value::Bool(b)) => *a |= *b,
        // A nested verification's status: the worst, like the top level's.
        (Value::String(a), Value::String(b)) if key == "status" => {
            let parse = |s: &str| status_of("", &serde_json::json!({ "status": s })).ok();
            if let (Some(x), Some(y)) = (parse(a), parse(b)) {
                if let Ok(Value::String(w)) = serde_json::to_value(worst(x, y)) {
                    *a = w;
                }
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get_mut(k) {
                    Some(av) => combine(k, av, bv),
                    None => {
                        a.insert(k.clone(), bv.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if key == "dbs" => merge_dbs(a, b),
        (Value::Array(a), Value::Array(b)) => {
            for item in b {
                if !a.contains(item) {
                    a.push(item.clone());
                }
            }
        }
        (a @ Value::Null, b) => *a = b.clone(),
        // Strings (source, target, mode) are the same job's; the first one stays.
        _ => {}
    }
}

/// Per-DB figures of a verification, summed by (db, target_db).
fn merge_dbs(acc: &mut Vec<Value>, more: &[Value]) {
    let id = |v: &Value| (v.get("db").cloned(), v.get("target_db").cloned());
    for item in more {
        match acc.iter_mut().find(|a| id(a) == id(item)) {
            Some(a) => {
                if let (Value::Object(a), Value::Object(b)) = (a, item) {
                    for (k, bv) in b {
                        if k == "db" || k == "target_db" {
                            continue;
                        }
                        if let Some(av) = a.get_mut(k) {
                            combine(k, av, bv);
                        }
                    }
                }
            }
            None => acc.push(item.clone()),
        }
    }
    acc.sort_by_key(|v| v.get("db").and_then(Value::as_u64));
}

/// Prints the merged report's human summary on stderr.
pub fn print_summary(merged: &Value, status: Status) {
    let m = &merged["merged"];
    eprintln!(
        "ferry: report merge: {} `{}` reports of job {}: status {}",
        m["shares"],
        m["command"].as_str().unwrap_or("?"),
        m["job"].as_str().unwrap_or("?"),
        serde_json::to_value(status).unwrap_or_default()
    );
    if let Some(keys) = merged.get("keys") {
        eprintln!(
            "ferry: report merge: keys scanned {}, written {}, expired before copy {}, vanished {}",
            keys["scanned"], keys["written"], keys["expired_skipped"], keys["vanished"]
        );
    }
    if let Some(t) = merged.get("totals") {
        eprintln!(
            "ferry: report merge: source keys {}, target keys {}, differences {}",
            t["source"]["keys"], t["target"]["keys"], t["differences"]
        );
    }
    if let Some(e) = merged.get("error").and_then(Value::as_str) {
        eprintln!("ferry: report merge: errors: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rep(i: u32, n: u32, status: &str, written: u64) -> (String, Value) {
        (
            format!("r{i}.json"),
            json!({
                "status": status, "source": "s", "target": "t", "error": null,
                "partition": {"command": "migrate", "job": "j", "index": i, "count": n},
                "keys": {"scanned": written, "written": written},
                "elapsed_ms": 10 * u64::from(i + 1),
                "verify": {"dbs": [{"db": 0, "target_db": 0, "source": {"keys": written}}]},
            }),
        )
    }

    #[test]
    fn sums_counts_and_keeps_the_worst_status() {
        let mut second = rep(1, 2, "mismatch", 7);
        second.1["verify"]["status"] = "mismatch".into();
        let (m, s) = merge(&[rep(0, 2, "ok", 5), second]).unwrap();
        assert_eq!(m["verify"]["status"], "mismatch");
        assert_eq!(s, Status::Mismatch);
        assert_eq!(m["keys"]["written"], 12);
        assert_eq!(m["elapsed_ms"], 20);
        assert_eq!(m["verify"]["dbs"][0]["source"]["keys"], 12);
        assert_eq!(m["status"], "mismatch");
    }

    #[test]
    fn refuses_other_jobs_duplicates_and_gaps() {
        let mut other = rep(1, 2, "ok", 1);
        other.1["partition"]["job"] = "k".into();
        assert!(merge(&[rep(0, 2, "ok", 1), other])
            .unwrap_err()
            .to_string()
            .contains("another job"));
        let mut verify = rep(1, 2, "ok", 1);
        verify.1["partition"]["command"] = "verify".into();
        assert!(merge(&[rep(0, 2, "ok", 1), verify])
            .unwrap_err()
            .to_string()
            .contains("`verify` report"));
        assert!(merge(&[rep(0, 2, "ok", 1), rep(0, 2, "ok", 1)])
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(merge(&[rep(0, 3, "ok", 1), rep(2, 3, "ok", 1)])
            .unwrap_err()
            .to_string()
            .contains("1/3"));
        let plain = ("x".to_string(), json!({"status": "ok"}));
        assert!(merge(&[plain])
            .unwrap_err()
            .to_string()
            .contains("not the report of a --partition"));
    }
}
