//! The server's version as a user meets it: `plan` names the server it checked the job against,
//! a server older than the oldest supported one (13) is refused by every command that reads the
//! table, with exit 2 and nothing written, and a catalog fact that changed between supported
//! versions (`reltuples` of a table never analyzed) changes nothing a user sees. CI runs this file on every version from 13 to 18
//! and on 12, the unsupported one (`.ci/run`); each test runs where it applies and is counted
//! as skipped elsewhere ([`common::runs_on`]).

mod common;

use common::{TestDb, create_items, fresh_database, number, run_backfill, runs_on, schema_exists};
use tempfile::TempDir;

/// A database with 100 `items` and the job that fills their `total`, in a directory of its own.
async fn items_and_job() -> (TestDb, TempDir, String) {
    let db = fresh_database().await;
    create_items(&db.pool, 100).await;
    let dir = TempDir::new().expect("create a directory for the job file");
    let job = common::write_job(&dir, "fill", &common::items_job("total IS NULL", ""));
    let job = common::path_str(&job).to_owned();
    (db, dir, job)
}

/// The server's version as it calls itself, `15.18` of `15.18 (Debian 15.18-0+deb12u1)`.
async fn version_text(db: &TestDb) -> String {
    let text: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(&db.pool)
        .await
        .expect("read server_version");
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn plan_names_the_server_it_checked_the_job_against() {
    let (db, _dir, job) = items_and_job().await;
    if !runs_on(&db.pool, 130000.., "a supported server (13 or newer)").await {
        return;
    }
    let out = run_backfill(&db.url, &["plan", &job]);
    out.expect_code(0, "plan");
    let line = format!("\nserver    PostgreSQL {}\n", version_text(&db).await);
    assert!(
        out.stdout.contains(&line),
        "no {line:?} in:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_server_older_than_13_is_refused_and_left_untouched() {
    let (db, _dir, job) = items_and_job().await;
    if !runs_on(&db.pool, ..130000, "a server older than 13 (CI runs 12)").await {
        return;
    }
    let refusal = format!(
        "the server runs PostgreSQL {}, and backfill needs PostgreSQL 13 or newer (it is tested \
         on 13 to 18); upgrade the server",
        version_text(&db).await
    );
    for command in ["plan", "run", "verify"] {
        let out = run_backfill(&db.url, &[command, &job]);
        out.expect_code(2, command);
        assert!(out.stderr.contains(&refusal), "{command}:\n{}", out.stderr);
    }
    assert!(!schema_exists(&db.pool, "backfill").await);
    let filled = number(
        &db.pool,
        "SELECT count(*) FROM items WHERE total IS NOT NULL",
    )
    .await;
    assert_eq!(filled, 0);
}

/// `pg_class.reltuples` of a table never vacuumed nor analyzed is 0 up to PostgreSQL 13 and -1
/// ("unknown") from 14 on. `backfill` reads no `reltuples`: its estimate is the planner's, which
/// knows both. A never-analyzed table (autovacuum off, so that it stays so) is planned, walked
/// by its index and filled alike on either side of the change.
#[tokio::test]
async fn a_table_never_analyzed_is_planned_and_filled_on_either_side_of_reltuples_minus_one() {
    let db = fresh_database().await;
    if !runs_on(&db.pool, 130000.., "a supported server (13 or newer)").await {
        return;
    }
    sqlx::raw_sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, price int NOT NULL, \
         total bigint) WITH (autovacuum_enabled = false);
         INSERT INTO items (id, qty, price) SELECT i, i % 7 + 1, i % 13 + 1
           FROM generate_series(1, 10000) AS i;",
    )
    .execute(&db.pool)
    .await
    .expect("create items, never analyzed");
    let reltuples = number(
        &db.pool,
        "SELECT reltuples::int8 FROM pg_class WHERE relname = 'items'",
    );
    let unknown = if common::server_version(&db.pool).await < 140000 {
        0
    } else {
        -1
    };
    assert_eq!(
        reltuples.await,
        unknown,
        "reltuples of a table never analyzed"
    );

    let dir = TempDir::new().expect("create a directory for the job file");
    let job = common::write_job(&dir, "fill", &common::items_job("total IS NULL", ""));
    let job = common::path_str(&job);
    let plan = run_backfill(&db.url, &["plan", job]);
    plan.expect_code(0, "plan");
    let estimate = plan
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("pending   "))
        .and_then(|rest| rest.split(' ').next()?.parse::<u64>().ok());
    assert!(estimate.is_some_and(|rows| rows > 0), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("does not use an index"),
        "{}",
        plan.stdout
    );

    run_backfill(&db.url, &["run", job]).expect_code(0, "run");
    assert_eq!(common::wrong_items(&db.pool).await, 0);
    let done = number(
        &db.pool,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'fill'",
    );
    assert_eq!(done.await, 10000);
}
