//! The engine: runs one job, in this process, from its checkpoints to the end of its key range
//! (DESIGN §3, §9).
//!
//! It claims the job — its lease, or, with `--join`, only a place beside the process that runs
//! it — lays the job's ranges out if nobody has yet (`share`), starts the heartbeat that keeps
//! this process's leases and the one [`monitor`](crate::monitor) that all its workers obey
//! (unless `[throttle]` turns it off), then runs `--workers` workers, each a batch loop on its
//! own connection (`worker.rs` takes ranges, `walk.rs` walks one, `batch.rs` runs one batch),
//! sharing what `crew.rs` holds. It shows their events, and when they have all ended it
//! settles how the job stands and gives its leases back. It emits [`Event`]s and never prints;
//! it never listens for signals itself — the caller passes shutdown in.
//!
//! With `[guard]` on, it also starts the process's latency [`guard`](crate::guard) and waits
//! for its baseline before the first batch.
//!
//! `sizer.rs`, `pace.rs` (the sleep after each batch) and `backoff.rs` are pure arithmetic;
//! `heartbeat.rs` keeps the leases.

pub(crate) mod backoff;
mod batch;
mod crew;
mod heartbeat;
pub mod pace;
pub mod sizer;
mod walk;
mod worker;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sqlx::PgConnection;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::db::{Target, error_chain, hang_up};
use crate::event::Event;
use crate::guard::{self, Guard};
use crate::job::Job;
use crate::monitor::{Monitor, Watch};
use crate::plan::Plan;
use crate::preflight;
use crate::share::{Share, ShareError};
use crate::state::{Admission, Claim, JobRow, Owner, RangeSql, Release, StateError, Store};

use crew::{Crew, Start};
use heartbeat::{Heartbeat, Lease};
use worker::{End, Stop, Worker};

/// Consecutive failed attempts of one batch before the job stops.
pub const MAX_ATTEMPTS: u32 = 10;

/// Everything one run of one job needs.
pub struct Run<'a> {
    pub job: &'a Job,
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub target: &'a Target,
    pub owner: &'a Owner,
    pub options: &'a Options,
}

/// How the operator asked jobs to run (`run`'s flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Forget the checkpoint and start from the first key.
    pub restart: bool,
    /// Continue a cancelled job from its checkpoint.
    pub resume_cancelled: bool,
    /// Count pending rows exactly (`count(*)`) instead of using the planner's estimate.
    pub exact_count: bool,
    /// How long to keep reconnecting to a database that went away before giving up.
    pub reconnect_timeout: Duration,
    /// Where the monitor connects (`--monitor-url`); `None`: the job's own database URL.
    pub monitor: Option<Target>,
    /// Batch loops in this process (`--workers`); `None`: the job's `[batch] workers`.
    pub workers: Option<u32>,
    /// Add workers to a job another process runs, instead of refusing (`--join`).
    pub join: bool,
    /// How long others wait after this process's last heartbeat before taking its ranges over.
    pub lease_timeout: Duration,
}

/// How a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key range is walked to its end.
    Finished { rows_done: u64 },
    /// An earlier run finished the job; nothing was done.
    AlreadyDone { rows_done: u64 },
    /// Stopped by the shutdown signal; the checkpoint is consistent and `run` resumes it.
    Interrupted { rows_done: u64 },
    /// Cancelled by an operator (`backfill cancel`).
    Cancelled { rows_done: u64 },
}

/// Why a run stopped with an error.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot lay out the key range of {table}")]
    LayOut {
        table: String,
        #[source]
        source: ShareError,
    },
    #[error("cannot estimate the pending rows of {table}")]
    Estimate {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{at} failed; the job stopped with its checkpoint intact")]
    Batch {
        at: String,
        #[source]
        source: batch::BatchError,
    },
    #[error("{at} failed {attempts} times in a row; the job stopped with its checkpoint intact")]
    GaveUp {
        at: String,
        attempts: u32,
        #[source]
        source: batch::BatchError,
    },
    #[error(
        "lost the database at {target} and could not get it back within {}; the checkpoint is intact, run again to resume",
        humantime::format_duration(*waited)
    )]
    Unreachable {
        target: String,
        waited: Duration,
        #[source]
        source: batch::BatchError,
    },
    #[error("{0}")]
    LeaseLost(String),
}

impl EngineError {
    /// True when the operator must act before the job can run (exit code 2).
    pub fn is_invalid_job(&self) -> bool {
        matches!(self, EngineError::State(e) if e.is_invalid_job())
    }
}

/// `application_name` for the job's sessions: `backfill:<job>`, cut to PostgreSQL's 63 bytes.
pub fn application_name(job: &str) -> String {
    let mut name = format!("backfill:{job}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// `application_name` for the job's monitor: `backfill:<job>:monitor` as far as it fits.
pub fn monitor_application_name(job: &str) -> String {
    application_name(&format!("{job}:monitor"))
}

/// `application_name` for the job's latency guard: `backfill:<job>:guard` as far as it fits.
pub fn guard_application_name(job: &str) -> String {
    application_name(&format!("{job}:guard"))
}

/// Runs `r.job` to its end, or until `shutdown` turns true, emitting events on the way.
pub async fn run(
    r: &Run<'_>,
    emit: &mut dyn FnMut(&Event),
    shutdown: watch::Receiver<bool>,
) -> Result<Outcome, EngineError> {
    let app = application_name(&r.job.name);
    let mut conn = connect(r.target, &app).await?;
    r.store.ensure(&mut conn).await?;
    let claim = Claim {
        name: &r.job.name,
        table_name: &r.plan.table,
        definition_hash: &r.job.definition_hash(),
        owner: r.owner,
        lease_timeout: r.options.lease_timeout,
        restart: r.options.restart,
        resume_cancelled: r.options.resume_cancelled,
        join: r.options.join,
    };
    let (admission, row) = r.store.claim(&mut conn, &claim).await?;
    if admission == Admission::AlreadyDone {
        hang_up(conn).await;
        return Ok(Outcome::AlreadyDone {
            rows_done: row.rows_done,
        });
    }
    let heartbeat = Heartbeat::start(Lease {
        store: r.store.clone(),
        target: r.target.clone(),
        name: r.job.name.clone(),
        owner: r.owner.clone(),
        holds_job: admission != Admission::Join,
        application_name: app.clone(),
    });
    let monitor = r.job.throttle.enabled.then(|| {
        Monitor::start(Watch {
            policy: r.job.throttle.clone(),
            target: r
                .options
                .monitor
                .clone()
                .unwrap_or_else(|| r.target.clone()),
            application_name: monitor_application_name(&r.job.name),
            relations: relations(r.plan),
            ours: vec![
                app.clone(),
                monitor_application_name(&r.job.name),
                guard_application_name(&r.job.name),
            ],
        })
    });
    let guard = r.job.guard.enabled.then(|| {
        Guard::start(guard::Setup {
            policy: r.job.guard.clone(),
            target: r.target.clone(),
            application_name: guard_application_name(&r.job.name),
            probe: guard::Probe::of(r.job, r.plan),
            timeouts: r.job.timeouts,
        })
    });
    let sql = RangeSql::new(r.store, &r.plan.key_types);
    let share = Share {
        store: r.store,
        plan: r.plan,
        sql: &sql,
        timeouts: &r.job.timeouts,
        min_keys: 4 * u64::from(r.job.batch.max),
    };
    let lead = Lead {
        r,
        share,
        heartbeat: &heartbeat,
        monitor: monitor.as_ref(),
        guard: guard.as_ref(),
        joined: admission == Admission::Join,
    };
    let (result, conn) = lead.run(conn, &row, emit, shutdown).await;
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    if let Some(guard) = guard {
        guard.stop().await;
    }
    heartbeat.stop().await;
    if let Err(e) = &result {
        emit(&Event::Error {
            job: r.job.name.clone(),
            message: error_chain(e),
        });
    }
    let release = match &result {
        Ok(Outcome::Finished { .. } | Outcome::AlreadyDone { .. }) => Release::Done,
        Ok(Outcome::Interrupted { .. }) => Release::Stopped,
        Ok(Outcome::Cancelled { .. }) => Release::Cancelled,
        Err(EngineError::LeaseLost(_) | EngineError::State(StateError::LeaseLost { .. })) => {
            Release::Stopped
        }
        Err(e) => Release::Failed(error_chain(e)),
    };
    let mut conn = match conn {
        Some(conn) => conn,
        None => connect(r.target, &app).await?,
    };
    release_leases(r, &mut conn, &release).await;
    hang_up(conn).await;
    result
}

/// The relations the monitor watches: the table, and the leaves batches update.
fn relations(plan: &Plan) -> Vec<String> {
    let mut all = vec![plan.table.clone()];
    all.extend(
        plan.walks()
            .iter()
            .map(|w| w.relation.clone())
            .filter(|r| *r != plan.table),
    );
    all
}

/// What leads the workers of this process.
struct Lead<'r, 'a> {
    r: &'r Run<'a>,
    share: Share<'r>,
    heartbeat: &'r Heartbeat,
    monitor: Option<&'r Monitor>,
    guard: Option<&'r Guard>,
    /// This process joined a job another process runs.
    joined: bool,
}

impl Lead<'_, '_> {
    /// Lays the ranges out, starts the workers and shows their events until they have all
    /// ended; gives back a connection to release the leases on, if one is still good.
    async fn run(
        &self,
        mut conn: PgConnection,
        row: &JobRow,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> (Result<Outcome, EngineError>, Option<PgConnection>) {
        let started = Instant::now();
        let workers = self.r.options.workers.unwrap_or(self.r.job.batch.workers);
        let pending = match self.prepare(&mut conn, workers).await {
            Ok(pending) => pending,
            Err(e) => return (Err(e), Some(conn)),
        };
        emit(&Event::Started {
            job: self.r.job.name.clone(),
            total_estimate: row.rows_done + pending.rows,
            rows_done: row.rows_done,
            resumed: row.batches_done > 0,
            workers,
            joined: self.joined,
        });
        if let Some(guard) = self.guard {
            // The baseline, before any batch of this process runs; on shutdown the workers
            // stop before their first batch.
            let mut stop = shutdown.clone();
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
                            "the latency guard has no baseline after {}: its probe does not \
                             run (BACKFILL_LOG=backfill=debug says why); the run starts without \
                             it, and the guard joins in once it has one",
                            humantime::format_duration(patience)
                        );
                    }
                }
                _ = stop.wait_for(|stop| *stop) => {}
            }
        }
        let mut conns = vec![conn];
        for _ in 1..workers {
            match connect(self.r.target, &application_name(&self.r.job.name)).await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    let first = conns.into_iter().next();
                    return (Err(e), first);
                }
            }
        }
        let (events, mut received) = mpsc::unbounded_channel();
        let crew = Crew::new(Start {
            r: self.r,
            share: self.share,
            heartbeat: self.heartbeat,
            monitor: self.monitor,
            guard: self.guard,
            totals: (row.rows_done, row.batches_done),
            events,
            shutdown,
        });
        let app = application_name(&self.r.job.name);
        let mut ends = std::pin::pin!(join_all(
            conns.into_iter().enumerate().map(|(i, c)| Worker::new(
                &crew,
                i as u32,
                c,
                app.clone()
            )
            .run())
        ));
        let mut beats = self.heartbeat.watch();
        let mut shown = (0, 0, 0);
        let ends = loop {
            tokio::select! {
                biased;
                Some(event) = received.recv() => emit(&event),
                _ = beats.changed() => {
                    let job = beats.borrow_and_update().job.clone();
                    if let Some(job) = job
                        && (job.workers, job.processes, job.hosts) != shown
                    {
                        shown = (job.workers, job.processes, job.hosts);
                        emit(&Event::Workers {
                            job: job.name,
                            workers: job.workers,
                            processes: job.processes,
                            hosts: job.hosts,
                        });
                    }
                }
                ends = &mut ends => break ends,
            }
        };
        while let Ok(event) = received.try_recv() {
            emit(&event);
        }
        let (results, mut conns): (Vec<_>, Vec<_>) = ends.into_iter().unzip();
        let mut conn = conns.swap_remove(0);
        for c in conns {
            hang_up(c).await;
        }
        let outcome = self.outcome(results, &mut conn, started, emit).await;
        (outcome, Some(conn))
    }

    /// Lays the ranges out if nobody has, and estimates the rows still pending.
    async fn prepare(
        &self,
        conn: &mut PgConnection,
        workers: u32,
    ) -> Result<preflight::Estimate, EngineError> {
        let table = || self.r.plan.table.clone();
        self.share
            .lay_out(conn, &self.r.job.name, workers as usize)
            .await
            .map_err(|source| EngineError::LayOut {
                table: table(),
                source,
            })?;
        preflight::pending_rows(conn, self.r.plan, self.r.options.exact_count)
            .await
            .map_err(|source| EngineError::Estimate {
                table: table(),
                source,
            })
    }

    /// How the run ended, from how each worker ended: the first error, else a cancel, else an
    /// interruption, else done — with the job's totals as stored, and the event that says so.
    async fn outcome(
        &self,
        results: Vec<Result<End, EngineError>>,
        conn: &mut PgConnection,
        started: Instant,
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
        let row = self.r.store.load(conn, &self.r.job.name).await?;
        let (job, rows_done) = (self.r.job.name.clone(), row.rows_done);
        Ok(match stop {
            Some(Stop::Cancelled) => Outcome::Cancelled { rows_done },
            Some(_) => {
                emit(&Event::Interrupted { job, rows_done });
                Outcome::Interrupted { rows_done }
            }
            None => {
                emit(&Event::Finished {
                    job,
                    rows_done,
                    batches_done: row.batches_done,
                    elapsed_ms: worker::millis(started.elapsed()),
                });
                Outcome::Finished { rows_done }
            }
        })
    }
}

async fn connect(target: &Target, app: &str) -> Result<PgConnection, EngineError> {
    target
        .connect(app)
        .await
        .map_err(|source| EngineError::Connect {
            target: target.describe(),
            source,
        })
}

/// Gives this process's leases back, on a fresh connection if `conn` is broken. A failure
/// here loses nothing: the leases go stale and every checkpoint is already committed.
async fn release_leases(r: &Run<'_>, conn: &mut PgConnection, how: &Release) {
    let name = &r.job.name;
    if r.store.release(conn, name, r.owner, how).await.is_ok() {
        return;
    }
    let fresh = connect(r.target, &application_name(name)).await;
    let released = match fresh {
        Ok(mut c) => {
            let released = r.store.release(&mut c, name, r.owner, how).await.is_ok();
            hang_up(c).await;
            released
        }
        Err(_) => false,
    };
    if !released {
        tracing::warn!("could not release the leases of job {name}; they go stale on their own");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_names_the_job() {
        assert_eq!(application_name("users_flag"), "backfill:users_flag");
    }

    #[test]
    fn monitor_is_named_after_the_job() {
        assert_eq!(
            monitor_application_name("users_flag"),
            "backfill:users_flag:monitor"
        );
    }

    #[test]
    fn the_guard_is_named_after_the_job() {
        assert_eq!(
            guard_application_name("users_flag"),
            "backfill:users_flag:guard"
        );
    }

    #[test]
    fn application_name_fits_postgres_limit() {
        assert_eq!(application_name(&"x".repeat(100)).len(), 63);
    }
}
