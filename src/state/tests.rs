//! Unit tests of the admission rules and the state tables' names, with no database.

use std::time::Duration;

use super::*;

fn row(status: &str, owner: Option<&str>, heartbeat_age: Option<f64>) -> JobRow {
    JobRow {
        definition_hash: "h1".into(),
        owner: owner.map(|o| Owner(o.into())),
        heartbeat_age,
        ..JobRow::example("j", status)
    }
}

fn claim<'a>(owner: &'a Owner, hash: &'a str, restart: bool) -> Claim<'a> {
    Claim {
        name: "j",
        table_name: "\"public\".\"t\"",
        definition_hash: hash,
        settings: "{}",
        owner,
        lease_timeout: Duration::from_secs(15),
        restart,
        resume_cancelled: false,
        join: false,
        retry_failures: false,
        heap_bytes: None,
    }
}

fn ranges_held_by(owner: &str, age: f64) -> Vec<Lease> {
    vec![Lease {
        owner: Owner(owner.into()),
        heartbeat_age: Some(age),
        timeout_s: None,
    }]
}

const OTHER_HOST: &str = "elsewhere.example:4242:00000001";

#[test]
fn new_job_runs() {
    let me = Owner::this_process();
    assert_eq!(
        admit(&row("pending", None, None), &[], &claim(&me, "h1", false)).unwrap(),
        Admission::Run
    );
}

#[test]
fn live_lease_elsewhere_refuses() {
    let me = Owner::this_process();
    let err = admit(
        &row("running", Some(OTHER_HOST), Some(1.0)),
        &[],
        &claim(&me, "h1", false),
    )
    .unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");
}

#[test]
fn restart_does_not_override_a_live_lease() {
    let me = Owner::this_process();
    let err = admit(
        &row("running", Some(OTHER_HOST), Some(1.0)),
        &[],
        &claim(&me, "h1", true),
    )
    .unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");
}

#[test]
fn stale_lease_is_taken_over() {
    let me = Owner::this_process();
    let stale = LEASE_TIMEOUT.as_secs_f64() + 1.0;
    assert_eq!(
        admit(
            &row("running", Some(OTHER_HOST), Some(stale)),
            &[],
            &claim(&me, "h1", false)
        )
        .unwrap(),
        Admission::Run
    );
}

#[test]
fn lease_of_a_dead_process_on_this_host_is_taken_over_at_once() {
    let me = Owner::this_process();
    let dead = format!("{}:{}:00000001", hostname(), u32::MAX - 1);
    assert_eq!(
        admit(
            &row("running", Some(&dead), Some(0.5)),
            &[],
            &claim(&me, "h1", false)
        )
        .unwrap(),
        Admission::Run
    );
}

#[test]
fn changed_definition_refuses() {
    let me = Owner::this_process();
    let err = admit(&row("stopped", None, None), &[], &claim(&me, "h2", false)).unwrap_err();
    assert!(err.to_string().contains("backfill reset j"), "{err}");
}

#[test]
fn changed_definition_with_restart_starts_over() {
    let me = Owner::this_process();
    assert_eq!(
        admit(&row("stopped", None, None), &[], &claim(&me, "h2", true)).unwrap(),
        Admission::Restart
    );
}

#[test]
fn a_done_job_runs_again_to_retry_its_failed_rows() {
    let me = Owner::this_process();
    let retry = Claim {
        retry_failures: true,
        ..claim(&me, "h1", false)
    };
    assert_eq!(
        admit(&row("done", None, None), &[], &retry).unwrap(),
        Admission::Run
    );
    let err = admit(&row("done", None, None), &[], &claim(&me, "h2", false)).unwrap_err();
    assert!(matches!(err, StateError::DefinitionChanged { .. }), "{err}");
}

#[test]
fn done_job_is_not_run_again() {
    let me = Owner::this_process();
    assert_eq!(
        admit(&row("done", None, None), &[], &claim(&me, "h1", false)).unwrap(),
        Admission::AlreadyDone
    );
}

#[test]
fn cancelled_job_needs_an_explicit_resume() {
    let me = Owner::this_process();
    let err = admit(&row("cancelled", None, None), &[], &claim(&me, "h1", false)).unwrap_err();
    assert!(err.to_string().contains("--resume-cancelled"), "{err}");
    let mut resume = claim(&me, "h1", false);
    resume.resume_cancelled = true;
    assert_eq!(
        admit(&row("cancelled", None, None), &[], &resume).unwrap(),
        Admission::Run
    );
}

#[test]
fn a_live_range_lease_elsewhere_refuses_a_plain_run() {
    let me = Owner::this_process();
    let err = admit(
        &row("running", None, None),
        &ranges_held_by(OTHER_HOST, 1.0),
        &claim(&me, "h1", false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--join"), "{err}");
}

#[test]
fn join_adds_workers_to_a_job_running_elsewhere() {
    let me = Owner::this_process();
    let mut join = claim(&me, "h1", false);
    join.join = true;
    assert_eq!(
        admit(&row("running", Some(OTHER_HOST), Some(1.0)), &[], &join).unwrap(),
        Admission::Join
    );
    assert_eq!(
        admit(
            &row("running", None, None),
            &ranges_held_by(OTHER_HOST, 1.0),
            &join
        )
        .unwrap(),
        Admission::Join
    );
}

#[test]
fn join_with_a_changed_definition_is_refused() {
    let me = Owner::this_process();
    let mut join = claim(&me, "h2", false);
    join.join = true;
    let err = admit(&row("running", Some(OTHER_HOST), Some(1.0)), &[], &join).unwrap_err();
    assert!(matches!(err, StateError::DefinitionChanged { .. }), "{err}");
}

#[test]
fn join_does_not_restart_or_join_a_cancel() {
    let me = Owner::this_process();
    let mut join = claim(&me, "h1", true);
    join.join = true;
    let err = admit(&row("running", Some(OTHER_HOST), Some(1.0)), &[], &join).unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");
    join.restart = false;
    let mut cancelling = row("running", Some(OTHER_HOST), Some(1.0));
    cancelling.control = Some("cancel".into());
    let err = admit(&cancelling, &[], &join).unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");
}

#[test]
fn join_of_a_job_nobody_runs_runs_it() {
    let me = Owner::this_process();
    let mut join = claim(&me, "h1", false);
    join.join = true;
    let stale = LEASE_TIMEOUT.as_secs_f64() + 1.0;
    assert_eq!(
        admit(
            &row("stopped", None, None),
            &ranges_held_by(OTHER_HOST, stale),
            &join
        )
        .unwrap(),
        Admission::Run
    );
}

#[test]
fn state_tables_are_named_as_the_database_writes_them() {
    let store = Store::new("ours", |schema, name| format!("<{schema}>.<{name}>"));
    assert_eq!(store.table(), "<ours>.<jobs>");
    assert_eq!(store.ranges_table(), "<ours>.<ranges>");
    assert_eq!(store.failures_table(), "<ours>.<failures>");
}
