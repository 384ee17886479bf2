//! The job row in `jobs`: what the job is (table, definition hash), where it stands (status,
//! counters summed over its ranges), the operator's control flag, and the job's lease — held
//! by the process that started the run; processes that `--join` it hold only range leases.
//! Who may run a job now is decided by the pure [`admit`](super::admit).

use super::lease::Lease;
use super::total::{Pending, Progress, total};
use super::{Owner, StateError};

/// A job's row as stored, with what its ranges add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub name: String,
    pub table_name: String,
    pub definition_hash: String,
    pub status: String,
    /// Where the walk stands when the job has a single range (or was started by a version
    /// without ranges); `None` for a job split into several ranges.
    pub cursor: Option<Vec<String>>,
    pub range_end: Option<Vec<String>>,
    pub rows_done: u64,
    pub batches_done: u64,
    pub batch_size: Option<u32>,
    /// The job's lease: the process that started the run.
    pub owner: Option<Owner>,
    /// Seconds since the job lease's last heartbeat (database clock), when there is an owner.
    pub heartbeat_age: Option<f64>,
    /// The lease timeout the owner declared, in seconds.
    pub lease_s: Option<f64>,
    /// Seconds since the row last changed.
    pub updated_age: Option<f64>,
    pub control: Option<String>,
    pub last_error: Option<String>,
    /// Rows per second of every live worker together.
    pub rate: Option<f64>,
    /// Why the runners are paused or throttled, as one of them last said.
    pub note: Option<String>,
    /// The job's ranges, and how many of them are done.
    pub ranges: u32,
    pub ranges_done: u32,
    /// Live workers (ranges held under a lease that has not gone stale), the processes they
    /// belong to, and those processes' hosts.
    pub workers: u32,
    pub processes: u32,
    pub hosts: u32,
    /// Keys the batches of every range have walked, and the rows they changed.
    pub keys_walked: u64,
    pub rows_walked: u64,
    /// Keys left in the ranges not done yet, as far as their estimates know (`None`: a range
    /// has no estimate, or there are no ranges yet).
    pub keys_left: Option<u64>,
    /// Rows set aside in the `failures` table (`on_error = "skip"`).
    pub failures: u64,
    /// The table's heap in bytes when the job started (kept across resumes, measured again on
    /// a restart), so that its growth since can be shown; `None` for a job started by an older
    /// version.
    pub heap_bytes_start: Option<u64>,
    /// The table's heap in bytes when the job's last run ended, written as it settled the
    /// job's status (done, failed, cancelled or stopped): what the job grew it to, apart from
    /// whatever grew the table after. `None` while the job runs, and for a run that ended by
    /// a crash, while DDL held the table, or under an older version.
    pub heap_bytes_end: Option<u64>,
    /// The job's estimate of its pending rows, made when its ranges were laid out (`None`
    /// before, and for a job laid out by an older version until a run makes one).
    pub pending: Option<Pending>,
    /// The job file's settings as JSON, as its last run wrote them (`None` before, or under an
    /// older version).
    pub settings: Option<String>,
}

#[cfg(test)]
impl JobRow {
    /// A job's row for the unit tests: nothing done, no owner, no note, no ranges.
    pub(crate) fn example(name: &str, status: &str) -> JobRow {
        JobRow {
            name: name.into(),
            table_name: "\"public\".\"t\"".into(),
            definition_hash: "h".into(),
            status: status.into(),
            cursor: None,
            range_end: None,
            rows_done: 0,
            batches_done: 0,
            batch_size: None,
            owner: None,
            heartbeat_age: None,
            lease_s: None,
            updated_age: None,
            control: None,
            last_error: None,
            rate: None,
            note: None,
            ranges: 0,
            ranges_done: 0,
            workers: 0,
            processes: 0,
            hosts: 0,
            keys_walked: 0,
            rows_walked: 0,
            keys_left: None,
            failures: 0,
            heap_bytes_start: None,
            heap_bytes_end: None,
            pending: None,
            settings: None,
        }
    }
}

impl JobRow {
    /// The job's lease, if an owner holds one.
    pub fn lease(&self) -> Option<Lease> {
        self.owner.clone().map(|owner| Lease {
            owner,
            heartbeat_age: self.heartbeat_age,
            timeout_s: self.lease_s,
        })
    }

    /// True while the process that started the run holds a lease that has not gone stale.
    pub fn lease_is_live(&self) -> bool {
        self.lease().is_some_and(|l| l.is_live())
    }

    /// Where the job stands: its counters and its ranges' keys.
    pub fn progress(&self) -> Progress {
        Progress {
            rows_done: self.rows_done,
            batches_done: self.batches_done,
            keys_walked: self.keys_walked,
            rows_walked: self.rows_walked,
            keys_left: self.keys_left,
        }
    }

    /// The rows the job is expected to change in all ([`total`]), the same figure in every
    /// process and in `status`; a finished job's rows done.
    pub fn total_estimate(&self) -> u64 {
        if self.status == "done" {
            return self.rows_done;
        }
        total(
            self.pending.as_ref(),
            &self.progress(),
            self.batch_size.unwrap_or(1),
        )
    }

    /// True while anyone runs the job: its lease, or a worker's range lease, is live.
    pub fn is_running(&self) -> bool {
        self.lease_is_live() || self.workers > 0
    }

    /// `Busy` when the job's lease or any of `range_leases` (those held on its ranges) is
    /// live: what a `reset` refuses.
    pub fn refuse_if_running(&self, range_leases: &[Lease]) -> Result<(), StateError> {
        let live = self
            .lease()
            .into_iter()
            .chain(range_leases.iter().cloned())
            .find(Lease::is_live);
        match live {
            Some(live) => Err(StateError::Busy {
                name: self.name.clone(),
                owner: live.owner.0,
                age: live.heartbeat_age.unwrap_or_default(),
            }),
            None => Ok(()),
        }
    }
}

/// What an operator asks of a job from another terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    /// What the job's row takes: its control flag (`None` clears it) and, when it changes at
    /// once, its status. `pause`, `resume` and a `cancel` of a running job wait for the
    /// runners' next heartbeat; a job nobody runs is cancelled at once.
    pub fn on_row(self, running: bool) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            Control::Pause => (Some("pause"), None),
            Control::Resume => (None, None),
            Control::Cancel if running => (Some("cancel"), None),
            Control::Cancel => (None, Some("cancelled")),
        }
    }
}
