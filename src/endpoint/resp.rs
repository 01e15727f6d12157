//! RESP2: the wire format every Redis version since 1.2 speaks.
//!
//! ferry talks RESP2 to both sides because 3.2–5.x sources have no `HELLO`, and RESP2 is all a
//! migration needs. Commands are encoded straight into one reusable buffer so a pipeline of
//! thousands of `RESTORE`s is a single write; replies are parsed in place from the read buffer
//! with `Bytes` slices, so a large `DUMP` payload is never copied twice.

use bytes::{Buf, Bytes, BytesMut};

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

fn push_header(buf: &mut BytesMut, tag: u8, n: usize) {
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
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    match scan(buf, 0)? {
        None => Ok(None),
        Some(end) => {
            let mut frame = buf.split_to(end).freeze();
            let reply = build(&mut frame)?;
            Ok(Some(reply))
        }
    }
}

/// Checks that a whole reply starts at `pos`; returns the offset just past it.
fn scan(buf: &[u8], pos: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(line_end) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let after = line_end + 2;
    match tag {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let n = parse_int(&buf[pos + 1..line_end])?;
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
            let n = parse_int(&buf[pos + 1..line_end])?;
            let mut p = after;
            for _ in 0..n.max(0) {
                match scan(buf, p)? {
                    Some(next) => p = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        other => Err(ProtocolError(format!(
            "unexpected reply type byte 0x{other:02x}"
        ))),
    }
}

/// Builds the reply from a frame already known to be complete.
fn build(frame: &mut Bytes) -> Result<Reply, ProtocolError> {
    let tag = frame[0];
    let line_end = find_crlf(frame, 1).ok_or_else(|| ProtocolError("truncated frame".into()))?;
    let line = frame.slice(1..line_end);
    frame.advance(line_end + 2);
    Ok(match tag {
        b'+' => Reply::Status(String::from_utf8_lossy(&line).into_owned()),
        b'-' => Reply::Error(String::from_utf8_lossy(&line).into_owned()),
        b':' => Reply::Int(parse_int(&line)?),
        b'$' => {
            let n = parse_int(&line)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let data = frame.split_to(n as usize);
                frame.advance(2);
                Reply::Bulk(Some(data))
            }
        }
        b'*' => {
            let n = parse_int(&line)?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(build(frame)?);
                }
                Reply::Array(Some(items))
            }
        }
        other => {
            return Err(ProtocolError(format!(
                "unexpected reply type byte 0x{other:02x}"
            )))
        }
    })
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let slice = buf.get(from..)?;
    slice
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn parse_int(b: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(b))))
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
    fn rejects_garbage() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(parse_reply(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"$abc\r\n"[..]);
        assert!(parse_reply(&mut buf).is_err());
    }
}
