//! PLACEHOLDER for h10's reader (replaced by branch h10's read.rs at merge): the interface only.

use bytes::Bytes;

use super::{Chunk, Kind};
use crate::endpoint::{ConnError, Connection};

/// Why a big key could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The key was deleted (or expired) during the read.
    #[error("the key vanished while it was read in chunks")]
    Vanished,
    /// The key now holds another type.
    #[error("the key changed type")]
    TypeChanged(Option<Kind>),
    /// The key was written to during the read.
    #[error("the key changed while it was read in chunks ({read} elements read, it now holds {now}); read it again")]
    Changed {
        /// Elements read.
        read: u64,
        /// Its length at the end of the read.
        now: u64,
    },
    /// The server refused a command.
    #[error("the server refused {command}: {error}")]
    Refused {
        /// The command's name.
        command: &'static str,
        /// The server's error.
        error: String,
    },
    /// A reply ferry cannot read.
    #[error("unexpected reply to {command}: {what}")]
    Malformed {
        /// The command's name.
        command: &'static str,
        /// What was wrong.
        what: String,
    },
    /// The connection failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
}

/// Reads one key in chunks.
#[derive(Debug)]
pub struct ChunkReader {
    kind: Kind,
}

impl ChunkReader {
    /// A reader.
    pub fn new(_key: Bytes, kind: Kind, _budget: usize) -> ChunkReader {
        ChunkReader { kind }
    }

    /// A reader whatever the key holds.
    pub async fn open(
        _conn: &mut Connection,
        _key: Bytes,
        _budget: usize,
    ) -> Result<Option<ChunkReader>, ReadError> {
        Ok(None)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The next chunk.
    pub async fn next(&mut self, _conn: &mut Connection) -> Result<Option<Chunk>, ReadError> {
        Ok(None)
    }
}
