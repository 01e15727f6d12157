//! A server that refused to read a key: one message, with what to do, for every reader.
//!
//! The hint follows the refusal's [`ErrorKind`]: an ACL refusal names the rights the reader
//! needs, a cluster redirection says the cluster is being resharded.

use super::expiry::ReadError;
use super::expiry::ReadKeysError;
use crate::display::escape_key;
use crate::endpoint::ErrorKind;

/// The rights the copy (and the follower) need on the source, for the hint of a refusal.
pub const COPY_RIGHTS: &str = "+scan +pttl +dump +time +select +info and ~* (all keys)";

/// The rights verification needs on either side.
pub const VERIFY_RIGHTS: &str = "+scan +pttl +dump +time +select +info +randomkey +dbsize and ~* \
     (all keys), and for big keys (--big-key-bytes) +memory +type +strlen +getrange +lrange +llen \
     +sscan +scard +zscan +zcard +hscan +hlen +xrange +xlen +xinfo +xpending";

/// A read a cluster answered with a redirection (`MOVED`/`ASK`) where ferry cannot follow it:
/// the cluster is being resharded. Typed so that a caller that can simply try again later (the
/// follower's background reconciliation pass) tells it from a real refusal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Resharding(String);

/// Who read, for messages: `side` ("source"/"target") and endpoint (without password), and the
/// rights it needs.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// `source` or `target`.
    pub side: &'a str,
    /// The endpoint, printed.
    pub ep: &'a str,
    /// See [`COPY_RIGHTS`], [`VERIFY_RIGHTS`].
    pub rights: &'a str,
}

impl Who<'_> {
    /// `key` (of `db`) refused with `err`.
    pub fn refused(&self, db: u32, key: &[u8], err: &str) -> anyhow::Error {
        let Who { side, ep, rights } = *self;
        let kind = ErrorKind::of(err);
        let hint = match kind {
            ErrorKind::NoPerm(_) => format!(" The {side}'s ACL user needs {rights}."),
            k if k.is_redirect() => format!(
                " The {side} cluster is being resharded: rerun the same command when it is over; \
                 the slots that moved are read again on their new masters."
            ),
            _ => String::new(),
        };
        let message = format!(
            "the {side} {ep} refused to read key {} (db {db}): {err}.{hint}",
            escape_key(key)
        );
        if kind.is_redirect() {
            anyhow::Error::new(Resharding(message))
        } else {
            anyhow::anyhow!(message)
        }
    }

    /// A reply ferry cannot read.
    pub fn malformed(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "the {} {} sent a reply ferry cannot read: {what}",
            self.side,
            self.ep
        )
    }

    /// The message for a failed read of `keys` of `db`.
    pub fn reply_error(&self, db: u32, keys: &[bytes::Bytes], e: ReadError) -> anyhow::Error {
        match e {
            ReadError::Refused { index, error } => match keys.get(index) {
                Some(key) => self.refused(db, key, &error),
                None => self.malformed("a refusal of a key it was not asked about"),
            },
            ReadError::Malformed(what) => self.malformed(what),
        }
    }

    /// The message for a failed [`read_keys`](super::expiry::read_keys) of `keys` of `db`.
    pub fn read_error(&self, db: u32, keys: &[bytes::Bytes], e: ReadKeysError) -> anyhow::Error {
        match e {
            ReadKeysError::Conn(e) => e,
            ReadKeysError::Reply(e) => self.reply_error(db, keys, e),
        }
    }
}
