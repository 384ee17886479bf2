//! How many rows still match `where`: the number `plan` prints and a run's progress starts from.
//!
//! Right after the expand migration the planner knows nothing about the new column:
//! `ALTER TABLE … ADD COLUMN` leaves no statistics for it, so `status_flag IS NULL` gets a
//! default selectivity of 0.5 % (5,000 of 1,000,000 rows), and a table that was never analyzed
//! has `reltuples` = -1 (0 before PostgreSQL 14). So the estimate reads a block sample
//! (`TABLESAMPLE SYSTEM`, [docs](https://www.postgresql.org/docs/current/sql-select.html#SQL-FROM)):
//! about [`SAMPLE_BLOCKS`] blocks whatever the table's size, chosen from the table's exact size
//! in blocks (`pg_relation_size`, not `relpages`), the rows in them that match `where` counted
//! and scaled by the fraction of blocks read. Each block is read with the same probability, so
//! the scaled count is unbiased; its error shrinks with the matching rows seen. A table no
//! larger than the sample is simply counted. The planner's own figure is used only when every
//! column the filter mentions has statistics and it agrees with the sample.

use std::fmt;

/// About this many blocks are read for an estimate (16 MiB with 8 kB blocks): enough for a
/// few percent of error on a uniform table, and well under a second from disk.
pub(crate) const SAMPLE_BLOCKS: u64 = 2000;

/// How far (as a fraction) the planner's figure may be from the sample's and still be used:
/// no further than the sample's own error on a table whose rows were counted.
pub(crate) const AGREEMENT: f64 = 0.05;

/// The pending rows and how they were found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Rows still matching `where`.
    pub rows: u64,
    /// Rows in the table, when the estimate read them (not with `--exact-count`).
    pub table_rows: Option<u64>,
    /// How `rows` was found.
    pub method: Method,
}

/// Where an [`Estimate`] comes from, for `plan` to say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Every row was read: `--exact-count`, or a table no larger than the sample.
    Exact,
    /// The planner's figure, backed by statistics and by the sample.
    Planner,
    /// Scaled from a sample of `percent` % of the table's blocks.
    Sampled { percent: f64 },
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Exact => f.write_str("exact count"),
            Method::Planner => f.write_str("planner estimate"),
            Method::Sampled { percent } => {
                write!(f, "sampled {} of blocks", percent_text(*percent))
            }
        }
    }
}

/// `29%`, `1.2%`, `0.027%`: two significant digits, at most.
pub(crate) fn percent_text(percent: f64) -> String {
    if percent >= 10.0 {
        format!("{percent:.0}%")
    } else {
        let decimals = (1.0 - percent.log10().floor()).clamp(1.0, 6.0) as usize;
        format!("{percent:.decimals$}%")
    }
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// The percentage of a table of `blocks` blocks to sample: about [`SAMPLE_BLOCKS`] blocks, or
/// all of a small table.
pub(crate) fn sample_percent(blocks: u64) -> f64 {
    if blocks <= SAMPLE_BLOCKS {
        100.0
    } else {
        SAMPLE_BLOCKS as f64 * 100.0 / blocks as f64
    }
}

/// What a block sample found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Rows in the sampled blocks that match `where`.
    pub(crate) matched: u64,
    /// Rows in the sampled blocks.
    pub(crate) rows: u64,
    /// Percentage of the table's blocks sampled.
    pub(crate) percent: f64,
    /// Rows in the table as its last count says (`VACUUM` or `ANALYZE`: rows per block, times
    /// the blocks it has now, as the planner reckons), when it has one.
    pub(crate) counted: Option<f64>,
}

impl Sample {
    fn scale(&self, n: u64) -> u64 {
        (n as f64 * 100.0 / self.percent).round() as u64
    }

    /// The rows in the table: the count's, or the sample's scaled.
    fn table_rows(&self) -> u64 {
        self.counted
            .map_or_else(|| self.scale(self.rows), |rows| rows.round() as u64)
    }

    /// The rows that match: the share of the sampled rows that match, of the table's rows.
    /// A block sample reads a varying number of blocks; the share does not vary with it, so it
    /// is the steadier figure on a table whose rows were counted. Without a count, the
    /// matching rows are scaled up by the share of blocks read.
    fn matching(&self) -> u64 {
        match self.counted {
            Some(rows) if self.rows > 0 => {
                (self.matched as f64 / self.rows as f64 * rows).round() as u64
            }
            _ => self.scale(self.matched),
        }
    }

    /// How far from the truth the scaled count may well be: three standard errors (the matching
    /// rows seen are close to a Poisson count), at least one block's worth.
    fn margin(&self) -> f64 {
        3.0 * (self.matched.max(1) as f64).sqrt() * 100.0 / self.percent
    }
}

/// The planner's figure (`None`: a column the filter mentions has no statistics) when it agrees
/// with the sample, else the sample's.
pub(crate) fn choose(planner: Option<u64>, sample: Sample) -> Estimate {
    if sample.percent >= 100.0 {
        return Estimate {
            rows: sample.matched,
            table_rows: Some(sample.rows),
            method: Method::Exact,
        };
    }
    let table_rows = Some(sample.table_rows());
    let scaled = sample.matching();
    let agrees = |p: u64| {
        (p as f64 - scaled as f64).abs() <= (scaled as f64 * AGREEMENT).max(sample.margin())
    };
    match planner.filter(|&p| agrees(p)) {
        Some(p) => Estimate {
            rows: p,
            table_rows,
            method: Method::Planner,
        },
        None => Estimate {
            rows: scaled,
            table_rows,
            method: Method::Sampled {
                percent: sample.percent,
            },
        },
    }
}

/// `Plan Rows` of the top node of an `EXPLAIN (FORMAT JSON)` document (0 when unreadable).
pub(crate) fn plan_rows(doc: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(doc)
        .ok()
        .and_then(|v| v.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64())
        .map_or(0, |rows| rows.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(matched: u64, rows: u64, percent: f64) -> Sample {
        Sample {
            matched,
            rows,
            percent,
            counted: None,
        }
    }

    #[test]
    fn plan_rows_reads_the_top_node() {
        let doc = r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1234, "Plan Width": 0}}]"#;
        assert_eq!(plan_rows(doc), 1234);
    }

    #[test]
    fn unreadable_plan_is_zero() {
        assert_eq!(plan_rows("not json"), 0);
    }

    #[test]
    fn small_tables_are_read_whole() {
        assert_eq!(sample_percent(0), 100.0);
        assert_eq!(sample_percent(SAMPLE_BLOCKS), 100.0);
        assert_eq!(sample_percent(SAMPLE_BLOCKS * 50), 2.0);
    }

    #[test]
    fn a_whole_table_sample_is_an_exact_count() {
        let e = choose(Some(5), sample(1000, 1200, 100.0));
        assert_eq!(e.rows, 1000);
        assert_eq!(e.table_rows, Some(1200));
        assert_eq!(e.method, Method::Exact);
    }

    #[test]
    fn the_sample_wins_when_a_column_has_no_statistics() {
        // Right after ADD COLUMN: 1,000,000 pending rows; the planner guesses 0.5 %.
        let e = choose(None, sample(250_000, 250_000, 25.0));
        assert_eq!(e.rows, 1_000_000);
        assert_eq!(e.method, Method::Sampled { percent: 25.0 });
    }

    #[test]
    fn the_sample_wins_when_the_planner_disagrees() {
        let e = choose(Some(5_000), sample(250_000, 250_000, 25.0));
        assert_eq!(e.rows, 1_000_000);
        assert!(matches!(e.method, Method::Sampled { .. }), "{e:?}");
    }

    #[test]
    fn the_planner_is_used_when_it_agrees() {
        let e = choose(Some(990_000), sample(250_000, 250_000, 25.0));
        assert_eq!(e.rows, 990_000);
        assert_eq!(e.method, Method::Planner);
        assert_eq!(e.table_rows, Some(1_000_000));
    }

    #[test]
    fn a_counted_table_takes_the_share_that_matches_not_the_blocks_read() {
        // The sample read 2.1 % of the blocks where it asked for 2 %, all of whose rows match;
        // the last ANALYZE counted 2,000,000 rows in about as many blocks as there are now.
        let read_more = Sample {
            counted: Some(2_000_000.0),
            ..sample(42_000, 42_000, 2.0)
        };
        let e = choose(None, read_more);
        assert_eq!(e.rows, 2_000_000);
        assert_eq!(e.table_rows, Some(2_000_000));
        // Without the count, the blocks read more than asked scale up to 5 % too many.
        assert_eq!(choose(None, sample(42_000, 42_000, 2.0)).rows, 2_100_000);
    }

    #[test]
    fn a_sample_that_saw_few_rows_tolerates_more() {
        // 2 matching rows in a 1 % sample: 200 ± 3·√2·100; the planner's 500 is within.
        assert_eq!(
            choose(Some(500), sample(2, 9000, 1.0)).method,
            Method::Planner
        );
        assert!(matches!(
            choose(Some(5_000), sample(2, 9000, 1.0)).method,
            Method::Sampled { .. }
        ));
    }

    #[test]
    fn methods_read_as_plan_prints_them() {
        assert_eq!(Method::Exact.to_string(), "exact count");
        assert_eq!(Method::Planner.to_string(), "planner estimate");
        let sampled = |percent| Method::Sampled { percent }.to_string();
        assert_eq!(sampled(28.57), "sampled 29% of blocks");
        assert_eq!(sampled(1.234), "sampled 1.2% of blocks");
        assert_eq!(sampled(0.0266), "sampled 0.027% of blocks");
    }
}
