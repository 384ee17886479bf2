//! `backfill run` on real MariaDB and MySQL servers: the same job files as on PostgreSQL fill
//! every row exactly once, with several workers, through twenty kill -9s and a process that
//! joins; the operator's controls reach a running job from another process; a wrong password
//! fails without showing it; and a hostile job file exits 2 touching nothing.
//!
//! What a user checks: every row's value and its update counter (a `BEFORE UPDATE` trigger
//! counts every update, so a row applied twice shows), `rows_done` against the rows changed,
//! exit codes and messages. A flavor whose programs are missing is skipped, saying why.

mod common;

use common::kills::kill_9_checking;
use common::mysql::{
    FLAVORS, assert_all_done_once, create_items, exec, items_job, number, start, wait_for,
};
use common::{Runner, path_str, run_backfill, write_job};
use tempfile::TempDir;

/// Batches of 50–200 keys: many batches in a small table.
const BATCH: &str = "size = 200\nmin = 50\nmax = 200";

/// One process with three workers fills the table; `status` then says the job is done.
#[tokio::test(flavor = "multi_thread")]
async fn three_workers_fill_every_row_exactly_once() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 20_000).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0"));
        let run = run_backfill(&db.url, &["run", "--workers", "3", path_str(&job)]);
        run.expect_code(0, &format!("{flavor}: run"));
        assert_all_done_once(&db.pool, 20_000).await;
        let done = number(
            &db.pool,
            "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
        )
        .await;
        assert_eq!(done, 20_000, "{flavor}: rows_done");
        let status = run_backfill(&db.url, &["status", "items_total"]);
        status.expect_code(0, &format!("{flavor}: status"));
        assert!(
            status.stdout.contains("done"),
            "{flavor}: {}",
            status.stdout
        );
        let verify = run_backfill(&db.url, &["verify", path_str(&job)]);
        verify.expect_code(0, &format!("{flavor}: verify"));
        // A row the job's filter matches again: verify says the contract must wait.
        exec(&db.pool, "UPDATE items SET done = NULL WHERE id = 7").await;
        let verify = run_backfill(&db.url, &["verify", path_str(&job)]);
        verify.expect_code(3, &format!("{flavor}: verify with a row pending"));
    }
}

/// `pause`, `resume` and `cancel` from another process reach a running job: it pauses and says
/// why, goes on, and stops with exit 1 having applied every batch it ran exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_and_cancel_reach_a_running_job() {
    const ROWS: i64 = 20_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0.0005"));
        let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        run.wait_for_line(&["\"batch\""]).await;
        run_backfill(&db.url, &["pause", "items_total"]).expect_code(0, "pause");
        run.wait_for_line(&["\"paused\"", "operator"]).await;
        // The note follows at the process's next heartbeat.
        wait_for(
            &db.pool,
            "SELECT COUNT(*) FROM backfill.jobs WHERE name = 'items_total' AND note LIKE 'paused%'",
        )
        .await;
        let status = run_backfill(&db.url, &["status", "items_total"]);
        assert!(
            status.stdout.contains("paused"),
            "{flavor}: {}",
            status.stdout
        );
        let paused_at = number(&db.pool, "SELECT SUM(updates) FROM items").await;
        run_backfill(&db.url, &["resume", "items_total"]).expect_code(0, "resume");
        run.wait_for_line(&["\"running\""]).await;
        run_backfill(&db.url, &["cancel", "items_total"]).expect_code(0, "cancel");
        let out = run.finish().await;
        out.expect_code(1, &format!("{flavor}: a cancelled run"));
        let (done, changed) = sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'), \
                    (SELECT CAST(COUNT(*) AS SIGNED) FROM items WHERE updates > 0)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(done, changed, "{flavor}: rows_done against rows changed");
        assert!(
            changed > paused_at && changed < ROWS,
            "{flavor}: {paused_at} {changed}"
        );
        assert_eq!(number(&db.pool, "SELECT MAX(updates) FROM items").await, 1);
    }
}

/// Twenty runs with three workers killed with SIGKILL at random moments, each followed by the
/// check that `rows_done` equals the rows changed; then a run and a `--join`ed process finish
/// the job: every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_kill_9s_then_a_join_apply_every_row_exactly_once() {
    const ROWS: i64 = 30_000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        // 0.3 ms a row: a whole run takes about 9 s, so most kills land mid-run.
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0.0003"));
        let job = path_str(&job);
        let pool = &db.pool;
        let done = async || {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT (SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'), \
                        (SELECT CAST(COUNT(*) AS SIGNED) FROM items WHERE updates > 0)",
            )
            .fetch_optional(pool)
            .await
            .ok()
            .flatten()
        };
        let args = ["run", "--workers", "3", job];
        kill_9_checking(&db.url, &dir, &args, 20, done).await;
        let first = Runner::spawn(&db.url, &dir, "first", &["run", "--workers", "2", job]);
        let holds = format!(
            "SELECT COUNT(*) FROM backfill.ranges WHERE owner LIKE '%:{}:%'",
            first.pid()
        );
        wait_for(&db.pool, &holds).await;
        let joined = Runner::spawn(&db.url, &dir, "joined", &["run", "--join", job]);
        first
            .finish()
            .await
            .expect_code(0, &format!("{flavor}: run"));
        let joined = joined.finish().await;
        assert!(
            matches!(joined.status.code(), Some(0)),
            "{flavor}: joined run\nstdout:\n{}\nstderr:\n{}",
            joined.stdout,
            joined.stderr
        );
        assert_all_done_once(&db.pool, ROWS).await;
    }
}

/// A wrong password fails with exit 1 and a message that names the server, never the password.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_exits_1_without_showing_it() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        let url = format!("mysql://root:Wr0ngSecret@127.0.0.1:{}/db", db.server.port());
        let status = run_backfill(&url, &["status"]);
        status.expect_code(1, &format!("{flavor}: status with a wrong password"));
        assert!(
            !status.stderr.contains("Wr0ngSecret") && !status.stdout.contains("Wr0ngSecret"),
            "{flavor}: {}",
            status.stderr
        );
        assert!(
            status.stderr.contains("127.0.0.1"),
            "{flavor}: {}",
            status.stderr
        );
    }
}

/// Backticks, comments and `;` in a table name are a name, quoted as one: the job names a
/// table that does not exist, exits 2, and the database is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_table_name_exits_2_and_touches_nothing() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 10).await;
        let dir = TempDir::new().unwrap();
        for table in [
            "`items; DROP TABLE items; --`",
            "`items``; DELETE FROM items; /*`",
        ] {
            let toml =
                format!("table = {table:?}\nwhere = \"done IS NULL\"\n[set]\ndone = \"v * 2\"\n");
            let job = write_job(&dir, "hostile", &toml);
            let run = run_backfill(&db.url, &["run", path_str(&job)]);
            run.expect_code(2, &format!("{flavor}: run of {table}"));
            assert!(
                run.stderr.contains("does not exist"),
                "{flavor}: {}",
                run.stderr
            );
        }
        let toml = "table = \"items\"\nwhere = \"done IS NULL\"\n[set]\ndone = \"v\"\n\
                    [throttle]\nmax_wal_rate = \"32MiB/s\"\n";
        let job = write_job(&dir, "wal", toml);
        let run = run_backfill(&db.url, &["run", path_str(&job)]);
        run.expect_code(2, &format!("{flavor}: a WAL rate on MySQL"));
        assert!(
            run.stderr.contains("write-ahead log"),
            "{flavor}: {}",
            run.stderr
        );
        assert_eq!(number(&db.pool, "SELECT COUNT(*) FROM items").await, 10);
        assert_eq!(number(&db.pool, "SELECT SUM(updates) FROM items").await, 0);
        exec(&db.pool, "SELECT 1").await;
    }
}

/// A key in a case- and accent-insensitive collation, whose order is not its bytes' order:
/// `a…`, `A…`, `á…` and `B…` keys interleave in the index, and a walk in batches of 7 with two
/// workers neither skips nor repeats a row.
#[tokio::test(flavor = "multi_thread")]
async fn a_case_and_accent_insensitive_key_is_walked_in_its_own_order() {
    const ROWS: usize = 600;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        let collation = match flavor {
            backfill::mysql::Flavor::MySql => "utf8mb4_0900_ai_ci",
            backfill::mysql::Flavor::MariaDb => "utf8mb4_uca1400_ai_ci",
        };
        exec(
            &db.pool,
            &format!(
                "CREATE TABLE words (w VARCHAR(20) CHARACTER SET utf8mb4 COLLATE {collation} \
                 NOT NULL PRIMARY KEY, n INT NOT NULL, done INT NULL, \
                 updates INT NOT NULL DEFAULT 0)"
            ),
        )
        .await;
        exec(
            &db.pool,
            "CREATE TRIGGER words_count BEFORE UPDATE ON words FOR EACH ROW \
             SET NEW.updates = OLD.updates + 1",
        )
        .await;
        let starts = ["a", "A", "á", "B", "b", "é", "E", "z", "Ž"];
        let values: Vec<String> = (0..ROWS)
            .map(|i| format!("('{}{i:04}', {i})", starts[i % starts.len()]))
            .collect();
        exec(
            &db.pool,
            &format!("INSERT INTO words (w, n) VALUES {}", values.join(", ")),
        )
        .await;
        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "words",
            "table = \"words\"\nwhere = \"done IS NULL\"\n[set]\ndone = \"n + 1\"\n\
             [batch]\nsize = 7\nmin = 7\nmax = 7\n",
        );
        run_backfill(&db.url, &["run", "--workers", "2", path_str(&job)])
            .expect_code(0, &format!("{flavor}: run"));
        let wrong = number(
            &db.pool,
            "SELECT COUNT(*) FROM words WHERE updates <> 1 OR done <> n + 1 OR done IS NULL",
        )
        .await;
        assert_eq!(wrong, 0, "{flavor}: rows skipped, repeated or wrong");
        assert_eq!(
            number(&db.pool, "SELECT COUNT(*) FROM words").await,
            ROWS as i64
        );
    }
}
