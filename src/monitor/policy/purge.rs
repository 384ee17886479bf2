//! The purge backlog (MySQL and MariaDB): InnoDB's history list, the undo logs of committed
//! transactions that purge has not removed yet. It grows while an open transaction's snapshot
//! still needs old row versions, and with every batch of a run; past `max_history_length` the
//! run throttles, past twice that it pauses. The reason names the oldest open transaction,
//! whose snapshot most likely holds purge back. Pure: the full sample's numbers in, a signal
//! out.

use std::time::Duration;

use super::{Action, Found, Session, Signal, human, query};
use crate::job::ThrottlePolicy;

/// InnoDB's purge backlog, and who most likely holds it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// The history list's length (`trx_rseg_history_len`): about one entry per committed
    /// transaction that changed rows, not one per row.
    pub history_length: u64,
    pub holder: Holder,
}

/// Who most likely holds purge back: the oldest open transaction, whose snapshot may still
/// need the oldest row versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The oldest transaction open now other than the run's own.
    Oldest(OpenTransaction),
    /// No other transaction is open: purge is behind the writes.
    Nobody,
    /// The monitor may not see other accounts' transactions (it needs `PROCESS`).
    Unseen,
}

/// An open InnoDB transaction, from `information_schema.INNODB_TRX` and the processlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// `trx_id`: 0 for a read-only transaction on MariaDB, which gets none.
    pub id: u64,
    /// Its session: the processlist id (`KILL` takes it), and the start of its query while it
    /// runs one.
    pub session: Session,
    /// `user@host` of its session; empty when the processlist did not show it.
    pub account: String,
    /// How long it has been open.
    pub age: Duration,
}

/// The signal `purge` shows, if any.
pub(super) fn signal(policy: &ThrottlePolicy, purge: Option<&Purge>) -> Option<Found> {
    let limit = policy.max_history_length;
    let purge = purge.filter(|p| limit > 0 && p.history_length > limit)?;
    let action = if purge.history_length > limit.saturating_mul(2) {
        Action::Pause
    } else {
        Action::Throttle
    };
    let held_by = match &purge.holder {
        Holder::Oldest(trx) => {
            let id = if trx.id == 0 {
                String::new()
            } else {
                format!(" {}", trx.id)
            };
            let account = if trx.account.is_empty() {
                String::new()
            } else {
                format!(", {}", trx.account)
            };
            format!(
                ": the oldest open transaction{id} (thread {}{account}) has been open for {}{}",
                trx.session.pid,
                human(trx.age),
                query(&trx.session)
            )
        }
        Holder::Nobody => {
            ", and no other transaction is open: purge is behind the writes".to_owned()
        }
        Holder::Unseen => ", and the monitor may not see which transaction holds purge back \
                           (it needs the PROCESS privilege)"
            .to_owned(),
    };
    let reason = format!(
        "InnoDB's history list is {} long (limit {limit}){held_by}",
        purge.history_length
    );
    Some((Signal::HistoryLength, action, reason))
}

#[cfg(test)]
mod tests;
