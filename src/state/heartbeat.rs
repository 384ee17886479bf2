//! What one running process does for all its leases at once: the heartbeat (refresh the
//! leases of its ranges — and of the job, if it started the run — publish its workers' rates
//! and its note, bring back the operator's control flag and the job's totals), and the release
//! when it leaves (give its ranges back, and settle the job's status unless another process
//! still runs it).

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
