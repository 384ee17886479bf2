//! Table-driven tests of the slot and archiver signals, and of the segment arithmetic.

use std::time::Duration;

use super::super::tests::{actions, one, quiet, run, with};
use super::*;
use crate::monitor::policy::{Decision, Reading};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const SEGMENT: u64 = 16 * MIB;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn logical(name: &str, retained: u64, unconfirmed: u64) -> Slot {
    Slot {
        name: name.into(),
        kind: "logical".into(),
        plugin: Some("test_decoding".into()),
        consumer: None,
        retained: Some(retained),
        unconfirmed: Some(unconfirmed),
        wal_status: Some("reserved".into()),
    }
}

fn physical(name: &str, retained: Option<u64>, wal_status: &str) -> Slot {
    Slot {
        name: name.into(),
        kind: "physical".into(),
        plugin: None,
        consumer: Some(4242),
        retained,
        unconfirmed: None,
        wal_status: Some(wal_status.into()),
    }
}

fn slots(slots: Vec<Slot>) -> Reading {
    with(|r| r.wal.slots = slots)
}

/// An archiver writing segment `current` (16 MiB segments).
fn archiver(archived: Option<(&str, u64)>, failed: Option<(&str, u64)>, current: u64) -> Reading {
    let file = |(name, ago): (&str, u64)| (name.to_owned(), secs(ago));
    with(|r| {
        r.wal.archiver = Some(Archiver {
            last_archived: archived.map(file),
            last_failed: failed.map(file),
            position: current * SEGMENT + 4096,
            segment_size: SEGMENT,
        })
    })
}

fn wal_file(segment: u64) -> String {
    format!("00000001{:08X}{:08X}", segment / 256, segment % 256)
}

#[test]
fn slots_and_the_archiver_give_their_action_and_reason() {
    let policy = ThrottlePolicy {
        ignore_slots: vec!["abandoned".into()],
        ..ThrottlePolicy::default()
    };
    let cases: Vec<(&str, Reading, Option<Signal>, &str)> = vec![
        (
            "logical slot without a consumer",
            slots(vec![logical("cdc", 2 * GIB, 3 * GIB / 2)]),
            Some(Signal::ReplicationSlot),
            "replication slot cdc (logical test_decoding, no consumer connected) retains 2.0 GiB \
             of WAL (limit 1.0 GiB), 1.5 GiB not confirmed",
        ),
        (
            "physical slot about to lose WAL",
            slots(vec![physical("standby1", Some(3 * GIB / 2), "unreserved")]),
            Some(Signal::ReplicationSlot),
            "replication slot standby1 (physical, consumer pid 4242 connected) retains 1.5 GiB of \
             WAL (limit 1.0 GiB), wal_status unreserved",
        ),
        (
            "the slot holding most is named, the others counted",
            slots(vec![
                logical("a", 2 * GIB, 0),
                physical("b", Some(5 * GIB), "extended"),
                logical("c", GIB + 1, 0),
                logical("d", GIB, 0),
            ]),
            Some(Signal::ReplicationSlot),
            "replication slot b (physical, consumer pid 4242 connected) retains 5.0 GiB of WAL \
             (limit 1.0 GiB); 2 more slots are over the limit",
        ),
        (
            "a slot at the limit",
            slots(vec![logical("cdc", GIB, GIB)]),
            None,
            "",
        ),
        (
            "an ignored slot",
            slots(vec![logical("abandoned", 50 * GIB, 50 * GIB)]),
            None,
            "",
        ),
        (
            "an invalidated slot holds nothing back",
            slots(vec![physical("gone", None, "lost")]),
            None,
            "",
        ),
        (
            "archiver failing",
            archiver(Some((&wal_file(2), 300)), Some((&wal_file(3), 2)), 6),
            Some(Signal::Archiver),
            "the WAL archiver is failing: 000000010000000000000003 failed 2s ago, nothing \
             archived for 5m; 3 segments (48.0 MiB) not archived",
        ),
        (
            "archiver failing from the start",
            archiver(None, Some((&wal_file(1), 1)), 2),
            Some(Signal::Archiver),
            "the WAL archiver is failing: 000000010000000000000001 failed 1s ago, nothing \
             archived yet; 1 segment (16.0 MiB) not archived",
        ),
        (
            "archiver failing on a history file",
            archiver(None, Some(("00000002.history", 1)), 2),
            Some(Signal::Archiver),
            "the WAL archiver is failing: 00000002.history failed 1s ago, nothing archived yet",
        ),
        (
            "archiver that failed once, then went on",
            archiver(Some((&wal_file(4), 1)), Some((&wal_file(3), 9)), 6),
            None,
            "",
        ),
        (
            "archiver too far behind",
            archiver(Some((&wal_file(0x10), 1)), None, 0x60),
            Some(Signal::Archiver),
            "the WAL archiver is 79 segments (1.2 GiB) behind (limit 64); it archived \
             000000010000000000000010 1s ago",
        ),
        (
            "archiver behind by the limit",
            archiver(Some((&wal_file(0x10), 1)), None, 0x10 + 65),
            None,
            "",
        ),
        (
            "archiver that has not archived anything yet",
            archiver(None, None, 0x60),
            None,
            "",
        ),
    ];
    for (name, reading, signal, reason) in cases {
        let d = one(&policy, reading);
        let action = if signal.is_some() {
            Action::Pause
        } else {
            Action::Go
        };
        assert_eq!(d.action, action, "{name}");
        assert_eq!(d.signal, signal, "{name}");
        assert_eq!(d.reason, reason, "{name}");
    }
}

#[test]
fn zero_limits_turn_slots_and_archiver_off() {
    let off = ThrottlePolicy {
        max_slot_lag_bytes: 0,
        max_archive_lag: 0,
        ..ThrottlePolicy::default()
    };
    let mut busy = slots(vec![logical("cdc", 100 * GIB, 100 * GIB)]);
    busy.wal.archiver = archiver(None, Some((&wal_file(1), 1)), 900).wal.archiver;
    assert_eq!(one(&off, busy.clone()), Decision::go());
    assert_eq!(one(&ThrottlePolicy::default(), busy).action, Action::Pause);
}

#[test]
fn a_slot_that_stops_retaining_releases_the_pause_after_cooldown() {
    let policy = ThrottlePolicy::default(); // cooldown 2s
    let held = slots(vec![logical("cdc", 2 * GIB, 2 * GIB)]);
    let caught_up = slots(vec![logical("cdc", MIB, 0)]);
    let decisions = run(
        &policy,
        vec![
            (0, Ok(held.clone())),
            (250, Ok(caught_up.clone())), // the consumer caught up
            (2_249, Ok(caught_up)),
            (2_250, Ok(held)),
            (2_500, Ok(quiet())), // dropped
            (4_249, Ok(quiet())),
            (4_250, Ok(quiet())),
        ],
    );
    assert_eq!(
        actions(&decisions),
        [
            Action::Pause,
            Action::Pause,
            Action::Go,
            Action::Pause,
            Action::Pause,
            Action::Pause,
            Action::Go,
        ]
    );
    assert!(decisions[1].reason.starts_with("replication slot cdc"));
}

#[test]
fn a_wal_pause_outranks_a_throttle_and_yields_to_a_lock_yield() {
    let policy = ThrottlePolicy::default();
    let reading = with(|r| {
        r.load.connections = 99;
        r.wal.slots = vec![logical("cdc", 2 * GIB, 0)];
    });
    assert_eq!(
        one(&policy, reading.clone()).signal,
        Some(Signal::ReplicationSlot)
    );
    let waiter = Reading {
        locks: crate::monitor::policy::Locks {
            waiting_on_batch: vec![super::super::tests::session(5, "")],
            ..Default::default()
        },
        ..reading
    };
    assert_eq!(one(&policy, waiter).signal, Some(Signal::WaitingOnBatch));
}

#[test]
fn segment_numbers_follow_postgres() {
    let n = |file: &str, size: u64| segment_number(file, size);
    assert_eq!(n("000000010000000000000003", SEGMENT), Some(3));
    assert_eq!(n("0000000100000001000000FF", SEGMENT), Some(256 + 255));
    // The timeline does not count; suffixes do not either.
    assert_eq!(n("0000000200000001000000FF.partial", SEGMENT), Some(511));
    assert_eq!(
        n("000000010000000000000003.00000028.backup", SEGMENT),
        Some(3)
    );
    assert_eq!(n("00000001000000020000000F", 64 * MIB), Some(2 * 64 + 15));
    assert_eq!(n("00000002.history", SEGMENT), None);
    assert_eq!(n("00000001000000000000000G", SEGMENT), None);
    assert_eq!(n("000000010000000000000003", 0), None);
}

#[test]
fn the_backlog_counts_complete_segments_not_archived() {
    let at = |archived: Option<u64>, failed: Option<u64>, position: u64| Archiver {
        last_archived: archived.map(|s| (wal_file(s), secs(1))),
        last_failed: failed.map(|s| (wal_file(s), Duration::ZERO)),
        position,
        segment_size: SEGMENT,
    };
    // Right after a switch the position is the first byte of the next segment.
    assert_eq!(at(Some(1), None, 2 * SEGMENT).backlog(), Some(0));
    assert_eq!(at(Some(1), None, 5 * SEGMENT + 10).backlog(), Some(3));
    // A failing archiver is stuck on the failed segment, which waits too.
    assert_eq!(at(Some(1), Some(2), 5 * SEGMENT + 10).backlog(), Some(3));
    assert_eq!(at(None, None, 5 * SEGMENT).backlog(), None);
    assert!(at(None, Some(2), 0).failing());
    assert!(!at(Some(3), None, 0).failing());
}
