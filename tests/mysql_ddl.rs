//! Stepping aside for DDL on real MySQL and MariaDB: an `ALTER TABLE` that queues for its
//! metadata lock behind a slow batch goes ahead at once (the monitor kills our batch's query and
//! the batch rolls back, so that its transaction's metadata lock goes too), and a run started
//! under `LOCK TABLES … WRITE` waits paused and starts once the lock is gone, with no error and
//! no retry; `plan` behind the lock gives up after `--lock-wait`. Every row exactly once.

mod common;

use std::io::Write as _;

use common::mysql::{
    FLAVORS, Served, assert_all_done_once, create_items, exec, items_job, number, start, wait_for,
};
use common::watched::{assert_clean, reasons};
use common::{Runner, path_str, run_backfill, write_job};
use sqlx::{Connection as _, MySqlConnection};
use tempfile::TempDir;

/// A session of the test's own, on `db`'s database.
async fn session(db: &Served) -> MySqlConnection {
    MySqlConnection::connect(&db.url).await.unwrap()
}

/// Once an `UPDATE` of ours (of `what`) has run on `db`'s `items` for a second, runs
/// `ALTER TABLE items ADD COLUMN note TEXT` behind it, willing to wait a minute for its
/// metadata lock; returns when the `ALTER` is done.
async fn alter_behind_a_running_update(db: &Served, what: &str) {
    wait_for(
        &db.pool,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
          WHERE INFO LIKE 'UPDATE `db`.`items`%' AND TIME >= 1",
    )
    .await;
    let mut ddl = session(db).await;
    sqlx::raw_sql("SET SESSION lock_wait_timeout = 60; ALTER TABLE items ADD COLUMN note TEXT")
        .execute(&mut ddl)
        .await
        .unwrap_or_else(|e| panic!("the ALTER TABLE behind {what}: {e}"));
}

/// `events` has a `yielded` event that names the `ALTER` of [`alter_behind_a_running_update`].
fn assert_yielded_to_the_alter(events: &[serde_json::Value], what: &str, stdout: &str) {
    let yielded = reasons(events, "yielded");
    let _ = writeln!(std::io::stderr(), "{what}: yielded: {yielded:?}");
    assert!(
        yielded
            .iter()
            .any(|r| r.contains("ALTER TABLE items ADD COLUMN note TEXT")),
        "{what}: no yield naming the ALTER: {yielded:?}\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alter_table_behind_a_slow_batch_goes_ahead_at_once() {
    const ROWS: i64 = 1_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        // 500 rows × 20 ms: a 10 s batch, until the knob is turned down.
        exec(&db.pool, "CREATE TABLE knob (per_row DOUBLE)").await;
        exec(&db.pool, "INSERT INTO knob VALUES (0.02)").await;
        let dir = TempDir::new().unwrap();
        let batch = "size = 500\nmin = 500\nmax = 500\ntarget = \"10s\"\n\n\
                     [timeouts]\nstatement = \"60s\"";
        let job = write_job(
            &dir,
            "items_total",
            &items_job(batch, "(SELECT per_row FROM knob)"),
        );
        let run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        alter_behind_a_running_update(&db, &format!("{flavor}: a batch")).await;
        // The batch it queued behind did not commit first: it was cancelled for the ALTER.
        let done_then = number(
            &db.pool,
            "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
        )
        .await;
        exec(&db.pool, "UPDATE knob SET per_row = 0").await;
        let out = run.finish().await;
        let events = assert_clean(&out, &format!("{flavor}: a run that yielded to DDL"));
        assert_eq!(done_then, 0, "{flavor}: a batch committed before the ALTER");
        assert_yielded_to_the_alter(&events, &format!("{flavor}"), &out.stdout);
        assert!(
            !reasons(&events, "paused").is_empty(),
            "{flavor}: no pause after the yield\n{}",
            out.stdout
        );
        assert_all_done_once(&db.pool, ROWS).await;
        assert_eq!(
            number(
                &db.pool,
                "SELECT COUNT(*) FROM information_schema.COLUMNS \
                  WHERE TABLE_SCHEMA = 'db' AND TABLE_NAME = 'items' AND COLUMN_NAME = 'note'"
            )
            .await,
            1,
            "{flavor}: the ALTER's column"
        );
    }
}

/// `LOCK TABLES items WRITE` on a session of the test's own.
async fn lock_tables(db: &Served) -> MySqlConnection {
    let mut holder = session(db).await;
    sqlx::raw_sql("LOCK TABLES items WRITE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

async fn unlock(mut holder: MySqlConnection) {
    sqlx::raw_sql("UNLOCK TABLES")
        .execute(&mut holder)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_under_lock_tables_write_waits_paused_and_finishes() {
    const ROWS: i64 = 2_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "items_total",
            &items_job("size = 500\nmin = 500\nmax = 500", "0"),
        );
        let holder = lock_tables(&db).await;
        let run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        unlock(holder).await;
        let out = run.finish().await;
        let events = assert_clean(&out, &format!("{flavor}: a run started under LOCK TABLES"));
        let paused = reasons(&events, "paused");
        let _ = writeln!(std::io::stderr(), "{flavor}: paused: {paused:?}");
        assert!(
            paused.iter().any(|r| r.contains("metadata lock")),
            "{flavor}: no pause for the lock: {paused:?}\n{}",
            out.stdout
        );
        assert_all_done_once(&db.pool, ROWS).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_behind_lock_tables_gives_up_after_lock_wait() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 100).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "items_total",
            &items_job("size = 50\nmin = 50\nmax = 50", "0"),
        );
        let holder = lock_tables(&db).await;
        let out = run_backfill(&db.url, &["plan", "--lock-wait", "1s", path_str(&job)]);
        unlock(holder).await;
        out.expect_code(1, &format!("{flavor}: plan behind LOCK TABLES"));
        let _ = writeln!(std::io::stderr(), "{flavor}: plan said:\n{}", out.stderr);
        assert!(
            out.stderr.contains("metadata lock") && out.stderr.contains("--lock-wait"),
            "{flavor}: {}",
            out.stderr
        );
        run_backfill(&db.url, &["plan", "--lock-wait", "1s", path_str(&job)])
            .expect_code(0, &format!("{flavor}: plan once the lock is gone"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_says_what_a_monitor_account_without_process_cannot_see() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 100).await;
        exec(
            &db.pool,
            "CREATE USER 'watcher'@'%' IDENTIFIED BY 'seen-not-shown'",
        )
        .await;
        exec(&db.pool, "GRANT SELECT ON db.* TO 'watcher'@'%'").await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "items_total",
            &items_job("size = 50\nmin = 50\nmax = 50", "0"),
        );
        let monitor = format!(
            "mysql://watcher:seen-not-shown@127.0.0.1:{}/db",
            db.server.port()
        );
        let out = run_backfill(
            &db.url,
            &["plan", "--monitor-url", &monitor, path_str(&job)],
        );
        out.expect_code(0, &format!("{flavor}: plan with a watcher account"));
        let said = format!("{}{}", out.stdout, out.stderr);
        let _ = writeln!(std::io::stderr(), "{flavor}: plan said:\n{said}");
        for line in [
            "monitor as account watcher@%: sees only its own account's sessions (no PROCESS privilege)",
            "warning: the monitor's account watcher@% lacks PROCESS",
            "run `GRANT PROCESS ON *.* TO 'watcher'@'%';`",
            "may not KILL QUERY the batches of root@",
        ] {
            assert!(said.contains(line), "{flavor}: {line:?} not in:\n{said}");
        }
        assert_eq!(
            said.contains("GRANT SELECT ON performance_schema.*"),
            flavor == backfill::mysql::throwaway::Flavor::MySql,
            "{flavor}: the performance_schema warning:\n{said}"
        );
        assert!(
            !said.contains("seen-not-shown"),
            "{flavor}: the password was printed"
        );
    }
}

/// `run --retry-failures` tries a row set aside again in a transaction of its own; an
/// `ALTER TABLE` that queues behind that transaction goes ahead at once too (its statement is
/// killed and its transaction rolled back before the worker pauses), and the row is filled
/// afterwards, once.
#[tokio::test(flavor = "multi_thread")]
async fn an_alter_table_behind_a_retried_row_goes_ahead_at_once() {
    const ROWS: i64 = 10;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        // Row 5 first overflows `done INT` (set aside), then takes 30 s when it is retried.
        exec(&db.pool, "CREATE TABLE knob (extra BIGINT, per_row DOUBLE)").await;
        exec(&db.pool, "INSERT INTO knob VALUES (3000000000, 0)").await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "items_total",
            "name = \"items_total\"\ntable = \"items\"\nwhere = \"done IS NULL\"\n\n\
             [set]\ndone = \"v * 2 + IF(id = 5, (SELECT extra FROM knob), 0) \
             + SLEEP(IF(id = 5, (SELECT per_row FROM knob), 0))\"\n\n\
             [batch]\nsize = 5\nmin = 5\nmax = 5\non_error = \"skip\"\n\n\
             [timeouts]\nstatement = \"60s\"\n",
        );
        run_backfill(&db.url, &["run", path_str(&job)])
            .expect_code(0, &format!("{flavor}: the run that sets row 5 aside"));
        exec(&db.pool, "UPDATE knob SET extra = 0, per_row = 30").await;
        let retry = Runner::spawn(
            &db.url,
            &dir,
            "retry",
            &["run", "--json", "--retry-failures", path_str(&job)],
        );
        alter_behind_a_running_update(&db, &format!("{flavor}: a retried row")).await;
        let filled_then = number(
            &db.pool,
            "SELECT COUNT(*) FROM items WHERE done IS NOT NULL",
        )
        .await;
        exec(&db.pool, "UPDATE knob SET per_row = 0").await;
        let out = retry.finish().await;
        let events = assert_clean(&out, &format!("{flavor}: a retry that yielded to DDL"));
        assert_eq!(
            filled_then,
            ROWS - 1,
            "{flavor}: the retry committed before the ALTER"
        );
        assert_yielded_to_the_alter(&events, &format!("{flavor}: the retry"), &out.stdout);
        assert_all_done_once(&db.pool, ROWS).await;
    }
}
