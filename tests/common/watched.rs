//! A run of a job over `items` watched by the monitor, and what a user checks of it: its
//! NDJSON events (kinds, reasons, batch sizes), its `status` note, and every row filled once.
//! Shared by the test files of the monitor's signals.

use serde_json::Value;
use sqlx::PgPool;
use tempfile::TempDir;

use super::{Finished, Runner, count_updates, create_items, events, number, path_str, write_job};

/// Puts the brake on: a table `brake` with one row, and the `[throttle]` lines that throttle a
/// run while it has one (`throttle_query`, a `max_pause` of `max_pause`, a short cooldown).
/// [`release_brake`] lets the run go.
pub async fn brake(pool: &PgPool, max_pause: &str) -> String {
    sqlx::raw_sql("CREATE TABLE brake (on_hold int); INSERT INTO brake VALUES (1);")
        .execute(pool)
        .await
        .expect("create the brake");
    format!(
        "throttle_query = \"SELECT count(*) FROM brake\"\nmax_pause = \"{max_pause}\"\n\
         cooldown = \"300ms\""
    )
}

/// Takes the [`brake`] off.
pub async fn release_brake(pool: &PgPool) {
    sqlx::raw_sql("DELETE FROM brake")
        .execute(pool)
        .await
        .expect("release the brake");
}

/// `items` with `total` to fill, a job over it with `batch` and `throttle` sections, and a
/// directory for the job and the runner's output.
pub async fn items_with_job(
    pool: &PgPool,
    rows: i64,
    batch: &str,
    throttle: &str,
) -> (TempDir, String) {
    items_with_job_text(
        pool,
        rows,
        "qty * price",
        &format!("[batch]\n{batch}\n[throttle]\n{throttle}\n"),
    )
    .await
}

/// `items` with `total` to fill, a job that sets it to `total` (an expression that must equal
/// `qty * price`) with `tables` (`[batch]`, `[timeouts]`, `[throttle]`) after it, and a directory
/// for the job and the runner's output.
pub async fn items_with_job_text(
    pool: &PgPool,
    rows: i64,
    total: &str,
    tables: &str,
) -> (TempDir, String) {
    create_items(pool, rows).await;
    count_updates(pool).await;
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &dir,
        "items_total",
        &format!(
            "table = \"items\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"{total}\"\n{tables}"
        ),
    );
    (dir, path_str(&job).to_owned())
}

/// The events of kind `kind`, in order.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The `event` field of each event, in order.
pub fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["event"].as_str()).collect()
}

/// The `batch_size` of each `batch` event.
pub fn batch_sizes(events: &[Value]) -> Vec<u64> {
    of_kind(events, "batch")
        .iter()
        .map(|e| e["batch_size"].as_u64().unwrap())
        .collect()
}

/// The `reason` of each event of kind `kind`, in order.
pub fn reasons(events: &[Value], kind: &str) -> Vec<String> {
    of_kind(events, kind)
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The run finished cleanly: exit 0, no retry and no error on the way.
pub fn assert_clean(out: &Finished, what: &str) -> Vec<Value> {
    out.expect_code(0, what);
    let events = events(&out.stdout);
    assert!(
        of_kind(&events, "retry").is_empty(),
        "{what}: retries:\n{}",
        out.stdout
    );
    assert!(
        of_kind(&events, "error").is_empty(),
        "{what}: errors:\n{}",
        out.stdout
    );
    events
}

/// The start of a SQL condition that holds while the job's `status` note says `paused: …`;
/// finish it with the rest of a `LIKE` pattern and `')`.
pub const NOTE_PAUSED: &str = "EXISTS (SELECT 1 FROM backfill.jobs WHERE note LIKE 'paused: %";

/// `rows_done` of the job now, and again once two more heartbeats have come in: a run that is
/// held back (paused) does not move in between, a running one would. Fails if the run exits.
pub async fn rows_done_across_heartbeats(runner: &mut Runner, pool: &PgPool) -> (i64, i64) {
    let (beat, before): (String, i64) =
        sqlx::query_as("SELECT heartbeat_at::text, rows_done FROM backfill.jobs")
            .fetch_one(pool)
            .await
            .expect("read the job's row");
    runner
        .wait_until(
            pool,
            &format!(
                "(SELECT heartbeat_at FROM backfill.jobs) > '{beat}'::timestamptz + \
                 interval '1 second'"
            ),
        )
        .await;
    let after = number(pool, "SELECT rows_done FROM backfill.jobs").await;
    (before, after)
}
