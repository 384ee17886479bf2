//! The state tables' API through the seam: each method of [`Store`] that runs statements
//! hands the connection it was given to that database's statements (`postgres::state`,
//! `mysql::state`). The types and the pure rules are `crate::state`'s; the SQL is the
//! database's.

use std::time::Duration;

use crate::postgres::state::StateSql;
use crate::state::{
    Admission, Claim, Control, FailedRow, Holder, JobRow, Key, Lease, Live, NewRange, Owner,
    Pending, Progress, RangeRow, Release, Split, StateError, Store,
};

use super::Conn;
use crate::{mysql, postgres};

/// The statements of a job's ranges that compare keys, written once for the job's key in the
/// database's SQL: `db::Target::range_sql` builds them.
#[derive(Debug, Clone)]
pub enum RangeSql {
    Postgres(postgres::state::RangeSql),
    Mysql(mysql::state::RangeSql),
}

impl RangeSql {
    /// Which database the statements were written for.
    fn database(&self) -> &'static str {
        match self {
            RangeSql::Postgres(_) => "PostgreSQL",
            RangeSql::Mysql(_) => "MySQL",
        }
    }

    /// The checkpoint's statements, for `plan` to show.
    pub fn checkpoint_sql(&self) -> &str {
        match self {
            RangeSql::Postgres(sql) => sql.checkpoint_sql(),
            RangeSql::Mysql(sql) => sql.checkpoint_sql(),
        }
    }
}

impl Store {
    /// The error of a call that got a connection to one database and the statements of
    /// another: a bug of the caller, reported rather than run.
    fn mismatch(&self, action: &'static str, sql: &RangeSql) -> StateError {
        StateError::Database {
            table: self.jobs.clone(),
            action,
            source: sqlx::Error::Configuration(
                format!(
                    "the statements were written for {}, not this connection's database",
                    sql.database()
                )
                .into(),
            ),
        }
    }

    /// Creates the schema and tables if they are missing, and brings tables made by an older
    /// version up to date (new columns only; rows migrate when their job next runs).
    ///
    /// Looks before it creates or alters, so that nothing waits for a lock when everything is
    /// there; the DDL waits at most `lock_timeout` for its locks, and two first runs at once
    /// both succeed (each database's `state::StateSql::ensure` says how).
    pub async fn ensure(&self, conn: Conn<'_>, lock_timeout: Duration) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).ensure(c, lock_timeout).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).ensure(c, lock_timeout).await,
        }
    }

    /// Reads one job's row in the caller's transaction (locking it when `lock` is set).
    pub async fn fetch(
        &self,
        conn: Conn<'_>,
        name: &str,
        lock: bool,
    ) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).fetch(c, name, lock).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).fetch(c, name, lock).await,
        }
    }

    /// Takes the job's lease if [`admit`](crate::state::admit) allows it, creating its row on first use (or only
    /// checks that it may join), and returns the row as it now stands with the admission.
    /// A restart forgets the job's ranges; a run lays out new ones when there are none.
    pub async fn claim(
        &self,
        conn: Conn<'_>,
        claim: &Claim<'_>,
    ) -> Result<(Admission, JobRow), StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).claim(c, claim).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).claim(c, claim).await,
        }
    }

    /// Shows `note` on the job's row for `status` (`None` takes it away) while no runner holds
    /// the job: a run waiting to start says why before it claims the job. Nothing happens when
    /// the job has no row yet, or the state tables do not exist. Waits at most `lock_timeout`
    /// for the row.
    pub async fn note_unclaimed(
        &self,
        conn: Conn<'_>,
        name: &str,
        note: Option<&str>,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .note_unclaimed(c, name, note, lock_timeout)
                    .await
            }
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .note_unclaimed(c, name, note, lock_timeout)
                    .await
            }
        }
    }

    /// Keeps `pending` as the job's estimate unless it has one (`replace`: whatever it has).
    pub async fn keep_estimate(
        &self,
        conn: Conn<'_>,
        name: &str,
        pending: &Pending,
        replace: bool,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .keep_estimate(c, name, pending, replace)
                    .await
            }
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .keep_estimate(c, name, pending, replace)
                    .await
            }
        }
    }

    /// Re-reads the job's row.
    pub async fn load(&self, conn: Conn<'_>, name: &str) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).load(c, name).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).load(c, name).await,
        }
    }

    /// Every job's row, by name; empty when the state table does not exist yet (nothing is
    /// created by reading).
    pub async fn list(&self, conn: Conn<'_>) -> Result<Vec<JobRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).list(c).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).list(c).await,
        }
    }

    /// Forgets a job (ranges, cursors, counters, leases) so that the next `run` starts over.
    /// Refuses while anyone runs it.
    pub async fn reset(&self, conn: Conn<'_>, name: &str) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).reset(c, name).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).reset(c, name).await,
        }
    }

    /// Sets the operator's control flag: `pause` and `resume` (clears it) reach every process
    /// running the job at its next heartbeat. `cancel` does too; a job nobody runs is marked
    /// cancelled at once.
    pub async fn control(
        &self,
        conn: Conn<'_>,
        name: &str,
        control: Control,
    ) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).control(c, name, control).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).control(c, name, control).await,
        }
    }

    /// The leases held on the job's ranges, one per owner (its freshest heartbeat).
    pub async fn range_leases(&self, conn: Conn<'_>, job: &str) -> Result<Vec<Lease>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).range_leases(c, job).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).range_leases(c, job).await,
        }
    }

    /// Serialises changes to the set of the job's ranges until the transaction ends.
    pub async fn lock_layout(&self, tx: Conn<'_>, job: &str) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).lock_layout(c, job).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).lock_layout(c, job).await,
        }
    }

    /// Every range of the job, by id.
    pub async fn ranges(&self, conn: Conn<'_>, job: &str) -> Result<Vec<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).ranges(c, job).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).ranges(c, job).await,
        }
    }

    /// Every range of every job, by job and id; empty when the ranges table does not exist
    /// (nothing is created by reading).
    pub async fn all_ranges(&self, conn: Conn<'_>) -> Result<Vec<(String, RangeRow)>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).all_ranges(c).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).all_ranges(c).await,
        }
    }

    /// One range of the job.
    pub async fn range(
        &self,
        conn: Conn<'_>,
        job: &str,
        id: u32,
    ) -> Result<Option<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).range(c, job, id).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).range(c, job, id).await,
        }
    }

    /// Lays out the job's first ranges (ids 1, 2, …) and records the job's overall range end.
    /// The caller holds [`Store::lock_layout`] and has seen that the job has no ranges yet.
    pub async fn lay_out(
        &self,
        tx: Conn<'_>,
        job: &str,
        ranges: &[NewRange],
        range_end: Option<&Key>,
    ) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).lay_out(c, job, ranges, range_end).await,
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .lay_out(c, job, ranges, range_end)
                    .await
            }
        }
    }

    /// Takes the first range that is free, or whose holder is gone: its lease went stale, or
    /// its owner is among `gone` (processes of this host that no longer exist). Ranges locked
    /// by another claimer are skipped, never waited for.
    pub async fn claim_range(
        &self,
        conn: Conn<'_>,
        w: &Holder<'_>,
        gone: &[Owner],
    ) -> Result<Option<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).claim_range(c, w, gone).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).claim_range(c, w, gone).await,
        }
    }

    /// Splits a running range as `split` says and takes the upper part, in the caller's
    /// transaction (which holds [`Store::lock_layout`]). `None` when the victim moved on in
    /// the meantime: its upper end changed, or its cursor passed the split point.
    pub async fn split(
        &self,
        tx: Conn<'_>,
        sql: &RangeSql,
        w: &Holder<'_>,
        split: &Split,
    ) -> Result<Option<RangeRow>, StateError> {
        match (tx, sql) {
            (Conn::Postgres(c), RangeSql::Postgres(sql)) => {
                StateSql(self).split(c, sql, w, split).await
            }
            (Conn::Mysql(c), RangeSql::Mysql(sql)) => {
                mysql::state::StateSql(self).split(c, sql, w, split).await
            }
            (_, sql) => Err(self.mismatch("split a range", sql)),
        }
    }

    /// Moves range `range`'s cursor to `cursor` inside the batch's transaction, adding `rows`
    /// and the batch's keys to its counters — only while `w` still holds the range and its
    /// upper end is not below `cursor` (see each database's `state` for the statements). Gives back
    /// where the job stands with the batch.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint(
        &self,
        tx: Conn<'_>,
        sql: &RangeSql,
        w: &Holder<'_>,
        range: u32,
        cursor: &[String],
        rows: u64,
        batch_size: u32,
    ) -> Result<Progress, StateError> {
        match (tx, sql) {
            (Conn::Postgres(c), RangeSql::Postgres(sql)) => {
                StateSql(self)
                    .checkpoint(c, sql, w, range, cursor, rows, batch_size)
                    .await
            }
            (Conn::Mysql(c), RangeSql::Mysql(sql)) => {
                mysql::state::StateSql(self)
                    .checkpoint(c, sql, w, range, cursor, rows, batch_size)
                    .await
            }
            (_, sql) => Err(self.mismatch("checkpoint", sql)),
        }
    }

    /// Marks a walked range done and gives up its lease.
    pub async fn finish_range(
        &self,
        conn: Conn<'_>,
        w: &Holder<'_>,
        range: u32,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).finish_range(c, w, range).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).finish_range(c, w, range).await,
        }
    }

    /// Refreshes the leases of `owner` on the job — every range it holds, and the job's own
    /// lease when `holds_job` — and publishes `live`. Returns the job's row as it now stands
    /// (the operator's control flag; every process's totals, live workers, processes and
    /// hosts). Fails with `LeaseLost` when the job's lease went to another runner, or the job
    /// was reset.
    pub async fn heartbeat(
        &self,
        conn: Conn<'_>,
        name: &str,
        owner: &Owner,
        holds_job: bool,
        live: &Live,
    ) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .heartbeat(c, name, owner, holds_job, live)
                    .await
            }
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .heartbeat(c, name, owner, holds_job, live)
                    .await
            }
        }
    }

    /// Gives back every range `owner` holds (a range not walked to its end goes back to
    /// `pending`, cursor kept) and the job's lease if it holds it, then settles the job's
    /// status: `done` when every range is done; still `running` when another process holds a
    /// live lease on it (the control flag stays for that process to see); otherwise as `how`
    /// says. Serialised on the job's row, so that of two processes leaving together the second
    /// sees the first gone. A status settled other than `running` keeps `heap_bytes`, the
    /// table's heap as the run ended, for `status` (`None`: it could not be read).
    pub async fn release(
        &self,
        conn: Conn<'_>,
        name: &str,
        owner: &Owner,
        how: &Release,
        heap_bytes: Option<u64>,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .release(c, name, owner, how, heap_bytes)
                    .await
            }
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .release(c, name, owner, how, heap_bytes)
                    .await
            }
        }
    }

    /// Records that `failed` cannot be backfilled, in the caller's transaction (the one whose
    /// checkpoint moves past it, or a retry's); a row recorded before keeps its place and
    /// counts one more attempt, with the new message.
    pub async fn record_failure(
        &self,
        tx: Conn<'_>,
        job: &str,
        failed: &FailedRow,
    ) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).record_failure(c, job, failed).await,
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .record_failure(c, job, failed)
                    .await
            }
        }
    }

    /// Up to `limit` of the job's failed rows recorded after `after` (a `seq`; `None`: from
    /// the first), in the order they were first recorded, each with its `seq`; in the
    /// caller's transaction.
    pub async fn failures_after(
        &self,
        conn: Conn<'_>,
        job: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, FailedRow)>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).failures_after(c, job, after, limit).await,
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .failures_after(c, job, after, limit)
                    .await
            }
        }
    }

    /// The first `limit` of the job's failed rows, in the order they were first recorded;
    /// empty when the table does not exist yet (nothing is created by reading).
    pub async fn failures(
        &self,
        conn: Conn<'_>,
        job: &str,
        limit: u32,
    ) -> Result<Vec<FailedRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).failures(c, job, limit).await,
            Conn::Mysql(c) => mysql::state::StateSql(self).failures(c, job, limit).await,
        }
    }

    /// A failed row filled at last (`run --retry-failures`), in the transaction that filled
    /// it: it leaves the table, and its `rows` (0 when it no longer matched `where`) count
    /// as one batch of the job's — as long as `owner` still holds the job's lease.
    pub async fn failure_filled(
        &self,
        tx: Conn<'_>,
        job: &str,
        owner: &Owner,
        key: &[String],
        rows: u64,
    ) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => {
                StateSql(self)
                    .failure_filled(c, job, owner, key, rows)
                    .await
            }
            Conn::Mysql(c) => {
                mysql::state::StateSql(self)
                    .failure_filled(c, job, owner, key, rows)
                    .await
            }
        }
    }
}
