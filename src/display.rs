//! How ferry prints what it handles in messages, reports and progress: key names (which may be
//! any bytes) and byte counts. A leaf: it calls nothing else of ferry, so every layer may use it.

/// A key name safe to print: printable ASCII as is, everything else as `\xNN`.
pub fn escape_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push('"');
    for &b in key {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Formats a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
