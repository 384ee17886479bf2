//! The engine: runs one job from its checkpoint to the end of its key range (DESIGN §3).
//!
//! It claims the job's lease, starts the [`monitor`](crate::monitor) (unless `[throttle]` turns
//! it off), captures the range end once, then loops: obey the shutdown signal, the operator's
//! control flag and the monitor's decision (pause, or throttle: smaller batches further
//! apart), run one batch (`batch.rs`), learn the next size from its time without its lock
//! waits (`sizer.rs`), and on a transient error roll back, back off (`backoff.rs`), reconnect
//! if the connection is gone and re-read the stored cursor, which is the only truth about what
//! committed. A batch the monitor cancelled to yield is not an error: it runs again once the
//! way is clear. It emits [`Event`]s and never prints; it never listens for signals itself —
//! the caller passes shutdown in.
//!
//! Layout: this file claims, starts and releases; `walk.rs` is the batch loop; `batch.rs` one
//! batch; `sizer.rs` and `backoff.rs` are pure arithmetic; `heartbeat.rs` keeps the lease.

mod backoff;
mod batch;
mod heartbeat;
pub mod sizer;
mod walk;

use std::time::Duration;

use sqlx::PgConnection;
use thiserror::Error;
use tokio::sync::watch;

use crate::db::{Target, error_chain, hang_up};
use crate::event::Event;
use crate::job::Job;
use crate::monitor::{Monitor, Watch};
use crate::plan::Plan;
use crate::state::{Admission, Claim, Owner, Release, StateError, Store};

use heartbeat::{Heartbeat, Lease};
use walk::{Parts, Walker};

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
    #[error("cannot read the key range or the pending rows of {table}")]
    Range {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("batch after cursor {cursor} failed; the job stopped with its checkpoint intact")]
    Batch {
        cursor: String,
        #[source]
        source: batch::BatchError,
    },
    #[error(
        "batch after cursor {cursor} failed {attempts} times in a row; the job stopped with its checkpoint intact"
    )]
    GaveUp {
        cursor: String,
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

/// Runs `r.job` to its end, or until `shutdown` turns true, emitting events on the way.
pub async fn run(
    r: &Run<'_>,
    emit: &mut dyn FnMut(&Event),
    mut shutdown: watch::Receiver<bool>,
) -> Result<Outcome, EngineError> {
    let app = application_name(&r.job.name);
    let mut conn = connect(r.target, &app).await?;
    r.store.ensure(&mut conn).await?;
    let claim = Claim {
        name: &r.job.name,
        table_name: &r.plan.table,
        definition_hash: &r.job.definition_hash(),
        owner: r.owner,
        restart: r.options.restart,
        resume_cancelled: r.options.resume_cancelled,
    };
    let (admission, row) = r.store.claim(&mut conn, &claim).await?;
    if admission == Admission::AlreadyDone {
        return Ok(Outcome::AlreadyDone {
            rows_done: row.rows_done,
        });
    }
    let heartbeat = Heartbeat::start(Lease {
        store: r.store.clone(),
        target: r.target.clone(),
        name: r.job.name.clone(),
        owner: r.owner.clone(),
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
            job_application_name: app.clone(),
            table: r.plan.table.clone(),
        })
    });
    let mut walker = Walker::new(Parts {
        r,
        conn,
        app,
        heartbeat: &heartbeat,
        monitor: monitor.as_ref(),
        emit,
        shutdown: &mut shutdown,
    });
    let result = walker.walk(row).await;
    let mut conn = walker.into_connection();
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    heartbeat.stop().await;
    if let Err(e) = &result {
        emit(&Event::Error {
            job: r.job.name.clone(),
            message: error_chain(e),
        });
    }
    let release = match &result {
        Ok(Outcome::Finished { .. } | Outcome::AlreadyDone { .. }) => Some(Release::Done),
        Ok(Outcome::Interrupted { .. }) => Some(Release::Stopped),
        Ok(Outcome::Cancelled { .. }) => Some(Release::Cancelled),
        Err(EngineError::LeaseLost(_) | EngineError::State(StateError::LeaseLost { .. })) => None,
        Err(e) => Some(Release::Failed(error_chain(e))),
    };
    if let Some(how) = release {
        release_lease(r, &mut conn, &how).await;
    }
    hang_up(conn).await;
    result
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

/// Gives the lease back, on a fresh connection if the batch connection is broken. A failure
/// here loses nothing: the lease goes stale and the checkpoint is already committed.
async fn release_lease(r: &Run<'_>, conn: &mut PgConnection, how: &Release) {
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
        tracing::warn!("could not release the lease of job {name}; it goes stale on its own");
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
    fn application_name_fits_postgres_limit() {
        assert_eq!(application_name(&"x".repeat(100)).len(), 63);
    }
}
