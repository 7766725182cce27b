//! One test binary for the HTTP API: each test runs the real server on a random port with its
//! own Postgres database and storage root.

mod container;
mod downloads;
mod faults;
mod files;
mod health;
mod helpers;
mod uploads;
