//! Resumable uploads, whatever protocol brings their bytes: each upload's state in Postgres
//! (`record`), so that any instance continues it; the requests writing to one here, which a
//! newer request may ask to let go (`writers`); and their removal, terminated or expired
//! (`expiry`).

pub mod expiry;
pub mod record;
pub mod writers;
