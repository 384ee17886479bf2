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
mod condition;
mod crew;
mod end;
mod failed;
mod heartbeat;
mod lead;
mod ledger;
mod link;
mod narrow;
pub mod pace;
pub mod sizer;
mod start;
mod streak;
mod vacuum;
mod worker;

use std::time::Duration;

use crate::db::Session;
use thiserror::Error;
use tokio::sync::watch;

use crate::db::{Failure, Target, classify, error_chain};
use crate::disk::Vacuums;
use crate::event::Event;
use crate::job::Job;
use crate::lockwait::LockWaitError;
use crate::plan::Plan;
use crate::ranges::{Share, ShareError};
use crate::state::{Admission, Claim, FailedRow, Owner, Release, StateError, Store};

use heartbeat::{Heartbeat, Holdings};
use lead::Lead;

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
    /// Replicas whose lag the monitor reads on each (`--replica-url`; MySQL and MariaDB).
    pub replicas: Vec<Target>,
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
    /// `heap_bytes` is the table's heap after the final vacuum, as the `finished` event says
    /// and the job's row keeps (`None`: DDL held the table).
    Finished {
        rows_done: u64,
        failures: u64,
        heap_bytes: Option<u64>,
    },
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
        source: BatchError,
    },
    #[error("{at} failed {attempts} times in a row; the job stopped with its checkpoint intact")]
    GaveUp {
        at: String,
        attempts: u32,
        #[source]
        source: BatchError,
    },
    #[error(
        "lost the database at {target} and could not get it back within {}; the checkpoint is intact, run again to resume",
        humantime::format_duration(*waited)
    )]
    Unreachable {
        target: String,
        waited: Duration,
        #[source]
        source: BatchError,
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

/// Why a batch rolled back, or why a worker could not get a range.
#[derive(Debug, Error)]
pub enum BatchError {
    #[error("batch failed")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The batch's first pending row cannot be backfilled (`on_error = "stop"`).
    #[error("{0}")]
    Row(Box<FailedRow>),
}

impl BatchError {
    /// Whether to retry, shrink or reconnect; a lost lease is never retried.
    pub fn failure(&self) -> Failure {
        match self {
            BatchError::Sql(e) | BatchError::State(StateError::Database { source: e, .. }) => {
                classify(e)
            }
            BatchError::State(_) | BatchError::Row(_) => Failure::Fatal,
            BatchError::Share(e) => e.failure(),
        }
    }
}

/// For [`crate::lockwait::LockWait::step`], which looks through the causes for a lock timeout.
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
    r.store.ensure(conn.conn(), r.job.timeouts.lock).await?;
    // Unknown while DDL holds the table: the job's start is then recorded by a later run.
    let heap_bytes = conn.conn().heap_bytes(&r.plan.table).await.ok();
    if r.options.retry_failures
        && r.store
            .failures(conn.conn(), &r.job.name, 1)
            .await?
            .is_empty()
    {
        conn.hang_up().await;
        return Ok(Outcome::NothingToRetry);
    }
    let claim = Claim {
        name: &r.job.name,
        table_name: &r.plan.table,
        definition_hash: &r.job.definition_hash(),
        settings: &r.job.settings(),
        owner: r.owner,
        lease_timeout: r.options.lease_timeout,
        restart: r.options.restart,
        resume_cancelled: r.options.resume_cancelled,
        join: r.options.join,
        retry_failures: r.options.retry_failures,
        heap_bytes,
    };
    let (admission, row) = r.store.claim(conn.conn(), &claim).await?;
    if admission == Admission::AlreadyDone {
        conn.hang_up().await;
        return Ok(Outcome::AlreadyDone {
            rows_done: row.rows_done,
        });
    }
    let heartbeat = Heartbeat::start(Holdings {
        store: r.store.clone(),
        target: r.target.clone(),
        name: r.job.name.clone(),
        owner: r.owner.clone(),
        holds_job: admission != Admission::Join,
        application_name: app.clone(),
        table: r.plan.table.clone(),
    });
    let sql = r.target.range_sql(r.store, &r.plan.key_types);
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
    // The heap the job's row keeps as the run's end: the `finished` event's, else read now
    // (after a cancel, an error or a stop), before anything else writes to the table.
    let heap_bytes = match &result {
        Ok(Outcome::Finished { heap_bytes, .. }) => *heap_bytes,
        _ => conn.conn().heap_bytes(&r.plan.table).await.ok(),
    };
    release_leases(r, &mut conn, &release, heap_bytes).await;
    conn.hang_up().await;
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

async fn connect(target: &Target, app: &str) -> Result<Session, EngineError> {
    target
        .connect(app)
        .await
        .map_err(|source| EngineError::Connect {
            target: target.describe(),
            source,
        })
}

/// Gives this process's leases back, on a fresh connection if `conn` is broken, with
/// `heap_bytes` for the job's row to keep as the run's end. A failure here loses nothing: the
/// leases go stale and every checkpoint is already committed.
async fn release_leases(r: &Run<'_>, conn: &mut Session, how: &Release, heap_bytes: Option<u64>) {
    let name = &r.job.name;
    if r.store
        .release(conn.conn(), name, r.owner, how, heap_bytes)
        .await
        .is_ok()
    {
        return;
    }
    let fresh = connect(r.target, &application_name(name)).await;
    let released = match fresh {
        Ok(mut c) => {
            let released = r
                .store
                .release(c.conn(), name, r.owner, how, heap_bytes)
                .await
                .is_ok();
            c.hang_up().await;
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
