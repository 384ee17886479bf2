//! The monitor's judgement, pure: a [`Snapshot`] of the database and the [`History`] of recent
//! signals in, a [`Decision`] out (ARCHITECTURE.md).
//!
//! Each reading is turned into signals, each with an action (throttle, pause, yield) and a
//! sentence for the operator. The most severe one wins. Hysteresis: a signal that fired keeps
//! holding the run back, as a pause at most, until it has stayed clear for `cooldown`, so that
//! a DDL statement retried in a loop or a lag hovering at its limit does not make the run
//! flap. Knows nothing of SQL or clocks: the caller passes the time inside the snapshot.
//!
//! Layout: one module per family of signals turns its part of the reading into signals
//! (`locks`, `load`, `wal`, `purge`); this one ranks them and keeps the history.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::job::ThrottlePolicy;

mod load;
mod locks;
mod purge;
mod wal;

pub use load::{Autovacuum, Load, Replica};
pub use locks::{Locks, TableLock, table_lock};
pub use purge::{Holder, OpenTransaction, Purge};
pub use wal::{Archiver, Slot, Wal};

/// What the monitor read at one moment, or why it could not.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the sample was taken.
    pub at: Instant,
    /// The reading, or the error that prevented it.
    pub reading: Result<Reading, String>,
}

/// One successful sample of every signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub locks: Locks,
    pub load: Load,
    pub wal: Wal,
    /// What `throttle_query` returned (no row or NULL is 0); `None` when there is none.
    pub throttle_query: Option<f64>,
    /// `throttle_file` exists.
    pub throttle_file: bool,
}

/// Another session, for a reason: its pid and the start of its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pid: i64,
    pub query: String,
}

/// What the run should do now. Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Full speed.
    Go,
    /// Smaller batches, longer pauses between them.
    Throttle,
    /// No batch starts.
    Pause,
    /// Cancel the running batch at once, then pause.
    Yield,
}

/// Which signal fired; a run reports a new reason only when this (or the action) changes.
/// Declared in the order of ARCHITECTURE.md's signal table, which breaks ties between equally severe signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    WaitingOnBatch,
    /// Every session waiting on our batch wants a row of it (an application's `UPDATE`,
    /// `DELETE` or `SELECT … FOR UPDATE`), not the table: yield at once, but hold nothing once
    /// it is gone — it only wanted that row, and a cooldown after every such yield would keep a
    /// run under a busy application paused most of the time.
    RowWaiter,
    TableLock,
    Connections,
    IdleInTransaction,
    ReplicaLag,
    ThrottleQuery,
    ThrottleFile,
    MonitorLost,
    ReplicationSlot,
    Archiver,
    HistoryLength,
    ActiveSessions,
    Autovacuum,
}

/// The monitor's verdict, with the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The signal behind the action; `None` for [`Action::Go`].
    pub signal: Option<Signal>,
    /// A human sentence for the progress line, e.g. `pid 4242 waits for AccessExclusiveLock on
    /// the table: ALTER TABLE …`; empty for [`Action::Go`].
    pub reason: String,
}

impl Decision {
    /// Full speed.
    pub fn go() -> Decision {
        Decision {
            action: Action::Go,
            signal: None,
            reason: String::new(),
        }
    }
}

/// A signal that fired, as the history remembers it.
#[derive(Debug, Clone)]
struct Fired {
    signal: Signal,
    action: Action,
    reason: String,
    /// The last snapshot in which it fired.
    at: Instant,
}

/// What recent snapshots showed: the last successful sample and when each signal last fired.
#[derive(Debug, Clone)]
pub struct History {
    last_ok: Instant,
    fired: Vec<Fired>,
}

impl History {
    /// A history that starts at `start`, as if a sample had succeeded then (so that the
    /// monitor has `fail_closed_after` to take its first one).
    pub fn new(start: Instant) -> History {
        History {
            last_ok: start,
            fired: Vec::new(),
        }
    }

    /// Folds `snapshot` in; call after [`decide`] on the same snapshot. A signal that holds
    /// nothing once clear ([`Signal::RowWaiter`]) is not remembered.
    pub fn record(&mut self, policy: &ThrottlePolicy, snapshot: &Snapshot) {
        let remembered = current(policy, snapshot, self)
            .into_iter()
            .filter(|f| f.signal != Signal::RowWaiter);
        for now in remembered {
            match self.fired.iter_mut().find(|f| f.signal == now.signal) {
                Some(f) => *f = now,
                None => self.fired.push(now),
            }
        }
        if snapshot.reading.is_ok() {
            self.last_ok = snapshot.at;
        }
        let cooldown = policy.cooldown;
        self.fired
            .retain(|f| snapshot.at.saturating_duration_since(f.at) < cooldown);
    }
}

/// The decision for `snapshot`, given what came before it.
///
/// The signals firing now decide at full strength; a signal that fired within `cooldown`
/// before still holds the run back, as a pause at most (its yield has happened). A failed
/// sample adds nothing until no sample has succeeded for `fail_closed_after`; then the run
/// pauses. The most severe action wins; among equals, the first signal in declaration order.
pub fn decide(policy: &ThrottlePolicy, snapshot: &Snapshot, history: &History) -> Decision {
    let now = current(policy, snapshot, history);
    let held: Vec<Fired> = history
        .fired
        .iter()
        .filter(|f| {
            snapshot.at.saturating_duration_since(f.at) < policy.cooldown
                && !now.iter().any(|n| n.signal == f.signal)
        })
        .map(|f| Fired {
            action: f.action.min(Action::Pause),
            ..f.clone()
        })
        .collect();
    let mut all: Vec<Fired> = now.into_iter().chain(held).collect();
    all.sort_by_key(|f| f.signal as u8);
    // `max_by_key` keeps the last of equals: iterate in reverse to keep the first.
    all.into_iter()
        .rev()
        .max_by_key(|f| f.action)
        .map_or_else(Decision::go, |f| Decision {
            action: f.action,
            signal: Some(f.signal),
            reason: f.reason,
        })
}

/// The signals firing in `snapshot`.
fn current(policy: &ThrottlePolicy, snapshot: &Snapshot, history: &History) -> Vec<Fired> {
    let fired = |signal, action, reason: String| Fired {
        signal,
        action,
        reason,
        at: snapshot.at,
    };
    match &snapshot.reading {
        Ok(reading) => signals(policy, reading)
            .into_iter()
            .map(|(signal, action, reason)| fired(signal, action, reason))
            .collect(),
        Err(error) => {
            let silent = snapshot.at.saturating_duration_since(history.last_ok);
            if silent < policy.fail_closed_after {
                return Vec::new();
            }
            let reason = format!(
                "the monitor has had no reading of the database for {}: {error}",
                human(silent)
            );
            vec![fired(Signal::MonitorLost, Action::Pause, reason)]
        }
    }
}

/// A signal that fires in a reading: which, what to do, and why.
type Found = (Signal, Action, String);

/// Every signal `reading` shows.
fn signals(policy: &ThrottlePolicy, r: &Reading) -> Vec<Found> {
    let mut out = locks::signals(policy, &r.locks);
    out.extend(load::signals(policy, &r.load));
    if let Some(value) = r.throttle_query
        && value > 0.0
    {
        let reason = format!("throttle_query returned {value}");
        out.push((Signal::ThrottleQuery, Action::Throttle, reason));
    }
    if r.throttle_file
        && let Some(path) = &policy.throttle_file
    {
        let reason = format!("throttle_file {} exists", show_path(path));
        out.push((Signal::ThrottleFile, Action::Pause, reason));
    }
    out.extend(wal::signals(policy, &r.wal));
    out.extend(purge::signal(policy, r.load.purge.as_ref()));
    out
}

/// `pid 42 waits` or `pid 42 and 2 more wait`.
fn others(pid: i64, count: usize, one: &str, many: &str) -> String {
    match count {
        0 | 1 => format!("{} {one}", who(pid)),
        n => format!("{} and {} more {many}", who(pid), n - 1),
    }
}

/// `pid 42`, or `a session` for pid 0: one the server does not name (a prepared transaction
/// on PostgreSQL, the holder of `LOCK TABLES` on MariaDB).
fn who(pid: i64) -> String {
    if pid == 0 {
        "a session".to_owned()
    } else {
        format!("pid {pid}")
    }
}

/// `: <query>` when the query is known.
fn query(session: &Session) -> String {
    if session.query.is_empty() {
        String::new()
    } else {
        format!(": {}", session.query)
    }
}

fn show_path(path: &Path) -> String {
    path.display().to_string()
}

/// A duration for a reason, to the millisecond at most.
fn human(d: Duration) -> String {
    let whole = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    humantime::format_duration(whole).to_string()
}

/// A byte count with a binary unit: `512 B`, `1.5 MiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests;
