//! Several processes on one job, on real PostgreSQL (issue 10): a process joins a running job
//! and shares its work, one killed with SIGKILL loses nothing, twenty kill -9s of a job with
//! three workers apply every row exactly once, a frozen process (SIGSTOP past its lease)
//! loses its ranges to the other and writes nothing when it thaws, the operator's pause and
//! cancel reach every process, and an `ALTER TABLE` behind three slow workers goes ahead at
//! once.
//!
//! What a user checks: every row's value and its update counter (a trigger counts every
//! `UPDATE`, so a row applied twice or applied and not counted shows), `rows_done` against the
//! rows changed, the ranges table, exit codes and the NDJSON events of each process.

mod common;

use std::time::{Duration, Instant};

use common::kills::kill_9_at_random_moments;
use common::watched::{assert_clean, of_kind};
use common::yielding::{goes_ahead_of_slow_batches, slow_items_job};
use common::{Runner, assert_all_done_once, events, fresh_database, number, run_backfill};
use serde_json::Value;
use sqlx::PgPool;

/// Batches of 100–200 keys: with a slow expression, short enough to act between.
const BATCH: &str = "size = 200\nmin = 100\nmax = 200";

/// SQL: true while the process `runner` holds at least one range.
fn holds_a_range(runner: &Runner) -> String {
    format!(
        "EXISTS (SELECT 1 FROM backfill.ranges WHERE owner LIKE '%:{}:%')",
        runner.pid()
    )
}

/// The `claimed` events that split a range off another.
fn stolen(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "claimed")
        .into_iter()
        .filter(|e| !e["split_from"].is_null())
        .collect()
}

/// A second process joins a running job, takes work by splitting the first one's range, then
/// the first is killed with SIGKILL: the second takes its range over at once and finishes,
/// every row updated exactly once and counted once. A plain second `run` is refused meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_joined_process_shares_the_job_and_finishes_what_a_killed_one_left() {
    const ROWS: i64 = 30_000;
    let db = fresh_database().await;
    let (dir, job) = slow_items_job(&db.pool, ROWS, "0.0003", BATCH, "").await;
    let mut first = Runner::spawn(
        &db.url,
        &dir,
        "first",
        &["run", "--json", "--workers", "1", &job],
    );
    first
        .wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let refused = run_backfill(&db.url, &["run", &job]);
    refused.expect_code(1, "a plain second run");
    assert!(refused.stderr.contains("run --join"), "{}", refused.stderr);

    let mut second = Runner::spawn(
        &db.url,
        &dir,
        "second",
        &["run", "--json", "--join", "--workers", "2", &job],
    );
    second.wait_until(&db.pool, &holds_a_range(&second)).await;
    first.wait_until(&db.pool, &holds_a_range(&first)).await;
    first.child.start_kill().expect("SIGKILL the first process");
    first.child.wait().await.expect("reap the first process");
    let done_at_kill = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;

    let out = second.finish().await;
    let events = assert_clean(&out, "the joined process");
    println!(
        "rows done when the first was killed: {done_at_kill}; the second's claims: {:?}",
        of_kind(&events, "claimed")
    );
    assert_eq!(of_kind(&events, "started")[0]["joined"], true);
    assert!(!stolen(&events).is_empty(), "the joiner split no range");
    assert!(
        done_at_kill < ROWS,
        "the first process finished before the kill"
    );
    assert_all_done_once(&db.pool, ROWS).await;
    let status: String = sqlx::query_scalar("SELECT status FROM backfill.jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "done");
}

/// Twenty SIGKILLs of a run with three workers at random moments, each followed by a check
/// that `rows_done` equals the rows changed, then a last run: every row updated exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_kill_9s_of_three_workers_update_every_row_exactly_once() {
    const ROWS: i64 = 150_000;
    let db = fresh_database().await;
    // `where = "true"`: the filter does not hide a row changed twice. Batches 100 ms apart, so
    // that three workers do not finish the table before the twentieth kill.
    common::create_items(&db.pool, ROWS).await;
    common::count_updates(&db.pool).await;
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        &dir,
        "items_total",
        &common::items_job(
            "true",
            "size = 1000\nmin = 1000\nmax = 1000\npause = \"100ms\"\nworkers = 3",
        ),
    );
    let job = common::path_str(&job);
    kill_9_at_random_moments(&db.url, &db.pool, &dir, &["run", job], 20).await;
    run_backfill(&db.url, &["run", job]).expect_code(0, "the run after 20 kills");
    assert_all_done_once(&db.pool, ROWS).await;
}

/// A process frozen with SIGSTOP for longer than its lease: the server ends its open batch
/// transactions (their row locks go with them), the other process takes its ranges over, and
/// when it thaws it finds them gone, says so, and writes nothing there — every row updated
/// exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_process_loses_its_ranges_and_writes_nothing_when_it_thaws() {
    const ROWS: i64 = 20_000;
    let db = fresh_database().await;
    let (dir, job) = slow_items_job(&db.pool, ROWS, "0.0005", BATCH, "").await;
    let lease = ["--lease-timeout", "3s"];
    let mut frozen = Runner::spawn(
        &db.url,
        &dir,
        "frozen",
        &["run", "--json", "--workers", "2", lease[0], lease[1], &job],
    );
    frozen
        .wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let mut other = Runner::spawn(
        &db.url,
        &dir,
        "other",
        &[
            "run",
            "--json",
            "--join",
            "--workers",
            "1",
            lease[0],
            lease[1],
            &job,
        ],
    );
    other.wait_until(&db.pool, &holds_a_range(&other)).await;
    frozen.wait_until(&db.pool, &holds_a_range(&frozen)).await;

    frozen.signal("STOP");
    let stopped = Instant::now();
    // The frozen process's batch transactions are ended by the server, not left holding rows.
    other
        .wait_until(
            &db.pool,
            "NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'backfill:items_total' \
             AND datname = current_database() AND state LIKE 'idle in transaction%')",
        )
        .await;
    other
        .wait_until(&db.pool, &format!("NOT {}", holds_a_range(&frozen)))
        .await;
    let taken_after = stopped.elapsed();
    let done_frozen = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    frozen.signal("CONT");

    let out = other.finish().await;
    out.expect_code(0, "the other process");
    let thawed = frozen.finish().await;
    thawed.expect_code(0, "the thawed process");
    let thawed_events = events(&thawed.stdout);
    let lost = of_kind(&thawed_events, "lost");
    println!(
        "ranges taken over {taken_after:?} after SIGSTOP (rows done then {done_frozen}); the thawed process says: {lost:?}"
    );
    assert!(
        taken_after >= Duration::from_secs(3),
        "taken over before the lease ran out"
    );
    assert!(
        !lost.is_empty(),
        "the thawed process did not notice its ranges were gone"
    );
    assert_all_done_once(&db.pool, ROWS).await;
}

/// The operator's `pause` holds both processes of a job (their rows stand still), `resume`
/// lets them go on, and `cancel` stops both: each exits 1 and the job is `cancelled`.
#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_and_cancel_reach_every_process() {
    let db = fresh_database().await;
    let (dir, job) = slow_items_job(&db.pool, 20_000, "0.0005", BATCH, "").await;
    let mut first = Runner::spawn(
        &db.url,
        &dir,
        "first",
        &["run", "--json", "--workers", "2", &job],
    );
    first
        .wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let mut second = Runner::spawn(&db.url, &dir, "second", &["run", "--json", "--join", &job]);
    second.wait_until(&db.pool, &holds_a_range(&second)).await;

    run_backfill(&db.url, &["pause", "items_total"]).expect_code(0, "pause");
    let paused = |r: &Runner| {
        format!(
            "EXISTS (SELECT 1 FROM backfill.ranges WHERE owner LIKE '%:{}:%' AND note = 'paused: by operator')",
            r.pid()
        )
    };
    first.wait_until(&db.pool, &paused(&first)).await;
    second.wait_until(&db.pool, &paused(&second)).await;
    let still = rows_done_after_two_beats(&db.pool).await;
    assert_eq!(still.0, still.1, "rows moved while paused");

    run_backfill(&db.url, &["resume", "items_total"]).expect_code(0, "resume");
    first
        .wait_until(
            &db.pool,
            &format!("(SELECT rows_done > {} FROM backfill.jobs)", still.1),
        )
        .await;
    run_backfill(&db.url, &["cancel", "items_total"]).expect_code(0, "cancel");
    for (what, runner) in [("first", first), ("second", second)] {
        let out = runner.finish().await;
        out.expect_code(1, what);
        let events = events(&out.stdout);
        assert!(
            of_kind(&events, "paused")
                .iter()
                .any(|e| e["reason"] == "by operator"),
            "{what} never paused:\n{}",
            out.stdout
        );
    }
    let status: String = sqlx::query_scalar("SELECT status FROM backfill.jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
}

/// `rows_done` now, and after two more heartbeats of the job's lease.
async fn rows_done_after_two_beats(pool: &PgPool) -> (i64, i64) {
    let before = number(pool, "SELECT rows_done FROM backfill.jobs").await;
    let beat: String = sqlx::query_scalar("SELECT heartbeat_at::text FROM backfill.jobs")
        .fetch_one(pool)
        .await
        .unwrap();
    common::wait_for(
        pool,
        &format!(
            "(SELECT heartbeat_at FROM backfill.jobs) > '{beat}'::timestamptz + interval '1 second'"
        ),
    )
    .await;
    (
        before,
        number(pool, "SELECT rows_done FROM backfill.jobs").await,
    )
}

/// Three workers each inside a 10 s batch, and an `ALTER TABLE` from another session: the
/// monitor cancels every batch in its way, so it goes ahead before any of them commits, and
/// the run then finishes with every row filled once.
#[tokio::test(flavor = "multi_thread")]
async fn an_alter_table_behind_three_slow_workers_goes_ahead_at_once() {
    let events =
        goes_ahead_of_slow_batches("ALTER TABLE items ADD COLUMN note text", None, 3).await;
    let yielded: std::collections::BTreeSet<u64> = of_kind(&events, "yielded")
        .iter()
        .map(|e| e["worker"].as_u64().unwrap())
        .collect();
    assert_eq!(
        yielded.len(),
        3,
        "every worker's batch yielded: {yielded:?}"
    );
}
