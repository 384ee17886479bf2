//! The statements about the `failures` table (see `crate::state::failures`).

use sqlx::MySqlConnection;

use crate::mysql::session::statement;
use crate::state::decode::failed_row;
use crate::state::stored::{int8, to_json};
use crate::state::*;

use super::*;

/// The columns of a [`FailedRow`], after `seq`.
fn columns() -> String {
    format!(
        "seq, `columns`, `key`, relation, `sqlstate`, message, notes, attempts, {}",
        age("failed_at")
    )
}

impl StateSql<'_> {
    /// The statement that creates the table (run by [`Store::ensure`]), with `table`'s engine
    /// and character set. `seq` orders the rows as they were first recorded, for listing and
    /// for retrying them page by page. A key is one row per job: InnoDB cannot index a
    /// `LONGTEXT` whole, so the unique index is on its SHA-256, a stored generated column.
    pub(super) fn failures_ddl(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                job VARCHAR(255) NOT NULL,
                `key` LONGTEXT NOT NULL,
                key_hash BINARY(32) AS (UNHEX(SHA2(`key`, 256))) STORED,
                relation TEXT NOT NULL,
                `columns` LONGTEXT NOT NULL,
                `sqlstate` VARCHAR(16) NOT NULL,
                message TEXT NOT NULL,
                notes TEXT,
                attempts INT NOT NULL DEFAULT 1,
                first_failed_at DATETIME(6) NOT NULL,
                failed_at DATETIME(6) NOT NULL,
                UNIQUE KEY job_key (job, key_hash),
                KEY job_seq (job, seq),
                FOREIGN KEY (job) REFERENCES {} (name) ON DELETE CASCADE) {table}",
            self.failures, self.jobs
        )
    }

    /// Records that `failed` cannot be backfilled, in the caller's transaction (the one whose
    /// checkpoint moves past it, or a retry's); a row recorded before keeps its place and
    /// counts one more attempt, with the new message.
    pub async fn record_failure(
        &self,
        tx: &mut MySqlConnection,
        job: &str,
        failed: &FailedRow,
    ) -> Result<(), StateError> {
        // The new values are bound again rather than read with `VALUES()`, which MySQL
        // deprecates, or an alias, which MariaDB lacks.
        let sql = format!(
            "INSERT INTO {} (job, `key`, relation, `columns`, `sqlstate`, message, notes,
                             first_failed_at, failed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}, {NOW})
             ON DUPLICATE KEY UPDATE `sqlstate` = ?, message = ?, notes = ?,
                    attempts = attempts + 1, failed_at = {NOW}",
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
        conn: &mut MySqlConnection,
        job: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, FailedRow)>, StateError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?",
            columns(),
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
        conn: &mut MySqlConnection,
        job: &str,
        limit: u32,
    ) -> Result<Vec<FailedRow>, StateError> {
        let mut tx = begin(conn, Mode::Read)
            .await
            .map_err(self.db("read the failed rows"))?;
        let rows = if self.tables(&mut tx).await?.failures {
            self.failures_after(&mut tx, job, None, limit).await?
        } else {
            vec![]
        };
        tx.commit().await.map_err(self.db("read the failed rows"))?;
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    }

    /// A failed row filled at last (`run --retry-failures`), in the transaction that filled
    /// it: it leaves the table, and its `rows` (0 when it no longer matched `where`) count
    /// as one batch of the job's — as long as `owner` still holds the job's lease (the job's
    /// row is written first, as every transaction here takes it before the others).
    pub async fn failure_filled(
        &self,
        tx: &mut MySqlConnection,
        job: &str,
        owner: &Owner,
        key: &[String],
        rows: u64,
    ) -> Result<(), StateError> {
        let count = format!(
            "UPDATE {} SET rows_done = rows_done + ?, batches_done = batches_done + 1, \
             updated_at = {NOW} WHERE name = ? AND owner = ?",
            self.jobs
        );
        let kept = statement(&count)
            .bind(int8(rows))
            .bind(job)
            .bind(&owner.0)
            .execute(&mut *tx)
            .await
            .map_err(self.db("record a filled row"))?
            .rows_affected();
        if kept == 0 {
            return Err(self.lease_lost(tx, job).await);
        }
        let key = to_json(key);
        let gone = format!(
            "DELETE FROM {} WHERE job = ? AND key_hash = UNHEX(SHA2(?, 256)) AND `key` = ?",
            self.failures
        );
        statement(&gone)
            .bind(job)
            .bind(&key)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(self.db("record a filled row"))?;
        Ok(())
    }

    /// Forgets every failed row of the job (`run --restart` walks them all again), in the
    /// caller's transaction.
    pub(super) async fn forget_failures(
        &self,
        tx: &mut MySqlConnection,
        job: &str,
    ) -> Result<(), StateError> {
        let sql = format!("DELETE FROM {} WHERE job = ?", self.failures);
        statement(&sql)
            .bind(job)
            .execute(tx)
            .await
            .map_err(self.db("forget the failed rows"))?;
        Ok(())
    }
}
