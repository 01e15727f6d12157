//! What the user chose where ferry cannot decide alone: what to do with keys the target already
//! holds (`--on-conflict`) and with keys the target refuses (`--on-key-error`).
//!
//! Plain enums, owned here so that the sinks, the checks, the partition's job id and the job's
//! identity can read them without knowing the command line: `cli.rs` parses the flags straight
//! into them. This module calls nothing.

/// What to do with keys that already exist on the target (`--on-conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Refuse to start when target keys would be overwritten.
    Fail,
    /// Overwrite target keys.
    Replace,
    /// Keep the target's keys.
    Skip,
}

/// What to do with a key the target refuses for a reason of that key alone (`--on-key-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnKeyError {
    /// Stop the job, naming the key and the reason (exit 2).
    Stop,
    /// Write the key to the dead-letter file and go on (exit 1 at the end).
    Skip,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The job's identity (so every checkpoint's fingerprint) holds `on_conflict` by these
    /// names: an old checkpoint stops matching if they change.
    #[test]
    fn serialised_names_are_stable() {
        let names: Vec<String> = [OnConflict::Fail, OnConflict::Replace, OnConflict::Skip]
            .iter()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .collect();
        assert_eq!(names, ["\"fail\"", "\"replace\"", "\"skip\""]);
    }
}
