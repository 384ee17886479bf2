//! The latency guard's probe on PostgreSQL: one short read-only transaction, timed from its
//! first statement to the end of its `COMMIT`, whose commit waits for the WAL flush as an
//! application's write does.

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, PgConnection};

use super::{begin_probe, statement};
use crate::rows::bind_keys;

/// Takes a transaction id, so that the probe's commit writes a commit record and waits for the
/// WAL flush (`pg_current_xact_id()`, PostgreSQL 13+; allowed in a read-only transaction). Sent
/// as a simple query: one round trip, and no `xid8` column for the driver to look up.
const TAKE_XID: &str = "SELECT pg_current_xact_id()::text";

/// True when a statement ended on its statement or lock timeout: the probe was that slow.
fn timed_out(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "57014" || code == "55P03")
}

/// Times `sql` (bound to `key` when it reads one row by key, and then made to take a
/// transaction id so that its commit waits for the flush) under `timeout`; a probe that runs
/// into its statement or lock timeout counts as that slow.
pub async fn time(
    conn: &mut PgConnection,
    sql: &str,
    key: Option<&[String]>,
    timeout: Duration,
) -> Result<Duration, sqlx::Error> {
    let mut tx = begin_probe(conn, timeout).await?;
    let query = match key {
        Some(key) => bind_keys(statement(sql), key.iter().map(Some)),
        None => statement(sql),
    };
    let started = Instant::now();
    let ran = async {
        query.execute(&mut *tx).await?;
        if key.is_some() {
            sqlx::raw_sql(AssertSqlSafe(TAKE_XID))
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match ran {
        Ok(()) => {
            tx.commit().await?;
            Ok(started.elapsed())
        }
        Err(e) if timed_out(&e) => {
            let latency = started.elapsed();
            tx.rollback().await?;
            Ok(latency)
        }
        Err(e) => Err(e),
    }
}
