//! The base every layer stands on: error codes and their rendering, configuration, database
//! pools, telemetry. It imports nothing above it.

pub mod configuration;
pub mod db;
pub mod error;
pub mod error_code;
pub mod heap;
pub mod in_flight;
pub mod liveness;
pub mod problem;
pub mod telemetry;
