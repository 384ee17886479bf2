//! What one process knows of its job while it runs: the totals it started from and what its
//! workers committed since (with the job as each checkpoint and the heartbeat last read it, for
//! other processes' batches), the job's total from the state tables' figures
//! (`crate::state::total`, the same in every process), the rows each relation changed (for
//! vacuum pacing), each worker's recent rate and the process's condition — what the heartbeat
//! publishes for `status` on other hosts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::state::{Live, Pending, Progress, total};

use super::condition::Condition;
use super::heartbeat::Heartbeat;
use super::vacuum::Feed;

/// The job's totals after a batch, as far as this process knows (other processes' batches come
/// with their checkpoints, or with the heartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub rows_done: u64,
    pub batches_done: u64,
    /// Rows the job is now expected to change in all ([`total`]).
    pub total_estimate: u64,
}

/// What the last heartbeat read of the job ([`Ledger::beat`]).
struct Beaten {
    done: (u64, u64),
    pending: Option<Pending>,
}

/// What changes as the workers go.
struct Shared {
    condition: Condition,
    /// Recent rows per second of each range a worker walks.
    rates: BTreeMap<u32, f64>,
    /// Rows and batches this process committed since it started.
    rows_here: u64,
    batches_here: u64,
    /// Where the job stood after the latest checkpoint of this process.
    latest: Option<Progress>,
}

/// See the module header.
pub(super) struct Ledger<'r> {
    heartbeat: &'r Heartbeat,
    /// Vacuum pacing's count of changed rows; `None` when the run does not pace.
    feed: Option<&'r Feed>,
    /// The job's rows and batches done when this process started.
    start: (u64, u64),
    /// The job's estimate of its pending rows when this process started (with
    /// `--retry-failures`, the failed rows, which are never kept).
    pending: Pending,
    /// The run retries failed rows: its `pending` is its own, not the job's kept estimate.
    retrying: bool,
    shared: Mutex<Shared>,
}

impl<'r> Ledger<'r> {
    pub(super) fn new(
        heartbeat: &'r Heartbeat,
        feed: Option<&'r Feed>,
        start: (u64, u64),
        pending: Pending,
        retrying: bool,
    ) -> Ledger<'r> {
        Ledger {
            heartbeat,
            feed,
            start,
            pending,
            retrying,
            shared: Mutex::new(Shared {
                condition: Condition::Running,
                rates: BTreeMap::new(),
                rows_here: 0,
                batches_here: 0,
                latest: None,
            }),
        }
    }
}

impl Ledger<'_> {
    /// Takes on `condition` for the whole process: `announce` it, with the one it leaves (while
    /// no other worker can enter another), when it differs from the current one in kind or
    /// signal, and publish the note for `status` when anything in it changed.
    pub(super) fn enter(
        &self,
        condition: Condition,
        announce: impl FnOnce(&Condition, &Condition),
    ) {
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if !shared.condition.same_as(&condition) {
            announce(&condition, &shared.condition);
        }
        // Every batch passes here: publish only what changed.
        if shared.condition != condition {
            shared.condition = condition;
            self.publish(&shared);
        }
    }

    /// Records a batch of `rows` committed by this process in `relation` (and feeds vacuum
    /// pacing), with where the job stood after it (`job`: its checkpoint's reading; `None` for
    /// a failed row filled again, which moves no range) and the keys it asked for (`batch`,
    /// which its checkpoint kept as the job's batch size): the job's totals, as `status` would
    /// compute them from the same figures.
    pub(super) fn committed(
        &self,
        relation: &str,
        rows: u64,
        job: Option<Progress>,
        batch: u32,
    ) -> Totals {
        if let Some(feed) = self.feed {
            feed.add(relation, rows);
        }
        let beat = self.beat();
        let Ok(mut shared) = self.shared.lock() else {
            return self.totals_of(&self.progress_at_start(), batch, beat.pending);
        };
        shared.rows_here += rows;
        shared.batches_here += 1;
        if job.is_some() {
            shared.latest = job;
        }
        // Another worker's checkpoint may have read a later moment first: never go back.
        let (rows_done, batches_done) = self.done(&shared, beat.done);
        let progress = Progress {
            rows_done,
            batches_done,
            ..shared.latest.unwrap_or_else(|| self.progress_at_start())
        };
        self.totals_of(&progress, batch, beat.pending)
    }

    /// What the last heartbeat read of the job: its rows and batches done, and the estimate it
    /// keeps (a later `--exact-count` may have replaced the one this process started from).
    fn beat(&self) -> Beaten {
        self.heartbeat.with_job(|job| Beaten {
            done: job.map_or((0, 0), |job| (job.rows_done, job.batches_done)),
            pending: job.and_then(|job| job.pending),
        })
    }

    /// The job's totals at `progress`, from the estimate the job keeps (`kept`, unless this run
    /// retries failed rows, whose count is its own).
    fn totals_of(&self, progress: &Progress, batch: u32, kept: Option<Pending>) -> Totals {
        let pending = match kept {
            Some(kept) if !self.retrying => kept,
            _ => self.pending,
        };
        Totals {
            rows_done: progress.rows_done,
            batches_done: progress.batches_done,
            total_estimate: total(Some(&pending), progress, batch),
        }
    }

    /// The job as this process found it, as far as its counters go.
    fn progress_at_start(&self) -> Progress {
        Progress {
            rows_done: self.start.0,
            batches_done: self.start.1,
            ..Progress::default()
        }
    }

    /// The job's rows and batches done so far, as far as this process knows.
    pub(super) fn totals(&self) -> (u64, u64) {
        match self.shared.lock() {
            Ok(shared) => self.done(&shared, self.beat().done),
            Err(_) => self.start,
        }
    }

    /// The furthest of: what this process found at its start plus what it committed since, its
    /// latest checkpoint's reading, and `beat`, the job's row as the last heartbeat read it
    /// (other processes' batches included).
    fn done(&self, shared: &Shared, beat: (u64, u64)) -> (u64, u64) {
        let here = (
            self.start.0 + shared.rows_here,
            self.start.1 + shared.batches_here,
        );
        let latest = shared
            .latest
            .map_or((0, 0), |p| (p.rows_done, p.batches_done));
        (
            here.0.max(latest.0).max(beat.0),
            here.1.max(latest.1).max(beat.1),
        )
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
