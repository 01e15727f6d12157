//! Both sides as the checks hold them: the source (`Source`: a live side, connected, or an
//! examined file), and what the checks leave a run with (`Sides`, `Facts`).
//!
//! May call: `check::connect` (a connected side), `source` (an examined RDB file).

use super::connect::Probed;
use crate::source::rdb_file::FileSummary;

/// The source as the checks see it.
pub(crate) enum Source {
    /// A live server or cluster, connected.
    Live(Probed),
    /// An RDB file, examined whole.
    File(FileSummary),
}

/// What the checks learned that a run goes on with.
#[derive(Default)]
pub(crate) struct Facts {
    /// The source's clock skew, ms (live source, when TIME answered).
    pub source_skew_ms: Option<i64>,
    /// The target's clock skew, ms.
    pub target_skew_ms: Option<i64>,
    /// The target's `proto-max-bulk-len`, when CONFIG GET is allowed.
    pub max_bulk: Option<u64>,
}

/// Both sides as the checks left them (`None`: a side that could not be used, with a fail row).
pub(crate) struct Sides {
    /// The source: a live side or an examined file.
    pub src: Option<Source>,
    /// The target.
    pub dst: Option<Probed>,
    /// What the run goes on with.
    pub facts: Facts,
}
