//! One batch: a single bounded transaction that finds the batch's upper key inside its range,
//! updates the rows in `(cursor, upper]` that still match `where`, and writes the range's
//! checkpoint — committed together, or rolled back together. Knows nothing of retries or
//! pacing (the worker decides those); under a WAL budget it reads the server's WAL position at
//! its start and before its commit, for the crew to charge.

use std::time::{Duration, Instant};

use crate::db::{Conn, Session, Tx};
use crate::plan::Walk;
use crate::state::{FailedRow, Key, Progress, RangeRow, idle_in_transaction_timeout};

use super::BatchError;
use super::crew::Crew;

/// A batch that committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The batch's inclusive upper key: the range's new cursor.
    pub upper: Vec<String>,
    /// Rows the `UPDATE` changed.
    pub rows: u64,
    /// Wall time of the transaction, `BEGIN` to `COMMIT`.
    pub elapsed: Duration,
    /// Keys the batch walked: its size, or for a batch narrowed down to a failing row
    /// (`narrow.rs`), the keys up to its new cursor.
    pub keys: u32,
    /// The row a narrowed batch stopped at: the walk stops before it (`on_error = "stop"`),
    /// or it is in the failures table and the cursor is past it (`"skip"`).
    pub failed: Option<Box<FailedRow>>,
    /// Under a WAL budget: the WAL charged to the batch, and how long the budget asks to wait
    /// before the next one.
    pub wal: Option<(u64, Duration)>,
    /// Where the job stands with the batch, as its checkpoint read it ([`finish`] fills it in).
    pub job: Progress,
}

/// Runs worker `worker`'s batch of up to `size` keys after `range`'s cursor (from the
/// relation's first key when it has none), never past the range's upper end, over `walk`'s
/// relation; tells the monitor which backend runs it as soon as it is known (the caller tells
/// it when the batch ended, and the crew when it rolled back).
pub async fn run(
    session: &mut Session,
    crew: &Crew<'_, '_>,
    worker: u32,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Committed, BatchError> {
    let started = Instant::now();
    let mut tx = begin(session, crew, worker, Some(started)).await?;
    let done = update(&mut tx, walk, range, size)
        .await
        .map(|(upper, rows)| Committed {
            upper,
            rows,
            elapsed: Duration::ZERO,
            keys: size,
            failed: None,
            wal: None,
            job: Progress::default(),
        });
    finish(
        tx,
        crew,
        worker,
        range.id,
        done.map_err(BatchError::from),
        started,
    )
    .await
}

/// Ends a batch whose work in `tx` gave `done`: commits it with range `range`'s checkpoint,
/// with its wall time since `started`; or, when the work or the checkpoint failed, rolls `tx`
/// back at once ([`Tx::settle`]), so that a batch the monitor cancelled lets go of its locks
/// before the run pauses.
pub(super) async fn finish(
    mut tx: Tx<'_>,
    crew: &Crew<'_, '_>,
    worker: u32,
    range: u32,
    done: Result<Committed, BatchError>,
    started: Instant,
) -> Result<Committed, BatchError> {
    let done = match done {
        Ok(done) => checkpoint(&mut tx, crew, worker, range, done).await,
        Err(e) => Err(e),
    };
    let mut done = tx.settle(done).await?;
    done.elapsed = started.elapsed();
    Ok(done)
}

/// Opens worker `worker`'s batch transaction, bounded by the job's timeouts; tells the monitor
/// which backend runs it, and — for a batch charged to the WAL budget (`charged`: begun then) —
/// the crew where the WAL stood. A retry of one failed row is not charged: its WAL is not worth
/// a round trip.
pub(super) async fn begin<'c>(
    session: &'c mut Session,
    crew: &Crew<'_, '_>,
    worker: u32,
    charged: Option<Instant>,
) -> Result<Tx<'c>, sqlx::Error> {
    let idle = idle_in_transaction_timeout(crew.r.options.lease_timeout);
    let t = &crew.r.job.timeouts;
    let budget = charged.filter(|_| crew.brakes.has_wal_budget());
    let (tx, backend, wal_start) = session
        .begin_batch(t.statement, t.lock, idle, budget.is_some())
        .await?;
    if let Some(monitor) = crew.watchers.monitor {
        monitor.batch_started(worker, backend);
    }
    if let (Some(lsn), Some(started)) = (wal_start, budget) {
        crew.brakes.wal_started(worker, lsn, started);
    }
    Ok(tx)
}

/// Writes range `range`'s checkpoint for `done` in `tx` (its `upper` the new cursor, its `rows`
/// and `keys` added to the counters); under a WAL budget, charges the batch's WAL. `done`
/// comes back with where the job stands and its WAL.
async fn checkpoint(
    tx: &mut Tx<'_>,
    crew: &Crew<'_, '_>,
    worker: u32,
    range: u32,
    mut done: Committed,
) -> Result<Committed, BatchError> {
    let holder = crew.holder(worker);
    done.job = crew
        .r
        .store
        .checkpoint(
            tx.conn(),
            crew.share.sql,
            &holder,
            range,
            &done.upper,
            done.rows,
            done.keys,
        )
        .await?;
    if crew.brakes.has_wal_budget() {
        let lsn = tx.conn().wal_position().await?;
        done.wal = Some(crew.brakes.wal_ended(worker, lsn));
    }
    Ok(done)
}

/// Updates the rows of a batch of `size` keys after `range`'s cursor: the batch's upper key
/// and how many rows changed.
async fn update(
    tx: &mut Tx<'_>,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<(Key, u64), sqlx::Error> {
    let upper = upper_bound(tx.conn(), walk, range, size).await?;
    let rows = tx
        .conn()
        .update(walk, range.cursor.as_deref(), &upper)
        .await?;
    Ok((upper, rows))
}

/// The inclusive upper key of a batch of `size` keys after `range`'s cursor: the `size`-th
/// key, or the range's upper end when fewer keys are left.
pub(super) async fn upper_bound(
    conn: Conn<'_>,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Key, sqlx::Error> {
    Ok(conn
        .upper_bound(walk, range.cursor.as_deref(), &range.upper, u64::from(size))
        .await?
        .unwrap_or_else(|| range.upper.clone()))
}
