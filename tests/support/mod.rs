//! Shared helpers for the integration tests (`mod support;` in each test file).
pub mod bigkey_data;
pub mod cluster_data;
pub mod data;
pub mod ferry;
pub mod servers;
pub mod slowlog;
