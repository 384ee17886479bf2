//! The batches of `verify --values` on MySQL and MariaDB (the walk itself is
//! `crate::verify::walk`'s): each batch in a transaction whose lock waits the job's lock
//! timeout bounds and whose statements its statement timeout bounds (MariaDB's
//! `max_statement_time`, MySQL's `max_execution_time`, which bounds only `SELECT`s — all the
//! walk runs).

use std::time::Duration;

use sqlx::mysql::MySqlArguments;
use sqlx::query::Query;
use sqlx::{MySql, MySqlConnection, Row as _};
use tokio::sync::watch;

use crate::db::{Failure, classify};
use crate::mysql::Flavor;
use crate::mysql::plan::compare::{Comparison, comparison};
use crate::mysql::session::{begin_reading, statement};
use crate::mysql::table::{bind_compared, range_end, relation_size, upper_bound};
use crate::plan::{Key, Statements};
use crate::verify::walk::{Batches, Counts, differing_rows, walk, walk_error};
use crate::verify::{Difference, Subject, Verdict, VerifyError};

/// Walks the whole table comparing values (see `crate::verify::walk`) with the session's
/// statements bounded, then counts the pending rows past the job's range end. `None` when
/// `shutdown` stopped it.
pub async fn values(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Verdict>, VerifyError> {
    let bound = Bound::set(conn, s.job.timeouts.statement)
        .await
        .map_err(walk_error(s, None))?;
    let walked = walk_table(conn, s, shutdown).await;
    bound.reset(conn).await.map_err(walk_error(s, None))?;
    let Some((found, pending)) = walked? else {
        return Ok(None);
    };
    let past_end = super::past_end(conn, s, pending)
        .await
        .map_err(|source| VerifyError::count(s, source))?;
    Ok(Some(Verdict {
        pending,
        past_end,
        values: Some(found),
        failed: s.failed.clone(),
    }))
}

/// The walk itself, from the table's size and its range end: what it found and the rows still
/// pending; `None` when stopped.
async fn walk_table(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(crate::verify::Values, u64)>, VerifyError> {
    let (rows, end) = {
        let mut tx = begin_reading(conn, s.job.timeouts.lock, true)
            .await
            .map_err(walk_error(s, None))?;
        let rows = relation_size(&mut tx, &s.plan.table)
            .await
            .map(|size| size.rows);
        let end = range_end(&mut tx, &s.plan.walk).await;
        tx.commit().await.map_err(walk_error(s, None))?;
        (
            rows.map_err(walk_error(s, None))?,
            end.map_err(walk_error(s, None))?,
        )
    };
    let mut batches = MySqlBatches {
        conn,
        s,
        comparison: comparison(s.job, s.catalog),
    };
    walk(&mut batches, s, end, rows, shutdown).await
}

/// The session variable that bounds the walk's statements, set for the walk and put back to
/// the server's default after it.
struct Bound(Option<&'static str>);

impl Bound {
    /// Bounds every statement of this session by `limit` (none when zero): MariaDB's
    /// `max_statement_time` in seconds, MySQL's `max_execution_time` in milliseconds.
    async fn set(conn: &mut MySqlConnection, limit: Duration) -> Result<Bound, sqlx::Error> {
        if limit.is_zero() {
            return Ok(Bound(None));
        }
        let version: String = statement("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let (variable, value) = match Flavor::of_version(&version) {
            Flavor::MariaDb => ("max_statement_time", limit.as_secs_f64().to_string()),
            Flavor::MySql => ("max_execution_time", limit.as_millis().max(1).to_string()),
        };
        statement(&format!("SET SESSION {variable} = {value}"))
            .execute(&mut *conn)
            .await?;
        Ok(Bound(Some(variable)))
    }

    async fn reset(self, conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
        if let Some(variable) = self.0 {
            statement(&format!("SET SESSION {variable} = DEFAULT"))
                .execute(conn)
                .await?;
        }
        Ok(())
    }
}

/// A range's statement with its binds: the lower key when there is one, then the upper.
fn ranged(
    sql: &Statements,
    cursor: Option<&[String]>,
    upper: &[String],
) -> Query<'static, MySql, MySqlArguments> {
    let mut query = statement(sql.pick(cursor.is_some()));
    if let Some(cursor) = cursor {
        query = bind_compared(query, cursor);
    }
    bind_compared(query, upper)
}

/// The walk's batches on one connection, whose statements [`Bound`] bounds.
struct MySqlBatches<'a, 'c> {
    conn: &'c mut MySqlConnection,
    s: &'a Subject<'a>,
    comparison: Comparison,
}

impl Batches for MySqlBatches<'_, '_> {
    async fn compare(
        &mut self,
        cursor: Option<&[String]>,
        end: &[String],
        size: u32,
    ) -> Result<(Key, Counts), sqlx::Error> {
        let mut tx = begin_reading(self.conn, self.s.job.timeouts.lock, true).await?;
        let upper = upper_bound(&mut tx, &self.s.plan.walk, cursor, end, u64::from(size))
            .await?
            .unwrap_or_else(|| end.to_vec());
        let row = ranged(&self.comparison.counts, cursor, &upper)
            .fetch_one(&mut *tx)
            .await?;
        let counts = Counts::read(&row)?;
        tx.commit().await?;
        Ok((upper, counts))
    }

    async fn differences(
        &mut self,
        cursor: Option<&[String]>,
        upper: &[String],
        limit: usize,
    ) -> Result<Vec<Difference>, sqlx::Error> {
        let mut tx = begin_reading(self.conn, self.s.job.timeouts.lock, true).await?;
        let rows = ranged(&self.comparison.differences, cursor, upper)
            .bind(u64::try_from(limit).unwrap_or(u64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        differing_rows(&rows, self.s)
    }

    fn classify(&self, err: &sqlx::Error) -> Failure {
        classify(err)
    }
}
