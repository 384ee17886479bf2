//! The sleep after each batch on real PostgreSQL (issues 11 and 12): `[batch] pause_ratio`
//! spaces batches by their own time, and `[throttle] max_wal_rate` keeps the WAL a run writes
//! under its budget. What is checked is what the run reports of itself (each `batch` event's
//! `elapsed_ms`, `pause_ms` and `wal_bytes`, the `finished` event's `elapsed_ms`) and what the
//! server says (its WAL position), never a wall clock; every row is filled exactly once.

mod common;

use common::watched::{assert_clean, items_with_job, of_kind};
use common::{Finished, Runner, assert_all_done_once, fresh_database, number, own_cluster};
use serde_json::Value;
use sqlx::PgPool;

/// `field` of an event, as a number.
fn n(event: &Value, field: &str) -> u64 {
    event[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {event}"))
}

/// Runs `job` to its end with `--json` and returns what it printed.
async fn run_json(url: &str, job: &str, dir: &tempfile::TempDir) -> Finished {
    Runner::spawn(url, dir, "run", &["run", "--json", job])
        .finish()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_ratio_sleeps_each_batchs_own_time_over() {
    let db = fresh_database().await;
    let rows = 20_000;
    // Fixed batches, and no monitor: only the duty cycle decides the sleeps.
    let (dir, job) = items_with_job(
        &db.pool,
        rows,
        "size = 1000\nmin = 1000\nmax = 1000\npause_ratio = 2",
        "enabled = false",
    )
    .await;
    let out = run_json(&db.url, &job, &dir).await;
    let events = assert_clean(&out, "run with pause_ratio = 2");
    assert_all_done_once(&db.pool, rows).await;
    let batches = of_kind(&events, "batch");
    assert!(batches.len() >= 20, "{}", out.stdout);
    let (mut slept, mut worked) = (0, 0);
    for batch in &batches {
        let (elapsed, pause) = (n(batch, "elapsed_ms"), n(batch, "pause_ms"));
        // Both are whole milliseconds cut from the same durations: 2 × 10.7 ms is 21 ms.
        assert!(
            (2 * elapsed..=2 * elapsed + 1).contains(&pause),
            "a batch of {elapsed} ms followed by {pause} ms: {batch}"
        );
        slept += pause;
        worked += elapsed;
    }
    let finished = of_kind(&events, "finished")[0];
    let wall = n(finished, "elapsed_ms");
    println!(
        "pause_ratio = 2: batches took {worked} ms, the sleeps after them {slept} ms, the run {wall} ms"
    );
    // The sleeps are real: one worker sleeps them one after another.
    assert!(
        wall >= slept,
        "a run of {wall} ms cannot have slept {slept} ms"
    );
}

/// The server's WAL insert position, in bytes.
async fn wal_position(pool: &PgPool) -> i64 {
    number(
        pool,
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn max_wal_rate_keeps_the_runs_wal_under_its_budget() {
    // A cluster of the test's own: the WAL position is the whole server's.
    let (cluster, pool) = own_cluster().await;
    let url = cluster.url("postgres");
    let rows = 40_000;
    let budget: f64 = 1.5 * 1024.0 * 1024.0;
    let (dir, job) = items_with_job(&pool, rows, "max = 2000", "max_wal_rate = \"1.5MiB/s\"").await;
    let before = wal_position(&pool).await;
    let out = run_json(&url, &job, &dir).await;
    let written = wal_position(&pool).await - before;
    let events = assert_clean(&out, "run with max_wal_rate");
    assert_all_done_once(&pool, rows).await;
    let batches = of_kind(&events, "batch");
    let charged: u64 = batches.iter().map(|b| n(b, "wal_bytes")).sum();
    let working_ms: u64 = batches.iter().map(|b| n(b, "elapsed_ms")).sum();
    let wall_ms = n(of_kind(&events, "finished")[0], "elapsed_ms");
    let mib = |bytes: f64, ms: u64| bytes / 1024.0 / 1024.0 / (ms.max(1) as f64 / 1000.0);
    let rate = written as f64 / (wall_ms as f64 / 1000.0);
    println!(
        "max_wal_rate 1.5 MiB/s: the server wrote {:.1} MiB in {wall_ms} ms: {:.2} MiB/s, {:.0}% of \
         the budget; the batches were charged {:.1} MiB and write {:.2} MiB/s while they run",
        written as f64 / 1024.0 / 1024.0,
        rate / 1024.0 / 1024.0,
        100.0 * rate / budget,
        charged as f64 / 1024.0 / 1024.0,
        mib(charged as f64, working_ms)
    );
    assert!(
        charged > 0 && charged <= u64::try_from(written).unwrap(),
        "charged {charged} of {written} bytes"
    );
    assert!(
        batches.iter().any(|b| n(b, "pause_ms") > 0),
        "no batch waited for the budget:\n{}",
        out.stdout
    );
    assert!(
        rate <= 1.3 * budget,
        "the run wrote {:.2} MiB/s against a budget of 1.5 MiB/s",
        rate / 1024.0 / 1024.0
    );
    // A pace, not a stall: batches that write faster than the budget use most of it.
    let natural = charged as f64 / (working_ms.max(1) as f64 / 1000.0);
    if natural > 2.0 * budget {
        assert!(
            rate >= 0.5 * budget,
            "the run wrote {:.2} MiB/s, far under its budget of 1.5 MiB/s",
            rate / 1024.0 / 1024.0
        );
    }
}
