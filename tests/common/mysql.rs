//! The MySQL and MariaDB side of the harness: a throwaway server of each flavor (skipped,
//! saying why, when its programs are missing), a pool on it, and the `items` table with its
//! per-row update counter that the MySQL tests fill.

use std::io::Write as _;
use std::time::Duration;

use backfill::mysql::throwaway::{Error, Flavor, Server};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _};

/// Both flavors, in the order the tests run them.
pub const FLAVORS: [Flavor; 2] = [Flavor::MariaDb, Flavor::MySql];

/// How long a test waits before it reads `information_schema.INNODB_TRX`, and between two
/// reads. The server answers it from a snapshot that it refreshes only once nobody has read it
/// for 0.1 s, and a run's monitor reads it on every full sample: read sooner, it can show a
/// batch that has already ended.
pub const INNODB_TRX_REFRESH: Duration = Duration::from_millis(300);

/// A started server with a pool on its new `db` database.
pub struct Served {
    pub server: Server,
    pub pool: MySqlPool,
    pub url: String,
}

/// Starts a `flavor` server; `None`, saying why past the harness's capture, when its programs
/// are missing. Any other failure fails the test.
pub async fn start(flavor: Flavor) -> Option<Served> {
    start_with(flavor, &[]).await
}

/// [`start`] with server `options` added to the harness's (see `Server::start_with`).
pub async fn start_with(flavor: Flavor, options: &[&str]) -> Option<Served> {
    let server = match Server::start_with(flavor, options) {
        Ok(server) => server,
        Err(error @ Error::NotFound { .. }) => {
            let _ = writeln!(std::io::stderr(), "skipping {flavor}: {error}");
            return None;
        }
        Err(error) => panic!("start a {flavor} server: {error}"),
    };
    let mut admin = sqlx::MySqlConnection::connect(&server.url(""))
        .await
        .unwrap_or_else(|e| panic!("connect to {flavor}: {e}"));
    sqlx::raw_sql("CREATE DATABASE db")
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create the database on {flavor}: {e}"));
    let url = server.url("db");
    let pool = MySqlPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {flavor}: {e}"));
    Some(Served { server, pool, url })
}

/// Runs `sql` (one statement of the test's setup).
pub async fn exec(pool: &MySqlPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of the first row of `sql`, as a number.
pub async fn number(pool: &MySqlPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT CAST(({sql}) AS SIGNED)")))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The digits 0–9 as a derived table: rows without a recursive CTE, whose depth MySQL caps at
/// 1000 by default.
const DIGITS: &str = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
    UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
    UNION ALL SELECT 8 UNION ALL SELECT 9)";

/// Polls `sql` (a count) until it is above 0, for at most [`super::WAIT`]; a query that fails
/// (a table not made yet) counts as 0, and its error is shown if the wait runs out.
pub async fn wait_for(pool: &MySqlPool, sql: &str) {
    let deadline = std::time::Instant::now() + super::WAIT;
    loop {
        let n =
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT CAST(({sql}) AS SIGNED)")))
                .fetch_one(pool)
                .await;
        if matches!(n, Ok(n) if n > 0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{sql}` stayed 0: {n:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `items(id BIGINT PRIMARY KEY, v INT, done INT NULL, updates INT)` with `rows` rows and a
/// `BEFORE UPDATE` trigger that counts every update of a row in `updates`.
pub async fn create_items(pool: &MySqlPool, rows: i64) {
    exec(
        pool,
        "CREATE TABLE items (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL, \
         done INT NULL, updates INT NOT NULL DEFAULT 0) ENGINE=InnoDB",
    )
    .await;
    exec(
        pool,
        "CREATE TRIGGER items_count BEFORE UPDATE ON items FOR EACH ROW \
         SET NEW.updates = OLD.updates + 1",
    )
    .await;
    exec(
        pool,
        &format!(
            "INSERT INTO items (id, v) SELECT n, n % 97 FROM (SELECT \
             a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d + 1 AS n \
             FROM {DIGITS} a, {DIGITS} b, {DIGITS} c, {DIGITS} e, {DIGITS} f, {DIGITS} g) t \
             WHERE n <= {rows}"
        ),
    )
    .await;
}

/// Every one of `rows` rows filled right and updated exactly once.
pub async fn assert_all_done_once(pool: &MySqlPool, rows: i64) {
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS SIGNED), \
                CAST(SUM(done IS NULL OR done <> v * 2) AS SIGNED), \
                CAST(SUM(updates <> 1) AS SIGNED) FROM items",
    )
    .fetch_one(pool)
    .await
    .expect("read items");
    assert_eq!(
        row,
        (rows, 0, 0),
        "rows, wrong values, rows not updated exactly once"
    );
}

/// The job file that fills `items.done` with `v * 2` in batches as `batch` says, sleeping
/// `sleep` seconds per row (`SLEEP` gives 0) so that a run lasts long enough to act during it.
pub fn items_job(batch: &str, sleep: &str) -> String {
    format!(
        "name = \"items_total\"\ntable = \"items\"\nwhere = \"done IS NULL\"\n\n\
         [set]\ndone = \"v * 2 + SLEEP({sleep})\"\n\n[batch]\n{batch}\n"
    )
}
