use super::*;
use crate::monitor::Signal;

#[test]
fn a_retry_of_a_handful_of_rows_does_not_vacuum_the_table() {
    assert!(!retry_vacuums(1, Some(100_000)));
    assert!(!retry_vacuums(999, Some(100_000)));
    assert!(retry_vacuums(1000, Some(100_000)));
    assert!(retry_vacuums(1, Some(50)));
    assert!(retry_vacuums(1, None));
}

#[test]
fn nothing_is_due_before_every_rows_changed() {
    let mut tally = Tally::default();
    tally.add("\"t\"", 30);
    assert!(tally.due(50).is_empty());
    tally.add("\"t\"", 20);
    assert_eq!(tally.due(50), ["\"t\""]);
}

#[test]
fn every_changed_leaf_is_due_once_they_add_up() {
    let mut tally = Tally::default();
    tally.add("\"p1\"", 30);
    tally.add("\"p2\"", 30);
    tally.add("\"p3\"", 0);
    assert_eq!(tally.due(50), ["\"p1\"", "\"p2\""]);
    assert_eq!(tally.take("\"p1\""), 30);
    assert!(tally.due(50).is_empty(), "p2's 30 rows alone are not due");
    assert_eq!(tally.take("\"p3\""), 0);
}

fn decision(action: Action) -> Decision {
    Decision {
        action,
        signal: Some(Signal::TableLock),
        reason: "pid 1 waits".into(),
    }
}

#[test]
fn a_vacuum_starts_only_when_batches_may() {
    assert!(may_start(Some(&Decision::go()), None));
    assert!(may_start(Some(&decision(Action::Throttle)), None));
    assert!(!may_start(Some(&decision(Action::Pause)), None));
    assert!(!may_start(Some(&decision(Action::Yield)), None));
    assert!(
        !may_start(None, None),
        "before the monitor's first decision"
    );
    assert!(!may_start(Some(&Decision::go()), Some("pause")));
    assert!(may_start(Some(&Decision::go()), Some("cancel")));
}
