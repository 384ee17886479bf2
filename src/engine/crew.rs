//! What the workers of one process share: the run, the heartbeat and the one monitor they all
//! obey; the condition they are in (running, throttled, paused — reported once for all of
//! them, not once per worker); the turn that throttled workers take one at a time, so that a
//! throttled process puts the load of one throttled worker on the database whatever
//! `--workers` says; the job's totals for events, with the total rows refined from what the
//! walk has seen (`total.rs`); what the heartbeat publishes; the rows it commits, for vacuum
//! pacing; the halt that stops every worker when one of them meets an error the job cannot go
//! on from; the latency guard they all read; and the process's WAL budget, which every batch
//! is charged to (`pace::WalBudget`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{MutexGuard, mpsc, watch};

use crate::event::{Event, signal_name};
use crate::guard::Guard;
use crate::monitor::{Action, Decision, Monitor, Signal};
use crate::ranges::Share;
use crate::state::{Holder, JobRow, Live};

use super::Run;
use super::heartbeat::Heartbeat;
use super::pace::WalBudget;
use super::total;
use super::vacuum::Feed;

/// What the process is doing about the database's state and the operator's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    Running,
    Throttled {
        signal: Option<Signal>,
        reason: String,
    },
    /// `signal` is `None` for an operator's pause.
    Paused {
        signal: Option<Signal>,
        reason: String,
    },
    /// Running, but the latency guard holds the run back: its probe's recent p90 against the
    /// baseline, and `probe 4.1 ms (baseline 1.2 ms)`.
    Guarded {
        probe: Duration,
        baseline: Duration,
        reason: String,
    },
}

impl Condition {
    pub(super) fn of(decision: &Decision) -> Condition {
        let (signal, reason) = (decision.signal, decision.reason.clone());
        match decision.action {
            Action::Go => Condition::Running,
            Action::Throttle => Condition::Throttled { signal, reason },
            Action::Pause | Action::Yield => Condition::Paused { signal, reason },
        }
    }

    /// Same state for the same signal: not worth another event even if the numbers in the
    /// reason moved.
    fn same_as(&self, other: &Condition) -> bool {
        use Condition::*;
        match (self, other) {
            (Running, Running) => true,
            (Throttled { signal: a, .. }, Throttled { signal: b, .. })
            | (Paused { signal: a, .. }, Paused { signal: b, .. }) => a == b,
            (Guarded { .. }, Guarded { .. }) => true,
            _ => false,
        }
    }

    /// The note published for `status`: `paused: …`, `throttled: …`, `guarded: …`, or none
    /// at full speed.
    fn note(&self) -> Option<String> {
        match self {
            Condition::Running => None,
            Condition::Throttled { reason, .. } => Some(format!("throttled: {reason}")),
            Condition::Paused { reason, .. } => Some(format!("paused: {reason}")),
            Condition::Guarded { reason, .. } => Some(format!("guarded: {reason}")),
        }
    }
}

/// What the workers share that changes.
struct Shared {
    condition: Condition,
    /// Recent rows per second of each range a worker walks.
    rates: BTreeMap<u32, f64>,
    /// Rows, batches and keys walked this process committed since it started.
    rows_here: u64,
    batches_here: u64,
    keys_here: u64,
}

/// The job's totals after a batch, as far as this process knows (other processes' batches come
/// with the heartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    pub rows_done: u64,
    pub batches_done: u64,
    /// Rows the job is now expected to change in all ([`total::total`]).
    pub total_estimate: u64,
}

/// The workers' common ground; see the module header.
pub(super) struct Crew<'r, 'a> {
    pub r: &'r Run<'a>,
    pub share: Share<'r>,
    pub heartbeat: &'r Heartbeat,
    /// `None` when `[throttle] enabled = false`.
    pub monitor: Option<&'r Monitor>,
    /// Vacuum pacing's count of changed rows; `None` when the run does not pace.
    feed: Option<&'r Feed>,
    /// `None` unless `[guard] enabled = true`.
    guard: Option<&'r Guard>,
    /// `None` without `[throttle] max_wal_rate`.
    wal: Option<Mutex<WalBudget>>,
    /// The job's totals when this process started.
    start: (u64, u64),
    /// What was estimated when this process started.
    estimate: Estimated,
    events: mpsc::UnboundedSender<Event>,
    shutdown: watch::Receiver<bool>,
    halt: watch::Sender<bool>,
    turn: tokio::sync::Mutex<()>,
    shared: Mutex<Shared>,
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

/// What a new crew starts from.
pub(super) struct Start<'r, 'a> {
    pub r: &'r Run<'a>,
    pub share: Share<'r>,
    pub heartbeat: &'r Heartbeat,
    pub monitor: Option<&'r Monitor>,
    /// Vacuum pacing's count of changed rows, when the run paces.
    pub feed: Option<&'r Feed>,
    /// The latency guard, when `[guard] enabled = true`.
    pub guard: Option<&'r Guard>,
    /// The job's rows and batches done when this process started.
    pub totals: (u64, u64),
    /// What was estimated when this process started.
    pub estimate: Estimated,
    pub events: mpsc::UnboundedSender<Event>,
    pub shutdown: watch::Receiver<bool>,
}

impl<'r, 'a> Crew<'r, 'a> {
    pub fn new(s: Start<'r, 'a>) -> Crew<'r, 'a> {
        Crew {
            r: s.r,
            share: s.share,
            heartbeat: s.heartbeat,
            monitor: s.monitor,
            feed: s.feed,
            guard: s.guard,
            wal: s
                .r
                .job
                .throttle
                .max_wal_rate
                .map(|rate| Mutex::new(WalBudget::new(rate))),
            start: s.totals,
            estimate: s.estimate,
            events: s.events,
            shutdown: s.shutdown,
            halt: watch::channel(false).0,
            turn: tokio::sync::Mutex::new(()),
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

impl Crew<'_, '_> {
    /// The job's name.
    pub fn job(&self) -> &str {
        &self.r.job.name
    }

    /// Worker `worker` of this process, as the ranges table knows it.
    pub fn holder(&self, worker: u32) -> Holder<'_> {
        Holder {
            job: &self.r.job.name,
            owner: self.r.owner,
            worker,
            lease_timeout: self.r.options.lease_timeout,
        }
    }

    /// Reports an event (the leader shows it).
    pub fn send(&self, make: impl FnOnce(String) -> Event) {
        let _ = self.events.send(make(self.job().to_owned()));
    }

    /// Ctrl-C or SIGTERM, for one worker to watch.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Stops every worker after its current batch: one of them met an error the job cannot go
    /// on from.
    pub fn halt(&self) {
        self.halt.send_replace(true);
    }

    /// The halt, for one worker to watch.
    pub fn halted(&self) -> watch::Receiver<bool> {
        self.halt.subscribe()
    }

    /// The monitor's decisions, if it runs.
    pub fn decisions(&self) -> Option<watch::Receiver<Option<Decision>>> {
        self.monitor.map(Monitor::decisions)
    }

    /// The monitor's latest decision, if it runs and has made one.
    pub fn decision(&self) -> Option<Decision> {
        self.monitor.and_then(|m| m.decisions().borrow().clone())
    }

    /// The guard's back-off now: the sleep after each batch in multiples of its time (0 when
    /// there is no guard, or it holds nothing back).
    pub fn guard_ratio(&self) -> f64 {
        self.guard.and_then(Guard::now).map_or(0.0, |g| g.ratio)
    }

    /// `condition`, or — when it is full speed and the guard holds the run back — guarded.
    pub fn guarded(&self, condition: Condition) -> Condition {
        match (&condition, self.guard.and_then(Guard::now)) {
            (Condition::Running, Some(g)) if g.holds() => Condition::Guarded {
                probe: g.recent,
                baseline: g.baseline,
                reason: g.reason(),
            },
            _ => condition,
        }
    }

    /// Whether batches read the WAL position for a budget.
    pub fn has_wal_budget(&self) -> bool {
        self.wal.is_some()
    }

    /// `worker`'s batch started at WAL position `lsn`, at `at`.
    pub fn wal_started(&self, worker: u32, lsn: u64, at: Instant) {
        if let Some(Ok(mut wal)) = self.wal.as_ref().map(Mutex::lock) {
            wal.started(worker, lsn, at);
        }
    }

    /// `worker`'s batch is about to commit at WAL position `lsn`: the bytes charged to it and
    /// how long the budget asks to wait from now.
    pub fn wal_ended(&self, worker: u32, lsn: u64) -> (u64, Duration) {
        match self.wal.as_ref().map(Mutex::lock) {
            Some(Ok(mut wal)) => wal.ended(worker, lsn, Instant::now()),
            _ => (0, Duration::ZERO),
        }
    }

    /// `worker`'s batch rolled back.
    pub fn wal_abandoned(&self, worker: u32) {
        if let Some(Ok(mut wal)) = self.wal.as_ref().map(Mutex::lock) {
            wal.abandoned(worker);
        }
    }

    /// A throttled worker's turn: held for its batch and the pause after it, so that
    /// throttled workers run one at a time.
    pub async fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Takes on `condition` for the whole process: an event when it differs from the current
    /// one in kind or signal, and the note for `status` when anything in it changed.
    pub fn enter(&self, condition: Condition) {
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if !shared.condition.same_as(&condition) {
            let job = self.job().to_owned();
            let event = match &condition {
                Condition::Running => Event::Running { job },
                Condition::Throttled { signal, reason } => Event::Throttled {
                    job,
                    reason: reason.clone(),
                    signal: signal.as_ref().map(signal_name),
                },
                Condition::Paused { signal, reason } => Event::Paused {
                    job,
                    reason: reason.clone(),
                    signal: signal.as_ref().map(signal_name),
                },
                Condition::Guarded {
                    probe,
                    baseline,
                    reason,
                } => Event::Guarded {
                    job,
                    reason: reason.clone(),
                    probe_ms: probe.as_secs_f64() * 1000.0,
                    baseline_ms: baseline.as_secs_f64() * 1000.0,
                },
            };
            let _ = self.events.send(event);
        }
        // Every batch passes here: publish only what changed.
        if shared.condition != condition {
            shared.condition = condition;
            self.publish(&shared);
        }
    }

    /// Records a batch of `rows` in `keys` keys committed by this process in `relation` (and
    /// feeds vacuum pacing): the job's totals as far as this process knows.
    pub fn committed(&self, relation: &str, rows: u64, keys: u32) -> Totals {
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
    pub fn totals(&self) -> (u64, u64) {
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
    pub fn rate(&self, range: u32, rate: Option<f64>) {
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

    /// The longest a heartbeat may be late before a worker must check that its leases are
    /// still its own (the process may have been frozen, or cut off, for a while).
    pub fn beat_in_doubt_after(&self) -> Duration {
        self.r.options.lease_timeout / 2
    }
}
