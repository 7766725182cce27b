//! Who may do what: bearer tokens, the hosts auth off answers to, the origins browsers may call
//! from, rate limits, quotas, uploads in flight per caller.

pub mod auth;
pub mod cors;
pub mod hosts;
pub mod quota;
pub mod rate_limit;
pub mod upload_slots;
