//! Each job's rows done over time, as the server's own samples saw them (kept in memory, so a
//! restarted server starts a new chart): the rate chart of a job's page. Pure: the caller
//! passes the time in.

use std::collections::{BTreeMap, VecDeque};

/// How many samples a job keeps: 10 minutes at one every 2 seconds.
pub const KEPT: usize = 300;

/// Rows done by job, oldest first, as `(seconds since the server started, rows done)`.
#[derive(Debug, Default)]
pub struct History {
    jobs: BTreeMap<String, VecDeque<(f64, u64)>>,
}

impl History {
    /// Records that `job` had done `rows_done` rows at `at`.
    pub fn push(&mut self, job: &str, at: f64, rows_done: u64) {
        let samples = self.jobs.entry(job.to_owned()).or_default();
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back((at, rows_done));
    }

    /// `job`'s rate between each sample and the one before, in rows per second, at the later
    /// sample's time (a reset, whose rows done go back, reads as 0).
    pub fn rates(&self, job: &str) -> Vec<(f64, f64)> {
        let Some(samples) = self.jobs.get(job) else {
            return vec![];
        };
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .filter(|((t0, _), (t1, _))| t1 > t0)
            .map(|((t0, r0), (t1, r1))| (*t1, r1.saturating_sub(*r0) as f64 / (t1 - t0)))
            .collect()
    }
}

/// `rates` as the points of an SVG polyline in a `width` × `height` box: time across, the rate
/// up from the bottom, the highest rate at the top. Empty with fewer than two points.
pub fn polyline(rates: &[(f64, f64)], width: f64, height: f64) -> String {
    let (Some(first), Some(last)) = (rates.first(), rates.last()) else {
        return String::new();
    };
    let span = (last.0 - first.0).max(f64::EPSILON);
    let top = rates.iter().map(|(_, r)| *r).fold(0.0, f64::max).max(1.0);
    rates
        .iter()
        .map(|(t, r)| {
            let x = (t - first.0) / span * width;
            let y = height - r / top * height;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_consecutive_samples() {
        let mut h = History::default();
        h.push("a", 0.0, 0);
        h.push("a", 2.0, 1000);
        h.push("a", 4.0, 3000);
        h.push("a", 6.0, 0);
        assert_eq!(h.rates("a"), vec![(2.0, 500.0), (4.0, 1000.0), (6.0, 0.0)]);
        assert!(h.rates("b").is_empty());
    }

    #[test]
    fn a_job_keeps_its_last_samples_only() {
        let mut h = History::default();
        for i in 0..(KEPT as u64 + 10) {
            h.push("a", i as f64, i * 10);
        }
        let rates = h.rates("a");
        assert_eq!(rates.len(), KEPT - 1);
        assert_eq!(rates[0].0, 11.0);
    }

    #[test]
    fn the_chart_spans_its_box() {
        let points = polyline(&[(0.0, 0.0), (5.0, 50.0), (10.0, 100.0)], 200.0, 40.0);
        assert_eq!(points, "0.0,40.0 100.0,20.0 200.0,0.0");
        assert_eq!(polyline(&[], 200.0, 40.0), "");
    }
}
