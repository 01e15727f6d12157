//! One row of the checks' result (`Check`: what was checked, how it went, what was found, what
//! to do) and its `Status`; every check builds its rows from these.
//!
//! May call: `endpoint` (its connection errors, which mark a row as caused by a lost
//! connection). Nothing else of `check`.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine for the migration.
    Ok,
    /// The migration would run, but something deserves a look.
    Warn,
    /// The migration would fail or lose data.
    Fail,
}

impl Status {
    /// 0 ready, 1 warnings only, 2 something would fail.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    /// "ok", "warn" or "FAIL", as the table shows it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of the result: what was checked, how it went, what was found, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked, e.g. "target: maxmemory".
    pub name: String,
    /// ok, warn or fail.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (empty when ok).
    pub fix: String,
    /// What a failure came from when a connection failed: the gate of a run tries again then.
    #[serde(skip)]
    pub(crate) lost: Lost,
}

/// Whether a failed row came from a connection that failed, which a retry may not meet again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Not a connection failure: the answer stands.
    #[default]
    No,
    /// Nothing accepted the connection: a wrong address at first contact, a restart later.
    Refused,
    /// A connection was lost or the server stalled.
    Dropped,
}

/// What to do about a check that lost its connection.
pub(crate) const LOST_FIX: &str = "check the server's health and network, then run the check again";

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, "")
    }

    /// A warning.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, detail, fix)
    }

    /// A failure.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, detail, fix)
    }

    /// The row, marked as caused by `e` when `e` is a connection failure.
    pub(crate) fn caused_by(self, e: &anyhow::Error) -> Check {
        match e.downcast_ref::<crate::endpoint::ConnError>() {
            Some(c) => self.caused_by_conn(c),
            None => self,
        }
    }

    /// The row, marked as caused by the connection failure `e`. A lost or silent connection
    /// says nothing about what the row checks (an ACL, a setting), so its "what to do" is the
    /// connection's, not the check's.
    pub(crate) fn caused_by_conn(mut self, e: &crate::endpoint::ConnError) -> Check {
        use crate::endpoint::ConnError;
        self.lost = match e {
            ConnError::Connect { .. } => Lost::Refused,
            ConnError::Lost { .. } | ConnError::Stalled { .. } => Lost::Dropped,
            _ => Lost::No,
        };
        if self.lost == Lost::Dropped {
            self.fix = LOST_FIX.into();
        }
        self
    }

    /// "name: detail | what to do: fix", the row as one line of a log.
    pub fn line(&self) -> String {
        if self.fix.is_empty() {
            format!("{}: {}", self.name, self.detail)
        } else {
            format!("{}: {} | what to do: {}", self.name, self.detail, self.fix)
        }
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: fix.into(),
            lost: Lost::No,
        }
    }
}
