//! The guard's judgement, pure: probe latencies in, a back-off out.
//!
//! [`Probes`] keeps the latencies of the last `window` and gives their p90. [`Backoff::next`]
//! is AIMD on the run's share of time — its duty, `batch / (batch + sleep)`: while the p90 is
//! over the threshold the share halves (the sleep after each batch, in multiples of the
//! batch's time, goes 0 → 1 → 3 → 7 …, up to `max_pause_ratio`); while it is under, the share
//! grows back by a fixed [`STEP_UP`]. It changes at most once per `window`, the time a change
//! takes to show in the p90, so that one slow stretch halves it once, not once per probe.
//! Knows nothing of SQL or clocks: the caller passes the time in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::job::GuardPolicy;

/// How much of the time the run gets back per healthy window: from the least share to full
/// speed in about ten windows, so that it speeds back up over seconds, not at once.
pub const STEP_UP: f64 = 0.1;

/// The fewest probes in a window for its p90 to be judged.
pub const MIN_PROBES: usize = 5;

/// The latencies of the recent probes, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    window: Duration,
    samples: VecDeque<(Instant, Duration)>,
}

impl Probes {
    /// Probes judged over the last `window`.
    pub fn new(window: Duration) -> Probes {
        Probes {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records a probe that took `latency`, finished at `at`, and forgets those that fell out
    /// of the window — but keeps the last [`MIN_PROBES`] whatever their age: when the probe
    /// itself is slow, fewer fit in a window, and that is exactly when it must be judged.
    pub fn push(&mut self, at: Instant, latency: Duration) {
        self.samples.push_back((at, latency));
        while let Some(&(oldest, _)) = self.samples.front() {
            if self.samples.len() <= MIN_PROBES
                || at.saturating_duration_since(oldest) <= self.window
            {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// How many probes the window holds.
    pub fn count(&self) -> usize {
        self.samples.len()
    }

    /// The nearest-rank p90 of the window, once it holds [`MIN_PROBES`].
    pub fn p90(&self) -> Option<Duration> {
        if self.samples.len() < MIN_PROBES {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().map(|(_, d)| *d).collect();
        sorted.sort();
        let rank = (sorted.len() * 9).div_ceil(10).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// The latency above which the run backs off: `max_latency_ratio × baseline`, at least
/// `min_latency` (so that a sub-millisecond probe's jitter never counts), or `max_latency` when
/// that is lower.
pub fn threshold(policy: &GuardPolicy, baseline: Duration) -> Duration {
    let relative = baseline
        .mul_f64(policy.max_latency_ratio)
        .max(policy.min_latency);
    match policy.max_latency {
        Some(absolute) => relative.min(absolute),
        None => relative,
    }
}

/// How far the guard holds the run back: the run's share of time (1: full speed), and when
/// that last changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    duty: f64,
    changed: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            duty: 1.0,
            changed: None,
        }
    }
}

impl Backoff {
    /// The back-off after judging `p90` (none yet: no judgement) against `threshold` at `now`.
    pub fn next(
        self,
        policy: &GuardPolicy,
        p90: Option<Duration>,
        threshold: Duration,
        now: Instant,
    ) -> Backoff {
        let Some(p90) = p90 else { return self };
        let settled = self
            .changed
            .is_none_or(|at| now.saturating_duration_since(at) >= policy.window);
        if !settled {
            return self;
        }
        let least = 1.0 / (1.0 + policy.max_pause_ratio);
        let duty = if p90 > threshold {
            (self.duty / 2.0).max(least)
        } else {
            (self.duty + STEP_UP).min(1.0)
        };
        if duty == self.duty {
            return self;
        }
        Backoff {
            duty,
            changed: Some(now),
        }
    }

    /// The sleep after each batch, in multiples of the batch's time: `1 / duty - 1`.
    pub fn ratio(&self) -> f64 {
        // A share grown back to within rounding of full speed is full speed.
        if self.duty > 1.0 - 1e-9 {
            0.0
        } else {
            1.0 / self.duty - 1.0
        }
    }

    /// True while the guard holds the run back.
    pub fn holds(&self) -> bool {
        self.ratio() > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> GuardPolicy {
        GuardPolicy {
            window: ms(2000),
            max_pause_ratio: 16.0,
            ..GuardPolicy::default()
        }
    }

    #[test]
    fn p90_needs_five_probes_and_forgets_old_ones_beyond_five() {
        let t0 = Instant::now();
        let mut probes = Probes::new(ms(2000));
        for i in 0..4 {
            probes.push(t0 + ms(100 * i), ms(1));
        }
        assert_eq!(probes.p90(), None);
        probes.push(t0 + ms(400), ms(9));
        assert_eq!(probes.p90(), Some(ms(9)), "the 5th of 5");
        for i in 5..10 {
            probes.push(t0 + ms(100 * i), ms(2));
        }
        assert_eq!(probes.p90(), Some(ms(2)), "the 9th of 10");
        // Probes a second apart (slow ones): the window holds one, the judgement the last 5.
        probes.push(t0 + ms(10_000), ms(3));
        assert_eq!(probes.p90(), Some(ms(3)), "the last 5: 2, 2, 2, 2, 3");
        for i in 1..5 {
            probes.push(t0 + ms(10_000 + 1000 * i), ms(300));
        }
        assert_eq!(probes.p90(), Some(ms(300)));
    }

    #[test]
    fn the_threshold_is_the_lower_of_ratio_and_absolute() {
        let p = GuardPolicy {
            max_latency_ratio: 3.0,
            min_latency: Duration::ZERO,
            ..GuardPolicy::default()
        };
        assert_eq!(threshold(&p, ms(2)), ms(6));
        let capped = GuardPolicy {
            max_latency: Some(ms(5)),
            ..p.clone()
        };
        assert_eq!(threshold(&capped, ms(2)), ms(5));
        assert_eq!(threshold(&capped, ms(1)), ms(3));
    }

    #[test]
    fn a_fast_probe_is_judged_against_the_floor() {
        // A baseline of 0.64 ms: 3× is 1.92 ms, a jitter a quiet server shows; the floor of
        // 5 ms is what counts. A slow baseline is judged by its ratio as before.
        let p = GuardPolicy::default();
        assert_eq!(threshold(&p, Duration::from_micros(640)), ms(5));
        assert_eq!(threshold(&p, ms(4)), ms(12));
        // An absolute limit below the floor still wins.
        let strict = GuardPolicy {
            max_latency: Some(ms(2)),
            ..p
        };
        assert_eq!(threshold(&strict, Duration::from_micros(640)), ms(2));
    }

    /// Steps the back-off through `(at ms, p90 ms)`, judged against 10 ms; the sleep ratio
    /// after each, to two decimals.
    fn walk(steps: &[(u64, Option<u64>)]) -> Vec<f64> {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Backoff::default();
        steps
            .iter()
            .map(|(at, p90)| {
                b = b.next(&p, p90.map(ms), ms(10), t0 + ms(*at));
                (b.ratio() * 100.0).round() / 100.0
            })
            .collect()
    }

    /// What a case is about, its steps, and the ratio after each.
    type Case = (&'static str, Vec<(u64, Option<u64>)>, Vec<f64>);

    #[test]
    fn aimd_table() {
        let cases: [Case; 6] = [
            (
                "healthy stays at full speed",
                vec![(0, Some(3)), (5000, Some(9))],
                vec![0.0, 0.0],
            ),
            (
                "the first slow p90 halves the run's share at once",
                vec![(0, Some(3)), (100, Some(30))],
                vec![0.0, 1.0],
            ),
            (
                "then halves it once per window, down to 1 / (1 + max_pause_ratio)",
                vec![
                    (0, Some(30)),
                    (1000, Some(30)),
                    (2000, Some(30)),
                    (4000, Some(30)),
                    (6000, Some(30)),
                    (8000, Some(30)),
                    (10_000, Some(30)),
                ],
                vec![1.0, 1.0, 3.0, 7.0, 15.0, 16.0, 16.0],
            ),
            (
                "and gives a tenth of the time back per healthy window",
                vec![
                    (0, Some(30)),
                    (2000, Some(30)),
                    (4000, Some(5)),
                    (5000, Some(5)),
                    (6000, Some(5)),
                    (8000, Some(5)),
                    (10_000, Some(30)),
                ],
                // Shares 0.5, 0.25, 0.35, 0.35, 0.45, 0.55, 0.275.
                vec![1.0, 3.0, 1.86, 1.86, 1.22, 0.82, 2.64],
            ),
            (
                "a p90 exactly at the threshold is healthy",
                vec![(0, Some(10))],
                vec![0.0],
            ),
            (
                "too few probes judge nothing",
                vec![(0, Some(30)), (2000, None), (4000, None)],
                vec![1.0, 1.0, 1.0],
            ),
        ];
        for (what, steps, ratios) in cases {
            assert_eq!(walk(&steps), ratios, "{what}");
        }
    }

    #[test]
    fn full_speed_comes_back_in_tenths() {
        let t0 = Instant::now();
        let p = policy();
        let mut b = Backoff::default().next(&p, Some(ms(30)), ms(10), t0);
        let mut windows = 0;
        while b.holds() {
            windows += 1;
            b = b.next(&p, Some(ms(1)), ms(10), t0 + ms(2000) * windows);
        }
        assert_eq!(windows, 5, "from half the time to all of it");
    }

    #[test]
    fn holding_means_any_back_off() {
        let t0 = Instant::now();
        let b = Backoff::default();
        assert!(!b.holds());
        assert_eq!(b.ratio(), 0.0);
        assert!(b.next(&policy(), Some(ms(30)), ms(10), t0).holds());
    }
}
