//! The statements about the range rows in `ranges` (see `crate::state::ranges`).

use sqlx::mysql::MySqlRow;
use sqlx::{MySqlConnection, Row as _};

use crate::mysql::session::statement;
use crate::state::stored::{from_json, int4, int8, to_json, unsigned};
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

pub(super) fn decode_range(row: &MySqlRow) -> Result<RangeRow, sqlx::Error> {
    decode_range_from(row, 0)
}

/// A [`RangeRow`] from [`range_columns`] starting at column `at`.
fn decode_range_from(row: &MySqlRow, at: usize) -> Result<RangeRow, sqlx::Error> {
    let get = |i: usize| i + at;
    let id: i32 = row.try_get(get(0))?;
    let owner: Option<String> = row.try_get(get(6))?;
    Ok(RangeRow {
        id: u32::try_from(id).unwrap_or_default(),
        relation: row.try_get(get(1))?,
        lower: from_json(row.try_get(get(2))?)?,
        upper: from_json(row.try_get(get(3))?)?.unwrap_or_default(),
        cursor: from_json(row.try_get(get(4))?)?,
        status: row.try_get(get(5))?,
        lease: owner
            .map(|owner| -> Result<Lease, sqlx::Error> {
                Ok(Lease {
                    owner: Owner(owner),
                    heartbeat_age: row.try_get(get(7))?,
                    timeout_s: row.try_get(get(8))?,
                })
            })
            .transpose()?,
        worker: row
            .try_get::<Option<i32>, _>(get(9))?
            .and_then(|w| u32::try_from(w).ok()),
        rows_done: unsigned(row.try_get(get(10))?),
        batches_done: unsigned(row.try_get(get(11))?),
        keys_estimate: row.try_get::<Option<i64>, _>(get(12))?.map(unsigned),
        keys_walked: unsigned(row.try_get(get(13))?),
        batch_size: row
            .try_get::<Option<i32>, _>(get(14))?
            .and_then(|b| u32::try_from(b).ok()),
        rate: row.try_get(get(15))?,
        note: row.try_get(get(16))?,
    })
}

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
            .map(|r| {
                Ok(Lease {
                    owner: Owner(r.try_get(0)?),
                    heartbeat_age: r.try_get(1)?,
                    timeout_s: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
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
            .map(decode_range)
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
            .map(|row| Ok((row.try_get(0)?, decode_range_from(row, 1)?)))
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
            .map(decode_range)
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
