//! Lifetimes as clients write them (`expires_in`: `30m`, `12h`, `7d`, `2w`), for files and for
//! links, and the operator's bounds and defaults for each.

use std::time::Duration;

use time::OffsetDateTime;

use crate::base::{
    configuration::{SharingSettings, UploadSettings},
    error_code::FieldError,
};

/// The setting that bounds a file's lifetime.
pub const FILE_BOUND: &str = "upload.max_lifetime_secs";
/// The setting that bounds a link's lifetime.
pub const LINK_BOUND: &str = "sharing.max_expiry_secs";

/// A lifetime as `expires_in` writes it: a whole number of 1 to 4 digits (not 0) and its unit,
/// `s`, `m`, `h`, `d` or `w` (so at most 9999 weeks).
pub fn parse(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    let valid = (1..=4).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    let count: u64 = digits.parse().ok().filter(|_| valid)?;
    Some(Duration::from_secs(count * unit))
}

/// `expires_in` as a lifetime of at most `bound` seconds (0: no bound, named by `setting`), or
/// why not, as its field error says it.
pub fn within(text: &str, bound: u64, setting: &str) -> Result<Duration, String> {
    let lifetime = parse(text).ok_or("is not a lifetime such as `30m`, `12h`, `7d` or `2w`")?;
    if bound > 0 && lifetime.as_secs() > bound {
        let bound = match bound % 86_400 {
            0 => format!("{}d", bound / 86_400),
            _ => format!("{bound}s"),
        };
        return Err(format!("must be at most {bound} ({setting})"));
    }
    Ok(lifetime)
}

/// The lifetime a default takes within a bound (both in seconds, 0 = none): the default, the
/// bound itself when there is no default, or the smaller of the two. 0 = no lifetime.
fn defaulted(default: u64, bound: u64) -> u64 {
    match (default, bound) {
        (0, bound) => bound,
        (default, 0) => default,
        (default, bound) => default.min(bound),
    }
}

/// When a new link (share or upload) expires, for the `expires_in` its creation asked for
/// (absent: `sharing.default_expiry_secs`); `None`: until revoked.
pub fn link_expiry(
    asked: Option<&str>,
    sharing: &SharingSettings,
) -> Result<Option<OffsetDateTime>, FieldError> {
    let seconds = match asked {
        None => defaulted(sharing.default_expiry_secs, sharing.max_expiry_secs),
        Some(text) => within(text, sharing.max_expiry_secs, LINK_BOUND)
            .map_err(|why| FieldError::new("expires_in", why))?
            .as_secs(),
    };
    Ok((seconds > 0).then(|| OffsetDateTime::now_utc() + Duration::from_secs(seconds)))
}

/// The seconds a new file is to live from its commit, for the `expires_in` its upload asked
/// for (absent: `upload.default_lifetime_secs`, or the bound); `None`: until deleted.
pub fn of_upload(asked: Option<&str>, upload: &UploadSettings) -> Result<Option<i64>, FieldError> {
    let seconds = match asked {
        None => defaulted(upload.default_lifetime_secs, upload.max_lifetime_secs),
        Some(text) => within(text, upload.max_lifetime_secs, FILE_BOUND)
            .map_err(|why| FieldError::new("expires_in", why))?
            .as_secs(),
    };
    Ok((seconds > 0).then_some(seconds as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_whole_numbers_and_a_unit() {
        assert_eq!(parse("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        for bad in [
            "", "soon", "7", "d", "07d", "0s", "1.5h", "7 d", "-1d", "1y", "12345s",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(within("31d", 30 * 86_400, LINK_BOUND).is_err());
        assert!(within("30d", 30 * 86_400, LINK_BOUND).is_ok());
    }

    #[test]
    fn a_default_lives_within_the_bound() {
        assert_eq!(defaulted(0, 0), 0);
        assert_eq!(defaulted(0, 86_400), 86_400);
        assert_eq!(defaulted(7 * 86_400, 0), 7 * 86_400);
        assert_eq!(defaulted(7 * 86_400, 86_400), 86_400);
    }
}
