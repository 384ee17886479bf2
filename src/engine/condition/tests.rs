use super::*;

fn decision(action: Action, signal: Option<Signal>, reason: &str) -> Decision {
    Decision {
        action,
        signal,
        reason: reason.into(),
    }
}

#[test]
fn a_cancel_wins_over_everything() {
    let throttle = decision(Action::Throttle, Some(Signal::Connections), "busy");
    assert_eq!(Condition::now(Some("cancel"), false, None), Err(Cancelled));
    assert_eq!(
        Condition::now(Some("cancel"), true, Some(Some(&throttle))),
        Err(Cancelled)
    );
}

#[test]
fn a_late_heartbeat_gives_nothing_to_go_by() {
    assert_eq!(Condition::now(None, true, None), Ok(None));
    assert_eq!(Condition::now(Some("pause"), true, None), Ok(None));
}

#[test]
fn the_operators_pause_comes_before_the_monitor() {
    let go = decision(Action::Go, None, "");
    let paused = Condition::now(Some("pause"), false, Some(Some(&go)))
        .unwrap()
        .unwrap();
    assert_eq!(paused.throttled(), None);
    assert_eq!(paused.note().as_deref(), Some("paused: by operator"));
}

#[test]
fn without_a_monitor_the_run_goes() {
    let running = Condition::now(None, false, None).unwrap().unwrap();
    assert_eq!(running, Condition::Running);
    assert_eq!(running.throttled(), Some(false));
}

#[test]
fn the_monitors_decision_says_how_batches_run() {
    assert_eq!(Condition::now(None, false, Some(None)), Ok(None));
    let throttle = decision(Action::Throttle, Some(Signal::Connections), "busy");
    let throttled = Condition::now(None, false, Some(Some(&throttle)))
        .unwrap()
        .unwrap();
    assert_eq!(throttled.throttled(), Some(true));
    let pause = decision(Action::Pause, Some(Signal::Connections), "busy");
    let paused = Condition::now(Some("resume"), false, Some(Some(&pause)))
        .unwrap()
        .unwrap();
    assert_eq!(paused.throttled(), None);
    assert_eq!(paused.note().as_deref(), Some("paused: busy"));
}

#[test]
fn full_speed_after_the_guards_hold_is_a_release_with_the_probe_now() {
    let guarded = Condition::Guarded {
        probe: Duration::from_millis(9),
        baseline: Duration::from_millis(1),
        reason: "probe 9.0 ms (baseline 1.00 ms)".into(),
    };
    let now = Guarding {
        ratio: 0.0,
        baseline: Duration::from_millis(1),
        recent: Duration::from_micros(1500),
    };
    match Condition::Running.event("j".into(), &guarded, Some(&now)) {
        Event::Released {
            reason, probe_ms, ..
        } => {
            assert_eq!(reason, "probe 1.5 ms (baseline 1.0 ms)");
            assert_eq!(probe_ms, 1.5);
        }
        other => panic!("{other:?}"),
    }
    let throttled = Condition::Throttled {
        signal: Some(Signal::Connections),
        reason: "busy".into(),
    };
    assert_eq!(
        Condition::Running.event("j".into(), &throttled, Some(&now)),
        Event::Running { job: "j".into() }
    );
}
