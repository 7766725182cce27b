//! The command line's own commands: administration, and an upload client.

pub mod admin;
pub mod client;
