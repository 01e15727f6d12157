//! Verification: proof that the target holds what the source holds.
