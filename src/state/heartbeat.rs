//! What one running process does for all its leases at once: the heartbeat (refresh the
//! leases of its ranges — and of the job, if it started the run — publish its workers' rates
//! and its note, bring back the operator's control flag and the job's totals), and the release
//! when it leaves (give its ranges back, and settle the job's status unless another process
//! still runs it).

use super::StateError;
use super::jobs::JobRow;
use super::lease::{Lease, Owner};

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

/// How a release leaves the job's row, decided from the row and the leases of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled<'a> {
    /// The job's status now.
    pub status: &'static str,
    /// The error to record (`None` keeps the last one only while the job stays `running`).
    pub error: Option<&'a str>,
    /// Keep the operator's control flag for the processes that still run the job; otherwise
    /// only a `pause` stays.
    pub keep_control: bool,
}

impl Release {
    /// Settles the job's status as `owner` leaves, from its `row` (read after `owner` gave
    /// its ranges back) and the leases held on its ranges: `done` when every range is done
    /// (with no ranges, when the run says so); still `running` while another process holds a
    /// live lease; otherwise as `self` says.
    pub fn settle<'a>(
        &'a self,
        row: &JobRow,
        range_leases: &[Lease],
        owner: &Owner,
    ) -> Settled<'a> {
        let others_run = row
            .lease()
            .into_iter()
            .chain(range_leases.iter().cloned())
            .any(|l| &l.owner != owner && l.is_live());
        let all_done = if row.ranges > 0 {
            row.ranges_done == row.ranges
        } else {
            *self == Release::Done
        };
        let (status, error) = match self {
            _ if all_done => ("done", None),
            Release::Failed(e) => (
                if others_run { "running" } else { "failed" },
                Some(e.as_str()),
            ),
            _ if others_run => ("running", None),
            Release::Done | Release::Stopped => ("stopped", None),
            Release::Cancelled => ("cancelled", None),
        };
        Settled {
            status,
            error,
            keep_control: others_run && !all_done,
        }
    }
}

/// `LeaseLost` for a runner of job `name` whose lease is gone, naming who holds the job now as
/// its row says (`None`: the row is gone, a reset).
pub fn lease_lost(name: &str, now: Option<&JobRow>) -> StateError {
    StateError::LeaseLost {
        name: name.into(),
        owner: match now {
            Some(row) => row
                .owner
                .as_ref()
                .map_or_else(|| "nobody".into(), |o| o.0.clone()),
            None => "a reset".into(),
        },
    }
}

/// The job's row as a heartbeat read it back, after refreshing its leases: a job whose row is
/// gone was reset, and the reset took every lease on it (`LeaseLost` rather than `UnknownJob`,
/// so that the runner stops without writing).
pub fn beat_row(name: &str, read: Result<JobRow, StateError>) -> Result<JobRow, StateError> {
    match read {
        Err(StateError::UnknownJob { .. }) => Err(lease_lost(name, None)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELSEWHERE: &str = "elsewhere.example:4242:00000001";

    fn leaving(ranges: u32, done: u32) -> JobRow {
        JobRow {
            ranges,
            ranges_done: done,
            ..JobRow::example("j", "running")
        }
    }

    fn live(owner: &str) -> Vec<Lease> {
        vec![Lease {
            owner: Owner(owner.into()),
            heartbeat_age: Some(0.5),
            timeout_s: None,
        }]
    }

    #[test]
    fn the_last_to_leave_settles_the_status() {
        let me = Owner(ELSEWHERE.replace("4242", "1"));
        let settled = Release::Stopped.settle(&leaving(2, 1), &[], &me);
        assert_eq!((settled.status, settled.keep_control), ("stopped", false));
        assert_eq!(
            Release::Cancelled.settle(&leaving(2, 1), &[], &me).status,
            "cancelled"
        );
        assert_eq!(
            Release::Stopped.settle(&leaving(2, 2), &[], &me).status,
            "done"
        );
        assert_eq!(
            Release::Done.settle(&leaving(0, 0), &[], &me).status,
            "done"
        );
    }

    #[test]
    fn others_still_running_keep_the_job_running() {
        let me = Owner("here.example:1:00000001".into());
        let others = live(ELSEWHERE);
        let settled = Release::Stopped.settle(&leaving(2, 1), &others, &me);
        assert_eq!((settled.status, settled.keep_control), ("running", true));
        let failed = Release::Failed("boom".into());
        let settled = failed.settle(&leaving(2, 1), &others, &me);
        assert_eq!((settled.status, settled.error), ("running", Some("boom")));
        let own = live(&me.0);
        assert_eq!(
            Release::Stopped.settle(&leaving(2, 1), &own, &me).status,
            "stopped"
        );
    }

    #[test]
    fn a_lost_lease_names_who_holds_the_job() {
        let row = JobRow {
            owner: Some(Owner(ELSEWHERE.into())),
            ..JobRow::example("j", "running")
        };
        assert!(lease_lost("j", Some(&row)).to_string().contains(ELSEWHERE));
        assert!(lease_lost("j", None).to_string().contains("a reset"));
    }

    #[test]
    fn a_job_gone_under_a_heartbeat_was_reset() {
        let gone = StateError::UnknownJob {
            name: "j".into(),
            table: "jobs".into(),
        };
        let lost = beat_row("j", Err(gone)).unwrap_err();
        assert!(
            matches!(&lost, StateError::LeaseLost { owner, .. } if owner == "a reset"),
            "{lost}"
        );
        let row = JobRow::example("j", "running");
        assert_eq!(beat_row("j", Ok(row.clone())).unwrap(), row);
    }
}
