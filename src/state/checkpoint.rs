//! A worker's hold on a range: taking a free or abandoned range (`FOR UPDATE SKIP LOCKED`),
//! splitting a running one and taking its upper part, the checkpoint that moves a range's
//! cursor with each batch, and marking a walked range done. Every statement that needs the
//! worker's lease checks it, and says why when it is gone.

use std::time::Duration;

use super::lease::Owner;
use super::ranges::RangeRow;
use super::{Key, StateError};

/// One worker of this process on one job: who claims, checkpoints and releases.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub job: &'a str,
    pub owner: &'a Owner,
    /// The worker's number within its process (0-based).
    pub worker: u32,
    pub lease_timeout: Duration,
}

/// A split of a running range at `at`: the victim keeps `(cursor, at]`, the new range is
/// `(at, upper]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub victim: u32,
    /// The victim's upper end as read; the split fails if it moved meanwhile.
    pub upper: Key,
    pub at: Key,
    pub relation: String,
    /// Estimated keys left to the victim and given to the new range.
    pub keys_kept: Option<u64>,
    pub keys_taken: Option<u64>,
}

impl Holder<'_> {
    /// Why a statement that required this holder's lease on `range` changed nothing, from the
    /// range's row as it stands (`None`: gone with its job, a reset; `jobs` names the table):
    /// still ours, so a split moved its upper end (`RangeShrunk`); or another holder's, or
    /// nobody's (`RangeTaken`).
    pub fn why_not_mine(&self, range: u32, now: Option<RangeRow>, jobs: &str) -> StateError {
        match now {
            Some(row) => match row.lease {
                Some(lease) if &lease.owner == self.owner => StateError::RangeShrunk {
                    name: self.job.into(),
                    range,
                },
                lease => StateError::RangeTaken {
                    name: self.job.into(),
                    range,
                    owner: lease.map_or_else(|| "nobody".into(), |l| l.owner.0),
                },
            },
            None => StateError::UnknownJob {
                name: self.job.into(),
                table: jobs.into(),
            },
        }
    }
}
