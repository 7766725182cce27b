//! One test binary for the HTTP API: each test runs the real server on a random port with its
//! own Postgres database and storage root.

mod auth;
mod browser;
mod caller_limits;
mod checkout;
mod child;
mod client;
mod container;
mod crash;
mod digests;
mod disk_full;
mod downloads;
mod faults;
mod files;
mod headers;
mod health;
mod helpers;
mod hostile;
mod hosts;
mod layers;
mod lessons;
mod load;
mod metrics;
mod quota;
mod rate_limit;
mod readme;
mod s3;
mod schemathesis;
mod slow_clients;
mod startup;
mod traces;
mod tus;
mod tus_clients;
mod tus_edges;
mod tus_refusals;
mod uploads;
