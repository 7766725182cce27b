//! What multipart uploads and resumable uploads do alike while bytes arrive: pacing, content
//! types, filenames.

pub mod clock;
pub mod content_type;
pub mod filename;
mod pace;
