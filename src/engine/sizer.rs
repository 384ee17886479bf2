//! The adaptive batch sizer: pure arithmetic that picks the next batch's size so that batches
//! take about `[batch] target` (the sleep between batches is `pace`'s). Knows nothing of SQL or
//! time sources; the engine feeds it the execution time of each committed batch, without the
//! time it spent waiting for locks (so that contention does not collapse the size to the
//! floor).
//!
//! The estimate is the p90 of time-per-row over the last [`WINDOW`] batches: robust against one
//! fast outlier, quick to notice a slow streak. Growth is limited to ×1.5 per batch so a lucky
//! batch cannot make the next one huge; shrinking is immediate, and a batch more than
//! [`FAR_OVER`] times the target sets the size by its own speed alone, since a batch far over
//! target is what holds locks too long.

use std::collections::VecDeque;
use std::time::Duration;

/// How many recent batches the estimate looks at.
pub const WINDOW: usize = 10;

/// Largest growth from one batch to the next.
const MAX_GROWTH: f64 = 1.5;

/// A batch this many times over target is sized from by itself, not by the window.
pub const FAR_OVER: u32 = 2;

/// Chooses batch sizes within `min..=max` aiming at `target` per batch.
#[derive(Debug, Clone)]
pub struct Sizer {
    min: u32,
    max: u32,
    target: Duration,
    size: u32,
    /// Seconds per row of recent batches, newest last.
    per_row: VecDeque<f64>,
}

impl Sizer {
    /// Starts at `start` (clamped into `min..=max`).
    pub fn new(min: u32, max: u32, target: Duration, start: u32) -> Sizer {
        Sizer {
            min,
            max,
            target,
            size: start.clamp(min, max),
            per_row: VecDeque::with_capacity(WINDOW),
        }
    }

    /// The size of the next batch.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Learns from a committed batch of `size` keys that took `elapsed` to execute.
    pub fn record(&mut self, size: u32, elapsed: Duration) {
        if size == 0 {
            return;
        }
        if self.per_row.len() == WINDOW {
            self.per_row.pop_front();
        }
        let last = elapsed.as_secs_f64() / f64::from(size);
        self.per_row.push_back(last);
        let mut per_row = percentile(&self.per_row, 0.9);
        if elapsed > self.target * FAR_OVER {
            per_row = per_row.max(last);
        }
        let wanted = if per_row > 0.0 {
            self.target.as_secs_f64() / per_row
        } else {
            f64::from(self.max)
        };
        let ceiling = f64::from(self.size) * MAX_GROWTH;
        self.size = clamp_size(wanted.min(ceiling), self.min, self.max);
    }

    /// The batch hit `statement_timeout`: halve at once (not below 1, even under `min`: a
    /// batch that cannot finish at `min` must still be able to make progress).
    pub fn halve(&mut self) {
        self.size = (self.size / 2).max(1);
        self.per_row.clear();
    }

    /// The batch was cancelled because another session waited for its locks: halve, not below
    /// `min`, so that the next try holds fewer rows for less time. Without this a row the
    /// application touches all the time would make every try of its batch yield again, and
    /// the run would never get past it. The history stays: the batch's speed did not change,
    /// and growth back to the target goes at the usual ×1.5 a batch.
    pub fn yielded(&mut self) {
        self.size = (self.size / 2).clamp(self.min, self.max);
    }
}

/// `value` rounded down into `min..=max`.
fn clamp_size(value: f64, min: u32, max: u32) -> u32 {
    if value.is_nan() || value < f64::from(min) {
        min
    } else if value > f64::from(max) {
        max
    } else {
        value as u32
    }
}

/// Nearest-rank percentile of a non-empty window.
fn percentile(values: &VecDeque<f64>, q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sizer() -> Sizer {
        Sizer::new(1000, 5000, ms(200), 2000)
    }

    #[test]
    fn start_is_clamped() {
        assert_eq!(Sizer::new(1000, 5000, ms(200), 9000).size(), 5000);
    }

    #[test]
    fn fast_batches_grow_by_at_most_half() {
        let mut s = sizer();
        s.record(2000, ms(20));
        assert_eq!(s.size(), 3000);
    }

    #[test]
    fn growth_stops_at_max() {
        let mut s = sizer();
        for _ in 0..10 {
            let size = s.size();
            s.record(size, ms(10));
        }
        assert_eq!(s.size(), 5000);
    }

    #[test]
    fn batch_on_target_keeps_its_size() {
        let mut s = sizer();
        s.record(2000, ms(200));
        assert_eq!(s.size(), 2000);
    }

    #[test]
    fn slow_batch_shrinks_at_once() {
        let mut s = Sizer::new(100, 5000, ms(200), 4000);
        s.record(4000, ms(800));
        assert_eq!(s.size(), 1000);
    }

    #[test]
    fn shrinking_stops_at_min() {
        let mut s = sizer();
        s.record(2000, ms(10_000));
        assert_eq!(s.size(), 1000);
    }

    #[test]
    fn one_fast_outlier_does_not_grow_a_slow_streak() {
        let mut s = Sizer::new(100, 5000, ms(200), 1000);
        for _ in 0..5 {
            s.record(1000, ms(200));
        }
        s.record(1000, ms(1));
        assert_eq!(s.size(), 1000);
    }

    #[test]
    fn halving_goes_below_min_but_not_below_one() {
        let mut s = Sizer::new(1000, 5000, ms(200), 1000);
        s.halve();
        assert_eq!(s.size(), 500);
        let mut one = Sizer::new(1, 5, ms(200), 1);
        one.halve();
        assert_eq!(one.size(), 1);
    }

    #[test]
    fn a_yield_halves_down_to_min_and_keeps_the_history() {
        let mut s = Sizer::new(100, 5000, ms(200), 1000);
        s.record(1000, ms(100));
        assert_eq!(s.size(), 1500);
        s.yielded();
        assert_eq!(s.size(), 750);
        for _ in 0..4 {
            s.yielded();
        }
        assert_eq!(s.size(), 100, "not below min");
        // The same 0.1 ms a row as before: back up at ×1.5 a batch, not from scratch.
        s.record(100, ms(10));
        assert_eq!(s.size(), 150);
    }

    #[test]
    fn one_batch_far_over_target_shrinks_even_a_fast_window() {
        let mut s = Sizer::new(100, 5000, ms(200), 4000);
        for _ in 0..9 {
            s.record(4000, ms(100));
        }
        assert_eq!(s.size(), 5000);
        s.record(5000, ms(1000));
        assert_eq!(s.size(), 1000);
    }

    #[test]
    fn a_slow_batch_just_over_target_is_left_to_the_window() {
        let mut s = Sizer::new(100, 5000, ms(200), 4000);
        for _ in 0..9 {
            s.record(4000, ms(100));
        }
        s.record(5000, ms(300));
        assert_eq!(s.size(), 5000);
    }

    #[test]
    fn zero_duration_batches_go_to_max_within_growth_limit() {
        let mut s = sizer();
        s.record(2000, Duration::ZERO);
        assert_eq!(s.size(), 3000);
    }
}
