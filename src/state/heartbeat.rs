//! What one running process does for all its leases at once: the heartbeat (refresh the
//! leases of its ranges — and of the job, if it started the run — publish its workers' rates
//! and its note, bring back the operator's control flag and the job's totals), and the release
//! when it leaves (give its ranges back, and settle the job's status unless another process
//! still runs it).

use crate::db::Conn;
use crate::postgres::state::StateSql;

use super::{JobRow, Owner, StateError, Store};

/// What a process publishes with each heartbeat, for `status` on other hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Rows per second of each range a worker of this process walks, by range id.
    pub rates: Vec<(u32, f64)>,
    /// Why the process is paused or throttled.
    pub note: Option<String>,
}

/// How a process leaves a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Every range is walked to its end.
    Done,
    /// Stopped by Ctrl-C or SIGTERM; `run` resumes it.
    Stopped,
    /// Cancelled by an operator; resumes only with `--resume-cancelled` (or `--restart`).
    Cancelled,
    /// Stopped by an error, recorded for `status`.
    Failed(String),
}

impl Store {
    /// Refreshes the leases of `owner` on the job — every range it holds, and the job's own
    /// lease when `holds_job` — and publishes `live`. Returns the job's row as it now stands
    /// (the operator's control flag; every process's totals, live workers, processes and
    /// hosts). Fails with `LeaseLost` when the job's lease went to another runner, or the job
    /// was reset.
    pub async fn heartbeat(
        &self,
        conn: Conn<'_>,
        name: &str,
        owner: &Owner,
        holds_job: bool,
        live: &Live,
    ) -> Result<JobRow, StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .heartbeat(c, name, owner, holds_job, live)
                    .await
            }
        }
    }

    /// Gives back every range `owner` holds (a range not walked to its end goes back to
    /// `pending`, cursor kept) and the job's lease if it holds it, then settles the job's
    /// status: `done` when every range is done; still `running` when another process holds a
    /// live lease on it (the control flag stays for that process to see); otherwise as `how`
    /// says. Serialised on the job's row, so that of two processes leaving together the second
    /// sees the first gone. A status settled other than `running` keeps `heap_bytes`, the
    /// table's heap as the run ended, for `status` (`None`: it could not be read).
    pub async fn release(
        &self,
        conn: Conn<'_>,
        name: &str,
        owner: &Owner,
        how: &Release,
        heap_bytes: Option<u64>,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => {
                StateSql(self)
                    .release(c, name, owner, how, heap_bytes)
                    .await
            }
        }
    }
}
