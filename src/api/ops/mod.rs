//! Operations: health, metrics, the API document.

pub mod docs;
pub mod health;
pub mod metrics;
