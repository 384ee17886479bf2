//! Table-driven tests of the active-sessions and autovacuum signals. (Connections, idle in
//! transaction and replica lag are in the policy's own tests, beside the ranking they share.)

use super::super::tests::{actions, one, quiet, run, with};
use super::*;
use crate::monitor::policy::{Decision, Reading};

fn autovacuum(pid: i64, relation: &str, wraparound: bool) -> Autovacuum {
    Autovacuum {
        pid,
        relation: relation.into(),
        phase: "scanning heap".into(),
        wraparound,
    }
}

fn vacuuming(workers: Vec<Autovacuum>) -> Reading {
    with(|r| r.load.autovacuum = workers)
}

#[test]
fn sessions_and_autovacuum_give_their_action_and_reason() {
    let policy = ThrottlePolicy {
        max_active_sessions: 8,
        ..ThrottlePolicy::default()
    };
    let cases: Vec<(&str, Reading, Action, Option<Signal>, &str)> = vec![
        (
            "more sessions active than the limit",
            with(|r| r.load.active_sessions = 9),
            Action::Throttle,
            Some(Signal::ActiveSessions),
            "9 other sessions are active (limit 8)",
        ),
        (
            "as many sessions active as the limit",
            with(|r| r.load.active_sessions = 8),
            Action::Go,
            None,
            "",
        ),
        (
            "an autovacuum of the table",
            vacuuming(vec![autovacuum(4242, "items", false)]),
            Action::Throttle,
            Some(Signal::Autovacuum),
            "autovacuum pid 4242 is vacuuming items (phase scanning heap)",
        ),
        (
            "an autovacuum to prevent wraparound",
            vacuuming(vec![autovacuum(4243, "public.items", true)]),
            Action::Pause,
            Some(Signal::Autovacuum),
            "autovacuum pid 4243 is vacuuming public.items to prevent wraparound (phase scanning \
             heap)",
        ),
        (
            "the wraparound one of two is named",
            vacuuming(vec![
                autovacuum(1, "items", false),
                autovacuum(2, "pg_toast.pg_toast_16384", true),
            ]),
            Action::Pause,
            Some(Signal::Autovacuum),
            "autovacuum pid 2 is vacuuming pg_toast.pg_toast_16384 to prevent wraparound (phase \
             scanning heap)",
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
fn sessions_and_autovacuum_can_be_switched_off() {
    let busy = with(|r| {
        r.load.active_sessions = 1_000;
        r.load.autovacuum = vec![autovacuum(7, "items", true)];
    });
    let off = ThrottlePolicy {
        watch_autovacuum: false,
        ..ThrottlePolicy::default() // max_active_sessions 0: off
    };
    assert_eq!(one(&off, busy), Decision::go());
}

#[test]
fn a_wraparound_vacuum_pauses_until_it_is_done_then_cooldown() {
    let policy = ThrottlePolicy::default(); // cooldown 2s
    let wraparound = vacuuming(vec![autovacuum(9, "items", true)]);
    let decisions = run(
        &policy,
        vec![
            (0, Ok(wraparound.clone())),
            (60_000, Ok(wraparound)),
            (60_250, Ok(quiet())), // done
            (61_999, Ok(quiet())),
            (62_000, Ok(quiet())),
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
fn an_ordinary_autovacuum_after_a_wraparound_one_only_throttles() {
    let policy = ThrottlePolicy {
        cooldown: std::time::Duration::ZERO,
        ..ThrottlePolicy::default()
    };
    let decisions = run(
        &policy,
        vec![
            (0, Ok(vacuuming(vec![autovacuum(9, "items", true)]))),
            (250, Ok(vacuuming(vec![autovacuum(10, "items", false)]))),
            (500, Ok(quiet())),
        ],
    );
    assert_eq!(
        actions(&decisions),
        [Action::Pause, Action::Throttle, Action::Go]
    );
}
