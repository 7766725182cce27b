//! Who may do what: bearer tokens, rate limits, quotas.

pub mod auth;
pub mod quota;
pub mod rate_limit;
