//! Bloat: what filling the whole column does to the table's disk (issue 11). One `UPDATE` of
//! the table, the guides' loop, then `backfill run` with `[vacuum] enabled = false`, at its
//! defaults (pacing vacuums every 5 % of the rows, a final `VACUUM (ANALYZE)`) and with
//! `index_cleanup = true` (the pacing vacuums clean the indexes too), each on a fresh
//! copy of `orders` as the fixture builds it (fillfactor 100) with a secondary index on a
//! column the fill does not change ([`SECONDARY_INDEX`]), as most tables have one.
//!
//! In a table packed full no new row version fits on its old page, so without a vacuum that
//! records the old versions' space the heap doubles; the pacing vacuums let the next batches
//! reuse it. Sizes are read here before and after (`pg_relation_size`,
//! `pg_total_relation_size`), and beside them what the run itself reports: its `vacuum`
//! events and the `finished` event's heap readings.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::fixture::{self, Copy, Server, Sizes};
use crate::runner::{self, FinishedHeap, Vacuums};
use crate::throughput;

/// The label of the run without pacing vacuums.
pub const PACING_OFF: &str = "backfill run, `[vacuum] enabled = false`";
/// The label of the run at its defaults.
pub const PACING_ON: &str = "backfill run, vacuum pacing (defaults)";

/// The index every copy gets before it is measured: on `qty`, which no method changes, so that
/// what it gains is the entries every update that leaves its page adds (no HOT update).
const SECONDARY_INDEX: &str = "CREATE INDEX orders_qty ON orders (qty); CHECKPOINT";

/// The label of the run whose pacing vacuums clean the indexes too.
pub const PACING_CLEANUP: &str = "backfill run, vacuum pacing, `index_cleanup = true`";

/// The job text that makes the pacing vacuums clean the indexes too.
const CLEANUP_TOML: &str = "[vacuum]\nindex_cleanup = true\n";

/// The job text that turns pacing off; `final` stays at its default, as a user would leave it.
const OFF_TOML: &str = "[vacuum]\nenabled = false\n";

/// One way of filling the column, and the disk it left behind.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    /// For `backfill run`, process start to exit: the final vacuum included.
    pub wall_s: f64,
    pub rows_per_s: f64,
    pub before: Sizes,
    pub after: Sizes,
    /// Heap after / heap before.
    pub heap_growth: f64,
    /// Whole relation after / before.
    pub total_growth: f64,
    /// The run's vacuums (none for the single `UPDATE`).
    pub vacuums: Option<Vacuums>,
    /// The run's own heap readings (none for the single `UPDATE`).
    pub finished: Option<FinishedHeap>,
}

/// What one method did, as the row needs it.
struct Filled {
    took: Duration,
    changed: u64,
    vacuums: Option<Vacuums>,
    finished: Option<FinishedHeap>,
}

/// Runs every method on a fresh copy of the `rows` table (the guides' loop only `with_loop`:
/// it takes minutes); `job` is the default job.
pub async fn run(server: &mut Server, rows: u64, job: &str, with_loop: bool) -> Result<Vec<Row>> {
    let mut results = vec![
        measure(server, rows, "single UPDATE", async |copy: &Copy| {
            let (took, changed) = fixture::timed(copy, fixture::SINGLE_UPDATE).await?;
            Ok(Filled {
                took,
                changed,
                vacuums: None,
                finished: None,
            })
        })
        .await?,
    ];
    if with_loop {
        let row = measure(server, rows, throughput::LOOP_LABEL, async |copy: &Copy| {
            let (took, changed, _) = throughput::guides_loop(copy).await?;
            Ok(Filled {
                took,
                changed,
                vacuums: None,
                finished: None,
            })
        })
        .await?;
        results.push(row);
    }
    for (label, job) in [
        (PACING_OFF, format!("{job}{OFF_TOML}")),
        (PACING_ON, job.into()),
        (PACING_CLEANUP, format!("{job}{CLEANUP_TOML}")),
    ] {
        let row = measure(server, rows, label, async |copy: &Copy| {
            let outcome = runner::run_to_end(copy, &job, &[]).await?;
            Ok(Filled {
                took: Duration::from_secs_f64(outcome.wall_s),
                changed: outcome.rows_done,
                vacuums: Some(outcome.vacuums()),
                finished: Some(outcome.finished_heap()),
            })
        })
        .await?;
        results.push(row);
    }
    Ok(results)
}

/// Gives `method` a fresh copy, reads its sizes before and after, checks every total, and
/// drops the copy.
async fn measure(
    server: &mut Server,
    rows: u64,
    label: &str,
    method: impl AsyncFnOnce(&Copy) -> Result<Filled>,
) -> Result<Row> {
    let copy = server.fresh(rows).await?;
    eprintln!("  bloat: {label} on {rows} rows");
    fixture::timed(&copy, SECONDARY_INDEX).await?;
    let before = fixture::sizes(&copy).await?;
    let filled = method(&copy).await?;
    let after = fixture::sizes(&copy).await?;
    fixture::check_filled(&copy, label, filled.changed).await?;
    server.discard(copy).await?;
    let wall_s = filled.took.as_secs_f64();
    Ok(Row {
        method: label.to_string(),
        wall_s,
        rows_per_s: rows as f64 / wall_s,
        heap_growth: after.heap_bytes as f64 / before.heap_bytes as f64,
        total_growth: after.total_bytes as f64 / before.total_bytes as f64,
        before,
        after,
        vacuums: filled.vacuums,
        finished: filled.finished,
    })
}
