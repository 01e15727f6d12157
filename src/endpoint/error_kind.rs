//! What a Redis error reply means, classified once.
//!
//! A server refuses one command with `-CODE text`: the code (`NOPERM`, `MOVED`, `OOM`, …) says
//! what kind of refusal it is, and for the plain `ERR` code only the text does ("unknown
//! command", "invalid bulk length", "Bad data format", …). Every caller that acts on a refusal
//! (retry it, follow a redirection, skip a key, word a hint) asks [`ErrorKind::of`] instead of
//! matching prefixes itself, so one server's wording is learnt in one place. The texts are the
//! ones Redis 3.2–7.x and Valkey 7–8 send (see the tests); anything else is [`ErrorKind::Other`].

/// The kind of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `NOPERM`: an ACL refusal, of a key name or of the command itself.
    NoPerm(Denied),
    /// `NOAUTH`: the server wants a password.
    NoAuth,
    /// `WRONGPASS`, or `ERR invalid password` (before 6.0): the credentials are wrong.
    WrongPass,
    /// `AUTH` sent to a server without a password ("without any password configured", "no
    /// password is set").
    NoPasswordSet,
    /// `MOVED slot host:port`: the slot lives on another cluster master.
    Moved,
    /// `ASK slot host:port`: the slot is migrating; ask that node once.
    Ask,
    /// `TRYAGAIN`: a multi-key command during a slot migration.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot now.
    ClusterDown,
    /// `LOADING`: the server is still loading its dataset.
    Loading,
    /// `BUSY`: a script or function is running.
    Busy,
    /// `BUSYKEY`: RESTORE without REPLACE found the key present.
    BusyKey,
    /// `MASTERDOWN`: a replica lost its master.
    MasterDown,
    /// `OOM`: maxmemory reached.
    Oom,
    /// `READONLY`: a write sent to a replica.
    ReadOnly,
    /// `NOSCRIPT`: EVALSHA of an unknown script.
    NoScript,
    /// `WRONGTYPE`: the command does not apply to the key's type.
    WrongType,
    /// `CROSSSLOT`: keys of one command in different slots.
    CrossSlot,
    /// "unknown command" (renamed, disabled or too new for the server).
    UnknownCommand,
    /// A request argument over `proto-max-bulk-len`: "invalid bulk length".
    OverBulkLimit,
    /// A string grown (APPEND, SETRANGE) past `proto-max-bulk-len`: "exceeds maximum allowed
    /// size".
    StringTooLong,
    /// RESTORE: "DUMP payload version or checksum are wrong" (often a payload too new).
    PayloadVersion,
    /// RESTORE: "Bad data format" (a payload the server cannot load, e.g. a missing module).
    BadFormat,
    /// Anything else.
    Other,
}

/// What a `NOPERM` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A key name outside the user's key patterns ("No permissions to access a key", 7.0+;
    /// "…to access one of the keys used as arguments", 6.x): other names may pass.
    Key,
    /// The command, a channel or anything else: every key alike.
    Command,
}

impl ErrorKind {
    /// Classifies the text of an error reply (without the leading `-`).
    pub fn of(text: &str) -> ErrorKind {
        let code = text.split_ascii_whitespace().next().unwrap_or("");
        let is = |c: &str| code.eq_ignore_ascii_case(c);
        let kind = if is("NOPERM") {
            let key = text.contains(" key") && !text.contains("to run the");
            ErrorKind::NoPerm(if key { Denied::Key } else { Denied::Command })
        } else if is("NOAUTH") {
            ErrorKind::NoAuth
        } else if is("WRONGPASS") {
            ErrorKind::WrongPass
        } else if is("MOVED") {
            ErrorKind::Moved
        } else if is("ASK") {
            ErrorKind::Ask
        } else if is("TRYAGAIN") {
            ErrorKind::TryAgain
        } else if is("CLUSTERDOWN") {
            ErrorKind::ClusterDown
        } else if is("LOADING") {
            ErrorKind::Loading
        } else if is("BUSY") {
            ErrorKind::Busy
        } else if is("BUSYKEY") {
            ErrorKind::BusyKey
        } else if is("MASTERDOWN") {
            ErrorKind::MasterDown
        } else if is("OOM") {
            ErrorKind::Oom
        } else if is("READONLY") {
            ErrorKind::ReadOnly
        } else if is("NOSCRIPT") {
            ErrorKind::NoScript
        } else if is("WRONGTYPE") {
            ErrorKind::WrongType
        } else if is("CROSSSLOT") {
            ErrorKind::CrossSlot
        } else {
            ErrorKind::Other
        };
        if kind != ErrorKind::Other {
            return kind;
        }
        Self::of_text(text)
    }

    /// The kinds only the text tells (code `ERR`, or none).
    fn of_text(text: &str) -> ErrorKind {
        let lower = text.to_ascii_lowercase();
        if lower.contains("unknown command") {
            ErrorKind::UnknownCommand
        } else if lower.contains("invalid bulk length") {
            ErrorKind::OverBulkLimit
        } else if lower.contains("exceeds maximum allowed size") {
            ErrorKind::StringTooLong
        } else if lower.contains("payload version") {
            ErrorKind::PayloadVersion
        } else if lower.contains("bad data format") {
            ErrorKind::BadFormat
        } else if lower.contains("without any password configured")
            || lower.contains("no password is set")
        {
            ErrorKind::NoPasswordSet
        } else if lower.contains("invalid password") {
            ErrorKind::WrongPass
        } else {
            ErrorKind::Other
        }
    }

    /// A cluster redirection (`MOVED`, `ASK`).
    pub fn is_redirect(self) -> bool {
        matches!(self, ErrorKind::Moved | ErrorKind::Ask)
    }

    /// A refusal that goes away on its own in a cluster: a redirection to follow, a slot
    /// migration or failover in progress, or a server still loading.
    pub fn is_cluster_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Moved
                | ErrorKind::Ask
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::Loading
        )
    }

    /// A payload the server cannot load (`PayloadVersion` or `BadFormat`).
    pub fn is_bad_payload(self) -> bool {
        matches!(self, ErrorKind::PayloadVersion | ErrorKind::BadFormat)
    }
}

#[cfg(test)]
mod tests {
    use super::{Denied, ErrorKind as K};

    #[test]
    fn classifies_what_servers_send() {
        for (text, kind) in [
            (
                "NOPERM No permissions to access a key",
                K::NoPerm(Denied::Key),
            ),
            (
                "NOPERM this user has no permissions to access one of the keys used as arguments",
                K::NoPerm(Denied::Key),
            ),
            (
                "NOPERM User keyuser has no permissions to run the 'restore' command",
                K::NoPerm(Denied::Command),
            ),
            (
                "NOPERM this user has no permissions to run the 'restore' command",
                K::NoPerm(Denied::Command),
            ),
            (
                "NOPERM No permissions to access a channel",
                K::NoPerm(Denied::Command),
            ),
            ("NOAUTH Authentication required.", K::NoAuth),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                K::WrongPass,
            ),
            ("ERR invalid password", K::WrongPass),
            (
                "ERR AUTH <password> called without any password configured for the default user.",
                K::NoPasswordSet,
            ),
            (
                "ERR Client sent AUTH, but no password is set",
                K::NoPasswordSet,
            ),
            ("MOVED 3999 127.0.0.1:6381", K::Moved),
            ("ASK 3999 ::1:6381", K::Ask),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                K::TryAgain,
            ),
            ("CLUSTERDOWN The cluster is down", K::ClusterDown),
            ("LOADING Redis is loading the dataset in memory", K::Loading),
            ("BUSY Redis is busy running a script.", K::Busy),
            ("BUSYKEY Target key name already exists.", K::BusyKey),
            ("MASTERDOWN Link with MASTER is down", K::MasterDown),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                K::Oom,
            ),
            (
                "READONLY You can't write against a read only replica.",
                K::ReadOnly,
            ),
            ("NOSCRIPT No matching script.", K::NoScript),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                K::WrongType,
            ),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                K::CrossSlot,
            ),
            (
                "ERR unknown command 'MEMORY', with args beginning with: ",
                K::UnknownCommand,
            ),
            (
                "ERR unknown command `XINFO`, with args beginning with: ",
                K::UnknownCommand,
            ),
            ("ERR Protocol error: invalid bulk length", K::OverBulkLimit),
            (
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
                K::StringTooLong,
            ),
            (
                "ERR DUMP payload version or checksum are wrong",
                K::PayloadVersion,
            ),
            ("ERR Bad data format", K::BadFormat),
            ("ERR something ferry has never seen", K::Other),
            ("", K::Other),
        ] {
            assert_eq!(K::of(text), kind, "{text}");
        }
    }

    #[test]
    fn groups() {
        assert!(K::Ask.is_redirect() && !K::TryAgain.is_redirect());
        assert!(K::Loading.is_cluster_transient() && !K::Busy.is_cluster_transient());
        assert!(K::BadFormat.is_bad_payload() && !K::Other.is_bad_payload());
    }
}
