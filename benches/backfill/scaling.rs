//! Scaling: `backfill run` (defaults) on tables of growing size. A keyset walk costs the same
//! per row wherever it is in the table, so time per million rows should stay flat; the
//! process should not grow with the table either.

use anyhow::Result;
use serde::Serialize;

use crate::fixture::{self, Server};
use crate::runner;

/// One table size.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub rows: u64,
    pub wall_s: f64,
    pub s_per_million: f64,
    pub peak_rss_kb: u64,
    pub batches: usize,
    /// Wall time spent outside batch transactions (start-up, pacing, monitor).
    pub outside_batches_s: f64,
    /// Mean batch transaction time over the first and the last quarter of the batches: a
    /// cost that grows with the position in the table shows here.
    pub first_quarter_batch_ms: f64,
    pub last_quarter_batch_ms: f64,
}

/// How total time grew between two sizes, against linear growth.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub small_rows: u64,
    pub large_rows: u64,
    /// time(large) / time(small).
    pub time_ratio: f64,
    /// large / small: the time ratio of a perfectly linear cost.
    pub size_ratio: f64,
}

/// Runs `job` at every size (a fresh table each) and drops the tables it built.
pub async fn run(
    server: &mut Server,
    job: &str,
    sizes: &[u64],
    keep_template: u64,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for &rows in sizes {
        let copy = server.fresh(rows).await?;
        eprintln!("  scaling: backfill run on {rows} rows");
        let outcome = runner::run_to_end(&copy, job).await?;
        anyhow::ensure!(
            outcome.rows_done == rows,
            "changed {} of {rows} rows",
            outcome.rows_done
        );
        fixture::verify(&copy).await?;
        server.discard(copy).await?;
        server.drop_templates_except(keep_template).await?;
        let times: Vec<f64> = outcome
            .batches
            .iter()
            .map(|b| b.elapsed_ms as f64)
            .collect();
        let quarter = (times.len() / 4).max(1);
        points.push(Point {
            rows,
            wall_s: outcome.wall_s,
            s_per_million: outcome.wall_s / (rows as f64 / 1e6),
            peak_rss_kb: outcome.peak_rss_kb,
            batches: outcome.batches.len(),
            outside_batches_s: outcome.wall_s - outcome.batch_seconds(),
            first_quarter_batch_ms: mean(&times[..quarter.min(times.len())]),
            last_quarter_batch_ms: mean(&times[times.len().saturating_sub(quarter)..]),
        });
    }
    Ok(points)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Growth from the point of `reference` rows (or the smallest) to the largest.
pub fn growth(points: &[Point], reference: u64) -> Option<Growth> {
    let large = points.iter().max_by_key(|p| p.rows)?;
    let small = points
        .iter()
        .find(|p| p.rows == reference && p.rows < large.rows)
        .or_else(|| points.iter().min_by_key(|p| p.rows))?;
    (small.rows < large.rows).then(|| Growth {
        small_rows: small.rows,
        large_rows: large.rows,
        time_ratio: large.wall_s / small.wall_s,
        size_ratio: large.rows as f64 / small.rows as f64,
    })
}
