//! The batches of `verify --values` on PostgreSQL (the walk itself is `crate::verify::walk`'s):
//! each batch in a transaction bounded by the job's statement and lock timeouts.

use sqlx::PgConnection;
use tokio::sync::watch;

use crate::failure::Failure;
use crate::plan::Key;
use crate::postgres::plan::compare::Comparison;
use crate::postgres::{begin_bounded, begin_read_only, classify, fetch_key, statement};
use crate::rows::bind_keys;
use crate::verify::walk::{Batches, Counts, differing_rows, walk, walk_error};
use crate::verify::{Difference, Subject, Verdict, VerifyError};

use super::with_past_end;

/// Walks the whole table comparing values (see `crate::verify::walk`), then counts the pending
/// rows past the job's range end. `None` when `shutdown` stopped it.
pub async fn values(
    conn: &mut PgConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Verdict>, VerifyError> {
    let estimate = crate::postgres::preflight::estimate::pending_rows(conn, s.plan, false)
        .await
        .map_err(walk_error(s, None))?;
    let end = {
        let mut tx = begin_read_only(conn).await.map_err(walk_error(s, None))?;
        let end = crate::postgres::table::range_end(&mut tx, &s.plan.walk).await;
        tx.commit().await.map_err(walk_error(s, None))?;
        end.map_err(walk_error(s, None))?
    };
    let mut batches = PgBatches {
        conn: &mut *conn,
        s,
        comparison: Comparison::new(s.job, s.catalog),
    };
    let walked = walk(&mut batches, s, end, estimate.table_rows, shutdown).await?;
    let Some((found, pending)) = walked else {
        return Ok(None);
    };
    let verdict = Verdict {
        pending,
        past_end: None,
        values: Some(found),
        failed: s.failed.clone(),
    };
    with_past_end(conn, s, verdict).await.map(Some)
}

/// The walk's batches on one connection.
struct PgBatches<'a, 'c> {
    conn: &'c mut PgConnection,
    s: &'a Subject<'a>,
    comparison: Comparison,
}

impl Batches for PgBatches<'_, '_> {
    async fn compare(
        &mut self,
        cursor: Option<&[String]>,
        end: &[String],
        size: u32,
    ) -> Result<(Key, Counts), sqlx::Error> {
        let t = &self.s.job.timeouts;
        let (mut tx, _) = begin_bounded(self.conn, t.statement, t.lock, true).await?;
        let after = cursor.unwrap_or_default();
        let walk = self.s.plan.walk.upper_bound.pick(cursor.is_some());
        let query = bind_keys(statement(walk), after.iter().chain(end).map(Some))
            .bind(i64::from(size.saturating_sub(1)));
        let upper = fetch_key(query, &mut tx)
            .await?
            .unwrap_or_else(|| end.to_vec());
        let counts = self.comparison.counts.pick(cursor.is_some());
        let row = bind_keys(statement(counts), after.iter().chain(&upper).map(Some))
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
        let t = &self.s.job.timeouts;
        let (mut tx, _) = begin_bounded(self.conn, t.statement, t.lock, true).await?;
        let after = cursor.unwrap_or_default();
        let sql = self.comparison.differences.pick(cursor.is_some());
        let rows = bind_keys(statement(sql), after.iter().chain(upper).map(Some))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        differing_rows(&rows, self.s)
    }

    fn classify(&self, err: &sqlx::Error) -> Failure {
        classify(err)
    }
}
