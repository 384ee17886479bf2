//! Table-driven tests of the purge backlog's signal.

use std::time::Duration;

use super::super::tests::{one, session, with};
use super::*;
use crate::monitor::policy::{Decision, Reading};

fn backlog(history_length: u64, holder: Holder) -> Reading {
    with(|r| {
        r.load.purge = Some(Purge {
            history_length,
            holder,
        })
    })
}

fn snapshot(id: u64, account: &str, query: &str) -> Holder {
    Holder::Oldest(OpenTransaction {
        id,
        session: session(12, query),
        account: account.into(),
        age: Duration::from_secs(35 * 60),
    })
}

#[test]
fn a_long_history_throttles_then_pauses_naming_the_oldest_transaction() {
    let policy = ThrottlePolicy {
        max_history_length: 1_000,
        ..ThrottlePolicy::default()
    };
    let cases: Vec<(&str, Reading, Action, &str)> = vec![
        (
            "over the limit, held by a snapshot",
            backlog(1_500, snapshot(421_337, "app@10.0.0.5", "")),
            Action::Throttle,
            "InnoDB's history list is 1500 long (limit 1000): the oldest open transaction 421337 \
             (thread 12, app@10.0.0.5) has been open for 35m",
        ),
        (
            "over twice the limit, with the transaction's query",
            backlog(
                2_001,
                snapshot(421_337, "app@10.0.0.5", "SELECT SLEEP(600)"),
            ),
            Action::Pause,
            "InnoDB's history list is 2001 long (limit 1000): the oldest open transaction 421337 \
             (thread 12, app@10.0.0.5) has been open for 35m: SELECT SLEEP(600)",
        ),
        (
            "a read-only transaction on MariaDB has no id, nor a session the monitor saw",
            backlog(1_001, snapshot(0, "", "")),
            Action::Throttle,
            "InnoDB's history list is 1001 long (limit 1000): the oldest open transaction \
             (thread 12) has been open for 35m",
        ),
        (
            "nobody holds purge back",
            backlog(2_000, Holder::Nobody),
            Action::Throttle,
            "InnoDB's history list is 2000 long (limit 1000), and no other transaction is open: \
             purge is behind the writes",
        ),
        (
            "the monitor may not see the transactions",
            backlog(1_001, Holder::Unseen),
            Action::Throttle,
            "InnoDB's history list is 1001 long (limit 1000), and the monitor may not see which \
             transaction holds purge back (it needs the PROCESS privilege)",
        ),
    ];
    for (name, reading, action, reason) in cases {
        let d = one(&policy, reading);
        assert_eq!(d.action, action, "{name}");
        assert_eq!(d.signal, Some(Signal::HistoryLength), "{name}");
        assert_eq!(d.reason, reason, "{name}");
    }
}

#[test]
fn a_history_at_the_limit_or_off_or_unread_is_no_signal() {
    let at_limit = ThrottlePolicy {
        max_history_length: 1_000,
        ..ThrottlePolicy::default()
    };
    assert_eq!(
        one(&at_limit, backlog(1_000, Holder::Nobody)),
        Decision::go()
    );
    let off = ThrottlePolicy {
        max_history_length: 0,
        ..ThrottlePolicy::default()
    };
    assert_eq!(one(&off, backlog(u64::MAX, Holder::Nobody)), Decision::go());
    assert_eq!(one(&at_limit, with(|_| {})), Decision::go(), "PostgreSQL");
}

#[test]
fn the_default_limit_is_a_million() {
    let policy = ThrottlePolicy::default();
    assert_eq!(
        one(&policy, backlog(1_000_000, Holder::Nobody)),
        Decision::go()
    );
    assert_eq!(
        one(&policy, backlog(2_000_001, Holder::Nobody)).action,
        Action::Pause
    );
}
