//! One file per group of endpoints.

mod body;
pub mod health;
pub mod metrics;
pub mod promote;
pub mod snapshots;
pub mod status;
