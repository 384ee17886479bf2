//! The narrowing plan: which part of a failed batch to try next, until the first row that
//! fails is found. Pure: it sees only the outcome of each probe.
//!
//! The batch's keys are numbered `0..n` in key order. A probe applies the rows `from..to`
//! (those of them that still match `where`) on top of every row before `from`, which earlier probes applied (each
//! in a savepoint that is kept when the probe succeeds and rolled back when it fails). The
//! plan keeps `done` (rows `0..done` applied) and `end` (rows `done..end` fail, as the batch
//! did), and halves `done..end` until a single row is left that failed on its own. That is
//! at most ⌈log₂ n⌉ probes, plus one to try the last row alone when the halving reached it
//! only through probes that succeeded — so that the message reported is that row's own, not
//! another failing row's that a larger probe met first.
//!
//! When a probe that should fail succeeds (the data changed since the batch failed), the plan
//! ends with what is applied, and the walk goes on from there: never an unbounded search.

use std::ops::Range;

/// Where the search stands, with `E` the error a probe fails with; see the module header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bisect<E> {
    /// Rows `0..done` are applied.
    done: usize,
    /// Rows `done..end` fail together (the batch's own failure for `end = n`).
    end: usize,
    /// `done..end` is one row that was tried alone and failed with this.
    alone: Option<E>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<E> {
    /// Apply rows `from..to` (in a savepoint) and report how that went.
    Probe(Range<usize>),
    /// Row `at` fails on its own, with `error`; rows `0..at` are applied.
    Found { at: usize, error: E },
    /// No row was found failing: rows `0..upto` are applied, and what comes after them is
    /// left to the walk (`upto` is `n` when every row went through, and at least 1 unless
    /// `n` is 0: the walk always moves on).
    Clean { upto: usize },
}

impl<E: Clone> Bisect<E> {
    /// The plan for a batch of `n` rows that failed as a whole.
    pub fn new(n: usize) -> Bisect<E> {
        Bisect {
            done: 0,
            end: n,
            alone: None,
        }
    }

    /// The next step.
    pub fn next(&self) -> Step<E> {
        let len = self.end - self.done;
        if len == 0 {
            return Step::Clean { upto: self.done };
        }
        if let Some(error) = &self.alone {
            return Step::Found {
                at: self.done,
                error: error.clone(),
            };
        }
        Step::Probe(self.done..self.done + (len / 2).max(1))
    }

    /// Takes in the outcome of the probe [`Bisect::next`] asked for.
    pub fn record(&mut self, probe: Range<usize>, outcome: Result<(), E>) {
        match outcome {
            Ok(()) => self.applied(probe),
            Err(error) => {
                self.end = probe.end;
                self.alone = (probe.len() == 1).then_some(error);
            }
        }
    }

    fn applied(&mut self, probe: Range<usize>) {
        self.done = probe.end;
        self.alone = None;
        // Only a single row reaches `end` (a larger probe is at most half of what is left): it
        // should have failed and went through, so the data changed meanwhile and nothing is
        // known of the rows after it.
        if probe.end == self.end {
            self.end = self.done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the plan over `n` rows where the rows in `failing` fail (each on its own, whatever
    /// was applied before); returns the end and the probes made.
    /// The error is the first failing row a probe meets (as an `UPDATE` stops at one).
    fn narrow(n: usize, failing: &[usize]) -> (Step<usize>, Vec<Range<usize>>) {
        let mut plan = Bisect::new(n);
        let mut probes = Vec::new();
        loop {
            match plan.next() {
                Step::Probe(rows) => {
                    let met = failing.iter().copied().find(|f| rows.contains(f));
                    probes.push(rows.clone());
                    plan.record(rows, met.map_or(Ok(()), Err));
                }
                end => return (end, probes),
            }
            assert!(probes.len() <= 64, "the plan does not end: {probes:?}");
        }
    }

    /// ⌈log₂ n⌉ + 1.
    fn bound(n: usize) -> usize {
        (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize + 1
    }

    #[test]
    fn the_first_failing_row_is_found_within_log2_probes() {
        for (n, failing, at) in [
            (5000, vec![2777], 2777),
            (5000, vec![0], 0),
            (5000, vec![4999], 4999),
            (5000, vec![100, 200, 4000], 100),
            (1, vec![0], 0),
            (2, vec![1], 1),
            (3, vec![2], 2),
            (100_000, vec![77_776], 77_776),
        ] {
            let (end, probes) = narrow(n, &failing);
            assert_eq!(
                end,
                Step::Found { at, error: at },
                "n {n}, failing {failing:?}"
            );
            assert!(
                probes.len() <= bound(n),
                "n {n}: {} probes, more than {}",
                probes.len(),
                bound(n)
            );
        }
    }

    #[test]
    fn the_error_reported_is_the_found_rows_own() {
        // A probe over rows 3..=5 meets row 5 first (in its scan order), yet row 3 is named,
        // with its own error from a probe of it alone.
        let mut plan = Bisect::new(8);
        plan.record(0..4, Err("row 5's"));
        plan.record(0..2, Ok(()));
        plan.record(2..3, Ok(()));
        assert_eq!(plan.next(), Step::Probe(3..4));
        plan.record(3..4, Err("row 3's"));
        assert_eq!(
            plan.next(),
            Step::Found {
                at: 3,
                error: "row 3's"
            }
        );
        for (n, failing) in [(5000, vec![10, 11]), (8, vec![3, 5]), (7, vec![6])] {
            let (end, probes) = narrow(n, &failing);
            let Step::Found { at, .. } = end else {
                panic!("{end:?}")
            };
            assert!(probes.contains(&(at..at + 1)), "{probes:?}");
        }
    }

    #[test]
    fn the_first_probe_is_the_first_half() {
        let first = |n| Bisect::<()>::new(n).next();
        assert_eq!(first(5000), Step::Probe(0..2500));
        assert_eq!(first(5), Step::Probe(0..2));
        assert_eq!(first(1), Step::Probe(0..1));
    }

    #[test]
    fn whatever_the_probes_say_the_plan_ends_in_bounds_and_moves_on() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut coin = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed & 1 == 0
        };
        for n in (1..70).chain([5000]) {
            for _ in 0..200 {
                let mut plan = Bisect::new(n);
                let mut probes = 0;
                let end = loop {
                    match plan.next() {
                        Step::Probe(rows) => {
                            probes += 1;
                            plan.record(rows, if coin() { Ok(()) } else { Err(()) });
                        }
                        end => break end,
                    }
                };
                assert!(probes <= bound(n), "n {n}: {probes} probes");
                match end {
                    Step::Clean { upto } => assert!((1..=n).contains(&upto), "n {n}: {end:?}"),
                    Step::Found { at, .. } => assert!(at < n, "n {n}: {end:?}"),
                    Step::Probe(_) => unreachable!(),
                }
            }
        }
    }

    #[test]
    fn a_failure_that_went_away_ends_with_what_was_applied() {
        assert_eq!(narrow(5000, &[]).0, Step::Clean { upto: 5000 });
        assert_eq!(narrow(0, &[]), (Step::Clean { upto: 0 }, vec![]));
        // Rows 0..4 fail as a probe, then row 2 — which made them fail — is fixed meanwhile.
        let mut plan = Bisect::new(8);
        plan.record(0..4, Err(()));
        plan.record(0..2, Ok(()));
        plan.record(2..3, Ok(()));
        assert_eq!(plan.next(), Step::Probe(3..4));
        plan.record(3..4, Ok(()));
        assert_eq!(plan.next(), Step::Clean { upto: 4 });
    }
}
