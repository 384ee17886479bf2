//! The monitor's judgement, pure: a [`Snapshot`] of the database and the [`History`] of recent
//! signals in, a [`Decision`] out (DESIGN §5).
//!
//! Each reading is turned into signals, each with an action (throttle, pause, yield) and a
//! sentence for the operator. The most severe one wins. Hysteresis: a signal that fired keeps
//! holding the run back, as a pause at most, until it has stayed clear for `cooldown`, so that
//! a DDL statement retried in a loop or a lag hovering at its limit does not make the run
//! flap. Knows nothing of SQL or clocks: the caller passes the time inside the snapshot.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::job::ThrottlePolicy;

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
    /// What `throttle_query` returned (no row or NULL is 0); `None` when there is none.
    pub throttle_query: Option<f64>,
    /// `throttle_file` exists.
    pub throttle_file: bool,
}

/// Another session, for a reason: its pid and the start of its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pid: i32,
    pub query: String,
}

/// Lock contention around our batch and the target table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locks {
    /// Sessions waiting for a lock that our running batch holds.
    pub waiting_on_batch: Vec<Session>,
    /// Other sessions that hold a lock on the table that conflicts with our `UPDATE`, or wait
    /// for any lock on it.
    pub table: Vec<TableLock>,
    /// Our running batch is itself waiting for a lock.
    pub batch_waiting: bool,
}

/// A lock on the target table held or wanted by another session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLock {
    pub session: Session,
    /// `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub mode: String,
    pub granted: bool,
}

/// How busy the server and its replicas are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Client backends connected now.
    pub connections: u32,
    /// `max_connections`.
    pub max_connections: u32,
    /// The session idle in transaction for longest, with how long.
    pub idle_in_transaction: Option<(Session, Duration)>,
    pub replicas: Vec<Replica>,
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `application_name`, or the client address when that is empty.
    pub name: String,
    /// `replay_lag`: NULL once an idle replica has caught up, which is not lag.
    pub lag: Option<Duration>,
    /// WAL bytes sent but not yet replayed (NULL without the privilege to see it).
    pub lag_bytes: Option<u64>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    WaitingOnBatch,
    TableLock,
    Connections,
    IdleInTransaction,
    ReplicaLag,
    ThrottleQuery,
    ThrottleFile,
    MonitorLost,
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

    /// Folds `snapshot` in; call after [`decide`] on the same snapshot.
    pub fn record(&mut self, policy: &ThrottlePolicy, snapshot: &Snapshot) {
        for now in current(policy, snapshot, self) {
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
/// pauses. The most severe action wins; among equals, the first signal in DESIGN §5's order.
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

/// Every signal `reading` shows, in DESIGN §5's order.
fn signals(policy: &ThrottlePolicy, r: &Reading) -> Vec<(Signal, Action, String)> {
    let mut out = Vec::new();
    if policy.yield_to_waiters
        && let Some(first) = r.locks.waiting_on_batch.first()
    {
        let who = others(first.pid, r.locks.waiting_on_batch.len(), "waits", "wait");
        let reason = format!("{who} for a lock our batch holds{}", query(first));
        out.push((Signal::WaitingOnBatch, Action::Yield, reason));
    }
    if policy.pause_on_table_locks
        && let Some(first) = r.locks.table.first()
    {
        let verb = if first.granted { "holds" } else { "waits for" };
        let mut reason = format!(
            "pid {} {verb} {} on the table{}",
            first.session.pid,
            first.mode,
            query(&first.session)
        );
        // Our batch queued behind that lock can only time out, and everything behind it waits.
        let action = if r.locks.batch_waiting && policy.yield_to_waiters {
            reason.push_str(" (our batch was queued behind it)");
            Action::Yield
        } else {
            Action::Pause
        };
        out.push((Signal::TableLock, action, reason));
    }
    let load = &r.load;
    if load.max_connections > 0 {
        let share = f64::from(load.connections) / f64::from(load.max_connections);
        if share > policy.max_connection_use {
            let reason = format!(
                "{} of {} connections in use ({:.0}% > {:.0}%)",
                load.connections,
                load.max_connections,
                share * 100.0,
                policy.max_connection_use * 100.0
            );
            out.push((Signal::Connections, Action::Throttle, reason));
        }
    }
    if !policy.max_idle_in_transaction.is_zero()
        && let Some((session, idle)) = &load.idle_in_transaction
        && *idle > policy.max_idle_in_transaction
    {
        let reason = format!(
            "pid {} has been idle in transaction for {} (limit {}){}",
            session.pid,
            human(*idle),
            human(policy.max_idle_in_transaction),
            query(session)
        );
        out.push((Signal::IdleInTransaction, Action::Throttle, reason));
    }
    if let Some(reason) = load.replicas.iter().find_map(|r| replica_lag(policy, r)) {
        out.push((Signal::ReplicaLag, Action::Pause, reason));
    }
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
    out
}

/// Why `replica` is too far behind, if it is.
fn replica_lag(policy: &ThrottlePolicy, replica: &Replica) -> Option<String> {
    let limit = policy.max_replica_lag;
    if let Some(lag) = replica.lag
        && !limit.is_zero()
        && lag > limit
    {
        return Some(format!(
            "replica {} is {} behind (limit {})",
            replica.name,
            human(lag),
            human(limit)
        ));
    }
    let limit = policy.max_replica_lag_bytes;
    match replica.lag_bytes {
        Some(bytes) if limit > 0 && bytes > limit => Some(format!(
            "replica {} has {} of WAL to replay (limit {})",
            replica.name,
            Bytes(bytes),
            Bytes(limit)
        )),
        _ => None,
    }
}

/// `pid 42 waits` or `pid 42 and 2 more wait`.
fn others(pid: i32, count: usize, one: &str, many: &str) -> String {
    match count {
        0 | 1 => format!("pid {pid} {one}"),
        n => format!("pid {pid} and {} more {many}", n - 1),
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
