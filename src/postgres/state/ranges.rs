//! The statements about the range rows in `ranges` (see `crate::state::ranges`).

use sqlx::{PgConnection, Row as _};

use crate::postgres::{begin_read_only, statement};
use crate::state::decode::{lease, range_row};
use crate::state::stored::{int4, int8};
use crate::state::*;

use super::*;

/// The columns of a [`RangeRow`].
pub(super) const RANGE_COLUMNS: &str = "id, relation, lower::text, upper::text, cursor::text, status, owner, \
    extract(epoch FROM now() - heartbeat_at)::float8, lease_s::float8, worker, rows_done, \
    batches_done, keys_estimate, keys_walked, batch_size, rate, note";

impl StateSql<'_> {
    /// The leases held on the job's ranges, one per owner (its freshest heartbeat).
    pub async fn range_leases(
        &self,
        conn: &mut PgConnection,
        job: &str,
    ) -> Result<Vec<Lease>, StateError> {
        let sql = format!(
            "SELECT owner, min(extract(epoch FROM now() - heartbeat_at))::float8, max(lease_s)::float8 \
               FROM {} WHERE job = $1 AND owner IS NOT NULL GROUP BY owner ORDER BY owner",
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

    /// Serialises changes to the set of the job's ranges until the transaction ends.
    pub async fn lock_layout(&self, tx: &mut PgConnection, job: &str) -> Result<(), StateError> {
        statement("SELECT pg_advisory_xact_lock(hashtext('backfill ranges'), hashtext($1))")
            .bind(job)
            .execute(tx)
            .await
            .map_err(self.db("lock the ranges"))?;
        Ok(())
    }

    /// Every range of the job, by id.
    pub async fn ranges(
        &self,
        conn: &mut PgConnection,
        job: &str,
    ) -> Result<Vec<RangeRow>, StateError> {
        let sql = format!(
            "SELECT {RANGE_COLUMNS} FROM {} WHERE job = $1 ORDER BY id",
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
        conn: &mut PgConnection,
    ) -> Result<Vec<(String, RangeRow)>, StateError> {
        let mut tx = begin_read_only(conn)
            .await
            .map_err(self.db("list the ranges"))?;
        if !self.tables(&mut tx).await?.ranges {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT job, {RANGE_COLUMNS} FROM {} ORDER BY job, id",
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
        conn: &mut PgConnection,
        job: &str,
        id: u32,
    ) -> Result<Option<RangeRow>, StateError> {
        let sql = format!(
            "SELECT {RANGE_COLUMNS} FROM {} WHERE job = $1 AND id = $2::int4",
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
        tx: &mut PgConnection,
        job: &str,
        ranges: &[NewRange],
        range_end: Option<&Key>,
    ) -> Result<(), StateError> {
        let sql = format!(
            "INSERT INTO {} (job, id, relation, lower, upper, cursor, keys_estimate, rows_done, batches_done)
             SELECT $1, n, rel, lo::jsonb, up::jsonb, cur::jsonb, est, rd, bd
               FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[])
                    WITH ORDINALITY AS t(rel, lo, up, cur, est, rd, bd, n)",
            self.ranges
        );
        let json = |k: &Option<Key>| k.as_deref().map(to_json);
        statement(&sql)
            .bind(job)
            .bind(
                ranges
                    .iter()
                    .map(|r| r.relation.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(ranges.iter().map(|r| json(&r.lower)).collect::<Vec<_>>())
            .bind(ranges.iter().map(|r| to_json(&r.upper)).collect::<Vec<_>>())
            .bind(ranges.iter().map(|r| json(&r.cursor)).collect::<Vec<_>>())
            .bind(
                ranges
                    .iter()
                    .map(|r| r.keys_estimate.map(int8))
                    .collect::<Vec<_>>(),
            )
            .bind(ranges.iter().map(|r| int8(r.rows_done)).collect::<Vec<_>>())
            .bind(
                ranges
                    .iter()
                    .map(|r| int8(r.batches_done))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await
            .map_err(self.db("lay out the ranges"))?;
        let end = format!(
            "UPDATE {} SET range_end = $2::jsonb, updated_at = now() WHERE name = $1",
            self.jobs
        );
        statement(&end)
            .bind(job)
            .bind(range_end.map(|k| to_json(k)))
            .execute(tx)
            .await
            .map_err(self.db("lay out the ranges"))?;
        Ok(())
    }
}
