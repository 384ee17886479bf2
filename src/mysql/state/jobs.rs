//! The statements about the job row in `jobs` (see `crate::state::jobs` for what it holds).

use std::time::Duration;

use sqlx::MySqlConnection;

use crate::mysql::session::statement;
use crate::state::decode::job_row;
use crate::state::stored::int8;
use crate::state::*;

use super::*;

/// Whether [`select_sql`] reads one job (its name bound twice) or every job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    One,
    All,
}

/// The columns of a [`JobRow`], with the ranges' sums and the failed rows' count when those
/// tables exist. The sums come from a grouped derived table joined to the job (MariaDB has no
/// `LATERAL`); for one job it reads only that job's ranges.
fn select_sql(store: &Store, tables: Tables, which: Which) -> String {
    let jobs = &store.jobs;
    let common = format!(
        "j.name, COALESCE(j.table_name, ''), j.definition_hash, j.status, j.range_end, \
         j.rows_done, j.batches_done, j.batch_size, j.owner, {}, CAST(j.lease_s AS DOUBLE), \
         {}, j.control, j.last_error, j.heap_bytes_start",
        age("j.heartbeat_at"),
        age("j.updated_at"),
    );
    let tail = "j.heap_bytes_end, j.estimate_rows, j.estimate_rows_done, j.estimate_exact, \
                j.estimate_table_rows, j.settings";
    let failures = if tables.failures {
        format!(
            "(SELECT COUNT(*) FROM {} f WHERE f.job = j.name)",
            store.failures
        )
    } else {
        "0".to_owned()
    };
    let one = which == Which::One;
    let filter = if one { " WHERE j.name = ?" } else { "" };
    if !tables.ranges {
        return format!(
            "SELECT {common}, j.`cursor`, j.rate, j.note, 0, 0, 0, 0, 0, 0, NULL, {failures}, \
             {tail}, 0 FROM {jobs} j{filter}"
        );
    }
    let ranges = &store.ranges;
    let of_job = if one { " WHERE x.job = ?" } else { "" };
    let live = format!(
        "x.owner IS NOT NULL AND x.heartbeat_at > {NOW} - INTERVAL COALESCE(x.lease_s, {}) SECOND",
        LEASE_TIMEOUT.as_secs()
    );
    format!(
        "SELECT {common}, CASE WHEN COALESCE(r.ranges, 0) = 0 THEN j.`cursor` ELSE r.`cursor` END, \
                r.rate, COALESCE(r.note, j.note), COALESCE(r.ranges, 0), COALESCE(r.done, 0), \
                COALESCE(r.workers, 0), COALESCE(r.processes, 0), COALESCE(r.hosts, 0), \
                COALESCE(r.keys_walked, 0), r.keys_left, {failures}, {tail}, \
                COALESCE(r.rows_walked, 0) \
           FROM {jobs} j LEFT JOIN (
                SELECT job, COUNT(*) AS ranges,
                       CAST(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS SIGNED) AS done,
                       CASE WHEN COUNT(*) = 1 THEN MIN(`cursor`) END AS `cursor`,
                       SUM(CASE WHEN live THEN rate END) AS rate,
                       MIN(CASE WHEN live THEN note END) AS note,
                       CAST(SUM(CASE WHEN live THEN 1 ELSE 0 END) AS SIGNED) AS workers,
                       COUNT(DISTINCT CASE WHEN live THEN owner END) AS processes,
                       COUNT(DISTINCT CASE WHEN live THEN SUBSTRING_INDEX(owner, ':', 1) END)
                           AS hosts,
                       CAST(COALESCE(SUM(keys_walked), 0) AS SIGNED) AS keys_walked,
                       CAST(COALESCE(SUM(rows_done), 0) AS SIGNED) AS rows_walked,
                       {keys_left} AS keys_left
                  FROM (SELECT x.*, {live} AS live FROM {ranges} x{of_job}) AS x
                 GROUP BY job) AS r ON r.job = j.name{filter}",
        keys_left = KEYS_LEFT,
    )
}

/// Keys left in a job's ranges that are not done (the ranges aliased as a whole, unqualified,
/// grouped by job), as far as their estimates know: NULL when a range has none.
pub(super) const KEYS_LEFT: &str = "CASE WHEN COUNT(*) > 0
           AND SUM(CASE WHEN status <> 'done' AND keys_estimate IS NULL THEN 1 ELSE 0 END) = 0
      THEN CAST(COALESCE(SUM(CASE WHEN status <> 'done'
                                  THEN GREATEST(keys_estimate - keys_walked, 0) END), 0)
                AS SIGNED) END";

impl StateSql<'_> {
    /// Reads one job's row in the caller's transaction (locking it when `lock` is set: the
    /// job's row alone, before its ranges' sums are read).
    pub async fn fetch(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
        lock: bool,
    ) -> Result<JobRow, StateError> {
        let unknown = || StateError::UnknownJob {
            name: name.into(),
            table: self.jobs.clone(),
        };
        if lock && !self.lock_job(conn, name).await? {
            return Err(unknown());
        }
        let all = Tables {
            jobs: true,
            ranges: true,
            failures: true,
        };
        let sql = select_sql(self, all, Which::One);
        let row = match statement(&sql)
            .bind(name)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
        {
            Err(e) if is_missing_table(&e) => None,
            other => other.map_err(self.db("read"))?,
        };
        match row {
            Some(row) => job_row(&row).map_err(self.db("read")),
            None => Err(unknown()),
        }
    }

    /// Locks the job's row until the transaction ends; false when there is none (or no
    /// table yet). What serialises a job's claims, releases, layout and splits.
    pub(super) async fn lock_job(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
    ) -> Result<bool, StateError> {
        let sql = format!("SELECT 1 FROM {} WHERE name = ? FOR UPDATE", self.jobs);
        match statement(&sql).bind(name).fetch_optional(conn).await {
            Err(e) if is_missing_table(&e) => Ok(false),
            other => Ok(other.map_err(self.db("lock"))?.is_some()),
        }
    }

    /// Takes the job's lease if [`admit`] allows it, creating its row on first use (or only
    /// checks that it may join), and returns the row as it now stands with the admission.
    /// A restart forgets the job's ranges; a run lays out new ones when there are none.
    pub async fn claim(
        &self,
        conn: &mut MySqlConnection,
        claim: &Claim<'_>,
    ) -> Result<(Admission, JobRow), StateError> {
        let mut tx = begin(conn, Mode::Write).await.map_err(self.db("claim"))?;
        // A conflict changes nothing but locks the row, as the `fetch` below does anyway.
        let insert = format!(
            "INSERT INTO {} (name, table_name, definition_hash, status, updated_at) \
             VALUES (?, ?, ?, 'pending', {NOW}) ON DUPLICATE KEY UPDATE name = name",
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
            let forget = format!("DELETE FROM {} WHERE job = ?", self.ranges);
            statement(&forget)
                .bind(claim.name)
                .execute(&mut *tx)
                .await
                .map_err(self.db("claim"))?;
            self.forget_failures(&mut tx, claim.name).await?;
        }
        // What a restart forgets, and what a resume keeps.
        let start = if restart {
            format!(
                "started_at = {NOW}, `cursor` = NULL, range_end = NULL, rows_done = 0, \
                 batches_done = 0, heap_bytes_start = ?, estimate_rows = NULL"
            )
        } else {
            format!(
                "started_at = COALESCE(started_at, {NOW}), \
                 heap_bytes_start = COALESCE(heap_bytes_start, ?)"
            )
        };
        let take = format!(
            "UPDATE {} SET owner = ?, heartbeat_at = {NOW}, lease_s = ?, updated_at = {NOW}, \
             status = 'running', control = CASE WHEN control = 'pause' THEN control END, \
             last_error = NULL, note = NULL, rate = NULL, table_name = ?, definition_hash = ?, \
             heap_bytes_end = NULL, finished_at = NULL, settings = ?, {start} \
             WHERE name = ?",
            self.jobs
        );
        statement(&take)
            .bind(&claim.owner.0)
            .bind(timeout_secs(claim.lease_timeout))
            .bind(claim.table_name)
            .bind(claim.definition_hash)
            .bind(claim.settings)
            .bind(claim.heap_bytes.map(int8))
            .bind(claim.name)
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
    /// (whole seconds, at least one) for the row.
    pub async fn note_unclaimed(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
        note: Option<&str>,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        bound_wait(conn, "innodb_lock_wait_timeout", lock_timeout)
            .await
            .map_err(self.db("note"))?;
        let noted = self.note(conn, name, note).await;
        let restored = restore_wait(conn, "innodb_lock_wait_timeout").await;
        noted?;
        restored.map_err(self.db("note"))
    }

    async fn note(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
        note: Option<&str>,
    ) -> Result<(), StateError> {
        let mut tx = begin(conn, Mode::Write).await.map_err(self.db("note"))?;
        let sql = format!(
            "UPDATE {} SET note = ? WHERE name = ? AND owner IS NULL",
            self.jobs
        );
        match statement(&sql)
            .bind(note)
            .bind(name)
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
        conn: &mut MySqlConnection,
        name: &str,
        pending: &Pending,
        replace: bool,
    ) -> Result<(), StateError> {
        let mut tx = begin(conn, Mode::Write)
            .await
            .map_err(self.db("keep the estimate"))?;
        let sql = format!(
            "UPDATE {} SET estimate_rows = ?, estimate_rows_done = ?, estimate_exact = ?, \
             estimate_table_rows = ? WHERE name = ? AND (? OR estimate_rows IS NULL)",
            self.jobs
        );
        statement(&sql)
            .bind(int8(pending.rows))
            .bind(int8(pending.rows_done))
            .bind(pending.exact)
            .bind(pending.table_rows.map(int8))
            .bind(name)
            .bind(replace)
            .execute(&mut *tx)
            .await
            .map_err(self.db("keep the estimate"))?;
        tx.commit().await.map_err(self.db("keep the estimate"))
    }

    /// Re-reads the job's row.
    pub async fn load(&self, conn: &mut MySqlConnection, name: &str) -> Result<JobRow, StateError> {
        let mut tx = begin(conn, Mode::Read).await.map_err(self.db("read"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("read"))?;
        Ok(row)
    }

    /// Every job's row, by name; empty when the state table does not exist yet (nothing is
    /// created by reading).
    pub async fn list(&self, conn: &mut MySqlConnection) -> Result<Vec<JobRow>, StateError> {
        let mut tx = begin(conn, Mode::Read).await.map_err(self.db("list"))?;
        let tables = self.tables(&mut tx).await?;
        if !tables.jobs {
            return Ok(vec![]);
        }
        let sql = format!("{} ORDER BY j.name", select_sql(self, tables, Which::All));
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

    /// Forgets a job (ranges, cursors, counters, leases, failed rows: they go with its row)
    /// so that the next `run` starts over. Refuses while anyone runs it.
    pub async fn reset(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
    ) -> Result<JobRow, StateError> {
        let mut tx = begin(conn, Mode::Write).await.map_err(self.db("reset"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let ranges = if row.ranges > 0 {
            self.range_leases(&mut tx, name).await?
        } else {
            vec![]
        };
        row.refuse_if_running(&ranges)?;
        let sql = format!("DELETE FROM {} WHERE name = ?", self.jobs);
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
        conn: &mut MySqlConnection,
        name: &str,
        control: Control,
    ) -> Result<JobRow, StateError> {
        let mut tx = begin(conn, Mode::Write).await.map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let (flag, status) = control.on_row(row.is_running());
        let sql = format!(
            "UPDATE {} SET control = ?, status = COALESCE(?, status), updated_at = {NOW} \
             WHERE name = ?",
            self.jobs
        );
        statement(&sql)
            .bind(flag)
            .bind(status)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("control"))?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_reads_only_its_ranges() {
        let store = Store::new("backfill", quoted);
        let all = Tables {
            jobs: true,
            ranges: true,
            failures: true,
        };
        let one = select_sql(&store, all, Which::One);
        assert_eq!(one.matches('?').count(), 2, "{one}");
        assert!(
            one.contains("FROM `backfill`.`ranges` x WHERE x.job = ?"),
            "{one}"
        );
        assert!(one.ends_with("ON r.job = j.name WHERE j.name = ?"), "{one}");
        assert!(!select_sql(&store, all, Which::All).contains('?'));
    }

    #[test]
    fn missing_tables_read_as_nothing_there() {
        let store = Store::new("backfill", quoted);
        let jobs_only = Tables {
            jobs: true,
            ranges: false,
            failures: false,
        };
        let sql = select_sql(&store, jobs_only, Which::All);
        assert!(
            !sql.contains("`ranges`") && !sql.contains("`failures`"),
            "{sql}"
        );
    }
}
