//! `backfill run` end to end against real PostgreSQL: the keys it must walk (bigint, composite
//! text, uuid, quoted names, sparse, empty), the load it must live with (concurrent inserts,
//! a second runner) and the ways it must stop and resume (kill -9, Ctrl-C, a changed job file).
//!
//! Every test has a database of its own and checks what a user would: the rows' values, the
//! exit code, the message, and `rows_done` in `backfill.jobs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Runner, count_updates, create_items, fresh_database, items_job, number, run_backfill,
    write_job, wrong_items,
};
use sqlx::PgPool;
use tempfile::TempDir;

/// A job's row in `backfill.jobs`, as `backfill status` would show it.
#[derive(Debug)]
struct JobState {
    status: String,
    rows_done: i64,
    batches_done: i64,
}

async fn job_state(pool: &PgPool, name: &str) -> JobState {
    let (status, rows_done, batches_done): (String, i64, i64) =
        sqlx::query_as("SELECT status, rows_done, batches_done FROM backfill.jobs WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|error| panic!("read job {name} from backfill.jobs: {error}"));
    JobState {
        status,
        rows_done,
        batches_done,
    }
}

// ---------------------------------------------------------------------------------------------
// Keys of every shape
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bigint_key_fills_every_row_in_small_batches() {
    let db = fresh_database().await;
    create_items(&db.pool, 20_000).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "items_total",
        &items_job(
            "total IS NULL",
            "size = 500\nmin = 100\nmax = 1000\npause = \"0ms\"",
        ),
    );
    let job = job.to_str().unwrap();

    run_backfill(&db.url, &["run", job]).expect_code(0, "run");

    assert_eq!(wrong_items(&db.pool).await, 0);
    let state = job_state(&db.pool, "items_total").await;
    assert_eq!(state.status, "done");
    assert_eq!(state.rows_done, 20_000);
    assert!(
        state.batches_done >= 20,
        "20000 rows in batches of at most 1000: {state:?}"
    );
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify");
}

#[tokio::test]
async fn composite_text_key_walks_tenants_in_collation_order() {
    let db = fresh_database().await;
    // The explicit key is not the primary key: a surrogate id is, and (tenant, id) is unique.
    // The scratch cluster is initdb'd with --locale=C, so the tenant column takes an ICU
    // collation of its own, in which text order is not byte order ('a' < 'A' < 'ä' < 'b' < 'Z').
    sqlx::raw_sql(
        "CREATE TABLE orders (row_id bigserial PRIMARY KEY, tenant text COLLATE \"und-x-icu\" NOT NULL, id int NOT NULL, \
             qty int NOT NULL, price int NOT NULL, total bigint, UNIQUE (tenant, id));
         INSERT INTO orders (tenant, id, qty, price)
         SELECT t, i, i % 5 + 1, length(t) + 2
           FROM unnest(ARRAY['b', 'a', 'Z', 'ä', 'A', 'a b', 'it''s', '', 'zz', '10', '9']) AS t,
                generate_series(1, 700) AS i
          ORDER BY random();",
    )
    .execute(&db.pool)
    .await
    .expect("create orders");
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "orders_total",
        "table = \"orders\"\nkey = [\"tenant\", \"id\"]\nwhere = \"total IS NULL\"\n\n\
         [set]\ntotal = \"qty * price\"\n\n[batch]\nsize = 300\nmin = 100\nmax = 300\n",
    );
    let job = job.to_str().unwrap();

    run_backfill(&db.url, &["run", job]).expect_code(0, "run");

    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM orders WHERE total IS DISTINCT FROM qty::bigint * price"
        )
        .await,
        0
    );
    let state = job_state(&db.pool, "orders_total").await;
    assert_eq!(state.status, "done");
    assert_eq!(state.rows_done, 11 * 700);
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify");
}

#[tokio::test]
async fn uuid_key_fills_every_row() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), \
             started bigint NOT NULL, started_at timestamptz);
         INSERT INTO sessions (started) SELECT i * 1000 FROM generate_series(1, 6000) AS i;",
    )
    .execute(&db.pool)
    .await
    .expect("create sessions");
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "sessions_started_at",
        "table = \"sessions\"\nwhere = \"started_at IS NULL\"\n\n\
         [set]\nstarted_at = \"to_timestamp(started)\"\n\n[batch]\nsize = 400\nmin = 100\nmax = 800\n",
    );

    run_backfill(&db.url, &["run", job.to_str().unwrap()]).expect_code(0, "run");

    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM sessions WHERE started_at IS DISTINCT FROM to_timestamp(started)"
        )
        .await,
        0
    );
    let state = job_state(&db.pool, "sessions_started_at").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 6000));
}

#[tokio::test]
async fn quoted_schema_table_and_columns() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        r#"CREATE SCHEMA "Sales Data";
           CREATE TABLE "Sales Data"."Order ""Lines""" (
               "Line ID" bigint PRIMARY KEY, qty int NOT NULL, price_cents int NOT NULL,
               "Total Cents" bigint);
           INSERT INTO "Sales Data"."Order ""Lines""" ("Line ID", qty, price_cents)
           SELECT i, i % 9 + 1, i % 101 FROM generate_series(1, 3000) AS i;"#,
    )
    .execute(&db.pool)
    .await
    .expect("create the oddly named table");
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "order_lines_total",
        r#"table = '"Sales Data"."Order ""Lines"""'
key = ["Line ID"]
where = '"Total Cents" IS NULL'

[set]
"Total Cents" = "qty * price_cents"

[batch]
size = 250
min = 100
max = 500
"#,
    );
    let job = job.to_str().unwrap();

    run_backfill(&db.url, &["run", job]).expect_code(0, "run");

    assert_eq!(
        number(
            &db.pool,
            r#"SELECT count(*) FROM "Sales Data"."Order ""Lines"""
                WHERE "Total Cents" IS DISTINCT FROM qty::bigint * price_cents"#
        )
        .await,
        0
    );
    let state = job_state(&db.pool, "order_lines_total").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 3000));
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify");
}

#[tokio::test]
async fn sparse_keys_take_few_batches() {
    let db = fresh_database().await;
    create_items(&db.pool, 0).await;
    // 1, 1000000, 2000000, … 999000000, and a few hundred keys at random in the gaps.
    sqlx::raw_sql(
        "INSERT INTO items (id, qty, price) VALUES (1, 3, 4);
         INSERT INTO items (id, qty, price)
         SELECT i * 1000000, i % 7 + 1, i % 13 + 1 FROM generate_series(1, 999) AS i;
         INSERT INTO items (id, qty, price)
         SELECT DISTINCT (random() * 4e9)::bigint * 7 + 3, 2, 5 FROM generate_series(1, 300)
         ON CONFLICT DO NOTHING;",
    )
    .execute(&db.pool)
    .await
    .expect("fill sparse items");
    let rows = number(&db.pool, "SELECT count(*) FROM items").await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "sparse",
        &items_job("total IS NULL", "size = 500\nmin = 500\nmax = 500"),
    );

    run_backfill(&db.url, &["run", job.to_str().unwrap()]).expect_code(0, "run");

    assert_eq!(wrong_items(&db.pool).await, 0);
    let state = job_state(&db.pool, "sparse").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", rows));
    // Batches follow rows, not the width of the key range (28 billion).
    let most = (rows + 499) / 500 + 1;
    assert!(
        state.batches_done <= most,
        "{rows} rows in batches of 500 took {} batches (at most {most} expected)",
        state.batches_done
    );
}

#[tokio::test]
async fn empty_table_is_done_at_once() {
    let db = fresh_database().await;
    create_items(&db.pool, 0).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "empty",
        &items_job("total IS NULL", "size = 500\nmin = 100"),
    );
    let job = job.to_str().unwrap();

    run_backfill(&db.url, &["run", job]).expect_code(0, "run");

    let state = job_state(&db.pool, "empty").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 0));
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify");
}

// ---------------------------------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------------------------------

/// Inserts rows into `items` past every existing key until told to stop, as an application
/// would during the backfill: every other row dual-written (`total` already set), the others
/// left NULL. Returns how many NULL rows it inserted.
fn insert_while_running(pool: PgPool, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut nulls = 0;
        while !stop.load(Ordering::Relaxed) {
            sqlx::raw_sql(
                "INSERT INTO items (id, qty, price, total)
                 SELECT max(id) + 1, 3, 7, 21 FROM items;
                 INSERT INTO items (id, qty, price)
                 SELECT max(id) + 1, 5, 11 FROM items;",
            )
            .execute(&pool)
            .await
            .expect("insert during the run");
            nulls += 1;
            // Pacing for the load generator, not a timing assertion.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        nulls
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_past_the_range_end_are_left_to_the_dual_write() {
    let db = fresh_database().await;
    create_items(&db.pool, 10_000).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "under_load",
        &items_job(
            "total IS NULL",
            "size = 200\nmin = 100\nmax = 200\npause = \"20ms\"",
        ),
    );
    let job = job.to_str().unwrap();

    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", job]);
    // Once a batch has committed, the range end is captured: every insert from now on is past it.
    runner
        .wait_until(
            &db.pool,
            "SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'under_load'",
        )
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let inserter = insert_while_running(db.pool.clone(), stop.clone());
    // Let the inserts overlap the run for a while: wait for more batches, not for time.
    runner
        .wait_until(
            &db.pool,
            "SELECT (SELECT rows_done FROM backfill.jobs WHERE name = 'under_load') >= 2000
                AND (SELECT count(*) FROM items WHERE id > 10000) >= 10",
        )
        .await;
    let out = runner.finish().await;
    stop.store(true, Ordering::Relaxed);
    let null_rows_inserted = inserter.await.expect("the inserter");
    out.expect_code(0, "run under insert load");

    // Every row that existed at the start is filled; so is every dual-written row.
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM items WHERE id <= 10000 AND total IS DISTINCT FROM qty::bigint * price"
        )
        .await,
        0
    );
    let state = job_state(&db.pool, "under_load").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 10_000));
    let range_end: String =
        sqlx::query_scalar("SELECT range_end::text FROM backfill.jobs WHERE name = 'under_load'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        range_end.contains("10000"),
        "range end captured at start: {range_end}"
    );

    // The rows inserted NULL past the range end are what verify reports.
    let pending = number(&db.pool, "SELECT count(*) FROM items WHERE total IS NULL").await;
    assert!(null_rows_inserted > 0);
    assert_eq!(pending, i64::try_from(null_rows_inserted).unwrap());
    let verify = run_backfill(&db.url, &["verify", job]);
    verify.expect_code(3, "verify with rows past the range end");
    assert!(
        verify.stdout.contains(&format!("{pending} rows")),
        "verify should report {pending} pending rows:\n{}",
        verify.stdout
    );

    sqlx::raw_sql("UPDATE items SET total = qty * price WHERE total IS NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify after the manual fill");
}

#[tokio::test]
async fn a_second_runner_of_a_running_job_is_refused() {
    let db = fresh_database().await;
    create_items(&db.pool, 5_000).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "leased",
        &items_job(
            "total IS NULL",
            "size = 100\nmin = 100\nmax = 100\npause = \"50ms\"",
        ),
    );
    let job = job.to_str().unwrap();

    let mut first = Runner::spawn(&db.url, &dir, "first", &["run", job]);
    first
        .wait_until(
            &db.pool,
            "SELECT status = 'running' AND rows_done > 0 FROM backfill.jobs WHERE name = 'leased'",
        )
        .await;

    let second = run_backfill(&db.url, &["run", job]);
    second.expect_code(1, "second runner");
    assert!(
        second.stderr.contains("is being run by"),
        "stderr of the second runner:\n{}",
        second.stderr
    );
    assert_eq!(
        job_state(&db.pool, "leased").await.status,
        "running",
        "the first runner is still at work"
    );

    first.finish().await.expect_code(0, "first runner");
    assert_eq!(wrong_items(&db.pool).await, 0);
    let state = job_state(&db.pool, "leased").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 5_000));
}

// ---------------------------------------------------------------------------------------------
// Stopping and resuming
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_updates_every_row_exactly_once() {
    let db = fresh_database().await;
    create_items(&db.pool, 200_000).await;
    count_updates(&db.pool).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "killed",
        &items_job(
            "total IS NULL",
            "size = 1000\nmin = 1000\nmax = 1000\npause = \"5ms\"",
        ),
    );
    let job = job.to_str().unwrap();

    let mut runner = Runner::spawn(&db.url, &dir, "killed", &["run", job]);
    runner
        .wait_until(
            &db.pool,
            "SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'killed'",
        )
        .await;
    // SIGKILL, and reap it, as a crashed host process would be gone.
    runner.child.kill().await.expect("kill -9 the runner");

    let changed = number(&db.pool, "SELECT count(*) FROM items WHERE updates > 0").await;
    assert!(
        changed > 0 && changed < 200_000,
        "killed mid-way, {changed} rows changed"
    );
    assert_eq!(
        number(&db.pool, "SELECT count(*) FROM items WHERE total IS NULL").await,
        200_000 - changed
    );
    assert_eq!(
        job_state(&db.pool, "killed").await.rows_done,
        changed,
        "the checkpoint commits with its batch"
    );

    run_backfill(&db.url, &["run", job]).expect_code(0, "run after kill -9");

    assert_eq!(wrong_items(&db.pool).await, 0);
    let state = job_state(&db.pool, "killed").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 200_000));
    assert_eq!(
        number(&db.pool, "SELECT max(updates)::bigint FROM items").await,
        1,
        "no row is updated twice"
    );
    assert_eq!(
        number(&db.pool, "SELECT min(updates)::bigint FROM items").await,
        1
    );
}

#[tokio::test]
async fn ctrl_c_checkpoints_and_exits_130() {
    let db = fresh_database().await;
    create_items(&db.pool, 50_000).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "interrupted",
        &items_job(
            "total IS NULL",
            "size = 500\nmin = 500\nmax = 500\npause = \"10ms\"",
        ),
    );
    let job = job.to_str().unwrap();

    let mut runner = Runner::spawn(&db.url, &dir, "interrupted", &["run", job]);
    runner
        .wait_until(
            &db.pool,
            "SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'interrupted'",
        )
        .await;
    runner.signal("INT");
    let out = runner.finish().await;
    out.expect_code(130, "run stopped by Ctrl-C");
    assert!(
        out.stderr.contains("checkpoint saved"),
        "stderr:\n{}",
        out.stderr
    );

    let state = job_state(&db.pool, "interrupted").await;
    assert_eq!(state.status, "stopped");
    let changed = number(
        &db.pool,
        "SELECT count(*) FROM items WHERE total IS NOT NULL",
    )
    .await;
    assert!(changed > 0 && changed < 50_000, "{changed} rows changed");
    assert_eq!(state.rows_done, changed);

    run_backfill(&db.url, &["run", job]).expect_code(0, "resume");
    assert_eq!(wrong_items(&db.pool).await, 0);
    let state = job_state(&db.pool, "interrupted").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 50_000));
    run_backfill(&db.url, &["verify", job]).expect_code(0, "verify");
}

#[tokio::test]
async fn changed_job_file_refuses_to_resume_until_restart() {
    let db = fresh_database().await;
    create_items(&db.pool, 2_000).await;
    let dir = TempDir::new().unwrap();
    let job_text = |expression: &str| {
        format!(
            "table = \"items\"\nwhere = \"total IS DISTINCT FROM {expression}\"\n\n\
             [set]\ntotal = \"{expression}\"\n\n[batch]\nsize = 500\nmin = 100\n"
        )
    };
    let job = write_job(&dir, "repriced", &job_text("qty * price"));
    let job = job.to_str().unwrap();
    run_backfill(&db.url, &["run", job]).expect_code(0, "first run");
    assert_eq!(wrong_items(&db.pool).await, 0);

    write_job(&dir, "repriced", &job_text("qty * price + 1"));
    let refused = run_backfill(&db.url, &["run", job]);
    refused.expect_code(2, "run with a changed job file");
    assert!(
        refused.stderr.contains("reset") && refused.stderr.contains("--restart"),
        "stderr should point at `backfill reset` and `--restart`:\n{}",
        refused.stderr
    );
    assert_eq!(wrong_items(&db.pool).await, 0, "nothing touched");
    assert_eq!(job_state(&db.pool, "repriced").await.status, "done");

    run_backfill(&db.url, &["run", "--restart", job]).expect_code(0, "run --restart");
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM items WHERE total IS DISTINCT FROM qty::bigint * price + 1"
        )
        .await,
        0
    );
    let state = job_state(&db.pool, "repriced").await;
    assert_eq!((state.status.as_str(), state.rows_done), ("done", 2_000));
}

// ---------------------------------------------------------------------------------------------
// Output for machines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn json_events_account_for_every_changed_row() {
    let db = fresh_database().await;
    create_items(&db.pool, 5_000).await;
    // A third of the rows are already filled: the batches' key spans cover them, their row
    // counts must not.
    sqlx::raw_sql("UPDATE items SET total = qty * price WHERE id % 3 = 0")
        .execute(&db.pool)
        .await
        .unwrap();
    let to_change = number(&db.pool, "SELECT count(*) FROM items WHERE total IS NULL").await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "json",
        &items_job("total IS NULL", "size = 300\nmin = 100\nmax = 300"),
    );

    let out = run_backfill(&db.url, &["run", "--json", job.to_str().unwrap()]);
    out.expect_code(0, "run --json");

    let events = common::events(&out.stdout);
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap_or_default().to_owned();
    assert_eq!(events.first().map(kind).as_deref(), Some("started"));
    assert_eq!(events.last().map(kind).as_deref(), Some("finished"));
    let batch_rows: i64 = events
        .iter()
        .filter(|e| kind(e) == "batch")
        .map(|e| e["rows"].as_i64().expect("batch rows"))
        .sum();
    assert_eq!(batch_rows, to_change);
    assert_eq!(
        events.last().unwrap()["rows_done"].as_i64(),
        Some(to_change)
    );
    assert_eq!(wrong_items(&db.pool).await, 0);
    assert_eq!(job_state(&db.pool, "json").await.rows_done, to_change);
}
