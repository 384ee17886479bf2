//! What one process knows of its job while it runs: the totals it started from and what its
//! workers committed since (with the job's row as the heartbeat last read it, for other
//! processes' batches), the total rows refined from what the walk has seen (`total.rs`), the
//! rows each relation changed (for vacuum pacing), each worker's recent rate and the process's
//! condition — what the heartbeat publishes for `status` on other hosts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::state::{JobRow, Live};

use super::condition::Condition;
use super::heartbeat::Heartbeat;
use super::total;
use super::vacuum::Feed;

/// The job's totals after a batch, as far as this process knows (other processes' batches come
/// with the heartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub rows_done: u64,
    pub batches_done: u64,
    /// Rows the job is now expected to change in all ([`total::total`]).
    pub total_estimate: u64,
}

/// The estimates a process starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Estimated {
    /// Rows still pending.
    pub pending: u64,
    /// Keys left in the ranges not done yet (`None`: a range has no estimate).
    pub keys_left: Option<u64>,
    /// Rows in the table, as the start's estimate found them (what vacuum pacing's
    /// `every = "5%"` is a share of).
    pub table_rows: Option<u64>,
}

/// What changes as the workers go.
struct Shared {
    condition: Condition,
    /// Recent rows per second of each range a worker walks.
    rates: BTreeMap<u32, f64>,
    /// Rows, batches and keys walked this process committed since it started.
    rows_here: u64,
    batches_here: u64,
    keys_here: u64,
}

/// See the module header.
pub(super) struct Ledger<'r> {
    heartbeat: &'r Heartbeat,
    /// Vacuum pacing's count of changed rows; `None` when the run does not pace.
    feed: Option<&'r Feed>,
    /// The job's rows and batches done when this process started.
    start: (u64, u64),
    estimate: Estimated,
    shared: Mutex<Shared>,
}

impl<'r> Ledger<'r> {
    pub(super) fn new(
        heartbeat: &'r Heartbeat,
        feed: Option<&'r Feed>,
        start: (u64, u64),
        estimate: Estimated,
    ) -> Ledger<'r> {
        Ledger {
            heartbeat,
            feed,
            start,
            estimate,
            shared: Mutex::new(Shared {
                condition: Condition::Running,
                rates: BTreeMap::new(),
                rows_here: 0,
                batches_here: 0,
                keys_here: 0,
            }),
        }
    }
}

impl Ledger<'_> {
    /// Takes on `condition` for the whole process: `announce` it (while no other worker can
    /// enter another) when it differs from the current one in kind or signal, and publish the
    /// note for `status` when anything in it changed.
    pub(super) fn enter(&self, condition: Condition, announce: impl FnOnce(&Condition)) {
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if !shared.condition.same_as(&condition) {
            announce(&condition);
        }
        // Every batch passes here: publish only what changed.
        if shared.condition != condition {
            shared.condition = condition;
            self.publish(&shared);
        }
    }

    /// Records a batch of `rows` in `keys` keys committed by this process in `relation` (and
    /// feeds vacuum pacing): the job's totals as far as this process knows.
    pub(super) fn committed(&self, relation: &str, rows: u64, keys: u32) -> Totals {
        if let Some(feed) = self.feed {
            feed.add(relation, rows);
        }
        let Ok(mut shared) = self.shared.lock() else {
            return Totals {
                rows_done: self.start.0,
                batches_done: self.start.1,
                total_estimate: self.start.0 + self.estimate.pending,
            };
        };
        shared.rows_here += rows;
        shared.batches_here += 1;
        shared.keys_here += u64::from(keys);
        let beat = self.heartbeat.beat().job;
        let (rows_done, batches_done) = self.done(&shared, beat.as_ref());
        // Both figures of the keys left are too high, each stale in its own way (the start's
        // misses other processes' batches, the heartbeat's the latest of ours): the lower is
        // the nearer.
        let since_start = self
            .estimate
            .keys_left
            .map(|k| k.saturating_sub(shared.keys_here));
        let keys_left = match (since_start, beat.and_then(|job| job.keys_left)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let total_estimate = total::total(&total::Seen {
            rows_done,
            start_done: self.start.0,
            start_pending: self.estimate.pending,
            keys_walked: shared.keys_here,
            rows_changed: shared.rows_here,
            keys_left,
            batch: keys,
        });
        Totals {
            rows_done,
            batches_done,
            total_estimate,
        }
    }

    /// The job's rows and batches done so far, as far as this process knows.
    pub(super) fn totals(&self) -> (u64, u64) {
        let beat = self.heartbeat.beat().job;
        match self.shared.lock() {
            Ok(shared) => self.done(&shared, beat.as_ref()),
            Err(_) => self.start,
        }
    }

    /// What this process found at its start plus what it committed since, or the job's row as
    /// the last heartbeat read it (other processes' batches included), whichever is further.
    fn done(&self, shared: &Shared, beat: Option<&JobRow>) -> (u64, u64) {
        let here = (
            self.start.0 + shared.rows_here,
            self.start.1 + shared.batches_here,
        );
        match beat {
            Some(job) => (here.0.max(job.rows_done), here.1.max(job.batches_done)),
            None => here,
        }
    }

    /// Sets (or, with `None`, forgets) the recent rate of the worker walking `range`.
    pub(super) fn rate(&self, range: u32, rate: Option<f64>) {
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        let changed = match rate {
            Some(rate) => shared.rates.insert(range, rate) != Some(rate),
            None => shared.rates.remove(&range).is_some(),
        };
        if changed {
            self.publish(&shared);
        }
    }

    /// Hands the heartbeat what it publishes next: every worker's rate (none while paused,
    /// when rates mean nothing) and the condition's note.
    fn publish(&self, shared: &Shared) {
        let paused = matches!(shared.condition, Condition::Paused { .. });
        self.heartbeat.publish(Live {
            rates: if paused {
                vec![]
            } else {
                shared.rates.iter().map(|(r, v)| (*r, *v)).collect()
            },
            note: shared.condition.note(),
        });
    }
}
