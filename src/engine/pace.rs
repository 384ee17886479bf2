//! The sleep after each batch, pure: one place decides how long a worker waits before its next
//! batch, from everything that asks it to wait.
//!
//! - `[batch] pause`, after every batch;
//! - the duty cycle: `[batch] pause_ratio` times the batch's own time (gh-ost's nice-ratio),
//!   plus the latency guard's back-off, which is a ratio of the same kind;
//! - the monitor's throttle: a sleep that doubles with each throttled batch, from
//!   [`FIRST_THROTTLE_PAUSE`] up to `[throttle] max_pause`;
//! - `[throttle] max_wal_rate`: the WAL the process's batches wrote, paid for at the budget's
//!   rate ([`WalBudget`]).
//!
//! These are not added up: each is a wait from the end of the batch, so the longest one
//! covers the others. Knows nothing of SQL or clocks: times and WAL positions are passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::job::Job;

/// The first sleep of a throttled run; each throttled batch doubles it up to `max_pause`.
const FIRST_THROTTLE_PAUSE: Duration = Duration::from_millis(100);

/// The most unused time the WAL budget credits to the next batch.
pub const WAL_CREDIT: Duration = Duration::from_millis(500);

/// What the job file says about the sleep between batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// `[batch] pause`.
    pub pause: Duration,
    /// `[batch] pause_ratio`.
    pub pause_ratio: f64,
    /// `[throttle] max_pause`.
    pub max_pause: Duration,
}

impl Pacing {
    /// The pacing `job` asks for.
    pub fn of(job: &Job) -> Pacing {
        Pacing {
            pause: job.batch.pause,
            pause_ratio: job.batch.pause_ratio,
            max_pause: job.throttle.max_pause,
        }
    }
}

/// What holds the run back after a batch that committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct After {
    /// The batch's time, `BEGIN` to `COMMIT`.
    pub elapsed: Duration,
    /// The monitor throttles the run.
    pub throttled: bool,
    /// The latency guard's back-off, in multiples of the batch's time (0: none).
    pub guard_ratio: f64,
    /// How long from now the WAL budget asks to wait (zero without a budget).
    pub wal_wait: Duration,
}

/// One worker's pacing between batches: the throttled sleep, which grows while the monitor
/// throttles.
#[derive(Debug, Default)]
pub struct Pace {
    throttle: Duration,
}

impl Pace {
    /// The sleep before the next batch.
    pub fn next(&mut self, p: &Pacing, after: &After) -> Duration {
        let ratio = p.pause_ratio + after.guard_ratio;
        let duty = p.pause + times(after.elapsed, ratio);
        self.throttle = if after.throttled {
            throttle_pause(self.throttle, p.pause, p.max_pause)
        } else {
            p.pause
        };
        let throttle = if after.throttled {
            self.throttle
        } else {
            Duration::ZERO
        };
        duty.max(throttle).max(after.wal_wait)
    }
}

/// `d × ratio`, to the nanosecond; `ratio` is finite and at least 0 (the job file and the
/// guard see to it), and the product is far below the limits of a `Duration`.
fn times(d: Duration, ratio: f64) -> Duration {
    Duration::from_nanos((d.as_nanos() as f64 * ratio).round() as u64)
}

/// The sleep of a throttled batch: twice the previous one (the first one
/// [`FIRST_THROTTLE_PAUSE`]), at most `max_pause`, and never less than `[batch] pause`.
fn throttle_pause(previous: Duration, base: Duration, max_pause: Duration) -> Duration {
    let next = if previous < FIRST_THROTTLE_PAUSE {
        FIRST_THROTTLE_PAUSE
    } else {
        previous.saturating_mul(2)
    };
    next.min(max_pause).max(base)
}

/// The process's WAL budget (`[throttle] max_wal_rate`): how long to wait after a batch so that
/// the WAL written while the process's batches ran is paid for at the budget's rate.
///
/// WAL positions are the server's (`pg_current_wal_insert_lsn()`), read when a batch starts
/// and before it commits; the server's position moves for every session, so a batch's span
/// also counts what others wrote meanwhile — including this process's other workers. Each
/// byte is charged once: a batch that ends is charged from the earliest start of the batches
/// still running (or its own), but never below what was charged already.
///
/// The bytes are paid for from the batch's start (or from when the WAL before was paid for,
/// if later), so a batch that was slower than the budget waits nothing, and one that wrote
/// fast waits the rest. Time not used is credited up to [`WAL_CREDIT`] only: enough to cover
/// the run's own moments between batches (its checks, its events), never a burst worth the
/// name after a pause. So the WAL of any few seconds stays under the budget plus half a
/// second's worth and one batch's.
#[derive(Debug)]
pub struct WalBudget {
    /// Bytes per second.
    rate: f64,
    /// The WAL position and time at the start of each running batch, by worker.
    running: BTreeMap<u32, (u64, Instant)>,
    /// WAL up to this position is charged.
    charged_to: u64,
    /// When the WAL charged so far is paid for at `rate`.
    paid_at: Option<Instant>,
}

impl WalBudget {
    /// A budget of `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> WalBudget {
        WalBudget {
            rate: rate.max(1) as f64,
            running: BTreeMap::new(),
            charged_to: 0,
            paid_at: None,
        }
    }

    /// `worker`'s batch started at WAL position `lsn`, at `at`.
    pub fn started(&mut self, worker: u32, lsn: u64, at: Instant) {
        self.running.insert(worker, (lsn, at));
    }

    /// `worker`'s batch is about to commit at WAL position `lsn`, at `now`: the bytes charged to
    /// it and how long from `now` to wait before the next batch.
    pub fn ended(&mut self, worker: u32, lsn: u64, now: Instant) -> (u64, Duration) {
        let Some((start, began)) = self.running.remove(&worker) else {
            return (0, Duration::ZERO);
        };
        let earliest = self.running.values().map(|(l, _)| *l).fold(start, u64::min);
        let bytes = lsn.saturating_sub(earliest.max(self.charged_to));
        self.charged_to = self.charged_to.max(lsn);
        let credited = began.checked_sub(WAL_CREDIT).unwrap_or(began);
        let from = self.paid_at.map_or(began, |paid| paid.max(credited));
        let paid = from + Duration::from_secs_f64(bytes as f64 / self.rate);
        self.paid_at = Some(paid);
        (bytes, paid.saturating_duration_since(now))
    }

    /// `worker`'s batch rolled back: nothing is charged for it (its WAL is charged to a batch
    /// that overlapped it, if any).
    pub fn abandoned(&mut self, worker: u32) {
        self.running.remove(&worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pacing(pause: u64, pause_ratio: f64) -> Pacing {
        Pacing {
            pause: ms(pause),
            pause_ratio,
            max_pause: ms(1000),
        }
    }

    fn after(elapsed: u64) -> After {
        After {
            elapsed: ms(elapsed),
            throttled: false,
            guard_ratio: 0.0,
            wal_wait: Duration::ZERO,
        }
    }

    #[test]
    fn throttled_pauses_double_up_to_the_limit() {
        let max = ms(1000);
        let mut pause = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..6 {
            pause = throttle_pause(pause, Duration::ZERO, max);
            seen.push(pause.as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn throttling_never_shortens_the_batch_pause() {
        assert_eq!(throttle_pause(ms(0), ms(3000), ms(1000)), ms(3000));
    }

    #[test]
    fn each_wait_is_covered_by_the_longest() {
        let throttled = After {
            throttled: true,
            ..after(200)
        };
        let cases = [
            // (pause, pause_ratio, after, sleep)
            (0, 0.0, after(200), 0),
            (5, 0.0, after(200), 5),
            (0, 1.0, after(200), 200),
            (10, 0.5, after(200), 110),
            (
                0,
                0.5,
                After {
                    guard_ratio: 2.0,
                    ..after(200)
                },
                500,
            ),
            (0, 0.0, throttled, 100),
            (0, 2.0, throttled, 400),
            (
                0,
                1.0,
                After {
                    wal_wait: ms(700),
                    ..after(200)
                },
                700,
            ),
            (
                0,
                4.0,
                After {
                    wal_wait: ms(700),
                    ..after(200)
                },
                800,
            ),
        ];
        for (pause, ratio, after, sleep) in cases {
            let p = pacing(pause, ratio);
            assert_eq!(
                Pace::default().next(&p, &after),
                ms(sleep),
                "{pause} {ratio} {after:?}"
            );
        }
    }

    #[test]
    fn the_throttle_doubles_while_it_lasts_and_starts_over_after() {
        let p = pacing(0, 0.0);
        let mut pace = Pace::default();
        let throttled = After {
            throttled: true,
            ..after(50)
        };
        let seen: Vec<u128> = [throttled, throttled, throttled, after(50), throttled]
            .iter()
            .map(|a| pace.next(&p, a).as_millis())
            .collect();
        assert_eq!(seen, [100, 200, 400, 0, 100]);
    }

    #[test]
    fn a_batch_pause_above_the_first_throttle_is_where_doubling_starts() {
        let p = pacing(300, 0.0);
        let mut pace = Pace::default();
        assert_eq!(pace.next(&p, &after(50)), ms(300));
        let throttled = After {
            throttled: true,
            ..after(50)
        };
        assert_eq!(pace.next(&p, &throttled), ms(600));
        assert_eq!(pace.next(&p, &throttled), ms(1000));
    }

    /// 1 MB/s: a byte is paid for in a microsecond.
    const MB_S: u64 = 1_000_000;

    #[test]
    fn wal_is_paid_for_from_the_batch_start() {
        let t0 = Instant::now();
        let mut wal = WalBudget::new(MB_S);
        let cases = [
            // (start lsn, start ms, end lsn, end ms, charged, wait ms)
            (0, 0, 500_000, 100, 500_000, 400),
            // Starts while the first is still being paid for: pays after it.
            (500_000, 500, 600_000, 550, 100_000, 50),
            // Slower than the budget: nothing to wait.
            (600_000, 600, 700_000, 900, 100_000, 0),
            // Started 50 ms after the budget was paid: those 50 ms count.
            (700_000, 750, 900_000, 800, 200_000, 100),
            // After an idle second, half a second of credit: 800 kB paid from 1500 ms on.
            (2_000_000, 2000, 2_800_000, 2100, 800_000, 200),
        ];
        for (lsn0, at0, lsn1, at1, charged, wait) in cases {
            wal.started(0, lsn0, t0 + ms(at0));
            assert_eq!(
                wal.ended(0, lsn1, t0 + ms(at1)),
                (charged, ms(wait)),
                "batch at {at0}ms"
            );
        }
    }

    #[test]
    fn overlapping_batches_are_charged_each_byte_once() {
        let t0 = Instant::now();
        let mut wal = WalBudget::new(MB_S);
        // Worker 0 runs over 0..1000 kB; worker 1 over 200..600 kB inside it, and ends first.
        wal.started(0, 0, t0);
        wal.started(1, 200_000, t0 + ms(20));
        // Worker 1 pays for everything since worker 0's start, which still runs.
        assert_eq!(wal.ended(1, 600_000, t0 + ms(60)), (600_000, ms(560)));
        assert_eq!(wal.ended(0, 1_000_000, t0 + ms(100)), (400_000, ms(920)));
        // Batches in a row on two workers: each pays its own stretch.
        wal.started(0, 1_000_000, t0 + ms(1000));
        wal.started(1, 1_100_000, t0 + ms(1010));
        assert_eq!(wal.ended(0, 1_200_000, t0 + ms(1020)).0, 200_000);
        assert_eq!(wal.ended(1, 1_300_000, t0 + ms(1030)).0, 100_000);
    }

    #[test]
    fn a_rolled_back_batch_is_not_charged() {
        let t0 = Instant::now();
        let mut wal = WalBudget::new(MB_S);
        wal.started(0, 0, t0);
        wal.abandoned(0);
        assert_eq!(wal.ended(0, 100, t0), (0, Duration::ZERO));
        wal.started(0, 5_000, t0);
        assert_eq!(wal.ended(0, 6_000, t0 + ms(1)).0, 1_000);
    }
}
