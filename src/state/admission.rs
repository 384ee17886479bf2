//! Who may run a job now: the pure [`admit`], from the job's row, the leases on its ranges and
//! what `run` asks for ([`Claim`]). Unit-tested in `tests.rs` with no database.

use std::time::Duration;

use super::StateError;
use super::jobs::JobRow;
use super::lease::{Lease, Owner};

/// What `run` asks for.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub table_name: &'a str,
    pub definition_hash: &'a str,
    /// The job file's settings as JSON (`Job::settings`), kept for `backfill serve`.
    pub settings: &'a str,
    pub owner: &'a Owner,
    /// How long others must wait after this process's last heartbeat before taking over.
    pub lease_timeout: Duration,
    /// Start over: forget the ranges, cursors and counters (`run --restart`).
    pub restart: bool,
    /// Continue a cancelled job from its checkpoint (`run --resume-cancelled`).
    pub resume_cancelled: bool,
    /// Add workers to a job that runs elsewhere instead of refusing (`run --join`).
    pub join: bool,
    /// Only retry the rows in the `failures` table (`run --retry-failures`): a done job runs
    /// again for them.
    pub retry_failures: bool,
    /// The table's heap in bytes now, if it could be read: recorded as the job's start when
    /// the job starts (or restarts, or resumes without one), not when it resumes.
    pub heap_bytes: Option<u64>,
}

/// What `admit` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Take the job's lease and continue from the stored ranges (none yet for a new job).
    Run,
    /// Take the job's lease and start over from the first key.
    Restart,
    /// The job runs elsewhere: add workers to it without its lease (`--join`).
    Join,
    /// The job finished before; nothing to do.
    AlreadyDone,
}

/// Decides whether `claim` may run the job whose row is `row`, given the leases held on its
/// ranges. Pure.
pub fn admit(row: &JobRow, ranges: &[Lease], claim: &Claim) -> Result<Admission, StateError> {
    let elsewhere = row
        .lease()
        .into_iter()
        .chain(ranges.iter().cloned())
        .find(|l| &l.owner != claim.owner && l.is_live());
    if let Some(lease) = elsewhere {
        if !claim.join || claim.restart || row.control.as_deref() == Some("cancel") {
            return Err(StateError::Busy {
                name: row.name.clone(),
                owner: lease.owner.0,
                age: lease.heartbeat_age.unwrap_or_default(),
            });
        }
        if row.definition_hash != claim.definition_hash {
            return Err(StateError::DefinitionChanged {
                name: row.name.clone(),
            });
        }
        return Ok(Admission::Join);
    }
    if claim.restart {
        return Ok(Admission::Restart);
    }
    if row.definition_hash != claim.definition_hash {
        return Err(StateError::DefinitionChanged {
            name: row.name.clone(),
        });
    }
    if row.status == "done" && !claim.retry_failures {
        return Ok(Admission::AlreadyDone);
    }
    if row.status == "cancelled" && !claim.resume_cancelled {
        return Err(StateError::Cancelled {
            name: row.name.clone(),
        });
    }
    Ok(Admission::Run)
}
