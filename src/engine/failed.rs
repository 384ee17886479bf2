//! `run --retry-failures`: the rows a job set aside in the `failures` table (`[batch]
//! on_error = "skip"`), tried again one at a time, in the order they were first recorded.
//!
//! Each row is its own short batch transaction, under the job's timeouts and watched by the
//! monitor like any batch, after the worker has obeyed the monitor, the operator and the
//! heartbeat: the row's `UPDATE` runs in a savepoint; when it succeeds the row leaves the
//! table and its rows count as one batch of the job's (in the same transaction, under the
//! job's lease); when it fails on the row's data again the row stays, with the new message and
//! one more attempt. A transient error (a lock timeout, a lost connection, the monitor's yield)
//! is retried as a batch's would be. One worker does it all: a few failed rows need no more.

use crate::db::{ServerError, Tx, is_row_error};
use crate::event::Event;
use crate::state::FailedRow;

use super::BatchError;
use super::EngineError;
use super::batch;
use super::crew::Crew;
use super::end::End;
use super::streak::Streak;
use super::worker::{Step, Worker};

/// Failed rows read at a time.
const PAGE: u32 = 100;

/// How retrying one failed row went.
enum Retried {
    /// The row is backfilled (`rows` is 0 when it no longer matched `where`) and forgotten.
    Filled { rows: u64 },
    /// The row failed on its data again; it stays in the table, as recorded here.
    Again(Box<FailedRow>),
}

impl Worker<'_, '_, '_> {
    /// Retries every failed row of the job once (see the module header); `AllDone` when each
    /// was tried.
    pub(super) async fn retry_failed(&mut self) -> Result<End, EngineError> {
        let mut after = None;
        let mut failures = Streak::default();
        loop {
            let page = match self.failed_rows(after).await {
                Ok(page) => page,
                Err(e) => {
                    if let Some(stop) = self.recover(e, None, &mut failures).await? {
                        return Ok(End::Stopped(stop));
                    }
                    continue;
                }
            };
            if page.is_empty() {
                return Ok(End::AllDone);
            }
            for (seq, row) in page {
                if let Some(end) = self.retry_row(&row, &mut failures).await? {
                    return Ok(end);
                }
                after = Some(seq);
            }
        }
    }

    /// The next page of failed rows after `after`.
    async fn failed_rows(
        &mut self,
        after: Option<i64>,
    ) -> Result<Vec<(i64, FailedRow)>, BatchError> {
        let (store, job) = (self.crew.r.store, self.crew.job());
        let mut tx = self.link.session.begin_read_only().await?;
        let page = store.failures_after(tx.conn(), job, after, PAGE).await?;
        tx.commit().await?;
        Ok(page)
    }

    /// Tries `row` until it is filled or fails on its data again; `Some` when the worker must
    /// stop first.
    async fn retry_row(
        &mut self,
        row: &FailedRow,
        failures: &mut Streak,
    ) -> Result<Option<End>, EngineError> {
        loop {
            let throttled = match self.obey().await? {
                Step::Stop(stop) => return Ok(Some(End::Stopped(stop))),
                Step::Batch { throttled } => throttled,
            };
            let turn = if throttled {
                Some(self.crew.brakes.turn().await)
            } else {
                None
            };
            let result = self.fill(row).await;
            let seen = self.crew.watchers.batch_ended(self.id);
            drop(turn);
            let worker = self.id;
            match result {
                Ok(Retried::Filled { rows }) => {
                    *failures = Streak::default();
                    let rows_done = self
                        .crew
                        .ledger
                        .committed(&row.relation, rows, None, 1)
                        .rows_done;
                    self.crew.send(|job| Event::Filled {
                        job,
                        worker,
                        row: row.row(),
                        key: row.key.clone(),
                        rows_done,
                    });
                    return Ok(None);
                }
                Ok(Retried::Again(again)) => {
                    *failures = Streak::default();
                    self.crew.send(|job| Event::Skipped {
                        job,
                        worker,
                        range: None,
                        row: again.row(),
                        key: again.key.clone(),
                        sqlstate: again.sqlstate.clone(),
                        message: again.reason(),
                    });
                    return Ok(None);
                }
                Err(_) if seen.yielded => {
                    let reason = self.crew.watchers.reason();
                    self.crew.send(|job| Event::Yielded {
                        job,
                        worker,
                        range: None,
                        reason,
                    });
                }
                Err(e) => {
                    let at = format!("retry of row {}", row.row());
                    if let Some(stop) = self.recover(e, Some(at), failures).await? {
                        return Ok(Some(End::Stopped(stop)));
                    }
                }
            }
        }
    }

    /// One transaction: the row's `UPDATE` in a savepoint, then its record forgotten (filled)
    /// or brought up to date (failed again). A transaction that fails (a yield, a lock
    /// timeout) is rolled back at once, as a batch's is, so that it holds no lock while the
    /// worker pauses or retries.
    async fn fill(&mut self, row: &FailedRow) -> Result<Retried, BatchError> {
        let crew = self.crew;
        let mut tx = batch::begin(&mut self.link.session, crew, self.id, None).await?;
        let retried = fill_in(crew, &mut tx, row).await;
        tx.settle(retried).await
    }
}

/// [`Worker::fill`]'s statements, inside its transaction `tx`.
async fn fill_in(
    crew: &Crew<'_, '_>,
    tx: &mut Tx<'_>,
    row: &FailedRow,
) -> Result<Retried, BatchError> {
    let (store, job, plan) = (crew.r.store, crew.job(), crew.r.plan);
    let walk = plan.walk_of(&row.relation).unwrap_or(&plan.walk);
    let mut savepoint = tx.savepoint().await?;
    let update = savepoint.conn().update_key(walk, &row.key).await;
    Ok(match update {
        Ok(rows) => {
            savepoint.commit().await?;
            store
                .failure_filled(tx.conn(), job, crew.r.owner, &row.key, rows)
                .await?;
            Retried::Filled { rows }
        }
        Err(e) => match ServerError::of(&e).filter(|_| is_row_error(&e)) {
            Some(server) => {
                savepoint.rollback().await?;
                let again = FailedRow {
                    sqlstate: server.code.unwrap_or_default(),
                    message: server.message,
                    notes: server.notes,
                    attempts: row.attempts + 1,
                    ..row.clone()
                };
                store.record_failure(tx.conn(), job, &again).await?;
                Retried::Again(Box::new(again))
            }
            None => return Err(e.into()),
        },
    })
}
