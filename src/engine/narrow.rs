//! A batch that failed on a row's data, narrowed down to that row.
//!
//! When a batch fails with an error about one row's data (a cast of `'n/a'` to bigint, a
//! duplicate key, a check constraint: [`is_row_error`]), nobody should have to bisect thousands
//! of rows by hand. One new batch transaction, bounded by the job's timeouts and watched by
//! the monitor like any batch, lists the batch's keys and runs the batch's `UPDATE` over halves
//! of them (so `where` still picks the rows, and a row whose data breaks `where` itself is
//! found too), each half in a savepoint that is kept when it succeeds and rolled back when it
//! fails, as the pure plan in `bisect.rs` says — at most ⌈log₂ n⌉ + 1 statements — until the
//! first row that fails on its own is found. The rows before it are committed with the range's
//! checkpoint; with `[batch] on_error = "skip"` the row goes to the `failures` table in that
//! same transaction and the cursor moves past it, otherwise the walk stops there, naming it. A
//! transient error on the way (a lock timeout, the monitor's yield) rolls everything back and
//! is handled as the batch's own would be.

mod bisect;

use std::time::{Duration, Instant};

use crate::db::{ServerError, Session, Tx, is_row_error};
use crate::event::Event;
use crate::job::OnError;
use crate::plan::Walk;
use crate::state::{FailedRow, Key, Progress, RangeRow};

use super::BatchError;
use super::EngineError;
use super::batch::{self, Committed};
use super::crew::Crew;
use bisect::{Bisect, Step};

/// Whether a failed batch is worth narrowing down: its `UPDATE` (or key walk) failed on a
/// row's data.
pub(super) fn applies(e: &BatchError) -> bool {
    matches!(e, BatchError::Sql(e) if is_row_error(e))
}

/// Narrows worker `worker`'s failed batch of `size` keys after `range`'s cursor down to its
/// first failing row, commits what comes before it (and, with `on_error = "skip"`, the row's
/// record), and tells how far the range got. `BatchError::Row` when the batch's very first key
/// fails and the job stops (nothing to commit).
pub(super) async fn run(
    session: &mut Session,
    crew: &Crew<'_, '_>,
    worker: u32,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Committed, BatchError> {
    let started = Instant::now();
    let mut tx = batch::begin(session, crew, worker, Some(started)).await?;
    let done = bisect(&mut tx, crew, walk, range, size).await;
    batch::finish(tx, crew, worker, range.id, done, started).await
}

/// Inside the batch's transaction `tx`: the batch's keys, their `UPDATE` over halves of them
/// until the first failing row is found, and, with `on_error = "skip"`, that row recorded;
/// what comes before it, for the checkpoint.
async fn bisect(
    tx: &mut Tx<'_>,
    crew: &Crew<'_, '_>,
    walk: &Walk,
    range: &RangeRow,
    size: u32,
) -> Result<Committed, BatchError> {
    let upper = batch::upper_bound(tx.conn(), walk, range, size).await?;
    let keys = tx
        .conn()
        .keys(walk, range.cursor.as_deref(), &upper)
        .await?;
    // Where a probe of keys `from..` starts: after the key before it, or the range's cursor.
    let lower = |from: usize| match from {
        0 => range.cursor.as_deref(),
        from => Some(keys[from - 1].as_slice()),
    };
    let mut plan = Bisect::new(keys.len());
    let mut changed = 0;
    let end = loop {
        let probe = match plan.next() {
            Step::Probe(probe) => probe,
            Step::Clean { upto } => break End::Clean(upto),
            Step::Found { at, error } => break End::Found(at, error),
        };
        let through = &keys[probe.end - 1];
        let mut savepoint = tx.savepoint().await?;
        let update = savepoint.conn().update(walk, lower(probe.start), through);
        match update.await {
            Ok(n) => {
                savepoint.commit().await?;
                changed += n;
                plan.record(probe, Ok(()));
            }
            Err(e) => match ServerError::of(&e).filter(|_| is_row_error(&e)) {
                Some(server) => {
                    savepoint.rollback().await?;
                    plan.record(probe, Err(server));
                }
                None => return Err(e.into()),
            },
        }
    };
    // Where the range's cursor goes, the keys walked up to it, and the row stopped at: the
    // cursor stops just before the first key not applied, or just after a row set aside.
    let through = |n: usize| (keys[n - 1].clone(), walked(n));
    let (cursor, walked, failed) = match end {
        End::Clean(upto) if upto == keys.len() => (upper, size, None),
        End::Clean(upto) => {
            let (cursor, walked) = through(upto);
            (cursor, walked, None)
        }
        End::Found(at, error) => {
            let failed = failed_row(crew, walk, &keys[at], error);
            match crew.r.job.batch.on_error {
                OnError::Skip => {
                    crew.r
                        .store
                        .record_failure(tx.conn(), crew.job(), &failed)
                        .await?;
                    let (cursor, walked) = through(at + 1);
                    (cursor, walked, Some(failed))
                }
                // The batch's first key: the cursor already stands just before it.
                OnError::Stop if at == 0 => return Err(BatchError::Row(Box::new(failed))),
                OnError::Stop => {
                    let (cursor, walked) = through(at);
                    (cursor, walked, Some(failed))
                }
            }
        }
    };
    Ok(Committed {
        upper: cursor,
        rows: changed,
        elapsed: Duration::ZERO,
        keys: walked,
        failed: failed.map(Box::new),
        wal: None,
        job: Progress::default(),
    })
}

/// How the search ended: no row failing, rows `0..upto` applied; or row `at` failing.
enum End {
    Clean(usize),
    Found(usize, ServerError),
}

/// `n` keys walked, as a batch size.
fn walked(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The row at `key` of `walk`'s relation, with the server's reason.
fn failed_row(crew: &Crew<'_, '_>, walk: &Walk, key: &Key, error: ServerError) -> FailedRow {
    FailedRow {
        columns: crew.r.plan.key_columns.clone(),
        key: key.clone(),
        relation: walk.relation.clone(),
        sqlstate: error.code.unwrap_or_default(),
        message: error.message,
        notes: error.notes,
        attempts: 1,
        age: None,
    }
}

/// After a narrowed batch committed: the error that stops the walk at `failed`
/// (`on_error = "stop"`), or, for a row set aside, the event that says so.
pub(super) fn stop_or_skip(
    crew: &Crew<'_, '_>,
    worker: u32,
    range: u32,
    failed: Box<FailedRow>,
) -> Option<EngineError> {
    if crew.r.job.batch.on_error == OnError::Stop {
        return Some(EngineError::Row(failed));
    }
    crew.send(|job| Event::Skipped {
        job,
        worker,
        range: Some(range),
        row: failed.row(),
        key: failed.key.clone(),
        sqlstate: failed.sqlstate.clone(),
        message: failed.reason(),
    });
    None
}
