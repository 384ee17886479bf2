//! The monitor on real PostgreSQL (ARCHITECTURE.md): DDL behind a running batch goes ahead at once, a
//! table lock pauses the run without errors, replica lag pauses it, `throttle_query` and
//! `throttle_file` slow and stop it, and a monitor that loses its connection fails closed and
//! comes back. Every run ends with every row correct and nothing applied twice.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backfill::postgres::throwaway::ClusterOptions;
use common::watched::{
    NOTE_PAUSED, assert_clean, batch_sizes, brake, items_with_job, kinds, of_kind, reasons,
    release_brake,
};
use common::yielding::{Roles, goes_ahead_of_slow_batches, slow_items_job};
use common::{
    Finished, Runner, assert_all_done_once, fresh_database, number, own_cluster, path_str,
    write_job,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

#[tokio::test(flavor = "multi_thread")]
async fn alter_table_behind_a_slow_batch_goes_ahead_at_once() {
    let yielded = reasons(
        &goes_ahead_of_slow_batches("ALTER TABLE items ADD COLUMN note text", None, 1).await,
        "yielded",
    );
    assert!(
        yielded
            .iter()
            .any(|r| r.contains("ALTER TABLE items ADD COLUMN note text")),
        "no yield naming the ALTER: {yielded:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_row_lock_behind_a_slow_batch_goes_ahead_at_once() {
    // Row 1 is the batch's first: locked 20 ms into its UPDATE.
    let lock = "SELECT id FROM items WHERE id = 1 FOR UPDATE";
    let yielded = reasons(&goes_ahead_of_slow_batches(lock, None, 1).await, "yielded");
    assert!(
        yielded
            .iter()
            .any(|r| r.contains("waits for a lock our batch holds") && r.contains(lock)),
        "no yield naming the waiting query: {yielded:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitor_of_another_role_with_pg_signal_backend_yields_the_job_roles_batch() {
    let roles = Roles::new("yield", "pg_monitor, pg_signal_backend");
    let events =
        goes_ahead_of_slow_batches("ALTER TABLE items ADD COLUMN note text", Some(&roles), 1).await;
    let yielded = reasons(&events, "yielded");
    assert!(
        yielded.iter().any(|r| r.contains("ALTER TABLE items")),
        "no yield naming the ALTER: {yielded:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_run_name_the_grants_a_monitor_role_lacks() {
    let db = fresh_database().await;
    let roles = Roles::new("blind", "");
    let (_dir, job) = items_with_job(&db.pool, 300, "size = 100\nmin = 100", "").await;
    roles.create(&db.pool, &["items"]).await;
    let url = Roles::url(&db.url, &roles.batch);
    let monitor_url = Roles::url(&db.url, &roles.monitor);
    let watcher = &roles.monitor;
    let cannot_see = format!(
        "warning: the monitor's role {watcher} is not a member of pg_read_all_stats, so it \
         cannot see other roles' connections, sessions idle in transaction, the replicas' lag \
         or autovacuum on the table and those signals never fire; run `GRANT pg_monitor TO \
         \"{watcher}\";`"
    );
    let cannot_cancel = format!(
        "warning: the monitor's role {watcher} may not cancel the queries of {}, so it cannot \
         yield",
        roles.batch
    );
    let plan = common::run_backfill(&url, &["plan", "--monitor-url", &monitor_url, &job]);
    plan.expect_code(0, "plan");
    for line in [
        format!(
            "monitor as role {watcher}: sees only its own role's sessions, may not cancel the batches"
        ),
        cannot_see.clone(),
        cannot_cancel.clone(),
    ] {
        assert!(
            plan.stdout.contains(&line),
            "{line:?} not in:\n{}",
            plan.stdout
        );
    }

    // A monitor that cannot connect stops the run before anything is written.
    let nobody = Roles::url(&db.url, "nobody_at_all");
    let refused = common::run_backfill(&url, &["run", "--monitor-url", &nobody, &job]);
    refused.expect_code(1, "run with a monitor that cannot log in");
    assert!(
        refused.stderr.contains("cannot connect the monitor to"),
        "{}",
        refused.stderr
    );
    assert!(!common::schema_exists(&db.pool, "backfill").await);

    // Warned once each, before the first batch; the run itself goes ahead.
    let out = common::run_backfill(
        &url,
        &["run", "--json", "--monitor-url", &monitor_url, &job],
    );
    assert_clean(&out, "run");
    assert_eq!(out.stderr.matches(&cannot_see).count(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr.matches(&cannot_cancel).count(),
        1,
        "{}",
        out.stderr
    );
    assert_all_done_once(&db.pool, 300).await;

    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT pg_monitor, pg_signal_backend TO {watcher}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let plan = common::run_backfill(&url, &["plan", "--monitor-url", &monitor_url, &job]);
    plan.expect_code(0, "plan after the grants");
    assert!(
        plan.stdout.contains(&format!(
            "monitor as role {watcher}: sees every session and replica, may cancel the batches"
        )),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("warning"), "{}", plan.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_application_locks_all_the_time_does_not_stall_the_run() {
    let db = fresh_database().await;
    // 2 ms a row: a 400-row batch holds the row locks it has taken for up to 0.8 s.
    let (dir, job) = slow_items_job(
        &db.pool,
        1_200,
        "0.002",
        "size = 400\nmin = 10\nmax = 400",
        "cooldown = \"200ms\"",
    )
    .await;
    // The application locks row 600 — in the middle of the second batch — every 10 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let app = tokio::spawn({
        let (url, stop) = (db.url.clone(), stop.clone());
        async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let mut locks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                sqlx::raw_sql("BEGIN; SELECT id FROM items WHERE id = 600 FOR UPDATE; COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("the application's row lock");
                locks += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            locks
        }
    });
    let out = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job])
        .finish()
        .await;
    stop.store(true, Ordering::Relaxed);
    let locks = app.await.unwrap();
    let events = assert_clean(&out, "run");
    let kinds = kinds(&events);
    let first_yield = kinds.iter().position(|&k| k == "yielded");
    let first_yield = first_yield.unwrap_or_else(|| panic!("no yield: {kinds:?}"));
    // Each yield halves the batch, so the next try holds row 600 for less time and gets past.
    let sizes_after: Vec<u64> = events[first_yield..]
        .iter()
        .filter(|e| e["event"] == "batch")
        .map(|e| e["batch_size"].as_u64().unwrap())
        .collect();
    assert!(
        sizes_after[0] <= 200,
        "batch sizes after the yield: {sizes_after:?}"
    );
    println!(
        "{locks} application locks; batch sizes {:?}",
        batch_sizes(&events)
    );
    assert_all_done_once(&db.pool, 1_200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_holding_access_exclusive_pauses_the_run_without_errors() {
    let db = fresh_database().await;
    let (dir, job) = items_with_job(
        &db.pool,
        4_000,
        "size = 100\nmin = 100\nmax = 100\npause = \"20ms\"",
        "cooldown = \"500ms\"",
    )
    .await;
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(&db.pool, "(SELECT rows_done FROM backfill.jobs) > 0")
        .await;
    let mut holder = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;")
        .execute(&mut holder)
        .await
        .unwrap();
    runner
        .wait_until(&db.pool, &format!("{NOTE_PAUSED}AccessExclusiveLock%')"))
        .await;
    let paused_at = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let still = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let out = runner.finish().await;
    assert_eq!(paused_at, still, "batches ran while the table was locked");
    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    // The LOCK TABLE may be seen queued behind a batch first ("waits for") or holding the
    // lock ("holds"): one pause either way, naming the lock.
    assert!(
        paused
            .iter()
            .any(|r| r.contains("AccessExclusiveLock on the table")),
        "{paused:?}"
    );
    assert!(
        !of_kind(&events, "running").is_empty(),
        "never ran again:\n{}",
        out.stdout
    );
    assert_all_done_once(&db.pool, 4_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_pauses_the_run_until_the_replica_catches_up() {
    let (primary, _) = own_cluster().await;
    let delay = ClusterOptions {
        settings: vec![
            ("recovery_min_apply_delay".into(), "2s".into()),
            ("wal_receiver_status_interval".into(), "1s".into()),
        ],
    };
    let replica = {
        let primary = primary.clone();
        tokio::task::spawn_blocking(move || primary.replica(&delay))
            .await
            .unwrap()
            .expect("start the replica")
    };
    let url = primary.url("postgres");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    // A 1000-row batch writes well over 64 KiB of WAL; the heartbeats in 2 s write far less.
    let (dir, job) = items_with_job(
        &pool,
        3_000,
        // The pause gives the monitor's full sample (every 250ms) time to see each batch's WAL.
        "size = 1000\nmin = 1000\nmax = 1000\npause = \"500ms\"",
        "max_replica_lag_bytes = 65536\ncooldown = \"300ms\"",
    )
    .await;
    let out = Runner::spawn(&url, &dir, "run", &["run", "--json", &job])
        .finish()
        .await;
    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    assert!(
        paused
            .iter()
            .any(|r| r.contains("of WAL to replay (limit 64.0 KiB)")),
        "never paused for the replica: {paused:?}\n{}",
        out.stdout
    );
    let kinds = kinds(&events);
    let first_pause = kinds.iter().position(|k| *k == "paused").unwrap();
    assert!(
        kinds[first_pause..].contains(&"batch"),
        "no batch ran after the pause: {kinds:?}"
    );
    assert_all_done_once(&pool, 3_000).await;
    drop(replica);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_query_slows_the_run_to_min_batches_until_it_returns_zero() {
    let db = fresh_database().await;
    let throttle = brake(&db.pool, "100ms").await;
    let (dir, job) = items_with_job(
        &db.pool,
        20_000,
        "size = 1000\nmin = 50\nmax = 1000",
        &throttle,
    )
    .await;
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE note LIKE 'throttled: throttle_query returned 1%' \
             AND rows_done >= 150)",
        )
        .await;
    release_brake(&db.pool).await;
    let out = runner.finish().await;
    let events = assert_clean(&out, "run");
    let kinds = kinds(&events);
    let throttled = kinds
        .iter()
        .position(|k| *k == "throttled")
        .expect("never throttled");
    let running = kinds
        .iter()
        .position(|k| *k == "running")
        .expect("never ran at full speed");
    assert!(throttled < running, "{kinds:?}");
    let sizes = batch_sizes(&events[throttled..running]);
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(
        sizes.iter().all(|s| *s == 50),
        "throttled batches above min: {sizes:?}"
    );
    let after = batch_sizes(&events[running..]);
    assert!(
        after.iter().any(|s| *s > 50),
        "never sped up again: {after:?}"
    );
    assert_all_done_once(&db.pool, 20_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttle_file_holds_the_run_until_it_is_removed() {
    let db = fresh_database().await;
    let brake = tempfile::tempdir().unwrap();
    let brake = brake.path().join("backfill.pause");
    std::fs::write(&brake, "").unwrap();
    let (dir, job) = items_with_job(
        &db.pool,
        2_000,
        "size = 500\nmin = 500",
        &format!(
            "throttle_file = \"{}\"\ncooldown = \"300ms\"",
            brake.display()
        ),
    )
    .await;
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(
            &db.pool,
            &format!("{NOTE_PAUSED}throttle_file %backfill.pause exists')"),
        )
        .await;
    let before = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    std::fs::remove_file(&brake).unwrap();
    let out = runner.finish().await;
    assert_eq!(before, 0, "a batch ran while the brake file existed");
    let events = assert_clean(&out, "run");
    let kinds = kinds(&events);
    let paused = kinds
        .iter()
        .position(|k| *k == "paused")
        .expect("never paused");
    let first_batch = kinds.iter().position(|k| *k == "batch").expect("no batch");
    assert!(paused < first_batch, "{kinds:?}");
    assert_all_done_once(&db.pool, 2_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitor_that_loses_its_connection_pauses_the_run_and_comes_back() {
    let db = fresh_database().await;
    let watcher = format!("watcher_{}", std::process::id());
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {watcher} LOGIN; GRANT pg_monitor TO {watcher};"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let monitor_url = db.url.replacen("postgres@", &format!("{watcher}@"), 1);
    let (dir, job) = items_with_job(
        &db.pool,
        8_000,
        "size = 100\nmin = 100\nmax = 100\npause = \"100ms\"",
        "fail_closed_after = \"1s\"\ncooldown = \"300ms\"",
    )
    .await;
    let mut runner = Runner::spawn(
        &db.url,
        &dir,
        "run",
        &["run", "--json", "--monitor-url", &monitor_url, &job],
    );
    runner
        .wait_until(&db.pool, "(SELECT rows_done FROM backfill.jobs) > 0")
        .await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE {watcher} NOLOGIN;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'backfill:items_total:monitor'
            AND datname = current_database();"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    runner
        .wait_until(
            &db.pool,
            &format!("{NOTE_PAUSED}the monitor has had no reading%')"),
        )
        .await;
    let paused_at = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    sqlx::raw_sql(AssertSqlSafe(format!("ALTER ROLE {watcher} LOGIN")))
        .execute(&db.pool)
        .await
        .unwrap();
    let out = runner.finish().await;
    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    assert!(
        paused
            .iter()
            .any(|r| r.contains("the monitor has had no reading of the database")),
        "{paused:?}"
    );
    assert!(
        paused_at < 8_000,
        "the run ended before the monitor was lost"
    );
    assert_all_done_once(&db.pool, 8_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_monitor_off_a_run_uses_two_sessions() {
    let (cluster, pool) = own_cluster().await;
    let url = cluster.url("postgres");
    let (dir, job) = items_with_job(
        &pool,
        2_000,
        "size = 100\nmin = 100\nmax = 100\npause = \"20ms\"",
        "enabled = false",
    )
    .await;
    let mut runner = Runner::spawn(&url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(&pool, "(SELECT rows_done FROM backfill.jobs) > 0")
        .await;
    let sessions = number(
        &pool,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backfill:%'",
    )
    .await;
    let monitors = number(
        &pool,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backfill:%:monitor'",
    )
    .await;
    let out = runner.finish().await;
    assert_clean(&out, "run");
    assert_eq!(monitors, 0);
    assert!(sessions <= 2, "{sessions} sessions");
    assert_all_done_once(&pool, 2_000).await;
    drop(cluster);
}

#[test]
fn a_bad_monitor_url_is_refused_before_anything_is_touched() {
    let out = Finished::from_output(common::backfill(&[
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "run",
        "--monitor-url",
        "postgres://watcher@127.0.0.1:notaport/db",
        "jobs/demo_orders.toml",
    ]));
    out.expect_code(2, "run");
    assert!(
        out.stderr.contains("invalid database URL"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_prints_the_policy_and_a_failing_throttle_query_stops_run_untouched() {
    let db = fresh_database().await;
    sqlx::raw_sql("CREATE TABLE brake (on_hold int); INSERT INTO brake VALUES (1), (2);")
        .execute(&db.pool)
        .await
        .unwrap();
    let (dir, job) = items_with_job(
        &db.pool,
        100,
        "size = 100\nmin = 100",
        "throttle_query = \"SELECT count(*) FROM brake\"\nmax_connection_use = 0.5",
    )
    .await;
    let plan = common::run_backfill(&db.url, &["plan", &job]);
    plan.expect_code(0, "plan");
    for line in [
        "throttle  sample every 250ms; full speed after 2s clear; pause when no sample for 5s",
        "yield: cancel the batch when a session waits for its locks (checked every 50ms)",
        "throttle above 50% of max_connections in use",
        "pause while a replica is behind by more than 5s or 128.0 MiB of WAL",
        "throttle while throttle_query > 0: SELECT count(*) FROM brake (returns 2 now)",
    ] {
        assert!(
            plan.stdout.contains(line),
            "{line:?} not in:\n{}",
            plan.stdout
        );
    }

    let broken = write_job(
        &dir,
        "broken",
        "table = \"items\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"qty * price\"\n\
         [throttle]\nthrottle_query = \"SELECT 'busy'\"\n",
    );
    let out = common::run_backfill(&db.url, &["run", path_str(&broken)]);
    out.expect_code(2, "run with a failing throttle_query");
    assert!(
        out.stderr.contains("throttle.throttle_query failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("invalid input syntax for type double precision"),
        "{}",
        out.stderr
    );
    assert!(!common::schema_exists(&db.pool, "backfill").await);
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM items WHERE total IS NOT NULL"
        )
        .await,
        0
    );
}
