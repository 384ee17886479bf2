//! The job's total, refined as the walk goes: how many rows the job is now expected to change
//! in all, for the progress bar, its ETA and `backfill_rows_estimate`. Pure arithmetic.
//!
//! A run starts from an estimate of the pending rows (`preflight::pending_rows`, a block
//! sample). It may be far off — pending rows clustered where the sample did not look, rows
//! the application filled or cleared meanwhile — and a total that the rows done overtake
//! shows a full bar and no ETA while most of the work is ahead. The walk knows better as it
//! goes: its batches changed `rows_changed` rows in the `keys_walked` keys they walked, and the
//! ranges not done yet have about `keys_left` keys. The rows still ahead are then
//!
//! - while the start's estimate is not used up: what it leaves (at most one row per key left),
//!   blended with the walk's figure (rows per key walked × keys left) in proportion to the share
//!   of the keys already walked — the sample is trusted at first, the walk by the end;
//! - once the rows done have passed the start's estimate (it fell short): the walk's figure
//!   alone.
//!
//! While the job runs, at least one batch's worth of keys is left (a range that is not done
//! has one more batch) and at least one row, so the total stays above the rows done until the
//! job finishes, and converges to the truth as the keys left run out. Only when the start's
//! estimate is used up and the ranges have no estimate of their keys (a job laid out by an
//! older version) is nothing known of what is left: the total is then the rows done, which
//! the progress display shows as unknown.

/// What a process has seen of its job when it refines the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Rows the job has changed so far, every process and run together.
    pub rows_done: u64,
    /// `rows_done` when this process started.
    pub start_done: u64,
    /// Rows estimated pending when this process started.
    pub start_pending: u64,
    /// Keys this process's batches walked, and the rows they changed.
    pub keys_walked: u64,
    pub rows_changed: u64,
    /// Keys left in the job's ranges that are not done, as far as their estimates know.
    pub keys_left: Option<u64>,
    /// Keys the last batch asked for: what a range that is not done has at least left.
    pub batch: u32,
}

/// The rows the job is expected to change in all, `rows_done` included; see the module header.
pub fn total(seen: &Seen) -> u64 {
    let left = seen.keys_left.map(|k| k.max(u64::from(seen.batch)) as f64);
    let done_here = seen.rows_done.saturating_sub(seen.start_done);
    let start_rest = seen
        .start_pending
        .checked_sub(done_here)
        .filter(|&rest| rest > 0)
        .map(|rest| left.map_or(rest as f64, |left| (rest as f64).min(left)));
    let walked = seen.keys_walked as f64;
    let walk_rest = left
        .filter(|_| seen.keys_walked > 0)
        .map(|left| seen.rows_changed as f64 / walked * left);
    let rest = match (start_rest, walk_rest, left) {
        (Some(start), Some(walk), Some(left)) => {
            let trust = walked / (walked + left);
            (1.0 - trust) * start + trust * walk
        }
        (Some(start), _, _) => start,
        (None, Some(walk), _) => walk,
        (None, None, _) => return seen.rows_done,
    };
    seen.rows_done + (rest.round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rows_done: u64, start_pending: u64, walked: u64, left: Option<u64>) -> Seen {
        Seen {
            rows_done,
            start_done: 0,
            start_pending,
            keys_walked: walked,
            rows_changed: rows_done,
            keys_left: left,
            batch: 1000,
        }
    }

    #[test]
    fn before_any_walk_the_start_estimate_stands() {
        assert_eq!(total(&seen(0, 1_000_000, 0, Some(1_000_000))), 1_000_000);
        assert_eq!(total(&seen(0, 5_000, 0, None)), 5_000);
    }

    #[test]
    fn an_estimate_that_fell_short_gives_way_to_the_walk() {
        // The sample said 5,000; after 100,000 keys walked every key was a pending row, and
        // 900,000 keys are left: about a million in all.
        assert_eq!(
            total(&seen(100_000, 5_000, 100_000, Some(900_000))),
            1_000_000
        );
        // Half the keys matched: 50,000 done, about 450,000 ahead.
        let half = Seen {
            rows_changed: 50_000,
            ..seen(50_000, 5_000, 100_000, Some(900_000))
        };
        assert_eq!(total(&half), 500_000);
    }

    #[test]
    fn an_estimate_too_high_converges_as_the_keys_run_out() {
        // The sample said 1,000,000 of 1,000,000 keys; the walk finds one row in ten.
        let at = |walked: u64| {
            let done = walked / 10;
            total(&Seen {
                rows_changed: done,
                ..seen(done, 1_000_000, walked, Some(1_000_000 - walked))
            })
        };
        let totals: Vec<u64> = [0, 250_000, 500_000, 750_000, 990_000].map(at).to_vec();
        assert_eq!(totals[0], 1_000_000);
        assert!(totals.windows(2).all(|w| w[1] < w[0]), "{totals:?}");
        assert!(totals[4] < 110_000, "{totals:?}");
    }

    #[test]
    fn the_total_stays_above_the_rows_done_while_the_job_runs() {
        // No keys left as far as the estimates know, nothing pending as far as the start
        // knew, and the last batch changed nothing: still one batch may come.
        assert!(total(&seen(7_000, 7_000, 7_000, Some(0))) > 7_000);
        let nothing = Seen {
            rows_changed: 0,
            ..seen(7_000, 0, 7_000, Some(0))
        };
        assert!(total(&nothing) > 7_000);
    }

    #[test]
    fn with_the_start_used_up_and_no_keys_known_the_total_is_unknown() {
        assert_eq!(total(&seen(7_000, 5_000, 7_000, None)), 7_000);
    }

    #[test]
    fn other_processes_rows_use_up_the_start_estimate_too() {
        // This process started at 100,000 done with 100,000 pending; every process together
        // has done 150,000 since, this one 10,000 rows in 10,000 keys, with 60,000 keys left.
        let s = Seen {
            rows_done: 250_000,
            start_done: 100_000,
            start_pending: 100_000,
            keys_walked: 10_000,
            rows_changed: 10_000,
            keys_left: Some(60_000),
            batch: 1000,
        };
        assert_eq!(total(&s), 310_000);
    }
}
