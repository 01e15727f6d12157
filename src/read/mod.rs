//! The Redis read layer: how ferry reads keys from a live server, for every part that reads
//! them — the copy's source reader (`source/scan.rs`), verification's live sides
//! (`verify/live_node.rs`), the follower (`follow/apply.rs`), the big-key copy and the checks.
//!
//! It owns the commands and the meaning of their replies, so that every reader gets the same
//! answer for the same key:
//! - `expiry.rs`: `TIME, PTTL k, DUMP k, …, TIME` round trips into payloads with absolute
//!   expiries (exact within the TIME bracket, re-read after a stall), and keys that vanished
//!   between SCAN and DUMP (`None`);
//! - `clock.rs`: this machine's clock and a server's skew from it, measured one way;
//! - `scan.rs`: the SCAN command and its reply;
//! - `dump_size.rs`: how many keys one DUMP round trip asks for;
//! - `refusal.rs`: a refused read as one message with what to do (by the reply's
//!   [`ErrorKind`](crate::endpoint::ErrorKind)).
//!
//! What it may call: `endpoint` (connections, replies, error kinds) and `report::escape_key`
//! for messages. Nothing here knows about batches, checkpoints, sinks or verification.

pub mod clock;
pub mod dump_size;
pub mod expiry;
pub mod refusal;
pub mod scan;
