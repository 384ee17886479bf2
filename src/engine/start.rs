//! The start of a run in this process, once it holds the job: the ranges laid out and the
//! pending rows estimated — each once no lock on the table is in the way, paused while one is
//! (see [`lockwait`](crate::lockwait)) — and the monitor and the latency guard started only
//! then, so that a lock the start waited for (and its cooldown) does not pause the first
//! batches a second time, nor slow the guard's baseline.

use crate::db::Session;
use tokio::sync::watch;

use crate::event::Event;
use crate::guard::{self, Guard};
use crate::job::Timeouts;
use crate::lockwait::{LockWait, Note};
use crate::monitor::{Monitor, Watch};
use crate::plan::START_LOCK_TIMEOUT;
use crate::preflight::Method;
use crate::ranges::Share;
use crate::state::{JobRow, Live, Pending};

use super::lead::Lead;
use super::{EngineError, guard_application_name, monitor_application_name, own_sessions};

impl Lead<'_, '_> {
    /// Lays the ranges out if nobody has, and estimates the rows still pending unless the job
    /// keeps an estimate already (`--exact-count` counts them again) — once no lock on the
    /// table is in the way, paused while one is (see `lockwait`). Gives back the estimate (with
    /// `--retry-failures`, the failed rows) and the job as it stands then; `None` when shutdown
    /// came first.
    pub(super) async fn prepare(
        &self,
        conn: &mut Session,
        workers: u32,
        row: &JobRow,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(Pending, JobRow)>, EngineError> {
        let (r, table) = (self.r, || self.r.plan.table.clone());
        let timeouts = Timeouts {
            lock: START_LOCK_TIMEOUT,
            ..r.job.timeouts
        };
        let share = Share {
            timeouts: &timeouts,
            ..self.share
        };
        let publish = |note| {
            self.heartbeat.publish(Live {
                rates: vec![],
                note,
            })
        };
        let mut wait = LockWait {
            job: r.job.name.clone(),
            relations: r.plan.relations(),
            ours: own_sessions(&r.job.name),
            poll: r.job.throttle.poll,
            patience: None,
            note: Note::Publish(&publish),
            emit,
            shutdown,
        };
        wait.step(conn, async |conn| {
            share
                .lay_out(conn, &r.job.name, workers as usize)
                .await
                .map_err(|source| EngineError::LayOut {
                    table: table(),
                    source,
                })?;
            let laid_out = r.store.load(conn.conn(), &r.job.name).await?;
            if r.options.retry_failures {
                let failed = Pending {
                    rows: row.failures,
                    rows_done: laid_out.rows_done,
                    exact: true,
                    table_rows: None,
                };
                return Ok((failed, laid_out));
            }
            let exact = r.options.exact_count;
            if let Some(kept) = laid_out.pending.filter(|p| p.exact || !exact) {
                return Ok((kept, laid_out));
            }
            let found = conn
                .conn()
                .pending_rows(r.plan, exact)
                .await
                .map_err(|source| EngineError::Estimate {
                    table: table(),
                    source,
                })?;
            let pending = Pending {
                rows: found.rows,
                rows_done: laid_out.rows_done,
                exact: found.method == Method::Exact,
                table_rows: found.table_rows,
            };
            let store = r.store;
            store
                .keep_estimate(conn.conn(), &r.job.name, &pending, exact)
                .await?;
            // Another process may have kept its own first: every process uses the one kept.
            let kept = store.load(conn.conn(), &r.job.name).await?;
            Ok((kept.pending.unwrap_or(pending), kept))
        })
        .await
    }

    /// The monitor of this process.
    pub(super) fn monitor(&self) -> Monitor {
        let r = self.r;
        Monitor::start(Watch {
            policy: r.job.throttle.clone(),
            target: r
                .options
                .monitor
                .clone()
                .unwrap_or_else(|| r.target.clone()),
            application_name: monitor_application_name(&r.job.name),
            relations: r.plan.relations(),
            ours: own_sessions(&r.job.name),
            replicas: r.options.replicas.clone(),
        })
    }

    /// The latency guard of this process.
    pub(super) fn guard(&self) -> Guard {
        let r = self.r;
        Guard::start(guard::Setup {
            policy: r.job.guard.clone(),
            target: r.target.clone(),
            application_name: guard_application_name(&r.job.name),
            probe: guard::Probe::of(r.job, r.plan),
            timeouts: r.job.timeouts,
        })
    }

    /// Waits for `guard`'s baseline, before any batch of this process runs, at most
    /// [`guard::BASELINE_PATIENCE`]: then the run starts without it and the guard joins in once
    /// it has one. On shutdown the workers stop before their first batch.
    pub(super) async fn baseline(
        &self,
        guard: &Guard,
        emit: &mut dyn FnMut(&Event),
        mut shutdown: watch::Receiver<bool>,
    ) {
        let patience = guard::BASELINE_PATIENCE;
        tokio::select! {
            measured = tokio::time::timeout(patience, guard.measured()) => {
                if let Some(ready) = guard.now() {
                    emit(&Event::GuardReady {
                        job: self.r.job.name.clone(),
                        baseline_ms: ready.baseline.as_secs_f64() * 1000.0,
                    });
                }
                if measured.is_err() {
                    tracing::warn!(
                        "the latency guard has no baseline after {}: its probe does not run \
                         (BACKFILL_LOG=backfill=debug says why); the run starts without it, and \
                         the guard joins in once it has one",
                        humantime::format_duration(patience)
                    );
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}
