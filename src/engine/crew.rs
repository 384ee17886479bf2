//! What the workers of one process share, in a few named parts: the run itself (`r`, the
//! ranges, the heartbeat); the [`Watchers`] they all obey (the one monitor and the latency
//! guard); the [`Brakes`] they all answer to (the job's pacing, the process's WAL budget,
//! `pace::WalBudget`, and the turn that throttled workers take one at a time, so that a throttled process puts
//! the load of one throttled worker on the database whatever `--workers` says); the [`Stops`]
//! (Ctrl-C, and the halt that stops every worker when one meets an error the job cannot go on
//! from); and the [`Ledger`] of the job's totals, rates and condition.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{MutexGuard, mpsc, watch};

use crate::event::Event;
use crate::guard::Guard;
use crate::monitor::{BatchWatch, Decision, Monitor};
use crate::ranges::Share;
use crate::state::{Holder, Pending};

use super::BatchError;
use super::condition::Condition;
use super::heartbeat::Heartbeat;
use super::ledger::Ledger;
use super::pace::{Pacing, WalBudget};
use super::vacuum::Feed;
use super::{EngineError, Run};

/// The workers' common ground; see the module header.
pub(super) struct Crew<'r, 'a> {
    pub r: &'r Run<'a>,
    pub share: Share<'r>,
    pub heartbeat: &'r Heartbeat,
    pub watchers: Watchers<'r>,
    pub brakes: Brakes,
    pub stops: Stops,
    pub ledger: Ledger<'r>,
    events: mpsc::UnboundedSender<Event>,
}

/// The monitor and the latency guard, when they run.
pub(super) struct Watchers<'r> {
    /// `None` when `[throttle] enabled = false`.
    pub monitor: Option<&'r Monitor>,
    /// `None` unless `[guard] enabled = true`.
    pub guard: Option<&'r Guard>,
}

/// What holds batches back: the sleep between them the job file asks for, the process's WAL
/// budget and the throttled workers' turn.
pub(super) struct Brakes {
    /// `[batch] pause`, `pause_ratio` and `[throttle] max_pause`, read once.
    pub pacing: Pacing,
    /// `None` without `[throttle] max_wal_rate`.
    wal: Option<Mutex<WalBudget>>,
    turn: tokio::sync::Mutex<()>,
}

/// Ctrl-C or SIGTERM, and the crew's halt.
pub(super) struct Stops {
    shutdown: watch::Receiver<bool>,
    halt: watch::Sender<bool>,
}

/// What a new crew starts from.
pub(super) struct Start<'r, 'a> {
    pub r: &'r Run<'a>,
    pub share: Share<'r>,
    pub heartbeat: &'r Heartbeat,
    pub watchers: Watchers<'r>,
    /// Vacuum pacing's count of changed rows, when the run paces.
    pub feed: Option<&'r Feed>,
    /// The job's rows and batches done when this process started.
    pub totals: (u64, u64),
    /// The job's estimate of its pending rows.
    pub pending: Pending,
    pub events: mpsc::UnboundedSender<Event>,
    pub shutdown: watch::Receiver<bool>,
}

impl<'r, 'a> Crew<'r, 'a> {
    pub fn new(s: Start<'r, 'a>) -> Crew<'r, 'a> {
        let rate = s.r.job.throttle.max_wal_rate;
        Crew {
            r: s.r,
            share: s.share,
            heartbeat: s.heartbeat,
            watchers: s.watchers,
            brakes: Brakes {
                pacing: Pacing::of(s.r.job),
                wal: rate.map(|rate| Mutex::new(WalBudget::new(rate))),
                turn: tokio::sync::Mutex::new(()),
            },
            stops: Stops {
                shutdown: s.shutdown,
                halt: watch::channel(false).0,
            },
            ledger: Ledger::new(
                s.heartbeat,
                s.feed,
                s.totals,
                s.pending,
                s.r.options.retry_failures,
            ),
            events: s.events,
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

    /// Takes on `condition` for the whole process (see [`Ledger::enter`]), with its event.
    pub fn enter(&self, condition: Condition) {
        let guard = self.watchers.guard.and_then(Guard::now);
        let announce =
            |to: &Condition, from: &Condition| self.send(|job| to.event(job, from, guard.as_ref()));
        self.ledger.enter(condition, announce);
    }

    /// The database stayed out of reach for `--reconnect-timeout`.
    pub fn unreachable(&self, source: BatchError) -> EngineError {
        EngineError::Unreachable {
            target: self.r.target.describe(),
            waited: self.r.options.reconnect_timeout,
            source,
        }
    }

    /// The longest a heartbeat may be late before a worker must check that its leases are
    /// still its own (the process may have been frozen, or cut off, for a while).
    pub fn beat_in_doubt_after(&self) -> Duration {
        self.r.options.lease_timeout / 2
    }
}

impl Watchers<'_> {
    /// The monitor's decisions, if it runs.
    pub fn decisions(&self) -> Option<watch::Receiver<Option<Decision>>> {
        self.monitor.map(Monitor::decisions)
    }

    /// The reason of the monitor's latest decision (empty without one): what a yield gave
    /// way to.
    pub fn reason(&self) -> String {
        self.monitor
            .and_then(|m| m.decisions().borrow().as_ref().map(|d| d.reason.clone()))
            .unwrap_or_default()
    }

    /// What the monitor saw of `worker`'s batch that just ended (nothing without a monitor).
    pub fn batch_ended(&self, worker: u32) -> BatchWatch {
        self.monitor
            .map(|m| m.batch_ended(worker))
            .unwrap_or_default()
    }

    /// The guard's recent p90, once it has a baseline.
    pub fn probe(&self) -> Option<Duration> {
        self.guard.and_then(Guard::now).map(|g| g.recent)
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
}

impl Brakes {
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
}

impl Stops {
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
}
