//! Transient failures roll a batch back and retry it: a row lock held by another session
//! (lock_timeout, 55P03) and a batch too slow for `statement_timeout` (57014, which also halves
//! the batch). In both cases every row ends correct and nothing is counted twice.

mod common;

use std::time::Duration;

use common::{events, fresh_database, holds, number, run_backfill, write_job};
use serde_json::Value;
use sqlx::Connection as _;

#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_halves_the_batch_until_it_fits() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, w int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 400) g;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 2 ms per row: a 400-row batch takes 0.8 s, over the 300 ms statement_timeout; halving
    // reaches 100 rows (0.2 s), which fits.
    let job = write_job(
        &dir,
        "slow",
        r#"
table = "t"
where = "w IS NULL"
[set]
w = "v * 2 + (pg_sleep(0.002) IS NULL)::int"
[batch]
size = 400
min = 1
max = 400
target = "100ms"
[timeouts]
statement = "300ms"
lock = "100ms"
"#,
    );
    let out = run_backfill(&db.url, &["run", "--json", job.to_str().unwrap()]);
    out.expect_code(0, "run");
    let events = events(&out.stdout);
    let retries: Vec<&Value> = events.iter().filter(|e| e["event"] == "retry").collect();
    assert!(
        !retries.is_empty(),
        "expected a retry after a statement timeout"
    );
    assert!(
        retries[0]["error"]
            .as_str()
            .unwrap()
            .contains("statement timeout"),
        "{}",
        retries[0]
    );
    let first_size = events.iter().find(|e| e["event"] == "batch").unwrap()["batch_size"]
        .as_u64()
        .unwrap();
    assert!(first_size < 400, "batch not halved: {first_size}");
    let wrong = number(
        &db.pool,
        "SELECT count(*) FROM t WHERE w IS DISTINCT FROM v * 2",
    )
    .await;
    assert_eq!(wrong, 0);
    let rows_done = number(
        &db.pool,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'slow'",
    )
    .await;
    assert_eq!(rows_done, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_lock_held_elsewhere_is_waited_out_with_retries() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, w int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 3000) g;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Another session holds a row lock in the middle of the range for a while.
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT * FROM t WHERE id = 1500 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        &dir,
        "locked",
        r#"
table = "t"
where = "w IS NULL"
[set]
w = "v + 1"
[batch]
size = 1000
[timeouts]
lock = "100ms"
"#,
    );
    let url = db.url.clone();
    let path = job.to_str().unwrap().to_owned();
    let run = tokio::task::spawn_blocking(move || run_backfill(&url, &["run", "--json", &path]));
    // Release the lock once the runner has hit it at least once.
    let mut waited = Duration::ZERO;
    loop {
        let blocked = holds(
            &db.pool,
            "SELECT rows_done >= 1000 FROM backfill.jobs WHERE name = 'locked'",
        )
        .await;
        if blocked || waited > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    tx.rollback().await.unwrap();
    let out = run.await.unwrap();
    out.expect_code(0, "run");
    let events = events(&out.stdout);
    let retry = events
        .iter()
        .find(|e| e["event"] == "retry")
        .expect("a retry on the held lock");
    assert!(
        retry["error"].as_str().unwrap().contains("lock timeout"),
        "{retry}"
    );
    let wrong = number(
        &db.pool,
        "SELECT count(*) FROM t WHERE w IS DISTINCT FROM v + 1",
    )
    .await;
    assert_eq!(wrong, 0);
    let rows_done = number(
        &db.pool,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'locked'",
    )
    .await;
    assert_eq!(rows_done, 3000);
}
