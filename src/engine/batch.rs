//! One batch: a single bounded transaction that finds the batch's upper key inside its range,
//! updates the rows in `(cursor, upper]` that still match `where`, and writes the range's
//! checkpoint — committed together, or rolled back together. Knows nothing of retries or
//! pacing (the worker decides those); under a WAL budget it reads the server's WAL position at
//! its start and before its commit, for the crew to charge.

use std::time::{Duration, Instant};

use sqlx::PgConnection;
use thiserror::Error;

use crate::db::{Failure, begin_batch, bind_keys, classify, fetch_key, statement, wal_position};
use crate::plan::Walk;
use crate::share::ShareError;
use crate::state::{RangeRow, StateError, idle_in_transaction_timeout};

use super::crew::Crew;

/// A batch that committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The batch's inclusive upper key: the range's new cursor.
    pub upper: Vec<String>,
    /// Rows the `UPDATE` changed.
    pub rows: u64,
    /// Wall time of the transaction, `BEGIN` to `COMMIT`.
    pub elapsed: Duration,
    /// Under a WAL budget: the WAL charged to the batch, and how long the budget asks to wait
    /// before the next one.
    pub wal: Option<(u64, Duration)>,
}

/// Why a batch rolled back, or why a worker could not get a range.
#[derive(Debug, Error)]
pub enum BatchError {
    #[error("batch failed")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Share(#[from] ShareError),
}

impl BatchError {
    /// Whether to retry, shrink or reconnect; a lost lease is never retried.
    pub fn failure(&self) -> Failure {
        match self {
            BatchError::Sql(e) | BatchError::State(StateError::Database { source: e, .. }) => {
                classify(e)
            }
            BatchError::State(_) => Failure::Fatal,
            BatchError::Share(e) => e.failure(),
        }
    }
}

/// Runs worker `worker`'s batch of up to `size` keys after `range`'s cursor (from the
/// relation's first key when it has none), never past the range's upper end, over `walk`'s
/// relation; tells the monitor which backend runs it as soon as it is known (the caller tells
/// it when the batch ended).
pub async fn run(
    conn: &mut PgConnection,
    crew: &Crew<'_, '_>,
    worker: u32,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Committed, BatchError> {
    let result = run_once(conn, crew, worker, walk, range, size).await;
    if result.is_err() {
        crew.wal_abandoned(worker);
    }
    result
}

async fn run_once(
    conn: &mut PgConnection,
    crew: &Crew<'_, '_>,
    worker: u32,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Committed, BatchError> {
    let started = Instant::now();
    let (job, options) = (crew.r.job, crew.r.options);
    let idle = idle_in_transaction_timeout(options.lease_timeout);
    let t = &job.timeouts;
    let budget = crew.has_wal_budget();
    let (mut tx, backend, wal_start) = begin_batch(conn, t.statement, t.lock, idle, budget).await?;
    if let Some(monitor) = crew.monitor {
        monitor.batch_started(worker, backend);
    }
    if let Some(lsn) = wal_start {
        crew.wal_started(worker, lsn, started);
    }
    let has_cursor = range.cursor.is_some();
    let lower = range.cursor.as_deref().unwrap_or_default();

    let keys = lower.iter().chain(&range.upper).map(Some);
    let walk_query = bind_keys(statement(walk.upper_bound.pick(has_cursor)), keys)
        .bind(i64::from(size.saturating_sub(1)));
    let upper = fetch_key(walk_query, &mut tx)
        .await?
        .unwrap_or_else(|| range.upper.clone());

    let keys = lower.iter().chain(&upper).map(Some);
    let rows = bind_keys(statement(walk.update.pick(has_cursor)), keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();

    let holder = crew.holder(worker);
    crew.r
        .store
        .checkpoint(
            &mut tx,
            crew.share.sql,
            &holder,
            range.id,
            &upper,
            rows,
            size,
        )
        .await?;
    let wal = match wal_start {
        Some(_) => {
            let lsn = wal_position(&mut tx).await?;
            Some(crew.wal_ended(worker, lsn))
        }
        None => None,
    };
    tx.commit().await?;
    Ok(Committed {
        upper,
        rows,
        elapsed: started.elapsed(),
        wal,
    })
}
