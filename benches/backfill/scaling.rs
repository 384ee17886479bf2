//! Scaling: `backfill run` (defaults, and with more workers) on tables of growing size. A keyset walk costs the same
//! per row wherever it is in the table, so time per million rows should stay flat; the
//! process should not grow with the table either.

use anyhow::Result;
use serde::Serialize;

use crate::fixture::{self, Server};
use crate::runner;

/// One table size, at one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub rows: u64,
    pub workers: u32,
    pub wall_s: f64,
    pub s_per_million: f64,
    pub peak_rss_kb: u64,
    pub batches: usize,
    /// Wall time a worker spends outside batch transactions (start-up, pacing, claiming
    /// ranges, waiting for a turn), on average: the workers' batches run side by side, so
    /// their summed time is shared out before it is set against the wall time.
    pub outside_batches_s: f64,
    /// Mean batch transaction time over the first and the last quarter of the batches: a
    /// cost that grows with the position in the table shows here.
    pub first_quarter_batch_ms: f64,
    pub last_quarter_batch_ms: f64,
}

/// How total time grew between two sizes, against linear growth, at one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub workers: u32,
    pub small_rows: u64,
    pub large_rows: u64,
    /// time(large) / time(small).
    pub time_ratio: f64,
    /// large / small: the time ratio of a perfectly linear cost.
    pub size_ratio: f64,
}

/// Runs `job` at every size with every worker count (a fresh table each) and drops the tables
/// it built.
pub async fn run(
    server: &mut Server,
    job: &str,
    sizes: &[u64],
    workers: &[u32],
    keep_template: u64,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for &rows in sizes {
        for &n in workers {
            points.push(measure(server, job, rows, n).await?);
        }
        server.drop_templates_except(keep_template).await?;
    }
    Ok(points)
}

/// One run of `job` on a fresh table of `rows` with `workers` workers.
async fn measure(server: &mut Server, job: &str, rows: u64, workers: u32) -> Result<Point> {
    {
        let copy = server.fresh(rows).await?;
        eprintln!("  scaling: backfill run --workers {workers} on {rows} rows");
        let args = ["--workers".to_string(), workers.to_string()];
        let outcome = runner::run_to_end(&copy, job, &args).await?;
        fixture::check_filled(&copy, "backfill run", outcome.rows_done).await?;
        server.discard(copy).await?;
        let times: Vec<f64> = outcome
            .batches
            .iter()
            .map(|b| b.elapsed_ms as f64)
            .collect();
        let quarter = (times.len() / 4).max(1);
        Ok(Point {
            rows,
            workers,
            wall_s: outcome.wall_s,
            s_per_million: outcome.wall_s / (rows as f64 / 1e6),
            peak_rss_kb: outcome.peak_rss_kb,
            batches: outcome.batches.len(),
            outside_batches_s: outcome.wall_s - outcome.batch_seconds() / f64::from(workers),
            first_quarter_batch_ms: mean(&times[..quarter.min(times.len())]),
            last_quarter_batch_ms: mean(&times[times.len().saturating_sub(quarter)..]),
        })
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// For each worker count, growth from the point of `reference` rows (or the smallest) to the
/// largest.
pub fn growth(points: &[Point], reference: u64) -> Vec<Growth> {
    let mut counts: Vec<u32> = points.iter().map(|p| p.workers).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .filter_map(|n| {
            let at: Vec<&Point> = points.iter().filter(|p| p.workers == n).collect();
            growth_of(&at, reference, n)
        })
        .collect()
}

fn growth_of(points: &[&Point], reference: u64, workers: u32) -> Option<Growth> {
    let large = points.iter().max_by_key(|p| p.rows)?;
    let small = points
        .iter()
        .find(|p| p.rows == reference && p.rows < large.rows)
        .or_else(|| points.iter().min_by_key(|p| p.rows))?;
    (small.rows < large.rows).then(|| Growth {
        workers,
        small_rows: small.rows,
        large_rows: large.rows,
        time_ratio: large.wall_s / small.wall_s,
        size_ratio: large.rows as f64 / small.rows as f64,
    })
}
