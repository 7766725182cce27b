//! intake: a streaming file upload service. See DESIGN.md for the contract.

pub mod account;
pub mod admin;
pub mod allocator;
pub mod auth;
pub mod checkout;
pub mod client;
pub mod configuration;
pub mod db;
pub mod error;
pub mod files;
pub mod health;
mod http;
pub mod in_flight;
pub mod instances;
pub mod lessons;
pub mod openapi;
pub mod problem;
pub mod quota;
pub mod rate_limit;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tus;
pub mod uploads;
pub mod web;
