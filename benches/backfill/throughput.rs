//! Throughput: one `UPDATE` of the whole table, the migration guides' loop, and `backfill run`
//! (defaults, with more workers, then larger batches), each on a fresh copy of the same table.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::args::Options;
use crate::fixture::{self, Copy, Server};
use crate::runner;
use crate::runqueue::RunQueue;

/// The label of the guides' loop in every table.
pub const LOOP_LABEL: &str = "guides' loop (5000/batch)";

/// The guides' loop body, adapted to `orders`; it runs until it changes no row.
const GUIDES_BATCH: &str = "UPDATE orders SET total_cents = qty::bigint * price_cents \
     WHERE id IN (SELECT id FROM orders WHERE total_cents IS NULL ORDER BY id LIMIT 5000)";

/// The label of the default `backfill run`.
pub const DEFAULTS: &str = "backfill run (defaults)";

/// The label of `backfill run --workers n`.
pub fn workers_label(n: u32) -> String {
    format!("backfill run ({n} workers)")
}

/// One way of filling the column, timed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    pub rows: u64,
    pub wall_s: f64,
    pub rows_per_s: f64,
    /// Throughput relative to the single `UPDATE` (1.0 = as fast).
    pub vs_update: f64,
    /// Peak RSS of the `backfill` process (none for SQL-only methods).
    pub peak_rss_kb: Option<u64>,
    /// Transactions that changed rows.
    pub batches: usize,
    /// WAL written while it ran (full-page images included: each copy starts checkpointed).
    pub wal_mb: f64,
    /// Mean runnable tasks on the machine while it ran: above the core count, work waited
    /// for a CPU (what stops more workers from helping on a small machine).
    pub run_queue: f64,
}

/// Runs every method on a fresh copy of the `rows` table.
pub async fn run(server: &mut Server, options: &Options) -> Result<Vec<Row>> {
    let rows = options.rows;
    let mut results = vec![
        measure(server, rows, "single UPDATE", async |copy: &Copy| {
            let (took, changed) = fixture::timed(copy, fixture::SINGLE_UPDATE).await?;
            Ok(Done::sql(took, changed))
        })
        .await?,
    ];
    if rows <= options.skip_loop_above {
        results.push(measure(server, rows, LOOP_LABEL, looped).await?);
    }
    let mut jobs = vec![(DEFAULTS.to_string(), options.job(), vec![])];
    for &n in &options.workers {
        let label = workers_label(n);
        jobs.push((
            label,
            options.job(),
            vec!["--workers".into(), n.to_string()],
        ));
    }
    for &(min, max) in &options.batch_variants {
        let label = format!("backfill run (batch {min}..{max})");
        jobs.push((label, runner::job_with_batch(min, max), vec![]));
    }
    for (label, job, args) in jobs {
        let row = measure(server, rows, &label, async |copy: &Copy| {
            let outcome = runner::run_to_end(copy, &job, &args).await?;
            Ok(Done {
                took: Duration::from_secs_f64(outcome.wall_s),
                changed: outcome.rows_done,
                batches: outcome.batches.len(),
                peak_rss_kb: Some(outcome.peak_rss_kb),
            })
        })
        .await?;
        results.push(row);
    }
    let base = results[0].rows_per_s;
    for row in &mut results {
        row.vs_update = row.rows_per_s / base;
    }
    Ok(results)
}

/// What one method did to its copy.
struct Done {
    took: Duration,
    changed: u64,
    /// Transactions that changed rows.
    batches: usize,
    /// Peak RSS of the `backfill` process; `None` for SQL run from here.
    peak_rss_kb: Option<u64>,
}

impl Done {
    fn sql(took: Duration, changed: u64) -> Done {
        Done {
            took,
            changed,
            batches: 1,
            peak_rss_kb: None,
        }
    }
}

/// Gives `method` a fresh copy, checks every total afterwards, and drops the copy.
async fn measure(
    server: &mut Server,
    rows: u64,
    label: &str,
    method: impl AsyncFnOnce(&Copy) -> Result<Done>,
) -> Result<Row> {
    let copy = server.fresh(rows).await?;
    eprintln!("  throughput: {label} on {rows} rows");
    let wal_start = server.wal_position().await?;
    let queue = RunQueue::sample();
    let done = method(&copy).await;
    let run_queue = queue.mean().await;
    let done = done?;
    let wal_mb = server.wal_mb_since(&wal_start).await?;
    fixture::check_filled(&copy, label, done.changed).await?;
    server.discard(copy).await?;
    let wall_s = done.took.as_secs_f64();
    Ok(Row {
        method: label.to_string(),
        rows,
        wall_s,
        rows_per_s: rows as f64 / wall_s,
        vs_update: 0.0,
        peak_rss_kb: done.peak_rss_kb,
        batches: done.batches,
        wal_mb,
        run_queue,
    })
}

/// The guides' loop as a throughput row.
async fn looped(copy: &Copy) -> Result<Done> {
    let (took, changed, batches) = guides_loop(copy).await?;
    Ok(Done {
        took,
        changed,
        batches,
        peak_rss_kb: None,
    })
}

/// The guides' loop: each statement its own (autocommit) transaction, until one changes
/// nothing. Its time, the rows it changed and the statements that changed some.
pub async fn guides_loop(copy: &Copy) -> Result<(Duration, u64, usize)> {
    let mut conn = PgConnection::connect(&copy.url).await?;
    let started = Instant::now();
    let (mut total, mut batches) = (0, 0);
    loop {
        let changed = sqlx::raw_sql(GUIDES_BATCH)
            .execute(&mut conn)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok((started.elapsed(), total, batches));
        }
        total += changed;
        batches += 1;
    }
}
