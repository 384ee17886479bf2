//! The vacuums on PostgreSQL: who holds a lock a vacuum would wait for, and a vacuum run
//! outside a transaction block, as PostgreSQL requires (the statements are
//! `crate::postgres::plan::vacuum`'s).

use sqlx::{AssertSqlSafe, PgConnection, Row as _};

use super::plan::vacuum;
use super::{begin_read_only, statement};

/// Who holds or waits for a lock on `relation` that a vacuum would conflict with, in words
/// (`pid 4242 (autovacuum worker) holds ShareUpdateExclusiveLock`); `None` when nobody does.
pub async fn holder(
    conn: &mut PgConnection,
    relation: &str,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let row = statement(vacuum::LOCK_HOLDER)
        .bind(relation)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let Some(row) = row else { return Ok(None) };
    let pid: i32 = row.try_get(0)?;
    let mode: String = row.try_get(1)?;
    let granted: bool = row.try_get(2)?;
    let kind: String = row.try_get(3)?;
    let app: String = row.try_get(4)?;
    let who = [kind, app]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if granted { "holds" } else { "waits for" };
    let who = if who.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({who})")
    };
    Ok(Some(format!("{who} {verb} {mode}")))
}

/// Vacuums `relation` — the final `VACUUM (ANALYZE)` when `last`, else a pacing one — with
/// `marker` at the front of its text: one statement sent alone, outside a transaction block.
pub async fn run(
    conn: &mut PgConnection,
    relation: &str,
    last: bool,
    index_cleanup: bool,
    marker: &str,
) -> Result<(), sqlx::Error> {
    let sql = if last {
        vacuum::last(relation)
    } else {
        vacuum::pacing(relation, index_cleanup)
    };
    sqlx::raw_sql(AssertSqlSafe(vacuum::marked(marker, &sql)))
        .execute(conn)
        .await?;
    Ok(())
}
