//! Lock signals: a session waiting for a lock our batch holds (yield; held for `cooldown`
//! unless every waiter only wants a row), and another session
//! holding or waiting for a conflicting lock on the target table (pause, or yield when our
//! batch is queued behind it). Pure: the sample's rows in, signals out.

use super::{Action, Found, Session, Signal, others, query, who};
use crate::job::ThrottlePolicy;

/// Lock contention around our batch and the target table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locks {
    /// Sessions waiting for a lock that our running batch holds.
    pub waiting_on_batch: Vec<Session>,
    /// Every one of them waits for a row lock (`wait_event` `transactionid` or `tuple`), none
    /// for the table itself.
    pub waiting_for_rows: bool,
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

/// The lock signals `locks` shows.
pub(super) fn signals(policy: &ThrottlePolicy, locks: &Locks) -> Vec<Found> {
    let mut out = Vec::new();
    if policy.yield_to_waiters
        && let Some(first) = locks.waiting_on_batch.first()
    {
        let who = others(first.pid, locks.waiting_on_batch.len(), "waits", "wait");
        let reason = format!("{who} for a lock our batch holds{}", query(first));
        let signal = if locks.waiting_for_rows {
            Signal::RowWaiter
        } else {
            Signal::WaitingOnBatch
        };
        out.push((signal, Action::Yield, reason));
    }
    if policy.pause_on_table_locks
        && let Some(mut reason) = table_lock(locks)
    {
        // Our batch queued behind that lock can only time out, and everything behind it waits.
        let action = if locks.batch_waiting && policy.yield_to_waiters {
            reason.push_str(" (our batch was queued behind it)");
            Action::Yield
        } else {
            Action::Pause
        };
        out.push((Signal::TableLock, action, reason));
    }
    out
}

/// The sentence for a lock on the table that another session holds or waits for — `pid 4242
/// holds AccessExclusiveLock on the table: ALTER TABLE …` — or `None` when there is none. A
/// holder is named before any waiter: the sessions queued behind a migration are not the
/// reason, the migration is. What a run pauses for, mid-run or before it starts.
pub fn table_lock(locks: &Locks) -> Option<String> {
    let first = locks
        .table
        .iter()
        .find(|l| l.granted)
        .or(locks.table.first())?;
    let verb = if first.granted { "holds" } else { "waits for" };
    Some(format!(
        "{} {verb} {} on the table{}",
        who(first.session.pid),
        first.mode,
        query(&first.session)
    ))
}
