//! How a run ends, once its workers have: from how each of them ended, the outcome — the
//! first error, else a cancel, else an interruption, else done — and, when the job is done,
//! its final vacuum and the `finished` event with the heap before and after.

use std::time::Instant;

use crate::db::Session;
use tokio::sync::watch;

use crate::event::Event;

use super::vacuum::Vacuum;
use super::{EngineError, Outcome, Run, application_name, connect};

/// Why a worker stopped before the job was done, least to most decisive for how the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stop {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// `backfill cancel`.
    Cancelled,
    /// Another worker of this process met an error.
    Halted,
}

/// How a worker ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Every range of the job is done.
    AllDone,
    Stopped(Stop),
}

impl Run<'_> {
    /// How the run ended, from how each worker ended: the first error, else a cancel, else an
    /// interruption, else done — with the job's totals as stored (as this process counted
    /// them, if the row cannot be read now; then no final vacuum either), and the event that
    /// says so. `joined`: this process joined a job another process runs.
    pub(super) async fn outcome(
        &self,
        joined: bool,
        results: Vec<Result<End, EngineError>>,
        conn: &mut Session,
        end: Ending<'_, '_>,
        emit: &mut dyn FnMut(&Event),
    ) -> Result<Outcome, EngineError> {
        let mut stop = None;
        for result in results {
            match result? {
                End::AllDone => {}
                End::Stopped(Stop::Halted) => {}
                End::Stopped(s) => stop = stop.max(Some(s)),
            }
        }
        let job = self.job.name.clone();
        let row = match self.store.load(conn.conn(), &job).await {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::debug!("cannot read the job's totals at the end: {e}");
                None
            }
        };
        let (rows_done, batches_done, failures) = row
            .as_ref()
            .map_or((end.counted.0, end.counted.1, 0), |row| {
                (row.rows_done, row.batches_done, row.failures)
            });
        Ok(match stop {
            Some(Stop::Cancelled) => Outcome::Cancelled { rows_done },
            Some(_) => {
                emit(&Event::Interrupted { job, rows_done });
                Outcome::Interrupted { rows_done }
            }
            None => {
                let table = &self.plan.table;
                let vacuum = match end.vacuum {
                    Some(_) if self.options.retry_failures => {
                        let changed = rows_done.saturating_sub(end.rows_at_start);
                        let table_rows = conn.conn().counted_rows(table).await.ok().flatten();
                        end.vacuum
                            .filter(|_| super::vacuum::retry_vacuums(changed, table_rows))
                    }
                    other => other,
                };
                if let (Some(vacuum), Some(row)) = (vacuum, &row) {
                    let finisher = (row, joined);
                    if vacuum
                        .finish(conn, table, finisher, end.shutdown, emit)
                        .await
                    {
                        *conn = connect(self.target, &application_name(&job)).await?;
                    }
                }
                let heap_bytes = conn.conn().heap_bytes(table).await.ok();
                emit(&Event::Finished {
                    job,
                    rows_done,
                    batches_done,
                    elapsed_ms: crate::event::millis(end.started.elapsed()),
                    heap_bytes_before: end.heap_bytes_start,
                    heap_bytes_after: heap_bytes,
                });
                Outcome::Finished {
                    rows_done,
                    failures,
                    heap_bytes,
                }
            }
        })
    }
}

/// What the end of a run needs besides how its workers ended.
pub(super) struct Ending<'v, 'r> {
    pub started: Instant,
    /// The process's vacuums, for the final one.
    pub vacuum: Option<&'v Vacuum<'r>>,
    /// Cancels the final vacuum.
    pub shutdown: watch::Receiver<bool>,
    /// The table's heap when the job started.
    pub heap_bytes_start: Option<u64>,
    /// The job's rows and batches done, as this process counted them.
    pub counted: (u64, u64),
    /// The job's rows done when this run started: a retry changed the rows past them.
    pub rows_at_start: u64,
}
