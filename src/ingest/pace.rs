//! The minimum body rate: a client that keeps a body open while sending next to nothing is cut
//! off, however regularly it sends. Only time spent waiting for the client counts, so a server
//! that is slow to write (a busy disk, a quota round trip) never makes its client look slow.

use std::time::Duration;

use crate::base::configuration::UploadSettings;

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// 0 = no minimum.
    min_bytes_per_sec: u64,
    window: Duration,
    /// Waiting time before the first window that does not count (connection set-up, slow start).
    grace: Duration,
    /// Time spent waiting for the client so far.
    waited: Duration,
    /// Where the current window started, in waiting time, and what had been received by then.
    window_start: Duration,
    window_received: u64,
}

/// The body arrived slower than the minimum over a whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

impl Pace {
    pub fn new(settings: &UploadSettings) -> Self {
        Self {
            min_bytes_per_sec: settings.min_bytes_per_sec,
            window: Duration::from_secs(settings.min_rate_window_secs.max(1)),
            grace: Duration::from_secs(settings.min_rate_grace_secs),
            waited: Duration::ZERO,
            window_start: Duration::ZERO,
            window_received: 0,
        }
    }

    /// How much longer the client may be waited for before the current window must be judged;
    /// `None` without a minimum.
    pub fn until_check(&self) -> Option<Duration> {
        (self.min_bytes_per_sec > 0).then(|| self.window_end().saturating_sub(self.waited))
    }

    /// Counts `waited` more waiting time, after which `received` body bytes had arrived in
    /// all, and judges every window that has ended.
    pub fn record(&mut self, waited: Duration, received: u64) -> Result<(), TooSlow> {
        self.waited += waited;
        if self.min_bytes_per_sec == 0 || self.waited < self.window_end() {
            return Ok(());
        }
        let counted = self.waited - self.window_start - self.credit();
        let needed = u128::from(self.min_bytes_per_sec) * counted.as_millis() / 1000;
        if u128::from(received - self.window_received) < needed {
            return Err(TooSlow);
        }
        self.window_start = self.waited;
        self.window_received = received;
        Ok(())
    }

    /// The grace period belongs to the first window only.
    fn credit(&self) -> Duration {
        if self.window_start.is_zero() {
            self.grace
        } else {
            Duration::ZERO
        }
    }

    fn window_end(&self) -> Duration {
        self.window_start + self.credit() + self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(min_bytes_per_sec: u64, window_secs: u64, grace_secs: u64) -> Pace {
        Pace {
            min_bytes_per_sec,
            window: Duration::from_secs(window_secs),
            grace: Duration::from_secs(grace_secs),
            waited: Duration::ZERO,
            window_start: Duration::ZERO,
            window_received: 0,
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_grace_period_and_a_window_pass_before_anything_is_judged() {
        let mut pace = pace(1024, 10, 5);
        assert_eq!(pace.until_check(), Some(15 * SEC));
        assert_eq!(pace.record(14 * SEC, 0), Ok(()));
        assert_eq!(pace.until_check(), Some(SEC));
        assert_eq!(pace.record(SEC, 10 * 1024 - 1), Err(TooSlow));
    }

    #[test]
    fn each_window_must_bring_the_minimum_on_its_own() {
        let mut pace = pace(1000, 10, 0);
        assert_eq!(pace.record(10 * SEC, 50_000), Ok(()));
        // A fast start buys no credit for a trickle afterwards.
        assert_eq!(pace.record(10 * SEC, 50_000 + 9_999), Err(TooSlow));
    }

    #[test]
    fn a_steady_trickle_above_the_minimum_passes_and_one_below_fails() {
        let mut steady = pace(1000, 10, 0);
        let mut slow = pace(1000, 10, 0);
        for second in 1..=60u64 {
            assert_eq!(steady.record(SEC, second * 1000), Ok(()), "{second}");
        }
        // 64 bytes every 20 s, as in the starvation attack.
        assert_eq!(slow.record(10 * SEC, 64), Err(TooSlow));
    }

    #[test]
    fn no_minimum_never_judges() {
        let mut pace = pace(0, 10, 0);
        assert_eq!(pace.until_check(), None);
        assert_eq!(pace.record(Duration::from_secs(3600), 0), Ok(()));
    }
}
