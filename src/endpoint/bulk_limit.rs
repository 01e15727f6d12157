//! A value larger than the target's `proto-max-bulk-len`, recognised when `CONFIG GET` is not
//! allowed.
//!
//! When the checks before writing can read the limit, the writer (`sink/restore.rs`) refuses such a value before sending
//! it. Managed services and restricted ACL users often deny `CONFIG`, and then the first sign is
//! the server's answer to the value: `-ERR Protocol error: invalid bulk length`, and the
//! connection closed at once. When ferry reads that reply, [`too_large`] says what to do; but
//! mid-write of the value it often sees only "connection reset", a transient failure it would
//! retry (re-sending the value) until `--retry-for` ran out.
//!
//! So when a connection is lost while a batch holds a value larger than any this writer has
//! written and than [`PROBE_FLOOR`], the writer asks the target on a new connection: it sends
//! only the length line of a bulk of that size (no bytes, no command runs). A server whose limit
//! is smaller answers the refusal at once; one that accepts the size waits for the bytes, and
//! ferry closes the connection after [`PROBE_WAIT`], the partial command discarded unrun. The
//! server reserves buffer space for the announced size while it waits, as it would for the
//! value itself.

use std::time::Duration;

use crate::display::{escape_key, human_bytes};
use crate::endpoint::{ErrorKind, Pipeline, Reply, Server};

/// Values up to this size are never suspected: 1 MiB is the smallest `proto-max-bulk-len` Redis
/// 6.2+ and Valkey accept (older servers accept smaller limits, which go unrecognised here).
pub const PROBE_FLOOR: usize = 1 << 20;

/// How long a target that accepts the announced size is given to refuse it anyway. A refusal
/// comes as soon as the server reads the line; a busy server answering later is taken as
/// accepting, and the writer retries as usual.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// True when the target refuses a bulk of `len` bytes (`Protocol error: invalid bulk length`);
/// false when it does not or cannot be asked (then the loss is treated as transient).
pub async fn refuses(server: &Server, len: usize) -> bool {
    let ask = async {
        let mut conn = server.connect().await.ok()?;
        let mut p = Pipeline::new();
        p.bulk_header_only(len as u64);
        conn.send(&p).await.ok()?;
        let mut reply = Vec::with_capacity(1);
        conn.recv_into(1, &mut reply).await.ok()?;
        reply.pop()
    };
    match tokio::time::timeout(PROBE_WAIT, ask).await {
        Ok(Some(Reply::Error(e))) => ErrorKind::of(&e) == ErrorKind::OverBulkLimit,
        _ => false,
    }
}

/// After a connection to `server` was lost while a value of `size` bytes (key `key`, target DB
/// `db`) was in flight: the final error when the server refuses values that large, with a line
/// in the log that ferry asks. `None`: take the loss as transient.
pub async fn check_loss(
    server: &Server,
    db: u32,
    key: &[u8],
    size: usize,
) -> Option<anyhow::Error> {
    let ep = server.endpoint.to_string();
    tracing::info!(
        "the connection to the target {ep} was lost while key {} ({size} bytes) was being written; asking \
         the target whether it takes values that large",
        escape_key(key)
    );
    refuses(server, size)
        .await
        .then(|| too_large(&ep, db, key, size))
}

/// A value the target refused as over its `proto-max-bulk-len`: the key (so a writer with
/// `--on-key-error skip` can set it aside) and the message that says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TooLarge {
    /// The refused key.
    pub key: Vec<u8>,
    /// What happened and what to do.
    pub message: String,
}

/// The error for a value the target refused as too large: key, size, the setting, what to do.
pub fn too_large(ep: &str, db: u32, key: &[u8], size: usize) -> anyhow::Error {
    let size = size as u64;
    let message = format!(
        "key {} (db {db}) is {} ({size} bytes serialized) and the target {ep} refuses a value that large: it \
         answers \"Protocol error: invalid bulk length\", so the value exceeds its proto-max-bulk-len (ferry checks \
         that limit up front only where this user may run CONFIG GET). Raise proto-max-bulk-len on the target above {size} bytes \
         (CONFIG SET proto-max-bulk-len, or the parameter group of a managed service) and rerun the same command \
         to resume; or pass --on-key-error skip to set such keys aside in a dead-letter file and copy the others",
        escape_key(key),
        human_bytes(size)
    );
    anyhow::Error::new(TooLarge {
        key: key.to_vec(),
        message,
    })
}
