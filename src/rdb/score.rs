//! Sorted-set scores and other floating-point numbers in RDB data.
//!
//! Three forms exist: the old (RDB < 8) *string score* — one length byte, where 253/254/255 mean
//! NaN/+inf/-inf, followed by ASCII text as printed by `%.17g`; the binary little-endian IEEE 754
//! double (zset2, RDB 8+, stream/module doubles) and 4-byte float (module values); and the text of
//! a listpack/ziplist element, which is an integer or a `d2string`-style number (`inf`, `-inf`,
//! `1.5`, `1e+25`, ...).

use super::cursor::Cursor;
use super::error::{RdbError, Result};

/// Read an RDB < 8 string score.
pub fn read_string_score(cur: &mut Cursor<'_>) -> Result<f64> {
    let at = cur.offset();
    let len = cur.u8("zset string score length")?;
    match len {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        n => {
            let text = cur.take(usize::from(n), "zset string score")?;
            parse_score_text(text).ok_or_else(|| {
                RdbError::corrupt(
                    at,
                    "zset string score",
                    format!("not a number: {:?}", String::from_utf8_lossy(text)),
                )
            })
        }
    }
}

/// Append an RDB < 8 string score.
pub fn write_string_score(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.push(253);
    } else if v == f64::INFINITY {
        out.push(254);
    } else if v == f64::NEG_INFINITY {
        out.push(255);
    } else {
        // Shortest text that round-trips; `{:e}` keeps it short for huge/tiny magnitudes and is
        // accepted by strtod.
        let s = if v.fract() == 0.0 && v.abs() < 1e17 {
            format!("{v:.0}")
        } else {
            format!("{v:e}")
        };
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Read a binary little-endian double.
pub fn read_binary_double(cur: &mut Cursor<'_>, what: &'static str) -> Result<f64> {
    Ok(f64::from_le_bytes(cur.array(what)?))
}

/// Read a binary little-endian float.
pub fn read_binary_float(cur: &mut Cursor<'_>, what: &'static str) -> Result<f32> {
    Ok(f32::from_le_bytes(cur.array(what)?))
}

/// Parse the text of a score as stored in ziplists, listpacks and string scores.
pub fn parse_score_text(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" | "-nan" | "+nan" => return Some(f64::NAN),
        _ => {}
    }
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_scores_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            -4.329000123123131e28,
            3.0,
            1e-300,
            0.1,
        ] {
            let mut out = Vec::new();
            write_string_score(&mut out, v);
            let mut c = Cursor::new(&out, 0);
            assert_eq!(read_string_score(&mut c).unwrap(), v);
            assert!(c.is_empty());
        }
        let mut out = Vec::new();
        write_string_score(&mut out, f64::NEG_INFINITY);
        assert_eq!(out, [255]);
    }

    #[test]
    fn score_text() {
        assert_eq!(parse_score_text(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_score_text(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score_text(b"1.000033e+25"), Some(1.000033e25));
        assert_eq!(parse_score_text(b"x"), None);
        assert_eq!(parse_score_text(b""), None);
    }
}
