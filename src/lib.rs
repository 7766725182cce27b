//! intake: a streaming file upload service. docs/architecture.md describes the layout: the
//! layers, top first, and which way imports go.

// Wiring: start-up, the route table, the HTTP server, the command line.
pub mod cli;
pub mod routes;
mod server;
pub mod startup;

// The HTTP areas, each with the routes and state it owns, and what they share.
pub mod api;

// Shared services: what the areas do alike.
pub mod access;
pub mod catalog;
pub mod events;
pub mod ingest;
pub mod resumable;
pub mod sweep;

// Where the bytes live.
pub mod storage;

// The base: errors, configuration, database, telemetry.
pub mod base;
