//! What a run asks the checks (`Gate`): the job, which command they are for (`Purpose`), and the
//! flags and state of the run that decide which rows apply and how strict they are.
//!
//! May call: `job`, `policy`, `source` (an examined RDB file). Nothing else of `check`.

use crate::job::Job;
use crate::policy::OnConflict;
use crate::source::rdb_file::FileSummary;

/// Which command the checks are for: what it sends decides which rows apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `ferry check`: every row, as `migrate` would need them.
    Check,
    /// The gate of `ferry migrate`.
    Migrate,
    /// The gate of `ferry verify`: it only reads, so no capacity, conflict or RESTORE rows.
    Verify,
}

/// What a run asks the checks: the job, and how they run beyond it (the gate of `migrate` and
/// `verify` is given one; `ferry check` makes its own).
pub struct Gate<'a> {
    /// The job, resolved from the command line.
    pub job: &'a Job,
    /// For which command.
    pub purpose: Purpose,
    /// The `--on-conflict` of the run.
    pub on_conflict: OnConflict,
    /// Look the source's keys up on the target (`--on-conflict fail`); false on a resume
    /// whose checkpoint says the check passed (the target then holds ferry's own keys).
    pub conflicts: bool,
    /// Keys already copied by the run being resumed: they need no more room on the target.
    pub copied_keys: u64,
    /// `None` without `--follow`, else whether `--enable-notifications` was given.
    pub follow: Option<bool>,
    /// `--source-insecure`, `--target-insecure`.
    pub insecure: (bool, bool),
    /// An RDB file the caller already examined (else the checks examine it).
    pub file: Option<&'a FileSummary>,
    /// `--on-key-error skip`: a key the target will refuse is set aside, not a failure.
    pub skip_key_errors: bool,
}
