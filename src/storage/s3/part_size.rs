//! The size a resumable upload's parts are cut at. Parts are all one size (R2 refuses a
//! multipart upload whose parts but the last differ), and a PATCH answers only once its bytes
//! are stored: what is left after its last whole part (the tail) is written into the upload's
//! row, and read back by the next PATCH. Clients send chunks of one size (tus-js-client's
//! `chunkSize`, tuspy's `chunk_size`), so a part size that divides the first request's body
//! into whole parts makes every later one end on a part's edge too: no tail goes through
//! Postgres, and the first part is on its way while the rest of the chunk arrives.

use super::MIN_PART_SIZE;
use crate::storage::partial::Expected;

/// S3's most parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// The largest size that divides the first body into whole parts of no more than `configured`,
/// no fewer than S3's smallest, and large enough for the upload's most in `MAX_PARTS` parts;
/// `configured` when there is none (no `Content-Length`, a body smaller than a part, or no such
/// divisor).
pub(super) fn for_first(expected: Expected, configured: usize) -> usize {
    let smallest = (MIN_PART_SIZE as u64).max(expected.upload.div_ceil(MAX_PARTS));
    let Some(body) = expected.body.filter(|&body| body >= smallest) else {
        return configured;
    };
    // The fewest parts first: the largest size that fits.
    (body.div_ceil(configured as u64)..=body / smallest)
        .find(|parts| body % parts == 0)
        .map_or(configured, |parts| (body / parts) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const CONFIGURED: usize = 8 << 20;

    fn first(body: Option<u64>, upload: u64) -> usize {
        for_first(Expected { body, upload }, CONFIGURED)
    }

    #[test]
    fn a_chunk_is_cut_into_the_fewest_whole_parts_that_fit() {
        assert_eq!(first(Some(10 * MIB), 1 << 30), 5 << 20);
        assert_eq!(first(Some(16 * MIB), 1 << 30), 8 << 20);
        assert_eq!(first(Some(6 * MIB), 1 << 30), 6 << 20);
        assert_eq!(first(Some(20 * MIB), 1 << 30), 5 << 20);
        // Decimal megabytes: 50,000,000 = 8 × 6,250,000.
        assert_eq!(first(Some(50_000_000), 1 << 30), 6_250_000);
    }

    #[test]
    fn without_a_fitting_divisor_the_configured_size() {
        // No Content-Length, a body smaller than S3's smallest part, a prime length.
        assert_eq!(first(None, 1 << 30), CONFIGURED);
        assert_eq!(first(Some(4 * MIB), 1 << 30), CONFIGURED);
        assert_eq!(first(Some(10_000_019), 1 << 30), CONFIGURED);
    }

    #[test]
    fn parts_stay_large_enough_for_the_whole_upload() {
        // 100 GiB in 10,000 parts needs parts of 10.24 MiB at least: 5 MiB would not do.
        let most = 100 << 30;
        assert_eq!(first(Some(10 * MIB), most), CONFIGURED);
        // Every size returned keeps the upload within S3's part count and part bounds.
        for body in [5 * MIB, 7 * MIB + 3, 12 * MIB, 64 * MIB, 1 << 30] {
            let size = first(Some(body), 40 << 30) as u64;
            assert!(size * MAX_PARTS >= 40 << 30 || size == CONFIGURED as u64);
            assert!(size >= MIN_PART_SIZE as u64 && size <= CONFIGURED as u64);
        }
    }
}
