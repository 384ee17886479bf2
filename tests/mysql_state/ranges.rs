//! The ranges: laying them out and claiming them past each other's locks, the checkpoint and
//! its guards in the key's own order, splits, and many workers with a heartbeat and an
//! operator at once.

use std::time::Duration;

use backfill::db::RangeSql;
use backfill::mysql::state::RangeSql as MysqlRangeSql;
use backfill::mysql::throwaway::Flavor;
use backfill::state::{Control, Live, Owner, Release, Split, StateError};

use crate::fixture::*;

async fn ranges_are_claimed_past_each_others_locks(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "claims") else {
        return;
    };
    let mut one = f.ready().await;
    let mut two = f.session().await;
    let me = Owner::this_process();
    let other = Owner(ELSEWHERE.into());
    start(
        &f,
        &mut one,
        &me,
        &[
            range(&["100"], 100),
            range(&["200"], 100),
            range(&["300"], 100),
        ],
    )
    .await;
    let row = f.store.load(one.conn(), JOB).await.unwrap();
    assert_eq!((row.ranges, row.ranges_done, row.workers), (3, 0, 0));
    assert_eq!(row.range_end, Some(key(&["300"])));
    assert_eq!(row.keys_left, Some(300));

    // The first claimer's transaction still holds range 1: the second skips it.
    let mut first = one.begin_state().await.unwrap();
    let a = f
        .store
        .claim_range(first.conn(), &holder(&me, 0), &[])
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(
        Duration::from_secs(5),
        take(&f, &mut two, &holder(&other, 0)),
    )
    .await
    .expect("the second claim waited for the first one's lock");
    first.commit().await.unwrap();
    assert_eq!((a.id, b), (1, Some(2)));
    assert_eq!(a.status, "running");
    assert_eq!(a.worker, Some(0));
    assert_eq!(a.lease.as_ref().map(|l| &l.owner), Some(&me));

    let row = f.store.load(one.conn(), JOB).await.unwrap();
    assert_eq!((row.workers, row.processes, row.hosts), (2, 2, 2));
    let leases = f.store.range_leases(one.conn(), JOB).await.unwrap();
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().all(|l| l.is_live()), "{leases:?}");

    let live = Live {
        rates: vec![(1, 12.5)],
        note: None,
    };
    let row = f
        .store
        .heartbeat(one.conn(), JOB, &me, true, &live)
        .await
        .unwrap();
    assert_eq!(row.rate, Some(12.5));

    // Range 2's holder goes quiet: after its lease, a claimer takes it over.
    assert_eq!(take(&f, &mut one, &holder(&me, 1)).await, Some(3));
    assert_eq!(take(&f, &mut one, &holder(&me, 2)).await, None);
    f.execute(
        &mut one,
        "UPDATE {ranges} SET heartbeat_at = heartbeat_at - INTERVAL 1 HOUR WHERE id = 2",
    )
    .await;
    assert_eq!(take(&f, &mut one, &holder(&me, 2)).await, Some(2));

    f.store
        .finish_range(one.conn(), &holder(&me, 0), 1)
        .await
        .unwrap();
    let err = f
        .store
        .finish_range(one.conn(), &holder(&other, 0), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::RangeTaken { owner, .. } if owner == &me.0),
        "{err}"
    );
    let all = f.store.all_ranges(one.conn()).await.unwrap();
    let statuses: Vec<_> = all
        .iter()
        .map(|(job, r)| (job.as_str(), r.id, r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [(JOB, 1, "done"), (JOB, 2, "running"), (JOB, 3, "running")]
    );

    // Leaving, the process gives its ranges back; the job is settled by the last to leave.
    f.store
        .release(one.conn(), JOB, &me, &Release::Stopped, None)
        .await
        .unwrap();
    let row = f.store.load(one.conn(), JOB).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.ranges_done, row.workers),
        ("stopped", 1, 0)
    );
    let ranges = f.store.ranges(one.conn(), JOB).await.unwrap();
    assert!(
        ranges[1..]
            .iter()
            .all(|r| r.status == "pending" && r.lease.is_none())
    );
}

async fn the_checkpoint_moves_the_cursor_only_while_the_range_is_ours(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "checkpoint") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let other = Owner(ELSEWHERE.into());
    start(&f, &mut session, &me, &[range(&["100"], 100)]).await;
    let sql = RangeSql::Mysql(MysqlRangeSql::new(&f.store, &[INT.to_owned()]));
    let w = holder(&me, 0);
    assert_eq!(take(&f, &mut session, &w).await, Some(1));

    let progress = checkpoint(&f, &mut session, &sql, &w, 1, &["10"], 5)
        .await
        .unwrap();
    assert_eq!((progress.rows_done, progress.batches_done), (5, 1));
    assert_eq!((progress.keys_walked, progress.rows_walked), (10, 5));
    assert_eq!(progress.keys_left, Some(90));
    // 99 sorts before 100 as a number, not as text.
    let progress = checkpoint(&f, &mut session, &sql, &w, 1, &["99"], 7)
        .await
        .unwrap();
    assert_eq!((progress.rows_done, progress.keys_left), (12, Some(80)));
    let r = f
        .store
        .range(session.conn(), JOB, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.cursor, Some(key(&["99"])));
    assert_eq!(
        (r.rows_done, r.batches_done, r.keys_walked, r.batch_size),
        (12, 2, 20, Some(10))
    );
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(
        row.cursor,
        Some(key(&["99"])),
        "a single range's cursor is the job's"
    );
    assert_eq!((row.rows_done, row.batches_done), (12, 2));

    let err = checkpoint(&f, &mut session, &sql, &w, 1, &["101"], 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StateError::RangeShrunk { range: 1, .. }),
        "{err}"
    );
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!((row.rows_done, row.batches_done), (12, 2), "nothing moved");

    f.execute(
        &mut session,
        "UPDATE {ranges} SET heartbeat_at = heartbeat_at - INTERVAL 1 HOUR",
    )
    .await;
    assert_eq!(take(&f, &mut session, &holder(&other, 0)).await, Some(1));
    let err = checkpoint(&f, &mut session, &sql, &w, 1, &["100"], 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StateError::RangeTaken { owner, .. } if owner == ELSEWHERE),
        "{err}"
    );
    let r = f
        .store
        .range(session.conn(), JOB, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.cursor, Some(key(&["99"])));

    f.execute(&mut session, "DELETE FROM {jobs}").await;
    let err = checkpoint(&f, &mut session, &sql, &holder(&other, 0), 1, &["100"], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownJob { .. }), "{err}");
}

async fn a_split_hands_over_the_upper_part(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "split") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let other = Owner(ELSEWHERE.into());
    start(&f, &mut session, &me, &[range(&["100"], 100)]).await;
    let sql = RangeSql::Mysql(MysqlRangeSql::new(&f.store, &[INT.to_owned()]));
    let victim = holder(&me, 0);
    assert_eq!(take(&f, &mut session, &victim).await, Some(1));
    checkpoint(&f, &mut session, &sql, &victim, 1, &["9"], 9)
        .await
        .unwrap();

    let split = |at: &str, upper: &str| Split {
        victim: 1,
        upper: key(&[upper]),
        at: key(&[at]),
        relation: "`shop`.`orders`".into(),
        keys_kept: Some(41),
        keys_taken: Some(50),
    };
    let thief = holder(&other, 0);
    let try_split = |s: Split| {
        let (f, sql, thief) = (&f, &sql, &thief);
        async move {
            let mut session = f.session().await;
            let mut tx = session.begin_state().await.unwrap();
            f.store.lock_layout(tx.conn(), JOB).await.unwrap();
            let taken = f.store.split(tx.conn(), sql, thief, &s).await.unwrap();
            tx.commit().await.unwrap();
            taken
        }
    };
    // Not at or before the cursor (8 < 9 as numbers), not past the end, not on a stale end.
    assert_eq!(try_split(split("8", "100")).await, None);
    assert_eq!(try_split(split("100", "100")).await, None);
    assert_eq!(try_split(split("50", "99")).await, None);
    let new = try_split(split("50", "100")).await.unwrap();
    assert_eq!(new.id, 2);
    assert_eq!(
        (new.lower.clone(), new.cursor.clone()),
        (Some(key(&["50"])), Some(key(&["50"])))
    );
    assert_eq!(new.upper, key(&["100"]));
    assert_eq!(
        (new.status.as_str(), new.worker, new.keys_estimate),
        ("running", Some(0), Some(50))
    );
    assert_eq!(new.lease.as_ref().map(|l| &l.owner), Some(&other));
    let kept = f
        .store
        .range(session.conn(), JOB, 1)
        .await
        .unwrap()
        .unwrap();
    // The victim keeps the keys it walked and those the split left it.
    assert_eq!(
        (kept.upper, kept.keys_estimate),
        (key(&["50"]), Some(10 + 41))
    );

    // The victim's batch that ran past the new end rolls back and runs again.
    let err = checkpoint(&f, &mut session, &sql, &victim, 1, &["60"], 3)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::RangeShrunk { .. }), "{err}");
    checkpoint(&f, &mut session, &sql, &victim, 1, &["50"], 3)
        .await
        .unwrap();
    checkpoint(&f, &mut session, &sql, &thief, 2, &["100"], 4)
        .await
        .unwrap();
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!((row.ranges, row.rows_done, row.keys_walked), (2, 16, 30));
    assert_eq!(row.cursor, None, "several ranges have no single cursor");
}

async fn composite_keys_compare_in_their_collation(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "collation") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let other = Owner(THIRD.into());
    start(&f, &mut session, &me, &[range(&["b", "5"], 100)]).await;
    let casts = [
        "CONVERT({} USING utf8mb4) COLLATE utf8mb4_general_ci".to_owned(),
        INT.to_owned(),
    ];
    let sql = RangeSql::Mysql(MysqlRangeSql::new(&f.store, &casts));
    let w = holder(&me, 0);
    assert_eq!(take(&f, &mut session, &w).await, Some(1));

    // `B` sorts after `a` without regard to case, though before it byte by byte.
    let err = checkpoint(&f, &mut session, &sql, &w, 1, &["C", "1"], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::RangeShrunk { .. }), "{err}");
    // Equal first parts, without regard to case: the second decides, as a number.
    let err = checkpoint(&f, &mut session, &sql, &w, 1, &["B", "10"], 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::RangeShrunk { .. }), "{err}");
    checkpoint(&f, &mut session, &sql, &w, 1, &["A", "10"], 1)
        .await
        .unwrap();
    checkpoint(&f, &mut session, &sql, &w, 1, &["B", "5"], 1)
        .await
        .unwrap();

    let mut tx = session.begin_state().await.unwrap();
    f.store.lock_layout(tx.conn(), JOB).await.unwrap();
    let behind = Split {
        victim: 1,
        upper: key(&["b", "5"]),
        at: key(&["b", "3"]),
        relation: "`shop`.`orders`".into(),
        keys_kept: None,
        keys_taken: None,
    };
    let taken = f
        .store
        .split(tx.conn(), &sql, &holder(&other, 0), &behind)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(taken, None, "b,3 is behind the cursor B,5");
}

async fn workers_heartbeat_and_operator_at_once_add_up(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "together") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let ranges = [
        range(&["1000"], 1000),
        range(&["2000"], 1000),
        range(&["3000"], 1000),
    ];
    start(&f, &mut session, &me, &ranges).await;
    let sql = RangeSql::Mysql(MysqlRangeSql::new(&f.store, &[INT.to_owned()]));
    const BATCHES: u64 = 30;
    let workers = (0..3u32).map(|worker| {
        let (f, sql, me) = (&f, &sql, &me);
        async move {
            let mut session = f.session().await;
            let w = holder(me, worker);
            let id = take(f, &mut session, &w).await.unwrap();
            let lower = u64::from(id - 1) * 1000;
            for n in 1..=BATCHES {
                let cursor = (lower + n * 10).to_string();
                checkpoint(f, &mut session, sql, &w, id, &[&cursor], 2)
                    .await
                    .unwrap();
            }
        }
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let beats = async {
        let mut session = f.session().await;
        let mut control = f.session().await;
        let mut beats = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let live = Live {
                rates: vec![(1, 1.0), (2, 2.0), (3, 3.0)],
                note: None,
            };
            f.store
                .heartbeat(session.conn(), JOB, &me, true, &live)
                .await
                .unwrap();
            let flag = if beats % 2 == 0 {
                Control::Pause
            } else {
                Control::Resume
            };
            f.store.control(control.conn(), JOB, flag).await.unwrap();
            beats += 1;
        }
        beats
    };
    let work = async {
        futures_util::future::join_all(workers).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let ((), beats) = tokio::join!(work, beats);
    assert!(beats > 0);
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!(
        (row.rows_done, row.batches_done),
        (3 * BATCHES * 2, 3 * BATCHES)
    );
    assert_eq!(
        (row.keys_walked, row.rows_walked),
        (3 * BATCHES * 10, 3 * BATCHES * 2)
    );
    assert_eq!(row.keys_left, Some(3 * (1000 - BATCHES * 10)));
}

async fn the_checkpoint_waits_for_the_jobs_row_before_it_locks_the_range(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "lock_order") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    start(&f, &mut session, &me, &[range(&["100"], 100)]).await;
    let sql = RangeSql::Mysql(MysqlRangeSql::new(&f.store, &[INT.to_owned()]));
    let w = holder(&me, 0);
    assert_eq!(take(&f, &mut session, &w).await, Some(1));

    // A splitter holds the job's row; the checkpoint queues behind it holding nothing else,
    // so the range's row stays free for the splitter to take: no deadlock.
    let mut splitter = f.session().await;
    let mut layout = splitter.begin_state().await.unwrap();
    f.store.lock_layout(layout.conn(), JOB).await.unwrap();
    let mut probe = f.session().await;
    let blocked = checkpoint(&f, &mut session, &sql, &w, 1, &["10"], 1);
    let look = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sql = format!(
            "SELECT id FROM {} WHERE job = 'fill' AND id = 1 FOR UPDATE NOWAIT",
            f.store.ranges_table()
        );
        let free = probe.execute(&sql).await;
        layout.commit().await.unwrap();
        free
    };
    let (moved, free) = tokio::join!(blocked, look);
    assert!(
        free.is_ok(),
        "the checkpoint locked the range first: {free:?}"
    );
    assert_eq!(moved.unwrap().rows_done, 1);
}

async fn thousands_of_ranges_are_laid_out_in_order(flavor: Flavor) {
    let Some(f) = Fixture::new(flavor, "many") else {
        return;
    };
    let mut session = f.ready().await;
    let me = Owner::this_process();
    let uppers: Vec<String> = (1..=2500).map(|n| (n * 10).to_string()).collect();
    let ranges: Vec<_> = uppers.iter().map(|u| range(&[u], 10)).collect();
    start(&f, &mut session, &me, &ranges).await;
    let laid = f.store.ranges(session.conn(), JOB).await.unwrap();
    assert_eq!(laid.len(), 2500);
    assert!(
        laid.iter()
            .zip(1..)
            .all(|(r, id)| r.id == id && r.upper == [(id * 10).to_string()])
    );
    let row = f.store.load(session.conn(), JOB).await.unwrap();
    assert_eq!((row.ranges, row.keys_left), (2500, Some(25_000)));
    assert_eq!(row.range_end, Some(key(&["25000"])));
}

on_both!(
    ranges_are_claimed_past_each_others_locks,
    thousands_of_ranges_are_laid_out_in_order,
    the_checkpoint_moves_the_cursor_only_while_the_range_is_ours,
    a_split_hands_over_the_upper_part,
    composite_keys_compare_in_their_collation,
    workers_heartbeat_and_operator_at_once_add_up,
    the_checkpoint_waits_for_the_jobs_row_before_it_locks_the_range,
);
