//! One batch: a single bounded transaction that finds the batch's upper key, updates the rows
//! in `(cursor, upper]` that still match `where`, and writes the checkpoint — committed
//! together, or rolled back together. Knows nothing of retries or pacing (the loop in `mod.rs`
//! decides those).

use std::time::{Duration, Instant};

use sqlx::PgConnection;
use thiserror::Error;

use crate::db::{Failure, begin_bounded, bind_keys, classify, fetch_key, statement};
use crate::monitor::Monitor;
use crate::state::StateError;

use super::Run;

/// A batch that committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The batch's inclusive upper key: the new cursor.
    pub upper: Vec<String>,
    /// Rows the `UPDATE` changed.
    pub rows: u64,
    /// Wall time of the transaction, `BEGIN` to `COMMIT`.
    pub elapsed: Duration,
}

/// Why a batch rolled back.
#[derive(Debug, Error)]
pub enum BatchError {
    #[error("batch failed")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

impl BatchError {
    /// Whether to retry, shrink or reconnect; a lost lease is never retried.
    pub fn failure(&self) -> Failure {
        match self {
            BatchError::Sql(e) | BatchError::State(StateError::Database { source: e, .. }) => {
                classify(e)
            }
            BatchError::State(_) => Failure::Fatal,
        }
    }
}

/// Runs the batch of up to `size` keys after `cursor` (from the first key when `None`), never
/// past `range_end`, telling `monitor` which backend runs it as soon as it is known (the caller
/// tells it when the batch ended).
pub async fn run(
    conn: &mut PgConnection,
    r: &Run<'_>,
    monitor: Option<&Monitor>,
    cursor: Option<&[String]>,
    range_end: &[String],
    size: u32,
) -> Result<Committed, BatchError> {
    let started = Instant::now();
    let timeouts = &r.job.timeouts;
    let (mut tx, backend) = begin_bounded(conn, timeouts.statement, timeouts.lock, false).await?;
    if let Some(monitor) = monitor {
        monitor.batch_started(backend);
    }
    let has_cursor = cursor.is_some();
    let lower = cursor.unwrap_or_default();

    let walk = r.plan.upper_bound.pick(has_cursor);
    let walk_query = bind_keys(statement(walk), lower.iter().chain(range_end).map(Some))
        .bind(i64::from(size.saturating_sub(1)));
    let upper = fetch_key(walk_query, &mut tx)
        .await?
        .unwrap_or_else(|| range_end.to_vec());

    let update = r.plan.update.pick(has_cursor);
    let rows = bind_keys(statement(update), lower.iter().chain(&upper).map(Some))
        .execute(&mut *tx)
        .await?
        .rows_affected();

    r.store
        .checkpoint(&mut tx, &r.job.name, r.owner, &upper, rows, size)
        .await?;
    tx.commit().await?;
    Ok(Committed {
        upper,
        rows,
        elapsed: started.elapsed(),
    })
}
