//! Who may do what: bearer tokens, rate limits, quotas, uploads in flight per caller.

pub mod auth;
pub mod quota;
pub mod rate_limit;
pub mod upload_slots;
