//! The engine: runs one job, in this process, from its checkpoints to the end of its key range
//! (ARCHITECTURE.md).
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
//! `heartbeat.rs` keeps the leases; `start.rs` lays out and estimates while a lock on the table
//! is waited for, then starts the monitor and the guard; `vacuum.rs` paces the run with vacuums
//! and runs the final one; `end.rs` settles how a run ended.

mod backoff;
mod batch;
mod crew;
mod end;
mod failed;
mod heartbeat;
mod narrow;
pub mod pace;
pub mod sizer;
mod start;
mod total;
mod vacuum;
mod walk;
mod worker;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sqlx::PgConnection;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::db::{Target, error_chain, hang_up};
use crate::disk::{self, Vacuums};
use crate::event::Event;
use crate::guard::Guard;
use crate::job::Job;
use crate::lockwait::LockWaitError;
use crate::monitor::Monitor;
use crate::plan::Plan;
use crate::share::{Share, ShareError};
use crate::state::{
    Admission, Claim, FailedRow, JobRow, Owner, RangeSql, Release, StateError, Store,
};

use crew::{Crew, Estimated, Start};
use end::Ending;
use heartbeat::{Heartbeat, Lease};
use vacuum::{Feed, Vacuum};
use worker::Worker;

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
    /// What the run vacuums (the job's `[vacuum]`, as far as the role may and the monitor runs).
    pub vacuums: Vacuums,
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
    /// Only retry the rows in the `failures` table, one transaction each, on one worker.
    pub retry_failures: bool,
}

/// How a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key range is walked to its end (or, with `--retry-failures`, every failed row was
    /// tried); `failures` rows are still set aside in the failures table.
    Finished { rows_done: u64, failures: u64 },
    /// `--retry-failures` found no failed row to retry; nothing was done.
    NothingToRetry,
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
    #[error(transparent)]
    LockWait(#[from] LockWaitError),
    /// A row the job cannot backfill, with `on_error = "stop"`: the rows before it are done.
    #[error(
        "{0}; the rows before it are done: fix the row and run again to resume from it, or set \
         [batch] on_error = \"skip\" to set such rows aside and go on"
    )]
    Row(Box<FailedRow>),
}

/// For [`LockWait::step`], which looks through the causes for a lock timeout.
impl AsRef<dyn std::error::Error + 'static> for EngineError {
    fn as_ref(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
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
    r.store.ensure(&mut conn, r.job.timeouts.lock).await?;
    // Unknown while DDL holds the table: the job's start is then recorded by a later run.
    let heap_bytes = disk::heap_bytes(&mut conn, &r.plan.table).await.ok();
    if r.options.retry_failures
        && r.store
            .failures(&mut conn, &r.job.name, 1)
            .await?
            .is_empty()
    {
        hang_up(conn).await;
        return Ok(Outcome::NothingToRetry);
    }
    let claim = Claim {
        name: &r.job.name,
        table_name: &r.plan.table,
        definition_hash: &r.job.definition_hash(),
        owner: r.owner,
        lease_timeout: r.options.lease_timeout,
        restart: r.options.restart,
        resume_cancelled: r.options.resume_cancelled,
        join: r.options.join,
        retry_failures: r.options.retry_failures,
        heap_bytes,
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
        table: r.plan.table.clone(),
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
        joined: admission == Admission::Join,
    };
    let (result, conn) = lead.run(conn, &row, emit, shutdown).await;
    heartbeat.stop().await;
    if let Err(e) = &result {
        emit(&Event::Error {
            job: r.job.name.clone(),
            message: error_chain(e),
        });
    }
    let release = match &result {
        Ok(Outcome::Finished { .. } | Outcome::AlreadyDone { .. } | Outcome::NothingToRetry) => {
            Release::Done
        }
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

/// The `application_name`s of the job's own sessions (batches, heartbeat, vacuum, monitor,
/// guard), in every process that runs it: their locks are never a reason to wait.
pub fn own_sessions(job: &str) -> Vec<String> {
    vec![
        application_name(job),
        monitor_application_name(job),
        guard_application_name(job),
    ]
}

/// How the run began: the job's row when claimed, the workers this process runs, what the start
/// estimated, and when the run's clock started.
#[derive(Clone, Copy)]
struct Begun<'a> {
    row: &'a JobRow,
    workers: u32,
    estimate: Estimated,
    started: Instant,
    /// The process's monitor, unless `[throttle]` turns it off.
    monitor: Option<&'a Monitor>,
    /// The process's latency guard, when `[guard]` turns it on.
    guard: Option<&'a Guard>,
}

/// What leads the workers of this process.
struct Lead<'r, 'a> {
    r: &'r Run<'a>,
    share: Share<'r>,
    heartbeat: &'r Heartbeat,
    /// This process joined a job another process runs.
    joined: bool,
}

impl Lead<'_, '_> {
    /// Lays the ranges out, starts the monitor (unless `[throttle]` turns it off) and the
    /// workers, and shows their events until they have all ended; gives back a connection to
    /// release the leases on, if one is still good. The monitor starts only once the start
    /// is through: a lock that held the start back has been waited for, and its cooldown
    /// must not pause the first batches again.
    async fn run(
        &self,
        mut conn: PgConnection,
        row: &JobRow,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> (Result<Outcome, EngineError>, Option<PgConnection>) {
        let workers = match self.r.options {
            o if o.retry_failures => 1,
            o => o.workers.unwrap_or(self.r.job.batch.workers),
        };
        let estimate = match self
            .prepare(&mut conn, workers, row, emit, shutdown.clone())
            .await
        {
            Ok(Some(estimate)) => estimate,
            Ok(None) => {
                let (job, rows_done) = (self.r.job.name.clone(), row.rows_done);
                emit(&Event::Interrupted { job, rows_done });
                return (Ok(Outcome::Interrupted { rows_done }), Some(conn));
            }
            Err(e) => return (Err(e), Some(conn)),
        };
        // The run's time, for its speed, starts once it is through the start's wait.
        let started = Instant::now();
        // The total as every batch refines it, with nothing walked yet (the pending rows,
        // at most the keys left): `resuming at …/TOTAL` and the first progress line agree.
        let total_estimate = total::total(&total::Seen {
            rows_done: row.rows_done,
            start_done: row.rows_done,
            start_pending: estimate.pending,
            keys_walked: 0,
            rows_changed: 0,
            keys_left: estimate.keys_left,
            batch: self.r.job.batch.size,
        });
        emit(&Event::Started {
            job: self.r.job.name.clone(),
            total_estimate,
            rows_done: row.rows_done,
            resumed: row.batches_done > 0,
            workers,
            joined: self.joined,
        });
        let monitor = self.r.job.throttle.enabled.then(|| self.monitor());
        let guard = self.r.job.guard.enabled.then(|| self.guard());
        if let Some(guard) = &guard {
            self.baseline(guard, emit, shutdown.clone()).await;
        }
        let begun = Begun {
            row,
            workers,
            estimate,
            started,
            monitor: monitor.as_ref(),
            guard: guard.as_ref(),
        };
        let ended = self.work(conn, &begun, emit, shutdown).await;
        if let Some(monitor) = monitor {
            monitor.stop().await;
        }
        if let Some(guard) = guard {
            guard.stop().await;
        }
        ended
    }

    /// Runs the workers on `conn` and new connections, and shows their events until they
    /// have all ended.
    async fn work(
        &self,
        conn: PgConnection,
        begun: &Begun<'_>,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> (Result<Outcome, EngineError>, Option<PgConnection>) {
        let Begun {
            row,
            workers,
            estimate,
            started,
            monitor,
            guard,
        } = *begun;
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
        let vacuum = Vacuum::of(self.r, monitor, self.heartbeat);
        let (feed, (stop_pacing, pacing_stopped)) = (Feed::default(), watch::channel(false));
        let every = self
            .r
            .job
            .vacuum
            .every
            .rows(estimate.table_rows.unwrap_or(estimate.pending));
        let pace_events = events.clone();
        let mut pacing = std::pin::pin!(async {
            if let Some(v) = &vacuum {
                v.pace(&feed, every, pacing_stopped, &pace_events).await;
            }
        });
        let final_stop = shutdown.clone();
        let crew = Crew::new(Start {
            r: self.r,
            share: self.share,
            heartbeat: self.heartbeat,
            monitor,
            guard,
            feed: vacuum.as_ref().filter(|v| v.paces()).map(|_| &feed),
            totals: (row.rows_done, row.batches_done),
            estimate,
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
        let (mut shown, mut heap_shown, mut paced) = ((0, 0, 0), None, false);
        let ends = loop {
            tokio::select! {
                biased;
                Some(event) = received.recv() => emit(&event),
                _ = beats.changed() => {
                    let beat = beats.borrow_and_update().clone();
                    if let Some(heap_bytes) = beat.heap_bytes.filter(|b| heap_shown != Some(*b)) {
                        heap_shown = Some(heap_bytes);
                        emit(&Event::Heap {
                            job: self.r.job.name.clone(),
                            heap_bytes_before: row.heap_bytes_start.unwrap_or(heap_bytes),
                            heap_bytes,
                        });
                    }
                    if let Some(job) = beat.job
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
                _ = &mut pacing, if !paced => paced = true,
                ends = &mut ends => break ends,
            }
        };
        stop_pacing.send_replace(true);
        if !paced {
            pacing.await;
        }
        while let Ok(event) = received.try_recv() {
            emit(&event);
        }
        let (results, mut conns): (Vec<_>, Vec<_>) = ends.into_iter().unzip();
        let mut conn = conns.swap_remove(0);
        for c in conns {
            hang_up(c).await;
        }
        let end = Ending {
            started,
            vacuum: vacuum.as_ref(),
            shutdown: final_stop,
            heap_bytes_start: row.heap_bytes_start,
            counted: crew.totals(),
            rows_at_start: row.rows_done,
        };
        let outcome = self.outcome(results, &mut conn, end, emit).await;
        (outcome, Some(conn))
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
