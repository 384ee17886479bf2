//! The progress of a read-only walk over a table (`verify --values`): rows compared, of about
//! how many, and how many differ so far. A bar when stderr is a terminal, else a line every few
//! seconds, always on stderr (stdout carries the verdict).

use std::io::{self, IsTerminal};
use std::time::Instant;

use indicatif::ProgressBar;

use super::bars::{shape, unknown_total_style};
use super::{LINE_INTERVAL, TICK, si, write_stderr};

/// A walk's progress display.
pub struct Scan {
    job: String,
    /// About how many rows the table has (`None`: unknown).
    estimate: Option<u64>,
    bar: Option<ProgressBar>,
    /// When lines mode last wrote a line.
    last_line: Option<Instant>,
}

impl Scan {
    /// Starts showing the walk over `job`'s table of about `estimate` rows.
    pub fn new(job: &str, estimate: Option<u64>) -> Scan {
        let bar = io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::no_length()
                .with_style(unknown_total_style())
                .with_prefix(job.to_owned());
            bar.enable_steady_tick(TICK);
            bar
        });
        let mut scan = Scan {
            job: job.to_owned(),
            estimate,
            bar,
            // The first line comes after an interval: a short walk needs none.
            last_line: Some(Instant::now()),
        };
        if scan.bar.is_some() {
            scan.advance(0, 0);
        }
        scan
    }

    /// `compared 120.0k/1.00M rows, 3 differ`; the estimate is dropped once passed.
    fn text(&self, rows: u64, differing: u64) -> String {
        let total = self.total(rows).map_or("?".to_owned(), |t| si(t as f64));
        format!(
            "compared {}/{total} rows, {differing} differ",
            si(rows as f64)
        )
    }

    fn total(&self, rows: u64) -> Option<u64> {
        self.estimate.filter(|&e| e > rows)
    }

    /// The walk has compared `rows` rows, `differing` of which differ.
    pub fn advance(&mut self, rows: u64, differing: u64) {
        let text = self.text(rows, differing);
        match &self.bar {
            Some(bar) => {
                shape(bar, self.total(rows));
                bar.set_position(rows);
                bar.set_message(text);
            }
            None => {
                let now = Instant::now();
                if self
                    .last_line
                    .is_none_or(|last| now.duration_since(last) >= LINE_INTERVAL)
                {
                    self.last_line = Some(now);
                    write_stderr(&format!("{}: verify --values: {text}", self.job));
                }
            }
        }
    }

    /// Takes the bar off the screen: the verdict follows on stdout.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(estimate: Option<u64>) -> Scan {
        Scan {
            job: "fill".into(),
            estimate,
            bar: None,
            last_line: None,
        }
    }

    #[test]
    fn text_counts_rows_of_the_estimate_and_differences() {
        assert_eq!(
            scan(Some(1_000_000)).text(120_000, 3),
            "compared 120.0k/1.00M rows, 3 differ"
        );
    }

    #[test]
    fn past_the_estimate_the_total_is_unknown() {
        assert_eq!(
            scan(Some(1000)).text(1200, 0),
            "compared 1.2k/? rows, 0 differ"
        );
        assert_eq!(scan(None).text(5, 1), "compared 5/? rows, 1 differ");
    }
}
