//! The statements about the `failures` table (see `crate::state::failures`).

use sqlx::PgConnection;

use crate::postgres::{begin_read_only, statement};
use crate::state::decode::failed_row;
use crate::state::*;

use super::*;

/// The columns of a [`FailedRow`], after `seq`.
const COLUMNS: &str = "seq, columns::text, key::text, relation, sqlstate, message, notes, attempts, \
    extract(epoch FROM now() - failed_at)::float8";

impl StateSql<'_> {
    /// The statement that creates the table (run by [`Store::ensure`]). `seq` orders the rows
    /// as they were first recorded, for listing and for retrying them page by page.
    pub(super) fn failures_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                job text NOT NULL REFERENCES {} (name) ON DELETE CASCADE,
                key jsonb NOT NULL,
                seq bigint GENERATED ALWAYS AS IDENTITY,
                relation text NOT NULL,
                columns jsonb NOT NULL,
                sqlstate text NOT NULL,
                message text NOT NULL,
                notes text,
                attempts int NOT NULL DEFAULT 1,
                first_failed_at timestamptz NOT NULL DEFAULT now(),
                failed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (job, key))",
            self.failures, self.jobs
        )
    }

    /// Records that `failed` cannot be backfilled, in the caller's transaction (the one whose
    /// checkpoint moves past it, or a retry's); a row recorded before keeps its place and
    /// counts one more attempt, with the new message.
    pub async fn record_failure(
        &self,
        tx: &mut PgConnection,
        job: &str,
        failed: &FailedRow,
    ) -> Result<(), StateError> {
        let sql = format!(
            "INSERT INTO {} AS f (job, key, relation, columns, sqlstate, message, notes)
             VALUES ($1, $2::jsonb, $3, $4::jsonb, $5, $6, $7)
             ON CONFLICT (job, key) DO UPDATE SET sqlstate = excluded.sqlstate,
                    message = excluded.message, notes = excluded.notes,
                    attempts = f.attempts + 1, failed_at = now()",
            self.failures
        );
        statement(&sql)
            .bind(job)
            .bind(to_json(&failed.key))
            .bind(&failed.relation)
            .bind(to_json(&failed.columns))
            .bind(&failed.sqlstate)
            .bind(&failed.message)
            .bind(failed.notes.as_deref())
            .execute(tx)
            .await
            .map_err(self.db("record a failed row"))?;
        Ok(())
    }

    /// Up to `limit` of the job's failed rows recorded after `after` (a `seq`; `None`: from
    /// the first), in the order they were first recorded, each with its `seq`; in the
    /// caller's transaction.
    pub async fn failures_after(
        &self,
        conn: &mut PgConnection,
        job: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, FailedRow)>, StateError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            self.failures
        );
        let rows = statement(&sql)
            .bind(job)
            .bind(after.unwrap_or(i64::MIN))
            .bind(i64::from(limit))
            .fetch_all(conn)
            .await
            .map_err(self.db("read the failed rows"))?;
        rows.iter()
            .map(failed_row)
            .collect::<Result<_, _>>()
            .map_err(self.db("read the failed rows"))
    }

    /// The first `limit` of the job's failed rows, in the order they were first recorded;
    /// empty when the table does not exist yet (nothing is created by reading).
    pub async fn failures(
        &self,
        conn: &mut PgConnection,
        job: &str,
        limit: u32,
    ) -> Result<Vec<FailedRow>, StateError> {
        let mut tx = begin_read_only(conn)
            .await
            .map_err(self.db("read the failed rows"))?;
        let tables = self.tables(&mut tx).await?;
        let rows = if tables.failures {
            self.failures_after(&mut tx, job, None, limit).await?
        } else {
            vec![]
        };
        tx.commit().await.map_err(self.db("read the failed rows"))?;
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    }

    /// A failed row filled at last (`run --retry-failures`), in the transaction that filled
    /// it: it leaves the table, and its `rows` (0 when it no longer matched `where`) count
    /// as one batch of the job's — as long as `owner` still holds the job's lease.
    pub async fn failure_filled(
        &self,
        tx: &mut PgConnection,
        job: &str,
        owner: &Owner,
        key: &[String],
        rows: u64,
    ) -> Result<(), StateError> {
        let sql = format!(
            "WITH gone AS (DELETE FROM {} WHERE job = $1 AND key = $3::jsonb)
             UPDATE {} SET rows_done = rows_done + $4::int8, batches_done = batches_done + 1,
                    updated_at = now()
              WHERE name = $1 AND owner = $2",
            self.failures, self.jobs
        );
        let kept = statement(&sql)
            .bind(job)
            .bind(&owner.0)
            .bind(to_json(key))
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.db("record a filled row"))?
            .rows_affected();
        if kept == 0 {
            return Err(self.lease_lost(tx, job).await);
        }
        Ok(())
    }

    /// Forgets every failed row of the job (`run --restart` walks them all again), in the
    /// caller's transaction.
    pub(super) async fn forget_failures(
        &self,
        tx: &mut PgConnection,
        job: &str,
    ) -> Result<(), StateError> {
        let sql = format!("DELETE FROM {} WHERE job = $1", self.failures);
        statement(&sql)
            .bind(job)
            .execute(tx)
            .await
            .map_err(self.db("forget the failed rows"))?;
        Ok(())
    }
}
