//! The statements of a worker's hold on a range: claim, split, checkpoint, finish (see
//! `crate::state::checkpoint`).

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use crate::postgres::sql::JsonbKey;

use super::jobs::keys_left_sql;
use super::ranges::RANGE_COLUMNS;
use crate::state::decode::{progress, range_row};
use crate::state::stored::{int4, int8};
use sqlx::PgConnection;

use crate::postgres::statement;
use crate::state::*;

use super::*;

impl Holder<'_> {
    /// Binds who holds a range — owner, worker number, lease timeout in seconds — as the next
    /// three parameters of `query`.
    fn bind<'q>(
        &self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(self.owner.0.clone())
            .bind(int4(self.worker))
            .bind(timeout_secs(self.lease_timeout))
    }
}

/// The statements of a job's ranges that compare keys, built once with the key's types.
#[derive(Debug, Clone)]
pub struct RangeSql {
    checkpoint: String,
    split: String,
}

impl RangeSql {
    /// The statements for a key whose columns have the SQL types `key_types`.
    pub fn new(store: &Store, key_types: &[String]) -> RangeSql {
        let (ranges, jobs) = (&store.ranges, &store.jobs);
        let key = |expr| JsonbKey {
            expr,
            types: key_types,
        };
        // The ranges' sums come from the statement's snapshot, before its own update (and
        // before the batches of other workers that the job row's lock made it wait for, which
        // `j` counts): the batch's own keys and rows are added there, and the ratio of rows to
        // keys is taken within that one snapshot.
        let checkpoint = format!(
            "WITH r AS (
                 UPDATE {ranges} SET cursor = $4::jsonb, rows_done = rows_done + $5::int8,
                        batches_done = batches_done + 1, keys_walked = keys_walked + $6::int4,
                        batch_size = $6::int4, updated_at = now()
                  WHERE job = $1 AND id = $2::int4 AND owner = $3 AND status = 'running'
                    AND {} <= {}
                 RETURNING 1),
             j AS (
                 UPDATE {jobs} SET rows_done = rows_done + $5::int8, batches_done = batches_done + 1,
                        batch_size = $6::int4, updated_at = now()
                  WHERE name = $1 AND EXISTS (SELECT FROM r)
                 RETURNING rows_done, batches_done)
             SELECT j.rows_done, j.batches_done, k.keys_walked, k.rows_walked, k.keys_left
               FROM j, (SELECT coalesce(sum(keys_walked), 0)::int8 + $6::int4 AS keys_walked,
                               coalesce(sum(rows_done), 0)::int8 + $5::int8 AS rows_walked,
                               {keys_left} AS keys_left
                          FROM {ranges} WHERE job = $1) AS k",
            key("$4::jsonb"),
            key("upper"),
            keys_left = keys_left_sql("CASE WHEN id = $2::int4 THEN $6::int4 ELSE 0 END"),
        );
        let split = format!(
            "UPDATE {ranges} SET upper = $4::jsonb, keys_estimate = keys_walked + $5::int8, updated_at = now()
              WHERE job = $1 AND id = $2::int4 AND status = 'running' AND upper = $3::jsonb
                AND (cursor IS NULL OR {} < {}) AND {} < {}",
            key("cursor"),
            key("$4::jsonb"),
            key("$4::jsonb"),
            key("upper"),
        );
        RangeSql { checkpoint, split }
    }

    /// The checkpoint statement, for `plan` to show.
    pub fn checkpoint_sql(&self) -> &str {
        &self.checkpoint
    }
}

impl StateSql<'_> {
    /// Takes the first range that is free, or whose holder is gone: its lease went stale, or
    /// its owner is among `gone` (processes of this host that no longer exist). Ranges locked
    /// by another claimer are skipped, never waited for.
    pub async fn claim_range(
        &self,
        conn: &mut PgConnection,
        w: &Holder<'_>,
        gone: &[Owner],
    ) -> Result<Option<RangeRow>, StateError> {
        let sql = format!(
            "WITH pick AS (
                 SELECT id AS picked FROM {ranges}
                  WHERE job = $1 AND status <> 'done'
                    AND (owner IS NULL OR owner = ANY ($5::text[])
                         OR heartbeat_at < now() - make_interval(secs => coalesce(lease_s, {default})))
                  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             UPDATE {ranges} r SET owner = $2, worker = $3::int4, lease_s = $4::int4, heartbeat_at = now(),
                    status = 'running', rate = NULL, note = NULL, updated_at = now()
               FROM pick WHERE r.job = $1 AND r.id = pick.picked
             RETURNING {RANGE_COLUMNS}",
            ranges = self.ranges,
            default = LEASE_TIMEOUT.as_secs(),
        );
        let row = w
            .bind(statement(&sql).bind(w.job))
            .bind(gone.iter().map(|o| o.0.clone()).collect::<Vec<_>>())
            .fetch_optional(conn)
            .await
            .map_err(self.db("claim a range"))?;
        row.as_ref()
            .map(|row| range_row(row, 0))
            .transpose()
            .map_err(self.db("claim a range"))
    }

    /// Splits a running range as `split` says and takes the upper part, in the caller's
    /// transaction (which holds [`Store::lock_layout`]). `None` when the victim moved on in
    /// the meantime: its upper end changed, or its cursor passed the split point.
    pub async fn split(
        &self,
        tx: &mut PgConnection,
        sql: &RangeSql,
        w: &Holder<'_>,
        split: &Split,
    ) -> Result<Option<RangeRow>, StateError> {
        let shrunk = statement(&sql.split)
            .bind(w.job)
            .bind(int4(split.victim))
            .bind(to_json(&split.upper))
            .bind(to_json(&split.at))
            .bind(split.keys_kept.map(int8))
            .execute(&mut *tx)
            .await
            .map_err(self.db("split a range"))?
            .rows_affected();
        if shrunk == 0 {
            return Ok(None);
        }
        let insert = format!(
            "INSERT INTO {ranges} (job, id, relation, lower, upper, cursor, status, owner, worker,
                                   heartbeat_at, lease_s, keys_estimate)
             SELECT $1, coalesce(max(id), 0) + 1, $2, $3::jsonb, $4::jsonb, $3::jsonb, 'running', $5,
                    $6::int4, now(), $7::int4, $8::int8
               FROM {ranges} WHERE job = $1
             RETURNING {RANGE_COLUMNS}",
            ranges = self.ranges
        );
        let row = w
            .bind(
                statement(&insert)
                    .bind(w.job)
                    .bind(&split.relation)
                    .bind(to_json(&split.at))
                    .bind(to_json(&split.upper)),
            )
            .bind(split.keys_taken.map(int8))
            .fetch_one(tx)
            .await
            .map_err(self.db("split a range"))?;
        range_row(&row, 0)
            .map(Some)
            .map_err(self.db("split a range"))
    }

    /// The checkpoint, run inside the batch's own transaction: the range's cursor and
    /// counters and the job's counters move with the batch, or not at all. Fails with
    /// `RangeTaken` if another process took the range over, `RangeShrunk` if a split moved
    /// its upper end below `cursor` (the batch must then roll back and run again), and
    /// `UnknownJob` after a reset.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint(
        &self,
        tx: &mut PgConnection,
        sql: &RangeSql,
        w: &Holder<'_>,
        range: u32,
        cursor: &[String],
        rows: u64,
        batch_size: u32,
    ) -> Result<Progress, StateError> {
        let done = statement(&sql.checkpoint)
            .bind(w.job)
            .bind(int4(range))
            .bind(&w.owner.0)
            .bind(to_json(cursor))
            .bind(int8(rows))
            .bind(int4(batch_size))
            .fetch_optional(&mut *tx)
            .await
            .and_then(|row| row.as_ref().map(progress).transpose())
            .map_err(self.db("checkpoint"))?;
        match done {
            Some(progress) => Ok(progress),
            None => Err(self.why_not_mine(tx, w, range).await),
        }
    }

    /// Marks a walked range done and gives up its lease.
    pub async fn finish_range(
        &self,
        conn: &mut PgConnection,
        w: &Holder<'_>,
        range: u32,
    ) -> Result<(), StateError> {
        let sql = format!(
            "UPDATE {} SET status = 'done', owner = NULL, worker = NULL, heartbeat_at = NULL, \
             rate = NULL, note = NULL, updated_at = now() \
             WHERE job = $1 AND id = $2::int4 AND owner = $3",
            self.ranges
        );
        let done = statement(&sql)
            .bind(w.job)
            .bind(int4(range))
            .bind(&w.owner.0)
            .execute(&mut *conn)
            .await
            .map_err(self.db("finish a range"))?
            .rows_affected();
        if done > 0 {
            return Ok(());
        }
        Err(self.why_not_mine(conn, w, range).await)
    }

    /// Why a statement that required our lease on `range` changed nothing.
    async fn why_not_mine(
        &self,
        conn: &mut PgConnection,
        w: &Holder<'_>,
        range: u32,
    ) -> StateError {
        match self.range(conn, w.job, range).await {
            Ok(now) => w.why_not_mine(range, now, &self.jobs),
            Err(e) => e,
        }
    }
}
