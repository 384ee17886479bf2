//! The recent rate of a run: rows per second over the last [`RATE_WINDOW`], not the lifetime
//! average, so that a resume, a pause or a change in load shows at once. Pure; the clock is a
//! parameter. Used by the progress display and by the heartbeat that publishes the rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rate is measured over the batches of this last stretch of time, so that it follows the
/// database's current speed (a throttle, a vacuum) rather than the lifetime average.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// `rows_done` at the batches of the last [`RATE_WINDOW`], oldest first.
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Records `rows_done` at `at` and forgets the samples that fell out of the window.
    pub fn push(&mut self, at: Instant, rows_done: u64) {
        self.samples.push_back((at, rows_done));
        while let Some(&(oldest, _)) = self.samples.front() {
            if at.duration_since(oldest) <= RATE_WINDOW {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// Rows per second from the first sample in the window to the last; `None` until two
    /// samples apart in time say anything.
    pub fn per_sec(&self) -> Option<f64> {
        let (first_at, first_rows) = *self.samples.front()?;
        let (last_at, last_rows) = *self.samples.back()?;
        let span = last_at.duration_since(first_at);
        if span.is_zero() {
            return None;
        }
        Some(last_rows.saturating_sub(first_rows) as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn window(samples: &[(u64, u64)]) -> RateWindow {
        let t0 = Instant::now();
        let mut window = RateWindow::default();
        for &(at, rows) in samples {
            window.push(t0 + secs(at), rows);
        }
        window
    }

    #[test]
    fn rate_is_unknown_without_samples() {
        assert_eq!(window(&[]).per_sec(), None);
    }

    #[test]
    fn rate_is_unknown_from_one_sample() {
        assert_eq!(window(&[(0, 5000)]).per_sec(), None);
    }

    #[test]
    fn rate_runs_from_first_to_last_sample() {
        assert_eq!(
            window(&[(0, 0), (1, 5000), (4, 20_000)]).per_sec(),
            Some(5000.0)
        );
    }

    #[test]
    fn rate_forgets_samples_older_than_the_window() {
        assert_eq!(
            window(&[(0, 0), (5, 10_000), (15, 30_000)]).per_sec(),
            Some(2000.0)
        );
    }

    #[test]
    fn rate_is_unknown_when_all_but_the_last_sample_aged_out() {
        assert_eq!(window(&[(0, 0), (60, 5000)]).per_sec(), None);
    }
}
