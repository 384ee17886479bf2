//! The job's row: creating the tables, the job's lease and heartbeat, its estimate, the
//! operator's control and reset, failed rows, and lease ages across time zones.

use std::time::Duration;

use backfill::mysql::throwaway::Flavor;
use backfill::state::{Admission, Claim, Control, Live, Owner, Pending, Release, StateError};

use crate::fixture::*;

async fn ensure_twice_and_at_once(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "ensure") else {
        return;
    };
    let mut session = f.session().await;
    assert!(f.store.list(session.conn()).await.unwrap().is_empty());
    assert!(f.store.all_ranges(session.conn()).await.unwrap().is_empty());
    assert!(
        f.store
            .failures(session.conn(), JOB, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let err = f.store.load(session.conn(), JOB).await.unwrap_err();
    assert!(matches!(err, StateError::UnknownJob { .. }), "{err}");
    f.store
        .note_unclaimed(session.conn(), JOB, Some("waiting"), Duration::from_secs(1))
        .await
        .unwrap();

    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(f.session().await);
    }
    let ensured = sessions
        .iter_mut()
        .map(|s| f.store.ensure(s.conn(), Duration::from_secs(5)));
    for result in futures_util::future::join_all(ensured).await {
        result.unwrap();
    }
    f.store
        .ensure(session.conn(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(f.store.list(session.conn()).await.unwrap().is_empty());
    let owner = Owner::this_process();
    let (admission, row) = f.store.claim(session.conn(), &claim(&owner)).await.unwrap();
    assert_eq!(admission, Admission::Run);
    assert_eq!(row.status, "running");
    // A first run cut off half-way left the jobs table alone: what is there reads, and the
    // next run creates the rest.
    f.execute(&mut session, "DROP TABLE {failures}, {ranges}")
        .await;
    let listed = f.store.list(session.conn()).await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].ranges, listed[0].failures),
        (1, 0, 0)
    );
    assert!(f.store.all_ranges(session.conn()).await.unwrap().is_empty());
    assert!(
        f.store
            .failures(session.conn(), JOB, 10)
            .await
            .unwrap()
            .is_empty()
    );
    f.store
        .ensure(session.conn(), Duration::from_secs(5))
        .await
        .unwrap();
    let listed = f.store.list(session.conn()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].owner.as_ref()),
        (JOB, row.owner.as_ref())
    );
}

async fn claim_heartbeat_release(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "lease") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let (admission, row) = f.store.claim(session.conn(), &claim(&me)).await.unwrap();
    assert_eq!(admission, Admission::Run);
    assert_eq!(row.owner.as_ref(), Some(&me));
    assert_eq!(row.lease_s, Some(15.0));
    assert_eq!(row.heap_bytes_start, Some(8192));
    assert!(row.lease_is_live(), "{row:?}");

    let other = Owner(ELSEWHERE.into());
    let err = f
        .store
        .claim(session.conn(), &claim(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");
    let join = Claim {
        join: true,
        ..claim(&other)
    };
    let (admission, _) = f.store.claim(session.conn(), &join).await.unwrap();
    assert_eq!(admission, Admission::Join);

    let live = Live {
        rates: vec![],
        note: Some("throttled: replica lag".into()),
    };
    let beat = f
        .store
        .heartbeat(session.conn(), JOB, &me, true, &live)
        .await
        .unwrap();
    assert_eq!(beat.note.as_deref(), Some("throttled: replica lag"));
    assert!(beat.heartbeat_age.unwrap() < 5.0, "{beat:?}");
    let err = f
        .store
        .heartbeat(session.conn(), JOB, &other, true, &live)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::LeaseLost { owner, .. } if owner == &me.0),
        "{err}"
    );

    let pending = Pending {
        rows: 1000,
        rows_done: 0,
        exact: false,
        table_rows: Some(5000),
    };
    f.store
        .keep_estimate(session.conn(), JOB, &pending, false)
        .await
        .unwrap();
    let exact = Pending {
        rows: 999,
        exact: true,
        ..pending
    };
    f.store
        .keep_estimate(session.conn(), JOB, &exact, false)
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(row.pending, Some(pending), "the first estimate is kept");
    f.store
        .keep_estimate(session.conn(), JOB, &exact, true)
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(row.pending, Some(exact), "an exact count replaces it");

    f.store
        .release(session.conn(), JOB, &me, &Release::Stopped, Some(16384))
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(row.status, "stopped");
    assert_eq!(row.owner, None);
    assert_eq!(row.heartbeat_age, None, "the lease went with its owner");
    assert_eq!(row.note, None);
    assert_eq!(row.heap_bytes_end, Some(16384));

    f.store
        .note_unclaimed(
            session.conn(),
            JOB,
            Some("waiting for a lock"),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(row.note.as_deref(), Some("waiting for a lock"));

    let (admission, row) = f.store.claim(session.conn(), &claim(&me)).await.unwrap();
    assert_eq!(admission, Admission::Run);
    assert_eq!(row.heap_bytes_start, Some(8192), "a resume keeps the start");
    assert_eq!(row.note, None);
    f.store
        .release(session.conn(), JOB, &me, &Release::Done, None)
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(row.status, "done");
    assert!(row.updated_age.unwrap() < 5.0, "{row:?}");
    let (admission, _) = f.store.claim(session.conn(), &claim(&me)).await.unwrap();
    assert_eq!(admission, Admission::AlreadyDone);
    let changed = Claim {
        definition_hash: "h2",
        ..claim(&me)
    };
    let err = f.store.claim(session.conn(), &changed).await.unwrap_err();
    assert!(matches!(err, StateError::DefinitionChanged { .. }), "{err}");
    let restart = Claim {
        restart: true,
        heap_bytes: Some(1),
        ..changed
    };
    let (admission, row) = f.store.claim(session.conn(), &restart).await.unwrap();
    assert_eq!(admission, Admission::Restart);
    assert_eq!(
        (row.status.as_str(), row.definition_hash.as_str()),
        ("running", "h2")
    );
    assert_eq!((row.rows_done, row.heap_bytes_start), (0, Some(1)));
}

async fn the_operator_pauses_resumes_cancels_and_resets(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "control") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    start(&f, &mut session, &me, &[range(&["10"], 10)]).await;
    assert_eq!(take(&f, &mut session, &holder(&me, 0)).await, Some(1));
    f.store
        .record_failure(session.conn(), JOB, &failed(&["3"], "first"))
        .await
        .unwrap();

    let row = f
        .store
        .control(session.conn(), JOB, Control::Pause)
        .await
        .unwrap();
    assert_eq!(row.control.as_deref(), Some("pause"));
    let beat = f
        .store
        .heartbeat(session.conn(), JOB, &me, true, &Live::default())
        .await
        .unwrap();
    assert_eq!(beat.control.as_deref(), Some("pause"));
    let row = f
        .store
        .control(session.conn(), JOB, Control::Resume)
        .await
        .unwrap();
    assert_eq!(row.control, None);
    let row = f
        .store
        .control(session.conn(), JOB, Control::Cancel)
        .await
        .unwrap();
    assert_eq!(
        (row.control.as_deref(), row.status.as_str()),
        (Some("cancel"), "running")
    );
    let err = f.store.reset(session.conn(), JOB).await.unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err}");

    f.store
        .release(session.conn(), JOB, &me, &Release::Cancelled, None)
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.control.as_deref()),
        ("cancelled", None)
    );
    let err = f
        .store
        .claim(session.conn(), &claim(&me))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::Cancelled { .. }), "{err}");
    let resume = Claim {
        resume_cancelled: true,
        ..claim(&me)
    };
    let (admission, _) = f.store.claim(session.conn(), &resume).await.unwrap();
    assert_eq!(admission, Admission::Run);
    f.store
        .release(session.conn(), JOB, &me, &Release::Stopped, None)
        .await
        .unwrap();
    // Nobody runs it now: a cancel takes effect at once.
    let row = f
        .store
        .control(session.conn(), JOB, Control::Cancel)
        .await
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.control.as_deref()),
        ("cancelled", None)
    );

    let row = f.store.reset(session.conn(), JOB).await.unwrap();
    assert_eq!((row.ranges, row.failures), (1, 1));
    let err = f.store.load(session.conn(), JOB).await.unwrap_err();
    assert!(matches!(err, StateError::UnknownJob { .. }), "{err}");
    assert!(f.store.all_ranges(session.conn()).await.unwrap().is_empty());
    assert!(
        f.store
            .failures(session.conn(), JOB, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let err = f
        .store
        .control(session.conn(), JOB, Control::Pause)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownJob { .. }), "{err}");
}

async fn failed_rows_are_recorded_listed_and_filled(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "failures") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    start(&f, &mut session, &me, &[range(&["10"], 10)]).await;
    for (k, message) in [("7", "first"), ("3", "second"), ("7", "again")] {
        let mut tx = session.begin_state().await.unwrap();
        f.store
            .record_failure(tx.conn(), JOB, &failed(&[k], message))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let rows = f.store.failures(session.conn(), JOB, 10).await.unwrap();
    let seen: Vec<_> = rows
        .iter()
        .map(|r| (r.key[0].as_str(), r.message.as_str(), r.attempts))
        .collect();
    assert_eq!(
        seen,
        [("7", "again", 2), ("3", "second", 1)],
        "in the order first recorded"
    );
    assert!(rows[0].age.unwrap() < 5.0);
    assert_eq!(f.store.load(session.conn(), JOB).await.unwrap().failures, 2);

    let page = f
        .store
        .failures_after(session.conn(), JOB, None, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let next = f
        .store
        .failures_after(session.conn(), JOB, Some(page[0].0), 10)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|(_, r)| r.key.clone()).collect::<Vec<_>>(),
        [key(&["3"])]
    );

    let mut tx = session.begin_state().await.unwrap();
    f.store
        .failure_filled(tx.conn(), JOB, &me, &key(&["7"]), 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!((row.failures, row.rows_done, row.batches_done), (1, 1, 1));

    let stranger = Owner(ELSEWHERE.into());
    let mut tx = session.begin_state().await.unwrap();
    let err = f
        .store
        .failure_filled(tx.conn(), JOB, &stranger, &key(&["3"]), 1)
        .await
        .unwrap_err();
    drop(tx);
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err}");
    assert_eq!(f.store.load(session.conn(), JOB).await.unwrap().failures, 1);

    let restart = Claim {
        restart: true,
        ..claim(&me)
    };
    f.store.claim(session.conn(), &restart).await.unwrap();
    assert!(
        f.store
            .failures(session.conn(), JOB, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn lease_ages_do_not_depend_on_the_sessions_time_zone(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "time_zone") else {
        return;
    };
    let mut east = f.ready().await;
    east.execute("SET time_zone = '+09:00'").await.unwrap();
    let mut west = f.session().await;
    west.execute("SET time_zone = '-07:00'").await.unwrap();
    let me = Owner::this_process();
    f.store.claim(east.conn(), &claim(&me)).await.unwrap();
    let row = f.store.load(west.conn(), JOB).await.unwrap();
    let age = row.heartbeat_age.unwrap();
    assert!((0.0..5.0).contains(&age), "{age}");
    assert!(row.lease_is_live());
}

on_both!(
    ensure_twice_and_at_once,
    claim_heartbeat_release,
    the_operator_pauses_resumes_cancels_and_resets,
    failed_rows_are_recorded_listed_and_filled,
    lease_ages_do_not_depend_on_the_sessions_time_zone,
);
