//! One-off samples outside the monitor's task: the WAL retention `plan` reports, and the lock
//! a start waits behind, each judged as the running monitor would judge it.

use std::time::Duration;

use crate::db::Session;

use super::policy;
use super::{Action, Decision, Signal};

/// The shortest statement timeout of a sample.
pub(super) const MIN_SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's WAL retention now — its replication slots and archiver — read as the
/// monitor's full sample reads it, for `plan` to say what would hold a run's WAL back.
/// `relations` are the job's, as for the sample.
pub async fn wal_retention(
    session: &mut Session,
    relations: &[String],
) -> Result<policy::Wal, sqlx::Error> {
    let probe = super::sample::Request {
        relations,
        ours: &[],
        sessions: &[],
        batches: &[],
        statements: &[],
        full: true,
        throttle_query: None,
        timeout: MIN_SAMPLE_TIMEOUT * 5,
    };
    let sampled = session.sample(&probe).await?;
    Ok(sampled.load.map(|(_, wal)| wal).unwrap_or_default())
}

/// The lock on `relations` that a job about to start would queue behind, as the monitor
/// would pause a running job for it: another session (not one of `ours`, the job's own
/// application names) holds a lock that conflicts with our `UPDATE`, or waits for any lock
/// there. `None` when the way is clear. One sample of the locks, on `conn`, in a short
/// read-only transaction that itself never waits for a lock.
pub async fn table_lock(
    session: &mut Session,
    relations: &[String],
    ours: &[String],
) -> Result<Option<Decision>, sqlx::Error> {
    let probe = super::sample::Request {
        relations,
        ours,
        sessions: &[],
        batches: &[],
        statements: &[],
        full: false,
        throttle_query: None,
        timeout: MIN_SAMPLE_TIMEOUT,
    };
    let sampled = session.sample(&probe).await?;
    Ok(policy::table_lock(&sampled.locks).map(|reason| Decision {
        action: Action::Pause,
        signal: Some(Signal::TableLock),
        reason,
    }))
}
