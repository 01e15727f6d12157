//! Per-key failures: which refusals of the target belong to one key, and what `--on-key-error
//! skip` does with them.
//!
//! One key the target refuses (an ACL key pattern, a value over `proto-max-bulk-len`, a payload
//! it cannot load) should not throw away a migration of millions of other keys. But a failure
//! that is not that key's fault must never be skipped: skipping it would dead-letter every key
//! after it (out of memory, a read-only replica, a lost permission) or turn a retryable state
//! (a loading or resharding server) into lost keys. So [`key_fault`] recognises a short list of
//! refusals that name the key's own content or name; everything else — including any error
//! text ferry does not know — keeps the writer's stop/retry behaviour.
//!
//! With `skip`, a writer collects the refused keys of a batch in a [`Quarantine`] and writes them
//! to the dead-letter file (fsynced) *before* the batch is acknowledged, so the checkpoint never
//! counts a batch as done whose dead letters could still be lost in a crash.

use crate::counts::Counts;
use crate::dead_letter::{DeadLetters, Letter};
use crate::endpoint::{Denied, ErrorKind};
use crate::policy::OnKeyError;
use crate::record::Record;

pub use crate::dead_letter::Cause;

/// The cause when a RESTORE error reply `err` is that key's own fault; `None` for everything
/// else, which stops the job (or is retried) as before. Why each class is where it is:
///
/// - `NOPERM` about *keys* (`No permissions to access a key`, 7.0+; `…access one of the keys
///   used as arguments`, 6.x): the user's key patterns deny this name only — other names pass.
///   `NOPERM` about a *command* (`…to run the 'restore' command`) refuses every key alike: stop.
/// - `invalid bulk length`: this value is over `proto-max-bulk-len` (smaller values pass).
/// - `Bad data format`, `payload version or checksum are wrong`: the target cannot load this
///   payload (a module type it lacks, an encoding it does not know). Payloads too new for an
///   older target are re-encoded first (`restore::reencode_refused`) and only land here when
///   that is impossible.
/// - Not the key's fault, never skipped: `OOM` (the target is full: every later key fails too),
///   `READONLY`, `LOADING`, `BUSY`, `MASTERDOWN`, `CLUSTERDOWN`, `TRYAGAIN`, `MOVED`/`ASK`
///   (routing; retried by `endpoint/route.rs`), `NOAUTH`/`WRONGPASS` (credentials), `CROSSSLOT`,
///   unknown commands, and any error text not listed above.
pub fn key_fault(err: &str) -> Option<Cause> {
    match ErrorKind::of(err) {
        ErrorKind::NoPerm(Denied::Key) => Some(Cause::AclDenied),
        ErrorKind::OverBulkLimit => Some(Cause::TooLarge),
        ErrorKind::PayloadVersion | ErrorKind::BadFormat => Some(Cause::BadPayload),
        _ => None,
    }
}

/// What the writers do with a key's own failure: stop the job, or write the key to the
/// dead-letter file.
#[derive(Clone)]
pub enum KeyErrors {
    /// `--on-key-error stop`.
    Stop,
    /// `--on-key-error skip`, into this file.
    Skip(std::sync::Arc<DeadLetters>),
}

impl std::fmt::Debug for KeyErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyErrors::Stop => f.write_str("Stop"),
            KeyErrors::Skip(d) => write!(f, "Skip({})", d.path().display()),
        }
    }
}

impl KeyErrors {
    /// The policy of `--on-key-error`, with its file.
    pub fn new(mode: OnKeyError, letters: Option<std::sync::Arc<DeadLetters>>) -> KeyErrors {
        match (mode, letters) {
            (OnKeyError::Skip, Some(d)) => KeyErrors::Skip(d),
            _ => KeyErrors::Stop,
        }
    }
}

/// Refused keys logged one by one before the log goes quiet about them.
const WARN_LINES: u64 = 10;

/// Refused keys logged so far (this process).
static WARNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The dead letters of one batch, written when the batch is done.
pub struct Quarantine {
    policy: KeyErrors,
    letters: Vec<Letter>,
}

impl Quarantine {
    /// An empty quarantine under `policy`.
    pub fn new(policy: KeyErrors) -> Quarantine {
        Quarantine {
            policy,
            letters: Vec::new(),
        }
    }

    /// Key `rec` (written into target DB `tdb`) was refused with `reason` (the target's text)
    /// for `cause`: with `skip` it is kept for the dead-letter file; with `stop`, `fatal` (the
    /// message naming key and reason) is returned for the job to stop with.
    pub fn refuse(
        &mut self,
        rec: &Record,
        tdb: u32,
        cause: Cause,
        reason: &str,
        fatal: anyhow::Error,
    ) -> anyhow::Result<()> {
        if matches!(self.policy, KeyErrors::Stop) {
            return Err(fatal);
        }
        // One line per key for the first few; a million refused keys must not flood the log
        // (the dead-letter file has them all).
        let n = WARNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < WARN_LINES {
            tracing::warn!(
                "key {} (db {}) refused by the target ({}): {reason}; written to the dead-letter file, the copy goes on{}",
                crate::display::escape_key(&rec.key),
                rec.db,
                cause.name(),
                if n + 1 == WARN_LINES { " (further refused keys are only written to the dead-letter file)" } else { "" }
            );
        }
        self.letters.push(Letter::of(rec, tdb, cause, reason));
        Ok(())
    }

    /// How many keys were refused so far.
    pub fn len(&self) -> usize {
        self.letters.len()
    }

    /// True when no key was refused.
    pub fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    /// Forgets the letters after the first `n` (an attempt that will be made again).
    pub fn truncate(&mut self, n: usize) {
        self.letters.truncate(n);
    }

    /// Writes the letters (durably) and counts them in `counts`; call before the batch's
    /// counts are returned (acknowledged).
    pub fn flush(self, counts: &mut Counts) -> anyhow::Result<()> {
        if let (KeyErrors::Skip(file), false) = (&self.policy, self.letters.is_empty()) {
            file.append(&self.letters)?;
            counts.dead_lettered += self.letters.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_own_faults_are_skippable() {
        let key = [
            "NOPERM No permissions to access a key",
            "NOPERM this user has no permissions to access one of the keys used as arguments",
            "ERR Protocol error: invalid bulk length",
            "ERR Bad data format",
            "ERR DUMP payload version or checksum are wrong",
        ];
        for e in key {
            assert!(key_fault(e).is_some(), "{e}");
        }
        let not_key = [
            "NOPERM User keyuser has no permissions to run the 'restore' command",
            "NOPERM this user has no permissions to run the 'restore' command",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "READONLY You can't write against a read only replica.",
            "LOADING Redis is loading the dataset in memory",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MOVED 3999 127.0.0.1:6381",
            "WRONGPASS invalid username-password pair or user is disabled.",
            "NOAUTH Authentication required.",
            "MASTERDOWN Link with MASTER is down",
            "BUSY Redis is busy running a script.",
            "ERR something ferry has never seen",
        ];
        for e in not_key {
            assert!(key_fault(e).is_none(), "{e}");
        }
    }
}
