//! The job's total: how many rows it is expected to change in all, for the progress bar, its
//! ETA, `status` and `backfill_rows_estimate`. Pure arithmetic over what the state tables hold,
//! so that every process of a job, and `status` on any host, computes the same figure.
//!
//! The job keeps one [`Pending`] of its pending rows in `jobs`, made when its ranges were laid
//! out (a block sample, or an exact count). It may be far off — pending rows clustered where the
//! sample did not look, rows the application filled or cleared meanwhile — and a total that the
//! rows done overtake shows a full bar and no ETA while most of the work is ahead. The walk
//! knows better as it goes: the job's batches changed `rows_walked` rows in the `keys_walked` keys
//! they walked, and the ranges not done yet have about `keys_left` keys. The rows still ahead
//! are then
//!
//! - while the estimate is not used up: what it leaves (at most one row per key left), blended
//!   with the walk's figure (rows per key walked × keys left) in proportion to the share of the
//!   keys already walked — the sample is trusted at first, the walk by the end; an exact count
//!   is trusted alone, and never blended away;
//! - once the rows done have passed the estimate (it fell short): the walk's figure alone.
//!
//! While the job runs, at least one batch's worth of keys is left (a range that is not done
//! has one more batch) and at least one row, so the total stays above the rows done until the
//! job finishes, and converges to the truth as the keys left run out. Only when the estimate is
//! used up and the ranges have no estimate of their keys (a job laid out by an older version)
//! is nothing known of what is left: the total is then the rows done, which the progress
//! display shows as unknown.

/// The job's estimate of its pending rows, kept in `jobs` from the layout on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Rows that matched `where` and were not done yet.
    pub rows: u64,
    /// The job's rows done when the estimate was made.
    pub rows_done: u64,
    /// Every row was read: a count, not a sample.
    pub exact: bool,
    /// Rows in the table then (what vacuum pacing's `every = "5%"` is a share of).
    pub table_rows: Option<u64>,
}

/// Where the job stands, as the state tables say at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub rows_done: u64,
    pub batches_done: u64,
    /// Keys the batches of every range walked, and the rows they changed: read together, so
    /// that their ratio is one moment's (`rows_done` may count later batches too).
    pub keys_walked: u64,
    pub rows_walked: u64,
    /// Keys left in the ranges not done yet, as far as their estimates know.
    pub keys_left: Option<u64>,
}

/// The rows the job is expected to change in all, `rows_done` included; see the module header.
/// `batch`: keys a batch asks for, what a range that is not done has at least left.
pub fn total(estimate: Option<&Pending>, progress: &Progress, batch: u32) -> u64 {
    let left = progress.keys_left.map(|k| k.max(u64::from(batch)) as f64);
    let start_rest = estimate.and_then(|e| {
        let done_since = progress.rows_done.saturating_sub(e.rows_done);
        let rest = e.rows.checked_sub(done_since).filter(|&rest| rest > 0)? as f64;
        Some(match left {
            Some(left) if !e.exact => rest.min(left),
            _ => rest,
        })
    });
    let walked = progress.keys_walked as f64;
    let walk_rest = left
        .filter(|_| progress.keys_walked > 0)
        .map(|left| progress.rows_walked as f64 / walked * left);
    let exact = estimate.is_some_and(|e| e.exact);
    let rest = match (start_rest, walk_rest, left) {
        (Some(start), _, _) if exact => start,
        (Some(start), Some(walk), Some(left)) => {
            let trust = walked / (walked + left);
            (1.0 - trust) * start + trust * walk
        }
        (Some(start), _, _) => start,
        (None, Some(walk), _) => walk,
        (None, None, _) => return progress.rows_done,
    };
    progress.rows_done + (rest.round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(pending: u64) -> Pending {
        Pending {
            rows: pending,
            rows_done: 0,
            exact: false,
            table_rows: None,
        }
    }

    fn at(rows_done: u64, walked: u64, left: Option<u64>) -> Progress {
        Progress {
            rows_done,
            batches_done: 0,
            keys_walked: walked,
            rows_walked: rows_done,
            keys_left: left,
        }
    }

    #[test]
    fn before_any_walk_the_estimate_stands() {
        let e = sampled(1_000_000);
        assert_eq!(total(Some(&e), &at(0, 0, Some(1_000_000)), 1000), 1_000_000);
        assert_eq!(total(Some(&sampled(5_000)), &at(0, 0, None), 1000), 5_000);
    }

    #[test]
    fn an_estimate_that_fell_short_gives_way_to_the_walk() {
        // The sample said 5,000; after 100,000 keys walked every key was a pending row, and
        // 900,000 keys are left: about a million in all.
        let e = sampled(5_000);
        let all = at(100_000, 100_000, Some(900_000));
        assert_eq!(total(Some(&e), &all, 1000), 1_000_000);
        // Half the keys matched: 50,000 done, about 450,000 ahead.
        let half = at(50_000, 100_000, Some(900_000));
        assert_eq!(total(Some(&e), &half, 1000), 500_000);
    }

    #[test]
    fn an_estimate_too_high_converges_as_the_keys_run_out() {
        // The sample said 1,000,000 of 1,000,000 keys; the walk finds one row in ten.
        let e = sampled(1_000_000);
        let at_walked = |walked: u64| {
            total(
                Some(&e),
                &at(walked / 10, walked, Some(1_000_000 - walked)),
                1000,
            )
        };
        let totals: Vec<u64> = [0, 250_000, 500_000, 750_000, 990_000]
            .map(at_walked)
            .to_vec();
        assert_eq!(totals[0], 1_000_000);
        assert!(totals.windows(2).all(|w| w[1] < w[0]), "{totals:?}");
        assert!(totals[4] < 110_000, "{totals:?}");
    }

    #[test]
    fn an_exact_count_is_kept_while_it_lasts() {
        // 300,000 counted; the walk has seen fewer rows per key so far than the count implies.
        let e = Pending {
            exact: true,
            ..sampled(300_000)
        };
        assert_eq!(
            total(Some(&e), &at(100_000, 150_000, Some(300_000)), 1000),
            300_000
        );
        // The application added rows: the count is used up, the walk takes over.
        assert!(total(Some(&e), &at(300_000, 300_000, Some(20_000)), 1000) > 300_000);
    }

    #[test]
    fn the_total_stays_above_the_rows_done_while_the_job_runs() {
        // No keys left as far as the estimates know, nothing pending as far as the start
        // knew, and the last batch changed nothing: still one batch may come.
        let e = sampled(7_000);
        assert!(total(Some(&e), &at(7_000, 7_000, Some(0)), 1000) > 7_000);
        assert!(total(Some(&sampled(0)), &at(0, 7_000, Some(0)), 1000) > 0);
    }

    #[test]
    fn with_the_estimate_used_up_and_no_keys_known_the_total_is_unknown() {
        assert_eq!(
            total(Some(&sampled(5_000)), &at(7_000, 7_000, None), 1000),
            7_000
        );
        assert_eq!(total(None, &at(7_000, 7_000, None), 1000), 7_000);
    }

    #[test]
    fn an_estimate_made_on_a_resume_counts_from_the_rows_done_then() {
        // Estimated 100,000 pending at 100,000 done; 150,000 done since by every process
        // together in 150,000 keys of the 310,000 walked, with 60,000 keys left.
        let e = Pending {
            rows_done: 100_000,
            ..sampled(100_000)
        };
        let p = at(250_000, 310_000, Some(60_000));
        // The estimate is used up: the walk's 250/310 rows per key over 60,000 keys.
        assert_eq!(total(Some(&e), &p, 1000), 250_000 + 48_387);
    }
}
