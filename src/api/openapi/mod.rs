//! The API document's leaves: a resource registered with its operations' descriptions, and the
//! error answers many operations share. The document itself is assembled by `routes`.

mod documented;
pub mod responses;

pub use self::documented::{Documented, documenting};
