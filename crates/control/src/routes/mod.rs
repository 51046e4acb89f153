//! One file per group of endpoints.

pub mod health;
pub mod metrics;
pub mod snapshots;
pub mod status;
