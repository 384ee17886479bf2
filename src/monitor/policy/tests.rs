//! Table-driven tests of [`decide`]: readings in, decisions out, with the clock in the data.
//! The helpers here serve the tests of each family of signals too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn session(pid: i64, query: &str) -> Session {
    Session {
        pid,
        query: query.into(),
    }
}

fn alter() -> TableLock {
    TableLock {
        session: session(77, "ALTER TABLE items ADD COLUMN x int"),
        mode: "AccessExclusiveLock".into(),
        granted: false,
    }
}

pub(super) fn quiet() -> Reading {
    Reading {
        load: Load {
            connections: 10,
            max_connections: 100,
            ..Load::default()
        },
        ..Reading::default()
    }
}

pub(super) fn with(change: impl FnOnce(&mut Reading)) -> Reading {
    let mut r = quiet();
    change(&mut r);
    r
}

fn replica(lag: Option<Duration>, lag_bytes: Option<u64>) -> Replica {
    Replica {
        name: "standby1".into(),
        lag,
        lag_bytes,
        unknown: None,
    }
}

/// Feeds `steps` (milliseconds since start, reading or error) through decide + record, as the
/// monitor does, and returns each decision.
pub(super) fn run(
    policy: &ThrottlePolicy,
    steps: Vec<(u64, Result<Reading, &str>)>,
) -> Vec<Decision> {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    steps
        .into_iter()
        .map(|(at, reading)| {
            let snapshot = Snapshot {
                at: t0 + ms(at),
                reading: reading.map_err(str::to_owned),
            };
            let decision = decide(policy, &snapshot, &history);
            history.record(policy, &snapshot);
            decision
        })
        .collect()
}

pub(super) fn one(policy: &ThrottlePolicy, reading: Reading) -> Decision {
    run(policy, vec![(0, Ok(reading))]).remove(0)
}

pub(super) fn actions(decisions: &[Decision]) -> Vec<Action> {
    decisions.iter().map(|d| d.action).collect()
}

#[test]
fn each_signal_gives_its_action_and_reason() {
    let policy = ThrottlePolicy {
        throttle_file: Some(PathBuf::from("/tmp/brake")),
        max_idle_in_transaction: Duration::from_secs(60),
        ..ThrottlePolicy::default()
    };
    let cases: Vec<(&str, Reading, Action, Option<Signal>, &str)> = vec![
        ("quiet", quiet(), Action::Go, None, ""),
        (
            "a session waits on our batch",
            with(|r| r.locks.waiting_on_batch = vec![session(42, "UPDATE items SET a = 1")]),
            Action::Yield,
            Some(Signal::WaitingOnBatch),
            "pid 42 waits for a lock our batch holds: UPDATE items SET a = 1",
        ),
        (
            "three sessions wait on our batch",
            with(|r| {
                r.locks.waiting_on_batch = vec![session(1, ""), session(2, ""), session(3, "")]
            }),
            Action::Yield,
            Some(Signal::WaitingOnBatch),
            "pid 1 and 2 more wait for a lock our batch holds",
        ),
        (
            "DDL queued on the table between batches",
            with(|r| r.locks.table = vec![alter()]),
            Action::Pause,
            Some(Signal::TableLock),
            "pid 77 waits for AccessExclusiveLock on the table: ALTER TABLE items ADD COLUMN x int",
        ),
        (
            "the application queued behind DDL that holds the table: the holder is named",
            with(|r| {
                r.locks.table = vec![
                    TableLock {
                        session: session(90, "UPDATE items SET a = 1 WHERE id = 7"),
                        mode: "RowExclusiveLock".into(),
                        granted: false,
                    },
                    TableLock {
                        granted: true,
                        ..alter()
                    },
                ]
            }),
            Action::Pause,
            Some(Signal::TableLock),
            "pid 77 holds AccessExclusiveLock on the table: ALTER TABLE items ADD COLUMN x int",
        ),
        (
            "our batch queued behind a table lock",
            with(|r| {
                r.locks.table = vec![TableLock {
                    granted: true,
                    ..alter()
                }];
                r.locks.batch_waiting = true;
            }),
            Action::Yield,
            Some(Signal::TableLock),
            "pid 77 holds AccessExclusiveLock on the table: ALTER TABLE items ADD COLUMN x int (our batch was queued behind it)",
        ),
        (
            "connections at 71%",
            with(|r| r.load.connections = 71),
            Action::Throttle,
            Some(Signal::Connections),
            "71 of 100 connections in use (71% > 70%)",
        ),
        (
            "connections at exactly 70%",
            with(|r| r.load.connections = 70),
            Action::Go,
            None,
            "",
        ),
        (
            "idle in transaction too long",
            with(|r| {
                r.load.idle_in_transaction = Some((session(9, "BEGIN"), Duration::from_secs(61)))
            }),
            Action::Throttle,
            Some(Signal::IdleInTransaction),
            "pid 9 has been idle in transaction for 1m 1s (limit 1m): BEGIN",
        ),
        (
            "idle in transaction briefly",
            with(|r| {
                r.load.idle_in_transaction = Some((session(9, "BEGIN"), Duration::from_secs(59)))
            }),
            Action::Go,
            None,
            "",
        ),
        (
            "replica lagging in time",
            with(|r| r.load.replicas = vec![replica(Some(Duration::from_secs(6)), Some(0))]),
            Action::Pause,
            Some(Signal::ReplicaLag),
            "replica standby1 is 6s behind (limit 5s)",
        ),
        (
            "replica lagging in bytes",
            with(|r| r.load.replicas = vec![replica(None, Some(200 * 1024 * 1024))]),
            Action::Pause,
            Some(Signal::ReplicaLag),
            "replica standby1 has 200.0 MiB of WAL to replay (limit 128.0 MiB)",
        ),
        (
            "idle replica: NULL lag is not lag",
            with(|r| r.load.replicas = vec![replica(None, None)]),
            Action::Go,
            None,
            "",
        ),
        (
            "a MySQL replica whose lag is not known",
            with(|r| {
                r.load.replicas = vec![Replica {
                    unknown: Some("its SQL thread is stopped".into()),
                    ..replica(None, None)
                }]
            }),
            Action::Pause,
            Some(Signal::ReplicaLag),
            "replica standby1: its SQL thread is stopped",
        ),
        (
            "throttle_query above zero",
            with(|r| r.throttle_query = Some(3.0)),
            Action::Throttle,
            Some(Signal::ThrottleQuery),
            "throttle_query returned 3",
        ),
        (
            "throttle_query at zero",
            with(|r| r.throttle_query = Some(0.0)),
            Action::Go,
            None,
            "",
        ),
        (
            "throttle_file exists",
            with(|r| r.throttle_file = true),
            Action::Pause,
            Some(Signal::ThrottleFile),
            "throttle_file /tmp/brake exists",
        ),
    ];
    for (name, reading, action, signal, reason) in cases {
        let d = one(&policy, reading);
        assert_eq!(d.action, action, "{name}");
        assert_eq!(d.signal, signal, "{name}");
        assert_eq!(d.reason, reason, "{name}");
    }
}

#[test]
fn switched_off_signals_stay_quiet() {
    let off = ThrottlePolicy {
        yield_to_waiters: false,
        pause_on_table_locks: false,
        max_idle_in_transaction: Duration::ZERO,
        max_replica_lag: Duration::ZERO,
        max_replica_lag_bytes: 0,
        max_connection_use: 1.0,
        ..ThrottlePolicy::default()
    };
    let busy = with(|r| {
        r.locks.waiting_on_batch = vec![session(1, "")];
        r.locks.table = vec![alter()];
        r.load.connections = 100;
        r.load.idle_in_transaction = Some((session(9, ""), Duration::from_secs(3600)));
        r.load.replicas = vec![
            replica(Some(Duration::from_secs(99)), Some(1 << 40)),
            Replica {
                unknown: Some("cannot be reached".into()),
                ..replica(None, None)
            },
        ];
    });
    assert_eq!(one(&off, busy), Decision::go());
}

#[test]
fn without_yield_a_batch_behind_a_table_lock_only_pauses() {
    let policy = ThrottlePolicy {
        yield_to_waiters: false,
        ..ThrottlePolicy::default()
    };
    let reading = with(|r| {
        r.locks.table = vec![alter()];
        r.locks.batch_waiting = true;
    });
    assert_eq!(one(&policy, reading).action, Action::Pause);
}

#[test]
fn the_most_severe_signal_wins_and_the_first_among_equals() {
    let policy = ThrottlePolicy {
        throttle_file: Some(PathBuf::from("/tmp/brake")),
        ..ThrottlePolicy::default()
    };
    let reading = with(|r| {
        r.load.connections = 99;
        r.throttle_file = true;
        r.load.replicas = vec![replica(Some(Duration::from_secs(60)), None)];
        r.locks.waiting_on_batch = vec![session(5, "")];
    });
    assert_eq!(
        one(&policy, reading.clone()).signal,
        Some(Signal::WaitingOnBatch)
    );
    let no_waiter = Reading {
        locks: Locks::default(),
        ..reading
    };
    assert_eq!(one(&policy, no_waiter).signal, Some(Signal::ReplicaLag));
}

#[test]
fn full_speed_returns_only_after_cooldown() {
    let policy = ThrottlePolicy::default(); // cooldown 2s
    let ddl = with(|r| r.locks.waiting_on_batch = vec![session(77, "ALTER TABLE")]);
    let decisions = run(
        &policy,
        vec![
            (0, Ok(ddl)),
            (250, Ok(quiet())),
            (1_000, Ok(quiet())),
            (1_999, Ok(quiet())),
            (2_000, Ok(quiet())),
        ],
    );
    assert_eq!(
        actions(&decisions),
        [
            Action::Yield,
            Action::Pause, // held: the yield has happened, the rest is a pause
            Action::Pause,
            Action::Pause,
            Action::Go,
        ]
    );
    assert_eq!(decisions[1].reason, decisions[0].reason);
}

#[test]
fn a_session_that_only_wants_a_row_is_yielded_to_and_then_forgotten() {
    let policy = ThrottlePolicy::default();
    let row = with(|r| {
        r.locks.waiting_on_batch = vec![session(42, "UPDATE items SET qty = 1 WHERE id = 7")];
        r.locks.waiting_for_rows = true;
    });
    let decisions = run(&policy, vec![(0, Ok(row)), (50, Ok(quiet()))]);
    assert_eq!(actions(&decisions), [Action::Yield, Action::Go]);
    assert_eq!(decisions[0].signal, Some(Signal::RowWaiter));
    assert!(
        decisions[0]
            .reason
            .starts_with("pid 42 waits for a lock our batch holds"),
        "{}",
        decisions[0].reason
    );
}

#[test]
fn a_row_waiter_beside_a_ddl_waiter_is_held_like_ddl() {
    let policy = ThrottlePolicy::default();
    let both = with(|r| {
        r.locks.waiting_on_batch = vec![session(42, ""), session(77, "ALTER TABLE")];
        r.locks.waiting_for_rows = false;
    });
    let decisions = run(&policy, vec![(0, Ok(both)), (50, Ok(quiet()))]);
    assert_eq!(actions(&decisions), [Action::Yield, Action::Pause]);
}

#[test]
fn a_signal_that_returns_restarts_the_cooldown() {
    let policy = ThrottlePolicy::default();
    let lag = with(|r| r.load.replicas = vec![replica(Some(Duration::from_secs(9)), None)]);
    let decisions = run(
        &policy,
        vec![
            (0, Ok(lag.clone())),
            (1_500, Ok(quiet())),
            (1_750, Ok(lag)),
            (3_500, Ok(quiet())),
            (3_750, Ok(quiet())),
        ],
    );
    assert_eq!(
        actions(&decisions),
        [
            Action::Pause,
            Action::Pause,
            Action::Pause,
            Action::Pause,
            Action::Go
        ]
    );
}

#[test]
fn a_held_throttle_stays_a_throttle() {
    let policy = ThrottlePolicy::default();
    let busy = with(|r| r.load.connections = 90);
    let decisions = run(&policy, vec![(0, Ok(busy)), (500, Ok(quiet()))]);
    assert_eq!(actions(&decisions), [Action::Throttle, Action::Throttle]);
}

#[test]
fn zero_cooldown_releases_at_once() {
    let policy = ThrottlePolicy {
        cooldown: Duration::ZERO,
        ..ThrottlePolicy::default()
    };
    let ddl = with(|r| r.locks.table = vec![alter()]);
    let decisions = run(&policy, vec![(0, Ok(ddl)), (250, Ok(quiet()))]);
    assert_eq!(actions(&decisions), [Action::Pause, Action::Go]);
}

#[test]
fn failed_samples_fail_closed_after_the_limit() {
    let policy = ThrottlePolicy::default(); // fail_closed_after 5s, cooldown 2s
    let decisions = run(
        &policy,
        vec![
            (0, Ok(quiet())),
            (250, Err("connection reset")),
            (4_999, Err("connection reset")),
            (5_000, Err("connection refused")),
            (6_000, Err("connection refused")),
            (6_250, Ok(quiet())),
            (7_999, Ok(quiet())),
            (8_000, Ok(quiet())),
        ],
    );
    assert_eq!(
        actions(&decisions),
        [
            Action::Go,
            Action::Go,
            Action::Go,
            Action::Pause,
            Action::Pause,
            Action::Pause, // clear, but cooling down
            Action::Pause,
            Action::Go,
        ]
    );
    assert_eq!(decisions[3].signal, Some(Signal::MonitorLost));
    assert_eq!(
        decisions[3].reason,
        "the monitor has had no reading of the database for 5s: connection refused"
    );
}

#[test]
fn a_monitor_that_never_reads_fails_closed_from_its_start() {
    let policy = ThrottlePolicy::default();
    let decisions = run(
        &policy,
        vec![(4_000, Err("refused")), (5_000, Err("refused"))],
    );
    assert_eq!(actions(&decisions), [Action::Go, Action::Pause]);
}

#[test]
fn a_failed_sample_keeps_what_was_held() {
    let policy = ThrottlePolicy::default();
    let ddl = with(|r| r.locks.table = vec![alter()]);
    let decisions = run(&policy, vec![(0, Ok(ddl)), (250, Err("timeout"))]);
    assert_eq!(actions(&decisions), [Action::Pause, Action::Pause]);
}

#[test]
fn bytes_are_shown_with_binary_units() {
    assert_eq!(Bytes(512).to_string(), "512 B");
    assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
    assert_eq!(Bytes(128 * 1024 * 1024).to_string(), "128.0 MiB");
}
