//! The HTTP areas: each owns its routes and the state it registers. The route table that
//! mounts them is `routes`.

pub mod account;
pub mod checkout;
pub mod files;
pub mod lessons;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod tus;
pub mod uploads;
