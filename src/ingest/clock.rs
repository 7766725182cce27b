//! Bounds every wait for a request body: the idle timeout and the minimum rate.

use std::{cell::Cell, future::Future, pin::pin, rc::Rc};

use tokio::time::Instant;

use super::pace::Pace;
use crate::base::{configuration::UploadSettings, error::ApiError};

/// Bounds every wait for the body: the idle timeout and the minimum rate.
pub struct Clock<'a> {
    settings: &'a UploadSettings,
    /// Body bytes read so far, framing included.
    received: Rc<Cell<u64>>,
    pace: Cell<Pace>,
}

impl<'a> Clock<'a> {
    /// `received`: the body bytes read so far, framing included, counted by the body's reader.
    pub fn new(settings: &'a UploadSettings, received: Rc<Cell<u64>>) -> Self {
        Self {
            settings,
            received,
            pace: Cell::new(Pace::new(settings)),
        }
    }
}

impl Clock<'_> {
    /// Waits for the body's next piece: at most `idle_timeout_secs`, and only while the body
    /// keeps up the minimum rate.
    pub async fn bounded<T>(&self, next: impl Future<Output = T>) -> Result<T, ApiError> {
        let settings = self.settings;
        let idle = settings.idle_timeout();
        let started = Instant::now();
        let mut next = pin!(next);
        loop {
            let idle_left = idle.saturating_sub(started.elapsed());
            let mut pace = self.pace.get();
            let limit = pace.until_check().map_or(idle_left, |c| c.min(idle_left));
            let waiting = Instant::now();
            let outcome = tokio::time::timeout(limit, &mut next).await;
            let judged = pace.record(waiting.elapsed(), self.received.get());
            self.pace.set(pace);
            judged.map_err(|_| ApiError::UploadTooSlow {
                min_bytes_per_sec: settings.min_bytes_per_sec,
                window_secs: settings.min_rate_window_secs,
            })?;
            match outcome {
                Ok(item) => return Ok(item),
                Err(_) if started.elapsed() >= idle => {
                    return Err(ApiError::UploadTimeout(idle.as_secs()));
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(idle_secs: u64, min_bytes_per_sec: u64) -> UploadSettings {
        UploadSettings {
            max_file_bytes: 1 << 30,
            max_files: 10,
            max_request_bytes: 1 << 31,
            idle_timeout_secs: idle_secs,
            min_bytes_per_sec,
            min_rate_window_secs: 10,
            min_rate_grace_secs: 5,
            allowed_content_types: Vec::new(),
            max_in_flight_per_user: 0,
            max_lifetime_secs: 0,
            default_lifetime_secs: 0,
        }
    }

    fn clock(settings: &UploadSettings) -> Clock<'_> {
        Clock::new(settings, Rc::default())
    }

    /// Virtual time only moves when every task waits on a timer: the elapsed times are exact.
    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_when_its_first_window_closes_short() {
        let settings = settings(60, 1000);
        let clock = clock(&settings);
        let started = Instant::now();

        let waited = clock.bounded(std::future::pending::<()>()).await;

        assert!(matches!(waited, Err(ApiError::UploadTooSlow { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(15), "grace + window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_times_out_at_the_idle_timeout() {
        let settings = settings(3, 1000);
        let clock = clock(&settings);
        let started = Instant::now();

        let waited = clock.bounded(std::future::pending::<()>()).await;

        assert!(matches!(waited, Err(ApiError::UploadTimeout(3))));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_waited_for_as_long_as_it_lasts() {
        let settings = settings(60, 1000);
        let clock = clock(&settings);
        for _ in 0..120 {
            let received = Rc::clone(&clock.received);
            let next = async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                received.set(received.get() + 1000);
            };
            assert!(clock.bounded(next).await.is_ok());
        }
    }
}
