//! The statements about the range rows in `ranges` (see `crate::state::ranges`).

use sqlx::{MySqlConnection, Row as _};

use crate::mysql::session::statement;
use crate::state::decode::{lease, range_row};
use crate::state::stored::{int4, int8, to_json};
use crate::state::*;

use super::*;

/// The columns of a [`RangeRow`].
pub(super) fn range_columns() -> String {
    format!(
        "id, relation, `lower`, `upper`, `cursor`, status, owner, {}, CAST(lease_s AS DOUBLE), \
         worker, rows_done, batches_done, keys_estimate, keys_walked, batch_size, rate, note",
        age("heartbeat_at")
    )
}

/// How many ranges one `INSERT` of [`StateSql::lay_out`] writes: well under the 65,535
/// parameters a statement may have.
const LAYOUT_ROWS: usize = 1000;

impl StateSql<'_> {
    /// The leases held on the job's ranges, one per owner (its freshest heartbeat).
    pub async fn range_leases(
        &self,
        conn: &mut MySqlConnection,
        job: &str,
    ) -> Result<Vec<Lease>, StateError> {
        let sql = format!(
            "SELECT owner, MIN({}), CAST(MAX(lease_s) AS DOUBLE) \
               FROM {} WHERE job = ? AND owner IS NOT NULL GROUP BY owner ORDER BY owner",
            age("heartbeat_at"),
            self.ranges
        );
        let rows = statement(&sql)
            .bind(job)
            .fetch_all(conn)
            .await
            .map_err(self.db("read the ranges"))?;
        rows.iter()
            .map(lease)
            .collect::<Result<_, _>>()
            .map_err(self.db("read the ranges"))
    }

    /// Serialises changes to the set of the job's ranges until the transaction ends, by
    /// locking the job's row (MySQL has no transaction-scoped advisory lock; `GET_LOCK` lasts
    /// as long as the session).
    pub async fn lock_layout(&self, tx: &mut MySqlConnection, job: &str) -> Result<(), StateError> {
        self.lock_job(tx, job).await.map(|_| ())
    }

    /// Every range of the job, by id.
    pub async fn ranges(
        &self,
        conn: &mut MySqlConnection,
        job: &str,
    ) -> Result<Vec<RangeRow>, StateError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE job = ? ORDER BY id",
            range_columns(),
            self.ranges
        );
        let rows = statement(&sql)
            .bind(job)
            .fetch_all(conn)
            .await
            .map_err(self.db("read the ranges"))?;
        rows.iter()
            .map(|row| range_row(row, 0))
            .collect::<Result<_, _>>()
            .map_err(self.db("read the ranges"))
    }

    /// Every range of every job, by job and id; empty when the ranges table does not exist
    /// (nothing is created by reading).
    pub async fn all_ranges(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Vec<(String, RangeRow)>, StateError> {
        let mut tx = begin(conn, Mode::Read)
            .await
            .map_err(self.db("list the ranges"))?;
        if !self.tables(&mut tx).await?.ranges {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT job, {} FROM {} ORDER BY job, id",
            range_columns(),
            self.ranges
        );
        let rows = statement(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db("list the ranges"))?;
        let ranges = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, range_row(row, 1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(self.db("list the ranges"))?;
        tx.commit().await.map_err(self.db("list the ranges"))?;
        Ok(ranges)
    }

    /// One range of the job.
    pub async fn range(
        &self,
        conn: &mut MySqlConnection,
        job: &str,
        id: u32,
    ) -> Result<Option<RangeRow>, StateError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE job = ? AND id = ?",
            range_columns(),
            self.ranges
        );
        let row = statement(&sql)
            .bind(job)
            .bind(int4(id))
            .fetch_optional(conn)
            .await
            .map_err(self.db("read a range"))?;
        row.as_ref()
            .map(|row| range_row(row, 0))
            .transpose()
            .map_err(self.db("read a range"))
    }

    /// Lays out the job's first ranges (ids 1, 2, …) and records the job's overall range end.
    /// The caller holds [`Store::lock_layout`] and has seen that the job has no ranges yet.
    pub async fn lay_out(
        &self,
        tx: &mut MySqlConnection,
        job: &str,
        ranges: &[NewRange],
        range_end: Option<&Key>,
    ) -> Result<(), StateError> {
        for (chunk, part) in ranges.chunks(LAYOUT_ROWS).enumerate() {
            let rows = vec![format!("(?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW})"); part.len()];
            let sql = format!(
                "INSERT INTO {} (job, id, relation, `lower`, `upper`, `cursor`, keys_estimate, \
                 rows_done, batches_done, updated_at) VALUES {}",
                self.ranges,
                rows.join(", ")
            );
            let mut insert = statement(&sql);
            for (n, r) in part.iter().enumerate() {
                let id = chunk * LAYOUT_ROWS + n + 1;
                insert = insert
                    .bind(job)
                    .bind(i32::try_from(id).unwrap_or(i32::MAX))
                    .bind(r.relation.clone())
                    .bind(r.lower.as_deref().map(to_json))
                    .bind(to_json(&r.upper))
                    .bind(r.cursor.as_deref().map(to_json))
                    .bind(r.keys_estimate.map(int8))
                    .bind(int8(r.rows_done))
                    .bind(int8(r.batches_done));
            }
            insert
                .execute(&mut *tx)
                .await
                .map_err(self.db("lay out the ranges"))?;
        }
        let end = format!(
            "UPDATE {} SET range_end = ?, updated_at = {NOW} WHERE name = ?",
            self.jobs
        );
        statement(&end)
            .bind(range_end.map(|k| to_json(k)))
            .bind(job)
            .execute(tx)
            .await
            .map_err(self.db("lay out the ranges"))?;
        Ok(())
    }
}
