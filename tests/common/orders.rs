//! The `orders` table whose `total_cents` a job fills from `qty * price_cents`: what the tests
//! of the operator's commands, `verify` and `/metrics` run against.

use tempfile::TempDir;

use super::{TestDb, fresh_database};

/// The expression the job fills `total_cents` with.
pub const TOTAL: &str = "qty::bigint * price_cents";

/// A fresh database with `rows` analyzed orders, none of them filled, and a directory for the
/// job files.
pub async fn orders(rows: i64) -> (TestDb, TempDir) {
    let db = fresh_database().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, price_cents int NOT NULL,
                              total_cents bigint);
         INSERT INTO orders (id, qty, price_cents)
              SELECT g, g % 7 + 1, g % 1000 + 5 FROM generate_series(1, {rows}) g;
         ANALYZE orders;"
    )))
    .execute(&db.pool)
    .await
    .expect("create orders");
    (db, TempDir::new().expect("a directory for job files"))
}

/// The job filling `total_cents` with `set`, in batches of at most `max` keys `pause` apart.
pub fn orders_job(set: &str, max: u32, pause: &str) -> String {
    format!(
        "table = \"orders\"
where = \"total_cents IS NULL\"

[set]
total_cents = \"{set}\"

[batch]
size = {max}
min = {min}
max = {max}
pause = \"{pause}\"
",
        min = max / 5
    )
}
