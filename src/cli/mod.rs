//! The command line's own commands: administration, events, and an upload client.

pub mod admin;
pub mod client;
pub mod events;
