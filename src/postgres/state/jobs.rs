//! The statements about the job row in `jobs` (see `crate::state::jobs` for what it holds).

use std::time::Duration;

use sqlx::{PgConnection, Row as _};

use crate::postgres::{begin_bounded, begin_read_only, begin_state, statement};
use crate::state::*;

use super::*;
use crate::state::decode::job_row;
use crate::state::stored::int8;

/// The columns of a [`JobRow`], with the ranges' sums and the failed rows' count when those
/// tables exist.
fn select_sql(store: &Store, tables: Tables) -> String {
    let jobs = &store.jobs;
    // Columns an older version's schema lacks read as NULL until a run adds them.
    let added = |column: &str, sql: &'static str, null: &'static str| {
        if tables.has(column) { sql } else { null }
    };
    let lease_s = added("lease_s", "j.lease_s::float8", "NULL::float8");
    let heap_bytes_start = added("heap_bytes_start", "j.heap_bytes_start", "NULL::int8");
    let heap_bytes_end = added("heap_bytes_end", "j.heap_bytes_end", "NULL::int8");
    let estimate = added(
        "estimate_table_rows",
        "j.estimate_rows, j.estimate_rows_done, j.estimate_exact, j.estimate_table_rows",
        "NULL::int8, NULL::int8, NULL::bool, NULL::int8",
    );
    let settings = added("settings", "j.settings", "NULL::text");
    let common = format!(
        "j.name, coalesce(j.table_name, ''), j.definition_hash, j.status, \
         j.range_end::text, j.rows_done, j.batches_done, j.batch_size, j.owner, \
         extract(epoch FROM now() - j.heartbeat_at)::float8, {lease_s}, \
         extract(epoch FROM now() - j.updated_at)::float8, j.control, j.last_error, \
         {heap_bytes_start}"
    );
    let failures = if tables.failures {
        format!(
            "(SELECT count(*) FROM {} f WHERE f.job = j.name)::int8",
            store.failures
        )
    } else {
        "0::int8".to_owned()
    };
    if !tables.ranges {
        return format!(
            "SELECT {common}, j.cursor::text, j.rate, j.note, 0::int8, 0::int8, 0::int8, 0::int8, \
             0::int8, 0::int8, NULL::int8, {failures}, {heap_bytes_end}, {estimate}, {settings}, \
             0::int8 FROM {jobs} j"
        );
    }
    let ranges = &store.ranges;
    format!(
        "SELECT {common}, CASE WHEN r.ranges = 0 THEN j.cursor::text ELSE r.cursor END, \
                r.rate, coalesce(r.note, j.note), r.ranges, r.done, r.workers, r.processes, r.hosts, \
                r.keys_walked, r.keys_left, {failures}, {heap_bytes_end}, {estimate}, {settings}, \
                r.rows_walked \
           FROM {jobs} j LEFT JOIN LATERAL (
                SELECT count(*) AS ranges,
                       count(*) FILTER (WHERE status = 'done') AS done,
                       CASE WHEN count(*) = 1 THEN min(cursor::text) END AS cursor,
                       sum(rate) FILTER (WHERE live) AS rate,
                       min(note) FILTER (WHERE live) AS note,
                       count(*) FILTER (WHERE live) AS workers,
                       count(DISTINCT owner) FILTER (WHERE live) AS processes,
                       count(DISTINCT split_part(owner, ':', 1)) FILTER (WHERE live) AS hosts,
                       coalesce(sum(keys_walked), 0)::int8 AS keys_walked,
                       coalesce(sum(rows_done), 0)::int8 AS rows_walked,
                       {keys_left} AS keys_left
                  FROM (SELECT x.*, x.owner IS NOT NULL AND x.heartbeat_at >
                               now() - make_interval(secs => coalesce(x.lease_s, {default}))
                               AS live
                          FROM {ranges} x WHERE x.job = j.name) AS x) AS r ON true",
        default = LEASE_TIMEOUT.as_secs(),
        keys_left = keys_left_sql("0"),
    )
}

/// Keys left in a job's ranges that are not done (the ranges aliased as a whole, unqualified),
/// as far as their estimates know: NULL when a range has none. `walking` adds keys to a range's
/// walked ones — a checkpoint's batch, which its own statement does not see yet.
pub(super) fn keys_left_sql(walking: &str) -> String {
    format!(
        "CASE WHEN count(*) > 0 AND (bool_and(keys_estimate IS NOT NULL)
                                     FILTER (WHERE status <> 'done')) IS NOT FALSE
              THEN coalesce(sum(greatest(keys_estimate - keys_walked - {walking}, 0))
                            FILTER (WHERE status <> 'done'), 0) END::int8"
    )
}

impl StateSql<'_> {
    /// Reads one job's row in the caller's transaction (locking it when `lock` is set).
    pub async fn fetch(
        &self,
        conn: &mut PgConnection,
        name: &str,
        lock: bool,
    ) -> Result<JobRow, StateError> {
        let tables = self.tables(conn).await?;
        let sql = format!(
            "{} WHERE j.name = $1{}",
            select_sql(self, tables),
            if lock { " FOR UPDATE OF j" } else { "" }
        );
        let row = match statement(&sql).bind(name).fetch_optional(&mut *conn).await {
            Err(e) if is_missing_table(&e) => None,
            other => other.map_err(self.db("read"))?,
        };
        match row {
            Some(row) => job_row(&row).map_err(self.db("read")),
            None => Err(StateError::UnknownJob {
                name: name.into(),
                table: self.jobs.clone(),
            }),
        }
    }

    /// Takes the job's lease if [`admit`] allows it, creating its row on first use (or only
    /// checks that it may join), and returns the row as it now stands with the admission.
    /// A restart forgets the job's ranges; a run lays out new ones when there are none.
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        claim: &Claim<'_>,
    ) -> Result<(Admission, JobRow), StateError> {
        let mut tx = begin_state(conn).await.map_err(self.db("claim"))?;
        let insert = format!(
            "INSERT INTO {} (name, table_name, definition_hash, status) VALUES ($1, $2, $3, 'pending') \
             ON CONFLICT (name) DO NOTHING",
            self.jobs
        );
        statement(&insert)
            .bind(claim.name)
            .bind(claim.table_name)
            .bind(claim.definition_hash)
            .execute(&mut *tx)
            .await
            .map_err(self.db("claim"))?;
        let row = self.fetch(&mut tx, claim.name, true).await?;
        let leases = self.range_leases(&mut tx, claim.name).await?;
        let admission = admit(&row, &leases, claim)?;
        if matches!(admission, Admission::AlreadyDone | Admission::Join) {
            tx.commit().await.map_err(self.db("claim"))?;
            return Ok((admission, row));
        }
        let restart = admission == Admission::Restart;
        if restart {
            let forget = format!("DELETE FROM {} WHERE job = $1", self.ranges);
            statement(&forget)
                .bind(claim.name)
                .execute(&mut *tx)
                .await
                .map_err(self.db("claim"))?;
            self.forget_failures(&mut tx, claim.name).await?;
        }
        let take = format!(
            "UPDATE {} SET owner = $2, heartbeat_at = now(), lease_s = $6, updated_at = now(), status = 'running', \
             control = CASE WHEN control = 'pause' THEN control END, last_error = NULL, note = NULL, rate = NULL, table_name = $3, \
             started_at = CASE WHEN $4 THEN now() ELSE coalesce(started_at, now()) END, \
             definition_hash = $5, \
             cursor = CASE WHEN $4 THEN NULL ELSE cursor END, \
             range_end = CASE WHEN $4 THEN NULL ELSE range_end END, \
             rows_done = CASE WHEN $4 THEN 0 ELSE rows_done END, \
             batches_done = CASE WHEN $4 THEN 0 ELSE batches_done END, \
             heap_bytes_start = CASE WHEN $4 THEN $7 ELSE coalesce(heap_bytes_start, $7) END, \
             heap_bytes_end = NULL, finished_at = NULL, \
             estimate_rows = CASE WHEN $4 THEN NULL ELSE estimate_rows END, settings = $8 \
             WHERE name = $1",
            self.jobs
        );
        statement(&take)
            .bind(claim.name)
            .bind(&claim.owner.0)
            .bind(claim.table_name)
            .bind(restart)
            .bind(claim.definition_hash)
            .bind(timeout_secs(claim.lease_timeout))
            .bind(
                claim
                    .heap_bytes
                    .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            )
            .bind(claim.settings)
            .execute(&mut *tx)
            .await
            .map_err(self.db("claim"))?;
        let row = self.fetch(&mut tx, claim.name, false).await?;
        tx.commit().await.map_err(self.db("claim"))?;
        Ok((admission, row))
    }

    /// Shows `note` on the job's row for `status` (`None` takes it away) while no runner holds
    /// the job: a run waiting to start says why before it claims the job. Nothing happens when
    /// the job has no row yet, or the state tables do not exist. Waits at most `lock_timeout`
    /// for the row.
    pub async fn note_unclaimed(
        &self,
        conn: &mut PgConnection,
        name: &str,
        note: Option<&str>,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        // No statement_timeout (0): one row, bounded by its lock wait.
        let (mut tx, _) = begin_bounded(conn, Duration::ZERO, lock_timeout, false)
            .await
            .map_err(self.db("note"))?;
        let sql = format!(
            "UPDATE {} SET note = $2 WHERE name = $1 AND owner IS NULL",
            self.jobs
        );
        match statement(&sql)
            .bind(name)
            .bind(note)
            .execute(&mut *tx)
            .await
        {
            Err(e) if is_missing_table(&e) => return Ok(()),
            other => other.map_err(self.db("note"))?,
        };
        tx.commit().await.map_err(self.db("note"))
    }

    /// Keeps `pending` as the job's estimate unless it has one already (`replace`: an exact
    /// count replaces whatever was kept): the first process to estimate sets the figure every
    /// process's total starts from.
    pub async fn keep_estimate(
        &self,
        conn: &mut PgConnection,
        name: &str,
        pending: &Pending,
        replace: bool,
    ) -> Result<(), StateError> {
        let mut tx = begin_state(conn)
            .await
            .map_err(self.db("keep the estimate"))?;
        let sql = format!(
            "UPDATE {} SET estimate_rows = $2, estimate_rows_done = $3, estimate_exact = $4, \
             estimate_table_rows = $5 WHERE name = $1 AND ($6 OR estimate_rows IS NULL)",
            self.jobs
        );
        statement(&sql)
            .bind(name)
            .bind(int8(pending.rows))
            .bind(int8(pending.rows_done))
            .bind(pending.exact)
            .bind(pending.table_rows.map(int8))
            .bind(replace)
            .execute(&mut *tx)
            .await
            .map_err(self.db("keep the estimate"))?;
        tx.commit().await.map_err(self.db("keep the estimate"))
    }

    /// Re-reads the job's row.
    pub async fn load(&self, conn: &mut PgConnection, name: &str) -> Result<JobRow, StateError> {
        let mut tx = begin_read_only(conn).await.map_err(self.db("read"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("read"))?;
        Ok(row)
    }

    /// Every job's row, by name; empty when the state table does not exist yet (nothing is
    /// created by reading).
    pub async fn list(&self, conn: &mut PgConnection) -> Result<Vec<JobRow>, StateError> {
        let mut tx = begin_read_only(conn).await.map_err(self.db("list"))?;
        let exists: bool = statement("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.jobs)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db("list"))?
            .get(0);
        if !exists {
            return Ok(vec![]);
        }
        let tables = self.tables(&mut tx).await?;
        let sql = format!("{} ORDER BY j.name", select_sql(self, tables));
        let rows = statement(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db("list"))?;
        let rows = rows
            .iter()
            .map(job_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db("list"))?;
        tx.commit().await.map_err(self.db("list"))?;
        Ok(rows)
    }

    /// Forgets a job (ranges, cursors, counters, leases) so that the next `run` starts over.
    /// Refuses while anyone runs it.
    pub async fn reset(&self, conn: &mut PgConnection, name: &str) -> Result<JobRow, StateError> {
        let mut tx = begin_state(conn).await.map_err(self.db("reset"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let ranges = if row.ranges > 0 {
            self.range_leases(&mut tx, name).await?
        } else {
            vec![]
        };
        row.refuse_if_running(&ranges)?;
        let sql = format!("DELETE FROM {} WHERE name = $1", self.jobs);
        statement(&sql)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.db("reset"))?;
        tx.commit().await.map_err(self.db("reset"))?;
        Ok(row)
    }

    /// Sets the operator's control flag: `pause` and `resume` (clears it) reach every process
    /// running the job at its next heartbeat. `cancel` does too; a job nobody runs is marked
    /// cancelled at once.
    pub async fn control(
        &self,
        conn: &mut PgConnection,
        name: &str,
        control: Control,
    ) -> Result<JobRow, StateError> {
        let mut tx = begin_state(conn).await.map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let (flag, status) = control.on_row(row.is_running());
        let sql = format!(
            "UPDATE {} SET control = $2, status = coalesce($3, status), updated_at = now() WHERE name = $1",
            self.jobs
        );
        statement(&sql)
            .bind(name)
            .bind(flag)
            .bind(status)
            .execute(&mut *tx)
            .await
            .map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("control"))?;
        Ok(row)
    }
}
