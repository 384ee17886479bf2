//! The failures of one batch (or one search for a range) in a row, since its last success:
//! when the job should stop trying. Pure, so the rule is unit-tested.

use std::time::{Duration, Instant};

use super::MAX_ATTEMPTS;

/// The failures of the current batch (or search for a range) since its last success.
#[derive(Debug, Default)]
pub(super) struct Streak {
    pub(super) count: u32,
    pub(super) since: Option<Instant>,
}

impl Streak {
    /// Counts one more failure at `now`; true when the job should stop: after
    /// [`MAX_ATTEMPTS`] failures in a row, or, while the database is unreachable, once
    /// `reconnect_timeout` has passed since the first failure.
    pub(super) fn give_up(
        &mut self,
        reconnect: bool,
        now: Instant,
        reconnect_timeout: Duration,
    ) -> bool {
        self.count += 1;
        let since = *self.since.get_or_insert(now);
        if reconnect {
            now.duration_since(since) >= reconnect_timeout
        } else {
            self.count >= MAX_ATTEMPTS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_failures_give_up_after_max_attempts() {
        let mut f = Streak::default();
        let now = Instant::now();
        let stops: Vec<bool> = (0..MAX_ATTEMPTS)
            .map(|_| f.give_up(false, now, Duration::from_secs(60)))
            .collect();
        assert_eq!(stops.iter().filter(|s| **s).count(), 1);
        assert!(stops[MAX_ATTEMPTS as usize - 1]);
    }

    #[test]
    fn lost_connections_retry_until_the_reconnect_timeout() {
        let mut f = Streak::default();
        let t0 = Instant::now();
        let limit = Duration::from_secs(60);
        for i in 0..50 {
            assert!(!f.give_up(true, t0 + Duration::from_secs(i), limit));
        }
        assert!(f.give_up(true, t0 + limit, limit));
    }
}
