//! Several workers in one process on real PostgreSQL (issue 10): every key type split into
//! ranges and filled exactly once, skewed work shared by every worker, a throttle that lets
//! one worker run at a time, a partitioned table walked leaf by leaf, a job started by the version without ranges resumed, and a worker count
//! the server has no room for refused before anything is written.
//!
//! What a user checks: every row's value and its update counter (a trigger counts every
//! `UPDATE` of a row, so a row applied twice shows), `rows_done`, the ranges in the state
//! table, the NDJSON events (which worker committed what, which range was split off which),
//! exit codes and messages.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::watched::{assert_clean, brake, items_with_job_text, of_kind, release_brake};
use common::yielding::slow_items_job;
use common::{
    Finished, Runner, TestDb, assert_all_done_once, count_updates, create_items, events,
    fresh_database, number, path_str, run_backfill, schema_exists, write_job,
};
use serde_json::Value;
use sqlx::PgPool;
use tempfile::TempDir;

/// A table `t` with the key `key` (a column list with types and a primary key), `n` int,
/// `total` to fill with `n * 2`, and the update counter of [`count_updates`] — made with the
/// rows `fill` selects as `(key columns…, n)`.
async fn keyed_table(pool: &PgPool, key: &str, key_columns: &str, fill: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE t ({key}, n int NOT NULL, total int, updates int NOT NULL DEFAULT 0);
         INSERT INTO t ({key_columns}, n) {fill};
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER count_update BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION count_update();"
    )))
    .execute(pool)
    .await
    .expect("create t");
}

/// `run --json ARGS JOB` to its end, exit 0 with no retry or error event.
fn run_clean(db: &TestDb, job: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["run", "--json"];
    all.extend_from_slice(args);
    all.push(job);
    let out = run_backfill(&db.url, &all);
    out.expect_code(0, "run");
    let events = events(&out.stdout);
    for kind in ["retry", "error"] {
        assert!(
            of_kind(&events, kind).is_empty(),
            "{kind} events:\n{}",
            out.stdout
        );
    }
    events
}

/// The workers that committed batches that changed rows.
fn busy_workers(events: &[Value]) -> BTreeSet<u64> {
    of_kind(events, "batch")
        .iter()
        .filter(|e| e["rows"].as_u64() > Some(0))
        .map(|e| e["worker"].as_u64().unwrap())
        .collect()
}

/// Every key type the walk supports, split among four workers: every row filled exactly once
/// and counted once, the work spread over several workers and ranges.
#[tokio::test(flavor = "multi_thread")]
async fn four_workers_fill_every_key_type_exactly_once() {
    const ROWS: i64 = 12_000;
    let cases = [
        (
            "id bigint PRIMARY KEY",
            "id",
            "SELECT i, i FROM generate_series(1, 12000) i",
        ),
        (
            "tenant text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant, id)",
            "tenant, id",
            "SELECT chr(65 + i % 26) || (i % 7), i, i FROM generate_series(1, 12000) i",
        ),
        (
            "id uuid PRIMARY KEY",
            "id",
            "SELECT md5(i::text)::uuid, i FROM generate_series(1, 12000) i",
        ),
        (
            "at timestamptz NOT NULL, seq bigint NOT NULL, PRIMARY KEY (at, seq)",
            "at, seq",
            "SELECT timestamptz '2024-01-01 00:00+00' + (i % 3000) * interval '1 minute', i, i \
             FROM generate_series(1, 12000) i",
        ),
    ];
    for (key, columns, fill) in cases {
        let db = fresh_database().await;
        keyed_table(&db.pool, key, columns, fill).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "t_total",
            "table = \"t\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"n * 2\"\n\
             [batch]\nsize = 300\nmin = 100\nmax = 300\n",
        );
        let events = run_clean(&db, path_str(&job), &["--workers", "4"]);
        let wrong = number(
            &db.pool,
            "SELECT count(*) FROM t WHERE total IS DISTINCT FROM n * 2",
        )
        .await;
        let (min, max): (i32, i32) = sqlx::query_as("SELECT min(updates), max(updates) FROM t")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let done = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
        let ranges = number(&db.pool, "SELECT count(*) FROM backfill.ranges").await;
        let workers = busy_workers(&events);
        println!("key ({key}): {ranges} ranges, workers that changed rows: {workers:?}");
        assert_eq!((wrong, min, max, done), (0, 1, 1, ROWS), "key ({key})");
        assert!(ranges >= 4, "key ({key}): only {ranges} ranges");
        assert!(workers.len() >= 2, "key ({key}): workers {workers:?}");
        assert_eq!(of_kind(&events, "started")[0]["workers"], 4);
    }
}

/// Only the last tenth of the key space still needs the backfill: the ranges are cut where
/// that work is, so every worker gets a share of it rather than one worker doing it all.
#[tokio::test(flavor = "multi_thread")]
async fn skewed_work_is_shared_by_every_worker() {
    const ROWS: i64 = 40_000;
    let db = fresh_database().await;
    create_items(&db.pool, ROWS).await;
    sqlx::raw_sql("UPDATE items SET total = qty * price WHERE id <= 36000")
        .execute(&db.pool)
        .await
        .unwrap();
    count_updates(&db.pool).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "items_total",
        "table = \"items\"\nwhere = \"total IS NULL\"\n[set]\n\
         total = \"qty * price + (pg_sleep(0.0002) IS NULL)::int\"\n\
         [batch]\nsize = 200\nmin = 100\nmax = 200\nworkers = 4\n",
    );
    let events = run_clean(&db, path_str(&job), &[]);
    // Three of the four ranges lie wholly in the last tenth; the first reaches into it, and
    // whoever is free first takes that part over, so at least three workers changed rows.
    let workers = busy_workers(&events);
    println!("workers that changed rows: {workers:?}");
    assert!(workers.len() >= 3, "the work was not shared: {workers:?}");
    let changed = number(&db.pool, "SELECT count(*) FROM items WHERE updates > 0").await;
    assert_eq!(changed, 4_000);
    assert_eq!(
        number(&db.pool, "SELECT max(updates)::int8 FROM items").await,
        1
    );
    assert_eq!(
        number(&db.pool, "SELECT rows_done FROM backfill.jobs").await,
        4_000
    );
}

/// A partitioned table with one large and three small leaves, two workers: every leaf is its
/// own range whose batches update the leaf itself, and the large one is split between the
/// workers once the small ones are done.
#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_table_is_walked_leaf_by_leaf_by_two_workers() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE events (id bigint PRIMARY KEY, qty int NOT NULL, price int NOT NULL, total bigint,
                              updates int NOT NULL DEFAULT 0) PARTITION BY RANGE (id);
         CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (1) TO (1001);
         CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (1001) TO (2001);
         CREATE TABLE events_3 PARTITION OF events FOR VALUES FROM (2001) TO (3001);
         CREATE TABLE events_big PARTITION OF events FOR VALUES FROM (3001) TO (100000);
         INSERT INTO events (id, qty, price) SELECT i, i % 7 + 1, i % 13 + 1 FROM generate_series(1, 23000) i;
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER count_update BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION count_update();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "events_total",
        "table = \"events\"\nwhere = \"total IS NULL\"\n[set]\n\
         total = \"qty * price + (pg_sleep(0.0002) IS NULL)::int\"\n\
         [batch]\nsize = 250\nmin = 100\nmax = 250\n",
    );
    let job = path_str(&job);
    let plan = run_backfill(&db.url, &["plan", job]);
    plan.expect_code(0, "plan");
    assert!(
        plan.stdout.contains(
            "partitions 4 leaves, each walked and updated on its own: \"public\".\"events_1\""
        ),
        "{}",
        plan.stdout
    );
    let events = run_clean(&db, job, &["--workers", "2"]);
    let wrong = number(
        &db.pool,
        "SELECT count(*) FROM events WHERE total IS DISTINCT FROM qty::bigint * price OR updates <> 1",
    )
    .await;
    assert_eq!(wrong, 0);
    let relations: BTreeSet<String> = of_kind(&events, "claimed")
        .iter()
        .map(|e| e["relation"].as_str().unwrap().to_owned())
        .collect();
    let leaves: BTreeSet<String> = ["events_1", "events_2", "events_3", "events_big"]
        .iter()
        .map(|l| format!("\"public\".\"{l}\""))
        .collect();
    assert_eq!(relations, leaves, "batches update the leaves themselves");
    let stolen: Vec<&Value> = of_kind(&events, "claimed")
        .into_iter()
        .filter(|e| !e["split_from"].is_null())
        .collect();
    println!("ranges split off: {stolen:?}");
    assert!(!stolen.is_empty(), "the large leaf was not shared");
    assert_eq!(
        number(&db.pool, "SELECT rows_done FROM backfill.jobs").await,
        23_000
    );
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM backfill.ranges WHERE status <> 'done'"
        )
        .await,
        0
    );
}

/// A job that the version without ranges stopped half-way (its cursor and counters in
/// `backfill.jobs`, no `ranges` table) resumes after its cursor: the rows before it are not
/// touched again, the rest are filled once, and `rows_done` adds up.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_stopped_by_the_previous_version_resumes_from_its_cursor() {
    let db = fresh_database().await;
    create_items(&db.pool, 10_000).await;
    sqlx::raw_sql("UPDATE items SET total = qty * price WHERE id <= 5000")
        .execute(&db.pool)
        .await
        .unwrap();
    count_updates(&db.pool).await;
    let dir = TempDir::new().unwrap();
    let text = "table = \"items\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"qty * price\"\n";
    let job = write_job(&dir, "items_total", text);
    let hash = backfill::job::Job::parse(text, &job)
        .unwrap()
        .definition_hash();
    // The state table exactly as the previous version created and left it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA backfill;
         CREATE TABLE backfill.jobs (name text PRIMARY KEY, table_name text, definition_hash text NOT NULL,
             status text NOT NULL, cursor jsonb, range_end jsonb, rows_done bigint NOT NULL DEFAULT 0,
             batches_done bigint NOT NULL DEFAULT 0, batch_size int, started_at timestamptz,
             updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, owner text,
             heartbeat_at timestamptz, control text, last_error text, rate double precision, note text);
         INSERT INTO backfill.jobs (name, table_name, definition_hash, status, cursor, range_end,
                                    rows_done, batches_done, batch_size, started_at)
         VALUES ('items_total', '\"public\".\"items\"', '{hash}', 'stopped', '[\"5000\"]', '[\"10000\"]',
                 5000, 3, 2000, now() - interval '1 hour');"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let events = run_clean(&db, path_str(&job), &[]);
    assert_eq!(of_kind(&events, "started")[0]["resumed"], true);
    let (untouched, once): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE id <= 5000 AND updates = 0),
                count(*) FILTER (WHERE id > 5000 AND updates = 1) FROM items",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((untouched, once), (5000, 5000));
    assert_eq!(common::wrong_items(&db.pool).await, 0);
    let (done, batches): (i64, i64) =
        sqlx::query_as("SELECT rows_done, batches_done FROM backfill.jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(done, 10_000);
    assert!(batches > 3, "{batches}");
}

/// More workers than the server has connections for under `max_connection_use`: exit 2 before
/// anything is written, with the number that would fit; one worker runs as before.
/// The most batches of the job `items_total` that run at once, sampled every 10 ms for
/// `span`: its sessions' `UPDATE`s of `items` that `pg_stat_activity` shows active in this
/// test's database (not the heartbeat's of the state tables, nor other tests' runs of a job of
/// the same name on the shared cluster).
async fn most_batches_at_once(pool: &PgPool, span: Duration) -> i64 {
    let until = Instant::now() + span;
    let mut most = 0;
    while Instant::now() < until {
        let now = number(
            pool,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfill:items_total' \
             AND datname = current_database() AND state = 'active' \
             AND query LIKE 'UPDATE \"public\".\"items\"%'",
        )
        .await;
        most = most.max(now);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    most
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_lets_three_workers_run_one_at_a_time() {
    let db = fresh_database().await;
    let throttle = brake(&db.pool, "50ms").await;
    // Batches of 20 rows at 2 ms a row: 40 ms each, long enough to be seen running.
    let (dir, job) = slow_items_job(
        &db.pool,
        6_000,
        "0.002",
        "size = 20\nmin = 20\nmax = 20",
        &throttle,
    )
    .await;
    let mut runner = Runner::spawn(
        &db.url,
        &dir,
        "run",
        &["run", "--json", "--workers", "3", &job],
    );
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE note LIKE 'throttled: throttle_query%' \
             AND rows_done >= 100)",
        )
        .await;
    let throttled = most_batches_at_once(&db.pool, Duration::from_millis(1500)).await;
    release_brake(&db.pool).await;
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE coalesce(note, '') NOT LIKE 'throttled%')",
        )
        .await;
    let running = most_batches_at_once(&db.pool, Duration::from_millis(1000)).await;
    let out = runner.finish().await;
    let events = assert_clean(&out, "run");
    println!("batches at once: at most {throttled} while throttled, {running} at full speed");
    assert_eq!(throttled, 1, "throttled workers ran side by side");
    assert!(running >= 2, "three workers never ran side by side");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"throttled"), "{kinds:?}");
    assert_all_done_once(&db.pool, 6_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_count_the_server_has_no_room_for_is_refused() {
    let db = fresh_database().await;
    let (dir, job) = items_with_job_text(
        &db.pool,
        1_000,
        "qty * price",
        "[throttle]\nmax_connection_use = 0.05\n",
    )
    .await;
    let refused: Finished = run_backfill(&db.url, &["run", "--workers", "8", &job]);
    refused.expect_code(2, "run --workers 8");
    assert!(
        refused
            .stderr
            .contains("8 workers would hold 11 connections")
            && refused.stderr.contains("max_connection_use 0.05")
            && refused.stderr.contains("fit now"),
        "{}",
        refused.stderr
    );
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "nothing written"
    );
    let plan = run_backfill(&db.url, &["plan", "--workers", "8", &job]);
    plan.expect_code(0, "plan");
    assert!(
        plan.stdout.contains(
            "workers   8 per process: 11 connections (8 batch, monitor, heartbeat, vacuum)"
        ) && plan.stdout.contains("too many: `run` refuses"),
        "{}",
        plan.stdout
    );
    run_backfill(&db.url, &["run", &job]).expect_code(0, "run with one worker");
    assert_all_done_once(&db.pool, 1_000).await;
    drop(dir);
}
