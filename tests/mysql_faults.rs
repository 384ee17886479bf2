//! What a production MySQL or MariaDB does to a run, on real servers: the server restarts
//! mid-run (the run reconnects and finishes), the application inserts new auto-increment rows at
//! the end of the table while the last batch holds its rows (the inserts do not wait: batches
//! run at `READ COMMITTED`, so no gap lock covers the table's end), and a batch that overruns
//! the statement timeout is stopped by the server (`max_statement_time` on MariaDB, `KILL QUERY`
//! from our watchdog on MySQL), rolled back and retried smaller. Every row exactly once.

mod common;

use std::time::Duration;

use common::mysql::{
    FLAVORS, INNODB_TRX_REFRESH, assert_all_done_once, create_items, exec, items_job, number,
    start, wait_for,
};
use common::{Runner, events, path_str, write_job};
use sqlx::Connection as _;
use tempfile::TempDir;

const BATCH: &str = "size = 200\nmin = 50\nmax = 200";

/// The server restarts while three workers run: they reconnect, and every row is filled once.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_restart_mid_run_is_reconnected_and_the_run_finishes() {
    const ROWS: i64 = 20_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0.0005"));
        let run = Runner::spawn(
            &db.url,
            &dir,
            "run",
            &["run", "--json", "--workers", "3", path_str(&job)],
        );
        wait_for(
            &db.pool,
            "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
        )
        .await;
        let server = &db.server;
        tokio::task::block_in_place(|| server.restart()).expect("restart the server");
        let out = run.finish().await;
        out.expect_code(0, &format!("{flavor}: a run across a restart"));
        let retries = events(&out.stdout)
            .into_iter()
            .filter(|e| e["event"] == "retry" && e["reconnecting"] == true)
            .count();
        assert!(
            retries > 0,
            "{flavor}: no reconnecting retry\n{}",
            out.stdout
        );
        assert_all_done_once(&db.pool, ROWS).await;
    }
}

/// The application inserts rows at the end of the table, filling the new column itself (a dual
/// write), while the run's last batch holds the table's last rows for seconds: each insert
/// succeeds within a lock wait of 1 s, and `verify` passes.
#[tokio::test(flavor = "multi_thread")]
async fn inserts_at_the_end_of_the_table_do_not_wait_for_the_last_batch() {
    const ROWS: i64 = 1_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        // The last row sleeps 3 s inside the last batch, whose size takes the rest of the table.
        let toml = items_job("size = 5000\nmin = 5000\nmax = 5000", "0")
            .replace("SLEEP(0)", &format!("SLEEP(IF(id = {ROWS}, 3, 0))"));
        let job = write_job(&dir, "items_total", &toml);
        let run = Runner::spawn(&db.url, &dir, "run", &["run", path_str(&job)]);
        wait_for(
            &db.pool,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User sleep' AND INFO LIKE 'UPDATE%'",
        )
        .await;
        let mut app = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql("SET SESSION innodb_lock_wait_timeout = 1, lock_wait_timeout = 1")
            .execute(&mut app)
            .await
            .unwrap();
        for _ in 0..5 {
            sqlx::raw_sql("INSERT INTO items (v, done) VALUES (5, 10)")
                .execute(&mut app)
                .await
                .unwrap_or_else(|e| panic!("{flavor}: the application's insert: {e}"));
        }
        // The batch was still running: the inserts did not wait for it.
        let sleeping = number(
            &db.pool,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User sleep' AND INFO LIKE 'UPDATE%'",
        )
        .await;
        assert_eq!(
            sleeping, 1,
            "{flavor}: the last batch ended before the inserts"
        );
        run.finish().await.expect_code(0, &format!("{flavor}: run"));
        let verify = common::run_backfill(&db.url, &["verify", path_str(&job)]);
        verify.expect_code(0, &format!("{flavor}: verify"));
        exec(&db.pool, "DELETE FROM items WHERE id > 1000").await;
        assert_all_done_once(&db.pool, ROWS).await;
    }
}

/// A batch slower than `[timeouts] statement` is stopped by the server, rolled back and
/// retried; once the slowness is gone, the run finishes with every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_past_the_statement_timeout_is_stopped_and_retried() {
    const ROWS: i64 = 2_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        exec(&db.pool, "CREATE TABLE slow (on_ INT NOT NULL)").await;
        exec(&db.pool, "INSERT INTO slow VALUES (1)").await;
        let dir = TempDir::new().unwrap();
        let toml = items_job(BATCH, "0").replace(
            "SLEEP(0)",
            "SLEEP(IF(id = 1500 AND (SELECT on_ FROM slow) = 1, 5, 0))",
        ) + "\n[timeouts]\nstatement = \"2s\"\nlock = \"1s\"\n";
        let job = write_job(&dir, "items_total", &toml);
        let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        run.wait_for_line(&["\"retry\""]).await;
        exec(&db.pool, "UPDATE slow SET on_ = 0").await;
        let out = run.finish().await;
        out.expect_code(0, &format!("{flavor}: run"));
        let retry = events(&out.stdout)
            .into_iter()
            .find(|e| e["event"] == "retry")
            .expect("a retry");
        let error = retry["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.contains("interrupted") || error.contains("max_statement_time"),
            "{flavor}: {error}"
        );
        assert_all_done_once(&db.pool, ROWS).await;
        // The killed statement left no transaction behind holding locks.
        tokio::time::sleep(INNODB_TRX_REFRESH).await;
        let open = number(
            &db.pool,
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX",
        )
        .await;
        assert_eq!(open, 0, "{flavor}: open transactions after the run");
    }
}

/// A process frozen (SIGSTOP) in the middle of a batch: the server ends the batch's transaction
/// once it idles past the limit (MariaDB's `idle_transaction_timeout`, MySQL's `wait_timeout`
/// lowered for the batch), so its row locks do not outlive it; thawed, it reconnects and the
/// run finishes with every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_process_does_not_hold_its_transaction_open() {
    const ROWS: i64 = 5_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0.002"));
        let run = Runner::spawn(&db.url, &dir, "run", &["run", path_str(&job)]);
        let in_a_batch = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                          WHERE STATE = 'User sleep' AND INFO LIKE 'UPDATE%'";
        wait_for(&db.pool, in_a_batch).await;
        run.signal("STOP");
        // The frozen batch's transaction, which changed rows, is gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let open: Vec<(String, i64, String)> = sqlx::query_as(
                "SELECT CAST(COALESCE(t.trx_query, '-') AS CHAR), \
                        CAST(t.trx_rows_modified AS SIGNED), \
                        CAST(CONCAT(COALESCE(p.COMMAND, '?'), ' ', COALESCE(p.TIME, '?'), ' ', \
                             COALESCE(p.STATE, '')) AS CHAR) \
                   FROM information_schema.INNODB_TRX t \
                   LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                  WHERE t.trx_rows_modified > 0",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            if open.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{flavor}: the frozen batch's transaction is still open: {open:?}"
            );
            tokio::time::sleep(INNODB_TRX_REFRESH).await;
        }
        run.signal("CONT");
        run.finish()
            .await
            .expect_code(0, &format!("{flavor}: the thawed run"));
        assert_all_done_once(&db.pool, ROWS).await;
    }
}
