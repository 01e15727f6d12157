//! RESP2: the wire format every Redis version since 1.2 speaks.
//!
//! ferry talks RESP2 to both sides because 3.2–5.x sources have no `HELLO`, and RESP2 is all a
//! migration needs. Commands are encoded straight into one reusable buffer so a pipeline of
//! thousands of `RESTORE`s is a single write; replies are parsed in place from the read buffer
//! with `Bytes` slices, so a large `DUMP` payload is never copied twice.

use bytes::{Buf, Bytes, BytesMut};

use super::error_kind::ErrorKind;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other status replies.
    Status(String),
    /// `-ERR ...`: the server refused this one command.
    Error(String),
    /// `:123`.
    Int(i64),
    /// `$n` bulk string; `None` for the nil bulk (`$-1`).
    Bulk(Option<Bytes>),
    /// `*n` array; `None` for the nil array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer in an `:n` reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a bulk or status reply.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk reply's text, lossily decoded (for INFO and similar).
    pub fn to_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The server's error text, if this reply is an error.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The kind of an error reply (see `error_kind.rs`); `None` for any other reply.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error().map(ErrorKind::of)
    }
}

/// Appends one command in RESP array form to `buf`.
pub fn encode_command<A: AsRef<[u8]>>(buf: &mut BytesMut, args: &[A]) {
    buf.reserve(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    push_header(buf, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        push_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Appends `RESTORE key ttl payload ABSTTL [REPLACE]`: the same bytes as [`encode_command`]
/// with those arguments, written with the fixed parts pre-encoded because it runs once per key.
pub fn encode_restore(buf: &mut BytesMut, key: &[u8], ttl: &[u8], payload: &[u8], replace: bool) {
    const HEAD6: &[u8] = b"*6\r\n$7\r\nRESTORE\r\n";
    const HEAD5: &[u8] = b"*5\r\n$7\r\nRESTORE\r\n";
    const TAIL6: &[u8] = b"$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n";
    const TAIL5: &[u8] = b"$6\r\nABSTTL\r\n";
    buf.reserve(96 + key.len() + ttl.len() + payload.len());
    buf.extend_from_slice(if replace { HEAD6 } else { HEAD5 });
    for arg in [key, ttl, payload] {
        push_header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(if replace { TAIL6 } else { TAIL5 });
}

/// A command of one key argument whose name is pre-encoded: `PTTL key`, `DUMP key`.
#[derive(Debug, Clone, Copy)]
pub enum KeyCommand {
    /// `PTTL key`: the key's remaining time to live in ms (-1 none, -2 gone).
    Pttl,
    /// `DUMP key`: the key's value in the DUMP format (nil when gone).
    Dump,
    /// `MEMORY USAGE key`: the big-key size probe, asked of every key (4.0+).
    MemoryUsage,
}

impl KeyCommand {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            KeyCommand::Pttl => "PTTL",
            KeyCommand::Dump => "DUMP",
            KeyCommand::MemoryUsage => "MEMORY",
        }
    }

    fn head(self) -> &'static [u8] {
        match self {
            KeyCommand::Pttl => b"*2\r\n$4\r\nPTTL\r\n",
            KeyCommand::Dump => b"*2\r\n$4\r\nDUMP\r\n",
            KeyCommand::MemoryUsage => b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n",
        }
    }
}

/// Appends `cmd key` for every key: the same bytes as one [`encode_command`] per key, with the
/// command pre-encoded, because a live source asks this for every key.
pub fn encode_key_commands<'a>(
    buf: &mut BytesMut,
    cmd: KeyCommand,
    keys: impl IntoIterator<Item = &'a [u8]>,
) {
    let cmd = cmd.head();
    for key in keys {
        let mut head = [0u8; 24];
        let head = bulk_header(&mut head, key.len());
        buf.reserve(key.len() + head.len() + cmd.len() + 2);
        buf.extend_from_slice(cmd);
        buf.extend_from_slice(head);
        buf.extend_from_slice(key);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Appends `PTTL key` and `DUMP key` for every key, pair by pair: the bytes of
/// [`encode_key_commands`] called per key for each, with one length header formatted and one
/// reservation per key instead of two (a live copy asks this for every key).
pub fn encode_pttl_dump_pairs<'a>(buf: &mut BytesMut, keys: impl IntoIterator<Item = &'a [u8]>) {
    let (pttl, dump) = (KeyCommand::Pttl.head(), KeyCommand::Dump.head());
    for key in keys {
        let mut head = [0u8; 24];
        let head = bulk_header(&mut head, key.len());
        buf.reserve(2 * (key.len() + head.len() + 2) + pttl.len() + dump.len());
        buf.extend_from_slice(pttl);
        buf.extend_from_slice(head);
        buf.extend_from_slice(key);
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(dump);
        buf.extend_from_slice(head);
        buf.extend_from_slice(key);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Formats `$<n>\r\n` into `out`, returning the used part.
#[inline]
fn bulk_header(out: &mut [u8; 24], n: usize) -> &[u8] {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    let len = digits.len();
    out[0] = b'$';
    out[1..=len].copy_from_slice(digits);
    out[len + 1..len + 3].copy_from_slice(b"\r\n");
    &out[..len + 3]
}

/// Appends `<tag><n>\r\n`. Runs ~7 times per RESTORE: a length under 10 (the argument count,
/// short TTL strings) is written without formatting.
#[inline]
fn push_header(buf: &mut BytesMut, tag: u8, n: usize) {
    if n < 10 {
        buf.extend_from_slice(&[tag, b'0' + n as u8, b'\r', b'\n']);
        return;
    }
    // Key and small-value lengths: two or three digits, without a formatter.
    if n < 1000 {
        let (a, b, c) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        if n < 100 {
            buf.extend_from_slice(&[tag, b'0' + b, b'0' + c, b'\r', b'\n']);
        } else {
            buf.extend_from_slice(&[tag, b'0' + a, b'0' + b, b'0' + c, b'\r', b'\n']);
        }
        return;
    }
    buf.extend_from_slice(&[tag]);
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Why bytes from the server could not be read as RESP.
#[derive(Debug, thiserror::Error)]
#[error("protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Largest bulk string we accept: Redis's own hard ceiling for `proto-max-bulk-len` is 512 MB by
/// default but configurable; 4 GiB guards against a corrupt length allocating the machine away.
const MAX_BULK: i64 = 4 << 30;

/// Parses one complete reply from the front of `buf`, removing its bytes.
/// Returns `Ok(None)` when `buf` does not yet hold a whole reply.
///
/// Scalars (the per-key replies: `:` PTTL, `$` DUMP, `+OK`) are checked and taken in one pass,
/// without copying: a bulk string is split off the read buffer. Only an array (SCAN, TIME, two
/// per page) is first scanned for completeness, so a partial one is never half consumed.
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    if buf.first() == Some(&b'*') && scan(buf, 0)?.is_none() {
        return Ok(None);
    }
    take(buf)
}

/// The first line of a reply: its type byte, where its CRLF is, and its number (`$`, `*`, `:`).
struct Head {
    tag: u8,
    line_end: usize,
    n: i64,
}

/// Reads the first line of the reply at `pos`; `None` when the line is not complete yet.
#[inline]
fn head(buf: &[u8], pos: usize) -> Result<Option<Head>, ProtocolError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if matches!(tag, b'$' | b'*' | b':') {
        if let Some(head) = number_line(buf, pos, tag) {
            return Ok(Some(head));
        }
    }
    let Some(line_end) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let n = match tag {
        b'+' | b'-' => 0,
        b'$' | b'*' | b':' => parse_int(&buf[pos + 1..line_end])?,
        other => {
            return Err(ProtocolError(format!(
                "unexpected reply type byte 0x{other:02x}"
            )))
        }
    };
    Ok(Some(Head { tag, line_end, n }))
}

/// The usual `:`, `$` or `*` line, `-?digits\r\n` of at most 18 digits, read in one pass (the
/// per-key replies of a live copy are such lines: PTTL's `:-1`, DUMP's `$110`); `None` for
/// anything else, which the general path reads or rejects. Finding the CRLF and then parsing
/// the number was ~5 % of a live copy's CPU.
#[inline]
fn number_line(buf: &[u8], pos: usize, tag: u8) -> Option<Head> {
    let neg = buf.get(pos + 1) == Some(&b'-');
    let start = pos + 1 + usize::from(neg);
    let mut at = start;
    let mut n: i64 = 0;
    while let Some(&b) = buf.get(at) {
        let d = b.wrapping_sub(b'0');
        if d > 9 || at - start == 18 {
            break;
        }
        n = n * 10 + i64::from(d);
        at += 1;
    }
    let line_end = at;
    (at > start && buf.get(at..at + 2) == Some(b"\r\n")).then_some(Head {
        tag,
        line_end,
        n: if neg { -n } else { n },
    })
}

/// Checks that a whole reply starts at `pos`; returns the offset just past it.
fn scan(buf: &[u8], pos: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(Head { tag, line_end, n }) = head(buf, pos)? else {
        return Ok(None);
    };
    let after = line_end + 2;
    match tag {
        b'$' => {
            if n < 0 {
                return Ok(Some(after));
            }
            if n > MAX_BULK {
                return Err(ProtocolError(format!("bulk length {n} is too large")));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            let mut p = after;
            for _ in 0..n.max(0) {
                match scan(buf, p)? {
                    Some(next) => p = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        _ => Ok(Some(after)),
    }
}

/// Takes the reply at the front of `buf` if it is whole (`None`, consuming nothing, if not).
/// An array must have been checked with [`scan`] first.
fn take(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    let Some(Head { tag, line_end, n }) = head(buf, 0)? else {
        return Ok(None);
    };
    let after = line_end + 2;
    let reply = match tag {
        b'+' | b'-' => {
            let text = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
            buf.advance(after);
            if tag == b'+' {
                Reply::Status(text)
            } else {
                Reply::Error(text)
            }
        }
        b':' => {
            buf.advance(after);
            Reply::Int(n)
        }
        b'$' => {
            if n < 0 {
                buf.advance(after);
                Reply::Bulk(None)
            } else {
                if n > MAX_BULK {
                    return Err(ProtocolError(format!("bulk length {n} is too large")));
                }
                if buf.len() < after + n as usize + 2 {
                    return Ok(None);
                }
                buf.advance(after);
                let data = buf.split_to(n as usize).freeze();
                buf.advance(2);
                Reply::Bulk(Some(data))
            }
        }
        _ => {
            // b'*', already scanned whole by the caller.
            buf.advance(after);
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    match take(buf)? {
                        Some(item) => items.push(item),
                        None => return Err(ProtocolError("truncated frame".into())),
                    }
                }
                Reply::Array(Some(items))
            }
        }
    };
    Ok(Some(reply))
}

/// Offset of the first CRLF at or after `from`.
#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let cr = at + buf.get(at..)?.iter().position(|&b| b == b'\r')?;
        if buf.get(cr + 1) == Some(&b'\n') {
            return Some(cr);
        }
        at = cr + 1;
    }
}

/// The decimal integer of a header line, as `str::parse::<i64>` reads it (an optional sign,
/// then digits), without going through UTF-8 validation for the usual short numbers.
#[inline]
fn parse_int(b: &[u8]) -> Result<i64, ProtocolError> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    if !digits.is_empty() && digits.len() <= 18 {
        let mut v: i64 = 0;
        for &d in digits {
            let x = d.wrapping_sub(b'0');
            if x > 9 {
                return Err(bad_int(b));
            }
            v = v * 10 + x as i64;
        }
        return Ok(if neg { -v } else { v });
    }
    // Empty, or long enough to overflow: the standard parser decides.
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_int(b))
}

#[cold]
fn bad_int(b: &[u8]) -> ProtocolError {
    ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_args() {
        let mut buf = BytesMut::new();
        encode_command(&mut buf, &[&b"SET"[..], b"k\r\n", b""]);
        assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_nested_and_partial() {
        let full = b"*3\r\n:1\r\n$3\r\nabc\r\n*2\r\n$-1\r\n-ERR x\r\n+OK\r\n";
        for cut in 0..full.len() - 5 {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(parse_reply(&mut buf).unwrap(), None, "cut at {cut}");
        }
        let mut buf = BytesMut::from(&full[..]);
        let r = parse_reply(&mut buf).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(Bytes::from_static(b"abc"))),
                Reply::Array(Some(vec![Reply::Bulk(None), Reply::Error("ERR x".into())])),
            ]))
        );
        assert_eq!(
            parse_reply(&mut buf).unwrap(),
            Some(Reply::Status("OK".into()))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn restore_encoding_is_the_generic_one() {
        for replace in [false, true] {
            for (key, ttl, payload) in [
                (&b"k"[..], &b"0"[..], &b"\x00\x01"[..]),
                (&[b'x'; 300][..], &b"1764370000123"[..], &[7u8; 70_000][..]),
                (&b""[..], &b"5"[..], &b""[..]),
            ] {
                let mut fast = BytesMut::new();
                encode_restore(&mut fast, key, ttl, payload, replace);
                let mut args: Vec<&[u8]> = vec![b"RESTORE", key, ttl, payload, b"ABSTTL"];
                if replace {
                    args.push(b"REPLACE");
                }
                let mut generic = BytesMut::new();
                encode_command(&mut generic, &args);
                assert_eq!(fast, generic);
            }
        }
    }

    #[test]
    fn key_command_encoding_is_the_generic_one() {
        for len in [0usize, 1, 9, 10, 99, 100, 999, 1000, 12_345] {
            let key = vec![b'k'; len];
            let other = vec![b'o'; len / 2];
            let mut fast = BytesMut::new();
            encode_key_commands(&mut fast, KeyCommand::Pttl, [&key[..], &other[..]]);
            encode_key_commands(&mut fast, KeyCommand::Dump, [&key[..]]);
            let mut generic = BytesMut::new();
            encode_command(&mut generic, &[&b"PTTL"[..], &key]);
            encode_command(&mut generic, &[&b"PTTL"[..], &other]);
            encode_command(&mut generic, &[&b"DUMP"[..], &key]);
            assert_eq!(fast, generic, "key length {len}");
        }
    }

    #[test]
    fn pair_encoding_is_the_per_command_one() {
        for len in [0usize, 1, 9, 10, 99, 100, 999, 1000, 12_345] {
            let (a, b) = (vec![b'k'; len], vec![b'o'; len / 2 + 1]);
            let mut fast = BytesMut::new();
            encode_pttl_dump_pairs(&mut fast, [&a[..], &b[..]]);
            let mut generic = BytesMut::new();
            for key in [&a, &b] {
                encode_command(&mut generic, &[&b"PTTL"[..], key]);
                encode_command(&mut generic, &[&b"DUMP"[..], key]);
            }
            assert_eq!(fast, generic, "key length {len}");
        }
        let mut fast = BytesMut::new();
        encode_key_commands(&mut fast, KeyCommand::MemoryUsage, [&b"key"[..]]);
        let mut generic = BytesMut::new();
        encode_command(&mut generic, &[&b"MEMORY"[..], b"USAGE", b"key"]);
        assert_eq!(fast, generic);
    }

    #[test]
    fn number_lines_read_like_the_general_path() {
        for line in [
            ":0",
            ":-1",
            ":-2",
            ":7",
            "$110",
            "$-1",
            "*2",
            "*-1",
            ":123456789012345678",
            ":-123456789012345678",
            ":1234567890123456789",
            ":9223372036854775807",
            ":-9223372036854775808",
            ":+5",
            ":",
            "$",
            ":-",
            ":1a",
            ": 1",
            ":--1",
        ] {
            let full = format!("{line}\r\n");
            let general = find_crlf(full.as_bytes(), 1)
                .and_then(|end| parse_int(&full.as_bytes()[1..end]).ok());
            let fast = number_line(full.as_bytes(), 0, full.as_bytes()[0]).map(|h| h.n);
            if let Some(n) = fast {
                assert_eq!(Some(n), general, "{line:?}");
            }
            let mut buf = BytesMut::from(full.as_bytes());
            let parsed = head(&buf, 0).ok().flatten().map(|h| h.n);
            assert_eq!(parsed, general, "{line:?}");
            // Cut anywhere, a line is never read whole.
            for cut in 0..full.len() {
                let part = &full.as_bytes()[..cut];
                assert!(
                    number_line(part, 0, b':').is_none(),
                    "{line:?} cut at {cut}"
                );
            }
            buf.clear();
        }
    }

    #[test]
    fn encodes_long_lengths() {
        let big = vec![b'x'; 12_345];
        let mut buf = BytesMut::new();
        encode_command(&mut buf, &[&b"A"[..]; 11]);
        encode_command(&mut buf, &[&big[..]]);
        let mut want = b"*11\r\n".to_vec();
        for _ in 0..11 {
            want.extend_from_slice(b"$1\r\nA\r\n");
        }
        want.extend_from_slice(b"*1\r\n$12345\r\n");
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n");
        assert_eq!(&buf[..], &want[..]);
        assert_eq!(
            parse_reply(&mut buf).unwrap().unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(Bytes::from_static(b"A"))); 11]))
        );
        assert_eq!(
            parse_reply(&mut buf).unwrap().unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(Bytes::from(big)))]))
        );
    }

    #[test]
    fn partial_bulk_consumes_nothing() {
        let mut buf = BytesMut::from(&b"$5\r\nab"[..]);
        assert_eq!(parse_reply(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"$5\r\nab");
        buf.extend_from_slice(b"cde\r\n:7\r\n");
        assert_eq!(
            parse_reply(&mut buf).unwrap(),
            Some(Reply::Bulk(Some(Bytes::from_static(b"abcde"))))
        );
        assert_eq!(parse_reply(&mut buf).unwrap(), Some(Reply::Int(7)));
        assert!(buf.is_empty());
    }

    #[test]
    fn integers_read_like_str_parse() {
        for s in [
            "0",
            "7",
            "-1",
            "+5",
            "-0",
            "123456789012345678",
            "-123456789012345678",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "00000000000000000000012",
            "",
            "-",
            "+",
            "1a",
            " 1",
            "1 ",
            "--1",
            "\u{e9}",
        ] {
            assert_eq!(parse_int(s.as_bytes()).ok(), s.parse::<i64>().ok(), "{s:?}");
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(parse_reply(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"$abc\r\n"[..]);
        assert!(parse_reply(&mut buf).is_err());
    }
}
